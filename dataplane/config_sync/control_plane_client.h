// The worker's side of ConfigDiscovery.Sync: keeps one gRPC stream open to llmproxy-ctl,
// applies every pushed snapshot through TableStore::Apply and answers it with an ACK or
// a NACK, and sends a load report every few seconds. It runs on its own thread so the
// data plane's io threads never block on the control plane; when the control plane is
// gone the worker keeps serving its last table (static stability) and this client
// reconnects with jittered backoff, announcing the version it holds so nothing is resent
// needlessly.
//
// Test-only hook: when the environment variable LLMPROXY_TEST_REJECT_VERSION holds a
// number, a snapshot with exactly that version is NACKed without being applied. It
// exists so end-to-end tests can exercise the NACK path; never set it in production.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "llmproxy/v1/discovery.pb.h"

namespace grpc {
class ClientContext;
}

namespace llmproxy {

class KeyLeases;
class TableStore;

struct ControlPlaneClientOptions {
  std::string target;     // host:port of llmproxy-ctl's gRPC listener
  std::string worker_id;  // shown by `llmproxy-ctl admin workers`
  std::string address;    // where this worker serves clients, host:port
  uint16_t metrics_port = 0;
  // How often a load report goes out; announced in the Hello, because the control plane
  // judges a worker whose reports stop as hung (docs/controlplane.md "Hung workers").
  std::chrono::milliseconds report_interval{2000};
};

class ControlPlaneClient {
 public:
  // `report` is called on the client's thread every report_interval; it must be
  // thread-safe. `lost`, when set, gets back a report whose write failed (the stream
  // broke), so what it carried (usage sums) can go out in the next one. `leases`, when
  // set, rides on the same stream: each report carries its state, asks go out at once
  // (not at the next interval), and grants are applied as they come.
  ControlPlaneClient(ControlPlaneClientOptions opts, TableStore& store,
                     std::function<v1::LoadReport()> report,
                     std::function<void(const v1::LoadReport&)> lost = {},
                     KeyLeases* leases = nullptr);
  ~ControlPlaneClient();  // stops

  ControlPlaneClient(const ControlPlaneClient&) = delete;
  ControlPlaneClient& operator=(const ControlPlaneClient&) = delete;

  void Start();  // starts the thread; returns at once
  void Stop();   // cancels the stream and joins the thread; idempotent

  bool connected() const { return connected_.load(); }
  uint64_t snapshots_acked() const { return acked_.load(); }
  uint64_t snapshots_nacked() const { return nacked_.load(); }

 private:
  void Run();
  // One stream's life: Hello, then snapshots until the stream breaks. True when at
  // least one snapshot arrived (the connection was healthy, so backoff resets).
  bool RunSession();
  // Sleeps up to `d` unless Stop() is called first; false when stopping.
  bool WaitFor(std::chrono::milliseconds d);

  ControlPlaneClientOptions opts_;
  TableStore& store_;
  std::function<v1::LoadReport()> report_;
  std::function<void(const v1::LoadReport&)> lost_;
  KeyLeases* leases_;
  // The reporter's wait: the interval, or a wake from the leases.
  std::mutex report_mu_;
  std::condition_variable report_cv_;
  bool report_wake_ = false;
  std::optional<uint64_t> reject_version_;  // LLMPROXY_TEST_REJECT_VERSION (tests only)
  // The snapshot last applied (client thread only), announced in the next Hello so a
  // control plane that already sent it does not resend it.
  uint64_t applied_version_ = 0;
  std::string applied_nonce_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  grpc::ClientContext* active_ctx_ = nullptr;  // the live stream, cancelled by Stop()
  std::thread thread_;

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint64_t> nacked_{0};
};

}  // namespace llmproxy
