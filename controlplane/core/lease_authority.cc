#include "controlplane/core/lease_authority.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace llmproxy {
namespace {

constexpr int64_t kHourMs = 3600 * 1000;

// The four limits as one loop: a pointer to each member.
constexpr uint64_t LimitAmounts::*kDims[] = {&LimitAmounts::requests, &LimitAmounts::tokens,
                                             &LimitAmounts::parallel, &LimitAmounts::budget};

LimitAmounts FromProto(const v1::LeaseAmounts& a) {
  return {a.requests(), a.tokens(), a.parallel(), a.budget()};
}

void ToProto(const LimitAmounts& a, v1::LeaseAmounts* out) {
  out->set_requests(a.requests);
  out->set_tokens(a.tokens);
  out->set_parallel(a.parallel);
  out->set_budget(a.budget);
}

// Saturating: a hostile or confused report cannot wrap a sum around.
uint64_t Add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

void AddTo(LimitAmounts& to, const LimitAmounts& a) {
  for (auto dim : kDims) to.*dim = Add(to.*dim, a.*dim);
}

int64_t HourOf(int64_t ms) { return ms - ((ms % kHourMs) + kHourMs) % kHourMs; }

}  // namespace

std::optional<KeyLimits> LimitsOf(const ClientKey& key) {
  if (!key.limited()) return std::nullopt;
  KeyLimits out;
  out.limit.requests = key.rpm;
  out.limit.tokens = key.tpm;
  out.limit.parallel = key.max_parallel;
  if (key.budget) {
    out.usd = key.budget->unit == KeyBudget::Unit::kUsd;
    const double units = out.usd ? key.budget->amount * 1e6 : key.budget->amount;
    out.limit.budget = units >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(std::llround(units));
    out.budget_period_ms = key.budget->period.count();
  }
  return out;
}

void LeaseAuthority::SetLimits(const std::map<std::string, KeyLimits>& limits,
                               const BudgetHistory& history, int64_t now_ms) {
  std::lock_guard lock(mu_);
  for (auto it = keys_.begin(); it != keys_.end();) {
    it = limits.count(it->first) == 0 ? keys_.erase(it) : std::next(it);
  }
  for (const auto& [name, lim] : limits) {
    auto [it, added] = keys_.try_emplace(name);
    KeyBook& book = it->second;
    const bool reload_budget =
        lim.limit.budget != 0 &&
        (added || book.limits.limit.budget == 0 || book.limits.usd != lim.usd ||
         book.limits.budget_period_ms != lim.budget_period_ms);
    book.limits = lim;
    if (lim.limit.budget == 0) book.budget.clear();
    if (reload_budget) {
      book.budget.clear();
      if (history) book.budget = history(name, lim);
      PruneLocked(book, now_ms);
    }
  }
}

void LeaseAuthority::PruneLocked(KeyBook& book, int64_t now_ms) const {
  while (!book.window.empty() && book.window.front().at_ms + options_.window_ms <= now_ms) {
    book.window.pop_front();
  }
  // An hour leaves the budget's period once all of it is older than the period.
  const int64_t oldest = now_ms - book.limits.budget_period_ms;
  while (!book.budget.empty() && book.budget.begin()->first + kHourMs <= oldest) {
    book.budget.erase(book.budget.begin());
  }
}

LimitAmounts LeaseAuthority::UsedLocked(KeyBook& book, int64_t now_ms) const {
  PruneLocked(book, now_ms);
  LimitAmounts used;
  for (const WindowEntry& e : book.window) {
    used.requests = Add(used.requests, e.requests);
    used.tokens = Add(used.tokens, e.tokens);
  }
  for (const auto& [hour, units] : book.budget) used.budget = Add(used.budget, units);
  return used;
}

LimitAmounts LeaseAuthority::HeldLocked(const std::string& key) const {
  LimitAmounts held;
  for (const auto& [id, w] : workers_) {
    if (auto it = w.reported.find(key); it != w.reported.end()) AddTo(held, it->second);
    for (const Pending& p : w.pending) {
      if (auto it = p.granted.find(key); it != p.granted.end()) AddTo(held, it->second);
    }
  }
  return held;
}

size_t LeaseAuthority::ActiveWorkersLocked(const std::string& key) const {
  size_t n = 0;
  for (const auto& [id, w] : workers_) {
    bool active = w.reported.count(key) != 0;
    for (const Pending& p : w.pending) active = active || p.granted.count(key) != 0;
    n += active ? 1 : 0;
  }
  return n;
}

void LeaseAuthority::ExpireLocked(int64_t now_ms) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    it = it->second.expires_ms <= now_ms ? workers_.erase(it) : std::next(it);
  }
}

std::optional<v1::LeaseGrant> LeaseAuthority::OnReport(const std::string& worker, uint64_t session,
                                                       const v1::LoadReport& report,
                                                       int64_t now_ms) {
  std::lock_guard lock(mu_);
  ExpireLocked(now_ms);
  auto found = workers_.find(worker);
  if (report.leases().empty() && found == workers_.end()) return std::nullopt;
  if (found != workers_.end() && found->second.session > session) {
    return std::nullopt;  // a stream the worker has since replaced, read late
  }
  WorkerBook& w = workers_[worker];
  if (w.session != session) {
    // A new stream: whatever the worker received on the old one it has applied, so its
    // report below is the whole truth.
    w.session = session;
    w.pending.clear();
  } else {
    while (!w.pending.empty() && w.pending.front().seq <= report.applied_grant()) {
      w.pending.pop_front();
    }
  }

  // What it holds now, and what it spent since its previous report.
  w.reported.clear();
  const int64_t second = (now_ms + 999) / 1000 * 1000;  // rounded up: never counted early
  for (const v1::KeyLease& lease : report.leases()) {
    auto k = keys_.find(lease.key());
    if (k == keys_.end()) continue;  // not (or no longer) a limited key
    AddTo(w.reported[lease.key()], FromProto(lease.held()));
    KeyBook& book = k->second;
    const LimitAmounts spent = FromProto(lease.spent());
    if (spent.requests != 0 || spent.tokens != 0) {
      if (book.window.empty() || book.window.back().at_ms != second) {
        book.window.push_back({second, 0, 0});
      }
      book.window.back().requests = Add(book.window.back().requests, spent.requests);
      book.window.back().tokens = Add(book.window.back().tokens, spent.tokens);
    }
    if (spent.budget != 0 && book.limits.limit.budget != 0) {
      uint64_t& hour = book.budget[HourOf(now_ms)];
      hour = Add(hour, spent.budget);
    }
  }
  if (report.leases().empty()) {
    if (w.pending.empty()) workers_.erase(worker);
    return std::nullopt;
  }

  v1::LeaseGrant grant;
  grant.set_seq(next_seq_++);
  grant.set_ttl_ms(static_cast<uint32_t>(options_.ttl_ms));
  Pending pending{grant.seq(), {}};
  for (const v1::KeyLease& lease : report.leases()) {
    auto k = keys_.find(lease.key());
    if (k == keys_.end()) continue;
    KeyBook& book = k->second;
    const LimitAmounts used = UsedLocked(book, now_ms);
    const LimitAmounts held = HeldLocked(lease.key());
    const LimitAmounts want = FromProto(lease.want());
    const uint64_t share = options_.slices * std::max<size_t>(1, ActiveWorkersLocked(lease.key()));
    LimitAmounts granted, remaining, reset;
    for (auto dim : kDims) {
      const uint64_t limit = book.limits.limit.*dim;
      if (limit == 0) continue;
      const uint64_t taken = Add(used.*dim, held.*dim);
      const uint64_t avail = taken >= limit ? 0 : limit - taken;
      const uint64_t slice = std::max<uint64_t>(1, limit / share);
      // All or nothing for what a waiting request needs: a part of it would only strand
      // capacity here.
      if (want.*dim != 0 && avail >= want.*dim) {
        granted.*dim = std::min(avail, std::max(want.*dim, slice));
      }
      remaining.*dim = avail - granted.*dim;
    }
    // When capacity frees: the oldest window entry or budget hour leaving.
    if (!book.window.empty()) {
      const uint64_t ms = static_cast<uint64_t>(
          std::max<int64_t>(0, book.window.front().at_ms + options_.window_ms - now_ms));
      reset.requests = ms;
      reset.tokens = ms;
    }
    if (!book.budget.empty()) {
      reset.budget = static_cast<uint64_t>(std::max<int64_t>(
          0, book.budget.begin()->first + kHourMs + book.limits.budget_period_ms - now_ms));
    }
    v1::KeyGrant* out = grant.add_keys();
    out->set_key(lease.key());
    ToProto(granted, out->mutable_granted());
    ToProto(remaining, out->mutable_remaining());
    ToProto(reset, out->mutable_reset_ms());
    if (granted != LimitAmounts{}) pending.granted[lease.key()] = granted;
  }
  if (!pending.granted.empty()) w.pending.push_back(std::move(pending));
  w.expires_ms = now_ms + options_.ttl_ms + options_.margin_ms;
  return grant;
}

std::optional<LeaseAuthority::KeyState> LeaseAuthority::State(const std::string& key,
                                                              int64_t now_ms) {
  std::lock_guard lock(mu_);
  ExpireLocked(now_ms);
  auto k = keys_.find(key);
  if (k == keys_.end()) return std::nullopt;
  return KeyState{UsedLocked(k->second, now_ms), HeldLocked(key)};
}

std::string LeaseAuthority::Save(int64_t now_ms) {
  std::lock_guard lock(mu_);
  ExpireLocked(now_ms);
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& [id, w] : workers_) {
    nlohmann::json held = nlohmann::json::object();
    std::map<std::string, LimitAmounts> sums = w.reported;
    for (const Pending& p : w.pending) {
      for (const auto& [key, a] : p.granted) AddTo(sums[key], a);
    }
    for (const auto& [key, a] : sums) held[key] = {a.requests, a.tokens, a.parallel, a.budget};
    workers.push_back({{"id", id}, {"expires_ms", w.expires_ms}, {"held", held}});
  }
  nlohmann::json windows = nlohmann::json::object();
  for (auto& [key, book] : keys_) {
    PruneLocked(book, now_ms);
    nlohmann::json entries = nlohmann::json::array();
    for (const WindowEntry& e : book.window) entries.push_back({e.at_ms, e.requests, e.tokens});
    if (!entries.empty()) windows[key] = entries;
  }
  return nlohmann::json{{"workers", workers}, {"windows", windows}}.dump();
}

bool LeaseAuthority::Load(const std::string& text, int64_t now_ms) {
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (!doc.is_object()) return false;
  std::lock_guard lock(mu_);
  try {
    const nlohmann::json& workers = doc.at("workers");
    const nlohmann::json& windows = doc.at("windows");
    if (!workers.is_array() || !windows.is_object()) return false;
    for (const auto& w : workers) {
      const int64_t expires = w.at("expires_ms").get<int64_t>();
      if (expires <= now_ms) continue;
      WorkerBook& book = workers_[w.at("id").get<std::string>()];
      book.session = 0;
      book.expires_ms = expires;
      const nlohmann::json& held = w.at("held");
      for (auto it = held.begin(); it != held.end(); ++it) {
        const nlohmann::json& a = it.value();
        book.reported[it.key()] = {a.at(0).get<uint64_t>(), a.at(1).get<uint64_t>(),
                                   a.at(2).get<uint64_t>(), a.at(3).get<uint64_t>()};
      }
    }
    for (auto it = windows.begin(); it != windows.end(); ++it) {
      auto k = keys_.find(it.key());
      const nlohmann::json& entries = it.value();
      if (k == keys_.end()) continue;
      for (const auto& e : entries) {
        WindowEntry entry{e.at(0).get<int64_t>(), e.at(1).get<uint64_t>(), e.at(2).get<uint64_t>()};
        if (entry.at_ms + options_.window_ms > now_ms) k->second.window.push_back(entry);
      }
      std::sort(k->second.window.begin(), k->second.window.end(),
                [](const WindowEntry& a, const WindowEntry& b) { return a.at_ms < b.at_ms; });
    }
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  return true;
}

}  // namespace llmproxy
