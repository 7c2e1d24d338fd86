// "Did you mean" suggestions for misspelt config keys and enum values: a typo in a
// config file must not silently do nothing, and the error should point at the fix.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace llmproxy {

// Optimal string alignment distance (Levenshtein plus adjacent transposition, so
// "wieght" is one edit from "weight").
std::size_t EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `word`, or "" when none is close enough to be a likely typo
// (at most max(1, |word| / 3) edits, capped at 3).
std::string ClosestMatch(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace llmproxy
