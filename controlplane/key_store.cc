#include "controlplane/key_store.h"

#include <openssl/rand.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "common/config/key_hash.h"
#include "controlplane/state_db.h"

namespace llmproxy {

namespace {

constexpr int kSchemaVersion = 1;

// One prepared statement, finalized on every path.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return stmt_ != nullptr; }
  void Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(t),
                                      static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool Null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

std::string NewSecret() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return {};
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = "sk-llmp-";
  // base64url without padding: 32 bytes -> 43 characters.
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3f];
  return out;
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

KeyStore::Created KeyStore::Create(const std::string& name, const std::vector<std::string>& models,
                                   int64_t now) {
  Created out;
  const std::string secret = NewSecret();
  if (secret.empty()) return {.key = {}, .error = "no random bytes for a new key"};
  std::lock_guard lock(mu_);
  Statement s(db_,
              "INSERT INTO client_keys (name, sha256, models, created_at) VALUES (?, ?, ?, ?)");
  s.Bind(1, name);
  s.Bind(2, Sha256Hex(secret));
  s.Bind(3, nlohmann::json(models).dump());
  s.Bind(4, now);
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) {
    out.error = "a stored key named '" + name + "' exists (revoked keys keep their name)";
  } else if (rc != SQLITE_DONE) {
    out.error = std::string("cannot store the key: ") + sqlite3_errmsg(db_);
  } else {
    out.key = secret;
  }
  return out;
}

KeyStore::Created KeyStore::Rotate(const std::string& name, int64_t now) {
  Created out;
  const std::string secret = NewSecret();
  if (secret.empty()) return {.key = {}, .error = "no random bytes for a new key"};
  std::lock_guard lock(mu_);
  Statement s(db_,
              "UPDATE client_keys SET sha256 = ?, created_at = ? WHERE name = ? AND revoked_at IS "
              "NULL");
  s.Bind(1, Sha256Hex(secret));
  s.Bind(2, now);
  s.Bind(3, name);
  if (s.Step() != SQLITE_DONE) {
    out.error = std::string("cannot store the key: ") + sqlite3_errmsg(db_);
  } else if (sqlite3_changes(db_) != 1) {
    out.error = "no active stored key named '" + name + "'";
  } else {
    out.key = secret;
  }
  return out;
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
