// `llmproxy-ctl admin ...`: a small client of a running control plane's Admin service.
// Prints readable tables, or JSON with --json (stable field names, numbers as numbers).
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "llmproxy/v1/admin.pb.h"

namespace llmproxy {

// `args` are the words after "admin". Returns the exit code: 0 ok, 1 the call failed or
// a reload was rejected, 2 usage error.
int RunAdminCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

void PrintAdminUsage(std::ostream& out);

// The limit flags of `keys create`, as given: --rpm N, --tpm N, --max-parallel N,
// --budget-usd X | --budget-tokens N, --budget-period D.
struct KeyLimitFlags {
  std::optional<std::string> rpm, tpm, max_parallel, budget_usd, budget_tokens, budget_period;
  bool any() const {
    return rpm || tpm || max_parallel || budget_usd || budget_tokens || budget_period;
  }
};
// Checks the flags and sets them on `req` (a budget's period defaults to 30d); "" or the
// usage error to print (exit 2). The control plane checks the same bounds again.
std::string ApplyKeyLimitFlags(const KeyLimitFlags& flags, v1::CreateKeyRequest& req);

}  // namespace llmproxy
