// Model resolution (docs/routing.md) and the attempt planner that walks a
// plan: retry budget, untried backends, alias order, cross-model fallback, health.
#include "dataplane/routing/model_resolver.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "dataplane/routing/attempt_planner.h"
#include "dataplane/routing/backend_state.h"
#include "routing_test_util.h"

namespace llmproxy {
namespace {

using namespace llmproxy::testing;

// deepseek(0): deepseek-chat*, deepseek-reasoner; poe(1): gpt-4o*, deepseek-chat;
// volc(2): glm-4.7*. (* = default_model)
Config Sample(BalanceMode mode = BalanceMode::kRoundRobin) {
  Config c = MakeConfig(
      {MakeBackend("deepseek", {"deepseek-chat", "deepseek-reasoner"}),
       MakeBackend("poe", {"gpt-4o", "deepseek-chat"}), MakeBackend("volc", {"glm-4.7"})},
      mode);
  c.model_aliases.push_back({"smart", {"glm-4.7", "missing-model", "deepseek-chat"}});
  c.retry = 3;
  return c;
}

const WallTime kWallNow = WallTime{} + std::chrono::hours(24 * 365 * 50);

RetryDecision Decision(int status) {
  return ClassifyAttempt(AttemptResult::Response(status), kWallNow);
}

TEST(ModelResolver, EmptyAndAutoUseAnyBackendWithItsDefaultModel) {
  auto table = RoutingTable::Build(Sample(), 1);
  for (std::string_view requested : {"", "auto"}) {
    ModelPlan plan = ResolveModel(*table, requested);
    EXPECT_EQ(plan.kind, ModelPlan::Kind::kAuto);
    ASSERT_EQ(plan.steps.size(), 1u);
    EXPECT_EQ(plan.steps[0].candidates->backends, (std::vector<size_t>{0, 1, 2}));
    EXPECT_EQ(ModelForStep(plan.steps[0], table->backend(1)), "gpt-4o");
    EXPECT_EQ(ModelForStep(plan.steps[0], table->backend(2)), "glm-4.7");
    EXPECT_FALSE(plan.unknown_fallback);
  }
}

TEST(ModelResolver, ServedModelBalancesAmongExactlyItsBackends) {
  auto table = RoutingTable::Build(Sample(BalanceMode::kRandom), 1);
  ModelPlan plan = ResolveModel(*table, "deepseek-chat");
  EXPECT_EQ(plan.kind, ModelPlan::Kind::kServed);
  ASSERT_EQ(plan.steps.size(), 1u);
  EXPECT_EQ(plan.steps[0].model, "deepseek-chat");
  EXPECT_EQ(plan.steps[0].candidates->backends, (std::vector<size_t>{0, 1}));

  // Over many requests only deepseek and poe are used, both of them, never rewritten.
  SeededRandom random(3);
  FakeClock clock;
  std::set<size_t> used;
  for (int i = 0; i < 200; ++i) {
    AttemptPlanner planner(table, ResolveModel(*table, "deepseek-chat"), random, clock.AsClock());
    auto attempt = planner.Next();
    ASSERT_TRUE(attempt);
    EXPECT_EQ(attempt->model, "deepseek-chat");
    EXPECT_FALSE(attempt->rewrite_model);
    used.insert(attempt->backend);
    planner.Report(*attempt, Decision(200));
  }
  EXPECT_EQ(used, (std::set<size_t>{0, 1}));
}

TEST(ModelResolver, AliasExpandsToItsServedModelsInOrder) {
  auto table = RoutingTable::Build(Sample(), 1);
  ModelPlan plan = ResolveModel(*table, "smart");
  EXPECT_EQ(plan.kind, ModelPlan::Kind::kAlias);
  ASSERT_EQ(plan.steps.size(), 2u);  // missing-model has no backend: skipped
  EXPECT_EQ(plan.steps[0].model, "glm-4.7");
  EXPECT_EQ(plan.steps[0].candidates->backends, (std::vector<size_t>{2}));
  EXPECT_EQ(plan.steps[1].model, "deepseek-chat");
  EXPECT_EQ(plan.steps[1].candidates->backends, (std::vector<size_t>{0, 1}));
}

TEST(ModelResolver, UnknownModelFallsBackToDefaultModelsAndIsFlagged) {
  auto table = RoutingTable::Build(Sample(), 1);
  ModelPlan plan = ResolveModel(*table, "gpt-9");
  EXPECT_EQ(plan.kind, ModelPlan::Kind::kUnknownFallback);
  EXPECT_TRUE(plan.unknown_fallback);
  EXPECT_FALSE(plan.rejected());
  ASSERT_EQ(plan.steps.size(), 1u);
  EXPECT_EQ(plan.steps[0].candidates->backends, (std::vector<size_t>{0, 1, 2}));
  EXPECT_TRUE(plan.steps[0].model.empty());
}

TEST(ModelResolver, UnknownModelIsRejectedWhenConfigured) {
  Config c = Sample();
  c.unknown_model = UnknownModelPolicy::kReject;
  auto table = RoutingTable::Build(c, 1);
  ModelPlan plan = ResolveModel(*table, "gpt-9");
  EXPECT_TRUE(plan.rejected());
  EXPECT_TRUE(plan.steps.empty());
  SeededRandom random(1);
  FakeClock clock;
  AttemptPlanner planner(table, std::move(plan), random, clock.AsClock());
  EXPECT_FALSE(planner.Next());
  // Known names are unaffected.
  EXPECT_FALSE(ResolveModel(*table, "glm-4.7").rejected());
  EXPECT_FALSE(ResolveModel(*table, "auto").rejected());
}

TEST(ModelResolver, CrossModelFallbackAppendsAnyBackendStep) {
  Config c = Sample();
  c.cross_model_fallback = true;
  auto table = RoutingTable::Build(c, 1);
  ModelPlan served = ResolveModel(*table, "glm-4.7");
  ASSERT_EQ(served.steps.size(), 2u);
  EXPECT_TRUE(served.steps[1].model.empty());
  EXPECT_EQ(served.steps[1].candidates->backends, (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(ResolveModel(*table, "smart").steps.size(), 3u);
  EXPECT_EQ(ResolveModel(*table, "auto").steps.size(), 1u);
}

TEST(AttemptPlanner, AutoRewritesToTheDefaultModel) {
  auto table = RoutingTable::Build(Sample(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "auto"), random, clock.AsClock());
  auto attempt = planner.Next();
  ASSERT_TRUE(attempt);
  EXPECT_EQ(attempt->backend, 0u);  // round-robin starts at the first backend
  EXPECT_EQ(attempt->model, "deepseek-chat");
  EXPECT_TRUE(attempt->rewrite_model);
}

TEST(AttemptPlanner, RetriesGoToUntriedBackendsWithinTheBudget) {
  Config c = MakeConfig({MakeBackend("a", {"m"}), MakeBackend("b", {"m"}), MakeBackend("c", {"m"}),
                         MakeBackend("d", {"m"}), MakeBackend("e", {"m"})},
                        BalanceMode::kRandom);
  c.retry = 2;  // three attempts in all
  c.health.failure_threshold = 100;
  auto table = RoutingTable::Build(c, 1);
  SeededRandom random(17);
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "m"), random, clock.AsClock());
  std::set<size_t> seen;
  while (auto attempt = planner.Next()) {
    EXPECT_TRUE(seen.insert(attempt->backend).second) << "backend tried twice";
    planner.Report(*attempt, Decision(502));
  }
  EXPECT_EQ(planner.attempts(), 3u);
  EXPECT_EQ(seen.size(), 3u);
}

TEST(AttemptPlanner, OnlyBackendsOfTheModelAreTriedThenRepeated) {
  auto table = RoutingTable::Build(Sample(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "deepseek-chat"), random, clock.AsClock());
  std::vector<size_t> order;
  std::vector<bool> waited;
  while (auto attempt = planner.Next()) {
    order.push_back(attempt->backend);
    waited.push_back(attempt->wait.count() > 0);
    clock.Advance(attempt->wait);
    planner.Report(*attempt, Decision(500));
  }
  // volc does not serve it; the untried ones at once, then repeats after a backoff
  // (attempt_planner_test.cc).
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 0, 1}));
  EXPECT_EQ(waited, (std::vector<bool>{false, false, true, true}));
}

TEST(AttemptPlanner, AliasTriesItsModelsInOrder) {
  auto table = RoutingTable::Build(Sample(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "smart"), random, clock.AsClock());
  std::vector<std::pair<size_t, std::string>> attempts;
  while (auto attempt = planner.Next()) {
    attempts.emplace_back(attempt->backend, attempt->model);
    EXPECT_TRUE(attempt->rewrite_model);
    planner.Report(*attempt, Decision(503));
  }
  // Every model's untried backends in order; the last attempt repeats the first model.
  EXPECT_EQ(attempts,
            (std::vector<std::pair<size_t, std::string>>{
                {2, "glm-4.7"}, {0, "deepseek-chat"}, {1, "deepseek-chat"}, {2, "glm-4.7"}}));
}

TEST(AttemptPlanner, AliasSkipsToTheNextModelWhenAllBackendsOfTheFirstAreEjected) {
  auto table = RoutingTable::Build(Sample(), 1);
  FakeClock clock;
  AccountOf(*table, 2).OnAuthFailure(clock.now());  // volc (glm-4.7) ejected
  ScriptedRandom random;
  AttemptPlanner planner(table, ResolveModel(*table, "smart"), random, clock.AsClock());
  auto attempt = planner.Next();
  ASSERT_TRUE(attempt);
  EXPECT_EQ(attempt->model, "deepseek-chat");
  EXPECT_FALSE(attempt->fail_open);
}

TEST(AttemptPlanner, CrossModelFallbackTriesOtherBackendsWithDefaultModel) {
  Config c = Sample();
  c.cross_model_fallback = true;
  auto table = RoutingTable::Build(c, 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "glm-4.7"), random, clock.AsClock());
  auto first = planner.Next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->backend, 2u);
  EXPECT_FALSE(first->rewrite_model);
  planner.Report(*first, Decision(500));
  auto second = planner.Next();
  ASSERT_TRUE(second);
  EXPECT_NE(second->backend, 2u);
  EXPECT_EQ(second->model, table->backend(second->backend).default_model);
  EXPECT_TRUE(second->rewrite_model);
}

TEST(AttemptPlanner, WithoutCrossModelFallbackAFailedModelIsTheEnd) {
  auto table = RoutingTable::Build(Sample(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "glm-4.7"), random, clock.AsClock());
  // No other backend or model: only volc, its first try and then repeats.
  while (auto attempt = planner.Next()) {
    EXPECT_EQ(attempt->backend, 2u);
    EXPECT_EQ(attempt->model, "glm-4.7");
    clock.Advance(attempt->wait);
    planner.Report(*attempt, Decision(500));
  }
  EXPECT_EQ(planner.attempts(), 4u);
  EXPECT_EQ(planner.repeats(), 3u);
}

TEST(AttemptPlanner, NoRetryAfterPassThroughOrSuccess) {
  auto table = RoutingTable::Build(Sample(), 1);
  ScriptedRandom random;
  FakeClock clock;
  for (int status : {200, 400, 404, 422}) {
    AttemptPlanner planner(table, ResolveModel(*table, "deepseek-chat"), random, clock.AsClock());
    auto attempt = planner.Next();
    ASSERT_TRUE(attempt);
    planner.Report(*attempt, Decision(status));
    EXPECT_FALSE(planner.Next()) << status;
  }
}

TEST(AttemptPlanner, ReportsDriveHealthOutstandingAndLatency) {
  Config c = Sample();
  c.health.failure_threshold = 1;
  auto table = RoutingTable::Build(c, 1);
  BackendStateRegistry registry;
  registry.Retain(*table);
  ScriptedRandom random;
  FakeClock clock;
  {
    AttemptPlanner planner(table, ResolveModel(*table, "glm-4.7"), random, clock.AsClock());
    auto attempt = planner.Next();
    ASSERT_TRUE(attempt);
    EXPECT_EQ(table->state(2).outstanding(), 1);
    planner.Report(*attempt, Decision(200), 0.25);
    EXPECT_EQ(table->state(2).outstanding(), 1);  // still relaying
  }
  EXPECT_EQ(table->state(2).outstanding(), 0);
  EXPECT_DOUBLE_EQ(table->state(2).ewma_seconds(), 0.25);

  AttemptPlanner planner(table, ResolveModel(*table, "glm-4.7"), random, clock.AsClock());
  auto attempt = planner.Next();
  ASSERT_TRUE(attempt);
  planner.Report(*attempt, Decision(503));
  EXPECT_FALSE(table->BackendUp(2, clock.now()));
  auto rows = registry.Snapshot(clock.now());
  EXPECT_FALSE(rows[2].up);
  EXPECT_EQ(rows[2].name, "volc");
}

TEST(AttemptPlanner, RetryAfterBecomesTheBackendsCooldown) {
  auto table = RoutingTable::Build(Sample(), 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "glm-4.7"), random, clock.AsClock());
  auto attempt = planner.Next();
  ASSERT_TRUE(attempt);
  planner.Report(*attempt, ClassifyAttempt(AttemptResult::Response(429, "7"), kWallNow));
  EXPECT_FALSE(table->BackendUp(2, clock.now()));
  clock.Advance(seconds(7));
  EXPECT_TRUE(table->BackendUp(2, clock.now()));
}

TEST(AttemptPlanner, AllEjectedStillTriesFailOpen) {
  Config c = Sample();
  auto table = RoutingTable::Build(c, 1);
  FakeClock clock;
  AccountOf(*table, 0).OnAuthFailure(clock.now());
  clock.Advance(seconds(1));
  AccountOf(*table, 1).OnAuthFailure(clock.now());
  ScriptedRandom random;
  AttemptPlanner planner(table, ResolveModel(*table, "deepseek-chat"), random, clock.AsClock());
  auto attempt = planner.Next();
  ASSERT_TRUE(attempt);
  EXPECT_TRUE(attempt->fail_open);
  EXPECT_EQ(attempt->backend, 0u);  // its cooldown ends first
  planner.Report(*attempt, Decision(200));
  EXPECT_TRUE(AccountOf(*table, 0).IsAvailable(clock.now()));
}

TEST(AttemptPlanner, NoRoutableBackendGivesNoAttemptAtAll) {
  Config c = Sample();
  c.backends[2].drained = true;
  auto table = RoutingTable::Build(c, 1);
  ScriptedRandom random;
  FakeClock clock;
  AttemptPlanner planner(table, ResolveModel(*table, "glm-4.7"), random, clock.AsClock());
  EXPECT_FALSE(planner.Next());
  EXPECT_EQ(planner.attempts(), 0u);  // the data plane answers 503 "no healthy backend"
}

TEST(AttemptPlanner, UnreportedTrialAttemptFreesTheTrialSlot) {
  Config c = Sample();
  auto table = RoutingTable::Build(c, 1);
  FakeClock clock;
  AccountOf(*table, 2).OnAuthFailure(clock.now());
  clock.Advance(c.health.cooldown);
  ScriptedRandom random;
  {
    AttemptPlanner planner(table, ResolveModel(*table, "glm-4.7"), random, clock.AsClock());
    auto attempt = planner.Next();
    ASSERT_TRUE(attempt);
    EXPECT_FALSE(attempt->fail_open);  // the trial
    EXPECT_FALSE(AccountOf(*table, 2).IsAvailable(clock.now()));
  }  // client went away before any outcome
  EXPECT_TRUE(AccountOf(*table, 2).IsAvailable(clock.now()));
}

TEST(AttemptPlanner, ManyThreadsShareOneTableSafely) {
  Config c = Sample(BalanceMode::kLeastBusy);
  c.health.failure_threshold = 2;
  auto table = RoutingTable::Build(c, 1);
  BackendStateRegistry registry;
  registry.Retain(*table);
  FakeClock clock;  // read-only from the threads
  std::atomic<int> served{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      SeededRandom random(100 + t);
      for (int i = 0; i < 2000; ++i) {
        AttemptPlanner planner(table, ResolveModel(*table, i % 2 ? "deepseek-chat" : "auto"),
                               random, clock.AsClock());
        while (auto attempt = planner.Next()) {
          // Every third attempt fails; the rest succeed.
          const int status = (i + static_cast<int>(attempt->backend)) % 3 == 0 ? 502 : 200;
          planner.Report(*attempt, Decision(status), 0.01);
          if (status == 200) {
            served.fetch_add(1);
            break;
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_GT(served.load(), 0);
  for (const auto& row : registry.Snapshot(clock.now())) {
    EXPECT_EQ(row.outstanding, 0) << row.name;
  }
}

}  // namespace
}  // namespace llmproxy
