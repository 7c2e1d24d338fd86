// What usage costs under `prices:` (USD per million tokens, so also micro-USD per token):
// the one formula of the usage ledger, the key spend metric and budgets.
#pragma once

#include <cstdint>

#include "common/config/config.h"

namespace llmproxy {

// Cached prompt tokens (a part of `prompt_tokens`) at cached_prompt when it is set, else
// at the prompt price.
inline double UsageCostUsd(const ModelPrice& price, uint64_t prompt_tokens,
                           uint64_t completion_tokens, uint64_t cached_prompt_tokens = 0) {
  const uint64_t cached =
      cached_prompt_tokens < prompt_tokens ? cached_prompt_tokens : prompt_tokens;
  const double per_cached = price.cached_prompt ? *price.cached_prompt : price.prompt;
  return (static_cast<double>(prompt_tokens - cached) * price.prompt +
          static_cast<double>(cached) * per_cached +
          static_cast<double>(completion_tokens) * price.completion) /
         1e6;
}

}  // namespace llmproxy
