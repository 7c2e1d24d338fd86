// The SnapshotStore shared by the discovery streams, the admin service and the config
// publisher: a mutex around the pure store plus a condition variable, so that each
// worker's stream writer sleeps until there is something new for it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/core/snapshot_store.h"

namespace llmproxy {

class SnapshotHub {
 public:
  // `on_change(version, connected_workers)` runs after every change, outside the lock
  // (metrics gauges).
  SnapshotHub(std::string instance_id,
              std::function<void(uint64_t version, size_t connected)> on_change = {});

  uint64_t Publish(v1::RoutingTable table);
  std::optional<Snapshot> Current() const;
  uint64_t version() const;

  uint64_t Connect(const v1::WorkerHello& hello);
  void Disconnect(const std::string& worker_id, uint64_t session);
  // Blocks until a snapshot is due on `session` (and marks it sent), or until `done()`
  // turns true or the hub shuts down (nullopt). `done` is re-checked at least every
  // `poll`, and whenever Wake() is called.
  std::optional<Snapshot> WaitPending(const std::string& worker_id, uint64_t session,
                                      const std::function<bool()>& done,
                                      std::chrono::milliseconds poll);
  void Wake();
  void Shutdown();

  bool Ack(const std::string& worker_id, uint64_t session, const v1::Ack& ack);
  bool Nack(const std::string& worker_id, uint64_t session, const v1::Nack& nack);
  bool Report(const std::string& worker_id, uint64_t session, const v1::LoadReport& report);

  std::vector<WorkerRecord> Workers() const;
  size_t ConnectedCount() const;

  // The monotonic clock of WorkerRecord::last_seen_ms (every message from a worker,
  // its hello included, refreshes it), for JudgeLiveness (core/worker_liveness.h).
  static int64_t SteadyNowMs();

 private:
  void Changed();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  SnapshotStore store_;
  bool shutdown_ = false;
  std::function<void(uint64_t, size_t)> on_change_;
};

}  // namespace llmproxy
