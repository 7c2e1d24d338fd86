#include "dataplane/protocols/error_response.h"

#include "common/log/json_escape.h"

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
// Client input echoed in messages is cut short so an error body stays small.
std::string Clip(std::string_view s) {
  constexpr size_t kMax = 128;
  if (s.size() <= kMax) return std::string(s);
  return std::string(s.substr(0, kMax)) + "...";
}
}  // namespace

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
ProxyError MethodNotAllowedError(std::string_view method) {
  return {405, "invalid_request_error", "method_not_allowed",
          "Method " + Clip(method) + " is not allowed on this route."};
}
ProxyError BodyTooLargeError(uint64_t limit) {
  return {413, "invalid_request_error", "request_too_large",
          "Request body is larger than the limit of " + std::to_string(limit) + " bytes."};
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
