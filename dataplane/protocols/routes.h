// The one route table: every path the worker answers, what answers it, and for proxied
// routes the suffix appended to a backend's url. The dispatcher matches paths against it,
// the proxy pipeline builds per-backend upstream targets from it, and a new route is one
// row here (plus its handler).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace llmproxy {

// The proxied endpoints, in the order of kRoutes' proxy rows (indexes per-backend targets).
enum class ProxyRoute {
  kChatCompletions,
  kCompletions,
  kEmbeddings,
  kMessages,     // Anthropic Messages
  kCountTokens,  // Anthropic /v1/messages/count_tokens
  kResponses,    // OpenAI Responses
};
inline constexpr size_t kProxyRouteCount = 6;

// The protocol a request body or an upstream answer is written in (docs/protocols.md).
// kPlain: a route that is never translated (completions, embeddings, count_tokens).
enum class Wire { kChat, kMessages, kResponses, kPlain };
// What the client speaks on `route`.
Wire ClientWire(ProxyRoute route);

enum class RouteKind { kProxy, kHealth, kModels };

struct Route {
  std::string_view path;  // exact match on the request path, query excluded
  RouteKind kind;
  ProxyRoute proxy = ProxyRoute::kChatCompletions;  // kind == kProxy only
  std::string_view upstream_suffix;  // kind == kProxy, an OpenAI backend: "/chat/completions"
  std::string_view allow;                           // methods served, as a 405's Allow header
};

std::span<const Route> Routes();
// The route for `path` (no query string), or nullptr.
const Route* FindRoute(std::string_view path);
const Route& RouteOf(ProxyRoute route);
inline std::string_view RoutePath(ProxyRoute route) { return RouteOf(route).path; }

}  // namespace llmproxy
