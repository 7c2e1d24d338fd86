// llmproxy-worker: the data plane. Standalone (`-c config.yaml`, or ./config.yaml when
// neither -c nor --control-plane is given, like the original program) or fed by
// llmproxy-ctl (`--control-plane HOST:PORT`). SIGTERM/SIGINT drain: stop accepting, let
// requests and streams in flight finish up to --drain-timeout, exit 0. SIGHUP re-reads
// the config file in standalone mode.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/config/config_loader.h"
#include "common/log/logging.h"
#include "dataplane/config_sync/control_plane_client.h"
#include "dataplane/config_sync/key_leases.h"
#include "dataplane/config_sync/table_store.h"
#include "dataplane/observe/access_log.h"
#include "dataplane/observe/metrics.h"
#include "dataplane/observe/metrics_server.h"
#include "dataplane/observe/usage_aggregator.h"
#include "dataplane/worker.h"

namespace llmproxy {
namespace {

constexpr std::string_view kVersion = "0.1.0";  // keep in step with project() in CMakeLists.txt

constexpr std::string_view kUsage =
    R"(Usage: llmproxy-worker [options]

An OpenAI-compatible LLM gateway worker. Standalone it serves the routing table of a
config file (./config.yaml when neither -c nor --control-plane is given); with
--control-plane it takes its table from llmproxy-ctl and keeps the last one if the
control plane goes away.

Options:
  -c, --config PATH          config file (standalone mode)
      --control-plane ADDR   llmproxy-ctl gRPC address, HOST:PORT
      --id NAME              worker id shown by `llmproxy-ctl admin workers` (default: worker-PID)
      --port P               listen port (overrides server.port)
      --metrics-port P       /metrics port (overrides server.metrics_port; 0 disables)
      --threads T            io threads, each with its own SO_REUSEPORT listener (default 1)
      --drain-timeout D      on SIGTERM/SIGINT, how long in-flight requests may finish (default 30s);
                             streams still running then end with an SSE error event
      --report-interval D    how often to send a load report to the control plane (default
                             2s, 100ms to 60s); it judges a worker silent for 3 intervals stale
      --log-format F         text | json (default text)
      --log-level L          debug | info | warn | error (default info)
  -h, --help                 this text
      --version              print the version

Exit status: 0 after a clean shutdown, 1 on an invalid config or a listen failure,
2 on bad usage.
)";

struct Flags {
  std::optional<std::string> config;
  std::optional<std::string> control_plane;
  std::string id;
  std::optional<uint16_t> port;
  std::optional<uint16_t> metrics_port;
  unsigned threads = 1;
  Millis drain_timeout = std::chrono::seconds(30);
  Millis report_interval = std::chrono::seconds(2);
  LogFormat log_format = LogFormat::kText;
  LogLevel log_level = LogLevel::kInfo;
};

template <typename T>
bool ParseNumber(std::string_view s, T& out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// Returns an exit code when the process should exit now (help, version, bad usage).
std::optional<int> ParseFlags(int argc, char** argv, Flags& flags) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view value;
    bool has_inline = false;
    if (arg.starts_with("--")) {
      if (size_t eq = arg.find('='); eq != std::string_view::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline = true;
      }
    }
    auto need_value = [&](std::string_view name) -> bool {
      if (has_inline) return true;
      if (i + 1 >= args.size()) {
        std::cerr << "llmproxy-worker: " << name << " needs a value\n";
        return false;
      }
      value = args[++i];
      return true;
    };
    auto bad = [&](std::string_view what) {
      std::cerr << "llmproxy-worker: invalid " << what << ": '" << value << "'\n";
      return 2;
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "llmproxy-worker " << kVersion << "\n";
      return 0;
    }
    if (arg == "-c" || arg == "--config") {
      if (!need_value(arg)) return 2;
      flags.config = std::string(value);
    } else if (arg == "--control-plane") {
      if (!need_value(arg)) return 2;
      flags.control_plane = std::string(value);
    } else if (arg == "--id") {
      if (!need_value(arg)) return 2;
      flags.id = std::string(value);
    } else if (arg == "--port") {
      if (!need_value(arg)) return 2;
      uint16_t p = 0;
      if (!ParseNumber(value, p)) return bad("--port");
      flags.port = p;
    } else if (arg == "--metrics-port") {
      if (!need_value(arg)) return 2;
      uint16_t p = 0;
      if (!ParseNumber(value, p)) return bad("--metrics-port");
      flags.metrics_port = p;
    } else if (arg == "--threads") {
      if (!need_value(arg)) return 2;
      unsigned t = 0;
      if (!ParseNumber(value, t) || t == 0 || t > 256) return bad("--threads");
      flags.threads = t;
    } else if (arg == "--drain-timeout") {
      if (!need_value(arg)) return 2;
      auto d = ParseDuration(value);
      if (!d) return bad("--drain-timeout (e.g. 30s)");
      flags.drain_timeout = *d;
    } else if (arg == "--report-interval") {
      if (!need_value(arg)) return 2;
      auto d = ParseDuration(value);
      if (!d || *d < std::chrono::milliseconds(100) || *d > std::chrono::seconds(60)) {
        return bad("--report-interval (100ms to 60s)");
      }
      flags.report_interval = *d;
    } else if (arg == "--log-format") {
      if (!need_value(arg)) return 2;
      auto f = ParseLogFormat(value);
      if (!f) return bad("--log-format (text|json)");
      flags.log_format = *f;
    } else if (arg == "--log-level") {
      if (!need_value(arg)) return 2;
      auto l = ParseLogLevel(value);
      if (!l) return bad("--log-level (debug|info|warn|error)");
      flags.log_level = *l;
    } else {
      std::cerr << "llmproxy-worker: unknown argument '" << arg << "' (see --help)\n";
      return 2;
    }
  }
  if (flags.config && flags.control_plane) {
    std::cerr << "llmproxy-worker: -c and --control-plane exclude each other\n";
    return 2;
  }
  if (!flags.config && !flags.control_plane) flags.config = "config.yaml";
  if (flags.id.empty()) flags.id = "worker-" + std::to_string(::getpid());
  return std::nullopt;
}

// Loads and validates the file; prints every error as file:line:column. nullopt on error.
std::optional<Config> LoadFile(const std::string& path) {
  LoadResult result = LoadConfigFile(path);
  for (const Diagnostic& d : result.diagnostics) {
    if (d.severity == Diagnostic::Severity::kWarning) LogWarn(d.Format());
  }
  if (!result.ok()) {
    for (const std::string& e : result.FormattedErrors()) std::cerr << e << "\n";
    return std::nullopt;
  }
  return std::move(result.config);
}

MetricsState CurrentMetricsState(TableStore& store) {
  MetricsState state;
  state.config_version = store.version();
  auto table = store.Current();
  if (!table) return state;
  auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < table->backend_count(); ++i) {
    const BackendConfig& b = table->backend(i);
    state.backends.push_back({b.name, !b.drained && table->BackendUp(i, now)});
  }
  return state;
}

// Key limits are held by the control plane's leases (docs/limits.md): a worker on its own
// would hold them per process, which is the leak this design exists to close.
std::string NeedsControlPlane(const Config& config) {
  for (const ClientKey& key : config.auth_keys) {
    if (key.limited()) {
      return "auth.keys '" + key.name +
             "' has limits (rpm, tpm, max_parallel or budget): they are held across workers by "
             "llmproxy-ctl, so run the worker under the control plane (llmproxy-ctl -c FILE, or "
             "llmproxy-worker --control-plane HOST:PORT); docs/limits.md";
    }
  }
  return {};
}

v1::LoadReport MakeLoadReport(TableStore& store, const Worker& worker, UsageAggregator& usage) {
  v1::LoadReport report;
  for (const KeyUsageDelta& d : usage.Take()) {
    v1::KeyUsage* u = report.add_usage();
    u->set_key(d.key);
    u->set_model(d.model);
    u->set_backend(d.backend);
    u->set_requests(d.requests);
    u->set_prompt_tokens(d.prompt_tokens);
    u->set_completion_tokens(d.completion_tokens);
    u->set_cached_prompt_tokens(d.cached_prompt_tokens);
  }
  report.set_in_flight(static_cast<uint64_t>(std::max<int64_t>(0, worker.in_flight())));
  for (const BackendStateSnapshot& s : store.states().Snapshot(std::chrono::steady_clock::now())) {
    v1::BackendHealth* h = report.add_backends();
    h->set_name(s.name);
    h->set_up(s.up);
    h->set_outstanding(static_cast<uint64_t>(std::max<int64_t>(0, s.outstanding)));
    h->set_ewma_latency_seconds(s.ewma_seconds);
    h->set_consecutive_failures(s.consecutive_failures);
  }
  return report;
}

// Each request holds two descriptors (client and backend): the default soft limit of 1024
// open files would stop a worker near 500 streams. The soft limit goes up to the hard
// one, as Go programs and nginx's worker_rlimit_nofile do (docs/dataplane.md).
uint64_t RaiseOpenFilesLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur == RLIM_INFINITY ? 0 : static_cast<uint64_t>(lim.rlim_cur);
}

int Run(int argc, char** argv) {
  Flags flags;
  if (auto code = ParseFlags(argc, argv, flags)) return *code;
  InitLogging(flags.log_format, flags.log_level);
  const uint64_t open_files = RaiseOpenFilesLimit();

  // Signals are taken by sigwait in this thread; every thread started below inherits
  // the mask, so none of them is interrupted.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  TableStore store;
  Metrics metrics;
  AccessLog access_log;
  UsageAggregator usage;  // sent to the control plane with each load report
  KeyLeases leases;       // client keys' limits, held with the control plane
  store.SetOnApplied([&metrics](const RoutingTable& table) {
    metrics.OnConfigApplied(table.config, table.version);
  });
  metrics.SetStateProvider([&store] { return CurrentMetricsState(store); });

  uint64_t version = 0;
  std::optional<Config> file_config;
  if (flags.config) {
    file_config = LoadFile(*flags.config);
    if (!file_config) return 1;
    if (std::string why = NeedsControlPlane(*file_config); !why.empty()) {
      std::cerr << *flags.config << ": " << why << "\n";
      return 1;
    }
    std::string error = store.Apply(*file_config, ++version);
    if (!error.empty()) {
      std::cerr << *flags.config << ": " << error << "\n";
      return 1;
    }
  }

  std::unique_ptr<ControlPlaneClient> control_plane;
  std::unique_ptr<Worker> worker;
  WorkerOptions options;
  options.threads = flags.threads;
  if (file_config) {
    options.host = file_config->server.host;
    options.port = flags.port.value_or(file_config->server.port);
  } else {
    options.port = flags.port.value_or(8080);
  }
  std::optional<uint16_t> metrics_port = flags.metrics_port;
  if (!metrics_port && file_config) metrics_port = file_config->server.metrics_port;

  if (flags.control_plane) options.leases = &leases;
  std::vector<RequestObserver*> observers{&metrics, &access_log};
  if (flags.control_plane) observers.push_back(&usage);  // only a control plane takes it
  worker = std::make_unique<Worker>(options, store, std::move(observers));
  if (std::string error = worker->Start(); !error.empty()) {
    LogError("cannot start the server", {{"error", error}});
    return 1;
  }

  std::unique_ptr<MetricsServer> metrics_server;
  if (metrics_port && *metrics_port != 0) {
    metrics_server =
        std::make_unique<MetricsServer>(metrics, MetricsServerOptions{options.host, *metrics_port});
    if (std::string error = metrics_server->Start(); !error.empty()) {
      LogError("cannot start the metrics server", {{"error", error}});
      return 1;
    }
  }

  if (flags.control_plane) {
    ControlPlaneClientOptions cp;
    cp.target = *flags.control_plane;
    cp.worker_id = flags.id;
    cp.address = options.host + ":" + std::to_string(worker->port());
    cp.metrics_port = metrics_server ? metrics_server->port() : 0;
    cp.report_interval = flags.report_interval;
    Worker* w = worker.get();
    control_plane = std::make_unique<ControlPlaneClient>(
        cp, store, [&store, w, &usage] { return MakeLoadReport(store, *w, usage); },
        [&usage](const v1::LoadReport& lost) {
          std::vector<KeyUsageDelta> back;
          for (const v1::KeyUsage& u : lost.usage()) {
            back.push_back({u.key(), u.model(), u.backend(), u.requests(), u.prompt_tokens(),
                            u.completion_tokens(), u.cached_prompt_tokens()});
          }
          usage.Restore(back);
        },
        &leases);
    control_plane->Start();
  }

  LogInfo("llmproxy-worker serving",
          {{"address", options.host + ":" + std::to_string(worker->port())},
           {"threads", flags.threads},
           {"mode", flags.control_plane ? "control-plane" : "standalone"},
           {"id", flags.id},
           {"metrics_port", metrics_server ? metrics_server->port() : 0},
           {"open_files_limit", open_files},
           {"config_version", store.version()}});

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      if (!flags.config) {
        LogInfo("SIGHUP ignored: the control plane owns the configuration");
        continue;
      }
      std::optional<Config> reloaded = LoadFile(*flags.config);
      if (reloaded) {
        if (std::string why = NeedsControlPlane(*reloaded); !why.empty()) {
          LogError("reload rejected", {{"error", why}});
          reloaded.reset();
        }
      }
      if (!reloaded) {
        LogError("reload rejected; keeping the current configuration",
                 {{"version", store.version()}});
        continue;
      }
      if (reloaded->server.port != file_config->server.port ||
          reloaded->server.host != file_config->server.host) {
        LogWarn("server.host/server.port changes need a restart");
      }
      std::string error = store.Apply(std::move(*reloaded), ++version);
      if (error.empty()) {
        LogInfo("configuration reloaded", {{"version", store.version()}});
      } else {
        LogError("reload rejected", {{"error", error}});
      }
      continue;
    }
    LogInfo("draining", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                         {"timeout", FormatDuration(flags.drain_timeout)}});
    break;
  }

  bool clean = worker->Drain(flags.drain_timeout);
  if (!clean) LogWarn("drain deadline passed; cutting the remaining connections");
  if (control_plane) control_plane->Stop();
  if (metrics_server) metrics_server->Stop();
  worker.reset();
  access_log.Flush();  // buffered lines of the drained requests, before "stopped"
  LogInfo("stopped");
  return 0;
}

}  // namespace
}  // namespace llmproxy

int main(int argc, char** argv) { return llmproxy::Run(argc, argv); }
