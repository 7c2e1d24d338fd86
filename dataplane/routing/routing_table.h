// One configuration version turned into the lookups a request needs: which backends
// serve a model, what an alias expands to, the models to list. Built once per version
// and shared as std::shared_ptr<const RoutingTable>; a request keeps the table it
// started with while newer versions are swapped in (see dataplane/config_sync/table_store.h).
// It also carries what the proxy sends to each backend (BackendTarget: parsed url,
// targets, credentials), computed here once per version.
//
// The runtime parts are each backend's BackendState (outstanding, EWMA), reached through
// state(i), and its health trackers (origin, account, account-model: backend_health.h),
// reached through health(i) or, for one candidate of a group, candidate(group, k). Build()
// gives every backend fresh, private ones; BackendStateRegistry::Retain(table) rebinds
// them to the registry's shared ones (states by name, trackers by key) so they survive
// reloads. Call Retain before the table is shared with other threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/config/config.h"
#include "dataplane/routing/backend_health.h"
#include "dataplane/routing/backend_target.h"

namespace llmproxy {

class BackendState;
class BackendStateRegistry;

// A set of backends a request may be balanced over (the backends serving one model,
// or every backend). Owned by its RoutingTable; pointers stay valid while the table
// lives.
struct CandidateGroup {
  std::vector<size_t> backends;  // indices into config.backends, in config order
  // Parallel to backends: that candidate's trackers (origin, account, and the (account,
  // model) of the model this group sends it: the group's model; the all-backends group:
  // each one's default model), flat so a pick reads them without chasing pointers. Set
  // by Build, rebound by BackendStateRegistry::Retain before the table is shared.
  mutable std::vector<CandidateHealth> health;
  // The model this group sends ("" for the all-backends group: each default model).
  std::string model;
  // Round-robin cursor. One per group per table version: rotation over a model's
  // backends is independent of other models and restarts at a reload.
  mutable std::atomic<uint64_t> rr_cursor{0};
};

struct RoutingTable {
  uint64_t version = 0;
  Config config;

  // Every model some backend lists, sorted and unique (GET /v1/models).
  std::vector<std::string> models;

  static std::shared_ptr<const RoutingTable> Build(Config config, uint64_t version);

  // Backends listing `model` (config order), or nullptr when no backend lists it.
  const CandidateGroup* ServedBy(std::string_view model) const;
  // Every backend, config order (auto / unknown-model fallback / cross-model fallback).
  const CandidateGroup& AllBackends() const { return *all_; }
  // The alias called `name`, or nullptr.
  const ModelAlias* FindAlias(std::string_view name) const;
  // Index of the backend called `name` in config.backends.
  std::optional<size_t> FindBackend(std::string_view name) const;
  size_t backend_count() const { return config.backends.size(); }
  const BackendConfig& backend(size_t i) const { return config.backends[i]; }
  // Backend i's url, targets and credentials, derived from config.backends[i] by Build.
  const BackendTarget& target(size_t i) const { return targets_[i]; }

  // Runtime state of backend i (see the file comment). Never null.
  BackendState& state(size_t i) const { return *states_[i]; }
  const std::shared_ptr<BackendState>& state_ptr(size_t i) const { return states_[i]; }
  // Health trackers of backend i (backend_health.h). Never null.
  const BackendHealth& health(size_t i) const { return *health_[i]; }
  const std::shared_ptr<BackendHealth>& health_ptr(size_t i) const { return health_[i]; }
  // The trackers of the k-th member of `group` (one of this table's groups).
  const CandidateHealth& candidate(const CandidateGroup& group, size_t k) const {
    return group.health[k];
  }
  // llmproxy_backend_up{backend}: routable-or-not aside, its origin and account are not in
  // a cooldown and at least one of its models is not either.
  bool BackendUp(size_t i, SteadyTime now) const { return health_[i]->IsUp(now); }

  RoutingTable() = default;
  RoutingTable(const RoutingTable&) = delete;
  RoutingTable& operator=(const RoutingTable&) = delete;

 private:
  friend class BackendStateRegistry;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  template <typename V>
  using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

  std::vector<std::unique_ptr<CandidateGroup>> groups_;  // stable addresses
  StringMap<size_t> by_model_;                           // model -> index into groups_
  StringMap<size_t> aliases_;                            // name -> index into config.model_aliases
  StringMap<size_t> backends_;                           // name -> index into config.backends
  const CandidateGroup* all_ = nullptr;
  std::vector<BackendTarget> targets_;  // parallel to config.backends
  // Written only by Build and BackendStateRegistry::Retain, before the table is shared.
  mutable std::vector<std::shared_ptr<BackendState>> states_;
  mutable std::vector<std::shared_ptr<BackendHealth>> health_;
  // Points every group's health at the trackers in health_ (after a rebind).
  void BindGroupHealth() const;
};

// The model sent to `backend` when a step names none: its default_model (the loader fills
// it from models[0]; a pushed table may leave it empty, then models[0]).
const std::string& DefaultModelOf(const BackendConfig& backend);

}  // namespace llmproxy
