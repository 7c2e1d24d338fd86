#include "dataplane/routing/model_resolver.h"

#include <algorithm>

namespace llmproxy {
namespace {

// Empty model = "the chosen backend's default_model".
PlanStep AnyBackendStep(const RoutingTable& table) { return {"", &table.AllBackends()}; }

}  // namespace

ModelPlan ResolveModel(const RoutingTable& table, std::string_view requested) {
  ModelPlan plan;
  plan.requested = std::string(requested);

  if (requested.empty() || requested == "auto") {
    plan.kind = ModelPlan::Kind::kAuto;
    plan.steps.push_back(AnyBackendStep(table));
    return plan;
  }

  if (const ModelAlias* alias = table.FindAlias(requested)) {
    plan.kind = ModelPlan::Kind::kAlias;
    plan.alias = alias;
    for (const std::string& model : alias->models) {
      const CandidateGroup* group = table.ServedBy(model);
      if (group == nullptr) continue;  // validation warns; nothing could serve it
      const bool repeated = std::any_of(plan.steps.begin(), plan.steps.end(),
                                        [&](const PlanStep& s) { return s.model == model; });
      if (!repeated) plan.steps.push_back({model, group});
    }
  } else if (const CandidateGroup* group = table.ServedBy(requested)) {
    plan.kind = ModelPlan::Kind::kServed;
    plan.steps.push_back({std::string(requested), group});
  } else if (table.config.unknown_model == UnknownModelPolicy::kReject) {
    plan.kind = ModelPlan::Kind::kRejected;
    return plan;
  } else {
    plan.kind = ModelPlan::Kind::kUnknownFallback;
    plan.unknown_fallback = true;
    plan.steps.push_back(AnyBackendStep(table));
    return plan;
  }

  if (table.config.cross_model_fallback) plan.steps.push_back(AnyBackendStep(table));
  return plan;
}

const std::string& ModelForStep(const PlanStep& step, const BackendConfig& backend) {
  if (!step.model.empty()) return step.model;
  // A table pushed with neither default_model nor models sends an empty model, which the
  // upstream will reject with its own 4xx.
  return DefaultModelOf(backend);
}

}  // namespace llmproxy
