#include "dataplane/routing/routing_table.h"

#include <algorithm>

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
    table->states_.push_back(
        std::make_shared<BackendState>(backends[i].name, table->config.health));
  }
  table->targets_ = MakeBackendTargets(backends);
  table->all_ = all.get();
  table->groups_.push_back(std::move(all));

  for (size_t i = 0; i < backends.size(); ++i) {
    for (const std::string& model : backends[i].models) {
      auto it = table->by_model_.find(model);
      if (it == table->by_model_.end()) {
        it = table->by_model_.emplace(model, table->groups_.size()).first;
        table->groups_.push_back(std::make_unique<CandidateGroup>());
        table->models.push_back(model);
      }
      // A backend listing a model twice still counts once.
      auto& members = table->groups_[it->second]->backends;
      if (members.empty() || members.back() != i) members.push_back(i);
    }
  }
  std::sort(table->models.begin(), table->models.end());

  for (size_t i = 0; i < table->config.model_aliases.size(); ++i) {
    // First definition wins, like a YAML map would have it.
    table->aliases_.emplace(table->config.model_aliases[i].name, i);
  }
  return table;
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
