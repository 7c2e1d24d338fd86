#include "controlplane/usage_ledger.h"

#include <sqlite3.h>

#include "controlplane/state_db.h"

namespace llmproxy {

UsageLedger::~UsageLedger() { sqlite3_close(db_); }

std::unique_ptr<UsageLedger> UsageLedger::Open(const std::string& path, std::string& error) {
  sqlite3* db = OpenStateDatabase(
      path,
      "CREATE TABLE IF NOT EXISTS usage ("
      "  hour INTEGER NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL,"
      "  requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
      "  completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,"
      "  PRIMARY KEY (hour, key, model, backend));",
      error);
  if (db == nullptr) return nullptr;
  return std::unique_ptr<UsageLedger>(new UsageLedger(db));
}

bool UsageLedger::Add(const std::vector<UsageRow>& rows) {
  if (rows.empty()) return true;
  std::lock_guard lock(mu_);
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) return false;
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db_,
                     "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (hour, key, model, backend) DO UPDATE SET "
                     "requests = requests + excluded.requests, "
                     "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                     "completion_tokens = completion_tokens + excluded.completion_tokens, "
                     "cost_usd = cost_usd + excluded.cost_usd",
                     -1, &stmt, nullptr);
  bool ok = stmt != nullptr;
  for (const UsageRow& r : rows) {
    if (!ok) break;
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, r.hour - r.hour % 3600);
    sqlite3_bind_text(stmt, 2, r.key.data(), static_cast<int>(r.key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 3, r.model.data(), static_cast<int>(r.model.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 4, r.backend.data(), static_cast<int>(r.backend.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 5, static_cast<int64_t>(r.requests));
    sqlite3_bind_int64(stmt, 6, static_cast<int64_t>(r.prompt_tokens));
    sqlite3_bind_int64(stmt, 7, static_cast<int64_t>(r.completion_tokens));
    sqlite3_bind_double(stmt, 8, r.cost_usd);
    ok = sqlite3_step(stmt) == SQLITE_DONE;
  }
  sqlite3_finalize(stmt);
  sqlite3_exec(db_, ok ? "COMMIT" : "ROLLBACK", nullptr, nullptr, nullptr);
  return ok;
}

std::vector<UsageRow> UsageLedger::Query(const std::optional<std::string>& key,
                                         int64_t since) const {
  std::lock_guard lock(mu_);
  std::vector<UsageRow> out;
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db_,
                     key ? "SELECT * FROM usage WHERE hour >= ? AND key = ? "
                           "ORDER BY hour, key, model, backend"
                         : "SELECT * FROM usage WHERE hour >= ? ORDER BY hour, key, model, backend",
                     -1, &stmt, nullptr);
  if (stmt == nullptr) return out;
  sqlite3_bind_int64(stmt, 1, since - since % 3600);
  if (key) sqlite3_bind_text(stmt, 2, key->data(), static_cast<int>(key->size()), SQLITE_TRANSIENT);
  auto text = [&](int col) {
    const unsigned char* t = sqlite3_column_text(stmt, col);
    return t == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(t),
                                      static_cast<size_t>(sqlite3_column_bytes(stmt, col)));
  };
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    UsageRow r;
    r.hour = sqlite3_column_int64(stmt, 0);
    r.key = text(1);
    r.model = text(2);
    r.backend = text(3);
    r.requests = static_cast<uint64_t>(sqlite3_column_int64(stmt, 4));
    r.prompt_tokens = static_cast<uint64_t>(sqlite3_column_int64(stmt, 5));
    r.completion_tokens = static_cast<uint64_t>(sqlite3_column_int64(stmt, 6));
    r.cost_usd = sqlite3_column_double(stmt, 7);
    out.push_back(std::move(r));
  }
  sqlite3_finalize(stmt);
  return out;
}

}  // namespace llmproxy
