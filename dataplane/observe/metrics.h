// The worker's Prometheus metrics (docs/observability.md). A RequestObserver the proxy
// pipeline feeds with every request; MetricsServer serves Serialize() on /metrics.
//
// Label values come only from configuration: backend = a configured backend name or
// "none", model = a configured model name or "unknown", code = the HTTP status sent,
// outcome = an AttemptOutcome word. After each applied table (OnConfigApplied, or with
// AttachTableStore) a name that is not in the config in force is replaced by
// "none"/"unknown", so a client can never grow the label set even if a caller passes raw
// input by mistake.
//
// Worker wiring (dataplane/main.cc; all must outlive the Worker):
//   Metrics metrics;
//   store.SetOnApplied([&](const RoutingTable& t) { metrics.OnConfigApplied(t.config, t.version);
//   }); metrics.SetStateProvider([&store] { return ... version and backend health of store ...; });
//   Worker worker(options, store, {&metrics, &access_log});
//   MetricsServer metrics_server(metrics, {host, metrics_port});  metrics_server.Start();
//
// The hot path takes no lock: each thread caches the counter children it has used
// (prometheus-cpp's Family::Add locks, so it runs once per label set and thread), and the
// histograms are lock-free atomics (prometheus-cpp's Histogram locks a mutex per sample).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.h"
#include "dataplane/observe/request_record.h"

namespace prometheus {
struct MetricFamily;
}  // namespace prometheus

namespace llmproxy {

class TableStore;

struct BackendUp {
  std::string name;  // configured backend name
  bool up = true;    // false while passive health has it ejected
};

// What the scrape-time provider reports: the gauges that mirror routing state.
struct MetricsState {
  uint64_t config_version = 0;
  std::vector<BackendUp> backends;  // every configured backend; others' series are dropped
};

class Metrics final : public RequestObserver {
 public:
  Metrics();
  ~Metrics() override;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // RequestObserver. The pipeline calls OnRequestStart once per request and then exactly
  // one OnRequestDone for it (in_flight = started - done); OnAttempt once per upstream try.
  void OnRequestStart() override;
  void OnAttempt(std::string_view backend, AttemptOutcome outcome) override;
  void OnRequestDone(const RequestRecord& record) override;
  // llmproxy_backend_probes_total{backend,result}. Probes are rare (one per ejected
  // backend per probe interval), so this takes the family's lock rather than a cache.
  void OnProbe(std::string_view backend, bool success) override;
  // llmproxy_stream_continuations_total{backend,result="continued|failed"}: rare, like probes.
  void OnContinuation(std::string_view backend, bool success) override;
  // llmproxy_hedges_total{backend,result="started|won"}: the backend of the hedge attempt.
  void OnHedge(std::string_view backend, bool won) override;

  // Both halves of the worker's wiring in one call (in-process tests use it): labels are
  // checked against the store's current table (caches are rebuilt when its version
  // changes), and each scrape reads llmproxy_config_version and llmproxy_backend_up from
  // the store. `store` must outlive this object. Replaces any provider set before.
  void AttachTableStore(TableStore& store);

  // Call after each table is applied (the worker does, from TableStore::SetOnApplied): sets
  // the label allow-list (backend names; backends' models and default models, alias targets),
  // llmproxy_config_version, and drops llmproxy_backend_up series of removed backends.
  void OnConfigApplied(const Config& config, uint64_t version);

  // Called at every scrape (under the scrape lock, on the metrics thread) to refresh
  // llmproxy_backend_up and llmproxy_config_version from live routing state, e.g.
  // TableStore::version() and the health of each backend in BackendStateRegistry.
  void SetStateProvider(std::function<MetricsState()> provider);

  // Direct setters: the control plane sets its version this way; tests set both.
  void SetBackendUp(std::string_view backend, bool up);
  void SetConfigVersion(uint64_t version);

  // Every family, sorted by name. Refreshes the provider's gauges first.
  std::vector<prometheus::MetricFamily> Collect();
  // Prometheus text exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4).
  std::string Serialize();

  // Histogram bucket upper bounds (seconds), exposed for docs and tests.
  static const std::vector<double>& DurationBuckets();  // 1 ms .. 300 s
  static const std::vector<double>& TtftBuckets();      // 1 ms .. 120 s, finer below 1 s
  static const std::vector<double>& OverheadBuckets();  // 10 us .. 1 s

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmproxy
