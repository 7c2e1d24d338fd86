// llmproxy-ctl with supervised llmproxy-worker processes, end to end: real binaries from
// LLMPROXY_BIN_DIR, in-process mock upstreams, free ports, a temp config directory.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "llmproxy/v1/admin.grpc.pb.h"
#include "llmproxy/v1/discovery.grpc.pb.h"
#include "tests/e2e/ctl_cluster_util.h"
#include "tests/e2e/e2e_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using e2e::HttpRequest;
using e2e::WaitUntil;

TEST_F(CtlCluster, TwoWorkersServeOnePortAndAnEditReachesEveryWorkerWithinOneSecond) {
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  auto workers = Workers();
  ASSERT_EQ(workers.workers_size(), 2);
  EXPECT_NE(workers.workers(0).pid(), workers.workers(1).pid());
  EXPECT_EQ(workers.workers(0).id(), "worker-0");
  EXPECT_EQ(workers.workers(1).metrics_port(), metrics_base_ + 1u);
  auto r = HttpRequest(port_, "POST", "/v1/chat/completions", kChat);
  EXPECT_EQ(r.status, 200) << r.body;

  auto written = std::chrono::steady_clock::now();
  WriteConfig({"m1", "m-new"});
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 2); }, 5s));
  auto took = std::chrono::steady_clock::now() - written;
  EXPECT_LT(took, 1s) << "the edit reached every worker after "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms";
  // Whichever worker the kernel hands a connection to serves the new model.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(ModelsInclude("m-new"));
  auto chat =
      HttpRequest(port_, "POST", "/v1/chat/completions", R"({"model":"m-new","messages":[]})");
  EXPECT_EQ(chat.status, 200);
  EXPECT_EQ(chat.headers["x-llmproxy-backend"], "a");

  // The CLI shows the same, as JSON with numbers.
  int code = -1;
  auto json = nlohmann::json::parse(Admin({"--json", "workers"}, &code));
  EXPECT_EQ(code, 0);
  ASSERT_EQ(json["workers"].size(), 2u);
  for (const auto& w : json["workers"]) {
    EXPECT_EQ(w["acked_version"].get<uint64_t>(), 2u);
    EXPECT_GT(w["pid"].get<int64_t>(), 0);
  }
  // ctl metrics.
  auto m = HttpRequest(ctl_metrics_port_, "GET", "/metrics");
  EXPECT_NE(m.body.find("llmproxy_ctl_workers_connected 2"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("llmproxy_ctl_config_version 2"), std::string::npos);
  EXPECT_NE(m.body.find("llmproxy_ctl_config_reloads_total{result=\"ok\"} 2"), std::string::npos);
}

TEST_F(CtlCluster, InvalidEditKeepsLastGoodTableAndIsReportedWithPosition) {
  StartCtl(1);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(1, 1); }, 20s));
  std::string broken = ConfigText({"m1", "m-bad"}) + "retyr: 3\n";
  e2e::WriteFileAtomic(path_, broken);
  ASSERT_TRUE(WaitUntil([&] { return GetConfig().reloads_rejected() == 1; }, 5s));
  auto cfg = GetConfig();
  EXPECT_EQ(cfg.version(), 1u);
  ASSERT_GE(cfg.last_errors_size(), 1);
  // "…/config.yaml:LINE:COLUMN: …" naming the bad key's line.
  int bad_line = static_cast<int>(std::count(broken.begin(), broken.end(), '\n'));
  EXPECT_NE(cfg.last_errors(0).find("config.yaml:" + std::to_string(bad_line) + ":"),
            std::string::npos)
      << cfg.last_errors(0);
  EXPECT_TRUE(ModelsInclude("m1"));
  EXPECT_FALSE(ModelsInclude("m-bad"));
  std::string text = Admin({"config"});
  EXPECT_NE(text.find("config.yaml:" + std::to_string(bad_line) + ":"), std::string::npos);
  EXPECT_EQ(text.find("key-a"), std::string::npos);  // keys redacted
  // Fixing the file goes through.
  WriteConfig({"m1", "m-good"});
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(1, 2); }, 5s));
  EXPECT_TRUE(ModelsInclude("m-good"));
}

TEST_F(CtlCluster, NoRequestFailsWhileReloadsHappenUnderLoad) {
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 2; ++t) {
    clients.emplace_back([&] {
      while (!stop) {
        auto r = HttpRequest(port_, "POST", "/v1/chat/completions", kChat);
        (r.status == 200 ? ok : failed)++;
      }
    });
  }
  for (int i = 0; i < 8; ++i) {
    WriteConfig({"m1", "m-rev" + std::to_string(i)});
    uint64_t want = 2 + static_cast<uint64_t>(i);
    EXPECT_TRUE(WaitUntil([&] { return AllAcked(2, want); }, 5s));
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_GT(ok.load(), 20);
  EXPECT_EQ(failed.load(), 0);
}

TEST_F(CtlCluster, KilledWorkerIsReplaced) {
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  pid_t victim = static_cast<pid_t>(Workers().workers(0).pid());
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = Workers();
        return w.workers_size() == 2 && w.workers(0).connected() && w.workers(0).pid() != victim &&
               w.workers(0).acked_version() == 1;
      },
      10s));
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", kChat).status, 200);
}

TEST_F(CtlCluster, WorkersKeepServingWithoutCtlAndResyncWithARestartedOne) {
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  Workers();  // remembers the pids for cleanup
  ctl_->Signal(SIGKILL);
  ctl_->Wait(5s);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", kChat).status, 200);
  }
  // Edited while the control plane was down; a new one (not supervising) takes over.
  WriteConfig({"m1", "m-after"});
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return Version() > 0; }, 10s));
  ASSERT_TRUE(WaitUntil(
      [&] {
        uint64_t v = Version();
        return v >= 2 && AllAcked(2, v);  // renumbered above what the workers held
      },
      15s));
  EXPECT_TRUE(ModelsInclude("m-after"));
}

TEST_F(CtlCluster, AckAndNackAreVisibleThroughAdmin) {
  // Test-only hook (see dataplane/config_sync/control_plane_client.h): workers refuse version 2.
  StartCtl(1, {"LLMPROXY_TEST_REJECT_VERSION=2"});
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(1, 1); }, 20s));
  WriteConfig({"m1", "m-refused"});
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = Workers();
        return w.workers_size() == 1 && w.workers(0).nacked_version() == 2;
      },
      5s));
  auto w = Workers().workers(0);
  EXPECT_EQ(w.acked_version(), 1u);
  EXPECT_NE(w.last_nack_error().find("LLMPROXY_TEST_REJECT_VERSION"), std::string::npos);
  EXPECT_FALSE(ModelsInclude("m-refused"));  // the worker kept its last good table
  std::string text = Admin({"workers"});
  EXPECT_NE(text.find("refused version 2"), std::string::npos) << text;
  WriteConfig({"m1", "m-accepted"});
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(1, 3); }, 5s));
  EXPECT_TRUE(ModelsInclude("m-accepted"));
}

TEST_F(CtlCluster, DrainThroughAdminMovesTrafficOffABackend) {
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  int code = -1;
  std::string out = Admin({"drain", "a"}, &code);
  ASSERT_EQ(code, 0) << out;
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 2); }, 5s));
  size_t before = mock_a_->RequestCount();
  for (int i = 0; i < 20; ++i) {
    auto r = HttpRequest(port_, "POST", "/v1/chat/completions", kChat);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["x-llmproxy-backend"], "b");
  }
  EXPECT_EQ(mock_a_->RequestCount(), before);
  std::string backends = Admin({"backends"});
  EXPECT_NE(backends.find("drained"), std::string::npos) << backends;
  // The drain survives an edit of the file; enable undoes it.
  WriteConfig({"m1", "m-x"});
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 3); }, 5s));
  EXPECT_TRUE(GetConfig().table().backends(0).drained());
  ASSERT_EQ((Admin({"enable", "a"}, &code), code), 0);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 4); }, 5s));
  EXPECT_FALSE(GetConfig().table().backends(0).drained());
}

TEST_F(CtlCluster, AdminTokenGuardsMutations) {
  WriteConfig({"m1"}, "");
  std::string cfg = ConfigText({"m1"});
  cfg.replace(cfg.find("control_plane:\n"), 15, "control_plane:\n  admin_token: t0ken\n");
  e2e::WriteFileAtomic(path_, cfg);
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return Version() == 1; }, 10s));
  int code = -1;
  Admin({"drain", "a"}, &code);
  EXPECT_EQ(code, 1);
  Admin({"--token", "t0ken", "drain", "a"}, &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(Version(), 2u);
  std::string out = Admin({"config"});
  EXPECT_EQ(out.find("t0ken"), std::string::npos);
}

TEST_F(CtlCluster, StoredKeysReachEveryWorkerWithinOneSecondAndSurviveARestart) {
  // A file key, so the gateway is closed from the start; stored keys join it.
  WriteConfig({"m1", "m2"}, "auth:\n  keys:\n    - {name: file-key, key: file-secret}\n");
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  Workers();
  auto chat_as = [&](const std::string& key, const std::string& model = "m1") {
    return HttpRequest(port_, "POST", "/v1/chat/completions",
                       R"({"model":")" + model + R"(","messages":[]})",
                       {{"Authorization", "Bearer " + key}})
        .status;
  };
  EXPECT_EQ(chat_as("file-secret"), 200);

  // Created with the CLI: the key is printed once, on stdout.
  const auto created = std::chrono::steady_clock::now();
  int code = -1;
  const nlohmann::json made =
      nlohmann::json::parse(Admin({"--json", "keys", "create", "team-a", "--models", "m1"}, &code));
  ASSERT_EQ(code, 0) << made.dump();
  std::string key = made["key"];
  const uint64_t version = made["version"];
  EXPECT_EQ(key.rfind("sk-llmp-", 0), 0u) << key;
  EXPECT_EQ(key.size(), 8u + 43u);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, version); }, 5s));
  auto took = std::chrono::steady_clock::now() - created;
  EXPECT_LT(took, 1s) << "the key reached every worker after "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms";
  // Whichever worker the kernel hands a connection to accepts it, within its models.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(chat_as(key), 200);
  EXPECT_EQ(chat_as(key, "m2"), 403);
  EXPECT_EQ(chat_as("file-secret", "m2"), 200);
  // The secret is in no config the control plane shows, nor in its log.
  EXPECT_EQ(Admin({"config"}).find(key), std::string::npos);
  EXPECT_EQ(ctl_->Log().find(key), std::string::npos);

  // Listed beside the file's, by name; names are one namespace.
  const std::string list = Admin({"keys", "list"}, &code);
  EXPECT_EQ(code, 0);
  EXPECT_NE(list.find("file-key"), std::string::npos) << list;
  EXPECT_NE(list.find("team-a"), std::string::npos) << list;
  EXPECT_EQ(list.find(key), std::string::npos);
  Admin({"keys", "create", "file-key"}, &code);
  EXPECT_NE(code, 0);
  Admin({"keys", "create", "team-a"}, &code);
  EXPECT_NE(code, 0);
  Admin({"keys", "create", "bad", "--models", "no-such-model"}, &code);
  EXPECT_NE(code, 0);

  // A restarted control plane (not supervising: the workers stay) still knows the key.
  ctl_->Signal(SIGKILL);
  ctl_->Wait(5s);
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return Version() > 0; }, 10s));
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, Version()); }, 15s));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(chat_as(key), 200);
  const std::string listed = Admin({"--json", "keys", "list"});
  EXPECT_NE(listed.find("\"team-a\""), std::string::npos) << listed;

  // Rotated: the new secret works, the old one is refused, the models stay.
  const nlohmann::json rotated =
      nlohmann::json::parse(Admin({"--json", "keys", "rotate", "team-a"}, &code));
  ASSERT_EQ(code, 0) << rotated.dump();
  const std::string old_key = key;
  key = rotated["key"];
  EXPECT_NE(key, old_key);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, rotated["version"].get<uint64_t>()); }, 5s));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(chat_as(key), 200);
    EXPECT_EQ(chat_as(old_key), 401);
  }
  EXPECT_EQ(chat_as(key, "m2"), 403);

  // Revoked: refused on every worker within a second.
  const auto revoked = std::chrono::steady_clock::now();
  const nlohmann::json rv =
      nlohmann::json::parse(Admin({"--json", "keys", "revoke", "team-a"}, &code));
  ASSERT_EQ(code, 0) << rv.dump();
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, rv["version"].get<uint64_t>()); }, 5s));
  took = std::chrono::steady_clock::now() - revoked;
  EXPECT_LT(took, 1s) << "the revoke reached every worker after "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms";
  for (int i = 0; i < 10; ++i) EXPECT_EQ(chat_as(key), 401);
  EXPECT_EQ(chat_as("file-secret"), 200);
  Admin({"keys", "revoke", "team-a"}, &code);
  EXPECT_NE(code, 0);  // already revoked
  Admin({"keys", "revoke", "file-key"}, &code);
  EXPECT_NE(code, 0);  // a file key is removed in the file
}

TEST_F(CtlCluster, UsageOfEveryWorkerReachesTheLedgerAndSurvivesARestart) {
  WriteConfig({"m1"},
              "auth:\n  keys:\n    - {name: team-a, key: secret-a}\n"
              "    - {name: team-b, key: secret-b}\n"
              "prices:\n  m1: {prompt: 2, completion: 10}\n");
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(2, 1); }, 20s));
  Workers();
  // Fresh connections: the kernel spreads them over both workers.
  for (int i = 0; i < 12; ++i) {
    ASSERT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", kChat,
                          {{"Authorization", i % 3 == 0 ? "Bearer secret-b" : "Bearer secret-a"}})
                  .status,
              200);
  }
  // The ledger sums what the workers report every few seconds.
  auto totals = [&](const std::string& key) {
    nlohmann::json t = nlohmann::json::parse(Admin({"--json", "usage", "--key", key}));
    nlohmann::json sum = {
        {"requests", 0}, {"prompt_tokens", 0}, {"completion_tokens", 0}, {"cost_usd", 0.0}};
    for (const auto& row : t["totals"]) {
      for (const char* f : {"requests", "prompt_tokens", "completion_tokens"}) {
        sum[f] = sum[f].get<uint64_t>() + row[f].get<uint64_t>();
      }
      sum["cost_usd"] = sum["cost_usd"].get<double>() + row["cost_usd"].get<double>();
    }
    return sum;
  };
  ASSERT_TRUE(WaitUntil([&] { return totals("team-a")["requests"] == 8; }, 15s))
      << totals("team-a").dump();
  ASSERT_TRUE(WaitUntil([&] { return totals("team-b")["requests"] == 4; }, 15s))
      << totals("team-b").dump();
  // Tokens and cost as the mock's usage says: the mocks answer 5 completion tokens each.
  const nlohmann::json a = totals("team-a");
  const uint64_t prompt = a["prompt_tokens"];
  const uint64_t completion = a["completion_tokens"];
  EXPECT_EQ(completion, 8u * 5);
  EXPECT_GT(prompt, 0u);
  EXPECT_NEAR(a["cost_usd"].get<double>(), (prompt * 2.0 + completion * 10.0) / 1e6, 1e-12);
  const std::string text = Admin({"usage"});
  EXPECT_NE(text.find("team-a"), std::string::npos) << text;
  EXPECT_NE(text.find("team-b"), std::string::npos) << text;

  // A restarted control plane reads the same ledger.
  ctl_->Signal(SIGKILL);
  ctl_->Wait(5s);
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return Version() > 0; }, 10s));
  EXPECT_EQ(totals("team-a")["requests"], 8);
  EXPECT_EQ(totals("team-b")["requests"], 4);
}

TEST_F(CtlCluster, AHostileReporterCannotWriteUnknownNamesIntoTheLedger) {
  WriteConfig({"m1"}, "auth:\n  keys:\n    - {name: team-a, key: secret-a}\n");
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return Version() == 1; }, 10s));
  // Anything that reaches the sync port can speak the worker's protocol.
  auto sync = v1::ConfigDiscovery::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(ctl_port_), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto stream = sync->Sync(&ctx);
  v1::SyncRequest hello;
  hello.mutable_hello()->set_id("not-a-worker");
  ASSERT_TRUE(stream->Write(hello));
  v1::SyncRequest req;
  auto add = [&](const std::string& key, const std::string& model, const std::string& backend) {
    v1::KeyUsage* u = req.mutable_report()->add_usage();
    u->set_key(key);
    u->set_model(model);
    u->set_backend(backend);
    u->set_requests(1);
    u->set_prompt_tokens(7);
  };
  add("team-a", "m1", "a");                       // the one real row
  add("team-a", "m1", std::string(100000, 'b'));  // a backend the config does not have
  add("someone", "m1", "a");                      // no such key
  add("team-a", "no-such-model", "a");
  add(std::string("team-a\0x", 8), "m1", "a");
  for (int i = 0; i < 1000; ++i) add("k" + std::to_string(i), "m" + std::to_string(i), "a");
  ASSERT_TRUE(stream->Write(req));
  stream->WritesDone();
  auto rows = [&] { return nlohmann::json::parse(Admin({"--json", "usage"}))["rows"]; };
  ASSERT_TRUE(WaitUntil([&] { return rows().size() == 1; }, 5s)) << rows().dump();
  EXPECT_EQ(rows()[0]["key"], "team-a");
  EXPECT_EQ(rows()[0]["backend"], "a");
  EXPECT_EQ(rows()[0]["prompt_tokens"], 7);
  EXPECT_TRUE(ctl_->running());
  EXPECT_NE(ctl_->Log().find("were not recorded"), std::string::npos);
}

TEST_F(CtlCluster, SigtermDrainsAnInFlightStreamToItsEnd) {
  StartCtl(1);
  ASSERT_TRUE(WaitUntil([&] { return AllAcked(1, 1); }, 20s));
  e2e::HttpResponse stream;
  std::thread client([&] {
    stream = HttpRequest(port_, "POST", "/v1/chat/completions",
                         R"({"model":"m1","stream":true,"messages":[]})",
                         {{"x-mock-chunks", "20"}, {"x-mock-chunk-gap-ms", "50"}}, 20s);
  });
  size_t before_a = mock_a_->RequestCount(), before_b = mock_b_->RequestCount();
  ASSERT_TRUE(WaitUntil(
      [&] {
        return mock_a_->Stats().in_flight + mock_b_->Stats().in_flight > 0 ||
               mock_a_->RequestCount() + mock_b_->RequestCount() > before_a + before_b;
      },
      5s));
  ctl_->Signal(SIGTERM);
  client.join();
  EXPECT_EQ(stream.status, 200);
  EXPECT_NE(stream.body.find("tok19"), std::string::npos) << stream.body;
  EXPECT_NE(stream.body.find("data: [DONE]"), std::string::npos);
  int status = ctl_->Wait(20s);
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (pid_t pid : worker_pids_) EXPECT_FALSE(e2e::ProcessAlive(pid));
}

TEST_F(CtlCluster, CheckValidatesWithoutServing) {
  std::string out;
  EXPECT_EQ(e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "--check", "-c", path_}, &out), 0)
      << out;
  e2e::WriteFileAtomic(path_, ConfigText({"m1"}) + "bogus_key: 1\n");
  EXPECT_EQ(e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "--check", "-c", path_}, &out), 1);
  EXPECT_NE(out.find("config.yaml:"), std::string::npos) << out;
  // An invalid file at startup: the control plane refuses to start.
  EXPECT_EQ(e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "-c", path_}, &out), 1);
}

TEST_F(CtlCluster, ADamagedStateDatabaseStopsTheStartAMissingOneDoesNot) {
  // Damaged: it may hold keys, so the control plane does not run without them.
  e2e::WriteFileAtomic(dir_.File("junk.db"), std::string(4096, 'x'));
  WriteConfig({"m1"}, "  state_path: junk.db\n");
  std::string out;
  EXPECT_EQ(e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "-c", path_}, &out), 1);
  EXPECT_NE(out.find("not usable"), std::string::npos) << out;
  // Missing and impossible to create: nothing to lose; it serves, and keys commands say why not.
  WriteConfig({"m1"}, "  state_path: no-such-dir/state.db\n");
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return Version() == 1; }, 10s)) << ctl_->Log();
  int code = -1;
  const std::string made = Admin({"keys", "create", "k"}, &code);
  EXPECT_EQ(code, 1);
  EXPECT_NE(made.find("no state database"), std::string::npos) << made;
}

}  // namespace
}  // namespace llmproxy
