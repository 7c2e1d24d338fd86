#include "dataplane/routing/balancer.h"

#include <algorithm>

#include "dataplane/routing/backend_state.h"

namespace llmproxy {
namespace {

bool Skipped(const std::vector<bool>& skip, size_t offset, size_t i) {
  return offset + i < skip.size() && skip[offset + i];
}

constexpr HealthScope kScopes[] = {HealthScope::kOrigin, HealthScope::kAccount,
                                   HealthScope::kModel};

uint8_t Bit(HealthScope scope) { return static_cast<uint8_t>(1u << static_cast<unsigned>(scope)); }

size_t MemberOf(const CandidateGroup& group, size_t backend) {
  return static_cast<size_t>(std::find(group.backends.begin(), group.backends.end(), backend) -
                             group.backends.begin());
}

}  // namespace

bool IsRoutable(const BackendConfig& backend) { return backend.weight > 0 && !backend.drained; }

bool AdmitCandidate(const CandidateHealth& health, SteadyTime now, uint8_t& trials) {
  trials = 0;
  for (HealthScope scope : kScopes) {
    const HealthTracker::Admission a = health.at(scope).Admit(now);
    if (a == HealthTracker::Admission::kRefused) {
      for (HealthScope taken : kScopes) {
        if (trials & Bit(taken)) health.at(taken).OnNeutral();
      }
      trials = 0;
      return false;
    }
    if (a == HealthTracker::Admission::kTrial) trials |= Bit(scope);
  }
  return true;
}

uint8_t ForceAdmitCandidate(const CandidateHealth& health, SteadyTime now) {
  uint8_t trials = 0;
  for (HealthScope scope : kScopes) {
    if (health.at(scope).ForceAcquire(now)) trials |= Bit(scope);
  }
  return trials;
}

std::optional<size_t> Balancer::PickHealthy(const RoutingTable& table, const CandidateGroup& group,
                                            const std::vector<bool>& skip, SteadyTime now,
                                            size_t skip_offset, PickInfo* info) {
  std::vector<size_t> eligible;
  eligible.reserve(group.backends.size());
  for (size_t k = 0; k < group.backends.size(); ++k) {
    const size_t i = group.backends[k];
    if (IsRoutable(table.backend(i)) && !Skipped(skip, skip_offset, i) &&
        table.candidate(group, k).IsAvailable(now)) {
      eligible.push_back(i);
    }
  }
  // Admission fails only when another request took a trial slot in between; drop that
  // candidate and choose again.
  while (!eligible.empty()) {
    std::optional<size_t> chosen = Choose(table, group, eligible);
    if (!chosen) return std::nullopt;
    const size_t member = MemberOf(group, *chosen);
    uint8_t trials = 0;
    if (AdmitCandidate(table.candidate(group, member), now, trials)) {
      if (info) *info = {member, trials};
      return chosen;
    }
    eligible.erase(std::find(eligible.begin(), eligible.end(), *chosen));
  }
  return std::nullopt;
}

std::optional<size_t> Balancer::PickFailOpen(const RoutingTable& table, const CandidateGroup& group,
                                             const std::vector<bool>& skip, SteadyTime now,
                                             size_t skip_offset, PickInfo* info) {
  std::optional<size_t> best;
  size_t best_member = 0;
  SteadyTime best_until{};
  for (size_t k = 0; k < group.backends.size(); ++k) {
    const size_t i = group.backends[k];
    if (!IsRoutable(table.backend(i)) || Skipped(skip, skip_offset, i)) continue;
    const SteadyTime until = table.candidate(group, k).AvailableAt(now);
    if (!best || until < best_until) {
      best = i;
      best_member = k;
      best_until = until;
    }
  }
  if (best) {
    const uint8_t trials = ForceAdmitCandidate(table.candidate(group, best_member), now);
    if (info) *info = {best_member, trials};
  }
  return best;
}

std::optional<size_t> Balancer::Choose(const RoutingTable& table, const CandidateGroup& group,
                                       std::span<const size_t> eligible) {
  if (eligible.empty()) return std::nullopt;
  switch (mode_) {
    case BalanceMode::kRandom:
      return ChooseRandom(table, eligible);
    case BalanceMode::kRoundRobin:
      return ChooseRoundRobin(group, eligible);
    case BalanceMode::kLeastBusy:
      return ChooseLeastBusy(table, eligible);
  }
  return eligible.front();
}

std::optional<size_t> Balancer::ChooseRandom(const RoutingTable& table,
                                             std::span<const size_t> eligible) {
  uint64_t total = 0;
  for (size_t i : eligible) total += table.backend(i).weight;
  if (total == 0) return std::nullopt;  // only weight-0 candidates: never chosen
  uint64_t draw = random_.Uniform(total);
  for (size_t i : eligible) {
    const uint64_t weight = table.backend(i).weight;
    if (draw < weight) return i;
    draw -= weight;
  }
  return eligible.back();  // unreachable: draw < total
}

std::optional<size_t> Balancer::ChooseRoundRobin(const CandidateGroup& group,
                                                 std::span<const size_t> eligible) {
  const size_t n = group.backends.size();
  if (n == 0) return std::nullopt;
  // Rotation over the whole group (not just the eligible ones) keeps the order stable
  // while backends come and go; an ineligible slot passes its turn to the next one.
  const uint64_t start = group.rr_cursor.fetch_add(1, std::memory_order_relaxed);
  for (size_t k = 0; k < n; ++k) {
    const size_t candidate = group.backends[(start + k) % n];
    if (std::find(eligible.begin(), eligible.end(), candidate) != eligible.end()) {
      return candidate;
    }
  }
  return eligible.front();  // eligible not drawn from this group: still answer
}

std::optional<size_t> Balancer::ChooseLeastBusy(const RoutingTable& table,
                                                std::span<const size_t> eligible) {
  if (eligible.size() == 1) return eligible.front();
  const uint64_t a = random_.Uniform(eligible.size());
  uint64_t b = random_.Uniform(eligible.size() - 1);
  if (b >= a) ++b;  // two distinct draws
  const BackendState& first = table.state(eligible[a]);
  const BackendState& second = table.state(eligible[b]);
  if (second.outstanding() < first.outstanding()) return eligible[b];
  if (second.outstanding() == first.outstanding() && second.ewma_seconds() < first.ewma_seconds()) {
    return eligible[b];
  }
  return eligible[a];
}

}  // namespace llmproxy
