// Health of one key (a provider origin, an account, or an account's model: see
// backend_health.h for who shares a tracker): passive, driven by the outcomes of real
// requests, and, when health.probe_interval > 0, active probes while ejected (half-open
// circuit). "Backend" below is whatever the key names.
//
// healthy --(failure_threshold consecutive failures | auth failure | Retry-After)-->
// ejected until T --(T passed; the first TryAcquire)--> trial (one request in flight,
// everyone else still sees the backend as unavailable) --success--> healthy (cooldown
// back to its base) / --failure--> ejected again with the cooldown doubled, capped at
// max_cooldown.
//
// Probes (docs/routing.md "Health"): while ejected for failures or an auth failure, one
// probe is due every probe_interval (the first one probe_interval after the ejection), at
// most one in flight. A successful probe makes the backend healthy at once, like a trial
// success; a failed one keeps it ejected and doubles the cooldown (capped), so the
// doubling goes on only while probes fail, and a provider that recovers takes traffic
// again within one probe interval instead of waiting out a cooldown that grew during the
// outage. A Retry-After ejection is not probed: the upstream said when to come back. The
// trial path stays as it is (with probing off it is the only way back).
//
// Thread-safe: a small per-key mutex; nothing is shared between keys.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>

#include "common/config/config.h"
#include "dataplane/routing/clock.h"

namespace llmproxy {

struct HealthSnapshot {
  bool up = true;        // not inside a cooldown (same as IsUp)
  bool ejected = false;  // ejected and cooldown not over, or trial in flight
  uint32_t consecutive_failures = 0;
  uint32_t ejections = 0;                   // ejections since the last full recovery
  std::optional<SteadyTime> ejected_until;  // set unless healthy; may be in the past
};

class HealthTracker {
 public:
  explicit HealthTracker(HealthConfig config = {});

  // A new config version's thresholds; the current state is kept.
  void SetConfig(const HealthConfig& config);

  // For metrics and load reports (llmproxy_backend_up): false only inside a cooldown
  // (true again once it ends, even before the trial). Does not change state.
  bool IsUp(SteadyTime now) const;
  // Whether a balancer may consider this backend now: healthy, or cooldown over and no
  // trial in flight. Does not change state (filtering must not grant trials).
  bool IsAvailable(SteadyTime now) const {
    return healthy_.load(std::memory_order_relaxed) || IsAvailableSlow(now);
  }
  // Called once for the backend actually picked. True: send the request. Grants the
  // single trial when the cooldown is over; false when someone else got it first.
  bool TryAcquire(SteadyTime now) { return Admit(now) != Admission::kRefused; }
  // TryAcquire's verdict, telling a free pass from the trial slot this call took (a
  // candidate judged by several trackers gives back only the trials it took).
  enum class Admission { kRefused, kAdmitted, kTrial };
  Admission Admit(SteadyTime now) {
    return healthy_.load(std::memory_order_relaxed) ? Admission::kAdmitted : AdmitSlow(now);
  }
  // Like TryAcquire but always admits: the all-ejected fail-open path (balancer.h).
  // Takes the trial slot when one is due, so its outcome counts as the trial's; true when
  // it took it.
  bool ForceAcquire(SteadyTime now);

  // Outcomes. Every TryAcquire/ForceAcquire should be followed by exactly one of them.
  // Also for answers that are not health failures (4xx).
  void OnSuccess() {
    if (!clean_.load(std::memory_order_relaxed)) OnSuccessSlow();
  }
  void OnFailure(SteadyTime now);      // connect error, timeout, 5xx, 429 without Retry-After
  void OnAuthFailure(SteadyTime now);  // 401/403: eject now (doubling cooldown)
  // 429 with Retry-After: eject for exactly `delay` (capped at max_cooldown).
  void OnRetryAfter(SteadyTime now, Millis delay);
  // The request ended without telling anything about the backend (client went away):
  // frees the trial slot so the next request can be the trial.
  void OnNeutral();

  // Active probes (the prober, dataplane/proxy/prober.h). True: a probe is due now and the
  // caller sends it; it must be followed by exactly one OnProbeResult or OnProbeAbandoned.
  // False while healthy, in a trial, with a probe in flight, before the next one is due,
  // with probing off (probe_interval 0), or after a Retry-After ejection.
  bool TryStartProbe(SteadyTime now);
  // When TryStartProbe will next say yes, or nullopt when it will not without a change of
  // state (the prober sleeps until the earliest of these). Does not change state.
  std::optional<SteadyTime> NextProbeAt() const;
  // The probe's verdict. Success: healthy at once, cooldown back to its base; returns true
  // when this put the backend back in rotation. Failure: still ejected, for the next
  // cooldown (doubled, capped) from now; returns false.
  bool OnProbeResult(SteadyTime now, bool success);
  // The probe ended without a verdict (the prober stopped): frees the slot.
  void OnProbeAbandoned();

  HealthSnapshot Snapshot(SteadyTime now) const;

 private:
  enum class State { kHealthy, kEjected, kTrial };

  // The locked paths of the inline checks above (called when not healthy / not clean).
  bool IsAvailableSlow(SteadyTime now) const;
  Admission AdmitSlow(SteadyTime now);
  void OnSuccessSlow();

  void EjectLocked(SteadyTime now, Millis duration);
  void PublishLocked();  // refresh the lock-free mirrors below
  Millis NextCooldownLocked() const;
  // A probe in flight that has not reported for max_cooldown is taken as lost.
  bool ProbeInFlightLocked(SteadyTime now) const;

  // Lock-free mirrors so the common case (a healthy backend answering fine) takes no
  // lock per request: healthy_ == (state_ == kHealthy); clean_ additionally means no
  // failure and no ejection on record, so OnSuccess has nothing to reset.
  std::atomic<bool> healthy_{true};
  std::atomic<bool> clean_{true};

  mutable std::mutex mu_;
  HealthConfig config_;
  State state_ = State::kHealthy;
  uint32_t consecutive_failures_ = 0;
  uint32_t ejections_ = 0;
  SteadyTime ejected_until_{};
  SteadyTime trial_started_{};
  // Probing: allowed for failure and auth ejections, not for a Retry-After one.
  bool probe_eligible_ = false;
  bool probe_in_flight_ = false;
  SteadyTime probe_started_{};
  SteadyTime next_probe_{};  // the next probe is due then (set at ejection and probe start)
};

}  // namespace llmproxy
