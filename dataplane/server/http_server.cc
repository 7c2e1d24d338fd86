#include "dataplane/server/http_server.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <future>
#include <list>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>

#include "common/log/logging.h"
#include "dataplane/http/cors.h"
#include "dataplane/protocols/error_response.h"
#include "dataplane/http/http_head.h"
#include "dataplane/http/peer_error.h"
#include "dataplane/http/socket_write.h"

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
      // EMFILE and friends: back off a little instead of spinning.
      LogWarn("accept failed", {{"error", ec.message()}});
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
        // EOF or a reset: the client left.
        const boost::system::error_code gone = ec ? ec : asio::error::eof;
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

}  // namespace

void StartClientWatch(ClientConnection& conn, void (*on_gone)(void*), void* ctx) {
  if (!conn.watch) conn.watch = std::make_shared<ClientWatchState>(conn.socket.get_executor());
  conn.watch->on_gone = on_gone;
  conn.watch->ctx = ctx;
  conn.watch->active = true;
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

// A proxy-made error answer for a request we could not even parse; always closes.
asio::awaitable<void> SendParseError(ClientConnection& conn, int status, ProxyError error) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::connection, "close");
  AddCorsHeaders(res);
  res.body() = error.Json();
  res.prepare_payload();
  if (co_await WriteResponse(conn, res, std::chrono::seconds(5))) co_await LingeringClose(conn);
}

}  // namespace

asio::awaitable<void> HttpServer::RunSession(Thread& thread, tcp::socket socket) {
  ++open_connections_;
  ClientConnection conn(std::move(socket));
  conn.thread_index = thread.index;
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
      } else if (ec == http::error::header_limit) {
        co_await SendParseError(conn, 431, BadRequestError("Request header fields too large."));
      } else if (!IsPeerGone(ec) && ec != asio::error::operation_aborted) {
        co_await SendParseError(conn, 400, BadRequestError("Malformed HTTP request."));
      }
      break;
    }
    conn.ExpiresNever();
    bool keep_alive = co_await handler_.Handle(conn, parser);
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

asio::awaitable<bool> WriteRaw(ClientConnection& conn, std::string_view head,
                               std::string_view body, std::chrono::milliseconds timeout) {
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
                                    std::chrono::milliseconds timeout) {
  std::string& head = conn.head_scratch;
  head.clear();
  AppendStatusLine(head, response.version(), response.result_int());
  AppendFields(head, response.base());
  head += "\r\n";
  co_return co_await WriteRaw(conn, head, response.body(), timeout);
}

}  // namespace llmproxy
