#include "dataplane/routing/backend_state.h"

#include <algorithm>
#include <utility>

#include "dataplane/routing/routing_table.h"

namespace llmproxy {

BackendState::BackendState(std::string name) : name_(std::move(name)) {}

void BackendState::RecordLatency(double seconds) {
  if (!(seconds >= 0)) return;  // also drops NaN
  double current = ewma_seconds_.load(std::memory_order_relaxed);
  double next;
  do {
    next = current == 0 ? seconds : current + kEwmaAlpha * (seconds - current);
  } while (!ewma_seconds_.compare_exchange_weak(current, next, std::memory_order_relaxed));
}

void BackendState::RecordFirstToken(double seconds) {
  if (!(seconds >= 0)) return;
  const double ms = std::min(seconds * 1000.0, 4e9);
  const uint64_t i = first_token_count_.fetch_add(1, std::memory_order_relaxed);
  first_token_ms_[i % kFirstTokenSamples].store(static_cast<uint32_t>(ms) + 1,
                                                std::memory_order_relaxed);
}

std::optional<std::chrono::milliseconds> BackendState::FirstTokenP95() const {
  std::array<uint32_t, kFirstTokenSamples> samples{};
  size_t n = 0;
  for (const auto& slot : first_token_ms_) {
    if (const uint32_t v = slot.load(std::memory_order_relaxed); v != 0) samples[n++] = v - 1;
  }
  if (n < kMinFirstTokenSamples) return std::nullopt;
  const size_t k = (n * 95 + 99) / 100 - 1;  // nearest rank
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(k),
                   samples.begin() + static_cast<std::ptrdiff_t>(n));
  return std::chrono::milliseconds(samples[k]);
}

OutstandingGuard::OutstandingGuard(std::shared_ptr<BackendState> state) : state_(std::move(state)) {
  if (state_) state_->AddOutstanding(1);
}

OutstandingGuard::OutstandingGuard(OutstandingGuard&& other) noexcept
    : state_(std::move(other.state_)) {}

OutstandingGuard& OutstandingGuard::operator=(OutstandingGuard&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
  }
  return *this;
}

OutstandingGuard::~OutstandingGuard() { Release(); }

void OutstandingGuard::Release() {
  if (state_) {
    state_->AddOutstanding(-1);
    state_.reset();
  }
}

std::shared_ptr<BackendState> BackendStateRegistry::Get(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = states_.find(name);
  if (it == states_.end()) {
    it =
        states_.emplace(std::string(name), std::make_shared<BackendState>(std::string(name))).first;
  }
  return it->second;
}

void BackendStateRegistry::Retain(const RoutingTable& table) {
  std::lock_guard lock(mu_);
  std::map<std::string, std::shared_ptr<HealthTracker>, std::less<>> kept_trackers;
  auto rebind = [&](BackendHealth::Keyed& k) {
    std::shared_ptr<HealthTracker> tracker;
    if (auto it = kept_trackers.find(k.key); it != kept_trackers.end()) {
      tracker = it->second;
    } else if (auto old = trackers_.find(k.key); old != trackers_.end()) {
      tracker = old->second;
    } else {
      tracker = k.tracker;  // the table's fresh one: nobody else has seen it yet
    }
    if (kept_trackers.emplace(k.key, tracker).second) tracker->SetConfig(table.config.health);
    k.tracker = std::move(tracker);
  };
  for (size_t i = 0; i < table.backend_count(); ++i) {
    BackendHealth& health = *table.health_[i];
    rebind(health.origin);
    rebind(health.account);
    for (BackendHealth::ModelTracker& m : health.models) rebind(m.keyed);
  }
  trackers_ = std::move(kept_trackers);
  table.BindGroupHealth();

  std::map<std::string, std::shared_ptr<BackendState>, std::less<>> kept;
  for (size_t i = 0; i < table.backend_count(); ++i) {
    const std::string& name = table.backend(i).name;
    std::shared_ptr<BackendState> state;
    if (auto it = kept.find(name); it != kept.end()) {
      state = it->second;
    } else if (auto old = states_.find(name); old != states_.end()) {
      state = old->second;
    } else {
      // Adopt the table's fresh state: nobody else has seen it yet.
      state = table.states_[i];
    }
    state->health_ = table.health_[i];
    kept.emplace(name, state);
    table.states_[i] = std::move(state);
  }
  states_ = std::move(kept);
}

std::vector<BackendStateSnapshot> BackendStateRegistry::Snapshot(SteadyTime now) const {
  std::lock_guard lock(mu_);
  std::vector<BackendStateSnapshot> rows;
  rows.reserve(states_.size());
  for (const auto& [name, state] : states_) {
    const BackendHealth* health = state->health_.get();
    rows.push_back({name, health == nullptr || health->IsUp(now), state->outstanding(),
                    state->ewma_seconds(), health ? health->ConsecutiveFailures(now) : 0});
  }
  return rows;
}

std::shared_ptr<HealthTracker> BackendStateRegistry::Tracker(std::string_view key) const {
  std::lock_guard lock(mu_);
  auto it = trackers_.find(key);
  return it == trackers_.end() ? nullptr : it->second;
}

}  // namespace llmproxy
