// What one upstream attempt's result means for the request (retry or not) and for the
// backend's health (docs/routing.md):
//
//   result                         action             health           outcome label
//   2xx                            kSuccess           success          success
//   connect error (DNS/TCP/send)   kRetry             failure          connect_error
//   TLS handshake/verification     kRetry             failure          tls_error
//   timeout before the first byte  kRetry             failure          timeout
//   malformed or cut-short answer  kRetry             failure          protocol_error
//   answer over the size limit     kGiveUp            neutral(**)      body_too_large
//   429 with a valid Retry-After   kRetry             cooldown = it    rate_limited
//   429 without one                kRetry             failure          rate_limited
//   5xx                            kRetry             failure          server_error
//   401, 403                       kRetryAndEject     eject now        auth_error
//   other 4xx (and 1xx/3xx)        kPassThrough       success(*)       client_error
//   status outside 100..599        kRetry             failure          server_error
//   stream broken after bytes sent kGiveUp            failure          broken_stream
//   client went away               kGiveUp            neutral          cancelled
// (*) the backend answered sensibly, so it counts as alive.
// (**) the size follows from the request, so another backend would answer as much, and
//      the backend itself is fine; the client gets a 502.
// A stream's attempt is classified when the stream ends (relayed to its end: its status
// row; broken: broken_stream), so a backend whose streams break keeps counting failures.
//
// Pure: the wall-clock `now` is passed in (only an HTTP-date Retry-After needs it).
// The attempt loop that applies these decisions is AttemptPlanner (attempt_planner.h).
#pragma once

#include <optional>
#include <string_view>

#include "common/config/config.h"
#include "dataplane/routing/attempt_outcome.h"
#include "dataplane/routing/clock.h"

namespace llmproxy {

struct AttemptResult {
  enum class Kind {
    kResponse,       // a response head arrived: see status
    kConnectError,   // DNS or TCP connect failed, or the request could not be sent
    kTlsError,       // TLS handshake (certificate verification included) failed
    kTimeout,        // no response head (streams: no first byte) in time
    kProtocolError,  // the answer was not valid HTTP/1.x, or ended before it was complete
    kBodyTooLarge,   // a non-streamed answer exceeded the response size limit
    kBrokenStream,   // failed after bytes went to the client
    kCancelled,      // the client disconnected
  };
  Kind kind = Kind::kResponse;
  int status = 0;                // kResponse only
  std::string_view retry_after;  // the response's Retry-After header; empty if absent

  static AttemptResult Response(int status, std::string_view retry_after = {}) {
    return {Kind::kResponse, status, retry_after};
  }
  static AttemptResult Of(Kind kind) { return {kind, 0, {}}; }
};

enum class RetryAction {
  kSuccess,        // relay the response
  kRetry,          // try another backend if one is left, else relay this error
  kRetryAndEject,  // same, and the backend was ejected (its key is bad)
  kPassThrough,    // relay the response as it came; do not retry
  kGiveUp,         // nothing to relay or retry (client gone, or bytes already sent)
};

enum class HealthEffect {
  kSuccess,   // HealthTracker::OnSuccess
  kFailure,   // OnFailure
  kEject,     // OnAuthFailure
  kCooldown,  // OnRetryAfter(cooldown)
  kNeutral,   // OnNeutral
};

struct RetryDecision {
  RetryAction action = RetryAction::kSuccess;
  HealthEffect health = HealthEffect::kSuccess;
  std::optional<Millis> cooldown;  // kCooldown: the parsed Retry-After
  AttemptOutcome outcome = AttemptOutcome::kSuccess;

  bool retryable() const {
    return action == RetryAction::kRetry || action == RetryAction::kRetryAndEject;
  }
  bool operator==(const RetryDecision&) const = default;
};

RetryDecision ClassifyAttempt(const AttemptResult& result, WallTime now);

// Retry-After (RFC 9110 10.2.3): delay-seconds ("120") or an HTTP-date (IMF-fixdate
// "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete RFC 850 and asctime forms). A date
// in the past gives 0; huge values are clamped to a year. nullopt for anything else
// (negative, fractional, garbage): the 429 then counts as a plain health failure.
std::optional<Millis> ParseRetryAfter(std::string_view value, WallTime now);

}  // namespace llmproxy
