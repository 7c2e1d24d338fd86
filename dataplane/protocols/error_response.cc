#include "dataplane/protocols/error_response.h"

#include "common/log/json_escape.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace llmproxy {

std::string ProxyError::Json() const {
  std::string out;
  out.reserve(64 + message.size() + type.size() + code.size());
  out += R"({"error":{"message":")";
  AppendJsonEscaped(out, message);
  out += R"(","type":")";
  AppendJsonEscaped(out, type);
  out += R"(","code":")";
  AppendJsonEscaped(out, code);
  out += "\"}}";
  return out;
}

std::string ProxyError::SseEvent() const { return "data: " + Json() + "\n\n"; }

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629 table: no
// overlongs, no surrogates, nothing above U+10FFFF), or 0 when it is not one.
size_t Utf8SequenceLength(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  }
  return n;
}

// Client input echoed in messages is cut short so an error body stays small.
std::string Clip(std::string_view s) { return SanitizeUtf8(s); }

}  // namespace

std::string SanitizeUtf8(std::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 3);
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = Utf8SequenceLength(s.substr(i));
    if (n == 0) {
      if (out.size() + kReplacement.size() > max_bytes) break;
      out += kReplacement;
      ++i;
      continue;
    }
    if (out.size() + n > max_bytes) break;
    out.append(s.substr(i, n));
    i += n;
  }
  if (i < s.size()) out += "...";
  return out;
}

ProxyError BadRequestError(std::string message) {
  return {400, "invalid_request_error", "invalid_request", std::move(message)};
}
ProxyError InvalidApiKeyError() {
  return {401, "invalid_request_error", "invalid_api_key",
          "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'."};
}
ProxyError RouteNotFoundError(std::string_view path) {
  return {404, "invalid_request_error", "not_found", "Unknown route: " + Clip(path)};
}
ProxyError ModelNotFoundError(std::string_view model) {
  return {404, "invalid_request_error", "model_not_found",
          "The model '" + Clip(model) + "' does not exist or is not served by this proxy."};
}
ProxyError ModelNotAllowedError(std::string_view key_name, std::string_view model) {
  return {403, "permission_error", "model_not_allowed",
          "The key '" + Clip(key_name) + "' may not use the model '" + Clip(model) +
              "' (auth.keys models); GET /v1/models lists the ones it may use."};
}
ProxyError KeyRateLimitedError(std::string_view type, std::string message) {
  return {429, type, "rate_limit_exceeded", std::move(message)};
}
ProxyError KeyBudgetExceededError(std::string_view key_name) {
  return {429, "insufficient_quota", "budget_exceeded",
          "The key '" + Clip(key_name) +
              "' has spent its budget for the period (auth.keys budget); "
              "`llmproxy-ctl admin usage` shows its spending."};
}
ProxyError MethodNotAllowedError(std::string_view method) {
  return {405, "invalid_request_error", "method_not_allowed",
          "Method " + Clip(method) + " is not allowed on this route."};
}
ProxyError BodyTooLargeError(uint64_t limit) {
  return {413, "invalid_request_error", "request_too_large",
          "Request body is larger than the limit of " + std::to_string(limit) + " bytes."};
}
ProxyError BufferedBytesLimitError(uint64_t limit) {
  return {503, "server_error", "server_busy",
          "The proxy is holding too many request bytes right now (server.max_buffered_bytes = " +
              std::to_string(limit) + "); retry the request later."};
}
ProxyError ProxyOverloadedError() {
  return {503, "server_error", "server_busy",
          "The proxy is out of connections right now (it could not open the backend "
          "connection); retry the request shortly."};
}
ProxyError TransferCodingNotImplementedError() {
  return {501, "invalid_request_error", "unsupported_transfer_encoding",
          "Only the chunked transfer coding is supported on requests."};
}
ProxyError HttpVersionNotSupportedError() {
  return {505, "invalid_request_error", "http_version_not_supported",
          "Only HTTP/1.0 and HTTP/1.1 are served on this port."};
}
ProxyError AllBackendsFailedError(std::string message) {
  return {502, "upstream_error", "bad_gateway", std::move(message)};
}
ProxyError NoTableError() {
  return {503, "server_error", "not_ready", "The proxy has no routing table yet."};
}
ProxyError NoHealthyBackendError(std::string_view model) {
  return {503, "server_error", "no_healthy_backend",
          "No healthy backend is available for model '" + Clip(model) + "'."};
}
ProxyError UpstreamTimeoutError(std::string message) {
  return {504, "upstream_error", "timeout", std::move(message)};
}
ProxyError StreamBrokenError(std::string message) {
  return {502, "upstream_error", "stream_broken", std::move(message)};
}

}  // namespace llmproxy
