// Client authentication: when auth.keys is set, a request must carry
// `Authorization: Bearer <key>`, or `x-api-key: <key>` as Anthropic's SDKs and Claude Code
// send it; with no keys the proxy is open, as the original program was. Keys are known
// only by their SHA-256 (common/config/key_hash.h): the presented key is hashed and the
// digest compared with every configured one. Pure.
#pragma once

#include <string_view>
#include <vector>

#include "common/config/config.h"

namespace llmproxy {

struct ClientAuth {
  bool ok = false;
  const ClientKey* key = nullptr;  // the matching key (owned by the table); null when open
};

// `keys` empty: ok, no key. Otherwise the key whose digest is that of the Bearer token of
// `authorization` (scheme case-insensitive) or else of `x_api_key` (blanks trimmed). Every
// digest is compared in full, so timing reveals nothing about which key was near.
ClientAuth AuthenticateClient(const std::vector<ClientKey>& keys, std::string_view authorization,
                              std::string_view x_api_key);

// May `key` (null: an open gateway or an unrestricted key) ask for model name `requested`
// (a served model or an alias, as the client sent it)?
bool KeyAllowsModel(const ClientKey* key, std::string_view requested);

}  // namespace llmproxy
