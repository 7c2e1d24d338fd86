// `llmproxy-ctl --workers N --metrics-sd-file F`, end to end: the real ctl and workers
// from LLMPROXY_BIN_DIR; F is the Prometheus file_sd list deploy/prometheus reads.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/e2e/e2e_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using e2e::WaitUntil;

class CtlMetricsSd : public ::testing::Test {
 protected:
  void SetUp() override {
    mock_ = std::make_unique<MockLlm>(MockLlmOptions{});
    port_ = e2e::FreePort();
    ctl_port_ = e2e::FreePort();
    metrics_base_ = e2e::FreePortRange(2);
    config_ = dir_.File("config.yaml");
    sd_file_ = dir_.File("llmproxy-workers.json");
    e2e::WriteFileAtomic(
        config_, "server:\n  port: " + std::to_string(port_) +
                     "\n  host: 127.0.0.1\n  metrics_port: " + std::to_string(metrics_base_) +
                     "\ncontrol_plane:\n  listen: 127.0.0.1:" + std::to_string(ctl_port_) +
                     "\n  metrics_port: " + std::to_string(e2e::FreePort()) +
                     "\nbackends:\n  - name: a\n    url: " + mock_->BaseUrl() +
                     "\n    api_key: key-a\n    models: [m1]\n");
  }

  void TearDown() override {
    if (ctl_ && ctl_->running()) {
      ctl_->Signal(SIGTERM);
      ctl_->Wait(20s);
    }
    for (pid_t pid : worker_pids_) {
      if (e2e::ProcessAlive(pid)) ::kill(pid, SIGKILL);
    }
    if (HasFailure() && ctl_) std::cerr << "---- ctl log ----\n" << ctl_->Log() << "\n";
  }

  void StartCtl(int workers) {
    ctl_ = std::make_unique<e2e::Process>(
        std::vector<std::string>{e2e::BinDir() + "/llmproxy-ctl", "-c", config_, "--workers",
                                 std::to_string(workers), "--metrics-sd-file", sd_file_},
        dir_.File("ctl.log"));
  }

  // The file's groups, or null while it is missing or not (yet) a JSON array.
  nlohmann::json Groups() {
    auto parsed = nlohmann::json::parse(e2e::ReadFile(sd_file_), nullptr, false);
    return parsed.is_array() ? parsed : nlohmann::json();
  }

  // Worker id -> pid from `llmproxy-ctl admin --json workers`, connected workers only.
  std::map<std::string, pid_t> ConnectedWorkers() {
    std::string out;
    int rc = e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "admin", "--addr",
                              "127.0.0.1:" + std::to_string(ctl_port_), "--json", "workers"},
                             &out, 5s);
    std::map<std::string, pid_t> ids;
    if (rc != 0) return ids;
    auto json = nlohmann::json::parse(out, nullptr, false);
    if (!json.is_object()) return ids;
    for (const auto& w : json["workers"]) {
      if (!w.value("connected", false)) continue;
      pid_t pid = static_cast<pid_t>(w["pid"].get<int64_t>());
      ids[w["id"].get<std::string>()] = pid;
      worker_pids_.insert(pid);
    }
    return ids;
  }

  bool MetricsServed(uint16_t port) {
    auto r = e2e::HttpRequest(port, "GET", "/metrics", "", {}, 2s);
    return r.status == 200;
  }

  nlohmann::json Expected() {
    return nlohmann::json::array({{{"targets", {"127.0.0.1:" + std::to_string(metrics_base_)}},
                                   {"labels", {{"worker", "worker-0"}}}},
                                  {{"targets", {"127.0.0.1:" + std::to_string(metrics_base_ + 1)}},
                                   {"labels", {{"worker", "worker-1"}}}}});
  }

  e2e::TempDir dir_;
  std::unique_ptr<MockLlm> mock_;
  uint16_t port_ = 0, ctl_port_ = 0, metrics_base_ = 0;
  std::string config_, sd_file_;
  std::unique_ptr<e2e::Process> ctl_;
  std::set<pid_t> worker_pids_;
};

TEST_F(CtlMetricsSd, FileListsEveryWorkerAndIsRewrittenWhenAWorkerIsRestarted) {
  StartCtl(2);
  ASSERT_TRUE(WaitUntil([&] { return Groups().size() == 2; }, 10s)) << e2e::ReadFile(sd_file_);
  EXPECT_EQ(Groups(), Expected()) << e2e::ReadFile(sd_file_);
  struct stat st {};
  ASSERT_EQ(::stat(sd_file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // The targets are real: each worker serves /metrics where the file says.
  for (uint16_t p : {metrics_base_, static_cast<uint16_t>(metrics_base_ + 1)}) {
    EXPECT_TRUE(WaitUntil([&] { return MetricsServed(p); }, 20s)) << "port " << p;
  }
  std::map<std::string, pid_t> workers;
  ASSERT_TRUE(WaitUntil(
      [&] {
        workers = ConnectedWorkers();
        return workers.size() == 2;
      },
      20s, 100ms));

  // The list does not change while nothing restarts.
  ASSERT_EQ(::stat(sd_file_.c_str(), &st), 0);
  const ino_t before = st.st_ino;
  const pid_t victim = workers.at("worker-0");
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  // Replaced by rename: a new inode once the restarted worker is up.
  ASSERT_TRUE(WaitUntil(
      [&] {
        struct stat now {};
        return ::stat(sd_file_.c_str(), &now) == 0 && now.st_ino != before;
      },
      10s));
  EXPECT_EQ(Groups(), Expected()) << e2e::ReadFile(sd_file_);
  EXPECT_FALSE(std::filesystem::exists(sd_file_ + ".tmp"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        workers = ConnectedWorkers();
        return workers.size() == 2 && workers.count("worker-0") && workers["worker-0"] != victim;
      },
      20s, 100ms));
  EXPECT_TRUE(WaitUntil([&] { return MetricsServed(metrics_base_); }, 20s));
}

TEST_F(CtlMetricsSd, WithoutWorkersTheListIsEmpty) {
  StartCtl(0);
  ASSERT_TRUE(WaitUntil([&] { return e2e::ReadFile(sd_file_) == "[]\n"; }, 10s))
      << e2e::ReadFile(sd_file_);
  EXPECT_TRUE(ctl_->running());
}

TEST_F(CtlMetricsSd, UnwritablePathIsLoggedAndWorkersStillRun) {
  sd_file_ = dir_.File("no-such-dir/llmproxy-workers.json");
  StartCtl(1);
  ASSERT_TRUE(WaitUntil([&] { return ConnectedWorkers().size() == 1; }, 20s, 100ms)) << ctl_->Log();
  EXPECT_TRUE(WaitUntil(
      [&] { return ctl_->Log().find("cannot write the metrics target file") != std::string::npos; },
      5s))
      << ctl_->Log();
}

TEST_F(CtlMetricsSd, FlagIsInHelpAndNeedsAValue) {
  std::string out;
  EXPECT_EQ(e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "--help"}, &out), 0);
  EXPECT_NE(out.find("--metrics-sd-file PATH"), std::string::npos) << out;
  EXPECT_EQ(e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "--metrics-sd-file"}, &out), 2);
  EXPECT_EQ(e2e::RunCommand({e2e::BinDir() + "/llmproxy-ctl", "--metrics-sd-file="}, &out), 2);
}

}  // namespace
}  // namespace llmproxy
