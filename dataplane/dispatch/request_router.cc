#include "dataplane/dispatch/request_router.h"

#include "dataplane/dispatch/client_auth.h"
#include "dataplane/dispatch/local_endpoints.h"
#include "dataplane/http/cors.h"
#include "dataplane/protocols/error_response.h"
#include "dataplane/proxy/proxy_pipeline.h"

namespace llmproxy {

namespace {

constexpr std::chrono::seconds kLocalWriteTimeout{30};

std::string_view PathOf(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

// A request whose body we do not read leaves bytes on the connection: close after it.
bool BodyUnread(const RequestParser& parser) { return !parser.is_done(); }

asio::awaitable<bool> SendLocal(ClientConnection& conn, const RequestParser& parser,
                                http::status status, std::string body,
                                std::string_view content_type = "application/json") {
  const auto& req = parser.get();
  bool keep_alive = req.keep_alive() && !BodyUnread(parser) && !conn.closing;
  http::response<http::string_body> res{status, req.version()};
  res.set(http::field::content_type, content_type);
  AddCorsHeaders(res);
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  bool written = co_await WriteResponse(conn, res, kLocalWriteTimeout);
  co_return written&& keep_alive;
}

asio::awaitable<bool> SendError(ClientConnection& conn, const RequestParser& parser,
                                const ProxyError& error) {
  co_return co_await SendLocal(conn, parser, static_cast<http::status>(error.status), error.Json());
}

}  // namespace

asio::awaitable<bool> RequestRouter::Handle(ClientConnection& conn, RequestParser& parser) {
  const auto& req = parser.get();
  std::string_view path = PathOf(req.target());
  const Route* route = FindRoute(path);

  if (req.method() == http::verb::options) {
    const auto& req_headers = req[http::field::access_control_request_headers];
    bool keep_alive = req.keep_alive() && !BodyUnread(parser) && !conn.closing;
    http::response<http::string_body> res{http::status::no_content, req.version()};
    AddCorsHeaders(res);
    AddPreflightHeaders(res, req_headers);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    bool written = co_await WriteResponse(conn, res, kLocalWriteTimeout);
    co_return written&& keep_alive;
  }

  if (route == nullptr) co_return co_await SendError(conn, parser, RouteNotFoundError(path));
  switch (route->kind) {
    case RouteKind::kProxy:
      if (req.method() != http::verb::post) {
        co_return co_await SendError(conn, parser, MethodNotAllowedError(req.method_string()));
      }
      {
        std::shared_ptr<const RoutingTable> table = store_.Current();
        const bool authorized =
            !table || IsClientAuthorized(table->config.auth_keys, req[http::field::authorization]);
        co_return co_await pipeline_.Handle(conn, parser, route->proxy, authorized);
      }
    case RouteKind::kHealth: {
      if (req.method() != http::verb::get) {
        co_return co_await SendError(conn, parser, MethodNotAllowedError(req.method_string()));
      }
      std::shared_ptr<const RoutingTable> table = store_.Current();
      co_return co_await SendLocal(conn, parser,
                                   table ? http::status::ok : http::status::service_unavailable,
                                   HealthJson(table.get()));
    }
    case RouteKind::kModels: {
      if (req.method() != http::verb::get) {
        co_return co_await SendError(conn, parser, MethodNotAllowedError(req.method_string()));
      }
      std::shared_ptr<const RoutingTable> table = store_.Current();
      if (table && !IsClientAuthorized(table->config.auth_keys, req[http::field::authorization])) {
        co_return co_await SendError(conn, parser, InvalidApiKeyError());
      }
      co_return co_await SendLocal(conn, parser, http::status::ok, ModelsJson(table.get()));
    }
  }
  co_return false;
}

}  // namespace llmproxy
