// llmproxy-ctl's serving mode, wired: config publisher + watcher, ConfigDiscovery and
// Admin gRPC services (with reflection), /metrics, and the optional worker supervisor,
// all driven by one poll loop over a signalfd (SIGHUP reload, SIGTERM/SIGINT drain,
// SIGCHLD reap) and the inotify descriptor. gRPC runs its own threads.
#pragma once

#include <chrono>
#include <string>

namespace llmproxy {

struct CtlOptions {
  std::string config_path = "config.yaml";
  std::string listen;  // empty: control_plane.listen from the file
  int workers = 0;
  std::string worker_bin;  // empty: llmproxy-worker next to this binary
  std::string log_format;  // passed to workers when set
  std::string log_level;
  // When set, the supervised workers' metrics endpoints are written here as a Prometheus
  // file_sd target list on every worker start and restart (docs/controlplane.md).
  std::string metrics_sd_file;
  // How long supervised workers get to finish in-flight requests after SIGTERM before
  // they are killed (a worker's own drain deadline is shorter).
  std::chrono::milliseconds drain_timeout{35000};
  // Supervised workers send a load report this often (0: their default, 2 s). Whether a
  // worker is stale is judged on the interval each worker announces, so this only sets
  // what supervised workers announce (docs/controlplane.md "Hung workers").
  std::chrono::milliseconds report_interval{0};
};

// Runs until SIGTERM/SIGINT. Returns the process exit code (1: the config is invalid
// at startup or the listener cannot be bound).
int RunControlPlane(const CtlOptions& opts);

}  // namespace llmproxy
