// Keep-alive connection pool of one io thread: idle connections per origin (and TLS
// verification mode), async DNS with a short cache, and the TLS contexts. Not
// thread-safe by design: each io thread owns one pool, so acquiring a connection takes
// no lock. The pipeline uses it through UpstreamCall (upstream_call.h); it only
// constructs one pool per io thread and passes it to each UpstreamCall. The pool must
// outlive every UpstreamCall made from it (calls return connections to it on destruction).
// The TLS context (system CA bundle) is built on the first https connection only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "dataplane/upstream/tls_context.h"
#include "dataplane/upstream/upstream_connection.h"
#include "dataplane/protocols/upstream_url.h"

namespace llmproxy {

struct UpstreamPoolOptions {
  // Beyond this, released ones close. Sized for a burst of a thousand concurrent streams
  // per thread to find warm connections (nginx's `keepalive` is per worker too).
  size_t max_idle_per_origin = 1024;
  // Idle longer: closed by the sweep (below the usual 60 s server idle timeouts, so we
  // close first rather than race the server's close). docs/upstream.md.
  std::chrono::milliseconds idle_expiry{std::chrono::seconds(55)};
  std::chrono::milliseconds dns_ttl{std::chrono::seconds(30)};  // successful lookups cached
  size_t max_header_bytes = 64 * 1024;  // response head limit (kBadResponse beyond)
  size_t read_chunk_bytes = 16 * 1024;  // largest body piece ReadBody returns
  // How often connections in use are checked against their deadlines (connect, response
  // and body timeouts fire up to this much late). With none in use, the sweep wakes only
  // when the oldest idle connection expires.
  std::chrono::milliseconds sweep_interval{50};
  TlsOptions tls;  // CA sources (extra CA file / env)
};

// Lets UpstreamCall::Cancel reach an Acquire in progress (resolver or connecting socket).
struct UpstreamCancelState {
  bool cancelled = false;
  boost::asio::ip::tcp::resolver* resolver = nullptr;
  UpstreamConnection* connecting = nullptr;
  void Cancel();
};

class UpstreamPool {
 public:
  explicit UpstreamPool(boost::asio::any_io_executor executor, UpstreamPoolOptions options = {});
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  struct Acquired {
    std::error_code ec;
    std::unique_ptr<UpstreamConnection> conn;
    bool reused = false;  // came from the idle list (may be stale: see UpstreamCall)
  };
  // An idle connection to url's origin (newest first, checked with LooksReusable), else a
  // new one (DNS, TCP, TLS before now + connect_timeout). fresh_only skips the idle list.
  boost::asio::awaitable<Acquired> Acquire(const UpstreamUrl& url, bool tls_insecure,
                                           std::chrono::milliseconds connect_timeout,
                                           bool fresh_only, UpstreamCancelState& cancel);

  // Returns a connection whose last response was read completely with keep-alive on and
  // nothing buffered past it (UpstreamCall checks); kept idle unless the origin already
  // has max_idle_per_origin idle ones.
  void Release(std::unique_ptr<UpstreamConnection> conn);

  boost::asio::any_io_executor executor() const { return executor_; }
  const UpstreamPoolOptions& options() const { return options_; }
  TlsContext& tls();  // created on first use, logging a trust-store error once

  // Observability and tests.
  size_t idle_count() const;
  uint64_t connects_started() const { return connects_started_; }
  uint64_t reuses() const { return reuses_; }

 private:
  friend class UpstreamConnection;
  // Connections in use (connecting, or held by an UpstreamCall) are swept for deadlines.
  void Track(UpstreamConnection& conn);
  void Untrack(UpstreamConnection& conn);
  // One timer serves both sweeps: every sweep_interval while connections are in use,
  // else at the next idle expiry, else not at all.
  void ArmSweep();
  void ArmSweepAt(std::chrono::steady_clock::time_point at, bool in_use_interval);
  void Sweep();
  // Closes idle connections past idle_expiry; returns when the next one expires
  // (time_point::max() when none is idle).
  std::chrono::steady_clock::time_point ExpireIdle(std::chrono::steady_clock::time_point now);

  struct DnsEntry {
    boost::asio::ip::tcp::resolver::results_type results;
    std::chrono::steady_clock::time_point expires;
  };

  std::unique_ptr<UpstreamConnection> TakeIdle(const std::string& key);
  boost::asio::awaitable<std::error_code> Resolve(
      const UpstreamUrl& url, std::chrono::steady_clock::time_point deadline,
      UpstreamCancelState& cancel, boost::asio::ip::tcp::resolver::results_type& out);

  boost::asio::any_io_executor executor_;
  UpstreamPoolOptions options_;
  std::optional<TlsContext> tls_;
  std::unordered_map<std::string, std::deque<std::unique_ptr<UpstreamConnection>>> idle_;
  std::unordered_map<std::string, DnsEntry> dns_;
  uint64_t connects_started_ = 0;
  uint64_t reuses_ = 0;
  std::vector<UpstreamConnection*> in_use_;
  boost::asio::steady_timer sweep_timer_;
  bool sweep_armed_ = false;
  bool sweep_short_ = false;  // the armed wait is the in-use interval (cheap test in Track)
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for the sweep handler
};

}  // namespace llmproxy
