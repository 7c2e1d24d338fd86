// Fakes and builders shared by the routing unit tests (header-only so it is not linked
// into every unit test binary).
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config/config.h"
#include "dataplane/routing/clock.h"
#include "dataplane/routing/random.h"
#include "dataplane/routing/routing_table.h"

namespace llmproxy::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A steady clock that moves only when told to.
class FakeClock {
 public:
  SteadyTime now() const { return now_; }
  void Advance(Millis d) { now_ += d; }
  Clock AsClock() {
    return [this] { return now_; };
  }

 private:
  SteadyTime now_ = SteadyTime{} + std::chrono::hours(1000);
};

// Returns the queued values in order, then repeats the last one (or 0).
class ScriptedRandom : public Random {
 public:
  explicit ScriptedRandom(std::vector<uint64_t> values = {})
      : values_(values.begin(), values.end()) {}
  void Push(uint64_t v) { values_.push_back(v); }
  uint64_t NextU64() override {
    if (values_.empty()) return last_;
    last_ = values_.front();
    values_.pop_front();
    return last_;
  }

 private:
  std::deque<uint64_t> values_;
  uint64_t last_ = 0;
};

// Backend i's origin and account trackers (MakeBackend gives each backend its own origin).
inline HealthTracker& OriginOf(const RoutingTable& table, size_t i) {
  return *table.health(i).origin.tracker;
}
inline HealthTracker& AccountOf(const RoutingTable& table, size_t i) {
  return *table.health(i).account.tracker;
}
// Backend i's (account, model) tracker.
inline HealthTracker& ModelOf(const RoutingTable& table, size_t i, std::string_view model) {
  return *table.health(i).model(model);
}

inline BackendConfig MakeBackend(std::string name, std::vector<std::string> models,
                                 uint32_t weight = 1) {
  BackendConfig b;
  b.name = std::move(name);
  b.url = "https://" + b.name + ".example";
  b.api_key = "sk-test";
  b.weight = weight;
  b.models = std::move(models);
  b.default_model = b.models.empty() ? "" : b.models.front();
  return b;
}

inline Config MakeConfig(std::vector<BackendConfig> backends,
                         BalanceMode mode = BalanceMode::kRandom) {
  Config c;
  c.backends = std::move(backends);
  c.mode = mode;
  c.health.failure_threshold = 3;
  c.health.cooldown = seconds(10);
  c.health.max_cooldown = seconds(60);
  return c;
}

}  // namespace llmproxy::testing
