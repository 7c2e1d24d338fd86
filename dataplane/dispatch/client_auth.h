// Client authentication: when auth.keys is set, a request must carry
// `Authorization: Bearer <one of the keys>`, or `x-api-key: <one of the keys>` as
// Anthropic's SDKs and Claude Code send it; with no keys the proxy is open, as the
// original program was. Pure.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llmproxy {

// True when `keys` is empty, or `authorization` is "Bearer <k>" (scheme case-insensitive)
// for some k in `keys`. Compares in constant time per key so response timing does not
// reveal how much of a key was right.
bool IsClientAuthorized(const std::vector<std::string>& keys, std::string_view authorization);
// The same, or `x_api_key` (surrounding blanks trimmed) is one of the keys.
bool IsClientAuthorized(const std::vector<std::string>& keys, std::string_view authorization,
                        std::string_view x_api_key);

}  // namespace llmproxy
