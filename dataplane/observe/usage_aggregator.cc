#include "dataplane/observe/usage_aggregator.h"

namespace llmproxy {

void UsageAggregator::OnRequestDone(const RequestRecord& r) {
  if (r.key_name.empty()) return;
  const Sums add{1, r.prompt_tokens.value_or(0), r.completion_tokens.value_or(0),
                 r.cached_prompt_tokens.value_or(0)};
  std::lock_guard lock(mu_);
  const std::string_view model = r.model_resolved, backend = r.backend;
  AddLocked(r.key_name, model.empty() ? "(unknown)" : model, backend.empty() ? "(none)" : backend,
            add);
}

void UsageAggregator::AddLocked(std::string_view key, std::string_view model,
                                std::string_view backend, const Sums& add) {
  auto it = sums_.find(std::tuple{key, model, backend});
  if (it == sums_.end()) {
    if (sums_.size() >= kMaxEntries) {
      model = "(other)";
      backend = "(other)";
      it = sums_.find(std::tuple{key, model, backend});
    }
    if (it == sums_.end()) it = sums_.emplace(Id{key, model, backend}, Sums{}).first;
  }
  it->second.requests += add.requests;
  it->second.prompt_tokens += add.prompt_tokens;
  it->second.completion_tokens += add.completion_tokens;
  it->second.cached_prompt_tokens += add.cached_prompt_tokens;
}

std::vector<KeyUsageDelta> UsageAggregator::Take() {
  std::lock_guard lock(mu_);
  std::vector<KeyUsageDelta> out;
  out.reserve(sums_.size());
  for (auto& [id, sum] : sums_) {
    out.push_back({std::get<0>(id), std::get<1>(id), std::get<2>(id), sum.requests,
                   sum.prompt_tokens, sum.completion_tokens, sum.cached_prompt_tokens});
  }
  sums_.clear();
  return out;
}

void UsageAggregator::Restore(const std::vector<KeyUsageDelta>& deltas) {
  std::lock_guard lock(mu_);
  for (const KeyUsageDelta& d : deltas) {
    AddLocked(d.key, d.model, d.backend,
              {d.requests, d.prompt_tokens, d.completion_tokens, d.cached_prompt_tokens});
  }
}

}  // namespace llmproxy
