// Prometheus file-based service discovery for supervised workers (`llmproxy-ctl
// --metrics-sd-file PATH`). Prometheus watches PATH and follows worker restarts without a
// reload; deploy/prometheus/prometheus.yml reads it. Rendering is pure (unit-tested); the
// writer replaces the file atomically so Prometheus never reads a half-written list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmproxy {

struct MetricsSdWorker {
  std::string id;  // becomes the `worker` label
  uint16_t metrics_port = 0;
};

// The address Prometheus scrapes for workers bound to `server_host` (server.host): a
// wildcard or empty host becomes 127.0.0.1 (the workers listen on every address, loopback
// included); a specific address is kept, an IPv6 one in brackets.
std::string MetricsSdHost(const std::string& server_host);

// The file_sd JSON, one group per worker, in the given order:
//   [{"targets":["127.0.0.1:9400"],"labels":{"worker":"worker-0"}},...]
// A worker with metrics_port 0 serves no metrics and is left out. `host` as returned by
// MetricsSdHost.
std::string RenderMetricsSd(const std::string& host, const std::vector<MetricsSdWorker>& workers);

// Writes `content` to `path` + ".tmp" (mode 0644 whatever the umask) and renames it over
// `path`. Returns an empty string, or what failed.
std::string WriteMetricsSdFile(const std::string& path, const std::string& content);

}  // namespace llmproxy
