#include "dataplane/proxy/prober.h"

#include <algorithm>
#include <exception>
#include <optional>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/log/logging.h"
#include "dataplane/http/http_head.h"
#include "dataplane/routing/backend_state.h"
#include "dataplane/routing/routing_table.h"
#include "dataplane/upstream/upstream_call.h"
#include "dataplane/upstream/upstream_error.h"

namespace llmproxy {
namespace asio = boost::asio;

namespace {

// Holds a probe slot (HealthTracker::TryStartProbe) until its verdict; a probe that ends
// without one (cancelled by Stop, or its coroutine destroyed) gives the slot back, so the
// next prober (a restarted worker over the same TableStore) can probe at once.
class ProbeSlot {
 public:
  explicit ProbeSlot(std::shared_ptr<HealthTracker> tracker) : tracker_(std::move(tracker)) {}
  ~ProbeSlot() {
    if (tracker_) tracker_->OnProbeAbandoned();
  }
  ProbeSlot(const ProbeSlot&) = delete;
  ProbeSlot& operator=(const ProbeSlot&) = delete;

  // True when the verdict put the key back in rotation.
  bool Report(bool success) {
    std::shared_ptr<HealthTracker> tracker = std::move(tracker_);
    return tracker->OnProbeResult(std::chrono::steady_clock::now(), success);
  }

 private:
  std::shared_ptr<HealthTracker> tracker_;
};

}  // namespace

std::string BuildProbeRequest(const BackendConfig& backend, const BackendTarget& target) {
  std::string head;
  AppendRequestLine(head, "GET", target.probe_target);
  if (!target.headers_set_host) AppendField(head, "Host", target.host_header);
  // The same credentials and headers a request would carry, so a probe succeeds only when
  // a request could (a gateway in front of the provider may check a configured header).
  for (const auto& [name, value] : backend.headers) AppendField(head, name, value);
  AppendField(head, target.auth_name, target.auth_value);
  if (target.api == BackendApi::kAnthropic) AppendField(head, "anthropic-version", "2023-06-01");
  AppendField(head, "Accept", "application/json");
  head += "\r\n";
  return head;
}

Prober::Prober(TableStore& store, std::vector<RequestObserver*> observers, ProberOptions options)
    : store_(store),
      observers_(std::move(observers)),
      options_(std::move(options)),
      work_(asio::make_work_guard(ioc_)),
      wake_(ioc_) {}

Prober::~Prober() { Stop(); }

void Prober::Start() {
  if (started_.exchange(true)) return;
  asio::co_spawn(ioc_, Loop(), [](std::exception_ptr e) {
    if (e) LogError("health prober stopped by an internal error");
  });
  thread_ = std::thread([this] { ioc_.run(); });
}

void Prober::Stop() {
  if (stopped_.exchange(true)) return;
  if (!started_.load()) return;
  asio::post(ioc_, [this] {
    stopping_ = true;
    for (UpstreamCall* call : calls_) call->Cancel();
    wake_.cancel();
  });
  // Loop ends once every probe has returned, then releases the pool and the work guard.
  if (thread_.joinable()) thread_.join();
}

asio::awaitable<void> Prober::Loop() {
  pool_ = std::make_unique<UpstreamPool>(ioc_.get_executor(), options_.pool);
  boost::system::error_code ec;
  while (!stopping_) {
    const SteadyTime now = std::chrono::steady_clock::now();
    std::shared_ptr<const RoutingTable> table = store_.Current();
    const Millis interval = table ? table->config.health.probe_interval : Millis(0);
    SteadyTime wake = now + (interval > Millis(0) ? interval : options_.idle_rescan);
    if (interval > Millis(0)) {
      for (size_t i = 0; i < table->backend_count(); ++i) {
        // A drained backend takes no traffic, so its health does not matter; an unparsable
        // url cannot be probed (requests to it fail the same way).
        if (table->backend(i).drained || !table->target(i).url) continue;
        // Each ejected key (origin, account, account-model) is probed on its own, through
        // the first entry that has it; a shared key is probed once (TryStartProbe).
        table->health(i).ForEach([&](const std::shared_ptr<HealthTracker>& tracker) {
          if (tracker->TryStartProbe(now)) {
            ++active_;
            asio::co_spawn(ioc_, Probe(table, i, tracker), [](std::exception_ptr e) {
              if (e) LogError("health probe failed with an internal error");
            });
          }
          if (std::optional<SteadyTime> next = tracker->NextProbeAt()) {
            wake = std::min(wake, *next);
          }
        });
      }
    }
    // A finished probe cancels this wait, so its backend's next probe is planned at once.
    wake_.expires_at(wake);
    co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  while (active_ > 0) {
    wake_.expires_at(SteadyTime::max());
    co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  // On this thread, before the io_context stops: the pool's sockets and timers belong to it.
  pool_.reset();
  work_.reset();
}

asio::awaitable<void> Prober::Probe(std::shared_ptr<const RoutingTable> table, size_t index,
                                    std::shared_ptr<HealthTracker> tracker) {
  const BackendConfig& backend = table->backend(index);
  const BackendTarget& target = table->target(index);
  ProbeSlot slot(std::move(tracker));
  const std::string head = BuildProbeRequest(backend, target);
  UpstreamCallOptions call_options;
  call_options.connect_timeout = table->config.connect_timeout;
  call_options.response_timeout =
      std::min(backend.timeout.value_or(table->config.timeout), options_.max_response_timeout);
  call_options.tls_insecure_skip_verify = backend.tls_insecure_skip_verify;

  {
    UpstreamCall call(*pool_);
    calls_.insert(&call);
    std::error_code ec = co_await call.StartRaw(*target.url, head, {}, call_options);
    // Out of descriptors is this worker's state, not the backend's: no result either way.
    if (!stopping_ && ec != UpstreamErrc::kLocalResources) {
      const unsigned status = ec ? 0 : call.status();
      const bool success = !ec && status >= 200 && status < 300;
      const bool recovered = slot.Report(success);
      for (RequestObserver* o : observers_) o->OnProbe(backend.name, success);
      if (recovered) {
        LogInfo("backend back in rotation: health probe succeeded",
                {{"backend", backend.name}, {"status", status}});
      } else if (!success) {
        LogDebug("health probe failed", {{"backend", backend.name},
                                         {"status", status},
                                         {"error", ec ? ec.message() : std::string()}});
      }
      // Read the (small) body so the connection can serve the next probe.
      if (!ec) {
        std::string body;
        co_await call.ReadAll(body, options_.max_body_bytes, call_options.response_timeout);
      }
    }
    calls_.erase(&call);
  }
  --active_;
  wake_.cancel();
}

}  // namespace llmproxy
