// One outbound connection to a backend origin: plain TCP or TLS (asio::ssl::stream over
// the socket) behind one type, with its read buffer. Created and pooled by UpstreamPool,
// driven by UpstreamCall; the pipeline does not use it directly.
// Not thread-safe: lives on one io thread.
//
// Deadlines are a stored time, not a timer per operation: while a connection is in use
// its pool sweeps it every few tens of milliseconds and closes it once the deadline has
// passed (pending operations then fail, and timed_out() says why).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>

namespace llmproxy {

class UpstreamPool;

class UpstreamConnection {
 public:
  using Socket = boost::asio::ip::tcp::socket;
  using TlsStream = boost::asio::ssl::stream<Socket>;
  using Clock = std::chrono::steady_clock;

  // A plain connection when tls_context is null, else TLS (SNI + hostname check unless
  // `insecure`). `pool_key` names the pool bucket it returns to.
  UpstreamConnection(boost::asio::any_io_executor executor, boost::asio::ssl::context* tls_context,
                     std::string pool_key);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // TCP connect to the first reachable endpoint, then the TLS handshake, all before
  // `deadline`. `host` is the name used for SNI and certificate checking. Errors:
  // kConnectFailed, kConnectTimeout, kTlsFailed, kCancelled.
  boost::asio::awaitable<std::error_code> Connect(
      const boost::asio::ip::tcp::resolver::results_type& endpoints, const std::string& host,
      bool insecure, Clock::time_point deadline);

  // Runs f(stream) with the concrete stream type (Socket& or TlsStream&); both branches
  // must return the same type (e.g. an awaitable of the same signature).
  template <class F>
  decltype(auto) WithStream(F&& f) {
    if (tls_) return std::forward<F>(f)(*tls_);
    return std::forward<F>(f)(*plain_);
  }

  Socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }

  // Operations must finish by `at`, or the pool's sweep closes the connection.
  void ExpiresAt(Clock::time_point at) { deadline_ = at; }
  void ExpiresNever() { deadline_ = Clock::time_point::max(); }
  bool timed_out() const { return timed_out_; }
  // For the pool's sweep: closes the connection when its deadline has passed.
  void CheckDeadline(Clock::time_point now) {
    if (deadline_ <= now && !timed_out_) {
      timed_out_ = true;
      Close();
    }
  }
  boost::beast::flat_buffer& buffer() { return buffer_; }
  bool is_tls() const { return tls_ != nullptr; }
  const std::string& pool_key() const { return pool_key_; }

  // Closes the socket now; pending operations complete with operation_aborted.
  void Close();
  bool is_open();

  // True when response bytes beyond the last message are held anywhere on our side: the
  // read buffer, or (TLS) records OpenSSL has taken in but not yet handed out. Such a
  // connection is out of step with the requests sent on it and must not be pooled.
  bool HasBufferedBytes();

  // For an idle pooled connection about to be reused: false when the peer has closed it
  // or sent bytes nobody asked for (buffered, or readable: one non-blocking MSG_PEEK).
  // Those bytes would otherwise be read as the answer to the next request.
  bool LooksReusable();

  // The buffer body pieces are decoded into: owned by the connection so a pooled
  // connection's next request reuses it. It holds at least `size` bytes (grown, never
  // shrunk: a bigger one from an earlier answer stays); body_chunk_size() says how many.
  char* BodyChunk(size_t size);
  size_t body_chunk_size() const { return body_chunk_size_; }

  Clock::time_point idle_since;  // set by the pool on release

 private:
  friend class UpstreamPool;  // tracks connections in use for its deadline sweep
  UpstreamPool* tracked_by_ = nullptr;
  size_t tracked_index_ = 0;

  std::unique_ptr<Socket> plain_;   // exactly one of plain_ / tls_ is set
  std::unique_ptr<TlsStream> tls_;  // owns its own socket
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  boost::beast::flat_buffer buffer_;
  std::unique_ptr<char[]> body_chunk_;
  size_t body_chunk_size_ = 0;
  std::string pool_key_;
};

}  // namespace llmproxy
