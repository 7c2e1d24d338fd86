// Attempt outcomes through the worker: every attempt reported once with the word for what
// happened (dataplane/routing/attempt_outcome.h), broken streams counting against health,
// stale-connection resends counted as attempts, and the exact answer when none succeeded.
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/routing/backend_state.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using test::MockBackend;
using test::PostJson;
using test::RecordingObserver;
using test::StreamingResponse;
using test::TestConfig;
using test::TestWorker;
using Attempts = std::vector<std::pair<std::string, AttemptOutcome>>;

constexpr const char* kChat = "/v1/chat/completions";
constexpr const char* kPlainBody = R"({"model":"m","messages":[]})";
constexpr const char* kStreamBody = R"({"model":"m","stream":true,"messages":[]})";

// The worker reports a request just after its last byte: wait for its record.
Attempts AttemptsOf(const RecordingObserver& observer, size_t requests) {
  EXPECT_TRUE(observer.WaitForRecords(requests, 5s));
  return observer.Attempts();
}

TEST(ProxyAttempts, AMalformedAnswerIsAProtocolErrorNotAConnectError) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b"));
  RecordingObserver observer;
  TestWorker worker(
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})}), 1,
      {&observer});
  MockFault garbage;
  garbage.garbage = true;
  a.SetDefaultFault(garbage);
  test::HttpResult r = PostJson(worker.port(), kChat, kPlainBody);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(AttemptsOf(observer, 1),
            (Attempts{{"a", AttemptOutcome::kProtocolError}, {"b", AttemptOutcome::kSuccess}}));
}

TEST(ProxyAttempts, EveryFailureHasItsOwnOutcomeAndTheLastOneIsAnswered) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b"));
  RecordingObserver observer;
  // c: nothing listens there.
  Config config = TestConfig(
      {MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"}),
       MockBackend("c", "http://127.0.0.1:" + std::to_string(test::UnusedPort()) + "/v1", {"m"})});
  config.retry = 2;  // each backend once, no repeat: three attempts, three outcomes
  TestWorker worker(std::move(config), 1, {&observer});
  MockFault close;
  close.close = true;  // reads the request, closes without an answer
  a.SetDefaultFault(close);
  b.SetDefaultFault(close);
  test::HttpResult r = PostJson(worker.port(), kChat, kPlainBody);
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "3");
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "c");
  EXPECT_EQ(r.body,
            R"({"error":{"message":"All backends failed (last: backend 'c': upstream connection )"
            R"(failed).","type":"upstream_error","code":"bad_gateway"}})");
  EXPECT_EQ(AttemptsOf(observer, 1), (Attempts{{"a", AttemptOutcome::kProtocolError},
                                               {"b", AttemptOutcome::kProtocolError},
                                               {"c", AttemptOutcome::kConnectError}}));
}

// A 200 ms response timeout answers 504 soon after 200 ms (the deadline sweep may fire a
// little late; 2 s is far beyond any honest lateness), with the exact JSON body.
TEST(ProxyAttempts, ResponseTimeoutWhenTheUpstreamHangs) {
  MockLlm a(test::NamedMock("a"));
  RecordingObserver observer;
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.timeout = 200ms;
  TestWorker worker(c, 1, {&observer});
  MockFault hang;
  hang.hang = true;
  a.SetDefaultFault(hang);
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kPlainBody);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.body,
            R"({"error":{"message":"No backend answered in time (last: backend 'a': upstream )"
            R"(response timed out).","type":"upstream_error","code":"timeout"}})");
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_EQ(AttemptsOf(observer, 1), (Attempts{{"a", AttemptOutcome::kTimeout}}));
}

// Issue 10 item 12: the stream's start must not reset the failure count, and the break
// goes through the retry policy's broken_stream row (a health failure).
TEST(ProxyAttempts, ABackendWhoseStreamsAlwaysBreakIsEjected) {
  MockLlm a(test::NamedMock("a"));
  RecordingObserver observer;
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.health.failure_threshold = 3;
  c.health.cooldown = 60s;
  TestWorker worker(c, 1, {&observer});
  MockFault die;
  die.chunks = 5;
  die.die_after_chunks = 1;
  a.SetDefaultFault(die);
  for (int i = 0; i < 3; ++i) {
    StreamingResponse s;
    ASSERT_TRUE(s.Open(worker.port(), kChat, kStreamBody));
    EXPECT_EQ(s.status(), 200);
    s.ReadToEnd();
    EXPECT_NE(s.body().find("tok0 "), std::string::npos);
    EXPECT_NE(s.body().find("data: {\"error\":"), std::string::npos);
  }
  EXPECT_EQ(AttemptsOf(observer, 3), (Attempts{{"a", AttemptOutcome::kBrokenStream},
                                               {"a", AttemptOutcome::kBrokenStream},
                                               {"a", AttemptOutcome::kBrokenStream}}));
  auto table = worker.store().Current();
  const HealthSnapshot h = table->health(0).Snapshot(std::chrono::steady_clock::now());
  EXPECT_EQ(h.consecutive_failures, 3u);
  EXPECT_TRUE(h.ejected);
  EXPECT_FALSE(h.up);
}

TEST(ProxyAttempts, AStreamThatEndsWellResetsTheFailureCount) {
  MockLlm a(test::NamedMock("a"));
  RecordingObserver observer;
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.health.failure_threshold = 3;
  TestWorker worker(c, 1, {&observer});
  MockFault die;
  die.chunks = 5;
  die.die_after_chunks = 1;
  a.PushFault(die, 2);
  for (int i = 0; i < 3; ++i) {
    StreamingResponse s;
    ASSERT_TRUE(s.Open(worker.port(), kChat, kStreamBody));
    s.ReadToEnd();
  }
  EXPECT_EQ(AttemptsOf(observer, 3), (Attempts{{"a", AttemptOutcome::kBrokenStream},
                                               {"a", AttemptOutcome::kBrokenStream},
                                               {"a", AttemptOutcome::kSuccess}}));
  auto table = worker.store().Current();
  const HealthSnapshot h = table->health(0).Snapshot(std::chrono::steady_clock::now());
  EXPECT_EQ(h.consecutive_failures, 0u);
  EXPECT_FALSE(h.ejected);
}

TEST(ProxyAttempts, AClientThatLeavesMidStreamIsCancelledAndNeutralForHealth) {
  MockLlm a(test::NamedMock("a"));
  RecordingObserver observer;
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}), 1, {&observer});
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), kChat, kStreamBody,
                     {{"x-mock-chunks", "100"}, {"x-mock-chunk-gap-ms", "20"}}));
  EXPECT_EQ(s.status(), 200);
  s.Close();
  EXPECT_EQ(AttemptsOf(observer, 1), (Attempts{{"a", AttemptOutcome::kCancelled}}));
  auto table = worker.store().Current();
  EXPECT_EQ(table->health(0).Snapshot(std::chrono::steady_clock::now()).consecutive_failures, 0u);
}

// Issue 10 item 14: the free resend after a stale pooled connection is an attempt of its
// own in the metrics and in x-llmproxy-attempts.
// A pooled connection the upstream closed while idle is seen closed before reuse (the pool
// peeks every connection it hands out), so the request goes out once on a fresh one: no
// resend, one attempt. The counted resend after a failed write is in
// tests/hostile/upstream_reuse_test.cc.
TEST(ProxyAttempts, APooledConnectionTheUpstreamClosedIsNotReusedNorCountedTwice) {
  MockLlmOptions options = test::NamedMock("a");
  options.idle_timeout = 50ms;  // the mock closes idle keep-alive connections quickly
  MockLlm a(options);
  RecordingObserver observer;
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}), 1, {&observer});
  test::HttpResult first = PostJson(worker.port(), kChat, kPlainBody);
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.Header("x-llmproxy-attempts"), "1");
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  // Ten times the mock's idle timeout: the pooled connection is closed by then (the mock
  // exposes no count of open connections to wait on).
  std::this_thread::sleep_for(500ms);
  test::HttpResult second = PostJson(worker.port(), kChat, kPlainBody);
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(second.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(AttemptsOf(observer, 2),
            (Attempts{{"a", AttemptOutcome::kSuccess}, {"a", AttemptOutcome::kSuccess}}));
  EXPECT_EQ(observer.Records()[1].attempts, 1u);
  EXPECT_EQ(a.Stats().connections, 2u);
  EXPECT_EQ(a.Stats().requests, 2u);
}

}  // namespace
}  // namespace llmproxy
