// A limited key through the in-process worker (docs/limits.md): admission from the lease,
// the 429s and their headers, the wait for a grant, and streams that ask the upstream for
// their usage so the reservation is settled with real tokens. The test plays the control
// plane's part by applying grants to the worker's KeyLeases itself.
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "dataplane/config_sync/key_leases.h"
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

v1::LeaseGrant Grant(uint64_t seq, uint64_t requests, uint64_t tokens, uint64_t remaining,
                     uint64_t reset_ms) {
  v1::LeaseGrant g;
  g.set_seq(seq);
  g.set_ttl_ms(60'000);
  auto* k = g.add_keys();
  k->set_key("team-a");
  k->mutable_granted()->set_requests(requests);
  k->mutable_granted()->set_tokens(tokens);
  k->mutable_remaining()->set_requests(remaining);
  k->mutable_remaining()->set_tokens(remaining);
  k->mutable_remaining()->set_budget(remaining);
  k->mutable_reset_ms()->set_requests(reset_ms);
  k->mutable_reset_ms()->set_budget(reset_ms);
  return g;
}

class ProxyLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    leases.OnStream(true, LeaseNowMs());
    v1::LoadReport announced;  // the stream's first report: nothing held yet
    leases.TakeReport(announced, LeaseNowMs());
  }
  Config WithKey(ClientKey key) {
    Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
    key.name = "team-a";
    key.sha256 = test::Sha256Hex("secret-a");
    c.auth_keys = {key};
    return c;
  }
  HttpResult Post(const std::string& body, const std::string& route = "/v1/chat/completions") {
    return PostJson(worker.port(), route, body,
                    {{"Authorization", "Bearer secret-a"}, {"x-api-key", "secret-a"}});
  }

  // The key's lease once a request settled (the first report spending tokens); the
  // request's response may reach the client a moment before it settles.
  v1::KeyLease Settled() {
    v1::KeyLease lease;
    EXPECT_TRUE(test::WaitUntil(
        [&] {
          v1::LoadReport report;
          leases.TakeReport(report, LeaseNowMs());
          if (report.leases_size() != 1 || report.leases(0).spent().tokens() == 0) return false;
          lease = report.leases(0);
          return true;
        },
        5s));
    return lease;
  }

  MockLlm a{test::NamedMock("a")};
  KeyLeases leases;
  TestWorker worker{std::nullopt, 1, {}, &leases};
};

TEST_F(ProxyLimits, AdmitsFromTheLeaseThenRefusesWithOpenAIsHeaders) {
  ClientKey key;
  key.rpm = 5;
  ASSERT_EQ(worker.Apply(WithKey(key)), "");
  leases.OnGrant(Grant(1, 2, 0, /*remaining=*/0, /*reset_ms=*/30'000), LeaseNowMs());
  const std::string chat = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  EXPECT_EQ(Post(chat).status, 200);
  EXPECT_EQ(Post(chat).status, 200);
  const auto before = std::chrono::steady_clock::now();
  HttpResult r = Post(chat);
  // The control plane said it has nothing left: refused at once, without waiting.
  EXPECT_LT(std::chrono::steady_clock::now() - before, 500ms);
  ASSERT_EQ(r.status, 429) << r.body;
  const auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(body["error"]["type"], "requests");
  EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "5");
  EXPECT_EQ(r.Header("x-ratelimit-remaining-requests"), "0");
  EXPECT_EQ(r.Header("x-ratelimit-reset-requests"), "30s");
  EXPECT_EQ(r.Header("retry-after"), "30");
  EXPECT_EQ(r.Header("x-ratelimit-limit-tokens"), "");  // the key has no tpm
  EXPECT_EQ(a.RequestCount(), 2u);

  // An Anthropic client gets Anthropic's error.
  HttpResult m = Post(R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]})",
                      "/v1/messages");
  ASSERT_EQ(m.status, 429) << m.body;
  EXPECT_EQ(nlohmann::json::parse(m.body)["type"], "error");
  EXPECT_EQ(nlohmann::json::parse(m.body)["error"]["type"], "rate_limit_error");
}

TEST_F(ProxyLimits, AShortLeaseAsksAndTheRequestGoesOnWhenTheGrantComes) {
  ClientKey key;
  key.rpm = 100;
  ASSERT_EQ(worker.Apply(WithKey(key)), "");
  // The "control plane": answers the ask that the waiting request makes.
  std::thread grantor([&] {
    ASSERT_TRUE(test::WaitUntil([&] { return leases.report_due(); }, 5s));
    v1::LoadReport report;
    leases.TakeReport(report, LeaseNowMs());
    ASSERT_EQ(report.leases_size(), 1);
    EXPECT_EQ(report.leases(0).want().requests(), 1u);
    leases.OnGrant(Grant(1, 3, 0, 97, 0), LeaseNowMs());
  });
  HttpResult r = Post(R"({"model":"m","messages":[]})");
  grantor.join();
  EXPECT_EQ(r.status, 200) << r.body;
}

// No grant within lease_wait (1 s): the control plane did not answer, so
// limits.on_control_plane_loss decides, not the key's limit.
TEST_F(ProxyLimits, AnAskUnansweredThroughTheWaitFollowsTheLossPolicy) {
  ClientKey key;
  key.rpm = 100;
  Config deny = WithKey(key);
  deny.limits.on_control_plane_loss = ControlPlaneLoss::kDeny;
  ASSERT_EQ(worker.Apply(deny), "");
  auto before = std::chrono::steady_clock::now();
  HttpResult r = Post(R"({"model":"m","messages":[]})");
  EXPECT_GE(std::chrono::steady_clock::now() - before, 900ms);
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_NE(r.body.find("control plane cannot be reached"), std::string::npos) << r.body;
  EXPECT_EQ(a.RequestCount(), 0u);

  ASSERT_EQ(worker.Apply(WithKey(key)), "");  // the default: allow
  r = Post(R"({"model":"m","messages":[]})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(a.RequestCount(), 1u);
}

TEST_F(ProxyLimits, AStreamAsksForItsUsageAndSettlesItsReservationWithIt) {
  ClientKey key;
  key.tpm = 10'000;
  ASSERT_EQ(worker.Apply(WithKey(key)), "");
  leases.OnGrant(Grant(1, 0, 5000, 5000, 0), LeaseNowMs());
  const std::string stream =
      R"({"model":"m","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]})";
  HttpResult r = Post(stream);
  ASSERT_EQ(r.status, 200) << r.body;
  // The upstream was asked for usage; the client, who did not ask, does not see it.
  ASSERT_EQ(a.RequestCount(), 1u);
  const std::string sent = a.Requests()[0].body;
  EXPECT_NE(sent.find(R"("stream_options":{"include_usage":true})"), std::string::npos) << sent;
  EXPECT_EQ(r.body.find("\"usage\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("[DONE]"), std::string::npos);
  // Settled: spent is the mock's usage (a quarter of the body it got + 5 chunks), and the
  // rest of the reservation is back in the balance.
  const uint64_t used = sent.size() / 4 + 5;
  const v1::KeyLease settled = Settled();
  EXPECT_EQ(settled.spent().tokens(), used);
  EXPECT_EQ(settled.held().tokens(), 5000 - used);
}

// A native Anthropic stream (relayed byte for byte) is watched for its usage too.
TEST_F(ProxyLimits, ANativeMessagesStreamSettlesWithItsUsage) {
  ClientKey key;
  key.tpm = 10'000;
  Config c = WithKey(key);
  c.backends[0].api = BackendApi::kAnthropic;
  ASSERT_EQ(worker.Apply(c), "");
  leases.OnGrant(Grant(1, 0, 5000, 5000, 0), LeaseNowMs());
  const std::string stream =
      R"({"model":"m","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]})";
  HttpResult r = PostJson(worker.port(), "/v1/messages", stream,
                          {{"x-api-key", "secret-a"}, {"anthropic-version", "2023-06-01"}});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(a.RequestCount(), 1u);
  EXPECT_EQ(a.Requests()[0].body, stream);  // as it came
  EXPECT_NE(r.body.find("message_stop"), std::string::npos) << r.body;
  const uint64_t used = stream.size() / 4 + 5;
  EXPECT_EQ(Settled().spent().tokens(), used);
}

TEST_F(ProxyLimits, ASpentBudgetIsRefusedWithBudgetExceededAndNoRetry) {
  ClientKey key;
  key.budget = KeyBudget{KeyBudget::Unit::kTokens, 100, std::chrono::hours(24)};
  ASSERT_EQ(worker.Apply(WithKey(key)), "");
  leases.OnGrant(Grant(1, 0, 0, 0, 3'600'000), LeaseNowMs());
  HttpResult r = Post(R"({"model":"m","messages":[]})");
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["code"], "budget_exceeded");
  EXPECT_EQ(r.Header("x-should-retry"), "false");
  EXPECT_EQ(r.Header("retry-after"), "3600");
  EXPECT_EQ(a.RequestCount(), 0u);
}

}  // namespace
}  // namespace llmproxy
