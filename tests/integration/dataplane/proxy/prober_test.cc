// Active health probes through the real worker (dataplane/proxy/prober.h): a backend that
// answers 503 until a set time after it started is ejected, probed every probe_interval
// while it fails (GET /v1/models with its key and headers, not hammered), taken back by the
// first probe after it recovers (within one probe interval, with a 30 s cooldown that would
// otherwise keep it out) and not probed any more while healthy. Probing off keeps the old
// behaviour; a worker that stops cuts its probe in flight.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/observe/metrics.h"
#include "dataplane/routing/backend_state.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using test::MockBackend;
using test::PostJson;
using test::TestConfig;
using test::TestWorker;
using test::WaitUntil;
using SteadyClockT = std::chrono::steady_clock;

constexpr const char* kChat = "/v1/chat/completions";
constexpr const char* kPlainBody = R"({"model":"m","messages":[]})";
constexpr auto kProbeInterval = 200ms;
// Timer and scheduling latency allowed on a loaded machine (two cores shared by the suite).
constexpr auto kSlack = 200ms;

double Ms(SteadyClockT::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// One backend, ejected at its first failure for 30 s, probed every `probe_interval`.
Config ProbeConfig(const MockLlm& mock, Millis probe_interval) {
  BackendConfig b = MockBackend("solo", mock.BaseUrl(), {"m"}, "sk-solo");
  b.headers = {{"X-Team", "probe-test"}};
  Config c = TestConfig({b});
  c.health.failure_threshold = 1;
  c.health.cooldown = 30s;
  c.health.max_cooldown = 300s;
  c.health.probe_interval = probe_interval;
  c.retry = 0;  // one attempt per request: the mock's log is exactly what the test sent
  return c;
}

std::vector<ReceivedRequest> Probes(const MockLlm& mock) {
  std::vector<ReceivedRequest> out;
  for (ReceivedRequest& r : mock.Requests()) {
    if (r.method == "GET" && r.target == "/v1/models") out.push_back(std::move(r));
  }
  return out;
}

size_t Posts(const MockLlm& mock) {
  size_t n = 0;
  for (const ReceivedRequest& r : mock.Requests()) n += r.method == "POST";
  return n;
}

bool Ejected(TestWorker& worker) {
  auto table = worker.store().Current();
  return table->health(0).Snapshot(SteadyClockT::now()).ejected;
}

TEST(Prober, RecoveredBackendTakesTrafficWithinOneProbeInterval) {
  constexpr auto kOutage = 1500ms;
  MockLlm mock;
  MockFault outage;
  outage.unavailable_for_ms = static_cast<int>(kOutage.count());
  mock.SetDefaultFault(outage);
  const SteadyClockT::time_point recovery = mock.started_at() + kOutage;

  Metrics metrics;
  TestWorker worker(ProbeConfig(mock, kProbeInterval), 1, {&metrics});
  metrics.AttachTableStore(worker.store());

  // The outage: the only backend fails its request and is ejected for 30 s.
  test::HttpResult failed = PostJson(worker.port(), kChat, kPlainBody);
  EXPECT_EQ(failed.status, 503);
  ASSERT_TRUE(Ejected(worker));
  const size_t posts_in_outage = Posts(mock);

  // Back in rotation by a probe alone: no client request reaches the backend meanwhile.
  ASSERT_TRUE(WaitUntil([&] { return !Ejected(worker); }, kOutage + 5s));
  const SteadyClockT::time_point back = SteadyClockT::now();
  EXPECT_EQ(Posts(mock), posts_in_outage);

  std::vector<ReceivedRequest> probes = Probes(mock);
  ASSERT_FALSE(probes.empty());
  std::vector<ReceivedRequest> failing, after;
  for (const ReceivedRequest& p : probes) (p.received_at < recovery ? failing : after).push_back(p);
  ASSERT_EQ(after.size(), 1u) << "exactly one probe after the recovery: the one that succeeded";
  const auto recovered_in = after[0].received_at - recovery;
  EXPECT_LE(recovered_in, kProbeInterval + kSlack) << Ms(recovered_in) << " ms";
  EXPECT_LE(back - recovery, kProbeInterval + kSlack) << Ms(back - recovery) << " ms";

  // While failing: probes spaced by the interval (never hammered), none missed.
  ASSERT_GE(failing.size(), 3u);
  auto min_gap = SteadyClockT::duration::max(), max_gap = SteadyClockT::duration::zero();
  for (size_t i = 1; i < probes.size(); ++i) {
    const auto gap = probes[i].received_at - probes[i - 1].received_at;
    min_gap = std::min(min_gap, gap);
    max_gap = std::max(max_gap, gap);
    EXPECT_GE(gap, kProbeInterval - 10ms) << "gap " << i << ": " << Ms(gap) << " ms";
    EXPECT_LE(gap, kProbeInterval + kSlack) << "gap " << i << ": " << Ms(gap) << " ms";
  }
  // Each probe carries the backend's key and configured headers, and no body.
  for (const ReceivedRequest& p : probes) {
    EXPECT_EQ(p.Header("authorization"), "Bearer sk-solo");
    EXPECT_EQ(p.Header("x-team"), "probe-test");
    EXPECT_EQ(p.body, "");
  }
  std::printf(
      "[ measured ] probe_interval %lld ms: %zu failing probes %.0f..%.0f ms apart; first probe "
      "%.0f ms and back in rotation %.0f ms after the recovery (cooldown 30 s)\n",
      static_cast<long long>(kProbeInterval.count()), failing.size(), Ms(min_gap), Ms(max_gap),
      Ms(recovered_in), Ms(back - recovery));

  // The next request is served by the backend itself, as a healthy one (no fail-open trial).
  test::HttpResult served = PostJson(worker.port(), kChat, kPlainBody);
  EXPECT_EQ(served.status, 200) << served.body;
  EXPECT_EQ(served.Header("x-llmproxy-backend"), "solo");
  EXPECT_EQ(served.Header("x-llmproxy-attempts"), "1");
  EXPECT_FALSE(Ejected(worker));

  // Healthy: no probe at all for several intervals.
  std::this_thread::sleep_for(kProbeInterval * 3);
  EXPECT_EQ(Probes(mock).size(), probes.size());

  const std::string text = metrics.Serialize();
  EXPECT_NE(text.find("llmproxy_backend_probes_total{backend=\"solo\",result=\"failure\"} " +
                      std::to_string(failing.size()) + "\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("llmproxy_backend_probes_total{backend=\"solo\",result=\"success\"} 1\n"),
            std::string::npos)
      << text;
}

TEST(Prober, ProbingOffKeepsTheBackendOutForItsCooldown) {
  constexpr auto kOutage = 300ms;
  MockLlm mock;
  MockFault outage;
  outage.unavailable_for_ms = static_cast<int>(kOutage.count());
  mock.SetDefaultFault(outage);
  TestWorker worker(ProbeConfig(mock, Millis(0)));

  EXPECT_EQ(PostJson(worker.port(), kChat, kPlainBody).status, 503);
  ASSERT_TRUE(Ejected(worker));
  // Well after the recovery: still out (passive health only waits for its 30 s cooldown),
  // and nothing probed it.
  std::this_thread::sleep_until(mock.started_at() + kOutage + 1s);
  EXPECT_TRUE(Ejected(worker));
  EXPECT_TRUE(Probes(mock).empty());
}

TEST(Prober, StoppingTheWorkerCutsTheProbeInFlight) {
  MockLlm mock;
  MockFault fail;
  fail.status = 503;
  mock.SetDefaultFault(fail);
  Config config = ProbeConfig(mock, kProbeInterval);
  config.timeout = 30s;  // a probe waits at most 5 s, whatever the backend's timeout
  TestWorker worker(config);

  EXPECT_EQ(PostJson(worker.port(), kChat, kPlainBody).status, 503);  // ejected
  MockFault hang;
  hang.hang = true;
  mock.SetDefaultFault(hang);  // the probe, 200 ms later: no answer
  ASSERT_TRUE(WaitUntil([&] { return Probes(mock).size() == 1; }, 5s));
  const auto start = SteadyClockT::now();
  worker.worker().Stop();
  EXPECT_LT(SteadyClockT::now() - start, 1s);
  // The probe's connection was closed at once, and the backend is still ejected, its probe
  // slot free for whoever probes next.
  EXPECT_TRUE(mock.WaitForCancellations(1, 2s));
  auto table = worker.store().Current();
  EXPECT_TRUE(table->health(0).Snapshot(SteadyClockT::now()).ejected);
  EXPECT_TRUE(table->health(0).NextProbeAt().has_value());
  EXPECT_EQ(Probes(mock).size(), 1u);
}

}  // namespace
}  // namespace llmproxy
