// Usage sums by key between load reports (observe/usage_aggregator.h).
#include "dataplane/observe/usage_aggregator.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace llmproxy {
namespace {

RequestRecord Done(std::string key, std::string model, std::string backend, uint64_t prompt,
                   uint64_t completion) {
  RequestRecord r;
  r.key_name = std::move(key);
  r.model_resolved = std::move(model);
  r.backend = std::move(backend);
  r.prompt_tokens = prompt;
  r.completion_tokens = completion;
  return r;
}

TEST(UsageAggregator, SumsByKeyModelAndBackendUntilTaken) {
  UsageAggregator u;
  u.OnRequestDone(Done("a", "m", "b1", 10, 5));
  u.OnRequestDone(Done("a", "m", "b1", 1, 1));
  u.OnRequestDone(Done("a", "m", "b2", 2, 2));
  u.OnRequestDone(Done("", "m", "b1", 100, 100));  // an open gateway's request: no key
  RequestRecord failed;  // refused before any backend: a request without tokens
  failed.key_name = "a";
  u.OnRequestDone(failed);
  std::vector<KeyUsageDelta> got = u.Take();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], (KeyUsageDelta{"a", "(unknown)", "(none)", 1, 0, 0}));
  EXPECT_EQ(got[1], (KeyUsageDelta{"a", "m", "b1", 2, 11, 6}));
  EXPECT_EQ(got[2], (KeyUsageDelta{"a", "m", "b2", 1, 2, 2}));
  EXPECT_TRUE(u.Take().empty());  // taken means cleared
  // What a broken stream could not send comes back and adds to what came since.
  u.OnRequestDone(Done("a", "m", "b1", 1, 1));
  u.Restore(got);
  got = u.Take();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1], (KeyUsageDelta{"a", "m", "b1", 3, 12, 7}));
}

TEST(UsageAggregator, CachedPromptTokensAreSummedAndRestored) {
  UsageAggregator u;
  RequestRecord a = Done("k", "m", "b", 100, 10);
  a.cached_prompt_tokens = 80;
  RequestRecord b = Done("k", "m", "b", 50, 5);
  b.cached_prompt_tokens = 0;
  u.OnRequestDone(a);
  u.OnRequestDone(b);
  u.OnRequestDone(Done("k", "m", "b", 1, 1));  // no cached count in its usage
  std::vector<KeyUsageDelta> got = u.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (KeyUsageDelta{"k", "m", "b", 3, 151, 16, 80}));
  u.Restore(got);
  u.OnRequestDone(a);
  got = u.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (KeyUsageDelta{"k", "m", "b", 4, 251, 26, 160}));
}

TEST(UsageAggregator, EntriesAreBoundedAndNothingIsLostBeyondTheBound) {
  UsageAggregator u;
  const size_t n = UsageAggregator::kMaxEntries + 100;
  for (size_t i = 0; i < n; ++i) u.OnRequestDone(Done("k", "m" + std::to_string(i), "b", 1, 1));
  const std::vector<KeyUsageDelta> got = u.Take();
  EXPECT_EQ(got.size(), UsageAggregator::kMaxEntries + 1);  // + the key's "(other)" row
  uint64_t requests = 0;
  for (const KeyUsageDelta& d : got) requests += d.requests;
  EXPECT_EQ(requests, n);
}

TEST(UsageAggregator, ConcurrentRequestsAllCount) {
  UsageAggregator u;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) u.OnRequestDone(Done("k", "m", "b", 2, 3));
    });
  }
  for (auto& t : threads) t.join();
  const std::vector<KeyUsageDelta> got = u.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (KeyUsageDelta{"k", "m", "b", 4000, 8000, 12000}));
}

}  // namespace
}  // namespace llmproxy
