// Attempt classification (docs/routing.md) and Retry-After.
#include "dataplane/routing/retry_policy.h"

#include <gtest/gtest.h>

#include "routing_test_util.h"

namespace llmproxy {
namespace {

using namespace llmproxy::testing;
using Kind = AttemptResult::Kind;

// Sun, 06 Nov 1994 08:49:37 GMT
WallTime Nov6_1994(int seconds_after_084937 = 0) {
  using namespace std::chrono;
  return sys_days(year(1994) / November / 6) + hours(8) + minutes(49) +
         std::chrono::seconds(37 + seconds_after_084937);
}

struct Row {
  AttemptResult result;
  RetryAction action;
  HealthEffect health;
  AttemptOutcome outcome;
};

TEST(RetryPolicy, ClassificationTable) {
  const Row rows[] = {
      {AttemptResult::Response(200), RetryAction::kSuccess, HealthEffect::kSuccess,
       AttemptOutcome::kSuccess},
      {AttemptResult::Response(201), RetryAction::kSuccess, HealthEffect::kSuccess,
       AttemptOutcome::kSuccess},
      {AttemptResult::Of(Kind::kConnectError), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kConnectError},
      {AttemptResult::Of(Kind::kTlsError), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kTlsError},
      {AttemptResult::Of(Kind::kTimeout), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kTimeout},
      {AttemptResult::Of(Kind::kProtocolError), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kProtocolError},
      {AttemptResult::Of(Kind::kBodyTooLarge), RetryAction::kGiveUp, HealthEffect::kNeutral,
       AttemptOutcome::kBodyTooLarge},
      {AttemptResult::Response(429), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kRateLimited},
      {AttemptResult::Response(500), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kServerError},
      {AttemptResult::Response(502), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kServerError},
      {AttemptResult::Response(503), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kServerError},
      {AttemptResult::Response(504), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kServerError},
      {AttemptResult::Response(401), RetryAction::kRetryAndEject, HealthEffect::kEject,
       AttemptOutcome::kAuthError},
      {AttemptResult::Response(403), RetryAction::kRetryAndEject, HealthEffect::kEject,
       AttemptOutcome::kAuthError},
      {AttemptResult::Response(400), RetryAction::kPassThrough, HealthEffect::kSuccess,
       AttemptOutcome::kClientError},
      {AttemptResult::Response(404), RetryAction::kPassThrough, HealthEffect::kSuccess,
       AttemptOutcome::kClientError},
      {AttemptResult::Response(413), RetryAction::kPassThrough, HealthEffect::kSuccess,
       AttemptOutcome::kClientError},
      {AttemptResult::Response(422), RetryAction::kPassThrough, HealthEffect::kSuccess,
       AttemptOutcome::kClientError},
      {AttemptResult::Of(Kind::kBrokenStream), RetryAction::kGiveUp, HealthEffect::kFailure,
       AttemptOutcome::kBrokenStream},
      {AttemptResult::Of(Kind::kCancelled), RetryAction::kGiveUp, HealthEffect::kNeutral,
       AttemptOutcome::kCancelled},
      // The worker out of descriptors: no backend's fault, and another would fail the same.
      {AttemptResult::Of(Kind::kProxyOverloaded), RetryAction::kGiveUp, HealthEffect::kNeutral,
       AttemptOutcome::kProxyOverloaded},
      {AttemptResult::Response(999), RetryAction::kRetry, HealthEffect::kFailure,
       AttemptOutcome::kServerError},
  };
  for (const Row& row : rows) {
    RetryDecision d = ClassifyAttempt(row.result, Nov6_1994());
    SCOPED_TRACE(::testing::Message() << "kind " << static_cast<int>(row.result.kind) << " status "
                                      << row.result.status);
    EXPECT_EQ(d.action, row.action);
    EXPECT_EQ(d.health, row.health);
    EXPECT_EQ(d.outcome, row.outcome);
    EXPECT_FALSE(d.cooldown.has_value());
  }
}

// The label words are an interface (dashboards, alerts): each outcome has its own, and the
// ones that existed before keep their spelling.
TEST(RetryPolicy, OutcomeLabelsAreDistinctAndStable) {
  const std::pair<AttemptOutcome, std::string_view> labels[] = {
      {AttemptOutcome::kSuccess, "success"},
      {AttemptOutcome::kClientError, "client_error"},
      {AttemptOutcome::kContextLengthExceeded, "context_length_exceeded"},
      {AttemptOutcome::kRateLimited, "rate_limited"},
      {AttemptOutcome::kServerError, "server_error"},
      {AttemptOutcome::kAuthError, "auth_error"},
      {AttemptOutcome::kConnectError, "connect_error"},
      {AttemptOutcome::kTlsError, "tls_error"},
      {AttemptOutcome::kTimeout, "timeout"},
      {AttemptOutcome::kProtocolError, "protocol_error"},
      {AttemptOutcome::kBodyTooLarge, "body_too_large"},
      {AttemptOutcome::kBrokenStream, "broken_stream"},
      {AttemptOutcome::kProxyOverloaded, "proxy_overloaded"},
      {AttemptOutcome::kCancelled, "cancelled"},
  };
  for (const auto& [outcome, label] : labels) EXPECT_EQ(ToString(outcome), label);
  EXPECT_EQ(std::size(labels), static_cast<size_t>(AttemptOutcome::kCancelled) + 1);
}

TEST(RetryPolicy, RetryableMeansAnotherBackendMayBeTried) {
  EXPECT_TRUE(ClassifyAttempt(AttemptResult::Response(500), Nov6_1994()).retryable());
  EXPECT_TRUE(ClassifyAttempt(AttemptResult::Response(401), Nov6_1994()).retryable());
  EXPECT_FALSE(ClassifyAttempt(AttemptResult::Response(400), Nov6_1994()).retryable());
  EXPECT_FALSE(ClassifyAttempt(AttemptResult::Response(200), Nov6_1994()).retryable());
  EXPECT_FALSE(ClassifyAttempt(AttemptResult::Of(Kind::kBrokenStream), Nov6_1994()).retryable());
}

TEST(RetryPolicy, TooManyRequestsWithRetryAfterSetsTheCooldown) {
  RetryDecision d = ClassifyAttempt(AttemptResult::Response(429, "30"), Nov6_1994());
  EXPECT_EQ(d.action, RetryAction::kRetry);
  EXPECT_EQ(d.health, HealthEffect::kCooldown);
  EXPECT_EQ(d.cooldown, Millis(30000));
  d = ClassifyAttempt(AttemptResult::Response(429, "Sun, 06 Nov 1994 08:50:37 GMT"), Nov6_1994());
  EXPECT_EQ(d.health, HealthEffect::kCooldown);
  EXPECT_EQ(d.cooldown, Millis(60000));
  // Unparseable: a plain failure.
  d = ClassifyAttempt(AttemptResult::Response(429, "soon"), Nov6_1994());
  EXPECT_EQ(d.health, HealthEffect::kFailure);
  EXPECT_FALSE(d.cooldown);
}

TEST(RetryAfter, DelaySeconds) {
  EXPECT_EQ(ParseRetryAfter("0", Nov6_1994()), Millis(0));
  EXPECT_EQ(ParseRetryAfter("120", Nov6_1994()), Millis(120000));
  EXPECT_EQ(ParseRetryAfter(" 5 ", Nov6_1994()), Millis(5000));
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", Nov6_1994()),
            std::chrono::duration_cast<Millis>(std::chrono::hours(24 * 365)));
}

TEST(RetryAfter, HttpDateForms) {
  const WallTime now = Nov6_1994(-10);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now), Millis(10000));
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now), Millis(10000));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:49:37 1994", now), Millis(10000));
}

TEST(RetryAfter, DateInThePastIsZero) {
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", Nov6_1994(3600)), Millis(0));
}

TEST(RetryAfter, GarbageIsRejected) {
  const WallTime now = Nov6_1994();
  for (std::string_view bad :
       {"", "  ", "-5", "1.5", "5s", "soon", "Sun, 06 Nov 1994 08:49:37",
        "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT trailing"}) {
    EXPECT_FALSE(ParseRetryAfter(bad, now).has_value()) << bad;
  }
}

}  // namespace
}  // namespace llmproxy
