// `llmproxy-ctl --workers N`: starts N local llmproxy-worker processes (nginx-style
// master), restarts any that dies with exponential backoff against crash loops, kills
// (and so restarts) one whose load reports stopped (ReplaceUnresponsive: a stopped or
// wedged process keeps its share of the port's connections), and on shutdown asks them
// to drain (SIGTERM) and waits for them. Driven by the ctl's poll loop: Reap() on
// SIGCHLD, Tick() at NextDeadline(). Not thread-safe; one loop owns it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace llmproxy {

// Where a supervised worker serves its metrics (a Prometheus file_sd target list).
struct WorkerEndpoint {
  std::string id;
  pid_t pid = 0;  // 0 while waiting for a restart
  uint16_t metrics_port = 0;
};

struct SupervisorOptions {
  std::string worker_bin;
  int workers = 0;
  std::string control_plane;          // host:port the workers dial
  uint16_t port = 8080;               // server.port, shared through SO_REUSEPORT
  uint16_t metrics_port_base = 9400;  // worker i: base + i
  std::string log_format;             // passed through when set
  std::string log_level;
  // Passed as --report-interval when set (0: the workers' default).
  std::chrono::milliseconds report_interval{0};
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{10000};
  std::chrono::milliseconds healthy_after{30000};  // a run this long resets the backoff
  // Called with Endpoints() once after StartAll() (even with 0 workers) and after every
  // Tick() that restarted a worker: `--metrics-sd-file` rewrites its target list here.
  std::function<void(const std::vector<WorkerEndpoint>&)> on_started;
};

class Supervisor {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Supervisor(SupervisorOptions opts);

  void StartAll(Clock::time_point now);
  // Collects exited children (call on SIGCHLD); schedules restarts unless stopping.
  void Reap(Clock::time_point now);
  // Restarts the workers whose backoff has passed.
  void Tick(Clock::time_point now);
  std::optional<Clock::time_point> NextDeadline() const;

  // SIGTERM to every worker: they stop accepting and drain. No restarts afterwards.
  void BeginShutdown();
  void KillAll();  // SIGKILL to whatever is left
  // The worker `id` stopped answering: SIGKILL it (SIGTERM would not reach a stopped
  // process, and a wedged one would not drain), and Reap() restarts it as after a crash.
  // Only when `pid` is still that slot's process (the record may be of an earlier one).
  // Returns true when a kill was sent; a slot is killed once per process.
  bool ReplaceUnresponsive(const std::string& id, int64_t pid, const std::string& why);
  bool AllExited() const;

  std::vector<WorkerEndpoint> Endpoints() const;
  uint64_t restarts() const { return restarts_; }

 private:
  struct Slot {
    std::string id;
    uint16_t metrics_port = 0;
    pid_t pid = 0;
    Clock::time_point started{};
    std::optional<Clock::time_point> restart_at;
    std::chrono::milliseconds backoff{0};
    bool replacing = false;  // ReplaceUnresponsive sent SIGKILL to this process
  };
  bool Spawn(Slot& slot, Clock::time_point now);
  void NotifyStarted() const;

  SupervisorOptions opts_;
  std::vector<Slot> slots_;
  bool stopping_ = false;
  uint64_t restarts_ = 0;
};

}  // namespace llmproxy
