// Client keys are kept and compared as SHA-256 digests (docs/config.md "auth"): the
// control plane hashes the keys of the file once, workers get only the digests, and a
// presented key is hashed before it is compared, so no process past the config loader
// holds a client key in memory.
#pragma once

#include <string>
#include <string_view>

namespace llmproxy {

// The SHA-256 of `key`, 64 lowercase hex digits.
std::string Sha256Hex(std::string_view key);

// `text` as a digest Sha256Hex could have made (64 hex digits, either case), lowercased;
// "" when it is not one.
std::string NormalizeSha256Hex(std::string_view text);

// A client key's name: 1 to 64 of A-Z a-z 0-9 . _ - (it labels logs, metrics and admin).
bool IsClientKeyName(std::string_view name);

}  // namespace llmproxy
