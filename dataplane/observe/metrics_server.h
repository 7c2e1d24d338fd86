// A tiny HTTP/1.1 listener apart from the public port that serves GET /metrics
// (Prometheus text format) and 404 for anything else. It runs on its own thread with
// its own io_context, so a slow scrape never delays proxied requests and a busy proxy
// never starves a scrape. Usable by any process: it only needs a render function.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace llmproxy {

class Metrics;

struct MetricsServerOptions {
  std::string host = "0.0.0.0";  // tests use 127.0.0.1
  uint16_t port = 0;             // server.metrics_port or --metrics-port; 0 = any free port
};

class MetricsServer {
 public:
  // Produces the body of GET /metrics; called on the server's thread, one scrape at a time.
  using Render = std::function<std::string()>;

  MetricsServer(Render render, MetricsServerOptions options);
  MetricsServer(Metrics& metrics, MetricsServerOptions options);  // renders metrics.Serialize()
  ~MetricsServer();                                               // Stop()
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and starts the thread. Returns "" on success, else why it could not listen.
  std::string Start();
  // Closes the listener and every connection and joins the thread. Idempotent.
  void Stop();
  // The bound port (useful with port 0); 0 before Start().
  uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmproxy
