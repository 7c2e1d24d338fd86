// The worker in-process against MockLlm upstreams: what reaches the upstream (bytes,
// key, headers), model resolution, failover and what the client gets back.
#include <optional>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using test::HttpResult;
using test::MockBackend;
using test::PostJson;
using test::TestConfig;
using test::TestWorker;

MockFault StatusFault(int status, std::optional<std::string> body = std::nullopt,
                      std::optional<int> retry_after_s = std::nullopt) {
  MockFault f;
  f.status = status;
  f.body = std::move(body);
  f.retry_after_s = retry_after_s;
  return f;
}

MockFault HangFault() {
  MockFault f;
  f.hang = true;
  return f;
}

TEST(ProxyForwarding, BodyReachesUpstreamByteExact) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"mock-small"})}));
  // Odd spacing, key order, escapes and non-ASCII must all survive untouched.
  const std::string body =
      "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"h\\u00e9llo \\\"q\\\" \xc3\xa9\"} ],"
      "\n\t\"model\":\"mock-small\", \"temperature\": 0.50, \"extra\": {\"model\": \"x\"} }";
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.error << r.body;
  auto requests = a.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].body, body);
  EXPECT_EQ(requests[0].body_sha256, test::Sha256Hex(body));
  EXPECT_EQ(requests[0].target, "/v1/chat/completions");
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "a");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_FALSE(r.Header("x-request-id").empty());
  EXPECT_EQ(r.Header("access-control-allow-origin"), "*");
}

TEST(ProxyForwarding, RoutesMapToUpstreamPaths) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"mock-small"})}));
  const std::string body = R"({"model":"mock-small","input":"x","prompt":"y"})";
  EXPECT_EQ(PostJson(worker.port(), "/v1/completions", body).status, 200);
  EXPECT_EQ(PostJson(worker.port(), "/v1/embeddings", body).status, 200);
  auto requests = a.Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].target, "/v1/completions");
  EXPECT_EQ(requests[1].target, "/v1/embeddings");
}

TEST(ProxyForwarding, ClientKeyReplacedByBackendKeyAndHeadersFiltered) {
  MockLlm a(test::NamedMock("a"));
  BackendConfig b = MockBackend("a", a.BaseUrl(), {"mock-small"}, "sk-backend-secret");
  b.headers["X-Extra"] = "extra-value";
  TestWorker worker(TestConfig({b}));
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"mock-small"})",
                          {{"Authorization", "Bearer sk-client-key"},
                           {"Cookie", "session=1"},
                           {"X-Custom", "kept"},
                           {"OpenAI-Organization", "org-1"},
                           {"x-request-id", "req-from-client"}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto requests = a.Requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& got = requests[0];
  EXPECT_EQ(got.Header("authorization"), "Bearer sk-backend-secret");
  EXPECT_FALSE(got.HasHeader("cookie"));
  EXPECT_EQ(got.Header("x-custom"), "kept");
  EXPECT_EQ(got.Header("openai-organization"), "org-1");
  EXPECT_EQ(got.Header("x-extra"), "extra-value");
  EXPECT_EQ(got.Header("x-request-id"), "req-from-client");
  EXPECT_EQ(got.Header("host"), "127.0.0.1:" + std::to_string(a.port()));
  // Useful upstream headers reach the client.
  EXPECT_EQ(r.Header("x-ratelimit-remaining-requests"), "99");
  EXPECT_EQ(r.Header("content-type").substr(0, 16), "application/json");
}

TEST(ProxyForwarding, GeneratesRequestIdWhenClientSendsNone) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"mock-small"})}));
  ASSERT_EQ(PostJson(worker.port(), "/v1/chat/completions", R"({"model":"mock-small"})").status,
            200);
  auto requests = a.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_FALSE(requests[0].Header("x-request-id").empty());
}

TEST(ProxyResolution, AutoAndEmptyUseTheBackendDefaultModel) {
  MockLlm a(test::NamedMock("a"));
  BackendConfig b = MockBackend("a", a.BaseUrl(), {"mock-small", "mock-large"});
  b.default_model = "mock-large";
  TestWorker worker(TestConfig({b}));
  const std::string auto_body = R"({"model": "auto", "messages": []})";
  ASSERT_EQ(PostJson(worker.port(), "/v1/chat/completions", auto_body).status, 200);
  ASSERT_EQ(PostJson(worker.port(), "/v1/chat/completions", R"({"messages": []})").status, 200);
  auto requests = a.Requests();
  ASSERT_EQ(requests.size(), 2u);
  // Only the model value changed; every other byte is the client's.
  EXPECT_EQ(requests[0].body, R"({"model": "mock-large", "messages": []})");
  EXPECT_EQ(nlohmann::json::parse(requests[1].body)["model"], "mock-large");
}

TEST(ProxyResolution, AliasTriesItsModelsInOrder) {
  MockLlm a(test::NamedMock("a"));
  MockLlm b(test::NamedMock("b"));
  Config c = TestConfig(
      {MockBackend("a", a.BaseUrl(), {"model-one"}), MockBackend("b", b.BaseUrl(), {"model-two"})});
  c.model_aliases.push_back({"gpt-4o", {"model-one", "model-two"}});
  TestWorker worker(c);
  a.SetDefaultFault(StatusFault(500));
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"gpt-4o"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  ASSERT_EQ(a.RequestCount(), 1u);
  ASSERT_EQ(b.RequestCount(), 1u);
  EXPECT_EQ(a.Requests()[0].body, R"({"model":"model-one"})");
  EXPECT_EQ(b.Requests()[0].body, R"({"model":"model-two"})");
}

TEST(ProxyResolution, ServedModelBalancedOnlyAmongItsBackends) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b")), c(test::NamedMock("c"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"shared", "only-a"}),
                                MockBackend("b", b.BaseUrl(), {"shared"}),
                                MockBackend("c", c.BaseUrl(), {"other"})}));
  std::set<std::string> served_by;
  for (int i = 0; i < 6; ++i) {
    HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"shared"})");
    ASSERT_EQ(r.status, 200);
    served_by.insert(r.Header("x-llmproxy-backend"));
  }
  EXPECT_EQ(served_by, (std::set<std::string>{"a", "b"}));  // round-robin: both, never c
  EXPECT_EQ(c.RequestCount(), 0u);
  EXPECT_EQ(a.RequestCount(), 3u);
  // A model served as asked is forwarded unchanged.
  EXPECT_EQ(a.Requests()[0].body, R"({"model":"shared"})");
}

TEST(ProxyResolution, UnknownModelFallsBackOrIsRejected) {
  MockLlm a(test::NamedMock("a"));
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"mock-small"})});
  {
    TestWorker worker(c);
    HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"nope-9"})");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(nlohmann::json::parse(a.Requests().back().body)["model"], "mock-small");
  }
  c.unknown_model = UnknownModelPolicy::kReject;
  TestWorker worker(c);
  size_t before = a.RequestCount();
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"nope-9"})");
  EXPECT_EQ(r.status, 404);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  EXPECT_EQ(a.RequestCount(), before);
}

class ProxyFailover : public ::testing::Test {
 protected:
  MockLlm a{test::NamedMock("a")};
  MockLlm b{test::NamedMock("b")};
  // Round-robin starting at a: the first request always tries a first.
  std::unique_ptr<TestWorker> worker = std::make_unique<TestWorker>(
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})}));
  HttpResult Chat() { return PostJson(worker->port(), "/v1/chat/completions", R"({"model":"m"})"); }
};

TEST_F(ProxyFailover, On500TheSecondBackendAnswers) {
  a.SetDefaultFault(StatusFault(500));
  HttpResult r = Chat();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(a.RequestCount(), 1u);
  EXPECT_EQ(b.RequestCount(), 1u);
}

TEST_F(ProxyFailover, On429TheSecondBackendAnswersAndRetryAfterCoolsDown) {
  a.SetDefaultFault(StatusFault(429, std::nullopt, 60));
  HttpResult r = Chat();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
  // a is cooling down for 60 s: the next requests go straight to b.
  for (int i = 0; i < 3; ++i) {
    HttpResult again = Chat();
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(again.Header("x-llmproxy-attempts"), "1");
  }
  EXPECT_EQ(a.RequestCount(), 1u);
}

TEST_F(ProxyFailover, OnConnectRefusedTheSecondBackendAnswers) {
  MockLlm& ok = b;
  worker = std::make_unique<TestWorker>(TestConfig(
      {MockBackend("dead", "http://127.0.0.1:" + std::to_string(test::UnusedPort()) + "/v1", {"m"}),
       MockBackend("b", ok.BaseUrl(), {"m"})}));
  HttpResult r = Chat();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
}

TEST_F(ProxyFailover, No400RetryAndTheBodyComesBackAsItCame) {
  const std::string upstream_body = R"({"error":{"message":"bad thing","type":"x","code":"y"}})";
  a.SetDefaultFault(StatusFault(400, upstream_body));
  HttpResult r = Chat();
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, upstream_body);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "a");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(b.RequestCount(), 0u);
}

TEST_F(ProxyFailover, WhenAllFailTheLastUpstreamErrorIsPassedBack) {
  a.SetDefaultFault(StatusFault(500, R"({"error":"from a"})"));
  b.SetDefaultFault(StatusFault(503, R"({"error":"from b"})"));
  HttpResult r = Chat();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, R"({"error":"from b"})");
  // a, b, then (nothing untried left) a and b again after a backoff: retry 3.
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "4");
  EXPECT_EQ(a.RequestCount(), 2u);
  EXPECT_EQ(b.RequestCount(), 2u);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
}

TEST_F(ProxyFailover, AllConnectRefusedGives502Json) {
  worker = std::make_unique<TestWorker>(TestConfig(
      {MockBackend("dead1", "http://127.0.0.1:" + std::to_string(test::UnusedPort()), {"m"}),
       MockBackend("dead2", "http://127.0.0.1:" + std::to_string(test::UnusedPort()), {"m"})}));
  HttpResult r = Chat();
  EXPECT_EQ(r.status, 502);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_EQ(j["error"]["code"], "bad_gateway");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "4");  // both, then both again (repeats)
}

TEST_F(ProxyFailover, AllTimingOutGives504Json) {
  Config c =
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})});
  c.timeout = 300ms;
  worker = std::make_unique<TestWorker>(c);
  a.SetDefaultFault(HangFault());
  b.SetDefaultFault(HangFault());
  HttpResult r = Chat();
  EXPECT_EQ(r.status, 504);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["error"]["code"], "timeout");
}

TEST_F(ProxyFailover, PerBackendTimeoutOverridesTheTableTimeout) {
  Config c =
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})});
  c.timeout = std::chrono::seconds(30);
  c.backends[0].timeout = 200ms;
  worker = std::make_unique<TestWorker>(c);
  a.SetDefaultFault(HangFault());
  auto start = std::chrono::steady_clock::now();
  HttpResult r = Chat();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);  // far below the 30 s table value
}

TEST(ProxyObservers, RecordCarriesTheRequestsStory) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b"));
  test::RecordingObserver observer;
  TestWorker worker(
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})}), 1,
      {&observer});
  a.SetDefaultFault(StatusFault(500));
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})",
                          {{"x-request-id", "rid-1"}});
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  RequestRecord rec = observer.Records()[0];
  EXPECT_EQ(rec.request_id, "rid-1");
  EXPECT_EQ(rec.status, 200);
  EXPECT_EQ(rec.backend, "b");
  EXPECT_EQ(rec.model_requested, "m");
  EXPECT_EQ(rec.model_resolved, "m");
  EXPECT_EQ(rec.attempts, 2u);
  EXPECT_EQ(rec.path, "/v1/chat/completions");
  EXPECT_EQ(rec.bytes_in, 13u);
  EXPECT_EQ(rec.bytes_out, r.body.size());
  ASSERT_TRUE(rec.prompt_tokens.has_value());
  ASSERT_TRUE(rec.completion_tokens.has_value());
  EXPECT_GT(rec.duration_seconds, 0);
  EXPECT_LE(rec.overhead_seconds, rec.duration_seconds);
  auto attempts = observer.Attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0], std::make_pair(std::string("a"), AttemptOutcome::kServerError));
  EXPECT_EQ(attempts[1], std::make_pair(std::string("b"), AttemptOutcome::kSuccess));
}

TEST(ProxyTable, ASwappedTableIsUsedByTheNextRequest) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  ASSERT_EQ(PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})")
                .Header("x-llmproxy-backend"),
            "a");
  ASSERT_EQ(worker.Apply(TestConfig({MockBackend("b", b.BaseUrl(), {"m"})})), "");
  EXPECT_EQ(worker.store().version(), 2u);
  EXPECT_EQ(PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})")
                .Header("x-llmproxy-backend"),
            "b");
  // An invalid table is refused and the last good one stays.
  Config bad = TestConfig({});
  EXPECT_NE(worker.Apply(bad), "");
  EXPECT_EQ(worker.store().version(), 2u);
  EXPECT_EQ(PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})").status, 200);
}

TEST(ProxyServer, KeepAliveServesSeveralRequestsOnOneConnection) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  auto results = test::HttpCallsOnOneConnection(
      worker.port(), {{"/v1/chat/completions", R"({"model":"m"})"},
                      {"/health", ""},
                      {"/v1/chat/completions", R"({"model":"m","x":1})"}});
  ASSERT_EQ(results.size(), 3u);
  for (const auto& r : results) EXPECT_EQ(r.status, 200);
  EXPECT_EQ(a.Stats().connections, 1u);  // and the upstream connection was reused
}

TEST(ProxyServer, SeveralThreadsShareThePort) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}), 3);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})").status, 200);
  }
  EXPECT_EQ(a.RequestCount(), 12u);
}

}  // namespace
}  // namespace llmproxy
