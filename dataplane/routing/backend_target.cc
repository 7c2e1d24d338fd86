#include "dataplane/routing/backend_target.h"

#include <strings.h>

namespace llmproxy {
namespace {

bool EqualsNoCase(const std::string& a, const char* b) { return ::strcasecmp(a.c_str(), b) == 0; }

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The reasoning option of the providers whose API is known (backend_target.h).
ReasoningParam KnownReasoningParam(const std::optional<UpstreamUrl>& url) {
  if (!url) return ReasoningParam::kNone;
  const std::string_view host = url->host;
  if (host == "api.openai.com" || EndsWith(host, ".openai.azure.com")) {
    return ReasoningParam::kReasoningEffort;
  }
  if (host == "api.deepseek.com" || EndsWith(host, ".volces.com")) return ReasoningParam::kThinking;
  return ReasoningParam::kNone;
}

}  // namespace

std::pair<std::string_view, Wire> UpstreamRoute(ProxyRoute route, BackendApi api,
                                                bool native_responses) {
  if (api == BackendApi::kAnthropic) {
    switch (route) {
      case ProxyRoute::kChatCompletions:
      case ProxyRoute::kMessages:
      case ProxyRoute::kResponses:
        return {"/messages", Wire::kMessages};
      case ProxyRoute::kCountTokens:
        return {"/messages/count_tokens", Wire::kPlain};
      case ProxyRoute::kCompletions:
      case ProxyRoute::kEmbeddings:
        break;
    }
    return {"", Wire::kPlain};
  }
  switch (route) {
    case ProxyRoute::kChatCompletions:
    case ProxyRoute::kMessages:
      return {"/chat/completions", Wire::kChat};
    case ProxyRoute::kResponses:
      if (native_responses) return {"/responses", Wire::kResponses};
      return {"/chat/completions", Wire::kChat};
    case ProxyRoute::kCompletions:
    case ProxyRoute::kEmbeddings:
    case ProxyRoute::kCountTokens:
      break;
  }
  return {RouteOf(route).upstream_suffix, Wire::kPlain};
}

BackendTarget MakeBackendTarget(const BackendConfig& backend) {
  BackendTarget t;
  t.url = ParseUpstreamUrl(backend.url, &t.url_error);
  if (t.url) {
    t.host_header = t.url->HostHeader();
    for (size_t r = 0; r < kProxyRouteCount; ++r) {
      const auto [suffix, wire] =
          UpstreamRoute(static_cast<ProxyRoute>(r), backend.api, backend.native_responses);
      if (!suffix.empty()) t.targets[r] = t.url->Target(suffix);
      t.wires[r] = wire;
    }
    t.probe_target = t.url->Target("/models");
  }
  if (backend.api == BackendApi::kAnthropic) {
    t.auth_name = "x-api-key";
    t.auth_value = backend.api_key;
  } else {
    t.auth_name = "Authorization";
    t.auth_value = "Bearer " + backend.api_key;
  }
  t.api = backend.api;
  t.reasoning = backend.reasoning_param.value_or(KnownReasoningParam(t.url));
  // An unparsable url is its own account: nothing is shared with it.
  t.origin = t.url ? t.url->Origin() : backend.url;
  t.account = t.origin + '\n' + backend.api_key;
  for (const auto& [name, value] : backend.headers) {
    t.headers_set_host |= EqualsNoCase(name, "host");
    t.headers_set_request_id |= EqualsNoCase(name, "x-request-id");
    t.headers_set_content_type |= EqualsNoCase(name, "content-type");
  }
  return t;
}

std::vector<BackendTarget> MakeBackendTargets(const std::vector<BackendConfig>& backends) {
  std::vector<BackendTarget> targets;
  targets.reserve(backends.size());
  for (const BackendConfig& b : backends) targets.push_back(MakeBackendTarget(b));
  return targets;
}

}  // namespace llmproxy
