// Failover by what a failure is about, through the worker (docs/routing.md "Health",
// "Failover order", "Too long for the model"): a 429 on one model leaves the entry's other
// models alone, entries of one account share a 429, entries on one origin share a connect
// failure; after a timeout the silent origin's other entries are the last resort; a 400
// context-length error moves to a larger model of the alias, any other 400 is the answer.
// Measured on what the client got and what the mocks saw (count, order, timing).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/observe/metrics.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::MockBackend;
using test::PostJson;
using test::TestConfig;
using test::TestWorker;

constexpr const char* kChat = "/v1/chat/completions";

std::string Body(const std::string& model, bool stream = false) {
  return R"({"model":")" + model + R"(","messages":[{"role":"user","content":"hi"}])" +
         (stream ? R"(,"stream":true})" : "}");
}

MockFault Status(int status, std::optional<int> retry_after_s = std::nullopt) {
  MockFault f;
  f.status = status;
  f.retry_after_s = retry_after_s;
  return f;
}

MockFault Reply(int status, std::string body) {
  MockFault f;
  f.status = status;
  f.body = std::move(body);
  return f;
}

int64_t Ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// The model each request the mock saw asked for.
std::vector<std::string> ModelsSeen(const MockLlm& mock) {
  std::vector<std::string> models;
  for (const ReceivedRequest& r : mock.Requests()) {
    const size_t at = r.body.find(R"("model":")");
    if (at == std::string::npos) {
      models.push_back("?");
      continue;
    }
    const size_t begin = at + 9;
    models.push_back(r.body.substr(begin, r.body.find('"', begin) - begin));
  }
  return models;
}

// The llmproxy_backend_up line of `backend` in a scrape ("" when absent).
std::string BackendUpLine(Metrics& metrics, const std::string& backend) {
  const std::string text = metrics.Serialize();
  const std::string key = "llmproxy_backend_up{backend=\"" + backend + "\"} ";
  const size_t at = text.find(key);
  if (at == std::string::npos) return "";
  return text.substr(at, text.find('\n', at) - at);
}

// --- Rule 4: what a failure is about ------------------------------------------------

TEST(ProxyFailover, A429OnOneModelDoesNotCoolTheSameEntrysOtherModel) {
  MockLlm ma(test::NamedMock("a")), mb(test::NamedMock("b"));
  Config c = TestConfig(
      {MockBackend("a", ma.BaseUrl(), {"m", "n"}), MockBackend("b", mb.BaseUrl(), {"m", "n"})});
  Metrics metrics;
  TestWorker worker(std::move(c), 1, {&metrics});  // round-robin: a first in each rotation
  metrics.AttachTableStore(worker.store());
  ma.PushFault(Status(429, 30), 1);
  test::HttpResult r1 = PostJson(worker.port(), kChat, Body("m"));
  EXPECT_EQ(r1.status, 200);
  EXPECT_EQ(r1.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r1.Header("x-llmproxy-attempts"), "2");
  // Model n on a: untouched by the 429 on m.
  test::HttpResult r2 = PostJson(worker.port(), kChat, Body("n"));
  EXPECT_EQ(r2.status, 200);
  EXPECT_EQ(r2.Header("x-llmproxy-backend"), "a") << "a 429 on m cooled n";
  EXPECT_EQ(r2.Header("x-llmproxy-attempts"), "1");
  // Model m on a is still held by its Retry-After: a's turn goes to b.
  test::HttpResult r3 = PostJson(worker.port(), kChat, Body("m"));
  EXPECT_EQ(r3.status, 200);
  EXPECT_EQ(r3.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r3.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(ModelsSeen(ma), (std::vector<std::string>{"m", "n"}));
  // a still serves n: up.
  EXPECT_EQ(BackendUpLine(metrics, "a"), R"(llmproxy_backend_up{backend="a"} 1)");
  std::printf("[rule 4] 429 on (a, m): n still served by a; mock a saw %zu requests, b %zu\n",
              ma.RequestCount(), mb.RequestCount());
}

TEST(ProxyFailover, TwoEntriesOfOneAccountShareA429OnAModel) {
  MockLlm shared(test::NamedMock("shared")), other(test::NamedMock("other"));
  BackendConfig a1 = MockBackend("a1", shared.BaseUrl(), {"m"});
  BackendConfig a2 = MockBackend("a2", shared.BaseUrl(), {"m"});
  a2.api_key = a1.api_key;
  // Rotation a1, b, a2: the second request's turn is a2's.
  TestWorker worker(TestConfig({a1, MockBackend("b", other.BaseUrl(), {"m"}), a2}));
  shared.PushFault(Status(429, 30), 1);
  test::HttpResult r1 = PostJson(worker.port(), kChat, Body("m"));
  EXPECT_EQ(r1.status, 200);
  EXPECT_EQ(r1.Header("x-llmproxy-backend"), "b");
  test::HttpResult r2 = PostJson(worker.port(), kChat, Body("m"));
  EXPECT_EQ(r2.status, 200);
  EXPECT_EQ(r2.Header("x-llmproxy-backend"), "b") << "a2 spends from a1's rate limit";
  EXPECT_EQ(r2.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(shared.RequestCount(), 1u);
  EXPECT_EQ(other.RequestCount(), 2u);
}

TEST(ProxyFailover, TwoEntriesOnOneOriginShareAConnectFailure) {
  MockLlm other(test::NamedMock("other"));
  const std::string dead = "http://127.0.0.1:" + std::to_string(test::UnusedPort()) + "/v1";
  // Two keys on one dead origin; rotation x1, b, x2.
  Config c = TestConfig({MockBackend("x1", dead, {"m"}), MockBackend("b", other.BaseUrl(), {"m"}),
                         MockBackend("x2", dead, {"m"})});
  c.health.failure_threshold = 1;
  test::RecordingObserver observer;
  Metrics metrics;
  TestWorker worker(std::move(c), 1, {&observer, &metrics});
  metrics.AttachTableStore(worker.store());
  test::HttpResult r1 = PostJson(worker.port(), kChat, Body("m"));
  EXPECT_EQ(r1.status, 200);
  EXPECT_EQ(r1.Header("x-llmproxy-attempts"), "2");
  test::HttpResult r2 = PostJson(worker.port(), kChat, Body("m"));
  EXPECT_EQ(r2.status, 200);
  EXPECT_EQ(r2.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r2.Header("x-llmproxy-attempts"), "1") << "x2 was tried on the origin x1 found dead";
  ASSERT_TRUE(observer.WaitForRecords(2, 5s));
  EXPECT_EQ(observer.Attempts(), (std::vector<std::pair<std::string, AttemptOutcome>>{
                                     {"x1", AttemptOutcome::kConnectError},
                                     {"b", AttemptOutcome::kSuccess},
                                     {"b", AttemptOutcome::kSuccess}}));
  // llmproxy_backend_up: both entries of the dead origin are down, b is up.
  auto table = worker.store().Current();
  const auto now = Clock::now();
  EXPECT_FALSE(table->BackendUp(0, now));
  EXPECT_TRUE(table->BackendUp(1, now));
  EXPECT_FALSE(table->BackendUp(2, now));
  EXPECT_EQ(BackendUpLine(metrics, "x2"), R"(llmproxy_backend_up{backend="x2"} 0)")
      << "x2 never failed itself, but its origin did";
  EXPECT_EQ(BackendUpLine(metrics, "b"), R"(llmproxy_backend_up{backend="b"} 1)");
}

TEST(ProxyFailover, AfterA5xxTheAliassNextModelComesBeforeTheSameAccountsOtherEntry) {
  MockLlm mock(test::NamedMock("p"));
  BackendConfig a1 = MockBackend("a1", mock.BaseUrl(), {"m", "n"});
  BackendConfig a2 = MockBackend("a2", mock.BaseUrl(), {"m"});
  a2.api_key = a1.api_key;  // one account: a2/m shares a1's (account, m)
  Config c = TestConfig({a1, a2});
  c.model_aliases.push_back({"alias", {"m", "n"}});
  TestWorker worker(std::move(c));
  mock.PushFault(Status(503), 1);
  const auto start = Clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, Body("alias"));
  const auto took = Clock::now() - start;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "a1");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(ModelsSeen(mock), (std::vector<std::string>{"m", "n"}));
  EXPECT_LT(took, 1s) << "an untried candidate waits no backoff";
  std::printf("[rule 4] 503 on (a, m): next a1/n, attempts %s, wall %lld ms\n",
              r.Header("x-llmproxy-attempts").c_str(), static_cast<long long>(Ms(took)));
}

// --- Rule 5: silent providers --------------------------------------------------------

struct SilentRun {
  test::HttpResult result;
  Clock::duration took;
  size_t silent_requests = 0;
  size_t fallback_requests = 0;
};

// Two entries (two keys) on a mock that never answers, one on a healthy one; `alias`:
// the silent entries serve "slow" and the fallback "fast", behind alias "a" = [slow, fast].
SilentRun RunSilent(bool alias) {
  constexpr auto kTimeout = 500ms;
  MockLlm silent(test::NamedMock("silent")), fallback(test::NamedMock("fallback"));
  MockFault hang;
  hang.hang = true;
  silent.SetDefaultFault(hang);
  const std::vector<std::string> slow = {alias ? "slow" : "m"};
  const std::vector<std::string> fast = {alias ? "fast" : "m"};
  Config c = TestConfig({MockBackend("s1", silent.BaseUrl(), slow),
                         MockBackend("s2", silent.BaseUrl(), slow),
                         MockBackend("f", fallback.BaseUrl(), fast)});
  c.timeout = kTimeout;
  if (alias) c.model_aliases.push_back({"a", {"slow", "fast"}});
  TestWorker worker(std::move(c));  // round-robin: s1, then s2's turn
  SilentRun run;
  const auto start = Clock::now();
  run.result = PostJson(worker.port(), kChat, Body(alias ? "a" : "m"));
  run.took = Clock::now() - start;
  run.silent_requests = silent.RequestCount();
  run.fallback_requests = fallback.RequestCount();
  return run;
}

TEST(ProxyFailover, ASilentOriginCostsOneTimeoutNotTwo) {
  for (const bool alias : {false, true}) {
    SCOPED_TRACE(alias ? "alias [slow, fast]" : "one model");
    const SilentRun run = RunSilent(alias);
    EXPECT_EQ(run.result.status, 200) << run.result.body;
    EXPECT_EQ(run.result.Header("x-llmproxy-backend"), "f");
    EXPECT_EQ(run.result.Header("x-llmproxy-attempts"), "2");
    EXPECT_EQ(run.silent_requests, 1u) << "s2, on the origin that just timed out, was tried";
    EXPECT_EQ(run.fallback_requests, 1u);
    // One timeout (500 ms) and the fallback's answer; two timeouts would be >= 1000 ms.
    EXPECT_GE(run.took, 500ms);
    EXPECT_LT(run.took, 1000ms) << Ms(run.took) << " ms";
    std::printf("[rule 5] %s: attempts %s, silent mock %zu, fallback %zu, wall %lld ms\n",
                alias ? "alias" : "one model", run.result.Header("x-llmproxy-attempts").c_str(),
                run.silent_requests, run.fallback_requests, static_cast<long long>(Ms(run.took)));
  }
}

// --- Rule 9: too long for the model --------------------------------------------------

const std::string kContextError =
    R"({"error":{"message":"This model's maximum context length is 8192 tokens. However, )"
    R"(your messages resulted in 9000 tokens. Please reduce the length of the messages.",)"
    R"("type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}})";
const std::string kPolicyError =
    R"({"error":{"message":"Your request was rejected as a result of our safety system.",)"
    R"("type":"invalid_request_error","param":null,"code":"content_policy_violation"}})";

// One entry serving small (8192), same (8192) and large (128000); aliases
// "sized" = [small, large] and "flat" = [small, same].
Config Sized(const MockLlm& mock) {
  BackendConfig p = MockBackend("p", mock.BaseUrl(), {"small", "same", "large"});
  p.context_windows = {{"small", 8192}, {"same", 8192}, {"large", 128000}};
  Config c = TestConfig({p});
  c.model_aliases.push_back({"sized", {"small", "large"}});
  c.model_aliases.push_back({"flat", {"small", "same"}});
  return c;
}

TEST(ProxyFailover, AContextLengthErrorMovesToTheAliassLargerModel) {
  for (const bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "plain");
    MockLlm mock(test::NamedMock("p"));
    test::RecordingObserver observer;
    TestWorker worker(Sized(mock), 1, {&observer});
    mock.PushFault(Reply(400, kContextError), 1);
    const auto start = Clock::now();
    test::HttpResult r = PostJson(worker.port(), kChat, Body("sized", stream));
    const auto took = Clock::now() - start;
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
    if (stream) {
      EXPECT_NE(r.body.find("data: [DONE]"), std::string::npos);
    }
    EXPECT_EQ(ModelsSeen(mock), (std::vector<std::string>{"small", "large"}));
    const auto requests = mock.Requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_LT(requests[1].received_at - requests[0].received_at, 500ms) << "waited a backoff";
    ASSERT_TRUE(observer.WaitForRecords(1, 5s));
    EXPECT_EQ(observer.Attempts(),
              (std::vector<std::pair<std::string, AttemptOutcome>>{
                  {"p", AttemptOutcome::kContextLengthExceeded}, {"p", AttemptOutcome::kSuccess}}));
    // The backend did nothing wrong.
    auto table = worker.store().Current();
    EXPECT_EQ(table->health(0).Snapshot(Clock::now()).consecutive_failures, 0u);
    std::printf("[rule 9] %s: small -> large, attempts %s, mock saw %zu, wall %lld ms\n",
                stream ? "stream" : "plain", r.Header("x-llmproxy-attempts").c_str(),
                mock.RequestCount(), static_cast<long long>(Ms(took)));
  }
}

TEST(ProxyFailover, AContextLengthErrorWithNoLargerModelGoesBackUntouched) {
  MockLlm mock(test::NamedMock("p"));
  TestWorker worker(Sized(mock));
  mock.PushFault(Reply(400, kContextError), 1);
  test::HttpResult r = PostJson(worker.port(), kChat, Body("flat"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, kContextError);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(mock.RequestCount(), 1u) << "'same' is no larger than 'small'";
}

TEST(ProxyFailover, AContextLengthErrorOnAModelRequestPassesThrough) {
  MockLlm mock(test::NamedMock("p"));
  TestWorker worker(Sized(mock));
  mock.PushFault(Reply(400, kContextError), 1);
  test::HttpResult r = PostJson(worker.port(), kChat, Body("small"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, kContextError);
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(mock.RequestCount(), 1u);
}

TEST(ProxyFailover, AContentPolicy400OnAnAliasIsTheUsersAnswer) {
  MockLlm mock(test::NamedMock("p"));
  test::RecordingObserver observer;
  TestWorker worker(Sized(mock), 1, {&observer});
  mock.PushFault(Reply(400, kPolicyError), 1);
  test::HttpResult r = PostJson(worker.port(), kChat, Body("sized"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, kPolicyError);
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(mock.RequestCount(), 1u);
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  EXPECT_EQ(
      observer.Attempts(),
      (std::vector<std::pair<std::string, AttemptOutcome>>{{"p", AttemptOutcome::kClientError}}));
}

}  // namespace
}  // namespace llmproxy
