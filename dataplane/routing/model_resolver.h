// Turns the client's `model` into an ordered plan of steps (docs/routing.md "Model
// resolution"). Each step says which model to send and which backends may serve it;
// the AttemptPlanner (attempt_planner.h) walks the plan.
//
//   "" or "auto"   one step: every backend, each with its default_model.
//   an alias       one step per listed model, in order, each balanced over the backends
//                  that list that model (entries no backend serves are skipped).
//   a served model one step: exactly the backends that list it, model sent unchanged.
//   unknown        fallback: one step, every backend with its default_model, and
//                  `unknown_fallback` set so the caller logs a warning;
//                  reject (unknown_model: reject): no plan, the caller answers 404.
//   cross_model_fallback: true appends a last step (every backend with its
//   default_model) to alias and served-model plans.
//
// Aliases are looked up before served models, so an alias may shadow a model name.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dataplane/routing/routing_table.h"

namespace llmproxy {

struct PlanStep {
  // The model to send upstream; empty means "the chosen backend's default_model".
  std::string model;
  const CandidateGroup* candidates = nullptr;  // owned by the table; never null
};

struct ModelPlan {
  enum class Kind { kAuto, kAlias, kServed, kUnknownFallback, kRejected };
  Kind kind = Kind::kAuto;
  std::string requested;  // the client's model, as sent
  std::vector<PlanStep> steps;
  bool unknown_fallback = false;  // kUnknownFallback: log a warning
  // kAlias: the alias (its hedge_after and stream timeouts apply); owned by the table.
  const ModelAlias* alias = nullptr;

  bool rejected() const { return kind == Kind::kRejected; }  // answer 404 model_not_found
};

// Pure; `table` must outlive the plan (the request holds the table's shared_ptr).
ModelPlan ResolveModel(const RoutingTable& table, std::string_view requested);

// The model name a step sends to `backend` (a step's model, or its default_model).
const std::string& ModelForStep(const PlanStep& step, const BackendConfig& backend);

}  // namespace llmproxy
