// Maps each request to what answers it: the proxy routes go to the ProxyPipeline, /health
// and /v1/models are answered locally, OPTIONS is a CORS preflight, anything else gets
// a 404 or 405 JSON error.
#pragma once

#include <string_view>

#include "dataplane/server/http_server.h"
#include "dataplane/config_sync/table_store.h"
#include "dataplane/protocols/routes.h"

namespace llmproxy {

class ProxyPipeline;

class RequestRouter final : public RequestHandler {
 public:
  RequestRouter(TableStore& store, ProxyPipeline& pipeline) : store_(store), pipeline_(pipeline) {}

  asio::awaitable<bool> Handle(ClientConnection& conn, RequestParser& parser) override;

 private:
  TableStore& store_;
  ProxyPipeline& pipeline_;
};

}  // namespace llmproxy
