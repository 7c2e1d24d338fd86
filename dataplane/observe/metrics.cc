#include "dataplane/observe/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "dataplane/config_sync/table_store.h"
#include "dataplane/routing/backend_state.h"
#include "dataplane/routing/routing_table.h"

namespace llmproxy {
namespace {

constexpr std::string_view kNoBackend = "none";
constexpr std::string_view kUnknownModel = "unknown";
constexpr size_t kOutcomeCount = static_cast<size_t>(AttemptOutcome::kCancelled) + 1;
// A thread's cache only grows past this if names outside the config reach it;
// then it starts over rather than grow without bound.
constexpr size_t kMaxCachedNames = 1024;

std::atomic<uint64_t> g_next_metrics_id{1};

// A label-less histogram whose Observe is a few relaxed atomic adds, so
// requests on different threads never wait on each other (prometheus::Histogram
// locks per sample).
class AtomicHistogram {
 public:
  AtomicHistogram(std::string name, std::string help, const std::vector<double>& bounds)
      : name_(std::move(name)),
        help_(std::move(help)),
        bounds_(bounds),
        counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds.size() + 1)) {}

  void Observe(double v) {
    if (std::isnan(v)) return;
    if (v < 0) v = 0;
    size_t i =
        static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }

  prometheus::MetricFamily Collect() const {
    prometheus::MetricFamily family;
    family.name = name_;
    family.help = help_;
    family.type = prometheus::MetricType::Histogram;
    prometheus::ClientMetric metric;
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      cumulative += counts_[i].load(std::memory_order_relaxed);
      prometheus::ClientMetric::Bucket bucket;
      bucket.cumulative_count = cumulative;
      bucket.upper_bound =
          i < bounds_.size() ? bounds_[i] : std::numeric_limits<double>::infinity();
      metric.histogram.bucket.push_back(bucket);
    }
    // The count is the sum of the buckets read, so a scrape is always
    // self-consistent.
    metric.histogram.sample_count = cumulative;
    metric.histogram.sample_sum = sum_.load(std::memory_order_relaxed);
    family.metric.push_back(std::move(metric));
    return family;
  }

 private:
  std::string name_;
  std::string help_;
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// std::string keys looked up with string_view without building a temporary
// string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct RouteChildren {
  prometheus::Counter* prompt_tokens = nullptr;
  prometheus::Counter* completion_tokens = nullptr;
  std::vector<std::pair<int, prometheus::Counter*>> requests_by_code;  // a handful each
};

struct BackendChildren {
  std::array<prometheus::Counter*, kOutcomeCount> attempts{};
  std::unordered_map<std::string, RouteChildren, StringHash, std::equal_to<>> models;
};

// Per-thread cache of the counter children this thread has touched. Tied to one
// Metrics instance and one label allow-list generation; a mismatch empties it.
struct ThreadCache {
  uint64_t owner = 0;
  uint64_t generation = 0;
  uint64_t table_version = 0;
  size_t names = 0;
  std::unordered_map<std::string, BackendChildren, StringHash, std::equal_to<>> backends;
  // key name -> model -> prompt and completion counters of llmproxy_key_tokens_total.
  std::unordered_map<std::string,
                     std::unordered_map<std::string, std::array<prometheus::Counter*, 2>,
                                        StringHash, std::equal_to<>>,
                     StringHash, std::equal_to<>>
      keys;
  // key name -> its llmproxy_key_spend_usd_total counter.
  std::unordered_map<std::string, prometheus::Counter*, StringHash, std::equal_to<>> spend;
};

thread_local ThreadCache t_cache;

bool IsConfigured(const RoutingTable& table, std::string_view name, bool backend) {
  if (backend) return table.FindBackend(name).has_value();
  if (table.ServedBy(name) != nullptr) return true;
  for (const auto& b : table.config.backends) {
    if (b.default_model == name) return true;
  }
  for (const auto& alias : table.config.model_aliases) {
    for (const auto& m : alias.models) {
      if (m == name) return true;
    }
  }
  return false;
}

std::string CodeLabel(int status) {
  if (status < 100 || status > 599) return "0";
  return std::to_string(status);
}

}  // namespace

struct Metrics::Impl {
  const uint64_t id = g_next_metrics_id.fetch_add(1);
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter()
          .Name("llmproxy_requests_total")
          .Help(
              "Requests answered, by configured backend, resolved model and "
              "HTTP status.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& attempts =
      prometheus::BuildCounter()
          .Name("llmproxy_upstream_attempts_total")
          .Help("Upstream attempts, by backend and outcome.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& probes =
      prometheus::BuildCounter()
          .Name("llmproxy_backend_probes_total")
          .Help("Active health probes of ejected backends, by backend and result.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& continuations =
      prometheus::BuildCounter()
          .Name("llmproxy_stream_continuations_total")
          .Help("Broken streams continued on another candidate (continued) or not (failed).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& hedges =
      prometheus::BuildCounter()
          .Name("llmproxy_hedges_total")
          .Help("Hedge attempts started, and those whose first token won, by backend.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& tokens =
      prometheus::BuildCounter()
          .Name("llmproxy_tokens_total")
          .Help("Tokens reported in upstream usage, by backend, model and type.")
          .Register(*registry);
  // Key names come from the table (auth.keys and stored keys): a bounded label set.
  prometheus::Family<prometheus::Counter>& key_tokens =
      prometheus::BuildCounter()
          .Name("llmproxy_key_tokens_total")
          .Help("Tokens reported in upstream usage, by client key, model and type.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& key_spend =
      prometheus::BuildCounter()
          .Name("llmproxy_key_spend_usd_total")
          .Help("USD spent, by client key: usage priced by prices: (models without a price: 0).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& ratelimited =
      prometheus::BuildCounter()
          .Name("llmproxy_ratelimited_total")
          .Help(
              "Requests refused with 429 by a client key's limit (requests, tokens, parallel, "
              "budget, control_plane).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& loss_admitted =
      prometheus::BuildCounter()
          .Name("llmproxy_limits_unheld_total")
          .Help(
              "Requests of a limited key admitted without a lease: the control plane was "
              "unreachable (limits.on_control_plane_loss: allow).")
          .Register(*registry);
  prometheus::Gauge& in_flight = prometheus::BuildGauge()
                                     .Name("llmproxy_in_flight_requests")
                                     .Help("Requests being handled now.")
                                     .Register(*registry)
                                     .Add({});
  prometheus::Family<prometheus::Gauge>& backend_up =
      prometheus::BuildGauge()
          .Name("llmproxy_backend_up")
          .Help(
              "1 when the backend takes traffic, 0 while it is ejected or "
              "drained.")
          .Register(*registry);
  prometheus::Gauge& config_version = prometheus::BuildGauge()
                                          .Name("llmproxy_config_version")
                                          .Help("Version of the routing table in force.")
                                          .Register(*registry)
                                          .Add({});

  AtomicHistogram duration{"llmproxy_request_duration_seconds",
                           "Time from request received to response complete.", DurationBuckets()};
  AtomicHistogram ttft{"llmproxy_time_to_first_token_seconds",
                       "Streams: time from request received to the first chunk relayed.",
                       TtftBuckets()};
  AtomicHistogram overhead{"llmproxy_overhead_seconds",
                           "Time spent in the proxy itself, excluding waiting on upstreams.",
                           OverheadBuckets()};

  // Label allow-list; consulted only when a thread meets a label set for the
  // first time.
  std::mutex labels_mu;
  bool have_allow_list = false;
  std::unordered_set<std::string> allowed_backends;
  std::unordered_set<std::string> allowed_models;
  std::atomic<uint64_t> labels_generation{1};
  std::atomic<TableStore*> store{nullptr};  // when attached, the source of truth for labels

  // Scrape-time state.
  std::mutex scrape_mu;
  std::function<MetricsState()> provider;
  std::map<std::string, prometheus::Gauge*, std::less<>> up_gauges;

  ThreadCache& Cache() {
    ThreadCache& c = t_cache;
    uint64_t gen = labels_generation.load(std::memory_order_acquire);
    TableStore* s = store.load(std::memory_order_acquire);
    uint64_t table_version = s != nullptr ? s->version() : 0;
    if (c.owner != id || c.generation != gen || c.table_version != table_version ||
        c.names > kMaxCachedNames) {
      c.backends.clear();
      c.keys.clear();
      c.spend.clear();
      c.owner = id;
      c.generation = gen;
      c.table_version = table_version;
      c.names = 0;
    }
    return c;
  }

  // The label value a name becomes: itself when configured, else the fallback.
  std::string Sanitize(std::string_view name, bool backend) {
    std::string_view fallback = backend ? kNoBackend : kUnknownModel;
    if (name.empty()) return std::string(fallback);
    if (TableStore* s = store.load(std::memory_order_acquire)) {
      std::shared_ptr<const RoutingTable> table = s->Current();
      bool ok = table != nullptr && IsConfigured(*table, name, backend);
      return ok ? std::string(name) : std::string(fallback);
    }
    std::lock_guard lock(labels_mu);
    if (!have_allow_list) return std::string(name);
    const auto& allowed = backend ? allowed_backends : allowed_models;
    return allowed.count(std::string(name)) ? std::string(name) : std::string(fallback);
  }

  BackendChildren& Backend(ThreadCache& c, std::string_view backend) {
    auto it = c.backends.find(backend);
    if (it != c.backends.end()) return it->second;
    ++c.names;
    return c.backends.emplace(std::string(backend), BackendChildren{}).first->second;
  }

  RouteChildren& Route(ThreadCache& c, std::string_view backend, std::string_view model) {
    BackendChildren& b = Backend(c, backend);
    auto it = b.models.find(model);
    if (it != b.models.end()) return it->second;
    ++c.names;
    std::string backend_label = Sanitize(backend, true);
    std::string model_label = Sanitize(model, false);
    RouteChildren route;
    route.prompt_tokens =
        &tokens.Add({{"backend", backend_label}, {"model", model_label}, {"type", "prompt"}});
    route.completion_tokens =
        &tokens.Add({{"backend", backend_label}, {"model", model_label}, {"type", "completion"}});
    return b.models.emplace(std::string(model), std::move(route)).first->second;
  }

  std::array<prometheus::Counter*, 2>& KeyTokens(ThreadCache& c, std::string_view key,
                                                 std::string_view model) {
    auto k = c.keys.find(key);
    if (k == c.keys.end()) k = c.keys.emplace(std::string(key), decltype(k->second){}).first;
    auto it = k->second.find(model);
    if (it != k->second.end()) return it->second;
    ++c.names;
    const std::string model_label = Sanitize(model, false);
    std::array<prometheus::Counter*, 2> counters{
        &key_tokens.Add({{"key", std::string(key)}, {"model", model_label}, {"type", "prompt"}}),
        &key_tokens.Add(
            {{"key", std::string(key)}, {"model", model_label}, {"type", "completion"}})};
    return k->second.emplace(std::string(model), counters).first->second;
  }

  prometheus::Counter& RequestCounter(RouteChildren& route, std::string_view backend,
                                      std::string_view model, int status) {
    for (auto& [code, counter] : route.requests_by_code) {
      if (code == status) return *counter;
    }
    prometheus::Counter& counter = requests.Add({{"backend", Sanitize(backend, true)},
                                                 {"model", Sanitize(model, false)},
                                                 {"code", CodeLabel(status)}});
    route.requests_by_code.emplace_back(status, &counter);
    return counter;
  }

  prometheus::Gauge& UpGauge(std::string_view backend) {  // scrape_mu held
    auto it = up_gauges.find(backend);
    if (it != up_gauges.end()) return *it->second;
    prometheus::Gauge& g = backend_up.Add({{"backend", std::string(backend)}});
    up_gauges.emplace(std::string(backend), &g);
    return g;
  }

  void RefreshFromProvider() {  // scrape_mu held
    if (!provider) return;
    MetricsState state = provider();
    config_version.Set(static_cast<double>(state.config_version));
    std::set<std::string, std::less<>> seen;
    for (const auto& b : state.backends) {
      UpGauge(b.name).Set(b.up ? 1 : 0);
      seen.insert(b.name);
    }
    DropUpGaugesExcept(seen);
  }

  template <typename NameSet>
  void DropUpGaugesExcept(const NameSet& keep) {  // scrape_mu held
    for (auto it = up_gauges.begin(); it != up_gauges.end();) {
      if (keep.count(it->first)) {
        ++it;
      } else {
        backend_up.Remove(it->second);
        it = up_gauges.erase(it);
      }
    }
  }
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}
Metrics::~Metrics() = default;

const std::vector<double>& Metrics::DurationBuckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,   5,      10,    20,   30,    60,   120, 180,  300};
  return b;
}

const std::vector<double>& Metrics::TtftBuckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                        0.15,  0.2,    0.3,   0.5,  0.75,  1,    1.5,   2,
                                        3,     5,      10,    30,   60,    120};
  return b;
}

const std::vector<double>& Metrics::OverheadBuckets() {
  static const std::vector<double> b = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                        0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                        0.1,     0.25,     0.5,     1};
  return b;
}

void Metrics::OnRequestStart() { impl_->in_flight.Increment(); }

void Metrics::OnAttempt(std::string_view backend, AttemptOutcome outcome) {
  if (backend.empty()) backend = kNoBackend;
  ThreadCache& c = impl_->Cache();
  BackendChildren& b = impl_->Backend(c, backend);
  size_t i = static_cast<size_t>(outcome);
  if (i >= kOutcomeCount) return;
  if (b.attempts[i] == nullptr) {
    b.attempts[i] = &impl_->attempts.Add(
        {{"backend", impl_->Sanitize(backend, true)}, {"outcome", std::string(ToString(outcome))}});
  }
  b.attempts[i]->Increment();
}

void Metrics::OnRequestDone(const RequestRecord& r) {
  impl_->in_flight.Decrement();
  std::string_view backend = r.backend.empty() ? kNoBackend : std::string_view(r.backend);
  std::string_view model =
      r.model_resolved.empty() ? kUnknownModel : std::string_view(r.model_resolved);
  ThreadCache& c = impl_->Cache();
  RouteChildren& route = impl_->Route(c, backend, model);
  impl_->RequestCounter(route, backend, model, r.status).Increment();
  if (r.prompt_tokens) route.prompt_tokens->Increment(static_cast<double>(*r.prompt_tokens));
  if (r.completion_tokens) {
    route.completion_tokens->Increment(static_cast<double>(*r.completion_tokens));
  }
  if (!r.key_name.empty() && (r.prompt_tokens || r.completion_tokens)) {
    std::array<prometheus::Counter*, 2>& k = impl_->KeyTokens(c, r.key_name, model);
    if (r.prompt_tokens) k[0]->Increment(static_cast<double>(*r.prompt_tokens));
    if (r.completion_tokens) k[1]->Increment(static_cast<double>(*r.completion_tokens));
  }
  if (!r.key_name.empty()) {
    if (r.cost_usd && *r.cost_usd > 0) {
      auto it = c.spend.find(r.key_name);
      if (it == c.spend.end()) {
        it = c.spend.emplace(r.key_name, &impl_->key_spend.Add({{"key", r.key_name}})).first;
      }
      it->second->Increment(*r.cost_usd);
    }
    // Rare (refusals, a lost control plane): no cache.
    if (!r.limited_by.empty()) {
      impl_->ratelimited.Add({{"key", r.key_name}, {"limit", std::string(r.limited_by)}})
          .Increment();
    }
    if (r.loss_admitted) impl_->loss_admitted.Add({{"key", r.key_name}}).Increment();
  }
  impl_->duration.Observe(r.duration_seconds);
  if (r.ttft_seconds) impl_->ttft.Observe(*r.ttft_seconds);
  impl_->overhead.Observe(r.overhead_seconds);
}

void Metrics::OnProbe(std::string_view backend, bool success) {
  impl_->probes
      .Add({{"backend", impl_->Sanitize(backend, true)},
            {"result", success ? "success" : "failure"}})
      .Increment();
}

void Metrics::OnContinuation(std::string_view backend, bool success) {
  impl_->continuations
      .Add({{"backend", impl_->Sanitize(backend, true)},
            {"result", success ? "continued" : "failed"}})
      .Increment();
}

void Metrics::OnHedge(std::string_view backend, bool won) {
  impl_->hedges
      .Add({{"backend", impl_->Sanitize(backend, true)}, {"result", won ? "won" : "started"}})
      .Increment();
}

void Metrics::OnConfigApplied(const Config& config, uint64_t version) {
  std::unordered_set<std::string> backends;
  std::unordered_set<std::string> models;
  for (const auto& b : config.backends) {
    backends.insert(b.name);
    if (!b.default_model.empty()) models.insert(b.default_model);
    models.insert(b.models.begin(), b.models.end());
  }
  for (const auto& alias : config.model_aliases) {
    models.insert(alias.models.begin(), alias.models.end());
  }
  {
    std::lock_guard lock(impl_->labels_mu);
    impl_->have_allow_list = true;
    impl_->allowed_backends = backends;
    impl_->allowed_models = std::move(models);
  }
  // Threads rebuild their caches against the new list (counters themselves
  // persist).
  impl_->labels_generation.fetch_add(1, std::memory_order_acq_rel);
  std::lock_guard lock(impl_->scrape_mu);
  impl_->config_version.Set(static_cast<double>(version));
  impl_->DropUpGaugesExcept(backends);
}

void Metrics::AttachTableStore(TableStore& store) {
  impl_->store.store(&store, std::memory_order_release);
  // The same state the worker's provider reports (dataplane/main.cc): a drained backend
  // takes no traffic, so it is down whatever its health says.
  SetStateProvider([&store] {
    MetricsState state;
    state.config_version = store.version();
    auto table = store.Current();
    if (!table) return state;
    const auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < table->backend_count(); ++i) {
      const BackendConfig& b = table->backend(i);
      state.backends.push_back(BackendUp{b.name, !b.drained && table->BackendUp(i, now)});
    }
    return state;
  });
}

void Metrics::SetStateProvider(std::function<MetricsState()> provider) {
  std::lock_guard lock(impl_->scrape_mu);
  impl_->provider = std::move(provider);
}

void Metrics::SetBackendUp(std::string_view backend, bool up) {
  std::lock_guard lock(impl_->scrape_mu);
  impl_->UpGauge(backend).Set(up ? 1 : 0);
}

void Metrics::SetConfigVersion(uint64_t version) {
  std::lock_guard lock(impl_->scrape_mu);
  impl_->config_version.Set(static_cast<double>(version));
}

std::vector<prometheus::MetricFamily> Metrics::Collect() {
  std::lock_guard lock(impl_->scrape_mu);
  impl_->RefreshFromProvider();
  std::vector<prometheus::MetricFamily> families = impl_->registry->Collect();
  families.push_back(impl_->duration.Collect());
  families.push_back(impl_->ttft.Collect());
  families.push_back(impl_->overhead.Collect());
  std::sort(families.begin(), families.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return families;
}

std::string Metrics::Serialize() { return prometheus::TextSerializer().Serialize(Collect()); }

}  // namespace llmproxy
