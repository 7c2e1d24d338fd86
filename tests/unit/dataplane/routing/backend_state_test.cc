// The recent first-token times a backend keeps for hedge_after: auto.
#include "dataplane/routing/backend_state.h"

#include <gtest/gtest.h>

#include <limits>

namespace llmproxy {
namespace {

using namespace std::chrono_literals;

TEST(BackendStateFirstToken, NoP95UntilEnoughSamples) {
  BackendState state("a");
  for (size_t i = 0; i + 1 < BackendState::kMinFirstTokenSamples; ++i) {
    state.RecordFirstToken(0.1);
  }
  EXPECT_FALSE(state.FirstTokenP95().has_value());
  state.RecordFirstToken(0.1);
  EXPECT_EQ(state.FirstTokenP95(), std::optional<std::chrono::milliseconds>(100ms));
}

TEST(BackendStateFirstToken, P95IsTheNearestRankOfTheRecentWindow) {
  BackendState state("a");
  // 1..100 ms, only the last 64 are kept (37..100): p95 by nearest rank is the 61st of 64.
  for (int ms = 1; ms <= 100; ++ms) state.RecordFirstToken(ms / 1000.0);
  EXPECT_EQ(state.FirstTokenP95(), std::optional<std::chrono::milliseconds>(97ms));
}

TEST(BackendStateFirstToken, NegativeAndNanSamplesAreIgnored) {
  BackendState state("a");
  for (size_t i = 0; i < BackendState::kMinFirstTokenSamples; ++i) {
    state.RecordFirstToken(-1);
    state.RecordFirstToken(std::numeric_limits<double>::quiet_NaN());
  }
  EXPECT_FALSE(state.FirstTokenP95().has_value());
}

}  // namespace
}  // namespace llmproxy
