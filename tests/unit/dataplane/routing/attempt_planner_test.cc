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

}  // namespace
}  // namespace llmproxy
