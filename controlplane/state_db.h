// Opening the control plane's SQLite state database (control_plane.state_path): WAL mode,
// a busy timeout, and the caller's tables created when missing. Shared by the key store
// and the usage ledger, which each keep a connection of their own.
#pragma once

#include <string>

struct sqlite3;

namespace llmproxy {

// The open database with `schema` (SQL statements) applied; nullptr with `error` set when
// the file cannot be opened or created, or is not a usable database.
sqlite3* OpenStateDatabase(const std::string& path, const char* schema, std::string& error);

}  // namespace llmproxy
