// Operator overrides set through Admin.SetBackendState (drain, enable, weight) that the
// control plane keeps on top of config.yaml: re-applied to every reloaded file so an
// edit does not silently undo a drain. Overrides for a backend the file no longer has
// are kept (it may come back) but do nothing. Pure.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/config/config.h"

namespace llmproxy {

struct BackendOverride {
  bool drained = false;
  std::optional<uint32_t> weight;
  bool empty() const { return !drained && !weight; }
};

class BackendOverrides {
 public:
  void Drain(const std::string& backend);
  void Enable(const std::string& backend);  // undoes a drain; keeps a weight override
  // Sets the effective weight; setting the file's weight clears the override.
  void SetWeight(const std::string& backend, uint32_t weight, uint32_t configured_weight);

  // `file` with the overrides applied.
  Config Apply(Config file) const;
  std::optional<BackendOverride> Get(const std::string& backend) const;
  const std::map<std::string, BackendOverride>& all() const { return overrides_; }

 private:
  std::map<std::string, BackendOverride> overrides_;
};

}  // namespace llmproxy
