// Where the lease authority's state (controlplane/core/lease_authority.h) outlives a
// control-plane restart: one row of the state database, written every second while it
// changes and at shutdown. Leases held by workers and the rpm/tpm windows come back with
// it; budgets need nothing here (they are summed from the usage ledger).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace llmproxy {

class LeaseStore {
 public:
  static std::unique_ptr<LeaseStore> Open(const std::string& path, std::string& error);
  ~LeaseStore();
  LeaseStore(const LeaseStore&) = delete;
  LeaseStore& operator=(const LeaseStore&) = delete;

  bool Save(const std::string& state, int64_t now_ms);
  std::optional<std::string> Load() const;  // nullopt: never saved

 private:
  explicit LeaseStore(sqlite3* db) : db_(db) {}
  mutable std::mutex mu_;
  sqlite3* db_;
};

}  // namespace llmproxy
