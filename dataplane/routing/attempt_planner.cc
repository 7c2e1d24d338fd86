#include "dataplane/routing/attempt_planner.h"

#include <limits>
#include <utility>

namespace llmproxy {

Attempt::Attempt(Attempt&& other) noexcept
    : backend(other.backend),
      step(other.step),
      model(std::move(other.model)),
      rewrite_model(other.rewrite_model),
      fail_open(other.fail_open),
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
      balancer_(table_->config.mode, random),
      clock_(std::move(clock)),
      tried_(table_->backend_count(), false) {
  const uint32_t retry = table_->config.retry;
  max_attempts_ = retry == std::numeric_limits<uint32_t>::max() ? retry : retry + 1;
}

std::optional<Attempt> AttemptPlanner::Next() {
  if (stopped_ || plan_.rejected() || attempts_ >= max_attempts_) return std::nullopt;
  const SteadyTime now = clock_();
  // Earliest step with a healthy candidate first: an alias moves on to its next model
  // rather than sending to an ejected backend of the current one.
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    if (auto b = balancer_.PickHealthy(*table_, *plan_.steps[s].candidates, tried_, now)) {
      return MakeAttempt(s, *b, /*fail_open=*/false);
    }
  }
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    if (auto b = balancer_.PickFailOpen(*table_, *plan_.steps[s].candidates, tried_, now)) {
      return MakeAttempt(s, *b, /*fail_open=*/true);
    }
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
