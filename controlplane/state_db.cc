#include "controlplane/state_db.h"

#include <sqlite3.h>

namespace llmproxy {

sqlite3* OpenStateDatabase(const std::string& path, const char* schema, std::string& error) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    error = "cannot open the state database " + path + ": " +
            (db != nullptr ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return nullptr;
  }
  sqlite3_busy_timeout(db, 2000);
  char* message = nullptr;
  int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr,
                        &message);
  if (rc == SQLITE_OK) {
    sqlite3_free(message);
    message = nullptr;
    rc = sqlite3_exec(db, schema, nullptr, nullptr, &message);
  }
  if (rc != SQLITE_OK) {
    error = "the state database " + path +
            " is not usable: " + (message != nullptr ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    sqlite3_close(db);
    return nullptr;
  }
  return db;
}

}  // namespace llmproxy
