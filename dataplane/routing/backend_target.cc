#include "dataplane/routing/backend_target.h"

#include <strings.h>

namespace llmproxy {
namespace {

bool EqualsNoCase(const std::string& a, const char* b) { return ::strcasecmp(a.c_str(), b) == 0; }

}  // namespace

BackendTarget MakeBackendTarget(const BackendConfig& backend) {
  BackendTarget t;
  t.url = ParseUpstreamUrl(backend.url, &t.url_error);
  if (t.url) {
    t.host_header = t.url->HostHeader();
    for (size_t r = 0; r < kProxyRouteCount; ++r) {
      t.targets[r] = t.url->Target(RouteOf(static_cast<ProxyRoute>(r)).upstream_suffix);
    }
    t.probe_target = t.url->Target("/models");
  }
  t.bearer = "Bearer " + backend.api_key;
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
