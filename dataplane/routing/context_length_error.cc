#include "dataplane/routing/context_length_error.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include <nlohmann/json.hpp>

namespace llmproxy {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 12> kPhrases = {
    "context_length_exceeded",
    "context length exceeded",
    "maximum context length",
    "context_window_exceeded",
    "context window",
    "context length",
    "prompt is too long",
    "input is too long",
    "reduce the length of the messages",
    "too many tokens",
    "exceeds the maximum number of tokens",
    "maximum number of tokens allowed",
};

std::string Lower(std::string_view s) {
  std::string out(s.substr(0, kMaxContextErrorBytes));
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool Mentions(const std::string& lowered) {
  return std::any_of(kPhrases.begin(), kPhrases.end(),
                     [&](std::string_view p) { return lowered.find(p) != std::string::npos; });
}

// Digits (with thousands commas) starting at `at`; nullopt if none.
std::optional<uint64_t> NumberAt(const std::string& s, size_t at) {
  uint64_t n = 0;
  size_t digits = 0;
  for (size_t i = at; i < s.size(); ++i) {
    const char c = s[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      if (n > (UINT64_MAX - 9) / 10) return std::nullopt;
      n = n * 10 + static_cast<uint64_t>(c - '0');
      ++digits;
    } else if (c == ',' && digits > 0 && i + 1 < s.size() &&
               std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      continue;
    } else {
      break;
    }
  }
  if (digits == 0) return std::nullopt;
  return n;
}

// The number just before `at` (skipping spaces), as in "200000 maximum".
std::optional<uint64_t> NumberBefore(const std::string& s, size_t at) {
  size_t end = at;
  while (end > 0 && s[end - 1] == ' ') --end;
  size_t begin = end;
  while (begin > 0 && (std::isdigit(static_cast<unsigned char>(s[begin - 1])) ||
                       (s[begin - 1] == ',' && begin > 1 &&
                        std::isdigit(static_cast<unsigned char>(s[begin - 2]))))) {
    --begin;
  }
  if (begin == end) return std::nullopt;
  return NumberAt(s, begin);
}

std::optional<uint64_t> StatedWindow(const std::string& m) {
  // "<phrase> N"
  constexpr std::array<std::string_view, 7> kBefore = {
      "maximum context length is ",
      "context length is ",
      "context window is ",
      "context length of ",
      "context window of ",
      "maximum number of tokens allowed (",
      "maximum of ",
  };
  for (std::string_view p : kBefore) {
    if (size_t at = m.find(p); at != std::string::npos) {
      if (auto n = NumberAt(m, at + p.size())) return n;
    }
  }
  // "N maximum" (Anthropic "... > 200000 maximum", Mistral "32768 maximum context length")
  if (size_t at = m.find(" maximum"); at != std::string::npos) {
    if (auto n = NumberBefore(m, at)) return n;
  }
  return std::nullopt;
}

void Collect(const json& v, std::string& text) {
  if (v.is_string()) {
    if (!text.empty()) text += '\n';
    text += v.get_ref<const std::string&>();
  }
}

}  // namespace

std::optional<ContextLengthError> ReadContextLengthError(std::string_view body) {
  if (body.empty() || body.size() > kMaxContextErrorBytes) return std::nullopt;
  const json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  // The error object's words: code, type and message (and a bare string error/detail).
  std::string text;
  const json* error = &doc;
  if (auto it = doc.find("error"); it != doc.end()) {
    if (it->is_object()) {
      error = &*it;
    } else {
      Collect(*it, text);
    }
  }
  for (const char* field : {"code", "type", "message"}) {
    if (auto it = error->find(field); it != error->end()) Collect(*it, text);
  }
  if (auto it = doc.find("detail"); it != doc.end()) Collect(*it, text);
  if (text.empty()) return std::nullopt;
  const std::string lowered = Lower(text);
  if (!Mentions(lowered)) return std::nullopt;
  return ContextLengthError{StatedWindow(lowered)};
}

}  // namespace llmproxy
