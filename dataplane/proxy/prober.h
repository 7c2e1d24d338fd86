// Active health probes of ejected keys (the half-open circuit of docs/routing.md
// "Health"): with health.probe_interval > 0, every ejected health key (a provider origin,
// an account, or an account's model: dataplane/routing/backend_health.h) whose probe is
// due (HealthTracker::TryStartProbe) gets `GET <url>/models` through an entry that has the
// key, with that entry's key and configured headers; any 2xx puts the key back in
// rotation at once, anything else (connect error, timeout, another status) keeps it out
// with its cooldown doubled. The probe is the same for every kind of key, so a 2xx ends a
// model's ejection too although it did not ask that model anything (docs/routing.md). Without
// probes a backend whose trial request fell inside an outage waited out an ever longer cooldown
// after the provider had recovered.
//
// One prober per worker, on its own thread and io_context with its own UpstreamPool, so a
// probe never delays a request and a slow probe never holds an io thread. Each tick reads
// the table in force from the TableStore; the health state it changes is the key-indexed
// trackers every table of the worker shares (dataplane/routing/backend_state.h). It
// sleeps until the earliest due probe, or one probe interval when nothing is ejected (a
// backend ejected meanwhile is due one interval after its ejection, so it is never late).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/config/config.h"
#include "dataplane/config_sync/table_store.h"
#include "dataplane/observe/request_record.h"
#include "dataplane/routing/backend_target.h"
#include "dataplane/routing/health_tracker.h"
#include "dataplane/upstream/upstream_pool.h"

namespace llmproxy {

class UpstreamCall;

struct ProberOptions {
  UpstreamPoolOptions pool;
  // A probe's response timeout: the backend's timeout, at most this (a probe is cheap; a
  // backend that takes longer to list its models is not ready for traffic).
  Millis max_response_timeout{std::chrono::seconds(5)};
  // How often the table is looked at while probing is off (probe_interval 0), so turning
  // it on by a reload takes effect.
  Millis idle_rescan{std::chrono::seconds(1)};
  // Body bytes read after the status to let the connection be reused; beyond, it closes.
  size_t max_body_bytes = 1 << 20;
};

// The probe's request head: "GET <base path>/models", Host, the backend's configured
// headers, its key; no body.
std::string BuildProbeRequest(const BackendConfig& backend, const BackendTarget& target);

class Prober {
 public:
  // `store` and the observers must outlive the prober.
  Prober(TableStore& store, std::vector<RequestObserver*> observers, ProberOptions options = {});
  ~Prober();  // Stop()
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  void Start();  // starts the thread; once
  // Cancels the probes in flight (their backends' slots are freed without a verdict) and
  // joins the thread. Idempotent.
  void Stop();

 private:
  boost::asio::awaitable<void> Loop();
  // Probes `tracker` (one of backend `index`'s keys) through that backend's url and key.
  boost::asio::awaitable<void> Probe(std::shared_ptr<const RoutingTable> table, size_t index,
                                     std::shared_ptr<HealthTracker> tracker);

  TableStore& store_;
  const std::vector<RequestObserver*> observers_;
  const ProberOptions options_;

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<UpstreamPool> pool_;  // created and destroyed on the prober's thread
  boost::asio::steady_timer wake_;
  std::thread thread_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};
  // Touched on the prober's thread only.
  bool stopping_ = false;
  size_t active_ = 0;
  std::unordered_set<UpstreamCall*> calls_;
};

}  // namespace llmproxy
