#include "controlplane/key_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "controlplane/state_db.h"

namespace llmproxy {

namespace {

// 1: name, sha256, models, created_at, revoked_at. 2: the limit columns (kLimitColumns).
constexpr int kSchemaVersion = 2;

// Added by version 2; a version-1 database gets them on open (AddLimitColumns). Unset
// limits are 0 (rpm, tpm, max_parallel) or NULL (no budget).
constexpr std::pair<const char*, const char*> kLimitColumns[] = {
    {"rpm", "INTEGER NOT NULL DEFAULT 0"},
    {"tpm", "INTEGER NOT NULL DEFAULT 0"},
    {"max_parallel", "INTEGER NOT NULL DEFAULT 0"},
    {"budget_usd", "REAL"},        // set: a budget in USD
    {"budget_tokens", "INTEGER"},  // set: a budget in tokens
    {"budget_period_ms", "INTEGER"},
};

std::string Schema() {
  std::string columns;
  for (const auto& [name, type] : kLimitColumns) columns += std::string(", ") + name + " " + type;
  return "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
         "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', " +
         std::to_string(kSchemaVersion) +
         ");"
         "CREATE TABLE IF NOT EXISTS client_keys ("
         "  name TEXT PRIMARY KEY,"
         "  sha256 TEXT NOT NULL UNIQUE,"
         "  models TEXT NOT NULL,"
         "  created_at INTEGER NOT NULL,"
         "  revoked_at INTEGER" +
         columns + ");";
}

// A database of an older version: the missing columns, and the version that says they are
// there, in one transaction. "" or why not.
std::string AddLimitColumns(sqlite3* db) {
  std::set<std::string> have;
  {
    Statement info(db, "PRAGMA table_info(client_keys)");
    while (info.ok() && info.Step() == SQLITE_ROW) have.insert(info.Text(1));
  }
  std::string sql;
  for (const auto& [name, type] : kLimitColumns) {
    if (!have.contains(name)) {
      sql += std::string("ALTER TABLE client_keys ADD COLUMN ") + name + " " + type + ";";
    }
  }
  sql += "UPDATE meta SET value = " + std::to_string(kSchemaVersion) +
         " WHERE key = 'schema_version' AND value < " + std::to_string(kSchemaVersion) + ";";
  char* message = nullptr;
  int rc = sqlite3_exec(db, ("BEGIN;" + sql + "COMMIT;").c_str(), nullptr, nullptr, &message);
  std::string error;
  if (rc != SQLITE_OK) {
    error = message != nullptr ? message : sqlite3_errmsg(db);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  sqlite3_free(message);
  return error;
}

std::vector<std::string> ModelsFrom(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& m : j) {
    if (m.is_string()) out.push_back(m.get<std::string>());
  }
  return out;
}

}  // namespace

std::unique_ptr<KeyStore> KeyStore::Open(const std::string& path, std::string& error) {
  sqlite3* db = OpenStateDatabase(path, Schema().c_str(), error);
  if (db == nullptr) return nullptr;
  int64_t version = -1;  // -1: unreadable
  {
    // Finalized before any close below: sqlite3_close refuses a database with a live
    // statement (and leaks it).
    Statement v(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (v.ok() && v.Step() == SQLITE_ROW) version = v.Int(0);
  }
  if (version < 0 || version > kSchemaVersion) {
    error = "the state database " + path + " was written by a newer llmproxy-ctl";
    sqlite3_close(db);
    return nullptr;
  }
  // Version 1 had no limits. Once migrated, an older llmproxy-ctl refuses the file (it
  // would drop the limits and serve the keys unlimited).
  if (version < kSchemaVersion) {
    if (std::string why = AddLimitColumns(db); !why.empty()) {
      error =
          "the state database " + path + " is not usable: cannot add the key limit columns: " + why;
      sqlite3_close(db);
      return nullptr;
    }
  }
  return std::unique_ptr<KeyStore>(new KeyStore(db));
}

KeyStore::~KeyStore() { sqlite3_close(db_); }

std::string KeyStore::Create(const ClientKey& key, int64_t now) {
  std::lock_guard lock(mu_);
  Statement s(
      db_,
      "INSERT INTO client_keys (name, sha256, models, created_at, rpm, tpm, max_parallel,"
      " budget_usd, budget_tokens, budget_period_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  s.Bind(1, key.name);
  s.Bind(2, key.sha256);
  s.Bind(3, nlohmann::json(key.models).dump());
  s.Bind(4, now);
  // The caller validated the limits (at most kMaxKeyRate, well inside int64).
  s.Bind(5, static_cast<int64_t>(key.rpm));
  s.Bind(6, static_cast<int64_t>(key.tpm));
  s.Bind(7, static_cast<int64_t>(key.max_parallel));
  // Parameters left unbound are NULL: no budget, or the other unit's column.
  if (key.budget) {
    if (key.budget->unit == KeyBudget::Unit::kUsd) {
      s.Bind(8, key.budget->amount);
    } else {
      s.Bind(9, static_cast<int64_t>(key.budget->amount));
    }
    s.Bind(10, static_cast<int64_t>(key.budget->period.count()));
  }
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) {
    return "a stored key named '" + key.name + "' exists (revoked keys keep their name)";
  }
  if (rc != SQLITE_DONE) return std::string("cannot store the key: ") + sqlite3_errmsg(db_);
  return {};
}

std::string KeyStore::Rotate(const std::string& name, const std::string& sha256, int64_t now) {
  std::lock_guard lock(mu_);
  Statement s(db_,
              "UPDATE client_keys SET sha256 = ?, created_at = ? WHERE name = ? AND revoked_at IS "
              "NULL");
  s.Bind(1, sha256);
  s.Bind(2, now);
  s.Bind(3, name);
  if (s.Step() != SQLITE_DONE) return std::string("cannot store the key: ") + sqlite3_errmsg(db_);
  if (sqlite3_changes(db_) != 1) return "no active stored key named '" + name + "'";
  return {};
}

bool KeyStore::Revoke(const std::string& name, int64_t now) {
  std::lock_guard lock(mu_);
  Statement s(db_, "UPDATE client_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL");
  s.Bind(1, now);
  s.Bind(2, name);
  return s.Step() == SQLITE_DONE && sqlite3_changes(db_) == 1;
}

std::vector<StoredKey> KeyStore::List() const {
  std::lock_guard lock(mu_);
  std::vector<StoredKey> out;
  Statement s(db_,
              "SELECT name, sha256, models, created_at, revoked_at, rpm, tpm, max_parallel,"
              " budget_usd, budget_tokens, budget_period_ms FROM client_keys ORDER BY name");
  while (s.ok() && s.Step() == SQLITE_ROW) {
    StoredKey k;
    k.key.name = s.Text(0);
    k.key.sha256 = s.Text(1);
    k.key.models = ModelsFrom(s.Text(2));
    k.created_at = s.Int(3);
    if (!s.Null(4)) k.revoked_at = s.Int(4);
    // A negative value (a hand-edited file) reads as 0, no limit, not as a huge one.
    k.key.rpm = static_cast<uint64_t>(std::max<int64_t>(s.Int(5), 0));
    k.key.tpm = static_cast<uint64_t>(std::max<int64_t>(s.Int(6), 0));
    k.key.max_parallel = static_cast<uint64_t>(std::max<int64_t>(s.Int(7), 0));
    if (!s.Null(8) || !s.Null(9)) {
      KeyBudget budget;
      if (!s.Null(8)) {
        budget.amount = s.Real(8);
      } else {
        budget.unit = KeyBudget::Unit::kTokens;
        budget.amount = static_cast<double>(s.Int(9));
      }
      budget.period = Millis(s.Int(10));
      k.key.budget = budget;
    }
    out.push_back(std::move(k));
  }
  return out;
}

std::vector<ClientKey> KeyStore::Active() const {
  std::vector<ClientKey> out;
  for (StoredKey& k : List()) {
    if (!k.revoked_at) out.push_back(std::move(k.key));
  }
  return out;
}

}  // namespace llmproxy
