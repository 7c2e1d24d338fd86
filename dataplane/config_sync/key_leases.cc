#include "dataplane/config_sync/key_leases.h"

#include <algorithm>

namespace llmproxy {
namespace {

// A grant's "remaining" is trusted this long: within it a request the control plane has
// no room for is refused at once instead of asking again.
constexpr int64_t kInfoFreshMs = 1000;
constexpr uint64_t kDefaultRetryMs = 1000;

uint64_t Add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
uint64_t Sub(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

// reset_at holds steady-clock ms (never negative) in the Amounts shape.
bool Passed(uint64_t at, int64_t now_ms) { return static_cast<int64_t>(at) <= now_ms; }
uint64_t Until(uint64_t at, int64_t now_ms) {
  return static_cast<int64_t>(at) > now_ms ? at - static_cast<uint64_t>(now_ms) : 0;
}

}  // namespace

std::string_view LimitName(LimitKind kind) {
  switch (kind) {
    case LimitKind::kRequests:
      return "requests";
    case LimitKind::kTokens:
      return "tokens";
    case LimitKind::kParallel:
      return "parallel";
    case LimitKind::kBudget:
      return "budget";
    case LimitKind::kControlPlane:
      return "control_plane";
  }
  return "requests";
}

bool KeyLeases::Fresh(const Book& b, int64_t now_ms) {
  return b.info_at_ms && now_ms - *b.info_at_ms < kInfoFreshMs;
}

bool KeyLeases::ReachableLocked(int64_t now_ms) const {
  auto overdue = [&](const std::optional<int64_t>& since) {
    return since && now_ms - *since > options_.ask_timeout_ms;
  };
  return stream_up_ && !overdue(unanswered_since_ms_) && !overdue(wanting_since_ms_);
}

void KeyLeases::Wake() {
  due_.store(true, std::memory_order_release);
  std::lock_guard lock(wake_mu_);
  if (wake_) wake_();
}

AdmitResult KeyLeases::TryAdmit(const ClientKey& key, const LeaseNeed& need,
                                ControlPlaneLoss policy, int64_t now_ms, bool may_wait) {
  AdmitResult out;
  out.ticket.key = key.name;
  if (!key.limited()) return out;
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    auto it = books_.find(key.name);
    if (it == books_.end()) it = books_.emplace(key.name, Book{}).first;
    Book& b = it->second;
    b.last_used_ms = now_ms;
    if (b.expires_ms <= now_ms) b.balance = {};  // an expired lease is spent no more

    // What this request takes of each limit the key has (0: no such limit).
    const Amounts take{key.rpm != 0 ? 1u : 0u, key.tpm != 0 ? need.tokens : 0,
                       key.max_parallel != 0 ? 1u : 0u, key.budget ? need.budget : 0};
    struct Dim {
      LimitKind kind;
      uint64_t Amounts::*field;
      bool limited;
    };
    // Checked in this order: the first short one is the 429's reason.
    const Dim dims[] = {{LimitKind::kBudget, &Amounts::budget, key.budget.has_value()},
                        {LimitKind::kRequests, &Amounts::requests, key.rpm != 0},
                        {LimitKind::kTokens, &Amounts::tokens, key.tpm != 0},
                        {LimitKind::kParallel, &Amounts::parallel, key.max_parallel != 0}};
    const Dim* short_dim = nullptr;
    bool worth_asking = false;  // some short limit may have room at the control plane
    for (const Dim& d : dims) {
      if (!d.limited || b.balance.*d.field >= take.*d.field) continue;
      if (short_dim == nullptr) short_dim = &d;
      const uint64_t deficit = take.*d.field - b.balance.*d.field;
      const bool known_full = Fresh(b, now_ms) && b.remaining.*d.field < deficit &&
                              !(b.reset_at.*d.field != 0 && Passed(b.reset_at.*d.field, now_ms));
      if (!known_full) worth_asking = true;
    }

    if (short_dim == nullptr) {
      b.balance.requests -= take.requests;
      b.spent.requests = Add(b.spent.requests, take.requests);
      for (uint64_t Amounts::*f : {&Amounts::tokens, &Amounts::parallel, &Amounts::budget}) {
        b.balance.*f -= take.*f;
        b.reserved.*f = Add(b.reserved.*f, take.*f);
      }
      out.ticket = {key.name, true, false, take.tokens, take.budget, take.parallel != 0};
      // Running low: ask for more before it runs out.
      for (const Dim& d : dims) {
        if (d.limited && b.balance.*d.field < std::max<uint64_t>(1, b.last_grant.*d.field / 2)) {
          b.want.*d.field = std::max<uint64_t>(b.want.*d.field, 1);
          wake = true;
        }
      }
    } else if (!ReachableLocked(now_ms) || (!may_wait && wanting_since_ms_)) {
      // Lost, or a wait that ended with its ask unanswered: the control plane did not
      // answer in time, which is its loss, not this key's limit.
      if (policy == ControlPlaneLoss::kAllow) {
        // Counted as spent all the same, so the control plane sees it once it is back.
        b.spent.requests = Add(b.spent.requests, take.requests);
        out.ticket = {key.name, true, true, 0, 0, false};
        out.by_loss_policy = true;
      } else {
        out.verdict = AdmitResult::Verdict::kDeny;
        out.denied = LimitKind::kControlPlane;
        out.retry_after_ms = kDefaultRetryMs;
      }
    } else if (may_wait && worth_asking) {
      for (const Dim& d : dims) {
        if (d.limited && b.balance.*d.field < take.*d.field) {
          b.want.*d.field = std::max(b.want.*d.field, take.*d.field);
        }
      }
      out.verdict = AdmitResult::Verdict::kWait;
      if (!wanting_since_ms_) wanting_since_ms_ = now_ms;
      wake = true;
    } else {
      out.verdict = AdmitResult::Verdict::kDeny;
      out.denied = short_dim->kind;
      auto view = [&](uint64_t limit, uint64_t Amounts::*f) {
        LimitView v;
        v.limit = limit;
        v.remaining = Add(b.balance.*f, Fresh(b, now_ms) ? b.remaining.*f : 0);
        v.reset_ms = Until(b.reset_at.*f, now_ms);
        return v;
      };
      out.requests = view(key.rpm, &Amounts::requests);
      out.tokens = view(key.tpm, &Amounts::tokens);
      const uint64_t reset = Until(b.reset_at.*short_dim->field, now_ms);
      out.retry_after_ms = reset != 0 ? reset : kDefaultRetryMs;
    }
  }
  if (wake) Wake();
  return out;
}

void KeyLeases::Settle(const LeaseTicket& ticket, uint64_t tokens, uint64_t budget,
                       int64_t now_ms) {
  if (!ticket.active) return;
  {
    std::lock_guard lock(mu_);
    auto it = books_.find(ticket.key);
    if (it == books_.end()) it = books_.emplace(ticket.key, Book{}).first;
    Book& b = it->second;
    b.last_used_ms = now_ms;
    b.spent.tokens = Add(b.spent.tokens, tokens);
    b.spent.budget = Add(b.spent.budget, budget);
    if (!ticket.unleased) {
      b.reserved.tokens = Sub(b.reserved.tokens, ticket.tokens);
      b.reserved.budget = Sub(b.reserved.budget, ticket.budget);
      if (ticket.parallel) b.reserved.parallel = Sub(b.reserved.parallel, 1);
      // What the reservation did not use goes back to the balance, while the lease holds
      // (an overrun is counted as spent; the balance never goes below 0).
      if (b.expires_ms > now_ms) {
        b.balance.tokens = Add(b.balance.tokens, Sub(ticket.tokens, tokens));
        b.balance.budget = Add(b.balance.budget, Sub(ticket.budget, budget));
        if (ticket.parallel) b.balance.parallel = Add(b.balance.parallel, 1);
      }
    }
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);  // a freed slot may admit a waiter
}

void KeyLeases::TakeReport(v1::LoadReport& out, int64_t now_ms) {
  std::lock_guard lock(mu_);
  out.set_applied_grant(applied_grant_);
  for (auto it = books_.begin(); it != books_.end();) {
    Book& b = it->second;
    if (b.expires_ms <= now_ms) b.balance = {};
    const bool nothing = b.reserved.tokens == 0 && b.reserved.parallel == 0 &&
                         b.reserved.budget == 0 && b.spent.requests == 0 && b.spent.tokens == 0 &&
                         b.spent.budget == 0 && b.want.requests == 0 && b.want.tokens == 0 &&
                         b.want.parallel == 0 && b.want.budget == 0;
    if (nothing && now_ms - b.last_used_ms >= options_.idle_return_ms) {
      // Idle: left out of the report, which returns its balance to the control plane.
      it = books_.erase(it);
      continue;
    }
    v1::KeyLease* lease = out.add_leases();
    lease->set_key(it->first);
    auto* held = lease->mutable_held();
    held->set_requests(b.balance.requests);
    held->set_tokens(Add(b.balance.tokens, b.reserved.tokens));
    held->set_parallel(Add(b.balance.parallel, b.reserved.parallel));
    held->set_budget(Add(b.balance.budget, b.reserved.budget));
    auto* spent = lease->mutable_spent();
    spent->set_requests(b.spent.requests);
    spent->set_tokens(b.spent.tokens);
    spent->set_budget(b.spent.budget);
    auto* want = lease->mutable_want();
    want->set_requests(b.want.requests);
    want->set_tokens(b.want.tokens);
    want->set_parallel(b.want.parallel);
    want->set_budget(b.want.budget);
    b.spent = {};
    b.want = {};
    ++it;
  }
  if (out.leases_size() > 0 && !unanswered_since_ms_) unanswered_since_ms_ = now_ms;
  due_.store(false, std::memory_order_release);
}

void KeyLeases::Restore(const v1::LoadReport& failed) {
  std::lock_guard lock(mu_);
  for (const v1::KeyLease& lease : failed.leases()) {
    auto it = books_.find(lease.key());
    if (it == books_.end()) it = books_.emplace(lease.key(), Book{}).first;
    Book& b = it->second;
    b.spent.requests = Add(b.spent.requests, lease.spent().requests());
    b.spent.tokens = Add(b.spent.tokens, lease.spent().tokens());
    b.spent.budget = Add(b.spent.budget, lease.spent().budget());
  }
}

void KeyLeases::OnGrant(const v1::LeaseGrant& grant, int64_t now_ms) {
  {
    std::lock_guard lock(mu_);
    applied_grant_ = std::max(applied_grant_, grant.seq());
    unanswered_since_ms_.reset();
    wanting_since_ms_.reset();
    for (const v1::KeyGrant& g : grant.keys()) {
      auto it = books_.find(g.key());
      if (it == books_.end()) it = books_.emplace(g.key(), Book{}).first;
      Book& b = it->second;
      if (b.expires_ms <= now_ms) b.balance = {};
      const Amounts granted{g.granted().requests(), g.granted().tokens(), g.granted().parallel(),
                            g.granted().budget()};
      for (uint64_t Amounts::*f :
           {&Amounts::requests, &Amounts::tokens, &Amounts::parallel, &Amounts::budget}) {
        b.balance.*f = Add(b.balance.*f, granted.*f);
        if (granted.*f != 0) b.last_grant.*f = granted.*f;
      }
      b.remaining = {g.remaining().requests(), g.remaining().tokens(), g.remaining().parallel(),
                     g.remaining().budget()};
      auto at = [&](uint64_t ms) {
        return ms == 0 ? int64_t{0}
                       : now_ms + static_cast<int64_t>(std::min<uint64_t>(ms, 1ull << 40));
      };
      b.reset_at = {static_cast<uint64_t>(at(g.reset_ms().requests())),
                    static_cast<uint64_t>(at(g.reset_ms().tokens())),
                    static_cast<uint64_t>(at(g.reset_ms().parallel())),
                    static_cast<uint64_t>(at(g.reset_ms().budget()))};
      b.info_at_ms = now_ms;
      b.expires_ms = now_ms + grant.ttl_ms();
    }
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void KeyLeases::OnStream(bool up, int64_t /*now_ms*/) {
  {
    std::lock_guard lock(mu_);
    stream_up_ = up;
    applied_grant_ = 0;
    unanswered_since_ms_.reset();
    wanting_since_ms_.reset();
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
  if (up) Wake();  // announce what is held to this control plane at once
}

}  // namespace llmproxy
