// The words for how one upstream attempt ended: the retry policy decides them, health
// and the observers (llmproxy_upstream_attempts_total{outcome}, the access log) read them.
#pragma once

#include <string_view>

namespace llmproxy {

// How one upstream attempt ended (llmproxy_upstream_attempts_total{outcome}).
enum class AttemptOutcome {
  kSuccess,        // 2xx
  kClientError,    // other 4xx passed through
  kRateLimited,    // 429
  kServerError,    // 5xx
  kAuthError,      // 401/403 from the backend: its key is bad
  kConnectError,   // DNS, TCP or TLS failure
  kTimeout,        // no first byte in time
  kBrokenStream,   // failed after bytes went to the client
  kCancelled,      // the client went away
};
std::string_view ToString(AttemptOutcome outcome);

}  // namespace llmproxy
