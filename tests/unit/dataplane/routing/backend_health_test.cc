// What a failure is about (docs/routing.md "Health"): transport failures belong to the
// provider origin, 401/403 to the account, 429 and 5xx to (account, model). Trackers are
// shared by key, survive reloads by key, and a candidate is available only when its three
// trackers allow it.
#include "dataplane/routing/backend_health.h"

#include <gtest/gtest.h>

#include "dataplane/routing/attempt_planner.h"
#include "dataplane/routing/backend_state.h"
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

// a1, a2: one account (same url and key); o: same origin, another key; x elsewhere.
Config Shared() {
  BackendConfig a1 = MakeBackend("a1", {"m", "n"});
  BackendConfig a2 = MakeBackend("a2", {"m"});
  a2.url = a1.url;
  BackendConfig o = MakeBackend("o", {"m"});
  o.url = a1.url;
  o.api_key = "sk-other";
  BackendConfig x = MakeBackend("x", {"m"});
  Config c = MakeConfig({a1, a2, o, x}, BalanceMode::kRoundRobin);
  c.health.failure_threshold = 1;
  return c;
}

// The one attempt of a request for `model` that goes to `backend`, reported with `d`.
void ReportOn(const std::shared_ptr<const RoutingTable>& table, const std::string& model,
              size_t backend, const RetryDecision& d, FakeClock& clock) {
  ScriptedRandom random;
  AttemptPlanner planner(table, ResolveModel(*table, model), random, clock.AsClock());
  while (auto attempt = planner.Next()) {
    if (attempt->backend != backend) continue;  // an untried one, dropped without outcome
    planner.Report(*attempt, d);
    return;
  }
  ADD_FAILURE() << "backend " << backend << " was never picked for " << model;
}

bool Available(const RoutingTable& table, const std::string& model, size_t backend,
               SteadyTime now) {
  const CandidateGroup& group = *table.ServedBy(model);
  for (size_t k = 0; k < group.backends.size(); ++k) {
    if (group.backends[k] == backend) return table.candidate(group, k).IsAvailable(now);
  }
  ADD_FAILURE() << "backend " << backend << " does not serve " << model;
  return false;
}

TEST(BackendHealth, TrackersAreSharedByOriginAccountAndAccountModel) {
  auto table = RoutingTable::Build(Shared(), 1);
  const BackendHealth &a1 = table->health(0), &a2 = table->health(1), &o = table->health(2),
                      &x = table->health(3);
  EXPECT_EQ(a1.origin.tracker, a2.origin.tracker);
  EXPECT_EQ(a1.origin.tracker, o.origin.tracker);
  EXPECT_NE(a1.origin.tracker, x.origin.tracker);
  EXPECT_EQ(a1.account.tracker, a2.account.tracker);
  EXPECT_NE(a1.account.tracker, o.account.tracker);
  EXPECT_EQ(a1.model("m"), a2.model("m"));
  EXPECT_NE(a1.model("m"), a1.model("n"));
  EXPECT_NE(a1.model("m"), o.model("m"));
  EXPECT_EQ(a2.model("n"), nullptr);  // a2 is never sent n
}

TEST(BackendHealth, A429OnOneModelLeavesTheEntrysOtherModelsAlone) {
  auto table = RoutingTable::Build(Shared(), 1);
  FakeClock clock;
  ReportOn(table, "m", 0, Status(429, "30"), clock);
  EXPECT_FALSE(Available(*table, "m", 0, clock.now()));
  EXPECT_TRUE(Available(*table, "n", 0, clock.now())) << "a 429 on m cooled n";
  EXPECT_TRUE(table->BackendUp(0, clock.now())) << "n is up, so a1 is";
  // The same account's other entry shares the (account, m) limit; another key does not.
  EXPECT_FALSE(Available(*table, "m", 1, clock.now()));
  EXPECT_TRUE(Available(*table, "m", 2, clock.now()));
  EXPECT_TRUE(Available(*table, "m", 3, clock.now()));
  clock.Advance(seconds(30));
  EXPECT_TRUE(Available(*table, "m", 1, clock.now()));
}

TEST(BackendHealth, A5xxCountsAgainstTheAccountModelNotTheOriginOrAccount) {
  auto table = RoutingTable::Build(Shared(), 1);
  FakeClock clock;
  ReportOn(table, "m", 0, Status(503), clock);  // threshold 1: (account, m) ejected
  EXPECT_FALSE(Available(*table, "m", 1, clock.now()));
  EXPECT_TRUE(Available(*table, "n", 0, clock.now()));
  EXPECT_TRUE(Available(*table, "m", 2, clock.now()));
  EXPECT_TRUE(table->health(0).origin.tracker->IsAvailable(clock.now()));
  EXPECT_TRUE(table->health(0).account.tracker->IsAvailable(clock.now()));
}

TEST(BackendHealth, TwoEntriesOnOneOriginShareAConnectFailure) {
  for (auto kind : {AttemptResult::Kind::kConnectError, AttemptResult::Kind::kTimeout,
                    AttemptResult::Kind::kTlsError, AttemptResult::Kind::kProtocolError}) {
    auto table = RoutingTable::Build(Shared(), 1);
    FakeClock clock;
    ReportOn(table, "m", 0, Failure(kind), clock);
    for (size_t b : {0u, 1u, 2u}) {
      EXPECT_FALSE(Available(*table, "m", b, clock.now())) << b << " " << static_cast<int>(kind);
    }
    EXPECT_FALSE(Available(*table, "n", 0, clock.now()));
    EXPECT_TRUE(Available(*table, "m", 3, clock.now()));
    EXPECT_FALSE(table->BackendUp(2, clock.now()));
    // The narrower keys learnt nothing.
    EXPECT_EQ(table->health(0).account.tracker->Snapshot(clock.now()).consecutive_failures, 0u);
    EXPECT_EQ(table->health(0).model("m")->Snapshot(clock.now()).consecutive_failures, 0u);
  }
}

TEST(BackendHealth, AnAuthFailureEjectsTheAccountForEveryModelButNotTheOrigin) {
  auto table = RoutingTable::Build(Shared(), 1);
  FakeClock clock;
  ReportOn(table, "m", 0, Status(401), clock);
  EXPECT_FALSE(Available(*table, "m", 0, clock.now()));
  EXPECT_FALSE(Available(*table, "n", 0, clock.now()));
  EXPECT_FALSE(Available(*table, "m", 1, clock.now()));
  EXPECT_TRUE(Available(*table, "m", 2, clock.now())) << "another key on the same origin";
  EXPECT_FALSE(table->BackendUp(0, clock.now()));
}

TEST(BackendHealth, AnAnsweredFailureClearsTheBroaderKeysAndASuccessClearsAll) {
  Config c = Shared();
  c.health.failure_threshold = 3;
  auto table = RoutingTable::Build(c, 1);
  FakeClock clock;
  ReportOn(table, "m", 0, Failure(AttemptResult::Kind::kConnectError), clock);
  EXPECT_EQ(table->health(0).origin.tracker->Snapshot(clock.now()).consecutive_failures, 1u);
  ReportOn(table, "m", 0, Status(500), clock);  // it answered: the origin is reachable
  EXPECT_EQ(table->health(0).origin.tracker->Snapshot(clock.now()).consecutive_failures, 0u);
  EXPECT_EQ(table->health(0).model("m")->Snapshot(clock.now()).consecutive_failures, 1u);
  ReportOn(table, "m", 0, Status(200), clock);
  EXPECT_EQ(table->health(0).Snapshot(clock.now()).consecutive_failures, 0u);
}

TEST(BackendHealth, ATrialIsTakenAndGivenBackPerKey) {
  Config c = Shared();
  c.backends.resize(2);  // a1, a2: one account
  auto table = RoutingTable::Build(c, 1);
  FakeClock clock;
  ReportOn(table, "m", 0, Status(503), clock);  // (account, m) ejected for 10 s
  clock.Advance(seconds(10));
  ScriptedRandom random;
  {
    AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
    auto trial = planner.Next();
    ASSERT_TRUE(trial);
    EXPECT_FALSE(trial->fail_open);
    // The shared key's one trial is taken, for both entries.
    EXPECT_FALSE(Available(*table, "m", 0, clock.now()));
    EXPECT_FALSE(Available(*table, "m", 1, clock.now()));
  }  // dropped without an outcome: the slot is free again
  EXPECT_TRUE(Available(*table, "m", 0, clock.now()));
  EXPECT_TRUE(Available(*table, "m", 1, clock.now()));
}

TEST(BackendHealth, TrackersSurviveAReloadByKeyNotByName) {
  BackendStateRegistry registry;
  FakeClock clock;
  auto v1 = RoutingTable::Build(Shared(), 1);
  registry.Retain(*v1);
  ReportOn(v1, "m", 3, Failure(AttemptResult::Kind::kConnectError), clock);  // x's origin
  ReportOn(v1, "m", 0, Status(429, "60"), clock);                            // (a1's account, m)
  // v2 renames x and a1, keeps their urls and keys.
  Config c = Shared();
  c.backends[3].name = "x-renamed";
  c.backends[0].name = "a1-renamed";
  auto v2 = RoutingTable::Build(c, 2);
  registry.Retain(*v2);
  EXPECT_FALSE(Available(*v2, "m", 3, clock.now()));
  EXPECT_FALSE(Available(*v2, "m", 0, clock.now()));
  EXPECT_TRUE(Available(*v2, "n", 0, clock.now()));
  EXPECT_EQ(v2->health(3).origin.tracker, v1->health(3).origin.tracker);
  // A key no entry has any more is forgotten.
  Config only_x = MakeConfig({MakeBackend("x", {"m"})});
  auto v3 = RoutingTable::Build(only_x, 3);
  registry.Retain(*v3);
  EXPECT_EQ(registry.Tracker(ModelHealthKey(v1->target(0).account, "m")), nullptr);
  EXPECT_NE(registry.Tracker(OriginHealthKey(v1->target(3).origin)), nullptr);
}

TEST(BackendHealth, BackendUpNeedsOriginAccountAndOneModel) {
  auto table = RoutingTable::Build(Shared(), 1);
  FakeClock clock;
  ReportOn(table, "m", 0, Status(503), clock);
  EXPECT_TRUE(table->BackendUp(0, clock.now()));   // n still up
  EXPECT_FALSE(table->BackendUp(1, clock.now()));  // a2 has only m
  ReportOn(table, "n", 0, Status(503), clock);
  EXPECT_FALSE(table->BackendUp(0, clock.now()));
  BackendStateRegistry registry;
  registry.Retain(*table);
  const auto rows = registry.Snapshot(clock.now());
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].name, "a1");
  EXPECT_FALSE(rows[0].up);
  EXPECT_EQ(rows[0].consecutive_failures, 1u);
  EXPECT_TRUE(rows[2].up);  // "o"
}

}  // namespace
}  // namespace llmproxy
