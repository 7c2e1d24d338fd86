// RoutingTable lookups, BackendState counters, and the registry that keeps backend
// state across config reloads.
#include "dataplane/routing/routing_table.h"

#include <gtest/gtest.h>

#include <thread>

#include "dataplane/routing/backend_state.h"
#include "routing_test_util.h"

namespace llmproxy {
namespace {

using namespace llmproxy::testing;

Config ThreeBackends() {
  Config c = MakeConfig({MakeBackend("deepseek", {"deepseek-chat", "deepseek-reasoner"}, 5),
                         MakeBackend("poe", {"gpt-4o", "deepseek-chat"}, 2),
                         MakeBackend("volc", {"glm-4.7"}, 1)});
  c.model_aliases.push_back({"smart", {"gpt-4o", "glm-4.7"}});
  return c;
}

TEST(RoutingTable, ServedByListsExactlyTheBackendsOfAModelInConfigOrder) {
  auto table = RoutingTable::Build(ThreeBackends(), 7);
  EXPECT_EQ(table->version, 7u);
  const CandidateGroup* chat = table->ServedBy("deepseek-chat");
  ASSERT_NE(chat, nullptr);
  EXPECT_EQ(chat->backends, (std::vector<size_t>{0, 1}));
  ASSERT_NE(table->ServedBy("glm-4.7"), nullptr);
  EXPECT_EQ(table->ServedBy("glm-4.7")->backends, (std::vector<size_t>{2}));
  EXPECT_EQ(table->ServedBy("nope"), nullptr);
  EXPECT_EQ(table->AllBackends().backends, (std::vector<size_t>{0, 1, 2}));
}

TEST(RoutingTable, ModelsAreTheSortedUniqueUnion) {
  auto table = RoutingTable::Build(ThreeBackends(), 1);
  EXPECT_EQ(table->models,
            (std::vector<std::string>{"deepseek-chat", "deepseek-reasoner", "glm-4.7", "gpt-4o"}));
}

TEST(RoutingTable, AliasAndBackendLookups) {
  auto table = RoutingTable::Build(ThreeBackends(), 1);
  const ModelAlias* alias = table->FindAlias("smart");
  ASSERT_NE(alias, nullptr);
  EXPECT_EQ(alias->models, (std::vector<std::string>{"gpt-4o", "glm-4.7"}));
  EXPECT_EQ(table->FindAlias("gpt-4o"), nullptr);
  EXPECT_EQ(table->FindBackend("volc"), 2u);
  EXPECT_FALSE(table->FindBackend("missing").has_value());
}

TEST(RoutingTable, BuildGivesEachBackendItsOwnState) {
  auto table = RoutingTable::Build(ThreeBackends(), 1);
  EXPECT_EQ(table->state(0).name(), "deepseek");
  EXPECT_EQ(table->state(2).name(), "volc");
  EXPECT_NE(&table->state(0), &table->state(1));
}

TEST(BackendState, OutstandingGuardCountsWhileAlive) {
  auto state = std::make_shared<BackendState>("a");
  {
    OutstandingGuard one(state);
    OutstandingGuard two(state);
    EXPECT_EQ(state->outstanding(), 2);
    OutstandingGuard moved(std::move(one));
    EXPECT_EQ(state->outstanding(), 2);
    two.Release();
    two.Release();
    EXPECT_EQ(state->outstanding(), 1);
  }
  EXPECT_EQ(state->outstanding(), 0);
}

TEST(BackendState, OutstandingIsExactUnderConcurrentUse) {
  auto state = std::make_shared<BackendState>("a");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([state] {
      for (int i = 0; i < 10000; ++i) {
        OutstandingGuard guard(state);
        state->RecordLatency(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(state->outstanding(), 0);
  EXPECT_DOUBLE_EQ(state->ewma_seconds(), 0.5);
}

TEST(BackendState, EwmaStartsAtFirstSampleThenMovesByAlpha) {
  BackendState state("a");
  EXPECT_EQ(state.ewma_seconds(), 0.0);
  state.RecordLatency(2.0);
  EXPECT_DOUBLE_EQ(state.ewma_seconds(), 2.0);
  state.RecordLatency(1.0);
  EXPECT_DOUBLE_EQ(state.ewma_seconds(), 2.0 + BackendState::kEwmaAlpha * (1.0 - 2.0));
  state.RecordLatency(-1.0);  // ignored
  EXPECT_DOUBLE_EQ(state.ewma_seconds(), 2.0 + BackendState::kEwmaAlpha * (1.0 - 2.0));
}

TEST(BackendStateRegistry, StateSurvivesASwapForUnchangedNamesAndIsDroppedForRemovedOnes) {
  FakeClock clock;
  BackendStateRegistry registry;
  auto v1 = RoutingTable::Build(ThreeBackends(), 1);
  registry.Retain(*v1);
  // deepseek gets ejected and busy; volc records latency.
  for (int i = 0; i < 3; ++i) OriginOf(*v1, 0).OnFailure(clock.now());
  OutstandingGuard busy(v1->state_ptr(0));
  v1->state(2).RecordLatency(1.5);
  ASSERT_FALSE(v1->BackendUp(0, clock.now()));

  // v2 reorders, drops volc, adds a new backend.
  Config c2 = MakeConfig({MakeBackend("poe", {"gpt-4o"}),
                          MakeBackend("deepseek", {"deepseek-chat"}), MakeBackend("fresh", {"x"})});
  auto v2 = RoutingTable::Build(c2, 2);
  registry.Retain(*v2);

  EXPECT_EQ(v2->state_ptr(1), v1->state_ptr(0));  // same object: deepseek kept
  EXPECT_FALSE(v2->BackendUp(1, clock.now()));
  EXPECT_EQ(v2->state(1).outstanding(), 1);
  EXPECT_EQ(v2->state_ptr(0), v1->state_ptr(1));  // poe kept
  EXPECT_TRUE(v2->BackendUp(2, clock.now()));

  auto rows = registry.Snapshot(clock.now());
  ASSERT_EQ(rows.size(), 3u);  // volc dropped
  EXPECT_EQ(rows[0].name, "deepseek");
  EXPECT_FALSE(rows[0].up);
  EXPECT_EQ(rows[0].outstanding, 1);
  EXPECT_EQ(rows[0].consecutive_failures, 3u);
  EXPECT_EQ(rows[1].name, "fresh");
  EXPECT_EQ(rows[2].name, "poe");
  EXPECT_TRUE(rows[2].up);

  // Coming back later, volc starts from scratch.
  auto v3 = RoutingTable::Build(ThreeBackends(), 3);
  registry.Retain(*v3);
  EXPECT_EQ(v3->state(2).ewma_seconds(), 0.0);
  EXPECT_NE(v3->state_ptr(2), v1->state_ptr(2));
}

TEST(BackendStateRegistry, RetainAppliesTheNewHealthConfig) {
  FakeClock clock;
  BackendStateRegistry registry;
  auto v1 = RoutingTable::Build(ThreeBackends(), 1);
  registry.Retain(*v1);
  Config c2 = ThreeBackends();
  c2.health.failure_threshold = 1;
  auto v2 = RoutingTable::Build(c2, 2);
  registry.Retain(*v2);
  OriginOf(*v2, 0).OnFailure(clock.now());
  EXPECT_FALSE(v2->BackendUp(0, clock.now()));
}

TEST(BackendStateRegistry, GetCreatesOnDemandAndReturnsTheBoundState) {
  BackendStateRegistry registry;
  auto table = RoutingTable::Build(ThreeBackends(), 1);
  registry.Retain(*table);
  EXPECT_EQ(registry.Get("poe"), table->state_ptr(1));
  auto other = registry.Get("other");
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->name(), "other");
  EXPECT_EQ(registry.Get("other"), other);
}

}  // namespace
}  // namespace llmproxy
