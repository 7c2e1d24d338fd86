// What a failure is about (docs/routing.md "Health"): the health trackers one backend
// entry is judged by. Transport failures (connect, TLS, timeout, a malformed or cut
// answer) belong to its provider ORIGIN (scheme, host, port); auth failures (401/403) to
// its ACCOUNT (origin + key: every model of that key); rate limits (429) and model errors
// (5xx, broken streams) to (ACCOUNT, MODEL). Trackers are shared by key, so two entries on
// one origin share a connect failure, two entries of one account share a 429 on a model,
// and a 429 on model A leaves model B of the same entry alone.
//
// A candidate (entry, model) may take a request only when all three of its trackers allow
// it (CandidateHealth). Each tracker keeps its own half-open trial and probes.
//
// Lifetime: RoutingTable::Build gives each table private trackers (shared within the table
// by key); BackendStateRegistry::Retain rebinds them to the worker's key-indexed trackers,
// which survive config reloads for as long as some entry still has the key. Healthy
// trackers cost a relaxed atomic load each on the request path: no lock, no allocation.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/routing/clock.h"
#include "dataplane/routing/health_tracker.h"

namespace llmproxy {

// Which key a failure is about (RetryDecision::scope), broadest first.
enum class HealthScope { kOrigin, kAccount, kModel };

struct BackendHealth {
  struct Keyed {
    std::string key;  // the registry key (holds the api key: never logged)
    std::shared_ptr<HealthTracker> tracker;
  };
  struct ModelTracker {
    std::string model;
    Keyed keyed;
  };
  Keyed origin;
  Keyed account;
  // One per model the entry may be sent: its `models` and its default model; sorted.
  std::vector<ModelTracker> models;

  // The (account, model) tracker, or nullptr when the entry is never sent `model`.
  HealthTracker* model(std::string_view model) const;
  // llmproxy_backend_up: origin and account not in a cooldown, and at least one of the
  // entry's models not in one either.
  bool IsUp(SteadyTime now) const;
  // The longest consecutive-failure run of its trackers (load reports).
  uint32_t ConsecutiveFailures(SteadyTime now) const;
  // All trackers at once: up as IsUp; ejected if any is; the largest counts and the
  // latest ejected_until of them.
  HealthSnapshot Snapshot(SteadyTime now) const;
  // The earliest probe due on any of its trackers (HealthTracker::NextProbeAt).
  std::optional<SteadyTime> NextProbeAt() const;
  // Every tracker, origin first (the prober's walk).
  template <class F>
  void ForEach(F&& f) const {
    f(origin.tracker);
    f(account.tracker);
    for (const ModelTracker& m : models) f(m.keyed.tracker);
  }
};

// The three trackers of one candidate (entry, model). Never null once built.
struct CandidateHealth {
  HealthTracker* origin = nullptr;
  HealthTracker* account = nullptr;
  HealthTracker* model = nullptr;

  HealthTracker& at(HealthScope scope) const {
    return scope == HealthScope::kOrigin    ? *origin
           : scope == HealthScope::kAccount ? *account
                                            : *model;
  }
  // All three allow it (IsAvailable).
  bool IsAvailable(SteadyTime now) const {
    return origin->IsAvailable(now) && account->IsAvailable(now) && model->IsAvailable(now);
  }
  // When all three will allow it: the latest of their ejections (now if none).
  SteadyTime AvailableAt(SteadyTime now) const;
};

// The registry keys of an entry's trackers.
std::string OriginHealthKey(std::string_view origin);
std::string AccountHealthKey(std::string_view account);
std::string ModelHealthKey(std::string_view account, std::string_view model);

}  // namespace llmproxy
