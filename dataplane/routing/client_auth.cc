#include "dataplane/routing/client_auth.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "common/config/key_hash.h"

namespace llmproxy {

namespace {

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;  // digests all have one length
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The token of "Bearer <token>"; empty when the header is not of that form.
std::string_view BearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return {};
  }
  std::string_view rest = authorization.substr(kScheme.size());
  if (rest.front() != ' ') return {};
  return Trim(rest);
}

const ClientKey* Match(const std::vector<ClientKey>& keys, std::string_view presented) {
  if (presented.empty()) return nullptr;
  const std::array<char, 64> digits = Sha256HexDigits(presented);
  const std::string_view digest(digits.data(), digits.size());
  const ClientKey* found = nullptr;
  for (const ClientKey& key : keys) {
    if (ConstantTimeEquals(key.sha256, digest) && found == nullptr) found = &key;
  }
  return found;
}

}  // namespace

ClientAuth AuthenticateClient(const std::vector<ClientKey>& keys, std::string_view authorization,
                              std::string_view x_api_key) {
  if (keys.empty()) return {.ok = true, .key = nullptr};
  const ClientKey* key = Match(keys, BearerToken(authorization));
  if (key == nullptr) key = Match(keys, Trim(x_api_key));
  return {.ok = key != nullptr, .key = key};
}

bool KeyAllowsModel(const ClientKey* key, std::string_view requested) {
  if (key == nullptr || key->models.empty()) return true;
  return std::find(key->models.begin(), key->models.end(), requested) != key->models.end();
}

}  // namespace llmproxy
