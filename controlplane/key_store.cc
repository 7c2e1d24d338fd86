#include "controlplane/key_store.h"

#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "controlplane/state_db.h"

namespace llmproxy {

namespace {

constexpr int kSchemaVersion = 1;

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
  sqlite3* db = OpenStateDatabase(
      path,
      "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
      "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);"
      "CREATE TABLE IF NOT EXISTS client_keys ("
      "  name TEXT PRIMARY KEY,"
      "  sha256 TEXT NOT NULL UNIQUE,"
      "  models TEXT NOT NULL,"
      "  created_at INTEGER NOT NULL,"
      "  revoked_at INTEGER);",
      error);
  if (db == nullptr) return nullptr;
  {
    Statement v(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (!v.ok() || v.Step() != SQLITE_ROW || v.Int(0) > kSchemaVersion) {
      error = "the state database " + path + " was written by a newer llmproxy-ctl";
      sqlite3_close(db);
      return nullptr;
    }
  }
  return std::unique_ptr<KeyStore>(new KeyStore(db));
}

KeyStore::~KeyStore() { sqlite3_close(db_); }

std::string KeyStore::Create(const std::string& name, const std::string& sha256,
                             const std::vector<std::string>& models, int64_t now) {
  std::lock_guard lock(mu_);
  Statement s(db_,
              "INSERT INTO client_keys (name, sha256, models, created_at) VALUES (?, ?, ?, ?)");
  s.Bind(1, name);
  s.Bind(2, sha256);
  s.Bind(3, nlohmann::json(models).dump());
  s.Bind(4, now);
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) {
    return "a stored key named '" + name + "' exists (revoked keys keep their name)";
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
              "SELECT name, sha256, models, created_at, revoked_at FROM client_keys ORDER BY name");
  while (s.ok() && s.Step() == SQLITE_ROW) {
    StoredKey k;
    k.key = ClientKey{s.Text(0), s.Text(1), ModelsFrom(s.Text(2))};
    k.created_at = s.Int(3);
    if (!s.Null(4)) k.revoked_at = s.Int(4);
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
