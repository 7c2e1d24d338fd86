// The words for how one upstream attempt ended: the retry policy decides them, health
// and the observers (llmproxy_upstream_attempts_total{outcome}, the access log) read them.
// Every label is documented in docs/observability.md.
#pragma once

#include <string_view>

namespace llmproxy {

// How one upstream attempt ended (llmproxy_upstream_attempts_total{outcome}).
enum class AttemptOutcome {
  kSuccess,                // 2xx (a stream: relayed to its end)
  kClientError,            // other 4xx passed through
  kContextLengthExceeded,  // 400 "context length exceeded": a larger model may take it
  kRateLimited,            // 429
  kServerError,            // 5xx, or a status outside 100..599
  kAuthError,              // 401/403 from the backend: its key is bad
  kConnectError,           // DNS, TCP connect, request not sent; also a stale pooled connection
  kTlsError,               // TLS handshake or certificate verification failed
  kTimeout,                // no response head (streams: first byte; plain: whole body) in time
  kProtocolError,          // the answer was not valid HTTP/1.x or was cut before it was complete
  kBodyTooLarge,           // a non-streamed answer over the response size limit
  kBrokenStream,           // failed after bytes went to the client
  kProxyOverloaded,        // this worker could not open a socket (EMFILE): no backend tried
  kCancelled,              // the client went away
};
std::string_view ToString(AttemptOutcome outcome);

}  // namespace llmproxy
