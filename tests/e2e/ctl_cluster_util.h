// The CtlCluster fixture: llmproxy-ctl with supervised llmproxy-worker processes, real
// binaries from LLMPROXY_BIN_DIR, two in-process mock upstreams, free ports and a temp
// config directory; shared by the e2e tests of the control plane (ctl_cluster_test.cc,
// limits_test.cc).
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "llmproxy/v1/admin.grpc.pb.h"
#include "tests/e2e/e2e_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {

using namespace std::chrono_literals;

// An Admin stub for a control plane that may still be starting: it retries the connection
// quickly instead of gRPC's default backoff of a second and more.
inline std::unique_ptr<v1::Admin::Stub> AdminStub(uint16_t port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return v1::Admin::NewStub(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                                      grpc::InsecureChannelCredentials(), args));
}

inline constexpr char kChat[] = R"({"model":"m1","messages":[{"role":"user","content":"hi"}]})";

class CtlCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    MockLlmOptions a;
    a.name = "a";
    mock_a_ = std::make_unique<MockLlm>(a);
    MockLlmOptions b;
    b.name = "b";
    mock_b_ = std::make_unique<MockLlm>(b);
    port_ = e2e::FreePort();
    ctl_port_ = e2e::FreePort();
    ctl_metrics_port_ = e2e::FreePort();
    metrics_base_ = e2e::FreePortRange(2);
    path_ = dir_.File("config.yaml");
    WriteConfig({"m1"});
  }

  void TearDown() override {
    if (ctl_ && ctl_->running()) {
      ctl_->Signal(SIGTERM);
      ctl_->Wait(20s);
    }
    // Workers outlive a killed ctl by design: never leave them behind.
    for (pid_t pid : worker_pids_) {
      if (e2e::ProcessAlive(pid)) ::kill(pid, SIGKILL);
    }
    if (HasFailure() && ctl_) std::cerr << "---- ctl log ----\n" << ctl_->Log() << "\n";
  }

  std::string ConfigText(const std::vector<std::string>& models_a, const std::string& extra = "") {
    std::string models;
    for (const auto& m : models_a) models += (models.empty() ? "" : ", ") + m;
    return "server:\n  port: " + std::to_string(port_) + "\n  host: 127.0.0.1\n" +
           "  metrics_port: " + std::to_string(metrics_base_) + "\n" +
           "control_plane:\n  listen: 127.0.0.1:" + std::to_string(ctl_port_) + "\n" +
           "  metrics_port: " + std::to_string(ctl_metrics_port_) + "\n" + extra +
           "retry: 3\nbackends:\n"
           "  - name: a\n    url: " +
           mock_a_->BaseUrl() + "\n    api_key: key-a\n" + "    models: [" + models + "]\n" +
           "  - name: b\n    url: " + mock_b_->BaseUrl() + "\n    api_key: key-b\n" +
           "    models: [m1]\n";
  }
  void WriteConfig(const std::vector<std::string>& models_a, const std::string& extra = "") {
    e2e::WriteFileAtomic(path_, ConfigText(models_a, extra));
  }

  void StartCtl(int workers, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {e2e::BinDir() + "/llmproxy-ctl", "-c", path_};
    if (workers > 0) {
      argv.push_back("--workers");
      argv.push_back(std::to_string(workers));
    }
    ctl_ = std::make_unique<e2e::Process>(
        argv, dir_.File("ctl-" + std::to_string(++ctl_runs_) + ".log"), env);
    // A channel that fails its first connect backs off for a second or more, so wait for
    // the listener before creating it.
    e2e::WaitUntil([&] { return e2e::PortOpen(ctl_port_) || !ctl_->running(); }, 10s);
    stub_ = AdminStub(ctl_port_);
  }

  v1::ListWorkersResponse Workers() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    v1::ListWorkersResponse resp;
    if (!stub_->ListWorkers(&ctx, {}, &resp).ok()) return {};
    for (const auto& w : resp.workers()) worker_pids_.insert(static_cast<pid_t>(w.pid()));
    return resp;
  }
  v1::GetConfigResponse GetConfig() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    v1::GetConfigResponse resp;
    (void)stub_->GetConfig(&ctx, {}, &resp);
    return resp;
  }
  uint64_t Version() { return GetConfig().version(); }

  // Every one of `n` workers connected and holding `version`.
  bool AllAcked(size_t n, uint64_t version) {
    auto resp = Workers();
    size_t ok = 0;
    for (const auto& w : resp.workers()) {
      if (w.connected() && w.acked_version() == version) ++ok;
    }
    return ok == n;
  }

  std::string Admin(std::vector<std::string> args, int* code = nullptr) {
    std::vector<std::string> argv = {e2e::BinDir() + "/llmproxy-ctl", "admin", "--addr",
                                     "127.0.0.1:" + std::to_string(ctl_port_)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    int rc = e2e::RunCommand(argv, &out);
    if (code) *code = rc;
    return out;
  }

  bool ModelsInclude(const std::string& model) {
    auto r = e2e::HttpRequest(port_, "GET", "/v1/models");
    return r.status == 200 && r.body.find("\"" + model + "\"") != std::string::npos;
  }

  e2e::TempDir dir_;
  std::string path_;
  std::unique_ptr<MockLlm> mock_a_, mock_b_;
  uint16_t port_ = 0, ctl_port_ = 0, ctl_metrics_port_ = 0, metrics_base_ = 0;
  std::unique_ptr<e2e::Process> ctl_;
  std::unique_ptr<v1::Admin::Stub> stub_;
  std::set<pid_t> worker_pids_;
  int ctl_runs_ = 0;
};

}  // namespace llmproxy
