#include "common/config/env_expander.h"

namespace llmproxy {
namespace {

bool IsNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

bool IsValidName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0])) return false;
  for (char c : name) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

}  // namespace

ExpandResult ExpandEnv(std::string_view text, const EnvLookup& env) {
  ExpandResult result;
  result.value.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t dollar = text.find("${", i);
    if (dollar == std::string_view::npos) {
      result.value.append(text.substr(i));
      break;
    }
    result.value.append(text.substr(i, dollar - i));
    const std::size_t close = text.find('}', dollar + 2);
    if (close == std::string_view::npos) {
      result.errors.push_back("unterminated '${' (expected ${NAME})");
      break;
    }
    const std::string_view name = text.substr(dollar + 2, close - dollar - 2);
    if (!IsValidName(name)) {
      result.errors.push_back(
          "invalid environment variable reference (expected ${NAME} with letters, digits, _)");
    } else if (std::optional<std::string> v = env ? env(name) : std::nullopt; v.has_value()) {
      result.value.append(*v);
      result.expanded = true;
    } else {
      result.errors.push_back("environment variable '" + std::string(name) + "' is not set");
    }
    i = close + 1;
  }
  return result;
}

}  // namespace llmproxy
