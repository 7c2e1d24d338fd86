// Runtime state of one backend, keyed by its name so that it survives config reloads
// that keep the name: requests in flight (for least-busy and load reports) and latency
// EWMA (least-busy tie-break). Its health is not here but in trackers keyed by what a
// failure is about (origin, account, account-model: backend_health.h), which the
// registry below keeps across reloads too. Everything here is safe to use from several
// io threads at once; nothing is locked across backends.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.h"
#include "dataplane/routing/backend_health.h"
#include "dataplane/routing/clock.h"
#include "dataplane/routing/health_tracker.h"

namespace llmproxy {

struct RoutingTable;

class BackendState {
 public:
  explicit BackendState(std::string name);

  const std::string& name() const { return name_; }

  // Requests currently sent to this backend and not finished (see OutstandingGuard).
  int64_t outstanding() const { return outstanding_.load(std::memory_order_relaxed); }
  void AddOutstanding(int64_t delta) { outstanding_.fetch_add(delta, std::memory_order_relaxed); }

  // Latency EWMA in seconds (time to the response head); 0 until the first sample.
  // Weight of a new sample: kEwmaAlpha; the first sample is taken as is.
  static constexpr double kEwmaAlpha = 0.3;
  double ewma_seconds() const { return ewma_seconds_.load(std::memory_order_relaxed); }
  void RecordLatency(double seconds);

  // Recent times to the first token of streams (the last kFirstTokenSamples), for
  // hedge_after: auto. Lock-free: a slot per sample, written in turn.
  static constexpr size_t kFirstTokenSamples = 64;
  static constexpr size_t kMinFirstTokenSamples = 16;  // fewer: no p95 (no auto hedge)
  void RecordFirstToken(double seconds);
  // The 95th percentile of the recent samples; nullopt with fewer than the minimum.
  std::optional<std::chrono::milliseconds> FirstTokenP95() const;

 private:
  friend class BackendStateRegistry;

  const std::string name_;
  std::atomic<int64_t> outstanding_{0};
  std::atomic<double> ewma_seconds_{0.0};
  std::array<std::atomic<uint32_t>, kFirstTokenSamples> first_token_ms_{};  // ms + 1; 0 = none
  std::atomic<uint64_t> first_token_count_{0};
  // The trackers of the table this state was last bound to, for Snapshot; guarded by the
  // registry's mutex (requests reach health through their own table).
  std::shared_ptr<const BackendHealth> health_;
};

// Counts one request as outstanding on a backend for as long as it lives (move-only).
class OutstandingGuard {
 public:
  OutstandingGuard() = default;
  explicit OutstandingGuard(std::shared_ptr<BackendState> state);
  OutstandingGuard(OutstandingGuard&& other) noexcept;
  OutstandingGuard& operator=(OutstandingGuard&& other) noexcept;
  OutstandingGuard(const OutstandingGuard&) = delete;
  OutstandingGuard& operator=(const OutstandingGuard&) = delete;
  ~OutstandingGuard();

  void Release();  // stop counting now (idempotent)

 private:
  std::shared_ptr<BackendState> state_;
};

// One row of a load report (proto/llmproxy/v1/discovery.proto BackendHealth) or of /metrics.
struct BackendStateSnapshot {
  std::string name;
  bool up = true;
  int64_t outstanding = 0;
  double ewma_seconds = 0;
  uint32_t consecutive_failures = 0;
};

// All backends' runtime state of one worker, by name, and their health trackers, by key
// (backend_health.h). The mutex guards only the maps, touched at reloads, Get and
// Snapshot; requests reach their state through RoutingTable::state(i) and
// RoutingTable::candidate without it.
class BackendStateRegistry {
 public:
  BackendStateRegistry() = default;
  BackendStateRegistry(const BackendStateRegistry&) = delete;
  BackendStateRegistry& operator=(const BackendStateRegistry&) = delete;

  // The state of `name`, created (with default health config) when missing.
  std::shared_ptr<BackendState> Get(std::string_view name);

  // Makes `table` the current one: binds each of its backends to the state of the same
  // name (created when new) and each of its health trackers to the tracker of the same
  // key (an origin, account or account-model that some backend of the previous table
  // also had keeps its health), applies the table's health config to them, and drops
  // the states and trackers the table no longer has (requests still holding an older
  // table keep theirs alive until they finish). Call before sharing the table with other
  // threads.
  void Retain(const RoutingTable& table);

  // Every known backend, sorted by name.
  std::vector<BackendStateSnapshot> Snapshot(SteadyTime now) const;

  // The tracker bound to `key` (backend_health.h's *HealthKey), or nullptr.
  std::shared_ptr<HealthTracker> Tracker(std::string_view key) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<BackendState>, std::less<>> states_;
  std::map<std::string, std::shared_ptr<HealthTracker>, std::less<>> trackers_;
};

}  // namespace llmproxy
