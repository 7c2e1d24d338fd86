// Passive health: ejection after consecutive failures, cooldown timing and doubling on a
// fake clock, the single trial request, Retry-After and auth ejections; active probes of
// ejected backends (health.probe_interval).
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

// TestHealth with probes every 2 s (cooldown 10 s, cap 35 s).
HealthConfig ProbingHealth() {
  HealthConfig h = TestHealth();
  h.probe_interval = seconds(2);
  return h;
}

TEST(HealthTrackerProbe, NoProbeWhileHealthy) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 2);  // below the threshold: still healthy
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(t.TryStartProbe(clock.now()));
    EXPECT_FALSE(t.NextProbeAt().has_value());
    clock.Advance(seconds(2));
  }
}

TEST(HealthTrackerProbe, FirstProbeIsDueOneIntervalAfterTheEjection) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  EXPECT_EQ(t.NextProbeAt(), clock.now() + seconds(2));
  clock.Advance(seconds(2) - milliseconds(1));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(t.TryStartProbe(clock.now()));
}

TEST(HealthTrackerProbe, RecoversAtTheFirstSuccessfulProbe) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));
  EXPECT_FALSE(t.IsAvailable(clock.now()));  // the probe is not a trial: still out
  EXPECT_TRUE(t.OnProbeResult(clock.now(), true));
  // Back at once, 8 s before the cooldown would have ended, with no trial request.
  EXPECT_TRUE(t.IsUp(clock.now()));
  EXPECT_TRUE(t.IsAvailable(clock.now()));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  HealthSnapshot s = t.Snapshot(clock.now());
  EXPECT_FALSE(s.ejected);
  EXPECT_EQ(s.consecutive_failures, 0u);
  EXPECT_EQ(s.ejections, 0u);
  EXPECT_FALSE(t.NextProbeAt().has_value());
  // The cooldown is back to its base: the next ejection lasts 10 s, not 20 s.
  Fail(t, clock, 3);
  clock.Advance(seconds(10));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTrackerProbe, CooldownDoublesWhileProbesFailThenOneSuccessEndsIt) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);  // ejected for 10 s
  // Each failed probe re-ejects from its own time for the next cooldown: 20, 35, 35 (cap).
  const seconds expected[] = {seconds(20), seconds(35), seconds(35)};
  for (seconds cooldown : expected) {
    clock.Advance(seconds(2));
    ASSERT_TRUE(t.TryStartProbe(clock.now()));
    EXPECT_FALSE(t.OnProbeResult(clock.now(), false));
    HealthSnapshot s = t.Snapshot(clock.now());
    EXPECT_TRUE(s.ejected);
    EXPECT_EQ(s.ejected_until, clock.now() + cooldown) << cooldown.count();
    EXPECT_FALSE(t.IsAvailable(clock.now()));
    EXPECT_EQ(t.NextProbeAt(), clock.now() + seconds(2));  // probing goes on
  }
  EXPECT_EQ(t.Snapshot(clock.now()).ejections, 4u);
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));
  EXPECT_TRUE(t.OnProbeResult(clock.now(), true));
  EXPECT_TRUE(t.IsAvailable(clock.now()));
  EXPECT_EQ(t.Snapshot(clock.now()).ejections, 0u);
}

TEST(HealthTrackerProbe, OneProbeInFlightAtATime) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));
  // A probe slower than the interval does not let a second one start beside it.
  clock.Advance(seconds(5));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));
  EXPECT_FALSE(t.OnProbeResult(clock.now(), false));
  // Its slot is free again and the next one was due 2 s after it started: now.
  EXPECT_TRUE(t.TryStartProbe(clock.now()));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));
}

TEST(HealthTrackerProbe, ConcurrentProbersGetExactlyOneProbe) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(2));
  const SteadyTime now = clock.now();
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 1000; ++k) {
        if (t.TryStartProbe(now)) granted.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(granted.load(), 1);
}

TEST(HealthTrackerProbe, ProbesAreSpacedByTheIntervalFromTheirStart) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));
  clock.Advance(milliseconds(300));  // the probe takes 300 ms and fails
  t.OnProbeResult(clock.now(), false);
  EXPECT_EQ(t.NextProbeAt(), clock.now() + milliseconds(1700));
  clock.Advance(milliseconds(1699));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(t.TryStartProbe(clock.now()));
}

TEST(HealthTrackerProbe, AbandonedProbeFreesTheSlot) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));
  t.OnProbeAbandoned();
  EXPECT_FALSE(t.IsAvailable(clock.now()));  // no verdict: still ejected
  clock.Advance(seconds(2));
  EXPECT_TRUE(t.TryStartProbe(clock.now()));
}

TEST(HealthTrackerProbe, LostProbeIsReplacedAfterMaxCooldown) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));  // never reports
  EXPECT_EQ(t.NextProbeAt(), clock.now() + seconds(35));
  clock.Advance(seconds(35) - milliseconds(1));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(t.TryStartProbe(clock.now()));
}

TEST(HealthTrackerProbe, IntervalZeroKeepsTheTrialPathOnly) {
  FakeClock clock;
  HealthConfig h = TestHealth();
  h.probe_interval = Millis(0);
  HealthTracker t(h);
  Fail(t, clock, 3);
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(t.TryStartProbe(clock.now()));
    EXPECT_FALSE(t.NextProbeAt().has_value());
    clock.Advance(seconds(1));
  }
  // Exactly as before probing existed: the trial after the cooldown.
  EXPECT_TRUE(t.TryAcquire(clock.now()));
  EXPECT_FALSE(t.TryAcquire(clock.now()));
  t.OnSuccess();
  EXPECT_TRUE(t.IsAvailable(clock.now()));
}

TEST(HealthTrackerProbe, TrialPathStillWorksWithProbingOn) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(10));  // no prober ran: the cooldown ends as without probes
  ASSERT_TRUE(t.TryAcquire(clock.now()));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));  // the trial is out: no probe beside it
  t.OnSuccess();
  EXPECT_TRUE(t.IsAvailable(clock.now()));
}

TEST(HealthTrackerProbe, RetryAfterEjectionIsNotProbed) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  t.OnRetryAfter(clock.now(), seconds(8));
  EXPECT_FALSE(t.NextProbeAt().has_value());
  clock.Advance(seconds(4));
  EXPECT_FALSE(t.TryStartProbe(clock.now()));  // never back before the upstream said
  clock.Advance(seconds(4));
  EXPECT_TRUE(t.TryAcquire(clock.now()));
}

TEST(HealthTrackerProbe, AuthEjectionIsProbed) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  t.OnAuthFailure(clock.now());
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));
  EXPECT_FALSE(t.OnProbeResult(clock.now(), false));  // the key is still refused
  EXPECT_EQ(t.Snapshot(clock.now()).ejected_until, clock.now() + seconds(20));
}

TEST(HealthTrackerProbe, LateProbeResultAfterRecoveryChangesNothing) {
  FakeClock clock;
  HealthTracker t(ProbingHealth());
  Fail(t, clock, 3);
  clock.Advance(seconds(2));
  ASSERT_TRUE(t.TryStartProbe(clock.now()));
  t.OnSuccess();                                     // a fail-open request succeeded meanwhile
  EXPECT_FALSE(t.OnProbeResult(clock.now(), true));  // not a state change: nothing to log
  EXPECT_TRUE(t.IsAvailable(clock.now()));
  EXPECT_FALSE(t.OnProbeResult(clock.now(), false));  // a failed probe does not eject
  EXPECT_TRUE(t.IsAvailable(clock.now()));
}

}  // namespace
}  // namespace llmproxy
