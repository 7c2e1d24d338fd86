// LogThrottle (common/log/logging.h): one line per period at most, and the line that goes
// out says how many were left out before it.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/log/logging.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(LogThrottle, OneLinePerPeriodAndTheNextSaysHowManyWereLeftOut) {
  LogThrottle throttle(1s);
  const Clock::time_point t0 = Clock::now();
  uint64_t skipped = 99;
  ASSERT_TRUE(throttle.Allow(skipped, t0));
  EXPECT_EQ(skipped, 0u);
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(throttle.Allow(skipped, t0 + 50ms * i));
  EXPECT_FALSE(throttle.Allow(skipped, t0 + 999ms));
  ASSERT_TRUE(throttle.Allow(skipped, t0 + 1s));
  EXPECT_EQ(skipped, 21u);
  // The period counts from the line written, not from the one left out.
  EXPECT_FALSE(throttle.Allow(skipped, t0 + 1500ms));
  ASSERT_TRUE(throttle.Allow(skipped, t0 + 2s));
  EXPECT_EQ(skipped, 1u);
}

TEST(LogThrottle, ThreadsRacingForOneSlotWriteOnce) {
  LogThrottle throttle(1h);
  const Clock::time_point now = Clock::now();
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        uint64_t skipped = 0;
        if (throttle.Allow(skipped, now)) ++allowed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 1);
  uint64_t skipped = 0;
  ASSERT_TRUE(throttle.Allow(skipped, now + 1h));
  EXPECT_EQ(skipped, 3999u);
}

}  // namespace
}  // namespace llmproxy
