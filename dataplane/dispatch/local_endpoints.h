// Bodies of the endpoints the worker answers itself (no upstream): GET /health and
// GET /v1/models. Pure: table in, JSON bytes out.
#pragma once

#include <string>

#include "dataplane/routing/routing_table.h"

namespace llmproxy {

// {"status":"ok","backends":N,"mode":"random","config_version":V}, or
// {"status":"starting","backends":0,"config_version":0} when `table` is null (503).
std::string HealthJson(const RoutingTable* table);

// OpenAI list shape: {"object":"list","data":[{"id":..,"object":"model","created":0,
// "owned_by":..}, ...]}: every model some backend lists (owned_by = the first backend
// listing it), then every alias not already listed (owned_by "llmproxy"), since a
// client may request either. `data` is an array even when empty. A key with `models`
// (non-null `key`) sees only the names it may ask for.
std::string ModelsJson(const RoutingTable* table, const ClientKey* key = nullptr);
// The same list in Anthropic's shape: {"data":[{"type":"model","id","display_name",
// "created_at"}],"has_more":false,"first_id","last_id"}.
std::string AnthropicModelsJson(const RoutingTable* table, const ClientKey* key = nullptr);

}  // namespace llmproxy
