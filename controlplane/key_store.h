// Client keys created at runtime (`llmproxy-ctl admin keys create`), kept in the control
// plane's SQLite state database (control_plane.state_path, WAL mode) so a restart forgets
// none: name, SHA-256 of the key, allowed models, limits (rpm, tpm, max_parallel, budget),
// when created and when revoked. The key itself (NewClientKeySecret, key_hash.h) never
// reaches the store. A database of the previous schema (no limit columns) gets them when
// opened. Thread-safe (one connection behind a mutex; the calls are rare and small).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.h"

struct sqlite3;

namespace llmproxy {

struct StoredKey {
  ClientKey key;
  int64_t created_at = 0;             // Unix seconds
  std::optional<int64_t> revoked_at;  // Unix seconds; set: no longer accepted
};

class KeyStore {
 public:
  // Opens (creating when missing) the database at `path`; nullptr with `error` set when
  // it cannot (unwritable directory, not a database, a newer schema).
  static std::unique_ptr<KeyStore> Open(const std::string& path, std::string& error);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // Stores `key` (name, digest, models, limits); "" or why not. Its name must be free among
  // stored keys, revoked ones included (names stay unique in the ledger); the caller
  // validates the rest (ValidateConfig).
  std::string Create(const ClientKey& key, int64_t now);
  // A new digest for the active key `name` (models and limits kept): the old key stops at
  // once.
  // "" or why not (no such active key).
  std::string Rotate(const std::string& name, const std::string& sha256, int64_t now);
  // false: no such active key.
  bool Revoke(const std::string& name, int64_t now);
  std::vector<StoredKey> List() const;    // every stored key, revoked ones included, by name
  std::vector<ClientKey> Active() const;  // the keys workers accept, by name

 private:
  explicit KeyStore(sqlite3* db) : db_(db) {}
  mutable std::mutex mu_;
  sqlite3* db_;
};

}  // namespace llmproxy
