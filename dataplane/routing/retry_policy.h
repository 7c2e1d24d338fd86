// What one upstream attempt's result means for the request (retry or not) and for the
// backend's health (docs/routing.md):
//
//   result                         action           health         scope    outcome label
//   2xx                            kSuccess         success        -        success
//   connect error (DNS/TCP/send)   kRetry           failure        origin   connect_error
//   TLS handshake/verification     kRetry           failure        origin   tls_error
//   timeout before the first byte  kRetry           failure        origin   timeout
//   malformed or cut-short answer  kRetry           failure        origin   protocol_error
//   answer over the size limit     kGiveUp          neutral(**)    -        body_too_large
//   429 with a valid Retry-After   kRetry           cooldown = it  model    rate_limited
//   429 without one                kRetry           failure        model    rate_limited
//   5xx                            kRetry           failure        model    server_error
//   401, 403                       kRetryAndEject   eject now      account  auth_error
//   400 context length exceeded    kRetry(***)      success(*)     -        context_length_exceeded
//   other 4xx (and 1xx/3xx)        kPassThrough     success(*)     -        client_error
//   status outside 100..599        kRetry           failure        model    server_error
//   stream broken after bytes sent kGiveUp          failure        model    broken_stream
//   client went away               kGiveUp          neutral        -        cancelled
// (*) the backend answered sensibly, so it counts as alive.
// (**) the size follows from the request, so another backend would answer as much, and
//      the backend itself is fine; the client gets a 502.
// (***) only to a larger model of the alias (AttemptPlanner); with none, the 400 goes back
//      as it came (context_length_error.h says what counts as one).
// Scope: which health key the failure is about (backend_health.h): origin = (scheme, host,
// port), account = origin + key, model = (account, model). The broader keys of an
// answered failure count a success (the origin answered; the key was accepted).
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
#include "dataplane/routing/backend_health.h"
#include "dataplane/routing/clock.h"

namespace llmproxy {

struct AttemptResult {
  enum class Kind {
    kResponse,         // a response head arrived: see status
    kConnectError,     // DNS or TCP connect failed, or the request could not be sent
    kTlsError,         // TLS handshake (certificate verification included) failed
    kTimeout,          // no response head (streams: no first byte) in time
    kProtocolError,    // the answer was not valid HTTP/1.x, or ended before it was complete
    kBodyTooLarge,     // a non-streamed answer exceeded the response size limit
    kBrokenStream,     // failed after bytes went to the client
    kProxyOverloaded,  // this process is out of sockets (file descriptors)
    kCancelled,        // the client disconnected
  };
  Kind kind = Kind::kResponse;
  int status = 0;                // kResponse only
  std::string_view retry_after;  // the response's Retry-After header; empty if absent
  // The answer's body when it was read whole (a 400 is looked at for a context-length
  // error, its first kMaxContextErrorBytes only); empty if not.
  std::string_view body;

  static AttemptResult Response(int status, std::string_view retry_after = {},
                                std::string_view body = {}) {
    return {Kind::kResponse, status, retry_after, body};
  }
  static AttemptResult Of(Kind kind) { return {kind, 0, {}, {}}; }
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
  // The key a kFailure / kEject / kCooldown is about (the table above).
  HealthScope scope = HealthScope::kModel;
  // kContextLengthExceeded: the window the error states ("maximum context length is
  // 8192 tokens"), when it states one.
  std::optional<uint64_t> context_window;

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
