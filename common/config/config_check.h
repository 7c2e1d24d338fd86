// `llmproxy-ctl --check -c FILE` (like `nginx -t`): validate a config file and say so.
#pragma once

#include <ostream>
#include <string>

namespace llmproxy {

// Loads `path` with the process environment. Valid: writes the warnings to `err`, the
// one-line summary to `out`, returns 0. Invalid: writes every error (and warning) as
// "file:line:column: message" to `err`, then "config check failed: N error(s)", returns 1.
// Never prints a key.
int RunConfigCheck(const std::string& path, std::ostream& out, std::ostream& err);

}  // namespace llmproxy
