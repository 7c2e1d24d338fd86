#include "dataplane/routing/backend_health.h"

#include <algorithm>

namespace llmproxy {

HealthTracker* BackendHealth::model(std::string_view model) const {
  auto it = std::lower_bound(models.begin(), models.end(), model,
                             [](const ModelTracker& m, std::string_view v) { return m.model < v; });
  if (it == models.end() || it->model != model) return nullptr;
  return it->keyed.tracker.get();
}

bool BackendHealth::IsUp(SteadyTime now) const {
  if (!origin.tracker->IsUp(now) || !account.tracker->IsUp(now)) return false;
  if (models.empty()) return true;
  return std::any_of(models.begin(), models.end(),
                     [&](const ModelTracker& m) { return m.keyed.tracker->IsUp(now); });
}

uint32_t BackendHealth::ConsecutiveFailures(SteadyTime now) const {
  uint32_t most = 0;
  ForEach([&](const std::shared_ptr<HealthTracker>& t) {
    most = std::max(most, t->Snapshot(now).consecutive_failures);
  });
  return most;
}

HealthSnapshot BackendHealth::Snapshot(SteadyTime now) const {
  HealthSnapshot all;
  all.up = IsUp(now);
  ForEach([&](const std::shared_ptr<HealthTracker>& t) {
    const HealthSnapshot one = t->Snapshot(now);
    all.ejected |= one.ejected;
    all.consecutive_failures = std::max(all.consecutive_failures, one.consecutive_failures);
    all.ejections = std::max(all.ejections, one.ejections);
    if (one.ejected_until && (!all.ejected_until || *all.ejected_until < *one.ejected_until)) {
      all.ejected_until = one.ejected_until;
    }
  });
  return all;
}

std::optional<SteadyTime> BackendHealth::NextProbeAt() const {
  std::optional<SteadyTime> earliest;
  ForEach([&](const std::shared_ptr<HealthTracker>& t) {
    if (std::optional<SteadyTime> at = t->NextProbeAt(); at && (!earliest || *at < *earliest)) {
      earliest = at;
    }
  });
  return earliest;
}

SteadyTime CandidateHealth::AvailableAt(SteadyTime now) const {
  SteadyTime at = now;
  for (const HealthTracker* t : {origin, account, model}) {
    if (t->IsAvailable(now)) continue;
    at = std::max(at, t->Snapshot(now).ejected_until.value_or(now));
  }
  return at;
}

std::string OriginHealthKey(std::string_view origin) {
  std::string key = "o\n";
  key += origin;
  return key;
}

std::string AccountHealthKey(std::string_view account) {
  std::string key = "a\n";
  key += account;
  return key;
}

std::string ModelHealthKey(std::string_view account, std::string_view model) {
  std::string key = "m\n";
  key += account;
  key += '\n';
  key += model;
  return key;
}

}  // namespace llmproxy
