#include "dataplane/dispatch/request_router.h"

#include <string>
#include <vector>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include "dataplane/dispatch/local_endpoints.h"
#include "dataplane/http/cors.h"
#include "dataplane/protocols/error_response.h"
#include "dataplane/proxy/proxy_pipeline.h"
#include "dataplane/routing/client_auth.h"

namespace llmproxy {

namespace {

constexpr std::chrono::seconds kLocalWriteTimeout{30};

// The path of an origin-form target ("/v1/models?x") or of an absolute-form one
// ("http://host/v1/models", RFC 9112 3.2.2: a server must accept it); the query aside.
std::string_view PathOf(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() && beast::iequals(target.substr(0, scheme.size()), scheme)) {
      const size_t path = target.find_first_of("/?", scheme.size());
      target = path == std::string_view::npos ? std::string_view("/") : target.substr(path);
      if (target.front() == '?') target = "/";
      break;
    }
  }
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

bool IsHead(const RequestParser& parser) { return parser.get().method() == http::verb::head; }

// Hop-by-hop headers the client named in Connection (RFC 9110 7.6.1) are for us, not for
// the upstream: removed from the request before it is proxied. Connection itself and the
// fixed hop-by-hop set are dropped by the pipeline anyway.
void RemoveConnectionListedFields(RequestParser& parser) {
  auto& req = parser.get();
  std::string_view connection = req[http::field::connection];
  if (connection.empty()) return;
  // Names are copied first: erasing fields must not pull the list from under us.
  std::vector<std::string> names;
  for (std::string_view token : http::token_list(connection)) {
    if (beast::iequals(token, "close") || beast::iequals(token, "keep-alive") ||
        beast::iequals(token, "connection")) {
      continue;
    }
    names.emplace_back(token);
  }
  for (const std::string& name : names) req.erase(name);
}

// A request whose body we do not read leaves bytes on the connection: close after it.
bool BodyUnread(const RequestParser& parser) { return !parser.is_done(); }

// A locally made answer; to HEAD, the same head (Content-Length of the body a GET gets)
// without the body. `allow`: the route's methods, sent with a 405.
asio::awaitable<bool> SendLocal(ClientConnection& conn, const RequestParser& parser,
                                http::status status, std::string body,
                                std::string_view content_type = "application/json",
                                std::string_view allow = {}) {
  const auto& req = parser.get();
  bool keep_alive = req.keep_alive() && !BodyUnread(parser) && !conn.closing;
  http::response<http::string_body> res{status, req.version()};
  res.set(http::field::content_type, content_type);
  if (!allow.empty()) res.set(http::field::allow, allow);
  AddCorsHeaders(res);
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  bool written = co_await WriteResponse(conn, res, kLocalWriteTimeout, IsHead(parser));
  co_return written&& keep_alive;
}

asio::awaitable<bool> SendError(ClientConnection& conn, const RequestParser& parser,
                                const ProxyError& error) {
  co_return co_await SendLocal(conn, parser, static_cast<http::status>(error.status), error.Json());
}

asio::awaitable<bool> SendMethodNotAllowed(ClientConnection& conn, const RequestParser& parser,
                                           const Route& route) {
  const ProxyError error = MethodNotAllowedError(parser.get().method_string());
  co_return co_await SendLocal(conn, parser, static_cast<http::status>(error.status), error.Json(),
                               "application/json", route.allow);
}

// GET, and HEAD (answered like GET, without the body).
bool IsGetOrHead(const RequestParser& parser) {
  return parser.get().method() == http::verb::get || IsHead(parser);
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
        co_return co_await SendMethodNotAllowed(conn, parser, *route);
      }
      // The pipeline checks the client key against the table it uses (ProxyPipeline).
      RemoveConnectionListedFields(parser);
      co_return co_await pipeline_.Handle(conn, parser, route->proxy);
    case RouteKind::kHealth: {
      if (!IsGetOrHead(parser)) co_return co_await SendMethodNotAllowed(conn, parser, *route);
      std::shared_ptr<const RoutingTable> table = store_.Current();
      co_return co_await SendLocal(conn, parser,
                                   table ? http::status::ok : http::status::service_unavailable,
                                   HealthJson(table.get()));
    }
    case RouteKind::kModels: {
      if (!IsGetOrHead(parser)) co_return co_await SendMethodNotAllowed(conn, parser, *route);
      std::shared_ptr<const RoutingTable> table = store_.Current();
      const ClientAuth auth =
          table ? AuthenticateClient(table->config.auth_keys, req[http::field::authorization],
                                     req["x-api-key"])
                : ClientAuth{.ok = true, .key = nullptr};
      if (!auth.ok) co_return co_await SendError(conn, parser, InvalidApiKeyError());
      // Anthropic's SDKs send anthropic-version: they get the list in Anthropic's shape.
      // A named local, not a conditional temporary in the co_await: g++ 12 destroys such a
      // temporary twice in a coroutine frame.
      std::string models;
      if (req["anthropic-version"].empty()) {
        models = ModelsJson(table.get(), auth.key);
      } else {
        models = AnthropicModelsJson(table.get(), auth.key);
      }
      co_return co_await SendLocal(conn, parser, http::status::ok, std::move(models));
    }
  }
  co_return false;
}

}  // namespace llmproxy
