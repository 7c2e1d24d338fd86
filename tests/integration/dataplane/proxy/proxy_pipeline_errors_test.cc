// The worker's own answers: JSON errors (400, 401, 404, 405, 413, 503), CORS preflight,
// /v1/models and /health, and bad input that must never crash it.
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/config/key_hash.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using test::HttpCall;
using test::HttpResult;
using test::MockBackend;
using test::PostJson;
using test::TestConfig;
using test::TestWorker;

MockLlmOptions Named(const std::string& name, std::vector<std::string> models = {}) {
  MockLlmOptions o;
  o.name = name;
  if (!models.empty()) o.models = std::move(models);
  return o;
}

// Asserts the OpenAI error shape and returns its code.
std::string ErrorCode(const HttpResult& r) {
  EXPECT_EQ(r.Header("content-type"), "application/json");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  EXPECT_TRUE(j.is_object()) << r.body;
  if (!j.is_object() || !j.contains("error")) return "";
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  EXPECT_TRUE(j["error"]["code"].is_string());
  return j["error"]["code"].is_string() ? j["error"]["code"].get<std::string>() : "";
}

class ProxyErrors : public ::testing::Test {
 protected:
  MockLlm a{Named("a")};
  MockLlm b{Named("b", {"b-model"})};
  TestWorker worker{TestConfig({MockBackend("a", a.BaseUrl(), {"m", "shared"}),
                                MockBackend("b", b.BaseUrl(), {"b-model", "shared"})})};
};

TEST_F(ProxyErrors, UnknownRouteIs404Json) {
  HttpResult r = HttpCall(worker.port(), "GET", "/v2/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(ErrorCode(r), "not_found");
  EXPECT_EQ(r.Header("access-control-allow-origin"), "*");
}

TEST_F(ProxyErrors, WrongMethodIs405Json) {
  HttpResult r = HttpCall(worker.port(), "GET", "/v1/chat/completions");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(ErrorCode(r), "method_not_allowed");
  HttpResult r2 = HttpCall(worker.port(), "POST", "/v1/models", "{}");
  EXPECT_EQ(r2.status, 405);
  EXPECT_EQ(ErrorCode(r2), "method_not_allowed");
}

TEST_F(ProxyErrors, BodyOverTheLimitIs413Json) {
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.server.max_body_bytes = 1024;
  ASSERT_EQ(worker.Apply(c), "");
  std::string big = R"({"model":"m","x":")" + std::string(4096, 'x') + "\"}";
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(ErrorCode(r), "request_too_large");
  EXPECT_EQ(a.RequestCount(), 0u);
  // Chunked uploads are limited too (no Content-Length to check up front).
  std::string raw =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
      "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n";
  raw += "1000\r\n" + std::string(4096, ' ') + "\r\n0\r\n\r\n";
  std::string reply = test::RawExchange(worker.port(), raw, 5s);
  EXPECT_EQ(reply.substr(0, 12), "HTTP/1.1 413");
  // A body just under the limit passes.
  std::string ok = R"({"model":"m","x":")" + std::string(900, 'x') + "\"}";
  EXPECT_EQ(PostJson(worker.port(), "/v1/chat/completions", ok).status, 200);
}

TEST_F(ProxyErrors, BadBodiesAre400JsonAndNeverReachUpstream) {
  const std::vector<std::string> bodies = {"null",
                                           "[]",
                                           R"({"model":5})",
                                           R"({"model":"m","messages":[)",
                                           "",
                                           "{} {}",
                                           R"({"stream":"yes"})",
                                           "\xff\xfe garbage",
                                           std::string(200, '{'),
                                           R"("just a string")",
                                           "{\"model\":\"m\"",
                                           "  "};
  for (const std::string& body : bodies) {
    HttpResult r = PostJson(worker.port(), "/v1/chat/completions", body);
    EXPECT_EQ(r.status, 400) << "body: " << body;
    EXPECT_EQ(ErrorCode(r), "invalid_request") << "body: " << body;
    EXPECT_EQ(r.Header("x-llmproxy-attempts"), "0");
  }
  EXPECT_EQ(a.RequestCount() + b.RequestCount(), 0u);
  EXPECT_EQ(HttpCall(worker.port(), "GET", "/health").status, 200);
}

TEST_F(ProxyErrors, TenMegabytesOfGarbageDoNotCrashTheWorker) {
  std::string garbage(10 * 1000 * 1000, '\0');
  uint32_t x = 12345;
  for (char& c : garbage) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  // As a body (under the 10 MiB default limit): read whole, refused as JSON.
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", garbage, {}, 60s);
  EXPECT_EQ(r.status, 400) << r.error;
  EXPECT_EQ(ErrorCode(r), "invalid_request");
  EXPECT_EQ(r.body.rfind(R"({"error":{"message":"Invalid request body: )", 0), 0u) << r.body;
  EXPECT_EQ(a.RequestCount() + b.RequestCount(), 0u);
  // Garbage instead of HTTP itself: one exact 400, then the close (the rest is
  // discarded, never parsed as further requests).
  const std::string malformed =
      R"({"error":{"message":"Malformed HTTP request.","type":"invalid_request_error",)"
      R"("code":"invalid_request"}})";
  std::string reply = test::RawExchange(worker.port(), garbage.substr(0, 100000), 10s);
  EXPECT_EQ(reply.substr(0, reply.find("\r\n")), "HTTP/1.1 400 Bad Request") << reply.substr(0, 80);
  EXPECT_NE(reply.find("\r\nConnection: close\r\n"), std::string::npos) << reply;
  ASSERT_GE(reply.size(), malformed.size());
  EXPECT_EQ(reply.substr(reply.size() - malformed.size()), malformed);
  EXPECT_EQ(reply.find("HTTP/1.1", 1), std::string::npos) << "one answer only: " << reply;
  EXPECT_EQ(HttpCall(worker.port(), "GET", "/health").status, 200);
  EXPECT_EQ(PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})").status, 200);
}

TEST_F(ProxyErrors, OversizedHeaderIsRefused) {
  std::string raw = "GET /health HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 8; ++i)
    raw += "X-Big-" + std::to_string(i) + ": " + std::string(4096, 'h') + "\r\n";
  raw += "\r\n";
  std::string reply = test::RawExchange(worker.port(), raw, 5s);
  EXPECT_EQ(reply.substr(0, 12), "HTTP/1.1 431") << reply.substr(0, 40);
  EXPECT_EQ(HttpCall(worker.port(), "GET", "/health").status, 200);
}

TEST_F(ProxyErrors, ClientKeysAreEnforcedWhenConfigured) {
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.auth_keys = {ClientKey{"one", Sha256Hex("client-key-1"), {}},
                 ClientKey{"two", Sha256Hex("client-key-2"), {}}};
  ASSERT_EQ(worker.Apply(c), "");
  HttpResult none = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(ErrorCode(none), "invalid_api_key");
  HttpResult wrong = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})",
                              {{"Authorization", "Bearer client-key-3"}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body.find("client-key"), std::string::npos);  // never echoes keys
  HttpResult right = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})",
                              {{"Authorization", "Bearer client-key-2"}});
  EXPECT_EQ(right.status, 200);
  EXPECT_EQ(a.Requests().back().Header("authorization"), "Bearer key-a");
  EXPECT_EQ(HttpCall(worker.port(), "GET", "/v1/models").status, 401);
  EXPECT_EQ(
      HttpCall(worker.port(), "GET", "/v1/models", "", {{"Authorization", "Bearer client-key-1"}})
          .status,
      200);
  EXPECT_EQ(HttpCall(worker.port(), "GET", "/health").status, 200);  // probes need no key
}

TEST_F(ProxyErrors, KeyModelsRestrictWhatAKeyMayAskFor) {
  Config c = TestConfig(
      {MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"b-model"})});
  c.model_aliases.push_back({"fast", {"m"}});
  c.cross_model_fallback = true;
  c.auth_keys = {ClientKey{"team-a", Sha256Hex("key-team-a"), {"m", "fast"}},
                 ClientKey{"ops", Sha256Hex("key-ops"), {}}};
  ASSERT_EQ(worker.Apply(c), "");
  const std::vector<std::pair<std::string, std::string>> team = {
      {"Authorization", "Bearer key-team-a"}};
  const std::vector<std::pair<std::string, std::string>> ops = {
      {"Authorization", "Bearer key-ops"}};
  auto post = [&](std::string_view model, const auto& headers) {
    return PostJson(worker.port(), "/v1/chat/completions",
                    R"({"model":")" + std::string(model) + R"(","messages":[]})", headers);
  };
  EXPECT_EQ(post("m", team).status, 200);
  EXPECT_EQ(post("fast", team).status, 200);  // an alias it lists
  for (std::string_view model : {"b-model", "auto", "", "unknown-model"}) {
    HttpResult r = post(model, team);
    EXPECT_EQ(r.status, 403) << model;
    EXPECT_EQ(ErrorCode(r), "model_not_allowed") << model;
    EXPECT_NE(r.body.find("team-a"), std::string::npos) << r.body;
  }
  EXPECT_EQ(b.RequestCount(), 0u);
  EXPECT_EQ(post("b-model", ops).status, 200);  // no models: anything
  EXPECT_EQ(b.RequestCount(), 1u);

  // cross_model_fallback would send the restricted key to b's default model: not for it.
  a.SetDefaultFault(MockFault{.status = 500});
  HttpResult failed = post("m", team);
  EXPECT_EQ(failed.status, 500) << failed.body;
  EXPECT_EQ(b.RequestCount(), 1u);
  EXPECT_EQ(post("m", ops).status, 200);  // the unrestricted key falls back to b
  EXPECT_EQ(b.RequestCount(), 2u);
  a.ClearFaults();

  // In the client's protocol: Anthropic's permission_error for a Messages client.
  HttpResult messages =
      PostJson(worker.port(), "/v1/messages",
               R"({"model":"b-model","max_tokens":5,"messages":[{"role":"user","content":"hi"}]})",
               {{"x-api-key", "key-team-a"}, {"anthropic-version", "2023-06-01"}});
  EXPECT_EQ(messages.status, 403);
  auto j = nlohmann::json::parse(messages.body, nullptr, false);
  EXPECT_EQ(j["type"], "error") << messages.body;
  EXPECT_EQ(j["error"]["type"], "permission_error") << messages.body;

  // /v1/models lists what the key may ask for, in either shape.
  auto ids = [&](const std::vector<std::pair<std::string, std::string>>& headers) {
    HttpResult r = HttpCall(worker.port(), "GET", "/v1/models", "", headers);
    EXPECT_EQ(r.status, 200);
    std::vector<std::string> out;
    const nlohmann::json list = nlohmann::json::parse(r.body);
    for (const auto& m : list["data"]) out.push_back(m["id"]);
    return out;
  };
  EXPECT_EQ(ids(team), (std::vector<std::string>{"m", "fast"}));
  EXPECT_EQ(ids(ops), (std::vector<std::string>{"b-model", "m", "fast"}));
  EXPECT_EQ(ids({{"x-api-key", "key-team-a"}, {"anthropic-version", "2023-06-01"}}),
            (std::vector<std::string>{"m", "fast"}));
}

TEST_F(ProxyErrors, NoRoutableBackendIs503Json) {
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.backends[0].drained = true;
  ASSERT_EQ(worker.Apply(c), "");
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(ErrorCode(r), "no_healthy_backend");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "0");
}

TEST_F(ProxyErrors, CorsPreflightLetsTheBrowserSdkThrough) {
  HttpResult r =
      HttpCall(worker.port(), "OPTIONS", "/v1/chat/completions", "",
               {{"Origin", "http://localhost:3000"},
                {"Access-Control-Request-Method", "POST"},
                {"Access-Control-Request-Headers",
                 "authorization, content-type, x-stainless-os, x-stainless-retry-count"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.Header("access-control-allow-origin"), "*");
  EXPECT_NE(r.Header("access-control-allow-methods").find("POST"), std::string::npos);
  EXPECT_EQ(r.Header("access-control-allow-headers"),
            "authorization, content-type, x-stainless-os, x-stainless-retry-count");
  // Without a request-headers list, the default covers the OpenAI SDK's headers.
  HttpResult d = HttpCall(worker.port(), "OPTIONS", "/v1/models");
  EXPECT_EQ(d.status, 204);
  EXPECT_NE(d.Header("access-control-allow-headers").find("x-stainless-os"), std::string::npos);
  EXPECT_NE(d.Header("access-control-allow-headers").find("authorization"), std::string::npos);
  // And the actual response carries the CORS header too.
  HttpResult post = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})",
                             {{"Origin", "http://localhost:3000"}});
  EXPECT_EQ(post.Header("access-control-allow-origin"), "*");
  EXPECT_NE(post.Header("access-control-expose-headers").find("x-llmproxy-backend"),
            std::string::npos);
}

TEST_F(ProxyErrors, ModelsIsTheUnionOfBackendsModels) {
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m", "shared"}),
                         MockBackend("b", b.BaseUrl(), {"b-model", "shared"})});
  c.model_aliases.push_back({"gpt-4o", {"m"}});
  ASSERT_EQ(worker.Apply(c), "");
  HttpResult r = HttpCall(worker.port(), "GET", "/v1/models");
  ASSERT_EQ(r.status, 200);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_TRUE(j["data"].is_array());
  std::vector<std::string> ids;
  for (const auto& m : j["data"]) {
    ids.push_back(m["id"]);
    EXPECT_EQ(m["object"], "model");
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"b-model", "m", "shared", "gpt-4o"}));
}

TEST(ProxyHealth, AProxiedRequestBeforeTheFirstTableWaitsForItInsteadOf503) {
  // A worker the control plane restarts listens (SO_REUSEPORT) before its table arrives:
  // requests the kernel hands it meanwhile must not fail.
  TestWorker worker(std::nullopt);
  MockLlm a(Named("a"));
  std::thread apply([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(worker.Apply(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})})), "");
  });
  const auto start = std::chrono::steady_clock::now();
  HttpResult r = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})");
  const auto took = std::chrono::steady_clock::now() - start;
  apply.join();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "a");
  EXPECT_GE(took, std::chrono::milliseconds(150));
}

TEST(ProxyHealth, StartingWithoutATableThenOk) {
  TestWorker worker(std::nullopt);
  HttpResult starting = HttpCall(worker.port(), "GET", "/health");
  EXPECT_EQ(starting.status, 503);
  EXPECT_EQ(nlohmann::json::parse(starting.body)["status"], "starting");
  HttpResult models = HttpCall(worker.port(), "GET", "/v1/models");
  EXPECT_EQ(models.status, 200);
  EXPECT_TRUE(nlohmann::json::parse(models.body)["data"].is_array());
  HttpResult proxied = PostJson(worker.port(), "/v1/chat/completions", R"({"model":"m"})");
  EXPECT_EQ(proxied.status, 503);
  EXPECT_EQ(ErrorCode(proxied), "not_ready");

  MockLlm a(Named("a"));
  Config c =
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", a.BaseUrl(), {"m"})});
  c.mode = BalanceMode::kLeastBusy;
  ASSERT_EQ(worker.Apply(c), "");
  HttpResult ok = HttpCall(worker.port(), "GET", "/health");
  ASSERT_EQ(ok.status, 200);
  auto j = nlohmann::json::parse(ok.body);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["backends"], 2);
  EXPECT_EQ(j["mode"], "least-busy");
  EXPECT_EQ(j["config_version"], 1);
}

TEST(ProxyDrain, InFlightStreamFinishesDuringADrain) {
  MockLlm a(Named("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  test::StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", R"({"model":"m","stream":true})",
                     {{"x-mock-chunks", "20"}, {"x-mock-chunk-gap-ms", "20"}}));
  std::thread drainer([&] { EXPECT_TRUE(worker.worker().Drain(10s)); });
  ASSERT_TRUE(s.ReadToEnd());
  EXPECT_NE(s.body().find("[DONE]"), std::string::npos);
  drainer.join();
}

}  // namespace
}  // namespace llmproxy
