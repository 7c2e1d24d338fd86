#include "controlplane/core/backend_overrides.h"

#include <utility>

namespace llmproxy {

void BackendOverrides::Drain(const std::string& backend) { overrides_[backend].drained = true; }

void BackendOverrides::Enable(const std::string& backend) {
  auto it = overrides_.find(backend);
  if (it == overrides_.end()) return;
  it->second.drained = false;
  if (it->second.empty()) overrides_.erase(it);
}

void BackendOverrides::SetWeight(const std::string& backend, uint32_t weight,
                                 uint32_t configured_weight) {
  BackendOverride& o = overrides_[backend];
  if (weight == configured_weight) {
    o.weight.reset();
  } else {
    o.weight = weight;
  }
  if (o.empty()) overrides_.erase(backend);
}

Config BackendOverrides::Apply(Config file) const {
  for (BackendConfig& b : file.backends) {
    auto it = overrides_.find(b.name);
    if (it == overrides_.end()) continue;
    if (it->second.drained) b.drained = true;
    if (it->second.weight) b.weight = *it->second.weight;
  }
  return file;
}

std::optional<BackendOverride> BackendOverrides::Get(const std::string& backend) const {
  auto it = overrides_.find(backend);
  if (it == overrides_.end()) return std::nullopt;
  return it->second;
}

}  // namespace llmproxy
