// Client keys' limits held across workers (docs/limits.md), end to end: llmproxy-ctl with
// two supervised workers sharing one port, real requests over fresh connections (the
// kernel spreads them over both workers), the usage ledger as the judge.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/e2e/ctl_cluster_util.h"
#include "tests/e2e/e2e_util.h"

namespace llmproxy {
namespace {

using e2e::HttpRequest;
using e2e::WaitUntil;

class Limits : public CtlCluster {
 protected:
  // What the ledger has of `key` on model m1 (requests that reached a backend; refused
  // ones are counted under "(unknown)").
  nlohmann::json Totals(const std::string& key) {
    nlohmann::json t = nlohmann::json::parse(Admin({"--json", "usage", "--key", key}));
    nlohmann::json sum = {{"requests", 0}, {"prompt_tokens", 0}, {"completion_tokens", 0}};
    for (const auto& row : t["totals"]) {
      if (row["model"] != "m1") continue;
      for (const char* f : {"requests", "prompt_tokens", "completion_tokens"}) {
        sum[f] = sum[f].get<uint64_t>() + row[f].get<uint64_t>();
      }
    }
    return sum;
  }
  // Requests worker i answered, from its own metrics port.
  uint64_t Answered(int i) {
    auto r = HttpRequest(static_cast<uint16_t>(metrics_base_ + i), "GET", "/metrics");
    uint64_t n = 0;
    size_t pos = 0;
    while ((pos = r.body.find("\nllmproxy_requests_total{", pos)) != std::string::npos) {
      pos = r.body.find("} ", pos);
      if (pos == std::string::npos) break;
      n += static_cast<uint64_t>(std::stod(r.body.substr(pos + 2)));
    }
    return n;
  }
};

TEST_F(Limits, RpmThirtySixtyRequestsOverTwoWorkersGetExactlyThirtySuccesses) {
  WriteConfig({"m1"}, "auth:\n  keys:\n    - {name: team-a, key: secret-a, rpm: 30}\n");
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  Workers();
  int ok = 0, limited = 0;
  e2e::HttpResponse refused;
  for (int i = 0; i < 60; ++i) {
    auto r = HttpRequest(port_, "POST", "/v1/chat/completions", kChat,
                         {{"Authorization", "Bearer secret-a"}});
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++limited;
      refused = r;
    }
  }
  EXPECT_EQ(ok, 30);
  EXPECT_EQ(limited, 30);
  // Both workers took part.
  EXPECT_GT(Answered(0), 0u);
  EXPECT_GT(Answered(1), 0u);
  // The 429 speaks OpenAI: its error, Retry-After and the x-ratelimit-* headers.
  const nlohmann::json body = nlohmann::json::parse(refused.body);
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded") << refused.body;
  EXPECT_EQ(body["error"]["type"], "requests");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("team-a"), std::string::npos);
  EXPECT_EQ(refused.headers["x-ratelimit-limit-requests"], "30");
  EXPECT_EQ(refused.headers["x-ratelimit-remaining-requests"], "0");
  EXPECT_FALSE(refused.headers["x-ratelimit-reset-requests"].empty());
  const int retry = std::stoi(refused.headers["retry-after"]);
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 61);
  // Anthropic's clients get the refusal in their protocol.
  auto messages =
      HttpRequest(port_, "POST", "/v1/messages",
                  R"({"model":"m1","max_tokens":5,"messages":[{"role":"user","content":"hi"}]})",
                  {{"x-api-key", "secret-a"}});
  EXPECT_EQ(messages.status, 429);
  EXPECT_EQ(nlohmann::json::parse(messages.body)["error"]["type"], "rate_limit_error")
      << messages.body;
  // Counted per key and limit on the workers that refused.
  std::string metrics =
      HttpRequest(metrics_base_, "GET", "/metrics").body +
      HttpRequest(static_cast<uint16_t>(metrics_base_ + 1), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("llmproxy_ratelimited_total{key=\"team-a\",limit=\"requests\"}"),
            std::string::npos);
  // The ledger agrees: 30 requests reached a backend.
  ASSERT_TRUE(WaitUntil([&] { return Totals("team-a")["requests"] == 30; }, 15s))
      << Totals("team-a").dump();
}

TEST_F(Limits, TpmTwentyConcurrentStreamsNeverAdmitMoreTokensThanTheLimit) {
  // Each stream reserves its prompt estimate + max_tokens (30) before it goes out, so the
  // 20 that start together cannot all fit in 400 tokens, though each uses fewer.
  WriteConfig({"m1"}, "auth:\n  keys:\n    - {name: team-a, key: secret-a, tpm: 400}\n");
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  Workers();
  const std::string stream =
      R"({"model":"m1","stream":true,"max_tokens":30,"messages":[{"role":"user","content":"hi"}]})";
  std::atomic<int> ok{0}, limited{0}, other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([&] {
      auto r = HttpRequest(port_, "POST", "/v1/chat/completions", stream,
                           {{"Authorization", "Bearer secret-a"},
                            {"x-mock-chunks", "10"},
                            {"x-mock-chunk-gap-ms", "100"}});
      if (r.status == 200 && r.body.find("[DONE]") != std::string::npos) {
        ++ok;
      } else if (r.status == 429) {
        ++limited;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(other, 0);
  EXPECT_GT(ok, 0);
  EXPECT_GT(limited, 0);
  // The gateway asked for the streams' usage itself, so the ledger has their real tokens.
  ASSERT_TRUE(WaitUntil([&] { return Totals("team-a")["requests"] == ok.load(); }, 15s))
      << Totals("team-a").dump();
  const nlohmann::json t = Totals("team-a");
  const uint64_t used = t["prompt_tokens"].get<uint64_t>() + t["completion_tokens"].get<uint64_t>();
  EXPECT_EQ(t["completion_tokens"].get<uint64_t>(), 10u * ok.load());
  EXPECT_LE(used, 400u) << ok.load() << " streams admitted";
}

TEST_F(Limits, ABudgetStopsWithinOneRequestOfItsLimitAcrossAControlPlaneRestart) {
  // A token budget of 600; each request reserves its prompt estimate + max_tokens (10)
  // and uses its prompt (a quarter of the body, the mock's count) + 5.
  WriteConfig({"m1"},
              "auth:\n  keys:\n    - name: team-a\n      key: secret-a\n"
              "      budget: {tokens: 600, period: 1d}\n");
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  Workers();
  const std::string chat =
      R"({"model":"m1","max_tokens":10,"messages":[{"role":"user","content":"hello there"}]})";
  const uint64_t reservation = chat.size() / 3 + 1 + 10;
  auto send = [&] {
    return HttpRequest(port_, "POST", "/v1/chat/completions", chat,
                       {{"Authorization", "Bearer secret-a"}});
  };
  for (int i = 0; i < 8; ++i) ASSERT_EQ(send().status, 200) << i;
  ASSERT_TRUE(WaitUntil([&] { return Totals("team-a")["requests"] == 8; }, 15s));

  // The control plane dies (its lease state was saved within the last second) and a new
  // one (not supervising: the workers stay) takes over.
  std::this_thread::sleep_for(1500ms);
  ctl_->Signal(SIGKILL);
  ctl_->Wait(5s);
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return Version() > 0; }, 10s));
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, Version()); }, 15s));

  // Spent until refused: 10 refusals in a row. A balance one worker holds is not another's
  // to spend, so then wait until idle balances went back to the control plane (3 s idle,
  // then the next report) and go again, until a round admits nothing.
  int ok = 8;
  e2e::HttpResponse refused;
  for (int round = 0; round < 6; ++round) {
    if (round > 0) std::this_thread::sleep_for(6s);
    int in_a_row = 0, admitted = 0;
    for (int i = 0; i < 60 && in_a_row < 10; ++i) {
      auto r = send();
      if (r.status == 200) {
        ++ok;
        ++admitted;
        in_a_row = 0;
        continue;
      }
      ASSERT_EQ(r.status, 429) << r.body;
      refused = r;
      ++in_a_row;
    }
    ASSERT_EQ(in_a_row, 10) << "the budget never stopped the key";
    if (round > 0 && admitted == 0) break;
  }
  const nlohmann::json body = nlohmann::json::parse(refused.body);
  EXPECT_EQ(body["error"]["code"], "budget_exceeded") << refused.body;
  EXPECT_EQ(refused.headers["x-should-retry"], "false");

  ASSERT_TRUE(WaitUntil([&] { return Totals("team-a")["requests"] == ok; }, 15s))
      << Totals("team-a").dump();
  const nlohmann::json t = Totals("team-a");
  const uint64_t used = t["prompt_tokens"].get<uint64_t>() + t["completion_tokens"].get<uint64_t>();
  EXPECT_LE(used, 600u);
  EXPECT_GE(used + reservation, 600u) << "stopped more than one request short of the budget";
}

TEST_F(Limits, AKeyCreatedWithTheCliHoldsItsLimitOnBothWorkersAndStopsAtRevoke) {
  WriteConfig({"m1"}, "auth:\n  keys:\n    - {name: file-key, key: file-secret}\n");
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  Workers();
  const auto created = std::chrono::steady_clock::now();
  int code = -1;
  const nlohmann::json made =
      nlohmann::json::parse(Admin({"--json", "keys", "create", "team-x", "--rpm", "4"}, &code));
  ASSERT_EQ(code, 0) << made.dump();
  const std::string key = made["key"];
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, made["version"].get<uint64_t>()); }, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - created, 1s);
  const nlohmann::json listed = nlohmann::json::parse(Admin({"--json", "keys", "list"}));
  bool found = false;
  for (const auto& k : listed["keys"]) {
    if (k["name"] != "team-x") continue;
    found = true;
    EXPECT_EQ(k["rpm"], 4) << k.dump();
  }
  EXPECT_TRUE(found) << listed.dump();

  // 20 requests over both workers: exactly the 4 of its rpm succeed.
  int ok = 0, limited = 0;
  for (int i = 0; i < 20; ++i) {
    const int status = HttpRequest(port_, "POST", "/v1/chat/completions", kChat,
                                   {{"Authorization", "Bearer " + key}})
                           .status;
    ok += status == 200;
    limited += status == 429;
  }
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(limited, 16);
  // `keys usage NAME` reads the ledger like `usage --key NAME`.
  auto served = [&] {
    uint64_t n = 0;
    const nlohmann::json usage =
        nlohmann::json::parse(Admin({"--json", "keys", "usage", "team-x"}));
    for (const auto& row : usage["totals"]) {
      if (row["key"] == "team-x" && row["model"] == "m1") n += row["requests"].get<uint64_t>();
    }
    return n;
  };
  EXPECT_TRUE(WaitUntil([&] { return served() == 4; }, 15s))
      << Admin({"--json", "keys", "usage", "team-x"});

  const auto revoked = std::chrono::steady_clock::now();
  const nlohmann::json rv = nlohmann::json::parse(Admin({"--json", "keys", "revoke", "team-x"}, &code));
  ASSERT_EQ(code, 0) << rv.dump();
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, rv["version"].get<uint64_t>()); }, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - revoked, 1s);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", kChat,
                          {{"Authorization", "Bearer " + key}})
                  .status,
              401);
  }
}

}  // namespace
}  // namespace llmproxy
