#include "dataplane/worker.h"

#include "dataplane/dispatch/request_router.h"
#include "dataplane/proxy/prober.h"
#include "dataplane/proxy/proxy_pipeline.h"

namespace llmproxy {
namespace {

// After the drain deadline, how long the cut requests get to write their last bytes.
constexpr std::chrono::milliseconds kCutGrace{1000};

}  // namespace

Worker::Worker(WorkerOptions options, TableStore& store, std::vector<RequestObserver*> observers)
    : options_(std::move(options)), store_(store) {
  if (options_.threads == 0) options_.threads = 1;
  ProxyPipelineOptions pipeline_options;
  pipeline_options.threads = options_.threads;
  pipeline_options.pool = options_.pool;
  pipeline_options.first_table_wait = options_.first_table_wait;
  pipeline_options.leases = options_.leases;
  ProberOptions prober_options;
  prober_options.pool = options_.pool;
  prober_ = std::make_unique<Prober>(store_, observers, prober_options);
  pipeline_ = std::make_unique<ProxyPipeline>(store_, std::move(observers), pipeline_options);
  router_ = std::make_unique<RequestRouter>(store_, *pipeline_);
  ProxyPipeline* pipeline = pipeline_.get();
  server_ = std::make_unique<HttpServer>(
      HttpServerOptions{options_.host, options_.port, options_.threads, options_.limits,
                        [pipeline](size_t thread_index, bool clean) {
                          pipeline->ReleaseThread(thread_index, clean);
                        }},
      *router_);
}

Worker::~Worker() { Stop(); }

std::string Worker::Start() {
  std::string error = server_->Start();
  if (error.empty()) prober_->Start();
  return error;
}

uint16_t Worker::port() const { return server_->port(); }

size_t Worker::open_connections() const { return server_->open_connections(); }

int64_t Worker::in_flight() const { return pipeline_->in_flight(); }

bool Worker::Drain(std::chrono::milliseconds timeout) {
  // A draining worker takes no new traffic: what its probes would learn serves nobody.
  prober_->Stop();
  server_->StopAccepting();
  bool idle = server_->WaitIdle(std::chrono::steady_clock::now() + timeout);
  if (!idle) {
    // Streams still running end with their SSE error event, like any broken stream, not
    // with a bare close; a client too slow to take it is cut by Stop() after the grace.
    server_->CutInFlight();
    server_->WaitIdle(std::chrono::steady_clock::now() + kCutGrace);
  }
  server_->Stop();
  return idle;
}

void Worker::Stop() {
  if (prober_) prober_->Stop();
  // The server's threads own the sessions that use the pipeline: stop them first.
  if (server_) server_->Stop();
}

}  // namespace llmproxy
