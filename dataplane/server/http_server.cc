#include "dataplane/server/http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <future>
#include <list>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/read.hpp>

#include "common/log/logging.h"
#include "dataplane/http/cors.h"
#include "dataplane/http/http_head.h"
#include "dataplane/http/peer_error.h"
#include "dataplane/http/socket_write.h"
#include "dataplane/protocols/error_response.h"

namespace llmproxy {

using asio::ip::tcp;
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

struct HttpServer::Thread {
  size_t index = 0;
  asio::io_context io{1};  // one thread runs it: lets Asio skip internal locking
  tcp::acceptor acceptor{io};
  asio::steady_timer sweep_timer{io};
  std::thread thread;
  // Connections of this thread (touched only on it), so a drain can close idle ones.
  std::list<ClientConnection*> connections;
};

HttpServer::HttpServer(HttpServerOptions options, RequestHandler& handler)
    : options_(std::move(options)), handler_(handler) {
  if (options_.threads == 0) options_.threads = 1;
}

HttpServer::~HttpServer() { Stop(); }

asio::io_context& HttpServer::io_context(size_t thread_index) {
  return threads_.at(thread_index)->io;
}

std::string HttpServer::Start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options_.host, ec);
  if (ec) return "bad listen address '" + options_.host + "': " + ec.message();
  uint16_t port = options_.port;
  for (unsigned i = 0; i < options_.threads; ++i) {
    auto t = std::make_unique<Thread>();
    t->index = i;
    tcp::endpoint endpoint(address, port);
    t->acceptor.open(endpoint.protocol(), ec);
    if (!ec) t->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) t->acceptor.set_option(ReusePort(true), ec);
    if (!ec) t->acceptor.bind(endpoint, ec);
    if (!ec) t->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return "cannot listen on " + options_.host + ":" + std::to_string(port) + ": " + ec.message();
    }
    // With port 0 the first bind picks the port; the other threads join it.
    if (port == 0) port = t->acceptor.local_endpoint().port();
    threads_.push_back(std::move(t));
  }
  port_ = port;
  for (auto& t : threads_) {
    asio::co_spawn(t->io, AcceptLoop(*t), asio::detached);
    asio::co_spawn(t->io, SweepLoop(*t), asio::detached);
    t->thread = std::thread([io = &t->io] {
      auto guard = asio::make_work_guard(*io);
      io->run();
    });
  }
  return "";
}

void HttpServer::StopAccepting() {
  draining_ = true;
  CloseConnections(/*all=*/false);
}

// Closes the acceptors and the idle connections (all=false), or every connection.
void HttpServer::CloseConnections(bool all) {
  for (auto& t : threads_) {
    if (!t->thread.joinable()) continue;
    asio::post(t->io, [t = t.get(), all] {
      boost::system::error_code ignored;
      t->acceptor.close(ignored);
      if (all) t->sweep_timer.cancel();
      for (ClientConnection* c : t->connections) {
        c->closing = true;
        if (all || c->idle) c->Close();
      }
    });
  }
}

void HttpServer::CutInFlight() {
  for (auto& t : threads_) {
    if (!t->thread.joinable()) continue;
    asio::post(t->io, [t = t.get()] {
      for (ClientConnection* c : t->connections) {
        c->drain_cut = true;
        ClientWatchState* w = c->watch.get();
        if (w == nullptr || !w->active || w->on_gone == nullptr) continue;
        w->active = false;  // on_gone runs once
        w->on_gone(w->ctx);
      }
    });
  }
}

bool HttpServer::WaitIdle(std::chrono::steady_clock::time_point deadline) const {
  while (open_connections_.load() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

void HttpServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  draining_ = true;
  CloseConnections(/*all=*/true);
  bool clean = WaitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  if (options_.on_thread_stop) {
    for (auto& t : threads_) {
      if (!t->thread.joinable()) continue;
      std::promise<void> done;
      asio::post(t->io, [&] {
        options_.on_thread_stop(t->index, clean);
        done.set_value();
      });
      done.get_future().wait();
    }
  }
  for (auto& t : threads_) t->io.stop();
  for (auto& t : threads_) {
    if (t->thread.joinable()) t->thread.join();
  }
  // Destroying the contexts destroys suspended sessions (their frames own the sockets).
  threads_.clear();
}

asio::awaitable<void> HttpServer::AcceptLoop(Thread& thread) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await thread.acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!thread.acceptor.is_open()) co_return;
      // EMFILE and friends: back off a little instead of spinning; the connection waits
      // in the listen backlog meanwhile. One line a second, not one per retry.
      static LogThrottle throttle(std::chrono::seconds(1));
      if (uint64_t skipped = 0; throttle.Allow(skipped)) {
        LogWarn("accept failed", {{"error", ec.message()}, {"suppressed", skipped}});
      }
      asio::steady_timer timer(thread.io, std::chrono::milliseconds(50));
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    asio::co_spawn(thread.io, RunSession(thread, std::move(socket)), asio::detached);
  }
}

// Closes connections whose deadline has passed. A sweep is a walk over this thread's
// connections comparing one time each; it replaces a timer per read and write.
asio::awaitable<void> HttpServer::SweepLoop(Thread& thread) {
  for (;;) {
    thread.sweep_timer.expires_after(options_.limits.sweep_interval);
    boost::system::error_code ec;
    co_await thread.sweep_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;  // Stop() cancelled the timer
    const auto now = ClientConnection::Clock::now();
    for (ClientConnection* c : thread.connections) {
      if (c->deadline <= now && !c->timed_out) {
        c->timed_out = true;
        c->Close();
      }
    }
  }
}

void ClientConnection::Close() {
  boost::system::error_code ignored;
  socket.close(ignored);
}

namespace {

constexpr size_t kWatchBufferLimit = 64 * 1024;  // pipelined bytes kept while proxying

void FinishWatchRead(ClientWatchState& watch, boost::system::error_code ec) {
  if (ec) watch.read_error = ec;
  if (watch.waiting) watch.wakeup.cancel();
}

void ArmWatch(ClientConnection& conn) {
  ClientWatchState& state = *conn.watch;
  if (state.pending || state.read_error) return;
  state.pending = true;
  state.conn = &conn;
  conn.socket.async_read_some(
      conn.buffer.prepare(4096),
      [watch = conn.watch](const boost::system::error_code& ec, size_t n) {
        watch->pending = false;
        const bool stop_cancelled = std::exchange(watch->stop_cancelled, false);
        if (!watch->conn) return;  // the session has ended: nobody wants these bytes
        // Aborted: StopClientWatch's cancel (nothing was read, not an error), or the
        // socket was closed (timeout, drain).
        if (ec == asio::error::operation_aborted) {
          return FinishWatchRead(*watch, stop_cancelled ? boost::system::error_code{} : ec);
        }
        ClientConnection& c = *watch->conn;
        if (!ec && n > 0) {
          c.buffer.commit(n);
          // Bytes of a pipelined request while we proxy: keep reading (bounded), so a
          // disconnect behind them is still seen.
          if (watch->active && c.buffer.size() <= kWatchBufferLimit) return ArmWatch(c);
          return FinishWatchRead(*watch, {});
        }
        // EOF or a reset: the client left, unless its request said it sends no more.
        const boost::system::error_code gone = ec ? ec : asio::error::eof;
        if (gone == asio::error::eof && c.fin_is_half_close) {
          c.half_closed = true;
          return FinishWatchRead(*watch, gone);
        }
        if (watch->active) {
          watch->active = false;
          if (watch->on_gone) watch->on_gone(watch->ctx);
        }
        FinishWatchRead(*watch, gone);
      });
}

// Waits for the read the watch left armed: ok when bytes were added to conn.buffer.
asio::awaitable<boost::system::error_code> AwaitWatchRead(ClientConnection& conn) {
  ClientWatchState& watch = *conn.watch;
  if (watch.read_error) co_return watch.read_error;
  if (!watch.pending) co_return boost::system::error_code{};
  // A shared_ptr copy: the read's handler may outlive this connection's frame.
  std::shared_ptr<ClientWatchState> hold = conn.watch;
  watch.waiting = true;
  watch.wakeup.expires_at(asio::steady_timer::time_point::max());
  while (watch.pending) {
    boost::system::error_code ignored;
    co_await watch.wakeup.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  watch.waiting = false;
  co_return watch.read_error;
}

// Moves what the kernel already holds for this connection into conn.buffer without
// waiting (the socket is non-blocking): pipelined bytes, and a FIN queued behind them,
// which makes the connection half-closed rather than a client that left (see the
// header). A reset is left for the watch's read to report.
void TakeQueuedBytes(ClientConnection& conn) {
  while (conn.buffer.size() <= kWatchBufferLimit) {
    boost::system::error_code ec;
    const size_t n = conn.socket.read_some(conn.buffer.prepare(4096), ec);
    if (!ec && n > 0) {
      conn.buffer.commit(n);
      continue;
    }
    if (ec == asio::error::eof) {
      conn.half_closed = true;
      conn.watch->read_error = ec;  // served, then the session ends at its next wait
    }
    return;
  }
}

}  // namespace

void StartClientWatch(ClientConnection& conn, void (*on_gone)(void*), void* ctx) {
  if (!conn.watch) conn.watch = std::make_shared<ClientWatchState>(conn.socket.get_executor());
  conn.watch->on_gone = on_gone;
  conn.watch->ctx = ctx;
  conn.watch->active = true;
  if (!conn.watch->pending && !conn.watch->read_error) TakeQueuedBytes(conn);
  if (conn.buffer.size() <= kWatchBufferLimit) ArmWatch(conn);
}

void StopClientWatch(ClientConnection& conn) {
  if (!conn.watch) return;
  ClientWatchState& watch = *conn.watch;
  watch.active = false;
  watch.on_gone = nullptr;
  watch.ctx = nullptr;
  if (watch.pending && conn.buffer.size() > 0) {
    // A pipelined request is already buffered: the session must not wait for more bytes
    // before serving it. Cancel the read; the session still waits for its handler (it
    // may have completed with bytes already, which are then committed in order).
    watch.stop_cancelled = true;
    boost::system::error_code ignored;
    conn.socket.cancel(ignored);
  }
}

namespace {

bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The Transfer-Encoding of a request, every field line joined (RFC 9112 6.1): nullopt
// when it frames the body exactly as Beast will (one final "chunked"), else the answer.
// Beast ignores a list whose last coding is not chunked and treats the request as
// bodiless, so without this check the body (`identity`, `gzip`, `xchunked`,
// `chunked, identity`, `"chunked"`) would be parsed as the next request: smuggling.
std::optional<ProxyError> CheckTransferEncoding(const RequestParser& parser) {
  const auto& req = parser.get();
  auto range = req.equal_range(http::field::transfer_encoding);
  if (range.first == range.second) return std::nullopt;
  // RFC 9112 6.1: HTTP/1.0 has no transfer codings; the framing is faulty.
  if (req.version() < 11) {
    return BadRequestError("Transfer-Encoding is not allowed in an HTTP/1.0 request.");
  }
  if (req.count(http::field::content_length) > 0) {
    return BadRequestError("A request must not carry both Content-Length and Transfer-Encoding.");
  }
  std::vector<std::string_view> codings;  // names, parameters dropped
  bool last_has_parameters = false;
  for (auto it = range.first; it != range.second; ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      const size_t comma = list.find(',');
      std::string_view element = TrimOws(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      if (element.empty()) continue;  // RFC 9110 5.6.1: empty list elements are ignored
      // A coding's name, parameters (";q=...") aside; it must be a token.
      std::string_view name = TrimOws(element.substr(0, element.find(';')));
      if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) {
        return BadRequestError("Malformed Transfer-Encoding.");
      }
      codings.push_back(name);
      last_has_parameters = element.find(';') != std::string_view::npos;
    }
  }
  if (codings.empty() || !beast::iequals(codings.back(), "chunked") || last_has_parameters) {
    return BadRequestError("Transfer-Encoding must end with chunked.");
  }
  for (size_t i = 0; i + 1 < codings.size(); ++i) {
    if (beast::iequals(codings[i], "chunked")) {
      return BadRequestError("Transfer-Encoding applies chunked more than once.");
    }
  }
  if (codings.size() > 1) return TransferCodingNotImplementedError();
  // Exactly "chunked": Beast frames it as chunked too (checked, not assumed).
  if (!parser.chunked()) return BadRequestError("Malformed Transfer-Encoding.");
  return std::nullopt;
}

// What the head itself must satisfy before anyone acts on it: exactly one Host (RFC 9112
// 3.2), and body framing that cannot be smuggled. (The version is Beast's: it parses
// HTTP/1.0 and HTTP/1.1 only, and anything else is answered 505 below.)
std::optional<ProxyError> CheckRequestHead(const RequestParser& parser) {
  const auto& req = parser.get();
  const size_t hosts = req.count(http::field::host);
  if (hosts > 1) return BadRequestError("A request must not carry more than one Host header.");
  if (hosts == 0 && req.version() >= 11) {
    return BadRequestError("An HTTP/1.1 request must carry a Host header.");
  }
  return CheckTransferEncoding(parser);
}

// A proxy-made error answer for a request we could not even parse; always closes.
asio::awaitable<void> SendParseError(ClientConnection& conn, int status, ProxyError error,
                                     bool head_only = false) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::connection, "close");
  AddCorsHeaders(res);
  res.body() = error.Json();
  res.prepare_payload();
  if (co_await WriteResponse(conn, res, std::chrono::seconds(5), head_only)) {
    co_await LingeringClose(conn);
  }
}

}  // namespace

asio::awaitable<void> HttpServer::RunSession(Thread& thread, tcp::socket socket) {
  ++open_connections_;
  ClientConnection conn(std::move(socket));
  conn.thread_index = thread.index;
  conn.budget = &budget_;
  {
    boost::system::error_code ec;
    conn.socket.set_option(tcp::no_delay(true), ec);
    conn.socket.non_blocking(true, ec);  // for WriteAll's immediate writes
    auto remote = conn.socket.remote_endpoint(ec);
    if (!ec) conn.remote_address = remote.address().to_string();
  }
  thread.connections.push_front(&conn);
  auto registration = thread.connections.begin();
  const ServerLimits& limits = options_.limits;
  bool first = true;

  for (;;) {
    if (draining_.load(std::memory_order_relaxed)) break;
    boost::system::error_code ec;
    // Between requests a client may stay silent for the idle timeout; once it starts a
    // request, the whole header must arrive within the header timeout.
    if (conn.watch && (conn.watch->pending || conn.watch->read_error)) {
      // The last request's watch read is still armed (or ended): nothing may touch the
      // buffer before its handler ran. With nothing buffered it is the wait for the next
      // request.
      const bool empty = conn.buffer.size() == 0;
      if (empty) {
        conn.idle = true;
        conn.ExpiresAfter(first ? limits.header_timeout : limits.idle_timeout);
      }
      ec = co_await AwaitWatchRead(conn);
      conn.idle = false;
      if (conn.buffer.size() == 0) {
        if (ec) break;
        continue;
      }
      // Bytes came before the error (say a pipelined request, then EOF): serve them; the
      // error ends the connection at the next wait.
      ec = {};
    } else if (conn.buffer.size() == 0) {
      conn.idle = true;
      conn.ExpiresAfter(first ? limits.header_timeout : limits.idle_timeout);
      size_t n = co_await conn.socket.async_read_some(
          conn.buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) conn.buffer.commit(n);
      conn.idle = false;
      if (ec) break;
      if (conn.buffer.size() == 0) continue;
    }
    first = false;

    // The previous request's parser is gone: its fields' arena can start over.
    conn.header_arena.release();
    RequestParser parser(std::piecewise_construct, std::make_tuple(),
                         std::make_tuple(ArenaAllocator(&conn.header_arena)));
    parser.header_limit(static_cast<uint32_t>(limits.header_limit));
    // The body limit is the handler's (it depends on the routing table): lift Beast's
    // 1 MB default so a large Content-Length does not fail the header read itself.
    parser.body_limit(boost::none);
    conn.ExpiresAfter(limits.header_timeout);
    // Usually the whole header is already buffered: parse it in place, and read more
    // only when it is not.
    size_t used = parser.put(conn.buffer.data(), ec);
    conn.buffer.consume(used);
    if (ec == http::error::need_more) {
      ec = {};
      co_await http::async_read_header(conn.socket, conn.buffer, parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      if (conn.timed_out) {
        // Too slow: the sweeper closed the connection; nothing to answer on.
      } else if (ec == http::error::bad_version) {
        // HTTP/1.2+, HTTP/2.0 sent as text, HTTP/0.9: one answer for every version but
        // the two served (docs/dataplane.md "Errors").
        co_await SendParseError(conn, 505, HttpVersionNotSupportedError());
      } else if (ec == http::error::header_limit) {
        co_await SendParseError(conn, 431, BadRequestError("Request header fields too large."));
      } else if (!IsPeerGone(ec) && ec != asio::error::operation_aborted) {
        co_await SendParseError(conn, 400, BadRequestError("Malformed HTTP request."));
      }
      break;
    }
    conn.ExpiresNever();
    if (std::optional<ProxyError> rejected = CheckRequestHead(parser)) {
      // The body's framing (or the head itself) cannot be trusted: answer and close,
      // never reading what follows as another request.
      co_await SendParseError(conn, rejected->status, std::move(*rejected),
                              parser.get().method() == http::verb::head);
      break;
    }
    bool keep_alive = co_await handler_.Handle(conn, parser);
    conn.ReleaseBody();  // the request has ended, on whatever path
    if (!keep_alive || conn.closing) break;
  }

  if (conn.watch) {
    conn.watch->active = false;
    conn.watch->conn = nullptr;  // a read completing after this must not touch `conn`
  }
  boost::system::error_code ignored;
  conn.socket.shutdown(tcp::socket::shutdown_send, ignored);
  // Closing aborts a pending watch read before `conn` (and its buffer) goes away.
  conn.socket.close(ignored);
  thread.connections.erase(registration);
  --open_connections_;
}

asio::awaitable<void> LingeringClose(ClientConnection& conn) {
  constexpr std::chrono::milliseconds kLingerTime{2000};
  constexpr size_t kLingerBytes = 64u << 20;
  boost::system::error_code ec;
  conn.socket.shutdown(tcp::socket::shutdown_send, ec);
  size_t discarded = 0;
  char sink[16384];
  conn.ExpiresAfter(kLingerTime);
  while (!ec && discarded < kLingerBytes) {
    discarded += co_await conn.socket.async_read_some(
        asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
  }
  conn.ExpiresNever();
}

asio::awaitable<bool> WriteRaw(ClientConnection& conn, std::string_view head, std::string_view body,
                               std::chrono::milliseconds timeout) {
  boost::system::error_code ec;
  conn.ExpiresAfter(timeout);
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(head.data(), head.size()),
                                                  asio::buffer(body.data(), body.size())};
  ec = co_await WriteAll(conn.socket, buffers);
  conn.ExpiresNever();
  co_return !ec;
}

asio::awaitable<bool> WriteResponse(ClientConnection& conn,
                                    http::response<http::string_body>& response,
                                    std::chrono::milliseconds timeout, bool head_only) {
  std::string& head = conn.head_scratch;
  head.clear();
  AppendStatusLine(head, response.version(), response.result_int());
  AppendFields(head, response.base());
  head += "\r\n";
  co_return co_await WriteRaw(conn, head, head_only ? std::string_view() : response.body(),
                              timeout);
}

}  // namespace llmproxy
