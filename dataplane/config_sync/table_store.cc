#include "dataplane/config_sync/table_store.h"

#include "common/config/config_loader.h"

namespace llmproxy {

std::string TableStore::Apply(Config config, uint64_t version) {
  std::vector<std::string> errors = ValidateConfig(config);
  if (!errors.empty()) {
    std::string joined;
    for (const auto& e : errors) {
      if (!joined.empty()) joined += '\n';
      joined += e;
    }
    return joined;
  }
  std::lock_guard lock(apply_mu_);
  std::shared_ptr<const RoutingTable> table = RoutingTable::Build(std::move(config), version);
  if (!table) return "could not build the routing table";
  // Before publishing: the table must point at the shared, name-keyed states.
  states_.Retain(*table);
  current_.store(table, std::memory_order_release);
  version_.store(version, std::memory_order_release);
  if (on_applied_) on_applied_(*table);
  return "";
}

}  // namespace llmproxy
