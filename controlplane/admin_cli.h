// `llmproxy-ctl admin ...`: a small client of a running control plane's Admin service.
// Prints readable tables, or JSON with --json (stable field names, numbers as numbers).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace llmproxy {

// `args` are the words after "admin". Returns the exit code: 0 ok, 1 the call failed or
// a reload was rejected, 2 usage error.
int RunAdminCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

void PrintAdminUsage(std::ostream& out);

}  // namespace llmproxy
