// The worker's side of key limits (docs/limits.md): per limited key, the lease this worker
// holds (balances granted by the control plane, controlplane/core/lease_authority.h) and
// what its requests in flight reserved. Admission spends from the local balance with no
// network round trip; when a balance runs low the next report asks for more, and a
// request that finds it short waits (briefly, bounded by the caller) for that grant.
//
// Per request: TryAdmit reserves 1 request (rpm), 1 slot (max_parallel), the estimated
// tokens (tpm: prompt estimate + max_tokens) and their cost (budget) before the request
// is forwarded; Settle replaces the reservation with the real usage when it ends. The
// report (TakeReport, on the control-plane client's thread) carries what is held and
// spent; OnGrant applies the answer.
//
// Without a control plane (the stream is down, or asks go unanswered) the balance is
// spent until its lease expires; then limits.on_control_plane_loss decides.
//
// Times are the caller's steady-clock milliseconds. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/config/config.h"
#include "llmproxy/v1/discovery.pb.h"

namespace llmproxy {

// The clock KeyLeases' times are read from: steady milliseconds.
inline int64_t LeaseNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Which limit stopped a request, for its 429 and llmproxy_ratelimited_total{limit}.
enum class LimitKind { kRequests, kTokens, kParallel, kBudget, kControlPlane };
std::string_view LimitName(LimitKind kind);  // "requests" | "tokens" | "parallel" | ...

// What one request asks of a key's limits beyond 1 request and 1 slot.
struct LeaseNeed {
  uint64_t tokens = 0;  // prompt estimate + completion cap
  uint64_t budget = 0;  // micro-USD, or tokens for a token budget
};

// The reservation of one admitted request, given back to Settle.
struct LeaseTicket {
  std::string key;
  bool active = false;    // the key is limited: Settle counts what the request used
  bool unleased = false;  // admitted by on_control_plane_loss: allow, nothing reserved
  uint64_t tokens = 0;
  uint64_t budget = 0;
  bool parallel = false;
};

// A key's limits as the headers and errors of a 429 show them.
struct LimitView {
  uint64_t limit = 0;      // 0: no such limit
  uint64_t remaining = 0;  // this worker's balance plus what the control plane has left
  uint64_t reset_ms = 0;   // when capacity frees (0: unknown)
};

struct AdmitResult {
  enum class Verdict { kAdmit, kWait, kDeny } verdict = Verdict::kAdmit;
  LeaseTicket ticket;                       // kAdmit
  LimitKind denied = LimitKind::kRequests;  // kDeny: the limit
  LimitView requests, tokens;               // kDeny: for the headers
  uint64_t retry_after_ms = 0;              // kDeny
  bool by_loss_policy = false;              // kAdmit without a lease (on_control_plane_loss: allow)
};

struct KeyLeasesOptions {
  // A key with nothing reserved and no admission for this long returns its balance.
  int64_t idle_return_ms = 3000;
  // An ask unanswered this long (the stream looks alive but nothing comes back): the
  // control plane counts as lost.
  int64_t ask_timeout_ms = 3000;
};

class KeyLeases {
 public:
  explicit KeyLeases(KeyLeasesOptions options = {}) : options_(options) {}

  // Admission. `may_wait` false: no kWait (the caller's wait is over). `policy`: the
  // table's limits.on_control_plane_loss.
  AdmitResult TryAdmit(const ClientKey& key, const LeaseNeed& need, ControlPlaneLoss policy,
                       int64_t now_ms, bool may_wait);
  // The request ended: `tokens` and `budget` are what it really used (its reservation
  // when the upstream reported no usage).
  void Settle(const LeaseTicket& ticket, uint64_t tokens, uint64_t budget, int64_t now_ms);

  // Bumped by every grant and stream change: a waiting request polls it.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // The control-plane client's side. TakeReport fills `out`'s leases and applied_grant and
  // clears what it reported as spent; a report whose write failed goes to Restore.
  void TakeReport(v1::LoadReport& out, int64_t now_ms);
  void Restore(const v1::LoadReport& failed);
  void OnGrant(const v1::LeaseGrant& grant, int64_t now_ms);
  // A stream to the control plane began (first snapshot) or ended.
  void OnStream(bool up, int64_t now_ms);
  // Called (without the lock) when a report should go out now rather than at the next
  // interval: a request waits, or a balance runs low.
  void SetWake(std::function<void()> wake) {
    std::lock_guard lock(wake_mu_);
    wake_ = std::move(wake);
  }
  // A report is due now (TakeReport clears it).
  bool report_due() const { return due_.load(std::memory_order_acquire); }

 private:
  struct Amounts {
    uint64_t requests = 0, tokens = 0, parallel = 0, budget = 0;
  };
  struct Book {
    Amounts balance;   // granted, unspent (valid until expires_ms)
    Amounts reserved;  // by requests in flight (tokens, parallel, budget)
    Amounts spent;     // since the last report
    Amounts want;      // to ask for in the next report
    Amounts last_grant;
    Amounts remaining;                  // at the control plane, as of the last grant
    Amounts reset_at;                   // steady ms when capacity frees there (0: unknown)
    std::optional<int64_t> info_at_ms;  // when remaining and reset_at came (none yet)
    int64_t expires_ms = 0;
    int64_t last_used_ms = 0;
  };

  bool ReachableLocked(int64_t now_ms) const;
  // The last grant's remaining and reset_at are recent enough to refuse on.
  static bool Fresh(const Book& b, int64_t now_ms);
  void Wake();

  KeyLeasesOptions options_;
  std::mutex wake_mu_;  // wake_ is set by the control-plane client while requests run
  std::function<void()> wake_;
  mutable std::mutex mu_;
  std::map<std::string, Book, std::less<>> books_;
  uint64_t applied_grant_ = 0;
  bool stream_up_ = false;
  std::optional<int64_t> unanswered_since_ms_;  // the oldest report no grant answered yet
  std::optional<int64_t> wanting_since_ms_;     // a request waits, and no grant came since
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> due_{false};
};

}  // namespace llmproxy
