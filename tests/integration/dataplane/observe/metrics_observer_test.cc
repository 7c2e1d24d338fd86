// Metrics fed with RequestRecords directly (no server): exact counter values, histogram
// buckets, token sums, backend_up transitions, label hygiene, thread safety, and that
// `promtool check metrics` accepts the exposition text. Plus the /metrics listener.
#include "dataplane/observe/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/config/config.h"
#include "dataplane/config_sync/table_store.h"
#include "dataplane/observe/metrics_server.h"

namespace llmproxy {
namespace {

using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// Parses the exposition text into samples (name, labels, value); comments skipped.
std::vector<Sample> ParseSamples(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    size_t pos = line.find_first_of("{ ");
    s.name = line.substr(0, pos);
    if (line[pos] == '{') {
      size_t i = pos + 1;
      while (line[i] != '}') {
        size_t eq = line.find('=', i);
        std::string key = line.substr(i, eq - i);
        std::string value;
        size_t j = eq + 2;  // past ="
        for (; line[j] != '"'; ++j) {
          if (line[j] == '\\') ++j;
          value.push_back(line[j]);
        }
        s.labels[key] = value;
        i = j + 1;
        if (line[i] == ',') ++i;
      }
      pos = i + 1;
    }
    s.value = std::stod(line.substr(pos + 1));
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<double> Value(const std::string& text, const std::string& name,
                            const Labels& labels = {}) {
  for (const auto& s : ParseSamples(text)) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

// Every sample of a family, to check which label sets exist.
std::vector<Sample> Family(const std::string& text, const std::string& name) {
  std::vector<Sample> out;
  for (auto& s : ParseSamples(text)) {
    if (s.name == name) out.push_back(std::move(s));
  }
  return out;
}

RequestRecord Record(std::string backend, std::string model, int status, double duration) {
  RequestRecord r;
  r.request_id = "req-1";
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.status = status;
  r.backend = std::move(backend);
  r.model_resolved = std::move(model);
  r.model_requested = r.model_resolved;
  r.attempts = 1;
  r.duration_seconds = duration;
  r.overhead_seconds = 0.0002;
  return r;
}

void Done(Metrics& m, const RequestRecord& r) {
  m.OnRequestStart();
  m.OnRequestDone(r);
}

Config TwoBackendConfig() {
  Config c;
  BackendConfig a;
  a.name = "alpha";
  a.url = "http://127.0.0.1:1";
  a.api_key = "sk-alpha-secret";
  a.default_model = "model-a";
  a.models = {"model-a", "shared"};
  BackendConfig b = a;
  b.name = "beta";
  b.api_key = "sk-beta-secret";
  b.default_model = "model-b";
  b.models = {"model-b", "shared"};
  c.backends = {a, b};
  ModelAlias alias;
  alias.name = "gpt-4o";
  alias.models = {"model-a", "model-b"};
  c.model_aliases = {alias};
  return c;
}

TEST(MetricsObserver, CountsRequestsByBackendModelAndCode) {
  Metrics m;
  Done(m, Record("alpha", "model-a", 200, 0.1));
  Done(m, Record("alpha", "model-a", 200, 0.1));
  Done(m, Record("alpha", "model-a", 429, 0.1));
  Done(m, Record("beta", "shared", 200, 0.1));
  Done(m, Record("", "", 401, 0.001));  // refused by the proxy: no backend, no model
  std::string text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "alpha"}, {"model", "model-a"}, {"code", "200"}}),
            2);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "alpha"}, {"model", "model-a"}, {"code", "429"}}),
            1);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "beta"}, {"model", "shared"}, {"code", "200"}}),
            1);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "none"}, {"model", "unknown"}, {"code", "401"}}),
            1);
  EXPECT_EQ(Family(text, "llmproxy_requests_total").size(), 4u);
  EXPECT_EQ(Value(text, "llmproxy_in_flight_requests"), 0);
}

TEST(MetricsObserver, InFlightFollowsStartAndDone) {
  Metrics m;
  m.OnRequestStart();
  m.OnRequestStart();
  EXPECT_EQ(Value(m.Serialize(), "llmproxy_in_flight_requests"), 2);
  m.OnRequestDone(Record("alpha", "model-a", 200, 0.1));
  EXPECT_EQ(Value(m.Serialize(), "llmproxy_in_flight_requests"), 1);
  m.OnRequestDone(Record("alpha", "model-a", 200, 0.1));
  EXPECT_EQ(Value(m.Serialize(), "llmproxy_in_flight_requests"), 0);
}

TEST(MetricsObserver, DurationHistogramBucketsAndSum) {
  Metrics m;
  for (double d : {0.0005, 0.002, 0.7, 45.0, 400.0}) Done(m, Record("alpha", "model-a", 200, d));
  std::string text = m.Serialize();
  const std::string b = "llmproxy_request_duration_seconds_bucket";
  EXPECT_EQ(Value(text, b, {{"le", "0.001"}}), 1);
  EXPECT_EQ(Value(text, b, {{"le", "0.0025"}}), 2);
  EXPECT_EQ(Value(text, b, {{"le", "0.5"}}), 2);
  EXPECT_EQ(Value(text, b, {{"le", "1"}}), 3);
  EXPECT_EQ(Value(text, b, {{"le", "60"}}), 4);
  EXPECT_EQ(Value(text, b, {{"le", "300"}}), 4);
  EXPECT_EQ(Value(text, b, {{"le", "+Inf"}}), 5);
  EXPECT_EQ(Value(text, "llmproxy_request_duration_seconds_count"), 5);
  EXPECT_NEAR(*Value(text, "llmproxy_request_duration_seconds_sum"), 445.7025, 1e-9);
  // 1 ms .. 300 s, as the issue asks.
  EXPECT_EQ(Metrics::DurationBuckets().front(), 0.001);
  EXPECT_EQ(Metrics::DurationBuckets().back(), 300);
}

TEST(MetricsObserver, TtftOnlyForStreamsAndOverheadForAll) {
  Metrics m;
  RequestRecord plain = Record("alpha", "model-a", 200, 0.3);
  plain.overhead_seconds = 0.00003;  // 30 us
  RequestRecord stream = Record("alpha", "model-a", 200, 2.0);
  stream.stream = true;
  stream.ttft_seconds = 0.08;
  stream.overhead_seconds = 0.0004;
  Done(m, plain);
  Done(m, stream);
  Done(m, stream);
  std::string text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_time_to_first_token_seconds_count"), 2);
  EXPECT_EQ(Value(text, "llmproxy_time_to_first_token_seconds_bucket", {{"le", "0.075"}}), 0);
  EXPECT_EQ(Value(text, "llmproxy_time_to_first_token_seconds_bucket", {{"le", "0.1"}}), 2);
  EXPECT_NEAR(*Value(text, "llmproxy_time_to_first_token_seconds_sum"), 0.16, 1e-12);
  EXPECT_EQ(Value(text, "llmproxy_overhead_seconds_count"), 3);
  EXPECT_EQ(Value(text, "llmproxy_overhead_seconds_bucket", {{"le", "1e-05"}}), 0);
  EXPECT_EQ(Value(text, "llmproxy_overhead_seconds_bucket", {{"le", "5e-05"}}), 1);
  EXPECT_EQ(Value(text, "llmproxy_overhead_seconds_bucket", {{"le", "0.0005"}}), 3);
}

TEST(MetricsObserver, TokenSumsPerBackendModelAndType) {
  Metrics m;
  RequestRecord r1 = Record("alpha", "model-a", 200, 0.5);
  r1.prompt_tokens = 12;
  r1.completion_tokens = 30;
  RequestRecord r2 = r1;
  r2.prompt_tokens = 8;
  r2.completion_tokens = 5;
  RequestRecord no_usage = Record("alpha", "model-a", 200, 0.5);  // counted, adds no tokens
  RequestRecord other = Record("beta", "model-b", 200, 0.5);
  other.prompt_tokens = 1000;
  other.completion_tokens = 1;
  for (const auto& r : {r1, r2, no_usage, other}) Done(m, r);
  std::string text = m.Serialize();
  auto tokens = [&](const char* backend, const char* model, const char* type) {
    return Value(text, "llmproxy_tokens_total",
                 {{"backend", backend}, {"model", model}, {"type", type}});
  };
  EXPECT_EQ(tokens("alpha", "model-a", "prompt"), 20);
  EXPECT_EQ(tokens("alpha", "model-a", "completion"), 35);
  EXPECT_EQ(tokens("beta", "model-b", "prompt"), 1000);
  EXPECT_EQ(tokens("beta", "model-b", "completion"), 1);
}

TEST(MetricsObserver, UpstreamAttemptsByBackendAndOutcome) {
  Metrics m;
  m.OnAttempt("alpha", AttemptOutcome::kServerError);
  m.OnAttempt("alpha", AttemptOutcome::kServerError);
  m.OnAttempt("beta", AttemptOutcome::kSuccess);
  m.OnAttempt("alpha", AttemptOutcome::kRateLimited);
  m.OnAttempt("beta", AttemptOutcome::kConnectError);
  std::string text = m.Serialize();
  auto attempts = [&](const char* backend, const char* outcome) {
    return Value(text, "llmproxy_upstream_attempts_total",
                 {{"backend", backend}, {"outcome", outcome}});
  };
  EXPECT_EQ(attempts("alpha", "server_error"), 2);
  EXPECT_EQ(attempts("alpha", "rate_limited"), 1);
  EXPECT_EQ(attempts("beta", "success"), 1);
  EXPECT_EQ(attempts("beta", "connect_error"), 1);
  EXPECT_EQ(Family(text, "llmproxy_upstream_attempts_total").size(), 4u);
}

TEST(MetricsObserver, ProbesByBackendAndResult) {
  Metrics m;
  m.OnConfigApplied(TwoBackendConfig(), 1);
  m.OnProbe("alpha", false);
  m.OnProbe("alpha", false);
  m.OnProbe("alpha", true);
  m.OnProbe("beta", false);
  m.OnProbe("not-configured", true);  // never a label of its own
  std::string text = m.Serialize();
  auto probes = [&](const char* backend, const char* result) {
    return Value(text, "llmproxy_backend_probes_total", {{"backend", backend}, {"result", result}});
  };
  EXPECT_EQ(probes("alpha", "failure"), 2);
  EXPECT_EQ(probes("alpha", "success"), 1);
  EXPECT_EQ(probes("beta", "failure"), 1);
  EXPECT_EQ(probes("none", "success"), 1);
  EXPECT_EQ(Family(text, "llmproxy_backend_probes_total").size(), 4u);
  EXPECT_NE(text.find("# TYPE llmproxy_backend_probes_total counter"), std::string::npos);
}

TEST(MetricsObserver, BackendUpFollowsTheProviderThroughEjectionAndRemoval) {
  Metrics m;
  MetricsState state;
  state.config_version = 3;
  state.backends = {{"alpha", true}, {"beta", true}};
  m.SetStateProvider([&state] { return state; });
  std::string text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_config_version"), 3);
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "alpha"}}), 1);
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "beta"}}), 1);

  state.backends[1].up = false;  // beta ejected
  text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "beta"}}), 0);
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "alpha"}}), 1);

  state.backends[1].up = true;  // back after its trial request
  text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "beta"}}), 1);

  state.config_version = 4;  // beta removed from the config
  state.backends = {{"alpha", true}};
  text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_config_version"), 4);
  EXPECT_EQ(Family(text, "llmproxy_backend_up").size(), 1u);
  EXPECT_FALSE(Value(text, "llmproxy_backend_up", {{"backend", "beta"}}).has_value());
}

TEST(MetricsObserver, DirectSettersWithoutProvider) {
  Metrics m;
  m.SetConfigVersion(7);
  m.SetBackendUp("alpha", false);
  std::string text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_config_version"), 7);
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "alpha"}}), 0);
  m.OnConfigApplied(TwoBackendConfig(), 8);  // alpha stays, nothing else appears
  text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_config_version"), 8);
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "alpha"}}), 0);
  Config only_beta = TwoBackendConfig();
  only_beta.backends.erase(only_beta.backends.begin());
  m.OnConfigApplied(only_beta, 9);  // alpha's series goes with it
  EXPECT_TRUE(Family(m.Serialize(), "llmproxy_backend_up").empty());
}

// Whatever a caller passes, labels only ever carry configured names.
TEST(MetricsObserver, LabelsNeverCarryNamesOutsideTheConfig) {
  Metrics m;
  m.OnConfigApplied(TwoBackendConfig(), 1);
  Done(m, Record("alpha", "model-a", 200, 0.1));
  Done(m, Record("alpha", "gpt-4o-from-client\"}", 200, 0.1));  // alias name is not a model
  Done(m, Record("evil-backend", "model-b", 999, 0.1));
  for (int i = 0; i < 3000; ++i) {
    Done(m, Record("attacker-" + std::to_string(i), "junk-" + std::to_string(i), 200, 0.1));
    m.OnAttempt("attacker-" + std::to_string(i), AttemptOutcome::kSuccess);
  }
  std::string text = m.Serialize();
  EXPECT_EQ(text.find("attacker"), std::string::npos);
  EXPECT_EQ(text.find("junk"), std::string::npos);
  EXPECT_EQ(text.find("evil"), std::string::npos);
  EXPECT_EQ(text.find("from-client"), std::string::npos);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "alpha"}, {"model", "unknown"}, {"code", "200"}}),
            1);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "none"}, {"model", "model-b"}, {"code", "0"}}),
            1);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "none"}, {"model", "unknown"}, {"code", "200"}}),
            3000);
  EXPECT_EQ(Value(text, "llmproxy_upstream_attempts_total",
                  {{"backend", "none"}, {"outcome", "success"}}),
            3000);
  for (const auto& s : ParseSamples(text)) {
    for (const auto& [key, value] : s.labels) {
      if (key == "backend") {
        EXPECT_TRUE(value == "alpha" || value == "beta" || value == "none") << value;
      }
      if (key == "model") {
        EXPECT_TRUE(value == "model-a" || value == "model-b" || value == "shared" ||
                    value == "unknown")
            << value;
      }
    }
  }
}

TEST(MetricsObserver, AttachedTableStoreDrivesLabelsVersionAndHealth) {
  TableStore store;
  Metrics m;
  m.AttachTableStore(store);
  Done(m, Record("alpha", "model-a", 200, 0.1));  // no table yet: nothing is configured
  Config config = TwoBackendConfig();
  config.health.failure_threshold = 2;
  ASSERT_EQ(store.Apply(config, 5), "");
  Done(m, Record("alpha", "model-a", 200, 0.1));
  Done(m, Record("alpha", "nope", 200, 0.1));
  std::string text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_config_version"), 5);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "none"}, {"model", "unknown"}, {"code", "200"}}),
            1);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "alpha"}, {"model", "model-a"}, {"code", "200"}}),
            1);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "alpha"}, {"model", "unknown"}, {"code", "200"}}),
            1);
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "alpha"}}), 1);
  EXPECT_EQ(Value(text, "llmproxy_backend_up", {{"backend", "beta"}}), 1);

  // A new version without alpha: its health series goes, its name stops being a label.
  Config only_beta = TwoBackendConfig();
  only_beta.backends.erase(only_beta.backends.begin());
  only_beta.model_aliases.clear();
  ASSERT_EQ(store.Apply(only_beta, 6), "");
  Done(m, Record("alpha", "model-b", 200, 0.1));
  text = m.Serialize();
  EXPECT_EQ(Value(text, "llmproxy_config_version"), 6);
  EXPECT_FALSE(Value(text, "llmproxy_backend_up", {{"backend", "alpha"}}).has_value());
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "none"}, {"model", "model-b"}, {"code", "200"}}),
            1);
}

TEST(MetricsObserver, ConcurrentRequestsAreAllCounted) {
  Metrics m;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kPerThread; ++i) {
        RequestRecord r = Record(t % 2 ? "alpha" : "beta", "shared", i % 10 ? 200 : 500, 0.01);
        r.prompt_tokens = 2;
        m.OnRequestStart();
        m.OnAttempt(r.backend, AttemptOutcome::kSuccess);
        m.OnRequestDone(r);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::string text = m.Serialize();
  double requests = 0;
  for (const auto& s : Family(text, "llmproxy_requests_total")) requests += s.value;
  EXPECT_EQ(requests, kThreads * kPerThread);
  EXPECT_EQ(Value(text, "llmproxy_requests_total",
                  {{"backend", "alpha"}, {"model", "shared"}, {"code", "500"}}),
            2 * kPerThread / 10);
  EXPECT_EQ(Value(text, "llmproxy_request_duration_seconds_count"), kThreads * kPerThread);
  EXPECT_EQ(Value(text, "llmproxy_tokens_total",
                  {{"backend", "beta"}, {"model", "shared"}, {"type", "prompt"}}),
            2 * 2 * kPerThread);
  EXPECT_EQ(Value(text, "llmproxy_in_flight_requests"), 0);
}

TEST(MetricsObserver, TwoInstancesOnOneThreadStayApart) {
  Metrics a;
  Metrics b;
  for (int i = 0; i < 3; ++i) {
    Done(a, Record("alpha", "model-a", 200, 0.1));
    Done(b, Record("alpha", "model-a", 200, 0.1));
    Done(b, Record("alpha", "model-a", 200, 0.1));
  }
  Labels l = {{"backend", "alpha"}, {"model", "model-a"}, {"code", "200"}};
  EXPECT_EQ(Value(a.Serialize(), "llmproxy_requests_total", l), 3);
  EXPECT_EQ(Value(b.Serialize(), "llmproxy_requests_total", l), 6);
}

TEST(MetricsObserver, ExpositionListsEveryFamilyWithHelpAndType) {
  Metrics m;
  RequestRecord r = Record("alpha", "model-a", 200, 0.1);
  r.prompt_tokens = 1;
  Done(m, r);
  m.OnAttempt("alpha", AttemptOutcome::kSuccess);
  m.OnProbe("alpha", true);
  m.SetBackendUp("alpha", true);
  std::string text = m.Serialize();
  for (const char* family :
       {"llmproxy_requests_total", "llmproxy_request_duration_seconds",
        "llmproxy_time_to_first_token_seconds", "llmproxy_upstream_attempts_total",
        "llmproxy_tokens_total", "llmproxy_in_flight_requests", "llmproxy_backend_up",
        "llmproxy_config_version", "llmproxy_overhead_seconds", "llmproxy_backend_probes_total"}) {
    EXPECT_NE(text.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
    EXPECT_NE(text.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
  }
  EXPECT_NE(text.find("# TYPE llmproxy_request_duration_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("# TYPE llmproxy_requests_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE llmproxy_backend_up gauge"), std::string::npos);
}

// Runs promtool on `text`; returns its exit status and output.
std::pair<int, std::string> Promtool(const std::string& text) {
  std::string path = ::testing::TempDir() + "metrics-" + std::to_string(::getpid()) + ".txt";
  {
    std::ofstream f(path);
    f << text;
  }
  std::string cmd = "/usr/bin/promtool check metrics < '" + path + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string output;
  char buf[512];
  while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) output += buf;
  int status = p != nullptr ? ::pclose(p) : -1;
  std::filesystem::remove(path);
  return {status, output};
}

TEST(MetricsObserver, PromtoolAcceptsTheExposition) {
  if (!std::filesystem::exists("/usr/bin/promtool")) {
    // CI installs it (scripts/install-deps.sh): missing there is a failure, not a skip.
    if (std::getenv("CI") != nullptr) FAIL() << "/usr/bin/promtool not installed and CI is set";
    GTEST_SKIP() << "/usr/bin/promtool not installed (apt-get install prometheus)";
  }
  Metrics m;
  m.OnConfigApplied(TwoBackendConfig(), 2);
  m.SetBackendUp("alpha", true);
  m.SetBackendUp("beta", false);
  RequestRecord r = Record("alpha", "model-a", 200, 1.5);
  r.stream = true;
  r.ttft_seconds = 0.2;
  r.prompt_tokens = 10;
  r.completion_tokens = 20;
  Done(m, r);
  Done(m, Record("", "", 404, 0.0001));
  m.OnAttempt("alpha", AttemptOutcome::kTimeout);
  m.OnProbe("beta", false);
  m.OnProbe("beta", true);
  auto [status, output] = Promtool(m.Serialize());
  EXPECT_EQ(status, 0) << output;
  // An empty registry is valid too (a worker scraped before its first request).
  Metrics empty;
  auto [empty_status, empty_output] = Promtool(empty.Serialize());
  EXPECT_EQ(empty_status, 0) << empty_output;
}

// --- the /metrics listener -------------------------------------------------------------

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct Reply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// One request on an open connection (keep-alive).
Reply Exchange(beast::tcp_stream& stream, http::verb verb, const std::string& target) {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(true);
  req.prepare_payload();
  stream.expires_after(std::chrono::seconds(10));
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return Reply{static_cast<int>(res.result_int()), std::string(res[http::field::content_type]),
               res.body()};
}

Reply Get(uint16_t port, const std::string& target, http::verb verb = http::verb::get) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  return Exchange(stream, verb, target);
}

TEST(MetricsServer, ServesMetricsAndNothingElse) {
  Metrics m;
  Done(m, Record("alpha", "model-a", 200, 0.1));
  MetricsServer server(m, {"127.0.0.1", 0});
  ASSERT_EQ(server.Start(), "");
  ASSERT_NE(server.port(), 0);

  Reply ok = Get(server.port(), "/metrics");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.content_type.rfind("text/plain; version=0.0.4", 0), 0u) << ok.content_type;
  EXPECT_EQ(Value(ok.body, "llmproxy_requests_total",
                  {{"backend", "alpha"}, {"model", "model-a"}, {"code", "200"}}),
            1);
  EXPECT_EQ(Get(server.port(), "/metrics?name=x").status, 200);
  EXPECT_EQ(Get(server.port(), "/").status, 404);
  EXPECT_EQ(Get(server.port(), "/v1/chat/completions").status, 404);
  EXPECT_EQ(Get(server.port(), "/metrics", http::verb::post).status, 405);
}

TEST(MetricsServer, KeepAliveSeesNewValues) {
  Metrics m;
  MetricsServer server(m, {"127.0.0.1", 0});
  ASSERT_EQ(server.Start(), "");
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
  Labels l = {{"backend", "beta"}, {"model", "model-b"}, {"code", "502"}};
  EXPECT_FALSE(
      Value(Exchange(stream, http::verb::get, "/metrics").body, "llmproxy_requests_total", l)
          .has_value());
  Done(m, Record("beta", "model-b", 502, 0.1));
  EXPECT_EQ(Value(Exchange(stream, http::verb::get, "/metrics").body, "llmproxy_requests_total", l),
            1);
}

TEST(MetricsServer, ReportsAPortInUseAndStopsCleanly) {
  MetricsServer first([] { return std::string("x 1\n"); }, {"127.0.0.1", 0});
  ASSERT_EQ(first.Start(), "");
  MetricsServer second([] { return std::string("y 1\n"); }, {"127.0.0.1", first.port()});
  std::string error = second.Start();
  EXPECT_NE(error, "");
  EXPECT_NE(error.find(std::to_string(first.port())), std::string::npos) << error;

  EXPECT_EQ(Get(first.port(), "/metrics").body, "x 1\n");
  uint16_t port = first.port();
  first.Stop();
  first.Stop();  // idempotent
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  boost::system::error_code ec;
  socket.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  EXPECT_TRUE(ec) << "still listening after Stop()";
}

TEST(MetricsServer, ARenderFailureIsA500NotACrash) {
  MetricsServer server([]() -> std::string { throw std::runtime_error("boom"); }, {"127.0.0.1", 0});
  ASSERT_EQ(server.Start(), "");
  EXPECT_EQ(Get(server.port(), "/metrics").status, 500);
}

}  // namespace
}  // namespace llmproxy
