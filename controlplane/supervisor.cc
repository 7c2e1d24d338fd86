#include "controlplane/supervisor.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>

#include "common/log/logging.h"

extern char** environ;

namespace llmproxy {

Supervisor::Supervisor(SupervisorOptions opts) : opts_(std::move(opts)) {
  for (int i = 0; i < opts_.workers; ++i) {
    Slot s;
    s.id = "worker-" + std::to_string(i);
    // Base 0 means metrics off for every worker, not ports 1, 2, ... for the others.
    s.metrics_port =
        opts_.metrics_port_base == 0 ? 0 : static_cast<uint16_t>(opts_.metrics_port_base + i);
    s.backoff = opts_.min_backoff;
    slots_.push_back(std::move(s));
  }
}

bool Supervisor::Spawn(Slot& slot, Clock::time_point now) {
  std::vector<std::string> args = {opts_.worker_bin,
                                   "--control-plane",
                                   opts_.control_plane,
                                   "--id",
                                   slot.id,
                                   "--metrics-port",
                                   std::to_string(slot.metrics_port),
                                   "--port",
                                   std::to_string(opts_.port)};
  if (!opts_.log_format.empty()) {
    args.push_back("--log-format");
    args.push_back(opts_.log_format);
  }
  if (!opts_.log_level.empty()) {
    args.push_back("--log-level");
    args.push_back(opts_.log_level);
  }
  if (opts_.report_interval.count() > 0) {
    args.push_back("--report-interval");
    args.push_back(std::to_string(opts_.report_interval.count()) + "ms");
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // The ctl blocks its signals to read them from a signalfd; the worker must start
  // with a clean mask and default handlers or it would ignore SIGTERM.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, opts_.worker_bin.c_str(), nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  slot.started = now;
  if (rc != 0) {
    LogError("cannot start worker",
             {{"worker", slot.id}, {"bin", opts_.worker_bin}, {"error", std::strerror(rc)}});
    slot.pid = 0;
    slot.restart_at = now + slot.backoff;
    slot.backoff = std::min(slot.backoff * 2, opts_.max_backoff);
    return false;
  }
  slot.pid = pid;
  slot.replacing = false;
  slot.restart_at.reset();
  LogInfo("worker started", {{"worker", slot.id},
                             {"pid", static_cast<int64_t>(pid)},
                             {"metrics_port", slot.metrics_port}});
  return true;
}

void Supervisor::StartAll(Clock::time_point now) {
  for (Slot& s : slots_) Spawn(s, now);
  NotifyStarted();
}

void Supervisor::NotifyStarted() const {
  if (opts_.on_started) opts_.on_started(Endpoints());
}

void Supervisor::Reap(Clock::time_point now) {
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    auto it =
        std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.pid == pid; });
    if (it == slots_.end()) continue;
    Slot& s = *it;
    s.pid = 0;
    std::string how = WIFEXITED(status)     ? "exit " + std::to_string(WEXITSTATUS(status))
                      : WIFSIGNALED(status) ? std::string("signal ") + strsignal(WTERMSIG(status))
                                            : "unknown";
    if (stopping_) {
      LogInfo("worker exited",
              {{"worker", s.id}, {"pid", static_cast<int64_t>(pid)}, {"status", how}});
      continue;
    }
    // A worker that ran long enough was healthy: its crash starts a fresh backoff.
    if (now - s.started >= opts_.healthy_after) s.backoff = opts_.min_backoff;
    s.restart_at = now + s.backoff;
    LogWarn("worker died; restarting",
            {{"worker", s.id},
             {"pid", static_cast<int64_t>(pid)},
             {"status", how},
             {"restart_in_ms", static_cast<int64_t>(s.backoff.count())}});
    s.backoff = std::min(s.backoff * 2, opts_.max_backoff);
  }
}

void Supervisor::Tick(Clock::time_point now) {
  if (stopping_) return;
  bool started = false;
  for (Slot& s : slots_) {
    if (s.pid == 0 && s.restart_at && *s.restart_at <= now) {
      ++restarts_;
      started = Spawn(s, now) || started;
    }
  }
  if (started) NotifyStarted();
}

std::optional<Supervisor::Clock::time_point> Supervisor::NextDeadline() const {
  std::optional<Clock::time_point> next;
  if (stopping_) return next;
  for (const Slot& s : slots_) {
    if (s.pid == 0 && s.restart_at && (!next || *s.restart_at < *next)) next = s.restart_at;
  }
  return next;
}

void Supervisor::BeginShutdown() {
  stopping_ = true;
  for (Slot& s : slots_) {
    if (s.pid > 0) ::kill(s.pid, SIGTERM);
  }
}

void Supervisor::KillAll() {
  for (Slot& s : slots_) {
    if (s.pid > 0) {
      LogWarn("worker did not drain in time; killing it", {{"worker", s.id}});
      ::kill(s.pid, SIGKILL);
    }
  }
}

bool Supervisor::ReplaceUnresponsive(const std::string& id, int64_t pid, const std::string& why) {
  if (stopping_) return false;
  auto it = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.id == id; });
  if (it == slots_.end() || it->pid <= 0 || it->pid != pid || it->replacing) return false;
  it->replacing = true;
  LogWarn("worker stopped answering; killing it to restart it",
          {{"worker", id}, {"pid", static_cast<int64_t>(it->pid)}, {"reason", why}});
  ::kill(it->pid, SIGKILL);
  return true;
}

bool Supervisor::AllExited() const {
  return std::all_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.pid == 0; });
}

std::vector<WorkerEndpoint> Supervisor::Endpoints() const {
  std::vector<WorkerEndpoint> out;
  for (const Slot& s : slots_) out.push_back({s.id, s.pid, s.metrics_port});
  return out;
}

}  // namespace llmproxy
