#include "dataplane/observe/metrics_server.h"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "common/log/logging.h"
#include "dataplane/observe/metrics.h"

namespace llmproxy {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kReadTimeout = std::chrono::seconds(10);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr size_t kHeaderLimit = 8 * 1024;
constexpr size_t kBodyLimit = 4 * 1024;  // scrapes carry no body; refuse big ones
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

http::response<http::string_body> MakeResponse(const http::request<http::string_body>& req,
                                               const MetricsServer::Render& render) {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  if (target != "/metrics") {
    res.result(http::status::not_found);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "not found; metrics are at /metrics\n";
  } else if (req.method() != http::verb::get) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "method not allowed\n";
  } else {
    try {
      res.body() = render();
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception& e) {
      LogError("metrics render failed", {{"error", e.what()}});
      res.result(http::status::internal_server_error);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "metrics unavailable\n";
    }
  }
  res.prepare_payload();
  return res;
}

asio::awaitable<void> ServeConnection(tcp::socket socket, const MetricsServer::Render& render) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(kHeaderLimit + kBodyLimit);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    stream.expires_after(kReadTimeout);
    auto [read_ec, read_n] = co_await http::async_read(stream, buffer, parser, kAwait);
    (void)read_n;
    if (read_ec) break;  // closed, timed out or malformed: just drop the connection
    http::response<http::string_body> res = MakeResponse(parser.get(), render);
    bool keep_alive = res.keep_alive();
    stream.expires_after(kWriteTimeout);
    auto [write_ec, write_n] = co_await http::async_write(stream, res, kAwait);
    (void)write_n;
    if (write_ec || !keep_alive) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

struct MetricsServer::Impl {
  Render render;
  MetricsServerOptions options;
  asio::io_context ioc{1};
  std::optional<tcp::acceptor> acceptor;  // after ioc: destroyed before it
  std::thread thread;
  std::atomic<uint16_t> port{0};
  std::mutex mu;
  bool started = false;
  bool stopped = false;

  asio::awaitable<void> Accept() {
    asio::steady_timer backoff(ioc);
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(kAwait);
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      if (ec) {
        // E.g. out of file descriptors: wait a little instead of spinning.
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(kAwait);
        continue;
      }
      asio::co_spawn(ioc, ServeConnection(std::move(socket), render), asio::detached);
    }
  }
};

MetricsServer::MetricsServer(Render render, MetricsServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->render = std::move(render);
  impl_->options = std::move(options);
}

MetricsServer::MetricsServer(Metrics& metrics, MetricsServerOptions options)
    : MetricsServer([&metrics] { return metrics.Serialize(); }, std::move(options)) {}

MetricsServer::~MetricsServer() { Stop(); }

std::string MetricsServer::Start() {
  std::lock_guard lock(impl_->mu);
  if (impl_->started) return "metrics server already started";
  beast::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto endpoints = resolver.resolve(impl_->options.host, std::to_string(impl_->options.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return "metrics listener: cannot resolve " + impl_->options.host + ": " + ec.message();
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  tcp::acceptor& acceptor = impl_->acceptor.emplace(impl_->ioc);
  auto fail = [&](std::string_view what) {
    impl_->acceptor.reset();
    return "metrics listener on " + impl_->options.host + ":" +
           std::to_string(impl_->options.port) + ": " + std::string(what) + ": " + ec.message();
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("reuse_address");
  acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  impl_->port = acceptor.local_endpoint(ec).port();
  impl_->started = true;
  asio::co_spawn(impl_->ioc, impl_->Accept(), asio::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
  return "";
}

void MetricsServer::Stop() {
  std::lock_guard lock(impl_->mu);
  if (!impl_->started || impl_->stopped) return;
  impl_->stopped = true;
  // Stopping the context abandons every connection; their frames (and sockets)
  // are destroyed with the io_context.
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  beast::error_code ignored;
  impl_->acceptor->close(ignored);
}

uint16_t MetricsServer::port() const { return impl_->port.load(); }

}  // namespace llmproxy
