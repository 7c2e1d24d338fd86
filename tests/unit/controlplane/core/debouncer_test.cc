// The watcher's debounce: a burst of directory events becomes one reload.
#include <gtest/gtest.h>

#include "controlplane/core/debouncer.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using TP = Debouncer::Clock::time_point;

TEST(Debouncer, NothingPendingNeverFires) {
  Debouncer d(100ms);
  EXPECT_FALSE(d.pending());
  EXPECT_FALSE(d.Deadline().has_value());
  EXPECT_FALSE(d.Fire(TP{} + 10s));
}

TEST(Debouncer, BurstFiresOnceAfterQuietPeriod) {
  Debouncer d(100ms, 1000ms);
  TP t0{};
  d.Event(t0);
  d.Event(t0 + 30ms);
  d.Event(t0 + 60ms);
  EXPECT_EQ(*d.Deadline(), t0 + 160ms);
  EXPECT_FALSE(d.Fire(t0 + 159ms));
  EXPECT_TRUE(d.Fire(t0 + 160ms));
  EXPECT_FALSE(d.pending());
  EXPECT_FALSE(d.Fire(t0 + 500ms));
}

TEST(Debouncer, ContinuousEventsFireAtMaxDelay) {
  Debouncer d(100ms, 300ms);
  TP t0{};
  for (int i = 0; i < 10; ++i) d.Event(t0 + i * 50ms);
  EXPECT_EQ(*d.Deadline(), t0 + 300ms);
  EXPECT_TRUE(d.Fire(t0 + 450ms));
}

TEST(Debouncer, EventAfterFireStartsNewBurst) {
  Debouncer d(100ms);
  TP t0{};
  d.Event(t0);
  EXPECT_TRUE(d.Fire(t0 + 100ms));
  d.Event(t0 + 200ms);
  EXPECT_TRUE(d.pending());
  EXPECT_EQ(*d.Deadline(), t0 + 300ms);
  EXPECT_TRUE(d.Fire(t0 + 300ms));
}

}  // namespace
}  // namespace llmproxy
