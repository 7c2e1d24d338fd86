#include "dataplane/upstream/upstream_pool.h"

#include "common/log/logging.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "dataplane/upstream/upstream_error.h"

namespace llmproxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

std::string PoolKey(const UpstreamUrl& url, bool tls_insecure) {
  std::string key = url.Origin();
  // Connections verified differently must not be shared.
  if (url.tls && tls_insecure) key += "#insecure";
  return key;
}
}  // namespace

void UpstreamCancelState::Cancel() {
  cancelled = true;
  if (resolver) resolver->cancel();
  if (connecting) connecting->Close();
}

UpstreamPool::UpstreamPool(asio::any_io_executor executor, UpstreamPoolOptions options)
    : executor_(std::move(executor)), options_(std::move(options)), sweep_timer_(executor_) {
  // The environment is read now, as at process start, even though the context is built
  // later: a pool's trust settings must not depend on when its first https call happens.
  if (options_.tls.extra_ca_file.empty()) {
    if (const char* env = std::getenv("LLMPROXY_EXTRA_CA_FILE")) options_.tls.extra_ca_file = env;
  }
}

// Built on the first https connection: parsing the system CA bundle costs tens of
// milliseconds, which plain-http backends (and each thread's first request) need not pay.
TlsContext& UpstreamPool::tls() {
  if (!tls_) {
    tls_.emplace(options_.tls);
    if (!tls_->load_error().empty()) {
      LogWarn("TLS trust store incomplete", {{"error", tls_->load_error()}});
    }
  }
  return *tls_;
}

UpstreamPool::~UpstreamPool() {
  *alive_ = false;
  idle_.clear();
  // Calls must not outlive the pool; if one does (a deliberate leak at shutdown), its
  // connection must not reach back into this pool.
  for (UpstreamConnection* c : in_use_) c->tracked_by_ = nullptr;
}

void UpstreamPool::Track(UpstreamConnection& conn) {
  if (conn.tracked_by_ == this) return;
  conn.tracked_by_ = this;
  conn.tracked_index_ = in_use_.size();
  in_use_.push_back(&conn);
  ArmSweep();
}

void UpstreamPool::Untrack(UpstreamConnection& conn) {
  if (conn.tracked_by_ != this) return;
  const size_t i = conn.tracked_index_;
  in_use_[i] = in_use_.back();
  in_use_[i]->tracked_index_ = i;
  in_use_.pop_back();
  conn.tracked_by_ = nullptr;
}

// Track runs once per request: while the in-use interval is armed it costs one test.
void UpstreamPool::ArmSweep() {
  if (sweep_armed_ && sweep_short_) return;
  ArmSweepAt(Clock::now() + options_.sweep_interval, true);
}

void UpstreamPool::ArmSweepAt(Clock::time_point at, bool in_use_interval) {
  if (sweep_armed_ && sweep_timer_.expiry() <= at) return;
  sweep_armed_ = true;
  sweep_short_ = in_use_interval;
  // Moving the expiry cancels a later wait; its handler then sees operation_aborted and
  // leaves the state to this one.
  sweep_timer_.expires_at(at);
  sweep_timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (!*alive || ec) return;
    sweep_armed_ = false;
    Sweep();
  });
}

void UpstreamPool::Sweep() {
  const Clock::time_point now = Clock::now();
  for (size_t i = 0; i < in_use_.size(); ++i) in_use_[i]->CheckDeadline(now);
  const Clock::time_point next_idle_expiry = ExpireIdle(now);
  if (!in_use_.empty()) {
    ArmSweepAt(now + options_.sweep_interval, true);
  } else if (next_idle_expiry != Clock::time_point::max()) {
    ArmSweepAt(next_idle_expiry, false);
  }
}

Clock::time_point UpstreamPool::ExpireIdle(Clock::time_point now) {
  Clock::time_point next = Clock::time_point::max();
  for (auto& [key, list] : idle_) {
    // Oldest at the front.
    while (!list.empty() && list.front()->idle_since + options_.idle_expiry <= now) {
      list.pop_front();
    }
    if (!list.empty()) next = std::min(next, list.front()->idle_since + options_.idle_expiry);
  }
  return next;
}

size_t UpstreamPool::idle_count() const {
  size_t n = 0;
  for (const auto& [key, list] : idle_) n += list.size();
  return n;
}

std::unique_ptr<UpstreamConnection> UpstreamPool::TakeIdle(const std::string& key) {
  const auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  // Reuse the newest (most likely alive); the sweep closes the expired ones at the front.
  // Every candidate is peeked, however briefly it idled: bytes that arrived since its
  // last response (an extra reply, a close) would be read as the next request's answer.
  // The peek is one recv returning EAGAIN (docs/upstream.md has its measured cost).
  while (!list.empty()) {
    std::unique_ptr<UpstreamConnection> conn = std::move(list.back());
    list.pop_back();
    if (conn->LooksReusable()) return conn;
  }
  return nullptr;
}

void UpstreamPool::Release(std::unique_ptr<UpstreamConnection> conn) {
  if (!conn || !conn->is_open()) return;
  auto& list = idle_[conn->pool_key()];
  Untrack(*conn);
  if (list.size() >= options_.max_idle_per_origin) return;  // closes conn
  conn->ExpiresNever();
  conn->idle_since = Clock::now();
  list.push_back(std::move(conn));
}

asio::awaitable<std::error_code> UpstreamPool::Resolve(const UpstreamUrl& url,
                                                       Clock::time_point deadline,
                                                       UpstreamCancelState& cancel,
                                                       tcp::resolver::results_type& out) {
  const std::string service = std::to_string(url.port);
  boost::system::error_code addr_ec;
  const asio::ip::address address = asio::ip::make_address(url.host, addr_ec);
  if (!addr_ec) {
    out = tcp::resolver::results_type::create(tcp::endpoint(address, url.port), url.host, service);
    co_return std::error_code{};
  }
  const std::string cache_key = url.host + ":" + service;
  const Clock::time_point now = Clock::now();
  if (const auto it = dns_.find(cache_key); it != dns_.end()) {
    if (it->second.expires > now) {
      out = it->second.results;
      co_return std::error_code{};
    }
    dns_.erase(it);
  }

  using namespace asio::experimental::awaitable_operators;
  tcp::resolver resolver(executor_);
  asio::steady_timer timer(executor_, deadline);
  cancel.resolver = &resolver;
  auto result =
      co_await (resolver.async_resolve(url.host, service, kUse) || timer.async_wait(kUse));
  cancel.resolver = nullptr;
  if (cancel.cancelled) co_return UpstreamErrc::kCancelled;
  if (result.index() == 1) co_return UpstreamErrc::kConnectTimeout;
  auto& [ec, results] = std::get<0>(result);
  if (ec || results.empty()) co_return UpstreamErrc::kDnsFailed;
  out = results;
  if (options_.dns_ttl.count() > 0) {
    // Bound the cache: backends are few, so a full cache means stale junk; start over.
    if (dns_.size() >= 1024) dns_.clear();
    dns_[cache_key] = DnsEntry{results, now + options_.dns_ttl};
  }
  co_return std::error_code{};
}

asio::awaitable<UpstreamPool::Acquired> UpstreamPool::Acquire(
    const UpstreamUrl& url, bool tls_insecure, std::chrono::milliseconds connect_timeout,
    bool fresh_only, UpstreamCancelState& cancel) {
  Acquired out;
  const std::string key = PoolKey(url, tls_insecure);
  if (!fresh_only) {
    if (auto conn = TakeIdle(key)) {
      Track(*conn);
      ++reuses_;
      out.conn = std::move(conn);
      out.reused = true;
      co_return out;
    }
  }
  if (cancel.cancelled) {
    out.ec = UpstreamErrc::kCancelled;
    co_return out;
  }
  const Clock::time_point deadline = Clock::now() + connect_timeout;
  tcp::resolver::results_type endpoints;
  out.ec = co_await Resolve(url, deadline, cancel, endpoints);
  if (out.ec) co_return out;

  ++connects_started_;
  auto conn = std::make_unique<UpstreamConnection>(
      executor_, url.tls ? &tls().Get(tls_insecure) : nullptr, key);
  Track(*conn);
  cancel.connecting = conn.get();
  out.ec = co_await conn->Connect(endpoints, url.host, tls_insecure, deadline);
  cancel.connecting = nullptr;
  if (cancel.cancelled) out.ec = UpstreamErrc::kCancelled;
  if (!out.ec) out.conn = std::move(conn);
  co_return out;
}

}  // namespace llmproxy
