#include "controlplane/core/worker_liveness.h"

#include <algorithm>

namespace llmproxy {

std::string_view WorkerStateName(WorkerState s) {
  switch (s) {
    case WorkerState::kHealthy:
      return "healthy";
    case WorkerState::kStale:
      return "stale";
    case WorkerState::kDisconnected:
      return "disconnected";
  }
  return "disconnected";
}

std::chrono::milliseconds EffectiveReportInterval(uint32_t announced_ms,
                                                  const LivenessPolicy& policy) {
  if (announced_ms == 0) return policy.default_interval;
  return std::clamp(std::chrono::milliseconds(announced_ms), policy.min_interval,
                    policy.max_interval);
}

Liveness JudgeLiveness(bool connected, int64_t last_seen_ms, uint32_t announced_interval_ms,
                       int64_t now_ms, const LivenessPolicy& policy) {
  Liveness l;
  l.interval = EffectiveReportInterval(announced_interval_ms, policy);
  l.stale_after = l.interval * policy.stale_after_missed;
  l.replace_after = l.interval * policy.replace_after_missed;
  // A clock that looks backwards (a record from before a restart of the clock) is no silence.
  l.silent_for = std::chrono::milliseconds(std::max<int64_t>(0, now_ms - last_seen_ms));
  l.missed = l.silent_for / l.interval;
  if (!connected) {
    l.state = WorkerState::kDisconnected;
    return l;
  }
  l.state = l.missed >= policy.stale_after_missed ? WorkerState::kStale : WorkerState::kHealthy;
  l.replace = l.missed >= policy.replace_after_missed;
  return l;
}

}  // namespace llmproxy
