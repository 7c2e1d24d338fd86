// Usage by client key, model and backend, summed between two load reports: what the
// control plane's usage ledger records (controlplane/usage_ledger.h). Only requests that
// carried a configured key count. Take() hands over and clears the sums; Restore() puts
// back what could not be sent, so a broken stream loses nothing. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "dataplane/observe/request_record.h"

namespace llmproxy {

struct KeyUsageDelta {
  std::string key, model, backend;
  uint64_t requests = 0, prompt_tokens = 0, completion_tokens = 0;
  uint64_t cached_prompt_tokens = 0;  // of prompt_tokens
  bool operator==(const KeyUsageDelta&) const = default;
};

class UsageAggregator : public RequestObserver {
 public:
  void OnRequestDone(const RequestRecord& r) override;

  std::vector<KeyUsageDelta> Take();
  void Restore(const std::vector<KeyUsageDelta>& deltas);

  // Distinct (key, model, backend) sums kept at most; beyond it new ones fold into the
  // key's "(other)" model, so memory stays bounded whatever the traffic.
  static constexpr size_t kMaxEntries = 4096;

 private:
  struct Sums {
    uint64_t requests = 0, prompt_tokens = 0, completion_tokens = 0, cached_prompt_tokens = 0;
  };
  using Id = std::tuple<std::string, std::string, std::string>;  // key, model, backend
  // Looked up by views: a request that adds to an existing sum allocates nothing.
  void AddLocked(std::string_view key, std::string_view model, std::string_view backend,
                 const Sums& add);
  std::mutex mu_;
  std::map<Id, Sums, std::less<>> sums_;
};

}  // namespace llmproxy
