// The attempt planner's repeats (docs/routing.md, "Retries"): once no untried candidate
// is left, a transient failure is tried again on a tried backend after a doubling,
// jittered backoff; a Retry-After holds its whole provider account and is never cut short.
#include "dataplane/routing/attempt_planner.h"

#include <gtest/gtest.h>

#include <vector>

#include "routing_test_util.h"

namespace llmproxy {
namespace {

using namespace llmproxy::testing;

const WallTime kWallNow = WallTime{} + std::chrono::hours(24 * 365 * 50);

RetryDecision Status(int status, std::string_view retry_after = {}) {
  return ClassifyAttempt(AttemptResult::Response(status, retry_after), kWallNow);
}
RetryDecision Failure(AttemptResult::Kind kind) {
  return ClassifyAttempt(AttemptResult::Of(kind), kWallNow);
}

Config OneBackend() {
  // Round-robin draws nothing: every random value goes to the backoff jitter.
  Config c = MakeConfig({MakeBackend("only", {"m"})}, BalanceMode::kRoundRobin);
  c.retry = 3;
  c.health.failure_threshold = 100;
  return c;
}

// The waits of every attempt of one request whose attempts all end with `decision`.
std::vector<Millis> Waits(const Config& c, Random& random, const RetryDecision& decision) {
  auto table = RoutingTable::Build(c, 1);
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  std::vector<Millis> waits;
  while (auto attempt = planner.Next()) {
    waits.push_back(attempt->wait);
    clock.Advance(attempt->wait);
    planner.Report(*attempt, decision);
  }
  return waits;
}

TEST(AttemptPlanner, ASingleBackendIsRepeatedWithADoublingBackoff) {
  // Jitter drawn at its lowest: exactly half of each doubling step.
  ScriptedRandom low({0});
  EXPECT_EQ(Waits(OneBackend(), low, Status(503)),
            (std::vector<Millis>{Millis(0), Millis(125), Millis(250), Millis(500)}));
  // And at its highest: the full step (Uniform(126) of 125 is 125).
  ScriptedRandom high({125, 250, 500});
  EXPECT_EQ(Waits(OneBackend(), high, Status(500)),
            (std::vector<Millis>{Millis(0), Millis(250), Millis(500), Millis(1000)}));
}

TEST(AttemptPlanner, JitteredBackoffStaysWithinEachStep) {
  SeededRandom random(7);
  for (int run = 0; run < 50; ++run) {
    const std::vector<Millis> waits =
        Waits(OneBackend(), random, Failure(AttemptResult::Kind::kConnectError));
    ASSERT_EQ(waits.size(), 4u);
    for (size_t i = 1; i < waits.size(); ++i) {
      const int64_t step = int64_t{250} << (i - 1);
      EXPECT_GE(waits[i].count(), step / 2);
      EXPECT_LE(waits[i].count(), step);
    }
  }
}

TEST(AttemptPlanner, OnlyTransientFailuresAreRepeated) {
  ScriptedRandom random;
  using Kind = AttemptResult::Kind;
  EXPECT_EQ(Waits(OneBackend(), random, Failure(Kind::kProtocolError)).size(), 4u);
  EXPECT_EQ(Waits(OneBackend(), random, Status(429)).size(), 4u);
  // A silent provider costs a whole timeout per try; a bad key or TLS setup stays bad.
  EXPECT_EQ(Waits(OneBackend(), random, Failure(Kind::kTimeout)).size(), 1u);
  EXPECT_EQ(Waits(OneBackend(), random, Failure(Kind::kTlsError)).size(), 1u);
  EXPECT_EQ(Waits(OneBackend(), random, Status(401)).size(), 1u);
  EXPECT_EQ(Waits(OneBackend(), random, Status(400)).size(), 1u);
}

TEST(AttemptPlanner, UntriedBackendsComeFirstAndWithoutWaiting) {
  Config c =
      MakeConfig({MakeBackend("a", {"m"}), MakeBackend("b", {"m"})}, BalanceMode::kRoundRobin);
  c.retry = 2;
  c.health.failure_threshold = 100;
  auto table = RoutingTable::Build(c, 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  std::vector<size_t> order;
  std::vector<Millis> waits;
  while (auto attempt = planner.Next()) {
    order.push_back(attempt->backend);
    waits.push_back(attempt->wait);
    clock.Advance(attempt->wait);
    planner.Report(*attempt, Status(502));
  }
  ASSERT_EQ(order.size(), 3u);
  EXPECT_NE(order[0], order[1]);
  EXPECT_EQ(waits, (std::vector<Millis>{Millis(0), Millis(0), Millis(125)}));
  EXPECT_EQ(planner.repeats(), 1u);
}

TEST(AttemptPlanner, ZeroBackoffRepeatsAtOnce) {
  Config c = OneBackend();
  c.retry_backoff = Millis(0);
  ScriptedRandom random;
  EXPECT_EQ(Waits(c, random, Status(503)), std::vector<Millis>(4, Millis(0)));
}

TEST(AttemptPlanner, RetryAfterIsWaitedOutOnTheSameBackendNeverLess) {
  ScriptedRandom random;
  EXPECT_EQ(Waits(OneBackend(), random, Status(429, "2")),
            (std::vector<Millis>{Millis(0), Millis(2000), Millis(2000), Millis(2000)}));
  // Shorter than the backoff: the backoff.
  EXPECT_EQ(Waits(OneBackend(), random, Status(429, "0")),
            (std::vector<Millis>{Millis(0), Millis(125), Millis(250), Millis(500)}));
}

TEST(AttemptPlanner, RetryAfterBeyondMaxRetryWaitIsNotWaited) {
  Config c = OneBackend();
  c.max_retry_wait = std::chrono::seconds(10);
  ScriptedRandom random;
  EXPECT_EQ(Waits(c, random, Status(429, "11")).size(), 1u);
  EXPECT_EQ(Waits(c, random, Status(429, "10")).size(), 4u);
}

TEST(AttemptPlanner, RetryAfterHoldsEveryEntryOfTheSameAccount) {
  // a1 and a2: one provider account (same origin and key); b: another provider.
  BackendConfig a1 = MakeBackend("a1", {"m"});
  BackendConfig a2 = MakeBackend("a2", {"m"});
  a2.url = a1.url;
  BackendConfig b = MakeBackend("b", {"m"});
  Config c = MakeConfig({a1, a2, b}, BalanceMode::kRoundRobin);
  c.retry = 3;
  c.health.failure_threshold = 100;
  auto table = RoutingTable::Build(c, 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  auto first = planner.Next();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->backend, 0u);  // round-robin starts at a1
  planner.Report(*first, Status(429, "3"));
  // Not a2, which spends from the same limit: the other provider, at once.
  auto second = planner.Next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->backend, 2u);
  EXPECT_EQ(second->wait, Millis(0));
  planner.Report(*second, Status(429, "3"));
  // Both accounts held for 3 s: the next attempt waits them out.
  auto third = planner.Next();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->wait, Millis(3000));
}

TEST(AttemptPlanner, AnotherKeyOnTheSameOriginIsAnotherAccount) {
  BackendConfig a1 = MakeBackend("a1", {"m"});
  BackendConfig a2 = MakeBackend("a2", {"m"});
  a2.url = a1.url;
  a2.api_key = "sk-other";
  Config c = MakeConfig({a1, a2}, BalanceMode::kRoundRobin);
  c.retry = 1;
  auto table = RoutingTable::Build(c, 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  auto first = planner.Next();
  ASSERT_TRUE(first);
  planner.Report(*first, Status(429, "3"));
  auto second = planner.Next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->backend, 1u - first->backend);
  EXPECT_EQ(second->wait, Millis(0));
}

TEST(AttemptPlanner, NoRepeatPastTheRequestDeadline) {
  auto table = RoutingTable::Build(OneBackend(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  planner.SetDeadline(clock.now() + Millis(400));
  std::vector<Millis> waits;
  while (auto attempt = planner.Next()) {
    waits.push_back(attempt->wait);
    clock.Advance(attempt->wait);
    planner.Report(*attempt, Status(503));
  }
  // 0, then 125 (ends at 125 ms), then 250 (ends at 375 ms); 500 more would pass 400 ms.
  EXPECT_EQ(waits, (std::vector<Millis>{Millis(0), Millis(125), Millis(250)}));
}

// Failover order (docs/routing.md "Failover order"): what shares a key that failed in the
// request comes last.

// x1, x2: two entries (two keys) on one origin; y: another origin.
Config TwoOnOneOrigin() {
  BackendConfig x1 = MakeBackend("x1", {"m"});
  BackendConfig x2 = MakeBackend("x2", {"m"});
  x2.url = x1.url;
  x2.api_key = "sk-x2";
  Config c = MakeConfig({x1, x2, MakeBackend("y", {"m"})}, BalanceMode::kRoundRobin);
  c.retry = 3;
  c.health.failure_threshold = 100;
  return c;
}

TEST(AttemptPlanner, AfterATimeoutTheSilentOriginsOtherEntriesAreTheLastResort) {
  for (auto kind : {AttemptResult::Kind::kTimeout, AttemptResult::Kind::kConnectError}) {
    auto table = RoutingTable::Build(TwoOnOneOrigin(), 1);
    ScriptedRandom random;
    FakeClock clock;
    AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
    auto first = planner.Next();
    ASSERT_TRUE(first);
    ASSERT_EQ(first->backend, 0u);  // round-robin starts at x1
    planner.Report(*first, Failure(kind));
    // Round-robin's turn is x2's, but x2 is on the origin that just failed: y first.
    auto second = planner.Next();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->backend, 2u);
    planner.Report(*second, Status(503));
    // Only then x2, the last untried one.
    auto third = planner.Next();
    ASSERT_TRUE(third);
    EXPECT_EQ(third->backend, 1u);
    EXPECT_EQ(third->wait, Millis(0));
  }
}

TEST(AttemptPlanner, WithoutAFailureRoundRobinKeepsItsTurn) {
  // The control for the test above: after a 400 nothing is avoided (and nothing retried).
  auto table = RoutingTable::Build(TwoOnOneOrigin(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  auto first = planner.Next();
  ASSERT_TRUE(first);
  planner.Report(*first, Status(200));
  AttemptPlanner again(table, ResolveModel(*table, "m"), random, clock.AsClock());
  auto next = again.Next();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->backend, 1u);  // x2's turn
}

TEST(AttemptPlanner, ATimedOutOriginIsNotRepeated) {
  auto table = RoutingTable::Build(TwoOnOneOrigin(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  std::vector<size_t> order;
  const RetryDecision outcomes[] = {Failure(AttemptResult::Kind::kTimeout), Status(503),
                                    Status(503), Status(503)};
  size_t i = 0;
  while (auto attempt = planner.Next()) {
    order.push_back(attempt->backend);
    clock.Advance(attempt->wait);
    planner.Report(*attempt, outcomes[std::min<size_t>(i++, 3)]);
  }
  // x1 timed out; y and x2 answered 503; the repeat goes to y, never back to the origin
  // that timed out.
  EXPECT_EQ(order, (std::vector<size_t>{0, 2, 1, 2}));
}

// One account (a1, a2: same url and key) serving m and n, alias [m, n]; b: another account.
Config OneAccountTwoModels(bool with_other_account) {
  BackendConfig a1 = MakeBackend("a1", {"m", "n"});
  BackendConfig a2 = MakeBackend("a2", {"m"});
  a2.url = a1.url;
  std::vector<BackendConfig> backends = {a1, a2};
  if (with_other_account) backends.push_back(MakeBackend("b", {"m"}));
  Config c = MakeConfig(backends, BalanceMode::kRoundRobin);
  c.model_aliases.push_back({"alias", {"m", "n"}});
  c.retry = 3;
  c.health.failure_threshold = 100;
  return c;
}

TEST(AttemptPlanner, AfterA5xxOtherAccountsComeFirstThenTheNextAliasModel) {
  {
    auto table = RoutingTable::Build(OneAccountTwoModels(true), 1);
    ScriptedRandom random;
    FakeClock clock;
    AttemptPlanner planner(table, ResolveModel(*table, "alias"), random, clock.AsClock());
    std::vector<std::pair<size_t, std::string>> order;
    while (auto attempt = planner.Next()) {
      order.emplace_back(attempt->backend, attempt->model);
      clock.Advance(attempt->wait);
      planner.Report(*attempt, Status(attempt->backend == 2 ? 429 : 500));
    }
    // a1/m fails: b (another account) for m; then a1 for n (another model); a2/m, which
    // shares a1's (account, m), last.
    EXPECT_EQ(order, (std::vector<std::pair<size_t, std::string>>{
                         {0, "m"}, {2, "m"}, {0, "n"}, {1, "m"}}));
  }
  {
    // No other account: the same entry's next alias model before a2, which shares (a, m).
    auto table = RoutingTable::Build(OneAccountTwoModels(false), 1);
    ScriptedRandom random;
    FakeClock clock;
    AttemptPlanner planner(table, ResolveModel(*table, "alias"), random, clock.AsClock());
    auto first = planner.Next();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->backend, 0u);
    planner.Report(*first, Status(503));
    auto second = planner.Next();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->backend, 0u);
    EXPECT_EQ(second->model, "n");
    EXPECT_EQ(second->wait, Millis(0));  // an untried candidate: no backoff
  }
}

TEST(AttemptPlanner, ARetryAfterHoldsTheAccountsModelNotItsOtherModels) {
  auto table = RoutingTable::Build(OneAccountTwoModels(false), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "alias"), random, clock.AsClock());
  auto first = planner.Next();
  ASSERT_TRUE(first);
  planner.Report(*first, Status(429, "5"));
  auto second = planner.Next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->model, "n");
  EXPECT_EQ(second->wait, Millis(0));
  planner.Report(*second, Status(503));
  // a2/m spends from the held (account, m): waited out, not sent at once.
  auto third = planner.Next();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->model, "m");
  EXPECT_EQ(third->wait, Millis(5000));
}

// Too long for the model: alias [small, same, large, huge] on one entry.
Config Windows() {
  BackendConfig b = MakeBackend("b", {"small", "same", "large", "bare"});
  b.context_windows = {{"small", 8192}, {"same", 8192}, {"large", 128000}};
  BackendConfig other = MakeBackend("other", {"huge"});
  other.context_windows = {{"huge", 1000000}};
  Config c = MakeConfig({b, other}, BalanceMode::kRoundRobin);
  c.model_aliases.push_back({"alias", {"small", "same", "bare", "large", "huge"}});
  c.model_aliases.push_back({"undeclared", {"bare", "large"}});
  c.retry = 5;
  return c;
}

RetryDecision ContextError(std::string_view message =
                               "This model's maximum context length is "
                               "8192 tokens. However, your messages "
                               "resulted in 9000 tokens.") {
  const std::string body = std::string(R"({"error":{"message":")") + std::string(message) +
                           R"(","type":"invalid_request_error","param":"messages",)" +
                           R"("code":"context_length_exceeded"}})";
  return ClassifyAttempt(AttemptResult::Response(400, {}, body), kWallNow);
}

TEST(AttemptPlanner, AContextLengthErrorMovesToTheNextLargerDeclaredWindow) {
  auto table = RoutingTable::Build(Windows(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "alias"), random, clock.AsClock());
  std::vector<std::string> models;
  while (auto attempt = planner.Next()) {
    models.push_back(attempt->model);
    EXPECT_EQ(attempt->wait, Millis(0));
    planner.Report(*attempt, ContextError());
  }
  // "same" is no larger, "bare" declares nothing: skipped. large, then huge; then nothing
  // larger is left and the 400 goes back.
  EXPECT_EQ(models, (std::vector<std::string>{"small", "large", "huge"}));
  EXPECT_EQ(planner.attempts(), 3u);
}

TEST(AttemptPlanner, AContextLengthErrorUsesTheStatedWindowWhenNoneIsDeclared) {
  auto table = RoutingTable::Build(Windows(), 1);
  ScriptedRandom random;
  FakeClock clock;
  {
    // "bare" declares no window; the error says 8192, and large (128000) is larger.
    AttemptPlanner planner(table, ResolveModel(*table, "undeclared"), random, clock.AsClock());
    auto first = planner.Next();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->model, "bare");
    planner.Report(*first, ContextError());
    auto second = planner.Next();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->model, "large");
  }
  {
    // The error states 200000: large is not larger.
    AttemptPlanner planner(table, ResolveModel(*table, "undeclared"), random, clock.AsClock());
    auto first = planner.Next();
    ASSERT_TRUE(first);
    planner.Report(*first, ContextError("prompt is too long: 250000 tokens > 200000 maximum"));
    EXPECT_FALSE(planner.Next());
  }
  {
    // Neither declared nor stated: nothing to compare with, the 400 goes back.
    AttemptPlanner planner(table, ResolveModel(*table, "undeclared"), random, clock.AsClock());
    auto first = planner.Next();
    ASSERT_TRUE(first);
    planner.Report(*first, ContextError("Please reduce the length of the messages."));
    EXPECT_FALSE(planner.Next());
  }
}

TEST(AttemptPlanner, AContextLengthErrorOutsideAnAliasIsTheAnswer) {
  auto table = RoutingTable::Build(Windows(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "small"), random, clock.AsClock());
  auto first = planner.Next();
  ASSERT_TRUE(first);
  const RetryDecision d = ContextError();
  EXPECT_EQ(d.outcome, AttemptOutcome::kContextLengthExceeded);
  EXPECT_EQ(d.health, HealthEffect::kSuccess);
  planner.Report(*first, d);
  EXPECT_FALSE(planner.Next());
  EXPECT_EQ(table->health(0).Snapshot(clock.now()).consecutive_failures, 0u);
}

TEST(AttemptPlanner, OtherClientErrorsAreNotRetriedOnAnAlias) {
  auto table = RoutingTable::Build(Windows(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "alias"), random, clock.AsClock());
  auto first = planner.Next();
  ASSERT_TRUE(first);
  const std::string policy =
      R"({"error":{"message":"Your request was rejected as a result of our safety system.",)"
      R"("type":"invalid_request_error","code":"content_policy_violation"}})";
  const RetryDecision d = ClassifyAttempt(AttemptResult::Response(400, {}, policy), kWallNow);
  EXPECT_EQ(d.action, RetryAction::kPassThrough);
  planner.Report(*first, d);
  EXPECT_FALSE(planner.Next());
}

}  // namespace
}  // namespace llmproxy
