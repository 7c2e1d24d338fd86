// Semantic checks of a Config, shared by the YAML loader (which maps each issue's path
// back to a file:line:column) and by workers validating a pushed RoutingTable.
// Messages never contain a key, url or header value: only names and field paths.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "common/config/config.h"

namespace llmproxy {

// Bounds of a key's limits (auth.keys[].rpm, tpm, max_parallel, budget; docs/config.md
// "auth"): the loader refuses values outside them at their place in the file, the checks
// below refuse them in a pushed table or a stored key, and `admin keys create` before sending.
inline constexpr uint64_t kMaxKeyRate = 1'000'000'000'000;  // rpm, tpm, max_parallel
inline constexpr double kMaxBudgetUsd = 1e9;
inline constexpr uint64_t kMaxBudgetTokens = 1'000'000'000'000'000;
inline constexpr Millis kMaxBudgetPeriod = std::chrono::hours(24 * 366);

struct ConfigIssue {
  bool warning = false;
  // Field path such as "backends[1].name" or "model_aliases.gpt-4o[0]"; "" = whole file.
  std::string path;
  std::string message;  // starts with the path when there is one
};

// Fills derived defaults the original program applied: default_model = models[0];
// a backend with only default_model serves exactly that model.
void NormalizeConfig(Config& config);

// The names a client may ask for: every model a backend lists, and every alias. What a
// key's `models` may hold (auth.keys, stored keys).
std::set<std::string, std::less<>> RequestableModelNames(const Config& config);

// Every semantic problem (errors and warnings) in path order of the config.
std::vector<ConfigIssue> CheckConfig(const Config& config);

}  // namespace llmproxy
