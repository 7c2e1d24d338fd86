// One worker's data plane, wired: the HTTP server (T threads), the router, the proxy
// pipeline and its observers, and the health prober (dataplane/proxy/prober.h), over a
// TableStore fed by the caller (config file or control-plane client). Used by
// llmproxy-worker's main and by in-process tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/config_sync/table_store.h"
#include "dataplane/observe/request_record.h"
#include "dataplane/server/http_server.h"
#include "dataplane/upstream/upstream_pool.h"

namespace llmproxy {

class KeyLeases;
class Prober;
class ProxyPipeline;
class RequestRouter;

struct WorkerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 0;  // 0: any free port (tests); read it back with Worker::port()
  unsigned threads = 1;
  ServerLimits limits;
  UpstreamPoolOptions pool;
  // A proxied request that arrives before the first routing table waits this long for it
  // before its 503 (a worker started by the control plane listens before its table comes).
  std::chrono::milliseconds first_table_wait{3000};
  // Client keys' limits (docs/limits.md), fed by the control-plane client; must outlive
  // the worker. Null: limits are not held.
  KeyLeases* leases = nullptr;
};

class Worker {
 public:
  // `store` and the observers must outlive the worker.
  Worker(WorkerOptions options, TableStore& store, std::vector<RequestObserver*> observers = {});
  ~Worker();  // Stop()
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds and starts serving, and starts probing ejected backends. "" on success, else
  // why it could not listen.
  std::string Start();
  uint16_t port() const;

  // Graceful stop: stop accepting, close idle connections, let requests and streams in
  // flight finish until `timeout`, then cut what is left (streams end with their SSE
  // error event). True when all finished in time.
  bool Drain(std::chrono::milliseconds timeout);
  // Immediate stop (cuts everything). Idempotent.
  void Stop();

  size_t open_connections() const;
  int64_t in_flight() const;  // proxied requests being handled

 private:
  WorkerOptions options_;
  TableStore& store_;
  std::unique_ptr<ProxyPipeline> pipeline_;
  std::unique_ptr<RequestRouter> router_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<Prober> prober_;
};

}  // namespace llmproxy
