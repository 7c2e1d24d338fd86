#include "common/config/config.h"

namespace llmproxy {

std::string_view ToString(BalanceMode mode) {
  switch (mode) {
    case BalanceMode::kRandom: return "random";
    case BalanceMode::kRoundRobin: return "round-robin";
    case BalanceMode::kLeastBusy: return "least-busy";
  }
  return "random";
}

std::string_view ToString(UnknownModelPolicy policy) {
  return policy == UnknownModelPolicy::kReject ? "reject" : "fallback";
}

std::string_view ToString(StreamUsage usage) {
  return usage == StreamUsage::kRequest ? "request" : "passthrough";
}

std::string_view ToString(ControlPlaneLoss policy) {
  return policy == ControlPlaneLoss::kDeny ? "deny" : "allow";
}

std::string_view ToString(BackendApi api) {
  return api == BackendApi::kAnthropic ? "anthropic" : "openai";
}

std::string_view ToString(ReasoningParam param) {
  switch (param) {
    case ReasoningParam::kReasoningEffort:
      return "reasoning_effort";
    case ReasoningParam::kThinking:
      return "thinking";
    case ReasoningParam::kNone:
      break;
  }
  return "none";
}

}  // namespace llmproxy
