#include "controlplane/lease_store.h"

#include "controlplane/state_db.h"

namespace llmproxy {

LeaseStore::~LeaseStore() { sqlite3_close(db_); }

std::unique_ptr<LeaseStore> LeaseStore::Open(const std::string& path, std::string& error) {
  sqlite3* db = OpenStateDatabase(path,
                                  "CREATE TABLE IF NOT EXISTS lease_state ("
                                  "  id INTEGER PRIMARY KEY CHECK (id = 1),"
                                  "  state TEXT NOT NULL, saved_ms INTEGER NOT NULL);",
                                  error);
  if (db == nullptr) return nullptr;
  return std::unique_ptr<LeaseStore>(new LeaseStore(db));
}

bool LeaseStore::Save(const std::string& state, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Statement s(
      db_,
      "INSERT INTO lease_state VALUES (1, ?, ?) "
      "ON CONFLICT (id) DO UPDATE SET state = excluded.state, saved_ms = excluded.saved_ms");
  if (!s.ok()) return false;
  s.Bind(1, state);
  s.Bind(2, now_ms);
  return s.Step() == SQLITE_DONE;
}

std::optional<std::string> LeaseStore::Load() const {
  std::lock_guard lock(mu_);
  Statement s(db_, "SELECT state FROM lease_state WHERE id = 1");
  if (!s.ok() || s.Step() != SQLITE_ROW) return std::nullopt;
  return s.Text(0);
}

}  // namespace llmproxy
