// Key limits across hosts (docs/limits.md), with network namespaces standing in for
// hosts: llmproxy-ctl in one, a worker (and its own mock upstream on 127.0.0.1) in each
// of two others. veth pairs CTL<->W1 and CTL<->W2 carry the control streams; veth pairs
// root<->W1 and root<->W2 carry this process's client requests. Bringing the CTL<->W1
// link down is a partition: W1 keeps its last table (static stability) and spends its
// lease, then limits.on_control_plane_loss decides; link up again, and W1 is back.
//
// Needs root (ip netns, veth); skipped without it. Every namespace and veth is named with
// this process's pid; TearDown kills what runs in them and deletes them, failed or not.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tests/e2e/e2e_util.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using e2e::WaitUntil;

constexpr char kChat[] = R"({"model":"m1","messages":[{"role":"user","content":"hi"}]})";
// The same ports in every namespace: each has its own.
constexpr uint16_t kWorkerPort = 8080;
constexpr uint16_t kMetricsPort = 9400;
constexpr uint16_t kMockPort = 18000;
constexpr uint16_t kCtlPort = 50051;
constexpr uint16_t kCtlMetricsPort = 9399;

std::string IpBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (std::filesystem::exists(p)) return p;
  }
  return "ip";
}

// One client-facing worker as seen from the root namespace.
struct Host {
  std::string ns;
  std::string addr;  // this process reaches the worker here
};

class NetnsLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string prefix = "lpn" + std::to_string(::getpid());
    ctl_ns_ = prefix + "-ctl";
    w_[0].ns = prefix + "-w1";
    w_[1].ns = prefix + "-w2";
    if (!std::filesystem::exists(ip_)) GTEST_SKIP() << "no ip binary (iproute2)";
    std::string out;
    if (e2e::RunCommand({ip_, "netns", "add", ctl_ns_}, &out) != 0) {
      GTEST_SKIP() << "cannot create a network namespace (needs root): " << out;
    }
    namespaces_.push_back(ctl_ns_);
    for (const Host& w : w_) {
      ASSERT_TRUE(Ip({"netns", "add", w.ns}));
      namespaces_.push_back(w.ns);
    }
    for (const std::string& ns : namespaces_)
      ASSERT_TRUE(Ip({"-n", ns, "link", "set", "lo", "up"}));
    // Control links, between namespaces only.
    ctl_link_w1_ = prefix + "c1";
    ASSERT_TRUE(
        Link(ctl_ns_, ctl_link_w1_, "10.201.1.1/24", w_[0].ns, prefix + "x1", "10.201.1.2/24"));
    ASSERT_TRUE(
        Link(ctl_ns_, prefix + "c2", "10.201.2.1/24", w_[1].ns, prefix + "x2", "10.201.2.2/24"));
    // Client links end in the root namespace: /30s whose block follows the pid, so runs
    // side by side do not share addresses.
    const int block = static_cast<int>(::getpid() % 256);
    const std::string net = "10.202." + std::to_string(block) + ".";
    w_[0].addr = net + "2";
    w_[1].addr = net + "6";
    ASSERT_TRUE(Link("", prefix + "r1", net + "1/30", w_[0].ns, prefix + "y1", w_[0].addr + "/30"));
    ASSERT_TRUE(Link("", prefix + "r2", net + "5/30", w_[1].ns, prefix + "y2", w_[1].addr + "/30"));

    path_ = dir_.File("config.yaml");
    WriteConfig("deny");
    for (int i = 0; i < 2; ++i) {
      mocks_.push_back(InNs(w_[i].ns,
                            {"llmproxy-mockllm", "--port", std::to_string(kMockPort), "--name",
                             "mock-w" + std::to_string(i + 1)},
                            "mock-w" + std::to_string(i + 1)));
    }
    ctl_ = InNs(ctl_ns_, {"llmproxy-ctl", "-c", path_}, "ctl");
    for (int i = 0; i < 2; ++i) {
      workers_.push_back(
          InNs(w_[i].ns,
               {"llmproxy-worker", "--control-plane",
                "10.201." + std::to_string(i + 1) + ".1:" + std::to_string(kCtlPort), "--id",
                "w" + std::to_string(i + 1), "--port", std::to_string(kWorkerPort),
                "--metrics-port", std::to_string(kMetricsPort), "--report-interval", "500ms"},
               "worker-w" + std::to_string(i + 1)));
    }
    ASSERT_TRUE(WaitUntil([&] { return AllAcked(); }, 20s, 100ms)) << Admin({"--json", "workers"});
    for (const Host& w : w_) {
      ASSERT_TRUE(WaitUntil(
          [&] {
            return e2e::HttpRequestTo(w.addr, kWorkerPort, "GET", "/v1/models", "",
                                      {{"Authorization", "Bearer secret-open"}})
                       .status == 200;
          },
          10s))
          << w.ns;
    }
  }

  void TearDown() override {
    std::vector<std::unique_ptr<e2e::Process>*> all = {&ctl_};
    for (auto& p : workers_) all.push_back(&p);
    for (auto& p : mocks_) all.push_back(&p);
    if (HasFailure()) {
      for (auto* p : all) {
        if (*p) std::cerr << "---- " << logs_[p->get()] << " ----\n" << WithoutAccess((*p)->Log());
      }
    }
    for (auto* p : all) p->reset();  // SIGKILL, reaped
    // A veth pair goes with either end; the kernel dismantles a deleted namespace later,
    // so the root namespace's ends are deleted here, now.
    for (const std::string& link : root_links_) Ip({"link", "delete", link});
    for (const std::string& ns : namespaces_) {
      // Anything else still in it (nothing should be) would keep it alive.
      std::string pids;
      e2e::RunCommand({ip_, "netns", "pids", ns}, &pids);
      std::istringstream in(pids);
      for (pid_t pid; in >> pid;) ::kill(pid, SIGKILL);
      // Deleting a namespace destroys its veths, and with them their peers.
      Ip({"netns", "delete", ns});
    }
  }

  // A log without its access lines (one per request: thousands here).
  static std::string WithoutAccess(const std::string& log) {
    std::istringstream in(log);
    std::string out;
    int skipped = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.find(" info access ") != std::string::npos) {
        ++skipped;
      } else {
        out += line + "\n";
      }
    }
    return out + "(" + std::to_string(skipped) + " access lines left out)\n";
  }

  // `ip args...`, which must succeed.
  bool Ip(std::vector<std::string> args) {
    args.insert(args.begin(), ip_);
    std::string out;
    const int rc = e2e::RunCommand(args, &out);
    if (rc != 0) {
      std::string cmd;
      for (const auto& a : args) cmd += a + " ";
      ADD_FAILURE() << cmd << "-> " << rc << ": " << out;
    }
    return rc == 0;
  }

  // A veth pair from namespace `a` ("" = root) to namespace `b`, addressed and up.
  bool Link(const std::string& a, const std::string& if_a, const std::string& addr_a,
            const std::string& b, const std::string& if_b, const std::string& addr_b) {
    if (!Ip({"link", "add", if_a, "type", "veth", "peer", "name", if_b})) return false;
    if (a.empty()) root_links_.push_back(if_a);
    if (!a.empty() && !Ip({"link", "set", if_a, "netns", a})) return false;
    if (!Ip({"link", "set", if_b, "netns", b})) return false;
    for (const auto& [ns, ifname, addr] :
         {std::tuple{a, if_a, addr_a}, std::tuple{b, if_b, addr_b}}) {
      std::vector<std::string> in_ns;
      if (!ns.empty()) in_ns = {"-n", ns};
      auto with = [&](std::vector<std::string> rest) {
        rest.insert(rest.begin(), in_ns.begin(), in_ns.end());
        return rest;
      };
      if (!Ip(with({"addr", "add", addr, "dev", ifname}))) return false;
      if (!Ip(with({"link", "set", "dev", ifname, "up"}))) return false;
    }
    return true;
  }

  // A binary of LLMPROXY_BIN_DIR run in namespace `ns`.
  std::unique_ptr<e2e::Process> InNs(const std::string& ns, std::vector<std::string> argv,
                                     const std::string& name) {
    argv[0] = e2e::BinDir() + "/" + argv[0];
    argv.insert(argv.begin(), {ip_, "netns", "exec", ns});
    auto p = std::make_unique<e2e::Process>(argv, dir_.File(name + ".log"));
    logs_[p.get()] = name;
    return p;
  }

  void WriteConfig(const std::string& on_loss) {
    const std::string mock = "http://127.0.0.1:" + std::to_string(kMockPort) + "/v1";
    e2e::WriteFileAtomic(
        path_, "server:\n  port: " + std::to_string(kWorkerPort) + "\n  host: 0.0.0.0\n" +
                   "  metrics_port: " + std::to_string(kMetricsPort) + "\n" +
                   "control_plane:\n  listen: 0.0.0.0:" + std::to_string(kCtlPort) + "\n" +
                   "  metrics_port: " + std::to_string(kCtlMetricsPort) + "\n" +
                   "limits:\n  on_control_plane_loss: " + on_loss + "\n" +
                   "auth:\n  keys:\n"
                   "    - {name: exact, key: secret-exact, rpm: 20}\n"
                   "    - {name: team-b, key: secret-b, rpm: 1000}\n"
                   "    - {name: open, key: secret-open}\n"
                   "backends:\n  - name: a\n    url: " +
                   mock + "\n    api_key: key-a\n    models: [m1]\n");
  }

  // `llmproxy-ctl admin ...` run next to the control plane.
  std::string Admin(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {ip_,
                                     "netns",
                                     "exec",
                                     ctl_ns_,
                                     e2e::BinDir() + "/llmproxy-ctl",
                                     "admin",
                                     "--addr",
                                     "127.0.0.1:" + std::to_string(kCtlPort)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    e2e::RunCommand(argv, &out);
    return out;
  }

  // Both workers connected and holding the current version; returns it (0: not yet).
  uint64_t AckedVersion() {
    const nlohmann::json j = nlohmann::json::parse(Admin({"--json", "workers"}), nullptr, false);
    if (!j.is_object() || !j.contains("workers")) return 0;
    const uint64_t version = j["current_version"].get<uint64_t>();
    int ok = 0;
    for (const auto& w : j["workers"]) {
      if (w["connected"].get<bool>() && w["acked_version"].get<uint64_t>() == version) ++ok;
    }
    return ok == 2 && version > 0 ? version : 0;
  }
  bool AllAcked() { return AckedVersion() != 0; }

  e2e::HttpResponse Chat(int worker, const std::string& key) {
    return e2e::HttpRequestTo(w_[worker].addr, kWorkerPort, "POST", "/v1/chat/completions", kChat,
                              {{"Authorization", "Bearer " + key}});
  }
  std::string Metrics(int worker) {
    return e2e::HttpRequestTo(w_[worker].addr, kMetricsPort, "GET", "/metrics").body;
  }
  // The value of one sample line `series` (name{labels}) in worker's /metrics; 0 if absent.
  double Sample(int worker, const std::string& series) {
    const std::string m = "\n" + Metrics(worker);
    const size_t at = m.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::stod(m.substr(at + series.size() + 2));
  }

  bool SetLinkW1(bool up) {
    return Ip({"-n", ctl_ns_, "link", "set", "dev", ctl_link_w1_, up ? "up" : "down"});
  }

  const std::string ip_ = IpBinary();
  e2e::TempDir dir_;
  std::string path_;
  std::string ctl_ns_, ctl_link_w1_;
  Host w_[2];
  std::vector<std::string> namespaces_, root_links_;
  std::unique_ptr<e2e::Process> ctl_;
  std::vector<std::unique_ptr<e2e::Process>> workers_, mocks_;
  std::map<e2e::Process*, std::string> logs_;
};

TEST_F(NetnsLimits, RpmTwentyFortyRequestsAlternatingOverTwoHostsGetExactlyTwenty) {
  int ok[2] = {0, 0}, limited = 0;
  e2e::HttpResponse refused;
  for (int i = 0; i < 40; ++i) {
    const e2e::HttpResponse r = Chat(i % 2, "secret-exact");
    if (r.status == 200) ++ok[i % 2];
    if (r.status == 429) {
      ++limited;
      refused = r;
    }
  }
  EXPECT_EQ(ok[0] + ok[1], 20) << ok[0] << " + " << ok[1];
  EXPECT_EQ(limited, 20);
  EXPECT_GT(ok[0], 0);
  EXPECT_GT(ok[1], 0);
  const nlohmann::json body = nlohmann::json::parse(refused.body, nullptr, false);
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded") << refused.body;
  EXPECT_EQ(refused.headers["x-ratelimit-limit-requests"], "20");
  EXPECT_FALSE(refused.headers["retry-after"].empty());
}

TEST_F(NetnsLimits, PartitionedWorkerSpendsItsLeaseThenDeniesThenRecovers) {
  // Both workers hold a lease of team-b.
  ASSERT_EQ(Chat(0, "secret-b").status, 200);
  ASSERT_EQ(Chat(1, "secret-b").status, 200);

  ASSERT_TRUE(SetLinkW1(false));
  const auto cut = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 cut)
        .count();
  };
  // W1 spends what it holds, then (deny) refuses: the control plane cannot be reached.
  int served = 0;
  e2e::HttpResponse refused;
  ASSERT_TRUE(WaitUntil(
      [&] {
        refused = Chat(0, "secret-b");
        if (refused.status != 200) return true;
        ++served;
        return false;
      },
      20s, 0ms));
  const int64_t refused_at = since();
  EXPECT_GT(served, 0) << "the lease did not carry W1 into the partition";
  ASSERT_EQ(refused.status, 429) << refused.body;
  const nlohmann::json body = nlohmann::json::parse(refused.body, nullptr, false);
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded") << refused.body;
  // The key used about a tenth of its rpm: the first refusal must not blame the rpm.
  EXPECT_NE(refused.body.find("control plane"), std::string::npos)
      << "first refusal, " << refused_at << " ms into the partition, after " << served
      << " served from the lease: " << refused.body;
  ASSERT_TRUE(
      WaitUntil([&] { return Chat(0, "secret-b").body.find("control plane") != std::string::npos; },
                10s, 50ms));

  // Static stability: the key without limits is served from the last table, and W2, still
  // connected, serves team-b as before.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Chat(0, "secret-open").status, 200);
    EXPECT_EQ(Chat(1, "secret-b").status, 200);
    const e2e::HttpResponse r = Chat(0, "secret-b");
    EXPECT_EQ(r.status, 429);
    EXPECT_NE(r.body.find("control plane"), std::string::npos) << r.body;
  }
  EXPECT_GT(Sample(0, R"(llmproxy_ratelimited_total{key="team-b",limit="control_plane"})"), 0)
      << Metrics(0);

  // The link returns: W1 gets a grant again.
  ASSERT_TRUE(SetLinkW1(true));
  const auto healed = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitUntil([&] { return Chat(0, "secret-b").status == 200; }, 30s, 100ms));
  std::cerr << "partition: lease spent after " << served << " requests; first refusal at "
            << refused_at << " ms; W1 served team-b again "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - healed)
                   .count()
            << " ms after the link came back\n";
  EXPECT_EQ(Chat(0, "secret-open").status, 200);
  EXPECT_EQ(Chat(1, "secret-b").status, 200);
}

TEST_F(NetnsLimits, AllowPolicyAdmitsBeyondTheLeaseWhilePartitioned) {
  WriteConfig("allow");
  ASSERT_TRUE(WaitUntil([&] { return AckedVersion() >= 2; }, 15s, 100ms))
      << Admin({"--json", "workers"});
  ASSERT_EQ(Chat(0, "secret-b").status, 200);
  ASSERT_EQ(Chat(1, "secret-b").status, 200);

  ASSERT_TRUE(SetLinkW1(false));
  const auto cut = std::chrono::steady_clock::now();
  // Past the lease (slices of 1/16 of the rpm: spent in the first ~1.5 s here) and past the
  // 3 s after which an unanswered ask means the control plane is lost; 10 ms apart, well
  // under the rpm.
  int ok = 0;
  std::string refusals;
  while (std::chrono::steady_clock::now() - cut < 4500ms) {
    const e2e::HttpResponse r = Chat(0, "secret-b");
    if (r.status == 200) {
      ++ok;
    } else if (refusals.size() < 2000) {
      refusals += std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - cut)
                                     .count()) +
                  " ms: " + std::to_string(r.status) + " " + r.body + "\n";
    }
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refusals.empty()) << ok << " admitted; refused:\n" << refusals;
  EXPECT_GT(Sample(0, R"(llmproxy_limits_unheld_total{key="team-b"})"), 0) << Metrics(0);
  EXPECT_EQ(Chat(1, "secret-b").status, 200);
  ASSERT_TRUE(SetLinkW1(true));
}

}  // namespace
}  // namespace llmproxy
