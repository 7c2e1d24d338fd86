#include "dataplane/observe/usage_aggregator.h"

namespace llmproxy {

void UsageAggregator::OnRequestDone(const RequestRecord& r) {
  if (r.key_name.empty()) return;
  KeyUsageDelta d{r.key_name,
                  r.model_resolved.empty() ? "(unknown)" : r.model_resolved,
                  r.backend.empty() ? "(none)" : r.backend,
                  1,
                  r.prompt_tokens.value_or(0),
                  r.completion_tokens.value_or(0)};
  std::lock_guard lock(mu_);
  AddLocked(d);
}

void UsageAggregator::AddLocked(const KeyUsageDelta& d) {
  auto id = std::make_tuple(d.key, d.model, d.backend);
  auto it = sums_.find(id);
  if (it == sums_.end()) {
    if (sums_.size() >= kMaxEntries) {
      id = std::make_tuple(d.key, std::string("(other)"), std::string("(other)"));
      it = sums_.find(id);
    }
    if (it == sums_.end()) {
      it =
          sums_.emplace(id, KeyUsageDelta{std::get<0>(id), std::get<1>(id), std::get<2>(id)}).first;
    }
  }
  it->second.requests += d.requests;
  it->second.prompt_tokens += d.prompt_tokens;
  it->second.completion_tokens += d.completion_tokens;
}

std::vector<KeyUsageDelta> UsageAggregator::Take() {
  std::lock_guard lock(mu_);
  std::vector<KeyUsageDelta> out;
  out.reserve(sums_.size());
  for (auto& [id, d] : sums_) out.push_back(std::move(d));
  sums_.clear();
  return out;
}

void UsageAggregator::Restore(const std::vector<KeyUsageDelta>& deltas) {
  std::lock_guard lock(mu_);
  for (const KeyUsageDelta& d : deltas) AddLocked(d);
}

}  // namespace llmproxy
