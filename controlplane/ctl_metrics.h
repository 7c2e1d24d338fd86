// The control plane's own Prometheus metrics (docs/observability.md), served as text on
// GET /metrics at control_plane.metrics_port (prometheus-cpp's pull Exposer).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <memory>
#include <string>

namespace prometheus {
class Exposer;
}

namespace llmproxy {

class CtlMetrics {
 public:
  CtlMetrics();
  ~CtlMetrics();

  // Serves /metrics on host:port (port 0 = disabled). "" on success, else the error.
  std::string Serve(const std::string& host, uint16_t port);
  uint16_t port() const;  // bound port, 0 when not serving

  void SetWorkersConnected(size_t n) { workers_connected_.Set(static_cast<double>(n)); }
  // Connected workers whose load reports arrive on time (core/worker_liveness.h).
  void SetWorkersHealthy(size_t n) { workers_healthy_.Set(static_cast<double>(n)); }
  void SetConfigVersion(uint64_t v) { config_version_.Set(static_cast<double>(v)); }
  void CountReload(bool ok) { (ok ? reloads_ok_ : reloads_rejected_).Increment(); }

  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& workers_connected_;
  prometheus::Gauge& workers_healthy_;
  prometheus::Gauge& config_version_;
  prometheus::Counter& reloads_ok_;
  prometheus::Counter& reloads_rejected_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace llmproxy
