// The three balancing modes, candidate filtering (weight 0, drained, tried, ejected) and
// the all-ejected fail-open rule.
#include "dataplane/routing/balancer.h"

#include <gtest/gtest.h>

#include <map>

#include "dataplane/routing/backend_state.h"
#include "routing_test_util.h"

namespace llmproxy {
namespace {

using namespace llmproxy::testing;

std::shared_ptr<const RoutingTable> Table(std::vector<uint32_t> weights, BalanceMode mode) {
  std::vector<BackendConfig> backends;
  for (size_t i = 0; i < weights.size(); ++i) {
    backends.push_back(MakeBackend(std::string(1, static_cast<char>('a' + i)), {"m"}, weights[i]));
  }
  return RoutingTable::Build(MakeConfig(std::move(backends), mode), 1);
}

void Eject(const RoutingTable& table, size_t i, SteadyTime now) {
  for (uint32_t k = 0; k < table.config.health.failure_threshold; ++k) {
    OriginOf(table, i).OnFailure(now);
  }
}

std::map<size_t, int> Count(Balancer& balancer, const RoutingTable& table, int picks,
                            SteadyTime now, const std::vector<bool>& tried = {}) {
  std::map<size_t, int> counts;
  for (int i = 0; i < picks; ++i) {
    auto b = balancer.PickHealthy(table, table.AllBackends(), tried, now);
    if (b) ++counts[*b];
  }
  return counts;
}

TEST(Balancer, WeightedRandomFollowsTheWeights) {
  FakeClock clock;
  auto table = Table({5, 2, 1, 0}, BalanceMode::kRandom);
  SeededRandom random(42);
  Balancer balancer(BalanceMode::kRandom, random);
  const int picks = 10000;
  auto counts = Count(balancer, *table, picks, clock.now());
  EXPECT_NEAR(counts[0] / double(picks), 5.0 / 8, 0.02);
  EXPECT_NEAR(counts[1] / double(picks), 2.0 / 8, 0.02);
  EXPECT_NEAR(counts[2] / double(picks), 1.0 / 8, 0.02);
  EXPECT_EQ(counts.count(3), 0u) << "weight 0 must never be chosen";
}

TEST(Balancer, WeightZeroIsNeverChosenInAnyMode) {
  FakeClock clock;
  for (BalanceMode mode :
       {BalanceMode::kRandom, BalanceMode::kRoundRobin, BalanceMode::kLeastBusy}) {
    auto table = Table({0, 1, 0, 1}, mode);
    SeededRandom random(7);
    Balancer balancer(mode, random);
    auto counts = Count(balancer, *table, 400, clock.now());
    EXPECT_EQ(counts.count(0) + counts.count(2), 0u) << ToString(mode);
    EXPECT_EQ(counts[1] + counts[3], 400) << ToString(mode);
  }
}

TEST(Balancer, OnlyWeightZeroCandidatesGiveNothingEvenFailOpen) {
  FakeClock clock;
  auto table = Table({0, 0}, BalanceMode::kRandom);
  SeededRandom random(1);
  Balancer balancer(BalanceMode::kRandom, random);
  EXPECT_FALSE(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()));
  EXPECT_FALSE(balancer.PickFailOpen(*table, table->AllBackends(), {}, clock.now()));
}

TEST(Balancer, DrainedBackendsGetNothing) {
  FakeClock clock;
  Config c =
      MakeConfig({MakeBackend("a", {"m"}), MakeBackend("b", {"m"}), MakeBackend("c", {"m"})});
  c.backends[1].drained = true;
  for (BalanceMode mode :
       {BalanceMode::kRandom, BalanceMode::kRoundRobin, BalanceMode::kLeastBusy}) {
    c.mode = mode;
    auto table = RoutingTable::Build(c, 1);
    SeededRandom random(3);
    Balancer balancer(mode, random);
    auto counts = Count(balancer, *table, 300, clock.now());
    EXPECT_EQ(counts.count(1), 0u) << ToString(mode);
    // Even with every other backend tried, a drained one is not a fail-open target.
    EXPECT_FALSE(
        balancer.PickFailOpen(*table, table->AllBackends(), {true, false, true}, clock.now()));
  }
}

TEST(Balancer, RoundRobinRotatesStrictlyInConfigOrder) {
  FakeClock clock;
  auto table = Table({1, 3, 1}, BalanceMode::kRoundRobin);
  ScriptedRandom random;
  Balancer balancer(BalanceMode::kRoundRobin, random);
  std::vector<size_t> order;
  for (int i = 0; i < 7; ++i) {
    order.push_back(*balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()));
  }
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(Balancer, RoundRobinCursorIsPerModel) {
  FakeClock clock;
  auto table =
      RoutingTable::Build(MakeConfig({MakeBackend("a", {"x", "y"}), MakeBackend("b", {"x", "y"})},
                                     BalanceMode::kRoundRobin),
                          1);
  ScriptedRandom random;
  Balancer balancer(BalanceMode::kRoundRobin, random);
  const CandidateGroup& x = *table->ServedBy("x");
  const CandidateGroup& y = *table->ServedBy("y");
  EXPECT_EQ(balancer.PickHealthy(*table, x, {}, clock.now()), 0u);
  EXPECT_EQ(balancer.PickHealthy(*table, x, {}, clock.now()), 1u);
  EXPECT_EQ(balancer.PickHealthy(*table, y, {}, clock.now()), 0u);  // y has its own cursor
  EXPECT_EQ(balancer.PickHealthy(*table, x, {}, clock.now()), 0u);
}

TEST(Balancer, RoundRobinSkipsEjectedBackends) {
  FakeClock clock;
  auto table = Table({1, 1, 1}, BalanceMode::kRoundRobin);
  Eject(*table, 1, clock.now());
  ScriptedRandom random;
  Balancer balancer(BalanceMode::kRoundRobin, random);
  std::vector<size_t> order;
  for (int i = 0; i < 6; ++i) {
    order.push_back(*balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()));
  }
  EXPECT_EQ(order, (std::vector<size_t>{0, 2, 2, 0, 2, 2}));
}

TEST(Balancer, LeastBusyPrefersTheLessBusyOfTheTwoDrawn) {
  FakeClock clock;
  auto table = Table({1, 1}, BalanceMode::kLeastBusy);
  OutstandingGuard g1(table->state_ptr(0)), g2(table->state_ptr(0));
  // Draw order: first = a (index 0), then b; and first = b (index 1), then a.
  ScriptedRandom random({0, 0, 1, 0});
  Balancer balancer(BalanceMode::kLeastBusy, random);
  EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 1u);
  EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 1u);
}

TEST(Balancer, LeastBusyNeverPicksTheBusiestOfThree) {
  FakeClock clock;
  auto table = Table({1, 1, 1}, BalanceMode::kLeastBusy);
  std::vector<OutstandingGuard> guards;
  for (int i = 0; i < 5; ++i) guards.emplace_back(table->state_ptr(2));
  guards.emplace_back(table->state_ptr(0));
  SeededRandom random(11);
  Balancer balancer(BalanceMode::kLeastBusy, random);
  auto counts = Count(balancer, *table, 3000, clock.now());
  EXPECT_EQ(counts.count(2), 0u);
  // b (0 outstanding) wins every draw that includes it: 2 of the 3 possible pairs.
  EXPECT_NEAR(counts[1] / 3000.0, 2.0 / 3, 0.04);
}

TEST(Balancer, LeastBusyBreaksTiesByLatencyEwma) {
  FakeClock clock;
  auto table = Table({1, 1}, BalanceMode::kLeastBusy);
  table->state(0).RecordLatency(2.0);
  table->state(1).RecordLatency(0.5);
  ScriptedRandom random({0, 0, 1, 0});
  Balancer balancer(BalanceMode::kLeastBusy, random);
  EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 1u);
  EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 1u);
  // Outstanding still comes first.
  OutstandingGuard busy(table->state_ptr(1));
  random.Push(0);
  random.Push(0);
  EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 0u);
}

TEST(Balancer, OnlyUntriedCandidatesArePicked) {
  FakeClock clock;
  for (BalanceMode mode :
       {BalanceMode::kRandom, BalanceMode::kRoundRobin, BalanceMode::kLeastBusy}) {
    auto table = Table({1, 1, 1}, mode);
    SeededRandom random(5);
    Balancer balancer(mode, random);
    auto counts = Count(balancer, *table, 200, clock.now(), {true, false, true});
    EXPECT_EQ(counts[1], 200) << ToString(mode);
    EXPECT_FALSE(
        balancer.PickHealthy(*table, table->AllBackends(), {true, true, true}, clock.now()));
  }
}

TEST(Balancer, EjectedBackendsAreSkippedWhileOthersAreHealthy) {
  FakeClock clock;
  auto table = Table({1, 100}, BalanceMode::kRandom);
  Eject(*table, 1, clock.now());
  SeededRandom random(9);
  Balancer balancer(BalanceMode::kRandom, random);
  auto counts = Count(balancer, *table, 100, clock.now());
  EXPECT_EQ(counts[0], 100);
}

TEST(Balancer, AfterCooldownOnlyOneRequestGetsTheTrial) {
  FakeClock clock;
  auto table = Table({1, 1}, BalanceMode::kRoundRobin);
  Eject(*table, 0, clock.now());
  clock.Advance(table->config.health.cooldown);
  ScriptedRandom random;
  Balancer balancer(BalanceMode::kRoundRobin, random);
  // First pick lands on a (cursor 0) and takes the trial; later ones skip a.
  EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 0u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 1u);
  }
}

TEST(Balancer, AllEjectedFailsOpenToTheSoonestCooldownEnd) {
  FakeClock clock;
  auto table = Table({1, 1, 1}, BalanceMode::kRandom);
  Eject(*table, 0, clock.now());
  clock.Advance(seconds(2));
  Eject(*table, 2, clock.now());
  clock.Advance(seconds(2));
  Eject(*table, 1, clock.now());
  SeededRandom random(1);
  Balancer balancer(BalanceMode::kRandom, random);
  EXPECT_FALSE(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()));
  EXPECT_EQ(balancer.PickFailOpen(*table, table->AllBackends(), {}, clock.now()), 0u);
  EXPECT_EQ(balancer.PickFailOpen(*table, table->AllBackends(), {true}, clock.now()), 2u);
  EXPECT_FALSE(
      balancer.PickFailOpen(*table, table->AllBackends(), {true, true, true}, clock.now()));
}

TEST(Balancer, FailOpenSuccessRestoresTheBackend) {
  FakeClock clock;
  auto table = Table({1}, BalanceMode::kRandom);
  Eject(*table, 0, clock.now());
  SeededRandom random(1);
  Balancer balancer(BalanceMode::kRandom, random);
  ASSERT_EQ(balancer.PickFailOpen(*table, table->AllBackends(), {}, clock.now()), 0u);
  OriginOf(*table, 0).OnSuccess();
  EXPECT_EQ(balancer.PickHealthy(*table, table->AllBackends(), {}, clock.now()), 0u);
}

}  // namespace
}  // namespace llmproxy
