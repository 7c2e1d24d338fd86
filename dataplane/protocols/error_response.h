// The proxy's own errors, in the OpenAI shape {"error":{"message","type","code"}}, so
// SDKs written against OpenAI surface them the same way they surface upstream errors.
// Pure: building the bytes only; the server decides how to send them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmproxy {

// One error the proxy makes itself (never an upstream error passed through).
struct ProxyError {
  int status = 500;
  std::string_view type;  // OpenAI error type, e.g. "invalid_request_error"
  std::string_view code;  // machine-readable code, e.g. "invalid_json"
  std::string message;    // human-readable; never contains keys or request bodies

  // {"error":{"message":...,"type":...,"code":...}} (no trailing newline).
  std::string Json() const;
  // One SSE event carrying the error: "data: {...}\n\n" (for streams that broke).
  std::string SseEvent() const;
};

// `s` made safe to echo in an error message: at most `max_bytes` bytes of it, cut on a
// character boundary (then "..." is appended), every byte that is not part of a
// well-formed UTF-8 sequence replaced by U+FFFD. The result is always valid UTF-8, so a
// JSON error body stays valid JSON whatever bytes the client sent.
std::string SanitizeUtf8(std::string_view s, size_t max_bytes = 128);

// The errors of docs/dataplane.md "Errors", one constructor each so statuses stay consistent.
ProxyError BadRequestError(std::string message);        // 400 invalid_json etc.
ProxyError InvalidApiKeyError();                        // 401
ProxyError RouteNotFoundError(std::string_view path);   // 404 unknown route
ProxyError ModelNotFoundError(std::string_view model);  // 404 unknown_model: reject
// 403: the client's key lists `models` and this is not one of them (or not a name at all).
ProxyError ModelNotAllowedError(std::string_view key_name, std::string_view model);
// 429: a client key's rpm / tpm / max_parallel (type "requests", "tokens" or
// "rate_limit_error"; code rate_limit_exceeded), or its budget (code budget_exceeded);
// docs/limits.md.
ProxyError KeyRateLimitedError(std::string_view type, std::string message);
ProxyError KeyBudgetExceededError(std::string_view key_name);
ProxyError MethodNotAllowedError(std::string_view method);  // 405
ProxyError BodyTooLargeError(uint64_t limit);               // 413
ProxyError BufferedBytesLimitError(uint64_t limit);         // 503 server.max_buffered_bytes
ProxyError ProxyOverloadedError();                          // 503 out of file descriptors
ProxyError TransferCodingNotImplementedError();             // 501 e.g. "gzip, chunked"
ProxyError HttpVersionNotSupportedError();                  // 505 HTTP/2.0 as text, 0.9
ProxyError AllBackendsFailedError(std::string message);     // 502
ProxyError NoTableError();                                  // 503 before the first table
ProxyError NoHealthyBackendError(std::string_view model);   // 503
ProxyError UpstreamTimeoutError(std::string message);       // 504
ProxyError StreamBrokenError(std::string message);          // SSE event after bytes went out

}  // namespace llmproxy
