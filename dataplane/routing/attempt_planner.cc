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

constexpr HealthScope kScopes[] = {HealthScope::kOrigin, HealthScope::kAccount,
                                   HealthScope::kModel};

uint8_t Bit(HealthScope scope) { return static_cast<uint8_t>(1u << static_cast<unsigned>(scope)); }

}  // namespace

Attempt::Attempt(Attempt&& other) noexcept
    : backend(other.backend),
      step(other.step),
      model(std::move(other.model)),
      rewrite_model(other.rewrite_model),
      fail_open(other.fail_open),
      wait(other.wait),
      state(std::move(other.state)),
      health(other.health),
      outstanding_(std::move(other.outstanding_)),
      keep_(std::move(other.keep_)),
      trials_(std::exchange(other.trials_, 0)),
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
    health = other.health;
    outstanding_ = std::move(other.outstanding_);
    keep_ = std::move(other.keep_);
    trials_ = std::exchange(other.trials_, 0);
    pending_ = std::exchange(other.pending_, false);
  }
  return *this;
}

Attempt::~Attempt() { Settle(); }

void Attempt::Settle() {
  if (pending_ && trials_ != 0) {
    // No verdict: give back only the trial slots this attempt took.
    for (HealthScope scope : kScopes) {
      if (trials_ & Bit(scope)) health.at(scope).OnNeutral();
    }
  }
  trials_ = 0;
  pending_ = false;
}

AttemptPlanner::AttemptPlanner(std::shared_ptr<const RoutingTable> table, ModelPlan plan,
                               Random& random, Clock clock)
    : table_(std::move(table)),
      plan_(std::move(plan)),
      random_(random),
      balancer_(table_->config.mode, random),
      clock_(std::move(clock)),
      tried_(table_->backend_count() * plan_.steps.size(), false) {
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
  const size_t n = table_->backend_count();
  PickInfo info;
  if (holds_.empty() && failed_.empty() && !min_window_) {
    // Nothing failed yet: the untried candidates straight from tried_, no copy.
    // Earliest step with a healthy candidate first: an alias moves on to its next model
    // rather than sending to an ejected backend of the current one.
    for (size_t s = 0; s < plan_.steps.size(); ++s) {
      if (auto b = balancer_.PickHealthy(*table_, *plan_.steps[s].candidates, tried_, now, s * n,
                                         &info)) {
        return MakeAttempt(s, *b, info, /*fail_open=*/false);
      }
    }
    for (size_t s = 0; s < plan_.steps.size(); ++s) {
      if (auto b = balancer_.PickFailOpen(*table_, *plan_.steps[s].candidates, tried_, now, s * n,
                                          &info)) {
        return MakeAttempt(s, *b, info, /*fail_open=*/true);
      }
    }
    return std::nullopt;
  }
  // Something failed: what does not share it first, healthy before ejected.
  for (const bool fail_open : {false, true}) {
    for (const bool avoid : {true, false}) {
      if (avoid && failed_.empty()) continue;
      for (size_t s = 0; s < plan_.steps.size(); ++s) {
        BuildSkip(s, now, avoid);
        const CandidateGroup& group = *plan_.steps[s].candidates;
        std::optional<size_t> b = fail_open
                                      ? balancer_.PickFailOpen(*table_, group, skip_, now, 0, &info)
                                      : balancer_.PickHealthy(*table_, group, skip_, now, 0, &info);
        if (b) return MakeAttempt(s, *b, info, fail_open);
      }
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
    skip[b] = !table_->backend(b).prefill || b == broken || (b < exclude.size() && exclude[b]);
  }
  PickInfo info;
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t s = from_step; s < plan_.steps.size(); ++s) {
      if (auto b =
              balancer_.PickHealthy(*table_, *plan_.steps[s].candidates, skip, now, 0, &info)) {
        return MakeAttempt(s, *b, info, /*fail_open=*/false);
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

void AttemptPlanner::BuildSkip(size_t s, SteadyTime now, bool avoid) {
  const size_t n = table_->backend_count();
  skip_.assign(n, true);
  const CandidateGroup& group = *plan_.steps[s].candidates;
  for (size_t k = 0; k < group.backends.size(); ++k) {
    const size_t b = group.backends[k];
    if (tried_[s * n + b]) continue;
    if (std::optional<SteadyTime> until = HeldUntil(group, k); until && *until > now) continue;
    if (avoid && SharesFailure(group, k)) continue;
    if (!WindowFits(s, b)) continue;
    skip_[b] = false;
  }
}

std::optional<SteadyTime> AttemptPlanner::HeldUntil(const CandidateGroup& group, size_t k) const {
  const HealthTracker* model = group.health[k].model;
  for (const auto& [key, until] : holds_) {
    if (key == model) return until;
  }
  return std::nullopt;
}

bool AttemptPlanner::SharesFailure(const CandidateGroup& group, size_t k) const {
  const CandidateHealth& c = table_->candidate(group, k);
  return std::any_of(failed_.begin(), failed_.end(), [&](const Failed& f) {
    return f.key == c.origin || f.key == c.account || f.key == c.model;
  });
}

bool AttemptPlanner::OnTimedOutOrigin(const CandidateGroup& group, size_t k) const {
  const HealthTracker* origin = table_->candidate(group, k).origin;
  return std::any_of(failed_.begin(), failed_.end(),
                     [&](const Failed& f) { return f.timeout && f.key == origin; });
}

bool AttemptPlanner::WindowFits(size_t step, size_t backend) const {
  if (!min_window_) return true;
  const BackendConfig& config = table_->backend(backend);
  auto it = config.context_windows.find(ModelForStep(plan_.steps[step], config));
  return it != config.context_windows.end() && it->second > *min_window_;
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
    for (size_t k = 0; k < group.backends.size(); ++k) {
      const size_t b = group.backends[k];
      if (!IsRoutable(table_->backend(b)) || !WindowFits(s, b)) continue;
      // A silent origin would cost another whole timeout.
      if (!failed_.empty() && OnTimedOutOrigin(group, k)) continue;
      Millis held(0);
      if (std::optional<SteadyTime> until = HeldUntil(group, k); until && *until > now) {
        held = std::chrono::ceil<Millis>(*until - now);
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
    const size_t member = static_cast<size_t>(
        std::find(group.backends.begin(), group.backends.end(), *b) - group.backends.begin());
    const CandidateHealth& health = table_->candidate(group, member);
    const bool ejected = !health.IsAvailable(now + wait);
    const PickInfo info{member, ForceAdmitCandidate(health, now + wait)};
    Attempt attempt = MakeAttempt(s, *b, info, ejected);
    attempt.wait = wait;
    ++repeats_;
    return attempt;
  }
  return std::nullopt;
}

Attempt AttemptPlanner::MakeAttempt(size_t step, size_t backend, const PickInfo& info,
                                    bool fail_open) {
  const size_t n = table_->backend_count();
  const BackendConfig& config = table_->backend(backend);
  Attempt attempt;
  attempt.model = ModelForStep(plan_.steps[step], config);
  tried_[step * n + backend] = true;
  // The same (backend, model) in another step (cross_model_fallback's default model) is
  // the same candidate.
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    if (s == step || tried_[s * n + backend]) continue;
    const auto& members = plan_.steps[s].candidates->backends;
    if (std::find(members.begin(), members.end(), backend) != members.end() &&
        ModelForStep(plan_.steps[s], config) == attempt.model) {
      tried_[s * n + backend] = true;
    }
  }
  ++attempts_;
  attempt.backend = backend;
  attempt.step = step;
  attempt.rewrite_model = attempt.model != plan_.requested;
  attempt.fail_open = fail_open;
  attempt.state = table_->state_ptr(backend);
  attempt.health = table_->candidate(*plan_.steps[step].candidates, info.member);
  attempt.outstanding_ = OutstandingGuard(attempt.state);
  attempt.trials_ = info.trials;
  if (info.trials != 0) attempt.keep_ = table_->health_ptr(backend);
  attempt.pending_ = true;
  return attempt;
}

void AttemptPlanner::Report(Attempt& attempt, const RetryDecision& decision,
                            std::optional<double> latency_seconds) {
  if (!decision.retryable()) stopped_ = true;
  last_outcome_ = decision.outcome;
  const CandidateHealth& health = attempt.health;
  if (decision.outcome == AttemptOutcome::kContextLengthExceeded) {
    // Only a larger window may take it: the failed model's declared one, else the one the
    // error states. Not an alias, or nothing to compare with: the 400 goes back.
    std::optional<uint64_t> window = decision.context_window;
    const auto& declared = table_->backend(attempt.backend).context_windows;
    if (auto it = declared.find(attempt.model); it != declared.end()) window = it->second;
    if (plan_.kind != ModelPlan::Kind::kAlias || !window) {
      stopped_ = true;
    } else {
      min_window_ = std::max(min_window_.value_or(0), *window);
    }
  }
  const bool failure = decision.health == HealthEffect::kFailure ||
                       decision.health == HealthEffect::kEject ||
                       decision.health == HealthEffect::kCooldown;
  if (failure && health.origin != nullptr) {
    const HealthTracker* key = &health.at(decision.scope);
    const bool timeout = decision.outcome == AttemptOutcome::kTimeout;
    auto it =
        std::find_if(failed_.begin(), failed_.end(), [&](const Failed& f) { return f.key == key; });
    if (it == failed_.end()) {
      failed_.push_back({key, timeout});
    } else {
      it->timeout |= timeout;
    }
  }
  if (decision.health == HealthEffect::kCooldown && decision.cooldown && health.model) {
    // The (account, model)'s limit: every entry that spends from it waits as long.
    const SteadyTime until = clock_() + *decision.cooldown;
    auto it = std::find_if(holds_.begin(), holds_.end(),
                           [&](const auto& h) { return h.first == health.model; });
    if (it == holds_.end()) {
      holds_.emplace_back(health.model, until);
    } else {
      it->second = until;
    }
  }
  if (!attempt.pending_ || health.origin == nullptr) return;  // reported already
  attempt.pending_ = false;
  if (decision.health == HealthEffect::kSuccess) {
    // The common case: three lock-free no-ops on clean trackers, and no clock read.
    health.origin->OnSuccess();
    health.account->OnSuccess();
    health.model->OnSuccess();
    attempt.trials_ = 0;
    attempt.keep_.reset();
    if (latency_seconds) attempt.state->RecordLatency(*latency_seconds);
    return;
  }
  const SteadyTime now = clock_();
  for (HealthScope scope : kScopes) {
    HealthTracker& tracker = health.at(scope);
    if (decision.health == HealthEffect::kNeutral || scope > decision.scope) {
      // Nothing learnt about this key (a narrower one than the failure's): free its trial.
      if (attempt.trials_ & Bit(scope)) tracker.OnNeutral();
    } else if (scope < decision.scope) {
      tracker.OnSuccess();  // it answered: the origin is reachable, the key accepted
    } else if (decision.health == HealthEffect::kFailure) {
      tracker.OnFailure(now);
    } else if (decision.health == HealthEffect::kEject) {
      tracker.OnAuthFailure(now);
    } else {
      tracker.OnRetryAfter(now, decision.cooldown.value_or(Millis(0)));
    }
  }
  attempt.trials_ = 0;
  attempt.keep_.reset();
  if (latency_seconds) attempt.state->RecordLatency(*latency_seconds);
}

}  // namespace llmproxy
