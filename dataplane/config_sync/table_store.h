// The worker's current routing table: one immutable RoutingTable per config version,
// swapped whole. Fed by the config file (standalone) or by the control-plane client;
// read by every request (a request keeps the table it started with). Backend runtime
// state (health, outstanding, EWMA) lives in the registry beside it, keyed by name, so
// it survives swaps.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/config/config.h"
#include "dataplane/routing/backend_state.h"
#include "dataplane/routing/routing_table.h"

namespace llmproxy {

class TableStore {
 public:
  TableStore() = default;
  TableStore(const TableStore&) = delete;
  TableStore& operator=(const TableStore&) = delete;

  // The table in force; nullptr before the first successful Apply. Lock-free for readers
  // apart from the shared_ptr copy itself.
  std::shared_ptr<const RoutingTable> Current() const {
    return current_.load(std::memory_order_acquire);
  }

  // Validates `config`, builds its table, rebinds backend state and swaps it in.
  // Returns "" on success, else the validation error(s) (one per line); on error the
  // last good table stays in force. Thread-safe (applies are serialized).
  std::string Apply(Config config, uint64_t version);

  // Version of the table in force; 0 before the first table.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  BackendStateRegistry& states() { return states_; }

  // Called after every successful Apply, on the applying thread, with the new table
  // (metrics use it for their label allow-list). Set before the first Apply.
  void SetOnApplied(std::function<void(const RoutingTable&)> callback) {
    on_applied_ = std::move(callback);
  }

 private:
  std::function<void(const RoutingTable&)> on_applied_;
  std::mutex apply_mu_;  // one Apply at a time (Retain mutates the registry)
  BackendStateRegistry states_;
  std::atomic<std::shared_ptr<const RoutingTable>> current_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace llmproxy
