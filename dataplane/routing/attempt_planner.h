// The data plane's attempt loop, minus the I/O. Per request:
//
//   ModelPlan plan = ResolveModel(*table, requested);       // 404 if plan.rejected()
//   AttemptPlanner planner(table, std::move(plan), ThreadLocalRandom(), SteadyClock());
//   while (auto attempt = planner.Next()) {
//     ... send to table->backend(attempt->backend) with attempt->model ...
//     RetryDecision d = ClassifyAttempt(result, std::chrono::system_clock::now());
//     planner.Report(*attempt, d, latency_seconds);
//     if (!d.retryable()) break;      // relay (success/pass-through) or give up
//   }
//   // No attempt at all (planner.attempts() == 0): 503 "no healthy backend".
//   // Otherwise relay the last upstream error, or 502/504 if none answered.
//
// Next() walks the plan's steps in order, each time looking for the first step with a
// healthy, untried, routable candidate (so an alias whose first model's backends are all
// ejected moves on to the next model); only when no step has one does it fail open
// (balancer.h) in the first step that still has an untried routable candidate. At most
// config.retry + 1 attempts. A candidate is (backend, model): the same entry is untried
// for the next model of an alias, and "healthy" means its origin, account and
// account-model trackers all allow it (backend_health.h).
//
// What just failed is avoided first (docs/routing.md "Failover order"): for the rest of
// the request, candidates that share a key that failed in it (the origin after a
// transport failure or a timeout, the account after a 401/403, the (account, model) after
// a 429 or 5xx) come after every candidate that does not: another origin, another
// account, or the alias's next model. A silent origin's other entries are thus the last
// resort, not the next try.
//
// Untried candidates first; then, when none is left and the last failure was transient
// (5xx, 429, connect error, cut or malformed answer), a tried one again (the one-backend
// setup must survive a blip): after Attempt::wait, which the caller sleeps before sending.
// The wait is retry_backoff doubling per repeat, jittered to [d/2, d]; after a 429 with
// Retry-After it is that delay, never less, and the repeat is not made when the delay
// exceeds max_retry_wait. A Retry-After holds the (account, model) it was about: untried
// entries of the same account for that model are not an escape from it, so the next
// attempt goes at once to a different account or model, or waits. Timeouts and auth
// errors are not repeated, nor is any candidate on an origin that timed out.
//
// A 400 "context length exceeded" (context_length_error.h) on an alias moves on to the
// candidates whose declared context_window for their model is larger than the failed
// model's (its declared window, else the one the error states); with none left, or on a
// request that is not an alias, nothing more is tried and the 400 goes back as it came.
//
// Cost of the common path (nothing failed): no lock and no allocation beyond the one
// tried_ vector; each candidate's three trackers are read from the group's flat
// CandidateHealth with one relaxed atomic load each (inline fast paths in
// health_tracker.h). Measured with callgrind on ResolveModel + Next + Report over three
// healthy backends: about 2,400 instructions per request against 2,200 with per-entry
// health, the same number of allocations.
//
// Not thread-safe (one planner per request); the shared state it touches is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/routing/backend_state.h"
#include "dataplane/routing/balancer.h"
#include "dataplane/routing/clock.h"
#include "dataplane/routing/model_resolver.h"
#include "dataplane/routing/random.h"
#include "dataplane/routing/retry_policy.h"
#include "dataplane/routing/routing_table.h"

namespace llmproxy {

// One pick: where to send and what. Move-only. Counts as outstanding on its backend for
// as long as it lives (keep it until the response is fully relayed). If it is destroyed
// without AttemptPlanner::Report, its health outcome is neutral (frees a trial slot).
class Attempt {
 public:
  size_t backend = 0;          // index into table.config.backends
  size_t step = 0;             // index into the plan's steps
  std::string model;           // the model to send upstream
  bool rewrite_model = false;  // model differs from the client's: rewrite the body
  bool fail_open = false;      // picked although ejected (every candidate was)
  Millis wait{0};              // sleep this long before sending (a repeat; see above)
  std::shared_ptr<BackendState> state;
  CandidateHealth health;  // its origin, account and account-model trackers

  Attempt() = default;
  Attempt(Attempt&& other) noexcept;
  Attempt& operator=(Attempt&& other) noexcept;
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;
  ~Attempt();

 private:
  friend class AttemptPlanner;
  void Settle();  // neutral outcome if still pending

  OutstandingGuard outstanding_;
  // Keeps `health`'s trackers alive while a trial slot is held (only then: a healthy
  // pick pays no reference count for it).
  std::shared_ptr<const BackendHealth> keep_;
  uint8_t trials_ = 0;    // PickInfo::trials: trial slots this attempt holds
  bool pending_ = false;  // acquired, outcome not reported yet
};

class AttemptPlanner {
 public:
  // `random` must outlive the planner (ThreadLocalRandom() does).
  AttemptPlanner(std::shared_ptr<const RoutingTable> table, ModelPlan plan, Random& random,
                 Clock clock);

  // The next attempt, or nullopt: budget spent, no untried routable candidate left, or
  // the last reported decision was not retryable.
  std::optional<Attempt> Next();
  // Like Next, but only an untried candidate to send to at once (never a repeat): a hedge.
  std::optional<Attempt> NextUntried();

  // A candidate to continue a stream that broke after bytes went out (docs/routing.md
  // "Slow and broken streams"): a routable, healthy backend with `prefill: true` in the
  // broken attempt's step or a later one (the alias's next model), another backend than
  // `broken` first, `broken` itself last; never one marked in `exclude` (indexed like the
  // backends: those that refused or could not take a continuation of this request).
  // Within the attempt budget; ignores the stop a broken stream's report set.
  std::optional<Attempt> NextContinuation(size_t from_step, size_t broken,
                                          const std::vector<bool>& exclude);

  // Applies `decision` to the attempt's backend: health effect, and `latency_seconds`
  // (time to the response head) into its EWMA when given. Call once per attempt, when
  // the outcome is known (streams: at the first chunk).
  void Report(Attempt& attempt, const RetryDecision& decision,
              std::optional<double> latency_seconds = std::nullopt);

  // No repeat whose wait would end after `deadline` (the request's own).
  void SetDeadline(SteadyTime deadline) { deadline_ = deadline; }

  uint32_t attempts() const { return attempts_; }
  std::optional<AttemptOutcome> last_outcome() const { return last_outcome_; }
  uint32_t repeats() const { return repeats_; }  // attempts on an already tried backend
  uint32_t max_attempts() const { return max_attempts_; }
  const ModelPlan& plan() const { return plan_; }
  const RoutingTable& table() const { return *table_; }

 private:
  Attempt MakeAttempt(size_t step, size_t backend, const PickInfo& info, bool fail_open);
  // An untried candidate (healthy first, else fail-open); nullopt when none is left.
  std::optional<Attempt> Fresh(SteadyTime now);
  // A tried (or Retry-After-held) candidate again, after a wait; nullopt if none may be.
  std::optional<Attempt> Repeat(SteadyTime now);
  Millis Backoff();
  // After a failure, a Retry-After or a context-length 400: skip_ for step `s` (tried,
  // held, too small a window, and with `avoid` sharing a key that failed).
  void BuildSkip(size_t s, SteadyTime now, bool avoid);
  // When the k-th candidate of `group` may be sent to again (a Retry-After on its
  // (account, model)); nullopt if it is not held.
  std::optional<SteadyTime> HeldUntil(const CandidateGroup& group, size_t k) const;
  bool SharesFailure(const CandidateGroup& group, size_t k) const;
  bool OnTimedOutOrigin(const CandidateGroup& group, size_t k) const;
  bool WindowFits(size_t step, size_t backend) const;

  std::shared_ptr<const RoutingTable> table_;
  ModelPlan plan_;
  Random& random_;
  Balancer balancer_;
  Clock clock_;
  // [step * backend_count + backend]: that candidate was tried (one allocation per request).
  std::vector<bool> tried_;
  // The rest stays empty (allocates nothing) until something fails.
  std::vector<bool> skip_;  // scratch of BuildSkip
  // (account, model) trackers held by a Retry-After, and until when.
  std::vector<std::pair<const HealthTracker*, SteadyTime>> holds_;
  struct Failed {
    const HealthTracker* key;  // the tracker the failure was about
    bool timeout;              // a timeout (its origin is not repeated)
  };
  std::vector<Failed> failed_;                  // what failed in this request, for avoidance
  std::optional<uint64_t> min_window_;          // after a context-length 400: only larger windows
  std::optional<AttemptOutcome> last_outcome_;  // the last reported outcome
  std::optional<SteadyTime> deadline_;
  uint32_t attempts_ = 0;
  uint32_t repeats_ = 0;
  uint32_t max_attempts_ = 1;
  bool stopped_ = false;
};

}  // namespace llmproxy
