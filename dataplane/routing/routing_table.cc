#include "dataplane/routing/routing_table.h"

#include <algorithm>
#include <map>

#include "dataplane/routing/backend_state.h"

namespace llmproxy {

std::shared_ptr<const RoutingTable> RoutingTable::Build(Config config, uint64_t version) {
  auto table = std::make_shared<RoutingTable>();
  table->version = version;
  table->config = std::move(config);
  const auto& backends = table->config.backends;

  auto all = std::make_unique<CandidateGroup>();
  for (size_t i = 0; i < backends.size(); ++i) {
    all->backends.push_back(i);
    table->backends_.emplace(backends[i].name, i);
    table->states_.push_back(std::make_shared<BackendState>(backends[i].name));
  }
  table->targets_ = MakeBackendTargets(backends);
  table->all_ = all.get();
  table->groups_.push_back(std::move(all));

  // Private trackers, shared within this table by key (Retain swaps in the worker's).
  std::map<std::string, std::shared_ptr<HealthTracker>, std::less<>> trackers;
  auto keyed = [&](std::string key) {
    auto it = trackers.find(key);
    if (it == trackers.end()) {
      it = trackers.emplace(key, std::make_shared<HealthTracker>(table->config.health)).first;
    }
    return BackendHealth::Keyed{std::move(key), it->second};
  };
  for (size_t i = 0; i < backends.size(); ++i) {
    const BackendTarget& t = table->targets_[i];
    auto health = std::make_shared<BackendHealth>();
    health->origin = keyed(OriginHealthKey(t.origin));
    health->account = keyed(AccountHealthKey(t.account));
    std::vector<std::string> models = backends[i].models;
    models.push_back(DefaultModelOf(backends[i]));
    std::sort(models.begin(), models.end());
    models.erase(std::unique(models.begin(), models.end()), models.end());
    for (std::string& m : models) {
      BackendHealth::Keyed k = keyed(ModelHealthKey(t.account, m));
      health->models.push_back({std::move(m), std::move(k)});
    }
    table->health_.push_back(std::move(health));
  }

  for (size_t i = 0; i < backends.size(); ++i) {
    for (const std::string& model : backends[i].models) {
      auto it = table->by_model_.find(model);
      if (it == table->by_model_.end()) {
        it = table->by_model_.emplace(model, table->groups_.size()).first;
        table->groups_.push_back(std::make_unique<CandidateGroup>());
        table->groups_.back()->model = model;
        table->models.push_back(model);
      }
      // A backend listing a model twice still counts once.
      auto& members = table->groups_[it->second]->backends;
      if (members.empty() || members.back() != i) members.push_back(i);
    }
  }
  std::sort(table->models.begin(), table->models.end());
  table->BindGroupHealth();

  for (size_t i = 0; i < table->config.model_aliases.size(); ++i) {
    // First definition wins, like a YAML map would have it.
    table->aliases_.emplace(table->config.model_aliases[i].name, i);
  }
  return table;
}

void RoutingTable::BindGroupHealth() const {
  for (const auto& group : groups_) {
    group->health.clear();
    for (size_t b : group->backends) {
      const std::string& model = group->model.empty() ? DefaultModelOf(backend(b)) : group->model;
      const BackendHealth& h = *health_[b];
      group->health.push_back({h.origin.tracker.get(), h.account.tracker.get(), h.model(model)});
    }
  }
}

const std::string& DefaultModelOf(const BackendConfig& backend) {
  return backend.default_model.empty() && !backend.models.empty() ? backend.models.front()
                                                                  : backend.default_model;
}

const CandidateGroup* RoutingTable::ServedBy(std::string_view model) const {
  auto it = by_model_.find(model);
  return it == by_model_.end() ? nullptr : groups_[it->second].get();
}

const ModelAlias* RoutingTable::FindAlias(std::string_view name) const {
  auto it = aliases_.find(name);
  return it == aliases_.end() ? nullptr : &config.model_aliases[it->second];
}

std::optional<size_t> RoutingTable::FindBackend(std::string_view name) const {
  auto it = backends_.find(name);
  if (it == backends_.end()) return std::nullopt;
  return it->second;
}

}  // namespace llmproxy
