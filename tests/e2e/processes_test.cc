// Process-level failure modes, end to end with the real binaries (docs/controlplane.md
// "Split brain" and "Hung workers", docs/dataplane.md draining):
//   - a second llmproxy-ctl on a gRPC address in use exits 1 and the first keeps serving;
//   - a stopped (SIGSTOP) worker keeps its stream open but is shown stale in admin and
//     metrics, and a supervised one is killed and restarted;
//   - a stream cut by the worker's --drain-timeout ends with the SSE error event.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "llmproxy/v1/admin.grpc.pb.h"
#include "tests/e2e/ctl_cluster_util.h"
#include "tests/e2e/e2e_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using e2e::HttpRequest;
using e2e::WaitUntil;

class Processes : public ::testing::Test {
 protected:
  void SetUp() override {
    MockLlmOptions a;
    a.name = "a";
    mock_ = std::make_unique<MockLlm>(a);
    port_ = e2e::FreePort();
    ctl_port_ = e2e::FreePort();
    ctl_metrics_port_ = e2e::FreePort();
    metrics_base_ = e2e::FreePortRange(1);
    path_ = dir_.File("config.yaml");
    e2e::WriteFileAtomic(path_, ConfigText());
  }

  void TearDown() override {
    // A stopped process takes no SIGTERM: let it go on, then make sure it is gone.
    for (pid_t pid : stopped_) {
      if (e2e::ProcessAlive(pid)) ::kill(pid, SIGCONT);
    }
    for (auto* p : {&ctl_, &ctl2_}) {
      if (*p && (*p)->running()) {
        (*p)->Signal(SIGTERM);
        (*p)->Wait(20s);
      }
    }
    for (pid_t pid : worker_pids_) {
      if (e2e::ProcessAlive(pid)) ::kill(pid, SIGKILL);
    }
    if (HasFailure()) {
      if (ctl_) std::cerr << "---- ctl log ----\n" << ctl_->Log() << "\n";
      if (ctl2_) std::cerr << "---- second ctl log ----\n" << ctl2_->Log() << "\n";
      if (worker_) std::cerr << "---- worker log ----\n" << worker_->Log() << "\n";
    }
  }

  std::string ConfigText() const {
    return "server:\n  port: " + std::to_string(port_) + "\n  host: 127.0.0.1\n" +
           "  metrics_port: " + std::to_string(metrics_base_) + "\n" +
           "control_plane:\n  listen: 127.0.0.1:" + std::to_string(ctl_port_) + "\n" +
           "  metrics_port: " + std::to_string(ctl_metrics_port_) + "\n" +
           "backends:\n  - name: a\n    url: " + mock_->BaseUrl() +
           "\n    api_key: key-a\n    models: [m1]\n";
  }

  std::unique_ptr<e2e::Process> StartCtl(std::vector<std::string> extra) {
    std::vector<std::string> argv = {e2e::BinDir() + "/llmproxy-ctl", "-c", path_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<e2e::Process>(argv,
                                          dir_.File("ctl-" + std::to_string(++runs_) + ".log"));
  }

  void ConnectAdmin() {
    ASSERT_TRUE(WaitUntil([&] { return e2e::PortOpen(ctl_port_) || !ctl_->running(); }, 10s));
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

  // The only worker's record, when there is exactly one.
  std::optional<v1::WorkerInfo> OnlyWorker() {
    auto resp = Workers();
    if (resp.workers_size() != 1) return std::nullopt;
    return resp.workers(0);
  }

  std::string CtlMetrics() { return HttpRequest(ctl_metrics_port_, "GET", "/metrics").body; }
  bool MetricsSay(const std::string& line) {
    return CtlMetrics().find(line + "\n") != std::string::npos;
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

  e2e::TempDir dir_;
  std::string path_;
  std::unique_ptr<MockLlm> mock_;
  uint16_t port_ = 0, ctl_port_ = 0, ctl_metrics_port_ = 0, metrics_base_ = 0;
  std::unique_ptr<e2e::Process> ctl_, ctl2_, worker_;
  std::unique_ptr<v1::Admin::Stub> stub_;
  std::set<pid_t> worker_pids_, stopped_;
  int runs_ = 0;
};

TEST_F(Processes, SecondCtlOnTheSameListenExitsOneAndTheFirstKeepsServing) {
  ctl_ = StartCtl({});
  ConnectAdmin();
  ASSERT_TRUE(WaitUntil([&] { return Workers().current_version() == 1; }, 10s));

  // Same file, so the same control_plane.listen (and metrics port).
  ctl2_ = StartCtl({});
  int status = ctl2_->Wait(20s);
  ASSERT_NE(status, -1) << "the second ctl is still running: split brain";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string want = "cannot listen on 127.0.0.1:" + std::to_string(ctl_port_) +
                           ": address already in use (is another llmproxy-ctl running?)";
  EXPECT_NE(ctl2_->Log().find(want), std::string::npos) << ctl2_->Log();

  // The first one still owns the port: a worker started now reaches it, and only it.
  ASSERT_TRUE(ctl_->running());
  worker_ = std::make_unique<e2e::Process>(
      std::vector<std::string>{e2e::BinDir() + "/llmproxy-worker", "--control-plane",
                               "127.0.0.1:" + std::to_string(ctl_port_), "--id", "remote", "--port",
                               std::to_string(port_), "--metrics-port", "0"},
      dir_.File("worker.log"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = OnlyWorker();
        return w && w->id() == "remote" && w->connected() && w->acked_version() == 1;
      },
      20s));
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", R"({"model":"m1"})").status, 200);
}

// A worker the ctl does not supervise (another host, a pod): shown stale while stopped,
// healthy again once it resumes; never killed.
TEST_F(Processes, StoppedRemoteWorkerIsStaleUntilItResumes) {
  ctl_ = StartCtl({});
  ConnectAdmin();
  ASSERT_TRUE(WaitUntil([&] { return Workers().current_version() == 1; }, 10s));
  worker_ = std::make_unique<e2e::Process>(
      std::vector<std::string>{e2e::BinDir() + "/llmproxy-worker", "--control-plane",
                               "127.0.0.1:" + std::to_string(ctl_port_), "--id", "remote", "--port",
                               std::to_string(port_), "--metrics-port", "0", "--report-interval",
                               "400ms"},
      dir_.File("worker.log"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = OnlyWorker();
        return w && w->connected() && w->healthy() && w->acked_version() == 1;
      },
      20s));
  EXPECT_EQ(OnlyWorker()->report_interval_ms(), 400u);
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("llmproxy_ctl_workers_healthy 1"); }, 10s));

  ASSERT_EQ(::kill(worker_->pid(), SIGSTOP), 0);
  stopped_.insert(worker_->pid());
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = OnlyWorker();
        return w && w->state() == "stale";
      },
      15s));
  auto w = *OnlyWorker();
  EXPECT_TRUE(w.connected());  // the kernel keeps its stream open: that alone proves nothing
  EXPECT_FALSE(w.healthy());
  EXPECT_GE(w.last_report_age_ms(), 3 * 400u);
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("llmproxy_ctl_workers_healthy 0"); }, 10s));
  EXPECT_TRUE(MetricsSay("llmproxy_ctl_workers_connected 1"));
  // Past the replacement bound too: not supervised, so not killed.
  const int64_t replace_after_ms = 5 * 400;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto r = OnlyWorker();
        return r && static_cast<int64_t>(r->last_report_age_ms()) > replace_after_ms + 400;
      },
      15s));
  EXPECT_TRUE(worker_->running());

  ASSERT_EQ(::kill(worker_->pid(), SIGCONT), 0);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto r = OnlyWorker();
        return r && r->healthy() && r->state() == "healthy";
      },
      10s));
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("llmproxy_ctl_workers_healthy 1"); }, 10s));
}

TEST_F(Processes, StoppedSupervisedWorkerIsShownStaleThenReplaced) {
  // Reports every second: stale after 3 s of silence, replaced after 5 s. The 2 s between
  // the two leave room to look at the stale state on a loaded machine.
  constexpr int64_t kIntervalMs = 1000;
  ctl_ = StartCtl({"--workers", "1", "--report-interval", "1s"});
  ConnectAdmin();
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = OnlyWorker();
        return w && w->connected() && w->healthy() && w->acked_version() == 1;
      },
      20s));
  const v1::WorkerInfo before = *OnlyWorker();
  EXPECT_EQ(before.state(), "healthy");
  EXPECT_EQ(before.report_interval_ms(), static_cast<uint32_t>(kIntervalMs));
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("llmproxy_ctl_workers_healthy 1"); }, 10s));
  const pid_t victim = static_cast<pid_t>(before.pid());

  ASSERT_EQ(::kill(victim, SIGSTOP), 0);
  stopped_.insert(victim);
  const auto stopped_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = OnlyWorker();
        return w && w->pid() == victim && w->state() == "stale";
      },
      15s));
  // Within the bound: 3 intervals after the last report, which came at most one interval
  // before the stop (plus slack for a loaded machine).
  EXPECT_LT(std::chrono::steady_clock::now() - stopped_at, 3s + 3s);
  auto stale = *OnlyWorker();
  EXPECT_TRUE(stale.connected());
  EXPECT_FALSE(stale.healthy());
  // The gauge is refreshed by the ctl's loop a few times per interval; the replacement
  // may come first on a slow machine, which the checks below see.
  auto replaced = [&] {
    auto w = OnlyWorker();
    return w && w->pid() != victim;
  };
  EXPECT_TRUE(
      WaitUntil([&] { return MetricsSay("llmproxy_ctl_workers_healthy 0") || replaced(); }, 10s))
      << CtlMetrics();
  std::string table = Admin({"workers"});
  EXPECT_TRUE(table.find(" stale ") != std::string::npos || replaced()) << table;

  // The supervisor kills it (SIGKILL reaches a stopped process) and starts a new one.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = OnlyWorker();
        return w && w->pid() != victim && w->connected() && w->healthy() && w->acked_version() == 1;
      },
      20s));
  EXPECT_TRUE(WaitUntil([&] { return !e2e::ProcessAlive(victim); }, 5s));
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("llmproxy_ctl_workers_healthy 1"); }, 10s));
  int code = -1;
  auto json = nlohmann::json::parse(Admin({"--json", "workers"}, &code));
  EXPECT_EQ(code, 0);
  ASSERT_EQ(json["workers"].size(), 1u);
  EXPECT_EQ(json["workers"][0]["healthy"], true);
  EXPECT_EQ(json["workers"][0]["state"], "healthy");
  EXPECT_EQ(json["workers"][0]["report_interval_ms"], kIntervalMs);
  const std::string log = ctl_->Log();
  EXPECT_NE(log.find("worker stopped answering; killing it to restart it"), std::string::npos)
      << log;
  EXPECT_NE(log.find("no load report for"), std::string::npos);
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", R"({"model":"m1"})").status, 200);
}

// The stale state as the CLI prints it, without a supervisor racing to replace the worker.
TEST_F(Processes, AdminCliShowsAStaleWorker) {
  ctl_ = StartCtl({});
  ConnectAdmin();
  ASSERT_TRUE(WaitUntil([&] { return Workers().current_version() == 1; }, 10s));
  worker_ = std::make_unique<e2e::Process>(
      std::vector<std::string>{e2e::BinDir() + "/llmproxy-worker", "--control-plane",
                               "127.0.0.1:" + std::to_string(ctl_port_), "--id", "remote", "--port",
                               std::to_string(port_), "--metrics-port", "0", "--report-interval",
                               "200ms"},
      dir_.File("worker.log"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = OnlyWorker();
        return w && w->connected() && w->healthy();
      },
      20s));
  std::string table = Admin({"workers"});
  EXPECT_NE(table.find("STATE"), std::string::npos) << table;
  EXPECT_NE(table.find(" healthy "), std::string::npos) << table;
  ASSERT_EQ(::kill(worker_->pid(), SIGSTOP), 0);
  stopped_.insert(worker_->pid());
  ASSERT_TRUE(WaitUntil([&] { return OnlyWorker() && OnlyWorker()->state() == "stale"; }, 15s));
  table = Admin({"workers"});
  EXPECT_NE(table.find(" stale "), std::string::npos) << table;
  EXPECT_NE(table.find("remote is stale: no load report for "), std::string::npos) << table;
  EXPECT_NE(table.find(" ms (reports every 200 ms)"), std::string::npos) << table;
  int code = -1;
  auto json = nlohmann::json::parse(Admin({"--json", "workers"}, &code));
  EXPECT_EQ(code, 0);
  ASSERT_EQ(json["workers"].size(), 1u);
  EXPECT_EQ(json["workers"][0]["healthy"], false);
  EXPECT_EQ(json["workers"][0]["connected"], true);
  EXPECT_EQ(json["workers"][0]["state"], "stale");
  EXPECT_GE(json["workers"][0]["last_report_age_ms"].get<uint64_t>(), 600u);
}

// A blocking raw HTTP/1.1 client that reads a response as it arrives.
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{0, 200 * 1000};  // recv wakes up to look at the deadline
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Reads until `done(received)` or EOF or the timeout; true when `done` held.
  bool ReadUntil(const std::function<bool(const std::string&)>& done,
                 std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(received_)) {
      if (eof_ || std::chrono::steady_clock::now() >= deadline) return false;
      char buf[8192];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) eof_ = true;
      if (n > 0) received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  bool ReadToEof(std::chrono::milliseconds timeout) {
    return ReadUntil([&](const std::string&) { return eof_; }, timeout);
  }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string received_;
};

std::string Dechunk(const std::string& body) {
  std::string out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t n = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
    if (n == 0) break;
    out.append(body, eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  return out;
}

TEST_F(Processes, StreamCutByTheDrainDeadlineEndsWithTheErrorEvent) {
  worker_ = std::make_unique<e2e::Process>(
      std::vector<std::string>{e2e::BinDir() + "/llmproxy-worker", "-c", path_, "--metrics-port",
                               "0", "--drain-timeout", "300ms"},
      dir_.File("worker.log"));
  ASSERT_TRUE(WaitUntil([&] { return HttpRequest(port_, "GET", "/health").status == 200; }, 20s));

  // 1000 chunks 50 ms apart: far longer than the drain deadline.
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  const std::string body = R"({"model":"m1","stream":true,"messages":[]})";
  ASSERT_TRUE(
      client.Send("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Content-Type: application/json\r\nx-mock-chunks: 1000\r\n"
                  "x-mock-chunk-gap-ms: 50\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n" + body));
  // Streaming for real: a few events have reached the client.
  ASSERT_TRUE(client.ReadUntil(
      [](const std::string& r) { return r.find("tok2 ") != std::string::npos; }, 20s))
      << client.received();

  const auto term_at = std::chrono::steady_clock::now();
  worker_->Signal(SIGTERM);
  ASSERT_TRUE(client.ReadToEof(15s)) << client.received();
  const auto took = std::chrono::steady_clock::now() - term_at;
  EXPECT_GE(took, 300ms);  // the drain deadline was waited out
  EXPECT_LT(took, 10s);

  const std::string& raw = client.received();
  ASSERT_EQ(raw.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << raw;
  size_t head_end = raw.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_NE(raw.substr(0, head_end).find("Transfer-Encoding: chunked"), std::string::npos);
  // The chunked body ends properly (terminating chunk), not with a bare close.
  ASSERT_GE(raw.size(), 5u);
  EXPECT_EQ(raw.substr(raw.size() - 5), "0\r\n\r\n") << raw;
  const std::string events = Dechunk(raw.substr(head_end + 4));
  const std::string error_event =
      "data: {\"error\":{\"message\":\"The stream was cut: the proxy is shutting down.\","
      "\"type\":\"upstream_error\",\"code\":\"stream_broken\"}}\n\n";
  ASSERT_GE(events.size(), error_event.size()) << events;
  EXPECT_EQ(events.substr(events.size() - error_event.size()), error_event) << events;
  // Whole events before it, exactly one error event, and no [DONE].
  const std::string before = events.substr(0, events.size() - error_event.size());
  EXPECT_EQ(before.rfind("data: {", 0), 0u);
  EXPECT_EQ(before.substr(before.size() - 2), "\n\n");
  EXPECT_EQ(before.find("\"error\""), std::string::npos);
  EXPECT_EQ(events.find("[DONE]"), std::string::npos);
  EXPECT_NE(before.find("tok2 "), std::string::npos);

  // The upstream call was cancelled (tokens cost money) and the worker exited cleanly.
  EXPECT_TRUE(mock_->WaitForCancellations(1, 10s));
  int status = worker_->Wait(15s);
  ASSERT_NE(status, -1);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(worker_->Log().find("drain deadline passed"), std::string::npos);
}

// Out of file descriptors (docs/dataplane.md "Out of file descriptors"): a request whose
// backend socket cannot be opened gets 503 server_busy with Retry-After: 1, not a close
// without an answer; the backend is not blamed, and the worker serves again once a
// descriptor frees up.
TEST_F(Processes, OutOfFileDescriptorsAnswers503WithRetryAfterAndBlamesNoBackend) {
#ifdef __SANITIZE_ADDRESS__
  // UBSan's vptr check opens a pipe to probe memory: with no descriptor left it reports a
  // valid object as having an invalid vptr. The plain build runs this test.
  GTEST_SKIP() << "the sanitizer runtime needs descriptors of its own";
#endif
  constexpr int kLimit = 64;
  // One failure would eject the backend if the worker blamed it.
  e2e::WriteFileAtomic(path_, ConfigText() + "health:\n  failure_threshold: 1\n");
  const uint16_t metrics_port = e2e::FreePort();
  worker_ = std::make_unique<e2e::Process>(
      std::vector<std::string>{e2e::BinDir() + "/llmproxy-worker", "-c", path_, "--metrics-port",
                               std::to_string(metrics_port)},
      dir_.File("worker.log"));
  ASSERT_TRUE(WaitUntil([&] { return HttpRequest(port_, "GET", "/health").status == 200; }, 20s));
  // The worker raised its soft limit to the hard one at start; now both come down (as
  // `prlimit --pid` does).
  const rlimit low{kLimit, kLimit};
  ASSERT_EQ(::prlimit(worker_->pid(), RLIMIT_NOFILE, &low, nullptr), 0) << std::strerror(errno);
  const std::string fd_dir = "/proc/" + std::to_string(worker_->pid()) + "/fd";
  // The limit bounds descriptor numbers: one inherited above it (the test runner's) is
  // not in the way and not counted.
  auto open_fds = [&] {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(fd_dir)) {
      if (std::stoi(entry.path().filename().string()) < kLimit) ++n;
    }
    return n;
  };
  // The health check's connection is closed once the count holds still.
  int base = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        const int before = open_fds();
        std::this_thread::sleep_for(100ms);
        base = open_fds();
        return before == base;
      },
      10s));
  ASSERT_LT(base, kLimit - 2);

  // Idle client connections take every descriptor but one: a request's own connection
  // takes that one, and its backend socket finds none.
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = base; i < kLimit - 1; ++i) {
    idle.push_back(std::make_unique<RawClient>(port_));
    ASSERT_TRUE(idle.back()->connected());
  }
  ASSERT_TRUE(WaitUntil([&] { return open_fds() == kLimit - 1; }, 10s)) << open_fds();

  const std::string body = R"({"model":"m1","stream":true,"messages":[]})";
  const std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  for (int i = 0; i < 3; ++i) {
    RawClient client(port_);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Send(request));
    ASSERT_TRUE(client.ReadUntil(
        [](const std::string& r) {
          const size_t head = r.find("\r\n\r\n");
          return head != std::string::npos && r.back() == '}';
        },
        10s))
        << "request " << i << ": " << client.received();
    const std::string& raw = client.received();
    EXPECT_EQ(raw.rfind("HTTP/1.1 503 ", 0), 0u) << raw;
    EXPECT_NE(raw.find("\r\nRetry-After: 1\r\n"), std::string::npos) << raw;
    EXPECT_NE(raw.find("\"code\":\"server_busy\""), std::string::npos) << raw;
    EXPECT_NE(raw.find("out of connections"), std::string::npos) << raw;
  }
  EXPECT_EQ(mock_->RequestCount(), 0u);

  // Descriptors free again: the same request is served, by the backend nobody blamed.
  idle.clear();
  ASSERT_TRUE(WaitUntil([&] { return open_fds() <= base; }, 10s)) << open_fds();
  e2e::HttpResponse ok =
      HttpRequest(port_, "POST", "/v1/chat/completions", R"({"model":"m1","messages":[]})");
  EXPECT_EQ(ok.status, 200) << ok.body;
  const std::string metrics = HttpRequest(metrics_port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("llmproxy_upstream_attempts_total{backend=\"a\",outcome=\"proxy_"
                         "overloaded\"} 3\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("llmproxy_backend_up{backend=\"a\"} 1\n"), std::string::npos) << metrics;
  const std::string log = worker_->Log();
  EXPECT_NE(log.find("out of file descriptors"), std::string::npos) << log;
  EXPECT_EQ(log.find("status=499"), std::string::npos) << log;
}

}  // namespace
}  // namespace llmproxy
