#include "dataplane/protocols/routes.h"

#include <array>

namespace llmproxy {

namespace {

// Proxy rows first, in ProxyRoute order (RouteOf indexes them).
constexpr std::array<Route, 5> kRoutes = {{
    {"/v1/chat/completions", RouteKind::kProxy, ProxyRoute::kChatCompletions, "/chat/completions",
     "POST, OPTIONS"},
    {"/v1/completions", RouteKind::kProxy, ProxyRoute::kCompletions, "/completions",
     "POST, OPTIONS"},
    {"/v1/embeddings", RouteKind::kProxy, ProxyRoute::kEmbeddings, "/embeddings", "POST, OPTIONS"},
    {"/health", RouteKind::kHealth, {}, {}, "GET, HEAD, OPTIONS"},
    {"/v1/models", RouteKind::kModels, {}, {}, "GET, HEAD, OPTIONS"},
}};

static_assert(kRoutes[0].proxy == ProxyRoute::kChatCompletions &&
              kRoutes[1].proxy == ProxyRoute::kCompletions &&
              kRoutes[2].proxy == ProxyRoute::kEmbeddings && kProxyRouteCount == 3);

}  // namespace

std::span<const Route> Routes() { return kRoutes; }

const Route* FindRoute(std::string_view path) {
  for (const Route& r : kRoutes) {
    if (r.path == path) return &r;
  }
  return nullptr;
}

const Route& RouteOf(ProxyRoute route) { return kRoutes[static_cast<size_t>(route)]; }

}  // namespace llmproxy
