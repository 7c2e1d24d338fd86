// Passive health: ejection after consecutive failures, cooldown timing and doubling on a
// fake clock, the single trial request, Retry-After and auth ejections.
#include "dataplane/routing/health_tracker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "routing_test_util.h"

namespace llmproxy {
namespace {

using namespace llmproxy::testing;

HealthConfig TestHealth() {
  HealthConfig h;
  h.failure_threshold = 3;
  h.cooldown = seconds(10);
  h.max_cooldown = seconds(35);
  return h;
}

// Fails `n` times in a row at the clock's current time.
void Fail(HealthTracker& t, FakeClock& clock, int n) {
  for (int i = 0; i < n; ++i) t.OnFailure(clock.now());
}

TEST(HealthTracker, EjectsAfterThresholdConsecutiveFailures) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 2);
  EXPECT_TRUE(t.IsUp(clock.now()));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  Fail(t, clock, 1);
  EXPECT_FALSE(t.IsUp(clock.now()));
  EXPECT_FALSE(t.IsAvailable(clock.now()));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
  EXPECT_EQ(t.Snapshot(clock.now()).consecutive_failures, 3u);
}

TEST(HealthTracker, SuccessResetsTheConsecutiveCount) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 2);
  t.OnSuccess();
  Fail(t, clock, 2);
  EXPECT_TRUE(t.IsUp(clock.now()));
  EXPECT_EQ(t.Snapshot(clock.now()).consecutive_failures, 2u);
}

TEST(HealthTracker, CooldownEndsExactlyAfterItsDuration) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(10) - milliseconds(1));
  EXPECT_FALSE(t.IsAvailable(clock.now()));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(t.IsUp(clock.now()));
  EXPECT_TRUE(t.IsAvailable(clock.now()));
}

TEST(HealthTracker, OnlyOneTrialRequestAfterTheCooldown) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(10));
  EXPECT_TRUE(t.TryAcquire(clock.now()));  // the trial
  EXPECT_FALSE(t.IsAvailable(clock.now()));
  EXPECT_FALSE(t.TryAcquire(clock.now()));  // everyone else waits for its outcome
  EXPECT_FALSE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, TrialSuccessRestoresFully) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(10));
  ASSERT_TRUE(t.TryAcquire(clock.now()));
  t.OnSuccess();
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  HealthSnapshot s = t.Snapshot(clock.now());
  EXPECT_TRUE(s.up);
  EXPECT_FALSE(s.ejected);
  EXPECT_EQ(s.consecutive_failures, 0u);
  EXPECT_EQ(s.ejections, 0u);
  // The doubling was reset: the next ejection lasts the base cooldown again.
  Fail(t, clock, 3);
  clock.Advance(seconds(10));
  EXPECT_TRUE(t.IsAvailable(clock.now()));
}

TEST(HealthTracker, TrialFailureReEjectsWithDoubledCooldownUpToTheCap) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);                                                   // 10s
  const seconds expected[] = {seconds(20), seconds(35), seconds(35)};  // doubled, then capped
  clock.Advance(seconds(10));
  for (seconds cooldown : expected) {
    ASSERT_TRUE(t.TryAcquire(clock.now()));
    t.OnFailure(clock.now());  // one failure is enough for a trial
    clock.Advance(cooldown - milliseconds(1));
    EXPECT_FALSE(t.TryAcquire(clock.now())) << cooldown.count();
    clock.Advance(milliseconds(1));
  }
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, NeutralOutcomeFreesTheTrialSlot) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(10));
  ASSERT_TRUE(t.TryAcquire(clock.now()));
  t.OnNeutral();  // the trial's client went away: no verdict
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, RetryAfterSetsTheCooldownDirectly) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  t.OnRetryAfter(clock.now(), seconds(3));
  EXPECT_FALSE(t.IsUp(clock.now()));
  clock.Advance(seconds(3) - milliseconds(1));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  // Retry-After does not count toward the doubling.
  EXPECT_EQ(t.Snapshot(clock.now()).ejections, 0u);
}

TEST(HealthTracker, RetryAfterIsCappedAtMaxCooldownAndZeroMeansNow) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  t.OnRetryAfter(clock.now(), std::chrono::hours(24));
  clock.Advance(seconds(35));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  t.OnSuccess();
  t.OnRetryAfter(clock.now(), Millis(0));
  EXPECT_TRUE(t.IsUp(clock.now()));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, AuthFailureEjectsAtOnce) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  t.OnAuthFailure(clock.now());
  EXPECT_FALSE(t.IsUp(clock.now()));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
  clock.Advance(seconds(10));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  t.OnAuthFailure(clock.now());  // still bad: doubled
  clock.Advance(seconds(19));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
  clock.Advance(seconds(1));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, LateFailuresWhileEjectedDoNotExtendTheCooldown) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(5));
  Fail(t, clock, 4);  // requests sent before the ejection come back failed
  clock.Advance(seconds(5));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, ThresholdZeroNeverEjectsOnFailures) {
  FakeClock clock;
  HealthConfig h = TestHealth();
  h.failure_threshold = 0;
  HealthTracker t(h);
  Fail(t, clock, 100);
  EXPECT_TRUE(t.IsUp(clock.now()));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, LostTrialIsReplacedAfterMaxCooldown) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(10));
  ASSERT_TRUE(t.TryAcquire(clock.now()));  // its outcome never arrives
  clock.Advance(seconds(34));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
  clock.Advance(seconds(1));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTracker, ConcurrentPickersGetExactlyOneTrial) {
  FakeClock clock;
  HealthTracker t(TestHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(10));
  const SteadyTime now = clock.now();
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 1000; ++k) {
        if (t.TryAcquire(now)) granted.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(granted.load(), 1);
}

}  // namespace
}  // namespace llmproxy
