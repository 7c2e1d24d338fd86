#include "dataplane/dispatch/local_endpoints.h"

#include <algorithm>

#include "common/log/json_escape.h"
#include "dataplane/protocols/error_response.h"
#include "dataplane/routing/client_auth.h"

namespace llmproxy {

std::string HealthJson(const RoutingTable* table) {
  if (table == nullptr) return R"({"status":"starting","backends":0,"config_version":0})";
  std::string out = R"({"status":"ok","backends":)";
  out += std::to_string(table->backend_count());
  out += R"(,"mode":")";
  AppendJsonEscaped(out, ToString(table->config.mode));
  out += R"(","config_version":)";
  out += std::to_string(table->version);
  out += '}';
  return out;
}

namespace {
void AppendModel(std::string& out, bool& first, std::string_view id, std::string_view owner) {
  if (!first) out += ',';
  first = false;
  out += R"({"id":")";
  AppendJsonEscaped(out, id);
  out += R"(","object":"model","created":0,"owned_by":")";
  AppendJsonEscaped(out, owner);
  out += "\"}";
}

// Every model name clients may ask for (served models, then aliases that are not also
// served), with the backend that serves it first ("llmproxy" for an alias).
template <class F>
void ForEachListedModel(const RoutingTable* table, const ClientKey* key, F f) {
  if (table == nullptr) return;
  for (const std::string& model : table->models) {
    if (!KeyAllowsModel(key, model)) continue;
    std::string_view owner = "llmproxy";
    if (const CandidateGroup* group = table->ServedBy(model);
        group != nullptr && !group->backends.empty()) {
      owner = table->backend(group->backends.front()).name;
    }
    f(model, owner);
  }
  for (const ModelAlias& alias : table->config.model_aliases) {
    if (std::binary_search(table->models.begin(), table->models.end(), alias.name)) continue;
    if (!KeyAllowsModel(key, alias.name)) continue;
    f(alias.name, "llmproxy");
  }
}
}  // namespace

std::string ModelsJson(const RoutingTable* table, const ClientKey* key) {
  std::string out = R"({"object":"list","data":[)";
  bool first = true;
  ForEachListedModel(table, key, [&](std::string_view model, std::string_view owner) {
    AppendModel(out, first, model, owner);
  });
  out += "]}";
  return out;
}

std::string AnthropicModelsJson(const RoutingTable* table, const ClientKey* key) {
  std::string out = R"({"data":[)";
  std::string first_id;
  std::string last_id;
  bool first = true;
  ForEachListedModel(table, key, [&](std::string_view model, std::string_view) {
    if (!first) out += ',';
    first = false;
    out += R"({"type":"model","id":")";
    AppendJsonEscaped(out, model);
    out += R"(","display_name":")";
    AppendJsonEscaped(out, model);
    out += R"(","created_at":"1970-01-01T00:00:00Z"})";
    if (first_id.empty()) first_id = model;
    last_id = model;
  });
  out += R"(],"has_more":false,"first_id":)";
  auto id_or_null = [&](const std::string& id) {
    if (id.empty()) {
      out += "null";
      return;
    }
    out += '"';
    AppendJsonEscaped(out, id);
    out += '"';
  };
  id_or_null(first_id);
  out += R"(,"last_id":)";
  id_or_null(last_id);
  out += '}';
  return out;
}

}  // namespace llmproxy
