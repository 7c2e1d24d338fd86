// What the proxy needs to send to one backend, derived from its config once per table
// (RoutingTable::Build), so no request and no io thread recomputes it: the parsed url,
// the request target of every proxied route (dataplane/protocols/routes.h), the Host
// header, the Authorization value and which headers the backend's own `headers:` set.
// Read-only after Build, shared by every thread.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "dataplane/protocols/routes.h"
#include "dataplane/protocols/upstream_url.h"

namespace llmproxy {

struct BackendTarget {
  std::optional<UpstreamUrl> url;  // nullopt when the url does not parse (see url_error)
  std::string url_error;
  // Per proxied route: url base path + the suffix this backend's protocol serves it at
  // ("" when it cannot serve the route), and the protocol the upstream body is in.
  std::array<std::string, kProxyRouteCount> targets;
  std::array<Wire, kProxyRouteCount> wires{};
  std::string probe_target;  // url base path + "/models": the health probe (prober.h)
  std::string host_header;
  // The credential header: "Authorization: Bearer <api_key>" (api: openai) or
  // "x-api-key: <api_key>" (api: anthropic, which also gets an anthropic-version).
  std::string_view auth_name;
  std::string auth_value;
  BackendApi api = BackendApi::kOpenAI;
  ReasoningParam reasoning = ReasoningParam::kNone;  // reasoning_param, or known from the host
  // The provider origin (scheme, host, port): transport failures belong to it, so every
  // entry on it shares them (docs/routing.md "Health").
  std::string origin;
  // The provider account the entry spends from: origin + '\n' + key (never logged). Two
  // entries with the same account share its rate limits and its auth failures.
  std::string account;
  // What the backend's configured headers already set, so the proxy does not add its own.
  bool headers_set_host = false;
  bool headers_set_request_id = false;
  bool headers_set_content_type = false;

  const std::string& target(ProxyRoute route) const { return targets[static_cast<size_t>(route)]; }
  Wire wire(ProxyRoute route) const { return wires[static_cast<size_t>(route)]; }
};

BackendTarget MakeBackendTarget(const BackendConfig& backend);
// Where `route` goes on a backend of this protocol (docs/protocols.md "The routing matrix"):
// the url suffix ("" = not served) and the protocol of the upstream body.
std::pair<std::string_view, Wire> UpstreamRoute(ProxyRoute route, BackendApi api,
                                                bool native_responses);
std::vector<BackendTarget> MakeBackendTargets(const std::vector<BackendConfig>& backends);

}  // namespace llmproxy
