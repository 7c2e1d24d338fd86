// Maps each request to what answers it: the proxy routes go to the ProxyPipeline, /health
// and /v1/models are answered locally, OPTIONS is a CORS preflight, anything else gets
// a 404 or 405 JSON error.
#pragma once

#include <string_view>

#include "dataplane/http_server.h"
#include "dataplane/table_store.h"

namespace llmproxy {

class ProxyPipeline;

// The three proxied OpenAI endpoints (their upstream suffix is the route minus "/v1").
enum class ProxyRoute { kChatCompletions, kCompletions, kEmbeddings };
std::string_view RoutePath(ProxyRoute route);  // "/v1/chat/completions", ...

class RequestRouter final : public RequestHandler {
 public:
  RequestRouter(TableStore& store, ProxyPipeline& pipeline) : store_(store), pipeline_(pipeline) {}

  asio::awaitable<bool> Handle(ClientConnection& conn, RequestParser& parser) override;

 private:
  TableStore& store_;
  ProxyPipeline& pipeline_;
};

}  // namespace llmproxy
