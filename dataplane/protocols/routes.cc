#include "dataplane/protocols/routes.h"

#include <array>

namespace llmproxy {

namespace {

// Proxy rows first, in ProxyRoute order (RouteOf indexes them).
constexpr std::array<Route, 8> kRoutes = {{
    {"/v1/chat/completions", RouteKind::kProxy, ProxyRoute::kChatCompletions, "/chat/completions",
     "POST, OPTIONS"},
    {"/v1/completions", RouteKind::kProxy, ProxyRoute::kCompletions, "/completions",
     "POST, OPTIONS"},
    {"/v1/embeddings", RouteKind::kProxy, ProxyRoute::kEmbeddings, "/embeddings", "POST, OPTIONS"},
    // Translated to chat completions for an OpenAI backend (routing/backend_target.cc).
    {"/v1/messages", RouteKind::kProxy, ProxyRoute::kMessages, "/chat/completions",
     "POST, OPTIONS"},
    // An OpenAI backend cannot count: the worker answers an estimate.
    {"/v1/messages/count_tokens", RouteKind::kProxy, ProxyRoute::kCountTokens, "",
     "POST, OPTIONS"},
    {"/v1/responses", RouteKind::kProxy, ProxyRoute::kResponses, "/chat/completions",
     "POST, OPTIONS"},
    {"/health", RouteKind::kHealth, {}, {}, "GET, HEAD, OPTIONS"},
    {"/v1/models", RouteKind::kModels, {}, {}, "GET, HEAD, OPTIONS"},
}};

static_assert(kRoutes[0].proxy == ProxyRoute::kChatCompletions &&
              kRoutes[1].proxy == ProxyRoute::kCompletions &&
              kRoutes[2].proxy == ProxyRoute::kEmbeddings &&
              kRoutes[3].proxy == ProxyRoute::kMessages &&
              kRoutes[4].proxy == ProxyRoute::kCountTokens &&
              kRoutes[5].proxy == ProxyRoute::kResponses && kProxyRouteCount == 6);

}  // namespace

std::span<const Route> Routes() { return kRoutes; }

const Route* FindRoute(std::string_view path) {
  for (const Route& r : kRoutes) {
    if (r.path == path) return &r;
  }
  return nullptr;
}

const Route& RouteOf(ProxyRoute route) { return kRoutes[static_cast<size_t>(route)]; }

Wire ClientWire(ProxyRoute route) {
  switch (route) {
    case ProxyRoute::kChatCompletions:
      return Wire::kChat;
    case ProxyRoute::kMessages:
      return Wire::kMessages;
    case ProxyRoute::kResponses:
      return Wire::kResponses;
    case ProxyRoute::kCompletions:
    case ProxyRoute::kEmbeddings:
    case ProxyRoute::kCountTokens:
      break;
  }
  return Wire::kPlain;
}

}  // namespace llmproxy
