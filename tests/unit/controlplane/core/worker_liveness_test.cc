// When a connected worker counts as stale, and when a supervised one is replaced: bounds
// derived from the report interval the worker announced.
#include "controlplane/core/worker_liveness.h"

#include <gtest/gtest.h>

#include "controlplane/core/snapshot_store.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;

TEST(WorkerLiveness, HealthyUntilThreeIntervalsPassWithoutAReport) {
  // Announced 2000 ms: stale at 6000 ms of silence, replaced at 10000 ms.
  const int64_t seen = 50'000;
  Liveness l = JudgeLiveness(true, seen, 2000, seen + 5999);
  EXPECT_EQ(l.state, WorkerState::kHealthy);
  EXPECT_TRUE(l.healthy());
  EXPECT_EQ(l.missed, 2);
  EXPECT_FALSE(l.replace);
  EXPECT_EQ(l.stale_after, 6000ms);
  EXPECT_EQ(l.replace_after, 10000ms);

  l = JudgeLiveness(true, seen, 2000, seen + 6000);
  EXPECT_EQ(l.state, WorkerState::kStale);
  EXPECT_FALSE(l.healthy());
  EXPECT_EQ(l.missed, 3);
  EXPECT_EQ(l.silent_for, 6000ms);
  EXPECT_FALSE(l.replace);

  EXPECT_FALSE(JudgeLiveness(true, seen, 2000, seen + 9999).replace);
  l = JudgeLiveness(true, seen, 2000, seen + 10000);
  EXPECT_EQ(l.state, WorkerState::kStale);
  EXPECT_EQ(l.missed, 5);
  EXPECT_TRUE(l.replace);
}

TEST(WorkerLiveness, BoundsScaleWithTheAnnouncedInterval) {
  Liveness l = JudgeLiveness(true, 0, 300, 899);
  EXPECT_EQ(l.interval, 300ms);
  EXPECT_TRUE(l.healthy());
  EXPECT_FALSE(JudgeLiveness(true, 0, 300, 900).healthy());
  EXPECT_FALSE(JudgeLiveness(true, 0, 300, 1499).replace);
  EXPECT_TRUE(JudgeLiveness(true, 0, 300, 1500).replace);
}

TEST(WorkerLiveness, NoAnnouncedIntervalMeansTheDefaultAndBogusOnesAreClamped) {
  EXPECT_EQ(JudgeLiveness(true, 0, 0, 0).interval, 2000ms);  // an older worker
  EXPECT_TRUE(JudgeLiveness(true, 0, 0, 5999).healthy());
  EXPECT_FALSE(JudgeLiveness(true, 0, 0, 6000).healthy());
  // 1 ms would make every scheduling hiccup a hang; a huge one would hide a real hang.
  EXPECT_EQ(JudgeLiveness(true, 0, 1, 0).interval, 100ms);
  EXPECT_EQ(JudgeLiveness(true, 0, 4'000'000'000u, 0).interval, 60000ms);
  EXPECT_FALSE(JudgeLiveness(true, 0, 4'000'000'000u, 180'000).replace);
  EXPECT_FALSE(JudgeLiveness(true, 0, 4'000'000'000u, 180'000).healthy());
}

TEST(WorkerLiveness, PolicyIsInjectable) {
  LivenessPolicy p;
  p.stale_after_missed = 1;
  p.replace_after_missed = 2;
  EXPECT_TRUE(JudgeLiveness(true, 0, 1000, 999, p).healthy());
  EXPECT_FALSE(JudgeLiveness(true, 0, 1000, 1000, p).healthy());
  EXPECT_TRUE(JudgeLiveness(true, 0, 1000, 2000, p).replace);
}

TEST(WorkerLiveness, DisconnectedWorkerIsNeverHealthyNorReplaced) {
  Liveness l = JudgeLiveness(false, 0, 2000, 1);
  EXPECT_EQ(l.state, WorkerState::kDisconnected);
  EXPECT_FALSE(l.healthy());
  EXPECT_FALSE(JudgeLiveness(false, 0, 2000, 1'000'000).replace);
  EXPECT_EQ(WorkerStateName(WorkerState::kDisconnected), "disconnected");
  EXPECT_EQ(WorkerStateName(WorkerState::kStale), "stale");
  EXPECT_EQ(WorkerStateName(WorkerState::kHealthy), "healthy");
}

TEST(WorkerLiveness, ClockBehindLastSeenIsNoSilence) {
  Liveness l = JudgeLiveness(true, 10'000, 2000, 9'000);
  EXPECT_EQ(l.silent_for, 0ms);
  EXPECT_TRUE(l.healthy());
}

// The store keeps what the judgement needs: the announced interval (from the hello) and
// the last time the live stream carried anything (Seen), per session.
TEST(WorkerLiveness, StoreRecordsIntervalAndLastSeenOfTheLiveSession) {
  SnapshotStore store("test");
  v1::WorkerHello hello;
  hello.set_id("w1");
  hello.set_report_interval_ms(500);
  uint64_t s1 = store.Connect(hello, 1);
  EXPECT_TRUE(store.Seen("w1", s1, 1000));
  ASSERT_EQ(store.Workers().size(), 1u);
  EXPECT_EQ(store.Workers()[0].report_interval_ms, 500u);
  EXPECT_EQ(store.Workers()[0].last_seen_ms, 1000);
  EXPECT_TRUE(store.Seen("w1", s1, 1400));
  EXPECT_EQ(store.Workers()[0].last_seen_ms, 1400);

  // A reconnect supersedes the old stream: its late messages are no sign of life.
  hello.set_report_interval_ms(0);
  uint64_t s2 = store.Connect(hello, 2);
  EXPECT_TRUE(store.Seen("w1", s2, 2000));
  EXPECT_FALSE(store.Seen("w1", s1, 9000));
  EXPECT_EQ(store.Workers()[0].last_seen_ms, 2000);
  EXPECT_EQ(store.Workers()[0].report_interval_ms, 0u);
  store.Disconnect("w1", s2);
  EXPECT_FALSE(store.Seen("w1", s2, 9000));
}

}  // namespace
}  // namespace llmproxy
