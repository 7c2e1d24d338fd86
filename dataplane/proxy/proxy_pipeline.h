// The proxied request, in phases (docs/architecture.md "The request path"):
//   read and limit -> authenticate -> parse model/stream -> resolve the plan ->
//   attempt loop (pick, connect, send, read head, classify) -> relay -> done (observers).
// Each phase is one function of ProxyRequest (proxy_pipeline.cc opens with the map); a
// stream's bytes are relayed as they arrive (RelayStream), with backpressure and an idle
// deadline.
//
// Threading: the pipeline is shared by every server thread; each thread has its own
// upstream connection pool, touched only by that thread. What is sent to each backend
// (url, targets, credentials) comes with the routing table (RoutingTable::target).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "dataplane/config_sync/key_leases.h"
#include "dataplane/config_sync/table_store.h"
#include "dataplane/observe/request_record.h"
#include "dataplane/protocols/routes.h"
#include "dataplane/server/http_server.h"
#include "dataplane/upstream/upstream_pool.h"

namespace llmproxy {

struct ProxyPipelineOptions {
  unsigned threads = 1;  // must match the HttpServer's thread count
  UpstreamPoolOptions pool;
  // Whole request body upload (after the header) must arrive within this.
  std::chrono::milliseconds body_read_timeout{60000};
  // Before the first routing table: how long a proxied request waits for one (WorkerOptions).
  std::chrono::milliseconds first_table_wait{3000};
  // Client keys' limits (docs/limits.md): the worker's leases. Null: limits are not held
  // (in-process tests that do not need them).
  KeyLeases* leases = nullptr;
  // A request whose key's lease is short waits this long for the control plane's grant.
  std::chrono::milliseconds lease_wait{1000};
};

class ProxyPipeline {
 public:
  ProxyPipeline(TableStore& store, std::vector<RequestObserver*> observers,
                ProxyPipelineOptions options = {});
  ~ProxyPipeline();
  ProxyPipeline(const ProxyPipeline&) = delete;
  ProxyPipeline& operator=(const ProxyPipeline&) = delete;

  // Handles one POST to a proxied route whose header has been read. Writes the response;
  // returns whether the connection may serve another request. Never throws. The client
  // key is checked from the head against the table the request then uses.
  asio::awaitable<bool> Handle(ClientConnection& conn, RequestParser& parser, ProxyRoute route);

  // Destroys the upstream pool of one io thread; call on that thread while its
  // io_context still exists (HttpServerOptions::on_thread_stop). With clean=false the
  // pool is leaked on purpose: unfinished requests may still reference it.
  void ReleaseThread(size_t thread_index, bool clean);

  // Proxied requests being handled right now (load reports).
  int64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

  struct ThreadState;  // proxy_pipeline.cc

 private:
  friend class ProxyRequest;
  ThreadState& StateFor(ClientConnection& conn);
  // hedge_budget: a hedge may start while the hedges started stay within `budget` of the
  // requests handled, rounded up (so the first request of a fresh worker may hedge).
  // True: counted; ReturnHedge gives it back when no hedge could be made after all.
  bool TakeHedge(double budget);
  void ReturnHedge() { hedges_.fetch_sub(1, std::memory_order_relaxed); }

  TableStore& store_;
  std::vector<RequestObserver*> observers_;
  ProxyPipelineOptions options_;
  std::vector<std::unique_ptr<ThreadState>> threads_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> requests_{0};  // proxied requests since start (the hedge budget's base)
  std::atomic<uint64_t> hedges_{0};    // hedges started
};

}  // namespace llmproxy
