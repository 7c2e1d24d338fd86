#include "controlplane/usage_ledger.h"

#include "controlplane/state_db.h"

namespace llmproxy {
namespace {

// Added after the first version: a table without it gets it (0 in the old rows).
std::string AddCachedColumn(sqlite3* db) {
  {
    Statement info(db, "PRAGMA table_info(usage)");
    while (info.ok() && info.Step() == SQLITE_ROW) {
      if (info.Text(1) == "cached_prompt_tokens") return {};
    }
  }
  char* message = nullptr;
  const int rc = sqlite3_exec(
      db, "ALTER TABLE usage ADD COLUMN cached_prompt_tokens INTEGER NOT NULL DEFAULT 0", nullptr,
      nullptr, &message);
  std::string error;
  if (rc != SQLITE_OK) error = message != nullptr ? message : sqlite3_errmsg(db);
  sqlite3_free(message);
  return error;
}

}  // namespace

UsageLedger::~UsageLedger() { sqlite3_close(db_); }

std::unique_ptr<UsageLedger> UsageLedger::Open(const std::string& path, std::string& error) {
  sqlite3* db = OpenStateDatabase(
      path,
      "CREATE TABLE IF NOT EXISTS usage ("
      "  hour INTEGER NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL,"
      "  requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
      "  completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,"
      "  cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,"
      "  PRIMARY KEY (hour, key, model, backend));",
      error);
  if (db == nullptr) return nullptr;
  if (std::string why = AddCachedColumn(db); !why.empty()) {
    error = "the state database " + path +
            " is not usable: cannot add the usage column cached_prompt_tokens: " + why;
    sqlite3_close(db);
    return nullptr;
  }
  return std::unique_ptr<UsageLedger>(new UsageLedger(db));
}

bool UsageLedger::Add(const std::vector<UsageRow>& rows) {
  if (rows.empty()) return true;
  std::lock_guard lock(mu_);
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) return false;
  bool ok;
  {
    Statement s(db_,
                "INSERT INTO usage (hour, key, model, backend, requests, prompt_tokens,"
                " completion_tokens, cost_usd, cached_prompt_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (hour, key, model, backend) DO UPDATE SET "
                "requests = requests + excluded.requests, "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "cost_usd = cost_usd + excluded.cost_usd, "
                "cached_prompt_tokens = cached_prompt_tokens + excluded.cached_prompt_tokens");
    ok = s.ok();
    for (const UsageRow& r : rows) {
      if (!ok) break;
      s.Reset();
      s.Bind(1, r.hour - r.hour % 3600);
      s.Bind(2, r.key);
      s.Bind(3, r.model);
      s.Bind(4, r.backend);
      s.Bind(5, static_cast<int64_t>(r.requests));
      s.Bind(6, static_cast<int64_t>(r.prompt_tokens));
      s.Bind(7, static_cast<int64_t>(r.completion_tokens));
      s.Bind(8, r.cost_usd);
      s.Bind(9, static_cast<int64_t>(r.cached_prompt_tokens));
      ok = s.Step() == SQLITE_DONE;
    }
  }
  sqlite3_exec(db_, ok ? "COMMIT" : "ROLLBACK", nullptr, nullptr, nullptr);
  return ok;
}

std::vector<UsageRow> UsageLedger::Query(const std::optional<std::string>& key,
                                         int64_t since) const {
  std::lock_guard lock(mu_);
  std::vector<UsageRow> out;
  // Columns by name, not `*`: their order in the table is the migrations' business.
  constexpr const char* kColumns =
      "SELECT hour, key, model, backend, requests, prompt_tokens, completion_tokens, cost_usd,"
      " cached_prompt_tokens FROM usage WHERE hour >= ?";
  const std::string sql =
      std::string(kColumns) + (key ? " AND key = ?" : "") + " ORDER BY hour, key, model, backend";
  Statement s(db_, sql.c_str());
  s.Bind(1, since - since % 3600);
  if (key) s.Bind(2, *key);
  while (s.ok() && s.Step() == SQLITE_ROW) {
    out.push_back(UsageRow{s.Int(0), s.Text(1), s.Text(2), s.Text(3),
                           static_cast<uint64_t>(s.Int(4)), static_cast<uint64_t>(s.Int(5)),
                           static_cast<uint64_t>(s.Int(6)), s.Real(7),
                           static_cast<uint64_t>(s.Int(8))});
  }
  return out;
}

}  // namespace llmproxy
