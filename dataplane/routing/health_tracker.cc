#include "dataplane/routing/health_tracker.h"

#include <algorithm>

namespace llmproxy {

HealthTracker::HealthTracker(HealthConfig config) : config_(std::move(config)) {}

void HealthTracker::SetConfig(const HealthConfig& config) {
  std::lock_guard lock(mu_);
  config_ = config;
}

bool HealthTracker::IsUp(SteadyTime now) const {
  if (healthy_.load(std::memory_order_relaxed)) return true;
  std::lock_guard lock(mu_);
  return state_ != State::kEjected || now >= ejected_until_;
}

bool HealthTracker::IsAvailableSlow(SteadyTime now) const {
  std::lock_guard lock(mu_);
  switch (state_) {
    case State::kHealthy:
      return true;
    case State::kEjected:
      return now >= ejected_until_;
    case State::kTrial:
      // A trial whose outcome never came back (a caller bug or a crash of its
      // coroutine) must not keep the backend out forever.
      return now - trial_started_ >= config_.max_cooldown;
  }
  return false;
}

HealthTracker::Admission HealthTracker::AdmitSlow(SteadyTime now) {
  std::lock_guard lock(mu_);
  switch (state_) {
    case State::kHealthy:
      return Admission::kAdmitted;
    case State::kEjected:
      if (now < ejected_until_) return Admission::kRefused;
      break;
    case State::kTrial:
      if (now - trial_started_ < config_.max_cooldown) return Admission::kRefused;
      break;
  }
  state_ = State::kTrial;
  trial_started_ = now;
  PublishLocked();
  return Admission::kTrial;
}

bool HealthTracker::ForceAcquire(SteadyTime now) { return Admit(now) == Admission::kTrial; }

void HealthTracker::OnSuccessSlow() {
  std::lock_guard lock(mu_);
  state_ = State::kHealthy;
  consecutive_failures_ = 0;
  ejections_ = 0;
  PublishLocked();
}

void HealthTracker::OnFailure(SteadyTime now) {
  std::lock_guard lock(mu_);
  ++consecutive_failures_;
  switch (state_) {
    case State::kHealthy:
      // failure_threshold 0 turns failure-based ejection off.
      if (config_.failure_threshold > 0 && consecutive_failures_ >= config_.failure_threshold) {
        EjectLocked(now, NextCooldownLocked());
        next_probe_ = now + config_.probe_interval;
      }
      break;
    case State::kTrial:
      EjectLocked(now, NextCooldownLocked());
      next_probe_ = now + config_.probe_interval;
      break;
    case State::kEjected:
      // A request sent before the ejection (or a fail-open one) failed too: already out.
      break;
  }
  PublishLocked();
}

void HealthTracker::OnAuthFailure(SteadyTime now) {
  std::lock_guard lock(mu_);
  ++consecutive_failures_;
  // Already out: a second 401 must not stretch the cooldown.
  if (state_ != State::kEjected || now >= ejected_until_) {
    EjectLocked(now, NextCooldownLocked());
    next_probe_ = now + config_.probe_interval;
  }
  PublishLocked();
}

void HealthTracker::OnRetryAfter(SteadyTime now, Millis delay) {
  std::lock_guard lock(mu_);
  delay = std::clamp(delay, Millis(0), config_.max_cooldown);
  if (delay == Millis(0) && state_ == State::kHealthy) return;  // "retry right away"
  // The upstream said when to come back: that replaces any cooldown of ours, without
  // counting toward the doubling.
  state_ = State::kEjected;
  ejected_until_ = now + delay;
  probe_eligible_ = false;
  PublishLocked();
}

void HealthTracker::OnNeutral() {
  std::lock_guard lock(mu_);
  // Give the trial slot back; the cooldown has already passed, so the next request
  // becomes the trial.
  if (state_ == State::kTrial) state_ = State::kEjected;
  PublishLocked();
}

bool HealthTracker::TryStartProbe(SteadyTime now) {
  if (healthy_.load(std::memory_order_relaxed)) return false;
  std::lock_guard lock(mu_);
  if (config_.probe_interval <= Millis(0) || state_ != State::kEjected || !probe_eligible_ ||
      ProbeInFlightLocked(now) || now < next_probe_) {
    return false;
  }
  probe_in_flight_ = true;
  probe_started_ = now;
  // Due again one interval after this one started, not after it ended: a slow probe
  // (a timeout) does not stretch the spacing beyond its own duration.
  next_probe_ = now + config_.probe_interval;
  return true;
}

std::optional<SteadyTime> HealthTracker::NextProbeAt() const {
  if (healthy_.load(std::memory_order_relaxed)) return std::nullopt;
  std::lock_guard lock(mu_);
  if (config_.probe_interval <= Millis(0) || state_ != State::kEjected || !probe_eligible_) {
    return std::nullopt;
  }
  if (probe_in_flight_) return std::max(next_probe_, probe_started_ + config_.max_cooldown);
  return next_probe_;
}

bool HealthTracker::OnProbeResult(SteadyTime now, bool success) {
  std::lock_guard lock(mu_);
  probe_in_flight_ = false;
  if (success) {
    if (state_ == State::kHealthy) return false;  // a request got there first
    state_ = State::kHealthy;
    consecutive_failures_ = 0;
    ejections_ = 0;
    PublishLocked();
    return true;
  }
  // A failed probe says nothing new about a backend that is healthy again or in its trial
  // (the trial's own outcome decides), nor about a Retry-After ejection.
  if (state_ == State::kEjected && probe_eligible_) {
    ++consecutive_failures_;
    EjectLocked(now, NextCooldownLocked());
    PublishLocked();
  }
  return false;
}

void HealthTracker::OnProbeAbandoned() {
  std::lock_guard lock(mu_);
  probe_in_flight_ = false;
}

HealthSnapshot HealthTracker::Snapshot(SteadyTime now) const {
  std::lock_guard lock(mu_);
  HealthSnapshot snapshot;
  snapshot.up = state_ != State::kEjected || now >= ejected_until_;
  snapshot.ejected = state_ == State::kTrial || (state_ == State::kEjected && now < ejected_until_);
  snapshot.consecutive_failures = consecutive_failures_;
  snapshot.ejections = ejections_;
  if (state_ != State::kHealthy) snapshot.ejected_until = ejected_until_;
  return snapshot;
}

void HealthTracker::EjectLocked(SteadyTime now, Millis duration) {
  state_ = State::kEjected;
  ejected_until_ = now + duration;
  ++ejections_;
  probe_eligible_ = true;
}

void HealthTracker::PublishLocked() {
  const bool healthy = state_ == State::kHealthy;
  healthy_.store(healthy, std::memory_order_relaxed);
  clean_.store(healthy && consecutive_failures_ == 0 && ejections_ == 0, std::memory_order_relaxed);
}

bool HealthTracker::ProbeInFlightLocked(SteadyTime now) const {
  return probe_in_flight_ && now - probe_started_ < config_.max_cooldown;
}

Millis HealthTracker::NextCooldownLocked() const {
  // cooldown * 2^ejections, capped; doubling stops at the cap so it cannot overflow.
  Millis cooldown = config_.cooldown;
  for (uint32_t i = 0; i < ejections_ && cooldown < config_.max_cooldown; ++i) cooldown *= 2;
  return std::min(cooldown, std::max(config_.max_cooldown, config_.cooldown));
}

}  // namespace llmproxy
