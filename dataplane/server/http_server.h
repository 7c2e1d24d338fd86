// The worker's HTTP/1.1 front end: T threads, each with its own io_context and its own
// SO_REUSEPORT acceptor on the same address (so threads and worker processes share the
// port and the kernel spreads connections), keep-alive sessions as C++20 coroutines.
// The server owns connections, read limits and deadlines; what a request means is the
// RequestHandler's business (dataplane/dispatch/request_router.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <memory_resource>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "dataplane/http/http_head.h"
#include "dataplane/server/buffer_budget.h"

namespace llmproxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct ServerLimits {
  // How often each server thread checks its connections' deadlines: a timeout fires
  // up to this much late.
  std::chrono::milliseconds sweep_interval{50};
  size_t header_limit = 16 * 1024;                  // request line + headers (431 beyond)
  std::chrono::milliseconds header_timeout{10000};  // whole header of a request, slow clients
  std::chrono::milliseconds idle_timeout{60000};    // keep-alive wait for the next request
};

// The client request: header fields from the connection's arena (dataplane/http/http_head.h).
using RequestParser = http::request_parser<http::string_body, ArenaAllocator>;

struct ClientConnection;

// The connection's read that stays armed while a proxied request waits on its upstream
// and then becomes the wait for the next request (StartClientWatch).
struct ClientWatchState {
  ClientConnection* conn = nullptr;      // null once the session has ended
  bool active = false;                   // a request is watching: EOF/reset runs on_gone
  bool pending = false;                  // the read is in flight
  bool stop_cancelled = false;           // StopClientWatch cancelled the read (not an error)
  boost::system::error_code read_error;  // how a read ended that nobody waited for
  void (*on_gone)(void*) = nullptr;
  void* ctx = nullptr;
  // The session waits for the pending read (its next request) on this timer, which
  // never expires: the read's handler cancels it.
  explicit ClientWatchState(const asio::any_io_executor& executor) : wakeup(executor) {}
  asio::steady_timer wakeup;
  bool waiting = false;
};

// One accepted client connection, handed to the handler for each request on it. Lives
// on its thread's io_context; only that thread touches it.
//
// Deadlines are a time stored on the connection, not a timer armed per operation: the
// server thread sweeps its connections a few times a second and closes the ones whose
// deadline has passed (pending operations then fail and `timed_out` says why). Setting
// or clearing a deadline is a store, so the per-request path arms no timers.
struct ClientConnection {
  using Clock = std::chrono::steady_clock;

  explicit ClientConnection(asio::ip::tcp::socket s) : socket(std::move(s)) {}
  ~ClientConnection() { ReleaseBody(); }

  // The next operations must finish within `timeout` from now.
  void ExpiresAfter(std::chrono::milliseconds timeout) { deadline = Clock::now() + timeout; }
  void ExpiresAt(Clock::time_point at) { deadline = at; }
  void ExpiresNever() { deadline = Clock::time_point::max(); }
  // Closes the socket now: pending operations complete with an error.
  void Close();

  // Takes `bytes` more of the worker-wide BufferBudget for the current request's body;
  // false (nothing taken) when that would pass `limit`. The server gives it all back
  // when the request ends, whatever path it took (ReleaseBody).
  bool ReserveBody(uint64_t bytes, uint64_t limit) {
    if (budget == nullptr) return true;
    if (!budget->TryReserve(bytes, limit)) return false;
    body_reserved += bytes;
    return true;
  }
  void ReleaseBody() {
    if (budget != nullptr && body_reserved > 0) budget->Release(body_reserved);
    body_reserved = 0;
  }

  asio::ip::tcp::socket socket;
  beast::flat_buffer buffer;     // bytes read past the current request (pipelining) stay here
  std::string head_scratch;      // response heads are serialized here (capacity is reused)
  std::string upstream_scratch;  // the upstream request head, likewise
  // The current request's header fields live here; released between requests.
  alignas(std::max_align_t) std::byte header_arena_block[2048];
  std::pmr::monotonic_buffer_resource header_arena{header_arena_block, sizeof header_arena_block};
  std::string remote_address;
  size_t thread_index = 0;
  Clock::time_point deadline = Clock::time_point::max();
  bool timed_out = false;  // the sweeper closed the connection because of its deadline
  bool idle = false;       // waiting for the next request: the drain closes idle connections
  bool closing = false;    // the server is draining: answer this request, then close
  bool drain_cut = false;  // the drain deadline passed: a stream ends with an error event
  // The client finished sending (FIN) before its request's upstream work began: a
  // half-close (shutdown(SHUT_WR)), served to the end, then the connection closes.
  bool half_closed = false;
  // The request being proxied closes the connection after its answer (HTTP/1.0 without
  // keep-alive, or `Connection: close`): such a client can send nothing more, so a FIN
  // from it while the upstream works is a half-close (tools that shutdown(SHUT_WR) after
  // the request), served to the end, not a departure. A client that really left is
  // still seen at the first write of the answer (a stream's head, at the first token).
  bool fin_is_half_close = false;
  BufferBudget* budget = nullptr;  // the server's; null in tests that build a connection
  uint64_t body_reserved = 0;      // this request's share of it
  // Made by the first proxied request (StartClientWatch); outlives the connection in a
  // pending wait handler.
  std::shared_ptr<ClientWatchState> watch;
};

// While a proxied request waits on its upstream, nothing else reads the client socket:
// the watch keeps one read armed on it, which notices EOF or a reset (the client left, so
// `on_gone(ctx)` runs once and the upstream can be cancelled) and keeps bytes of a
// pipelined next request in conn.buffer. After the response the session waits on that
// same read for the next request, so watching costs no extra syscall per request.
//
// A FIN already queued when the watch starts (it came with the request: a client that
// half-closed after sending, as HTTP/1.0 tools and `nc -N` do) is not a hang-up: the
// request and the pipelined ones before the FIN are served, then the connection closes.
// A FIN that comes later, while the upstream works, is one: a closed and a half-closed
// socket look alike from here, and an abandoned upstream call costs tokens.
void StartClientWatch(ClientConnection& conn, void (*on_gone)(void*), void* ctx);
// The request is done with the connection; on_gone will not run after this.
void StopClientWatch(ClientConnection& conn);

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Handles one request whose header has been read (the body not yet: the handler picks
  // the body limit, so a 404 need not read a large body). Writes the full response.
  // Returns true when the connection can serve another request. Must not throw.
  virtual asio::awaitable<bool> Handle(ClientConnection& conn, RequestParser& parser) = 0;
};

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 0;  // 0: the kernel picks one, shared by all threads (read port())
  unsigned threads = 1;
  ServerLimits limits;
  // Run by Stop() on each io thread before its io_context stops, so per-thread objects
  // holding sockets of that context (upstream pools) are destroyed while it still
  // exists. `clean` is false when sessions were still running (their coroutine frames
  // may still point at those objects: do not free them then).
  std::function<void(size_t thread_index, bool clean)> on_thread_stop;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, RequestHandler& handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds every thread's acceptor and starts the threads. "" on success, else the error.
  std::string Start();
  uint16_t port() const { return port_; }
  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
  asio::io_context& io_context(size_t thread_index);

  // Graceful stop, first half: close the acceptors and the idle keep-alive connections;
  // requests in flight run on, and their connections close after the response.
  void StopAccepting();
  // The drain deadline passed: cancel the upstream calls of the requests still running
  // (through their client watch, with ClientConnection::drain_cut set), so a stream ends
  // with its SSE error event instead of a bare close. Stop() still closes what is left.
  void CutInFlight();
  // Waits until no connection is open, or the deadline passes. True when idle.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline) const;
  // Hard stop: closes the listeners and every client connection, gives the sessions a
  // moment to unwind (cancelling their upstream calls), runs on_thread_stop on each
  // thread, then stops the io_contexts and joins the threads. Idempotent.
  void Stop();

  size_t open_connections() const { return open_connections_.load(); }
  // Request body bytes held by all connections right now (server.max_buffered_bytes).
  uint64_t buffered_bytes() const { return budget_.used(); }

 private:
  struct Thread;
  asio::awaitable<void> AcceptLoop(Thread& thread);
  asio::awaitable<void> RunSession(Thread& thread, asio::ip::tcp::socket socket);
  asio::awaitable<void> SweepLoop(Thread& thread);
  void CloseConnections(bool all);

  HttpServerOptions options_;
  RequestHandler& handler_;
  std::vector<std::unique_ptr<Thread>> threads_;
  uint16_t port_ = 0;
  std::atomic<size_t> open_connections_{0};
  std::atomic<bool> draining_{false};
  BufferBudget budget_;
  bool stopped_ = false;
};

// Sends a complete response (prepare_payload already done by the caller) within
// `timeout`; false when the client is gone or too slow. `head_only`: the answer to a
// HEAD request, its head (Content-Length included) without the body.
asio::awaitable<bool> WriteResponse(ClientConnection& conn,
                                    http::response<http::string_body>& response,
                                    std::chrono::milliseconds timeout, bool head_only = false);

// Sends `head` (a complete serialized head) and `body` in one gather write within
// `timeout`; false when the client is gone or too slow.
asio::awaitable<bool> WriteRaw(ClientConnection& conn, std::string_view head, std::string_view body,
                               std::chrono::milliseconds timeout);

// Before closing a connection whose request was not read to its end (413, 431, 400):
// shut down our sending side and discard what the client still sends, for a short
// while, so closing does not reset the connection before the client reads our answer.
asio::awaitable<void> LingeringClose(ClientConnection& conn);

}  // namespace llmproxy
