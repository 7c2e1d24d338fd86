// llmproxy-ctl: the control plane (docs/architecture.md "Processes", docs/controlplane.md).
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "common/config/config_check.h"
#include "common/config/config_loader.h"
#include "common/log/logging.h"
#include "controlplane/admin_cli.h"
#include "controlplane/control_plane.h"

namespace {

constexpr const char* kVersion = "0.1.0";

void Usage(std::ostream& out) {
  out << "usage: llmproxy-ctl [-c config.yaml] [--workers N] [options]\n"
         "       llmproxy-ctl --check [-c config.yaml]\n"
         "       llmproxy-ctl admin [--addr A] [--token T] [--json] COMMAND (admin --help)\n"
         "\n"
         "Validates config.yaml, serves it to workers over gRPC (ConfigDiscovery), hot\n"
         "reloads it on every edit or SIGHUP, serves the Admin API and /metrics, and with\n"
         "--workers starts and supervises local llmproxy-worker processes.\n"
         "\n"
         "  -c, --config PATH   configuration file (default ./config.yaml)\n"
         "  --check             validate the file only: summary and exit 0, or errors and exit 1\n"
         "  --workers N         start and supervise N workers (default 0)\n"
         "  --worker-bin PATH   worker binary (default: llmproxy-worker next to this binary)\n"
         "  --report-interval D supervised workers send a load report every D (default 2s,\n"
         "                      100ms to 60s); a worker silent for 3 intervals is shown stale,\n"
         "                      a supervised one silent for 5 is killed and restarted\n"
         "  --listen ADDR       gRPC address (default: control_plane.listen)\n"
         "  --metrics-sd-file PATH\n"
         "                      write the workers' metrics endpoints to PATH as a Prometheus\n"
         "                      file_sd target list (atomically, on every worker start/restart)\n"
         "  --log-format F      text | json (default text); passed to workers\n"
         "  --log-level L       debug | info | warn | error (default info); passed to workers\n"
         "  -h, --help          this help\n"
         "  --version           print the version\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "admin") {
    return llmproxy::RunAdminCli(std::vector<std::string>(args.begin() + 1, args.end()), std::cout,
                                 std::cerr);
  }

  llmproxy::CtlOptions opts;
  bool check = false;
  std::string log_format = "text", log_level = "info";
  bool log_format_set = false, log_level_set = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_inline = false;
    if (flag.rfind("--", 0) == 0) {
      auto eq = flag.find('=');
      if (eq != std::string::npos) {
        value = flag.substr(eq + 1);
        flag = flag.substr(0, eq);
        has_inline = true;
      }
    }
    auto need = [&]() -> bool {
      if (has_inline) return true;
      if (i + 1 >= args.size()) {
        std::cerr << "llmproxy-ctl: " << flag << " needs a value\n";
        return false;
      }
      value = args[++i];
      return true;
    };
    if (flag == "-h" || flag == "--help") {
      Usage(std::cout);
      return 0;
    } else if (flag == "--version") {
      std::cout << "llmproxy-ctl " << kVersion << "\n";
      return 0;
    } else if (flag == "--check") {
      check = true;
    } else if (flag == "-c" || flag == "--config") {
      if (!need()) return 2;
      opts.config_path = value;
    } else if (flag == "--workers") {
      if (!need()) return 2;
      char* end = nullptr;
      long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n < 0 || n > 256) {
        std::cerr << "llmproxy-ctl: --workers wants a number from 0 to 256\n";
        return 2;
      }
      opts.workers = static_cast<int>(n);
    } else if (flag == "--worker-bin") {
      if (!need()) return 2;
      opts.worker_bin = value;
    } else if (flag == "--report-interval") {
      if (!need()) return 2;
      auto d = llmproxy::ParseDuration(value);
      if (!d || *d < std::chrono::milliseconds(100) || *d > std::chrono::seconds(60)) {
        std::cerr << "llmproxy-ctl: --report-interval wants a duration from 100ms to 60s\n";
        return 2;
      }
      opts.report_interval = *d;
    } else if (flag == "--listen") {
      if (!need()) return 2;
      opts.listen = value;
    } else if (flag == "--metrics-sd-file") {
      if (!need()) return 2;
      if (value.empty()) {
        std::cerr << "llmproxy-ctl: --metrics-sd-file wants a file path\n";
        return 2;
      }
      opts.metrics_sd_file = value;
    } else if (flag == "--log-format") {
      if (!need()) return 2;
      log_format = value;
      log_format_set = true;
    } else if (flag == "--log-level") {
      if (!need()) return 2;
      log_level = value;
      log_level_set = true;
    } else {
      std::cerr << "llmproxy-ctl: unknown flag " << flag << "\n";
      Usage(std::cerr);
      return 2;
    }
  }

  auto format = llmproxy::ParseLogFormat(log_format);
  auto level = llmproxy::ParseLogLevel(log_level);
  if (!format || !level) {
    std::cerr << "llmproxy-ctl: --log-format is text|json, --log-level is debug|info|warn|error\n";
    return 2;
  }
  llmproxy::InitLogging(*format, *level);
  if (check) return llmproxy::RunConfigCheck(opts.config_path, std::cout, std::cerr);
  if (log_format_set) opts.log_format = log_format;
  if (log_level_set) opts.log_level = log_level;
  return llmproxy::RunControlPlane(opts);
}
