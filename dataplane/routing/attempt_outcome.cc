#include "dataplane/routing/attempt_outcome.h"

namespace llmproxy {

std::string_view ToString(AttemptOutcome outcome) {
  switch (outcome) {
    case AttemptOutcome::kSuccess:
      return "success";
    case AttemptOutcome::kClientError:
      return "client_error";
    case AttemptOutcome::kContextLengthExceeded:
      return "context_length_exceeded";
    case AttemptOutcome::kRateLimited:
      return "rate_limited";
    case AttemptOutcome::kServerError:
      return "server_error";
    case AttemptOutcome::kAuthError:
      return "auth_error";
    case AttemptOutcome::kConnectError:
      return "connect_error";
    case AttemptOutcome::kTlsError:
      return "tls_error";
    case AttemptOutcome::kTimeout:
      return "timeout";
    case AttemptOutcome::kProtocolError:
      return "protocol_error";
    case AttemptOutcome::kBodyTooLarge:
      return "body_too_large";
    case AttemptOutcome::kBrokenStream:
      return "broken_stream";
    case AttemptOutcome::kProxyOverloaded:
      return "proxy_overloaded";
    case AttemptOutcome::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

}  // namespace llmproxy
