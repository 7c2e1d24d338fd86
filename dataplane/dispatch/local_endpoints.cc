#include "dataplane/dispatch/local_endpoints.h"

#include <algorithm>

#include "common/log/json_escape.h"
#include "dataplane/protocols/error_response.h"

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
}  // namespace

std::string ModelsJson(const RoutingTable* table) {
  std::string out = R"({"object":"list","data":[)";
  bool first = true;
  if (table != nullptr) {
    for (const std::string& model : table->models) {
      std::string_view owner = "llmproxy";
      if (const CandidateGroup* group = table->ServedBy(model);
          group != nullptr && !group->backends.empty()) {
        owner = table->backend(group->backends.front()).name;
      }
      AppendModel(out, first, model, owner);
    }
    for (const ModelAlias& alias : table->config.model_aliases) {
      if (std::binary_search(table->models.begin(), table->models.end(), alias.name)) continue;
      AppendModel(out, first, alias.name, "llmproxy");
    }
  }
  out += "]}";
  return out;
}

}  // namespace llmproxy
