// The worker-wide count of request body bytes held in memory, across every connection
// and thread, checked against server.max_buffered_bytes (docs/dataplane.md "Limits").
// Without it each connection is bounded by max_body_bytes but their sum is not: a
// hundred slow uploads would pin a hundred bodies. A body that would take the count
// past the cap is refused (503) before its bytes are read.
#pragma once

#include <atomic>
#include <cstdint>

namespace llmproxy {

class BufferBudget {
 public:
  // Takes `bytes` from the budget when the total stays within `limit`; false (and
  // nothing taken) otherwise.
  bool TryReserve(uint64_t bytes, uint64_t limit) {
    uint64_t used = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit || used > limit - bytes) return false;
    } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    return true;
  }
  void Release(uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> used_{0};
};

}  // namespace llmproxy
