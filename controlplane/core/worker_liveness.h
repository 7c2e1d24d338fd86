// Whether a worker connected to ConfigDiscovery.Sync still answers. A worker sends a load
// report on its stream every report interval (it announces the interval in its Hello);
// a stopped or wedged worker keeps its TCP connection open (the kernel answers for it) but
// sends nothing. So the judgement is: how many report intervals passed since the worker
// last sent anything (hello, ACK, NACK or report)?
//   - fewer than `stale_after_missed`: healthy;
//   - at least that many: stale (admin and metrics show it unhealthy);
//   - at least `replace_after_missed`: a supervised worker is killed and restarted.
// Pure: the caller passes the times (one monotonic clock, in ms) and the policy, so the
// bounds are unit-tested without processes (docs/controlplane.md "Hung workers").
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace llmproxy {

struct LivenessPolicy {
  // For a worker that announced no interval (an older worker): what workers send by default.
  std::chrono::milliseconds default_interval{2000};
  // Announced intervals are clamped to this range, so a bogus hello cannot make the ctl
  // judge on a microsecond scale or never.
  std::chrono::milliseconds min_interval{100};
  std::chrono::milliseconds max_interval{60000};
  int stale_after_missed = 3;
  int replace_after_missed = 5;
};

enum class WorkerState { kHealthy, kStale, kDisconnected };

std::string_view WorkerStateName(WorkerState s);  // "healthy" | "stale" | "disconnected"

struct Liveness {
  WorkerState state = WorkerState::kDisconnected;
  std::chrono::milliseconds interval{0};    // the interval the judgement used
  std::chrono::milliseconds silent_for{0};  // since the worker last sent anything
  int64_t missed = 0;                       // whole report intervals in silent_for
  bool replace = false;                     // connected and silent past replace_after_missed
  // The silence after which this worker turns stale, and is replaced when supervised.
  std::chrono::milliseconds stale_after{0};
  std::chrono::milliseconds replace_after{0};

  bool healthy() const { return state == WorkerState::kHealthy; }
};

// The interval used for a worker that announced `announced_ms` (0 = none).
std::chrono::milliseconds EffectiveReportInterval(uint32_t announced_ms,
                                                  const LivenessPolicy& policy);

// `last_seen_ms` and `now_ms` are on the same monotonic clock.
Liveness JudgeLiveness(bool connected, int64_t last_seen_ms, uint32_t announced_interval_ms,
                       int64_t now_ms, const LivenessPolicy& policy = {});

}  // namespace llmproxy
