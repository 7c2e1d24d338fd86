#include "controlplane/ctl_metrics.h"

#include <prometheus/exposer.h>

#include <exception>

namespace llmproxy {
namespace {

prometheus::Gauge& MakeGauge(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

CtlMetrics::CtlMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      workers_connected_(MakeGauge(*registry_, "llmproxy_ctl_workers_connected",
                                   "Workers with an open ConfigDiscovery stream")),
      workers_healthy_(MakeGauge(*registry_, "llmproxy_ctl_workers_healthy",
                                 "Connected workers whose load reports arrive on time")),
      config_version_(MakeGauge(*registry_, "llmproxy_ctl_config_version",
                                "Version of the routing table the control plane serves")),
      reloads_ok_(prometheus::BuildCounter()
                      .Name("llmproxy_ctl_config_reloads_total")
                      .Help("Config loads by result (rejected: invalid, last good kept)")
                      .Register(*registry_)
                      .Add({{"result", "ok"}})),
      reloads_rejected_(prometheus::BuildCounter()
                            .Name("llmproxy_ctl_config_reloads_total")
                            .Help("Config loads by result (rejected: invalid, last good kept)")
                            .Register(*registry_)
                            .Add({{"result", "rejected"}})) {}

CtlMetrics::~CtlMetrics() = default;

std::string CtlMetrics::Serve(const std::string& host, uint16_t port) {
  if (port == 0) return "";
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(host + ":" + std::to_string(port));
    exposer_->RegisterCollectable(registry_);
  } catch (const std::exception& e) {
    exposer_.reset();
    return e.what();
  }
  return "";
}

uint16_t CtlMetrics::port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
}

}  // namespace llmproxy
