#include "dataplane/routing/attempt_planner.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace llmproxy {
namespace {

// Failures that another try of the same backend may well not repeat. Not timeouts (a
// silent provider costs a whole timeout per try) nor bad keys or TLS setup.
bool IsTransient(AttemptOutcome outcome) {
  return outcome == AttemptOutcome::kServerError || outcome == AttemptOutcome::kRateLimited ||
         outcome == AttemptOutcome::kConnectError || outcome == AttemptOutcome::kProtocolError;
}

}  // namespace

Attempt::Attempt(Attempt&& other) noexcept
    : backend(other.backend),
      step(other.step),
      model(std::move(other.model)),
      rewrite_model(other.rewrite_model),
      fail_open(other.fail_open),
      wait(other.wait),
      state(std::move(other.state)),
      outstanding_(std::move(other.outstanding_)),
      pending_(std::exchange(other.pending_, false)) {}

Attempt& Attempt::operator=(Attempt&& other) noexcept {
  if (this != &other) {
    Settle();
    backend = other.backend;
    step = other.step;
    model = std::move(other.model);
    rewrite_model = other.rewrite_model;
    fail_open = other.fail_open;
    wait = other.wait;
    state = std::move(other.state);
    outstanding_ = std::move(other.outstanding_);
    pending_ = std::exchange(other.pending_, false);
  }
  return *this;
}

Attempt::~Attempt() { Settle(); }

void Attempt::Settle() {
  if (pending_ && state) state->health().OnNeutral();
  pending_ = false;
}

AttemptPlanner::AttemptPlanner(std::shared_ptr<const RoutingTable> table, ModelPlan plan,
                               Random& random, Clock clock)
    : table_(std::move(table)),
      plan_(std::move(plan)),
      random_(random),
      balancer_(table_->config.mode, random),
      clock_(std::move(clock)),
      tried_(table_->backend_count(), false) {
  const uint32_t retry = table_->config.retry;
  max_attempts_ = retry == std::numeric_limits<uint32_t>::max() ? retry : retry + 1;
}

std::optional<Attempt> AttemptPlanner::Next() {
  if (stopped_ || plan_.rejected() || attempts_ >= max_attempts_) return std::nullopt;
  const SteadyTime now = clock_();
  if (std::optional<Attempt> fresh = Fresh(now)) return fresh;
  return Repeat(now);
}

std::optional<Attempt> AttemptPlanner::NextUntried() {
  if (stopped_ || plan_.rejected() || attempts_ >= max_attempts_) return std::nullopt;
  return Fresh(clock_());
}

std::optional<Attempt> AttemptPlanner::Fresh(SteadyTime now) {
  // Untried, and not held by a Retry-After on its account. Only a request that met a
  // Retry-After pays for the copy: the common path passes tried_ itself.
  std::vector<bool> held;
  if (!not_before_.empty()) {
    held = tried_;
    for (size_t b = 0; b < held.size(); ++b) {
      if (not_before_[b] && *not_before_[b] > now) held[b] = true;
    }
  }
  const std::vector<bool>& skip = not_before_.empty() ? tried_ : held;
  // Earliest step with a healthy candidate first: an alias moves on to its next model
  // rather than sending to an ejected backend of the current one.
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    if (auto b = balancer_.PickHealthy(*table_, *plan_.steps[s].candidates, skip, now)) {
      return MakeAttempt(s, *b, /*fail_open=*/false);
    }
  }
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    if (auto b = balancer_.PickFailOpen(*table_, *plan_.steps[s].candidates, skip, now)) {
      return MakeAttempt(s, *b, /*fail_open=*/true);
    }
  }
  return std::nullopt;
}

std::optional<Attempt> AttemptPlanner::NextContinuation(size_t from_step, size_t broken,
                                                        const std::vector<bool>& exclude) {
  if (plan_.rejected() || attempts_ >= max_attempts_) return std::nullopt;
  const SteadyTime now = clock_();
  std::vector<bool> skip(table_->backend_count(), false);
  for (size_t b = 0; b < skip.size(); ++b) {
    skip[b] = !table_->backend(b).prefill || b == broken || (b < exclude.size() && exclude[b]) ||
              (!not_before_.empty() && not_before_[b] && *not_before_[b] > now);
  }
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t s = from_step; s < plan_.steps.size(); ++s) {
      if (auto b = balancer_.PickHealthy(*table_, *plan_.steps[s].candidates, skip, now)) {
        return MakeAttempt(s, *b, /*fail_open=*/false);
      }
    }
    if (broken >= skip.size() || !table_->backend(broken).prefill ||
        (broken < exclude.size() && exclude[broken])) {
      break;
    }
    skip[broken] = false;  // the second pass: the same backend again
  }
  return std::nullopt;
}

Millis AttemptPlanner::Backoff() {
  const Millis base = table_->config.retry_backoff;
  if (base.count() <= 0) return Millis(0);
  // Doubling, capped well below overflow; then equal jitter: [d/2, d].
  const int64_t d = base.count() << std::min<uint32_t>(repeats_, 20);
  const int64_t half = d / 2;
  return Millis(half + static_cast<int64_t>(random_.Uniform(static_cast<uint64_t>(d - half) + 1)));
}

std::optional<Attempt> AttemptPlanner::Repeat(SteadyTime now) {
  if (!last_outcome_ || !IsTransient(*last_outcome_)) return std::nullopt;
  const Millis max_wait = table_->config.max_retry_wait;
  const Millis backoff = Backoff();
  // The earliest step with a routable candidate that may be sent to within max_wait; in
  // it, the balancer's choice among those that can go soonest.
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    const CandidateGroup& group = *plan_.steps[s].candidates;
    std::vector<size_t> soonest;
    Millis wait = Millis::max();
    for (size_t b : group.backends) {
      if (!IsRoutable(table_->backend(b))) continue;
      Millis held(0);
      if (!not_before_.empty() && not_before_[b] && *not_before_[b] > now) {
        held = std::chrono::ceil<Millis>(*not_before_[b] - now);
        if (held > max_wait) continue;
      }
      const Millis w = std::max(backoff, held);
      if (deadline_ && now + w >= *deadline_) continue;
      if (w < wait) {
        wait = w;
        soonest.clear();
      }
      if (w == wait) soonest.push_back(b);
    }
    if (soonest.empty()) continue;
    const std::optional<size_t> b = balancer_.Choose(*table_, group, soonest);
    if (!b) continue;
    HealthTracker& health = table_->state(*b).health();
    const bool ejected = !health.IsAvailable(now + wait);
    health.ForceAcquire(now + wait);
    Attempt attempt = MakeAttempt(s, *b, ejected);
    attempt.wait = wait;
    ++repeats_;
    return attempt;
  }
  return std::nullopt;
}

Attempt AttemptPlanner::MakeAttempt(size_t step, size_t backend, bool fail_open) {
  tried_[backend] = true;
  ++attempts_;
  Attempt attempt;
  attempt.backend = backend;
  attempt.step = step;
  attempt.model = ModelForStep(plan_.steps[step], table_->backend(backend));
  attempt.rewrite_model = attempt.model != plan_.requested;
  attempt.fail_open = fail_open;
  attempt.state = table_->state_ptr(backend);
  attempt.outstanding_ = OutstandingGuard(attempt.state);
  attempt.pending_ = true;
  return attempt;
}

void AttemptPlanner::Report(Attempt& attempt, const RetryDecision& decision,
                            std::optional<double> latency_seconds) {
  if (!decision.retryable()) stopped_ = true;
  last_outcome_ = decision.outcome;
  if (decision.health == HealthEffect::kCooldown && decision.cooldown) {
    // The account's limit: every entry that spends from it waits as long.
    const SteadyTime until = clock_() + *decision.cooldown;
    const std::string& account = table_->target(attempt.backend).account;
    not_before_.resize(table_->backend_count());
    for (size_t b = 0; b < not_before_.size(); ++b) {
      if (table_->target(b).account == account) not_before_[b] = until;
    }
  }
  if (!attempt.pending_ || !attempt.state) return;  // reported already
  attempt.pending_ = false;
  HealthTracker& health = attempt.state->health();
  switch (decision.health) {
    case HealthEffect::kSuccess:
      health.OnSuccess();
      break;
    case HealthEffect::kFailure:
      health.OnFailure(clock_());
      break;
    case HealthEffect::kEject:
      health.OnAuthFailure(clock_());
      break;
    case HealthEffect::kCooldown:
      health.OnRetryAfter(clock_(), decision.cooldown.value_or(Millis(0)));
      break;
    case HealthEffect::kNeutral:
      health.OnNeutral();
      break;
  }
  if (latency_seconds) attempt.state->RecordLatency(*latency_seconds);
}

}  // namespace llmproxy
