#include "controlplane/control_plane.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>

#include "common/log/logging.h"
#include "controlplane/admin_service.h"
#include "controlplane/config_publisher.h"
#include "controlplane/config_watcher.h"
#include "controlplane/core/metrics_sd.h"
#include "controlplane/core/worker_liveness.h"
#include "controlplane/ctl_metrics.h"
#include "controlplane/discovery_service.h"
#include "controlplane/snapshot_hub.h"
#include "controlplane/supervisor.h"

namespace llmproxy {
namespace {

using Clock = std::chrono::steady_clock;

// Unique per process, so nonces of two control-plane runs never collide.
std::string InstanceId() {
  std::random_device rd;
  uint64_t bits = (uint64_t(rd()) << 32) ^ rd();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08llx", static_cast<unsigned long long>(bits & 0xffffffffu));
  return std::to_string(::getpid()) + "." + buf;
}

std::string HostOf(const std::string& addr) {
  auto colon = addr.rfind(':');
  std::string host = colon == std::string::npos ? addr : addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

// Why gRPC could not bind `addr` (it reports only that it failed): bind it ourselves,
// as gRPC does (SO_REUSEADDR, no SO_REUSEPORT), and say what the kernel said.
std::string BindError(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return "not a host:port address";
  std::string host = HostOf(addr), port = addr.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    return ::gai_strerror(rc);
  }
  std::string error = "gRPC could not bind it";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const int rc = ::bind(fd, ai->ai_addr, ai->ai_addrlen);
    const int err = errno;
    ::close(fd);
    if (rc == 0) continue;
    error = std::strerror(err);
    if (!error.empty()) error[0] = static_cast<char>(std::tolower(error[0]));
    if (err == EADDRINUSE) error += " (is another llmproxy-ctl running?)";
    break;
  }
  ::freeaddrinfo(res);
  return error;
}

std::string DefaultWorkerBin() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "llmproxy-worker";
  return (self.parent_path() / "llmproxy-worker").string();
}

}  // namespace

int RunControlPlane(const CtlOptions& opts) {
  // Signals are read from a signalfd by the loop below, so block them before any thread
  // (gRPC's, prometheus') exists: threads inherit the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGHUP, SIGTERM, SIGINT, SIGCHLD}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  int sfd = ::signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) {
    LogError("signalfd failed", {{"error", std::strerror(errno)}});
    return 1;
  }

  CtlMetrics metrics;
  SnapshotHub hub(InstanceId(), [&metrics](uint64_t version, size_t connected) {
    metrics.SetConfigVersion(version);
    metrics.SetWorkersConnected(connected);
  });
  ConfigPublisher publisher(opts.config_path, hub, metrics);
  ConfigPublisher::ReloadOutcome first = publisher.Reload("startup");
  if (!first.ok) {
    LogError("invalid configuration; not starting", {{"path", opts.config_path}});
    ::close(sfd);
    return 1;
  }
  const Config initial = *publisher.view().file;
  const std::string listen = opts.listen.empty() ? initial.control_plane.listen : opts.listen;

  DiscoveryService discovery(
      hub, [&publisher](const std::string& worker, uint64_t session, const v1::LoadReport& report) {
        return publisher.OnReport(worker, session, report);
      });
  AdminService admin(hub, publisher);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  // gRPC sets SO_REUSEPORT by default: a second ctl on the same address would then start
  // and take a share of the workers (split brain: two configs in force). It must fail.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&discovery);
  builder.RegisterService(&admin);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    if (server) server->Shutdown();
    LogError("cannot listen on " + listen + ": " + BindError(listen), {{"listen", listen}});
    ::close(sfd);
    return 1;
  }
  std::string host = HostOf(listen);
  if (std::string err =
          metrics.Serve(host.empty() ? "0.0.0.0" : host, initial.control_plane.metrics_port);
      !err.empty()) {
    LogWarn("cannot serve /metrics; continuing without it",
            {{"port", initial.control_plane.metrics_port}, {"error", err}});
  }
  LogInfo("control plane listening", {{"listen", listen},
                                      {"port", static_cast<int64_t>(bound_port)},
                                      {"metrics_port", metrics.port()},
                                      {"version", hub.version()}});

  ConfigWatcher watcher(opts.config_path);
  if (std::string err = watcher.Start(); !err.empty()) {
    LogWarn("cannot watch the config file; reload with SIGHUP or admin reload", {{"error", err}});
  }

  // Workers dial the port we really bound; a wildcard host is reachable on loopback.
  std::string dial_host = host;
  if (dial_host.empty() || dial_host == "0.0.0.0" || dial_host == "::") dial_host = "127.0.0.1";
  if (dial_host.find(':') != std::string::npos) dial_host = "[" + dial_host + "]";
  SupervisorOptions sup_opts;
  sup_opts.worker_bin = opts.worker_bin.empty() ? DefaultWorkerBin() : opts.worker_bin;
  sup_opts.workers = opts.workers;
  sup_opts.control_plane = dial_host + ":" + std::to_string(bound_port);
  sup_opts.port = initial.server.port;
  sup_opts.metrics_port_base = initial.server.metrics_port;
  sup_opts.log_format = opts.log_format;
  sup_opts.log_level = opts.log_level;
  sup_opts.report_interval = opts.report_interval;
  if (!opts.metrics_sd_file.empty()) {
    // Workers bind their metrics on server.host; this is read once, like server.port.
    sup_opts.on_started = [path = opts.metrics_sd_file,
                           sd_host = MetricsSdHost(initial.server.host)](
                              const std::vector<WorkerEndpoint>& endpoints) {
      std::vector<MetricsSdWorker> workers;
      for (const WorkerEndpoint& e : endpoints) workers.push_back({e.id, e.metrics_port});
      // A failed write must not stop supervision; Prometheus keeps the previous list.
      if (std::string err = WriteMetricsSdFile(path, RenderMetricsSd(sd_host, workers) + "\n");
          !err.empty()) {
        LogWarn("cannot write the metrics target file", {{"path", path}, {"error", err}});
      } else {
        LogDebug("metrics target file written",
                 {{"path", path}, {"workers", static_cast<int64_t>(workers.size())}});
      }
    };
  }
  Supervisor supervisor(sup_opts);
  supervisor.StartAll(Clock::now());

  // Workers go stale with no event to wake the loop: look at them a few times per report
  // interval (the supervised workers' one; remote workers are judged on their own).
  const LivenessPolicy liveness;
  const auto liveness_every = std::max<std::chrono::milliseconds>(
      liveness.min_interval / 2,
      (opts.report_interval.count() > 0 ? opts.report_interval : liveness.default_interval) / 2);
  Clock::time_point liveness_at = Clock::now();
  auto check_liveness = [&](Clock::time_point now) {
    liveness_at = now + liveness_every;
    const int64_t now_ms = SnapshotHub::SteadyNowMs();
    size_t healthy = 0;
    for (const WorkerRecord& w : hub.Workers()) {
      const Liveness l =
          JudgeLiveness(w.connected, w.last_seen_ms, w.report_interval_ms, now_ms, liveness);
      if (l.healthy()) ++healthy;
      if (l.replace) {
        supervisor.ReplaceUnresponsive(w.id, w.pid,
                                       "no load report for " +
                                           std::to_string(l.silent_for.count()) + " ms (" +
                                           std::to_string(l.missed) + " report intervals of " +
                                           std::to_string(l.interval.count()) + " ms)");
      }
    }
    metrics.SetWorkersHealthy(healthy);
  };

  bool stopping = false;
  Clock::time_point kill_at{};
  // Lease state is saved this often (and at shutdown): a crash loses at most this much.
  constexpr auto kSaveLeasesEvery = std::chrono::seconds(1);
  Clock::time_point save_at = Clock::now() + kSaveLeasesEvery;
  while (true) {
    Clock::time_point now = Clock::now();
    if (stopping && supervisor.AllExited()) break;
    std::optional<Clock::time_point> next;
    auto consider = [&](std::optional<Clock::time_point> t) {
      if (t && (!next || *t < *next)) next = t;
    };
    consider(watcher.Deadline());
    consider(supervisor.NextDeadline());
    consider(liveness_at);
    consider(save_at);
    if (stopping) consider(kill_at);
    int timeout_ms = -1;
    if (next) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(ms, 0, 60000));
    }
    pollfd fds[2] = {{sfd, POLLIN, 0}, {watcher.fd(), POLLIN, 0}};
    int nfds = watcher.fd() >= 0 ? 2 : 1;
    int rc = ::poll(fds, static_cast<nfds_t>(nfds), timeout_ms);
    if (rc < 0 && errno != EINTR) {
      LogError("poll failed", {{"error", std::strerror(errno)}});
      break;
    }
    now = Clock::now();
    if (rc > 0 && (fds[0].revents & POLLIN)) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        switch (si.ssi_signo) {
          case SIGHUP: {
            publisher.Reload("SIGHUP");
            watcher.MarkSeen();
            break;
          }
          case SIGCHLD:
            supervisor.Reap(now);
            break;
          case SIGTERM:
          case SIGINT:
            if (!stopping) {
              LogInfo("shutting down: draining workers",
                      {{"signal", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"}});
              stopping = true;
              kill_at = now + opts.drain_timeout;
              supervisor.BeginShutdown();
            } else {
              supervisor.KillAll();  // a second signal: stop waiting
            }
            break;
          default:
            break;
        }
      }
    }
    if (nfds == 2 && rc > 0 && (fds[1].revents & POLLIN)) watcher.OnReadable(now);
    if (!stopping && watcher.Due(now)) publisher.Reload("file change");
    supervisor.Tick(now);
    if (now >= liveness_at) check_liveness(now);
    if (now >= save_at) {
      publisher.SaveLeases();
      save_at = now + kSaveLeasesEvery;
    }
    if (stopping && now >= kill_at && !supervisor.AllExited()) {
      supervisor.KillAll();
      kill_at = now + std::chrono::seconds(5);
    }
  }

  hub.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  publisher.SaveLeases();  // after the last report was handled
  ::close(sfd);
  LogInfo("control plane stopped");
  return 0;
}

}  // namespace llmproxy
