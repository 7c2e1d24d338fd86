#include "dataplane/dispatch/client_auth.h"

#include <cctype>

namespace llmproxy {

namespace {
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // The length of a configured key is not secret enough to hide; its bytes are.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}
}  // namespace

bool IsClientAuthorized(const std::vector<std::string>& keys, std::string_view authorization) {
  if (keys.empty()) return true;
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
  }
  std::string_view rest = authorization.substr(kScheme.size());
  if (rest.front() != ' ') return false;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  if (rest.empty()) return false;
  bool ok = false;
  for (const std::string& key : keys) ok |= ConstantTimeEquals(key, rest);
  return ok;
}

bool IsClientAuthorized(const std::vector<std::string>& keys, std::string_view authorization,
                        std::string_view x_api_key) {
  if (IsClientAuthorized(keys, authorization)) return true;
  while (!x_api_key.empty() && (x_api_key.front() == ' ' || x_api_key.front() == '\t')) {
    x_api_key.remove_prefix(1);
  }
  while (!x_api_key.empty() && (x_api_key.back() == ' ' || x_api_key.back() == '\t')) {
    x_api_key.remove_suffix(1);
  }
  if (x_api_key.empty()) return false;
  bool ok = false;
  for (const std::string& key : keys) ok |= ConstantTimeEquals(key, x_api_key);
  return ok;
}

}  // namespace llmproxy
