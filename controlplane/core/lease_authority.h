// The control plane's side of key limits (docs/limits.md): the one authority that holds
// each limited key's rpm, tpm, max_parallel and budget across every worker. Workers admit
// requests from leases, slices of a key's remaining capacity; this class decides the
// slices and counts what was spent. The invariant it keeps, per key and limit:
//
//   used in the window (or budget period) + held by all workers + granted  <=  limit
//
// where "held" is what a worker reported holding (unspent balance plus what its requests
// in flight reserved) plus every grant sent after the last one the worker says it applied.
// Spending is counted when reported, at the time it arrives, which is never earlier than
// it happened: a sliding window never holds more than its limit.
//
// A worker whose stream breaks keeps spending what it holds (static stability), so its
// holdings stay counted until they expire: the worker stops using a lease `ttl` after
// receiving it; the authority forgets it `ttl + margin` after sending it. Save/Load carry
// the holdings and windows across a control-plane restart.
//
// Pure: no I/O and no clock; callers pass wall-clock milliseconds. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "llmproxy/v1/discovery.pb.h"

namespace llmproxy {

// One amount per limit, in its unit: requests, tokens, in-flight slots, budget units
// (micro-USD, or tokens for a token budget). 0 in a KeyLimits: no such limit.
struct LimitAmounts {
  uint64_t requests = 0;
  uint64_t tokens = 0;
  uint64_t parallel = 0;
  uint64_t budget = 0;
  bool operator==(const LimitAmounts&) const = default;
};

struct KeyLimits {
  LimitAmounts limit;
  int64_t budget_period_ms = 0;  // with limit.budget
  bool usd = false;              // the budget is in micro-USD (else tokens)
  bool operator==(const KeyLimits&) const = default;
};

// A key's limits in lease units (micro-USD for a USD budget); nullopt: not limited.
std::optional<KeyLimits> LimitsOf(const ClientKey& key);

struct LeaseOptions {
  int64_t ttl_ms = 10000;     // a worker spends a lease this long after receiving it
  int64_t margin_ms = 5000;   // plus this, the authority's bound on the lease's delivery
  int64_t window_ms = 60000;  // rpm and tpm windows (sliding)
  // A grant is at least a 1/`slices` share of the limit divided by the key's active
  // workers, so a busy worker asks rarely and an idle one strands little.
  uint64_t slices = 8;
};

class LeaseAuthority {
 public:
  explicit LeaseAuthority(LeaseOptions options = {}) : options_(options) {}

  // The limited keys in force. A key no longer listed (or no longer limited) is dropped
  // with its state; a new budgeted key's past spending comes from `budget_history`
  // (spending per hour start, ms -> units, over the period before `now_ms`).
  using BudgetHistory =
      std::function<std::map<int64_t, uint64_t>(const std::string& key, const KeyLimits&)>;
  void SetLimits(const std::map<std::string, KeyLimits>& limits, const BudgetHistory& history,
                 int64_t now_ms);

  // A report of worker `worker` on its stream `session` (a new session number means a new
  // stream). Returns the grant to send back on that stream, or nullopt when the report
  // has no leases.
  std::optional<v1::LeaseGrant> OnReport(const std::string& worker, uint64_t session,
                                         const v1::LoadReport& report, int64_t now_ms);

  // What the authority counts for `key` now: used (windows / budget period) and held by
  // workers (admin, tests).
  struct KeyState {
    LimitAmounts used;
    LimitAmounts held;
  };
  std::optional<KeyState> State(const std::string& key, int64_t now_ms);

  // Holdings and windows as text (JSON), and back; Load ignores what expired by `now_ms`
  // and anything it cannot read (false).
  std::string Save(int64_t now_ms);
  bool Load(const std::string& text, int64_t now_ms);

 private:
  struct WindowEntry {
    int64_t at_ms = 0;  // a whole second, rounded up
    uint64_t requests = 0;
    uint64_t tokens = 0;
  };
  struct KeyBook {
    KeyLimits limits;
    std::deque<WindowEntry> window;      // rpm / tpm spending, oldest first
    std::map<int64_t, uint64_t> budget;  // spending per hour start (ms)
  };
  struct Pending {
    uint64_t seq = 0;
    std::map<std::string, LimitAmounts> granted;
  };
  struct WorkerBook {
    uint64_t session = 0;                          // 0: from Load, no stream yet
    std::map<std::string, LimitAmounts> reported;  // held, as last reported
    std::deque<Pending> pending;                   // grants not yet applied
    int64_t expires_ms = 0;                        // forgotten after this
  };

  void PruneLocked(KeyBook& book, int64_t now_ms) const;
  LimitAmounts UsedLocked(KeyBook& book, int64_t now_ms) const;
  LimitAmounts HeldLocked(const std::string& key) const;
  size_t ActiveWorkersLocked(const std::string& key) const;
  void ExpireLocked(int64_t now_ms);

  LeaseOptions options_;
  std::mutex mu_;
  std::map<std::string, KeyBook> keys_;
  std::map<std::string, WorkerBook> workers_;
  // Grant sequence numbers, one series for all streams: a worker's book forgotten and
  // made anew on the same stream never reuses a number the worker has applied.
  uint64_t next_seq_ = 1;
};

}  // namespace llmproxy
