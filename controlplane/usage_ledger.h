// The usage ledger: per client key, model, backend and hour, the requests, tokens (cached
// prompt tokens among them) and cost (prices:, USD per million tokens) the workers reported
// (LoadReport.usage), in the control plane's SQLite state database beside the stored keys,
// so a restart forgets nothing. `llmproxy-ctl admin usage` reads it. A ledger of the
// previous schema (no cached_prompt_tokens column) gets the column, 0 in its rows, when
// opened. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace llmproxy {

struct UsageRow {
  int64_t hour = 0;  // Unix seconds of the hour's start (UTC)
  std::string key, model, backend;
  uint64_t requests = 0, prompt_tokens = 0, completion_tokens = 0;
  double cost_usd = 0;
  uint64_t cached_prompt_tokens = 0;  // of prompt_tokens
};

class UsageLedger {
 public:
  static std::unique_ptr<UsageLedger> Open(const std::string& path, std::string& error);
  ~UsageLedger();
  UsageLedger(const UsageLedger&) = delete;
  UsageLedger& operator=(const UsageLedger&) = delete;

  // Adds each row's counts to the row of the same hour, key, model and backend, in one
  // transaction. false (logged by the caller) when the database refused.
  bool Add(const std::vector<UsageRow>& rows);
  // Rows from `since` (Unix seconds; rounded down to its hour) on, of one key or all, by
  // hour then key, model and backend.
  std::vector<UsageRow> Query(const std::optional<std::string>& key, int64_t since) const;

 private:
  explicit UsageLedger(sqlite3* db) : db_(db) {}
  mutable std::mutex mu_;
  sqlite3* db_;
};

}  // namespace llmproxy
