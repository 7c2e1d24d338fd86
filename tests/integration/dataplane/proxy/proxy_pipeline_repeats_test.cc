// Repeats on a tried backend, through the worker (docs/routing.md "Repeats"): with one
// backend for a model a transient failure is tried again after a backoff, a Retry-After
// is waited out (never cut short) or fails over at once to another provider account, and
// a client that leaves during the wait ends the request. Measured on what the mock saw:
// how many attempts, and how far apart.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using test::MockBackend;
using test::PostJson;
using test::TestConfig;
using test::TestWorker;

constexpr const char* kChat = "/v1/chat/completions";
constexpr const char* kBody = R"({"model":"m","messages":[]})";

MockFault Status(int status, std::optional<int> retry_after_s = std::nullopt) {
  MockFault f;
  f.status = status;
  f.retry_after_s = retry_after_s;
  return f;
}

// Gaps between consecutive requests the mock received, in ms.
std::vector<int64_t> GapsMs(const MockLlm& mock) {
  const auto requests = mock.Requests();
  std::vector<int64_t> gaps;
  for (size_t i = 1; i < requests.size(); ++i) {
    gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
                       requests[i].received_at - requests[i - 1].received_at)
                       .count());
  }
  return gaps;
}

Config OneBackend(const MockLlm& mock) {
  Config c = TestConfig({MockBackend("only", mock.BaseUrl(), {"m"})});
  c.retry_backoff = 100ms;
  return c;
}

TEST(ProxyRepeats, ATransient503OnTheOnlyBackendIsRetriedAfterTheBackoff) {
  MockLlm mock(test::NamedMock("only"));
  TestWorker worker(OneBackend(mock));
  mock.PushFault(Status(503), 2);
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kBody);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "3");
  ASSERT_EQ(mock.RequestCount(), 3u);
  // Backoff 100 ms doubling, jittered to [d/2, d]: 50..100 ms, then 100..200 ms (plus
  // the time an attempt takes; an upper bound loose enough for a loaded CI box).
  const std::vector<int64_t> gaps = GapsMs(mock);
  ASSERT_EQ(gaps.size(), 2u);
  EXPECT_GE(gaps[0], 50);
  EXPECT_LT(gaps[0], 1000);
  EXPECT_GE(gaps[1], 100);
  EXPECT_LT(gaps[1], 1100);
  EXPECT_LT(took, 3s);
}

TEST(ProxyRepeats, WhenEveryRepeatFailsTheLastUpstreamAnswerGoesBack) {
  MockLlm mock(test::NamedMock("only"));
  Config c = OneBackend(mock);
  c.retry = 2;
  TestWorker worker(std::move(c));
  mock.SetDefaultFault(Status(500));
  test::HttpResult r = PostJson(worker.port(), kChat, kBody);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "3");
  EXPECT_EQ(mock.RequestCount(), 3u);
}

TEST(ProxyRepeats, ARetryAfterIsWaitedOutBeforeTheSameProviderIsAskedAgain) {
  MockLlm mock(test::NamedMock("only"));
  TestWorker worker(OneBackend(mock));
  mock.PushFault(Status(429, 1), 1);
  test::HttpResult r = PostJson(worker.port(), kChat, kBody);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  const std::vector<int64_t> gaps = GapsMs(mock);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_GE(gaps[0], 1000) << "retried faster than Retry-After";
  EXPECT_LT(gaps[0], 2500);
}

TEST(ProxyRepeats, ARetryAfterLongerThanMaxRetryWaitGoesBackToTheClient) {
  MockLlm mock(test::NamedMock("only"));
  Config c = OneBackend(mock);
  c.max_retry_wait = 1s;
  TestWorker worker(std::move(c));
  mock.PushFault(Status(429, 5), 1);
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kBody);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.Header("retry-after"), "5");
  EXPECT_EQ(mock.RequestCount(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s) << "waited although it may not";
}

TEST(ProxyRepeats, ARetryAfterFailsOverAtOnceToAnotherAccountNotToTheSameOne) {
  // a1 and a2 are two entries of one provider account (same url and key); b is another.
  MockLlm shared(test::NamedMock("shared")), other(test::NamedMock("other"));
  BackendConfig a1 = MockBackend("a1", shared.BaseUrl(), {"m"});
  BackendConfig a2 = MockBackend("a2", shared.BaseUrl(), {"m"});
  a2.api_key = a1.api_key;
  BackendConfig b = MockBackend("b", other.BaseUrl(), {"m"});
  TestWorker worker(TestConfig({a1, a2, b}));  // round-robin: a1 first
  shared.PushFault(Status(429, 3), 1);
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kBody);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(shared.RequestCount(), 1u) << "a2 shares a1's rate limit";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(ProxyRepeats, TimeoutsAreNotRepeatedOnTheSameBackend) {
  MockLlm mock(test::NamedMock("only"));
  Config c = OneBackend(mock);
  c.timeout = 300ms;
  TestWorker worker(std::move(c));
  MockFault hang;
  hang.delay_ms = 2000;
  mock.PushFault(hang, 1);
  test::HttpResult r = PostJson(worker.port(), kChat, kBody);
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
}

TEST(ProxyRepeats, AClientThatLeavesDuringTheWaitEndsTheRequest) {
  MockLlm mock(test::NamedMock("only"));
  TestWorker worker(OneBackend(mock));
  mock.PushFault(Status(429, 2), 1);
  // The client gives up after 300 ms, in the middle of the 2 s wait.
  test::HttpResult r = test::HttpCall(worker.port(), "POST", kChat, kBody, {}, 300ms);
  EXPECT_EQ(r.status, 0);
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(mock.RequestCount(), 1u) << "the repeat was sent for a client that left";
}

}  // namespace
}  // namespace llmproxy
