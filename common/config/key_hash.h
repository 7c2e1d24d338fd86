// Client keys are kept and compared as SHA-256 digests (docs/config.md "auth"): the
// control plane hashes the keys of the file once, workers get only the digests, and a
// presented key is hashed before it is compared, so no process past the config loader
// holds a client key in memory.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace llmproxy {

// The SHA-256 of `key`, 64 lowercase hex digits; the array form allocates nothing (the
// request path hashes every presented key).
std::array<char, 64> Sha256HexDigits(std::string_view key);
std::string Sha256Hex(std::string_view key);

// `text` as a digest Sha256Hex could have made (64 hex digits, either case), lowercased;
// "" when it is not one.
std::string NormalizeSha256Hex(std::string_view text);

// A new client key: "sk-llmp-" and 43 base64url characters (256 random bits from
// OpenSSL); "" when the system has no randomness to give.
std::string NewClientKeySecret();

// A client key's name: 1 to 64 of A-Z a-z 0-9 . _ - (it labels logs, metrics and admin).
bool IsClientKeyName(std::string_view name);

}  // namespace llmproxy
