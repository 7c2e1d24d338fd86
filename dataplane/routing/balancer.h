// Picks one backend of a CandidateGroup for one attempt, by the configured mode.
//
// A candidate is eligible when it is routable (weight > 0 and not drained), not skipped
// by the caller (tried by this request, say), and all three of its health trackers
// (origin, account, account-model: backend_health.h) are available (healthy, or cooldown
// over with the trial slot free). Among the eligible:
//   random       weighted random: P(i) = weight_i / sum of eligible weights.
//   round-robin  strict rotation over the group in config order, skipping ineligible
//                ones. The cursor is the group's own (per model, per table version);
//                weights other than 0 are ignored.
//   least-busy   power of two choices: two distinct eligible candidates drawn
//                uniformly, the one with fewer outstanding requests wins, ties go to the
//                lower latency EWMA, then to the first drawn. Weights other than 0 are
//                ignored.
//
// Fail-open: when no candidate is eligible only because of health (every untried,
// routable one is ejected or has its trial in flight), PickFailOpen returns the one
// whose ejection ends soonest (ties: config order) rather than nothing. A gateway whose
// backends were all ejected by a blip still tries, and the client gets the upstream's
// real answer; 503 "no healthy backend" is left for groups with no routable backend at
// all (all drained or weight 0, or no backend serves the model).
//
// Pure and thread-safe: the only shared mutable state touched is the group's atomic
// cursor and the candidates' HealthTrackers. One Balancer per request (or per thread):
// it holds the caller's Random&.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include "common/config/config.h"
#include "dataplane/routing/clock.h"
#include "dataplane/routing/random.h"
#include "dataplane/routing/routing_table.h"

namespace llmproxy {

// weight > 0 and not drained: may receive traffic at all.
bool IsRoutable(const BackendConfig& backend);

// What a pick acquired, for its report (AttemptPlanner).
struct PickInfo {
  size_t member = 0;  // the candidate's index in the group
  // Bit 1 << HealthScope: the trackers whose trial slot the pick took. The outcome's
  // report settles them; an attempt that ends without one gives them back (OnNeutral).
  uint8_t trials = 0;
};

// Admits `health` on all three trackers (HealthTracker::Admit); a refusal by one gives
// back the trials the others granted. `trials`: as PickInfo::trials.
bool AdmitCandidate(const CandidateHealth& health, SteadyTime now, uint8_t& trials);
// Always admits (the fail-open and repeat paths); returns the trials it took.
uint8_t ForceAdmitCandidate(const CandidateHealth& health, SteadyTime now);

class Balancer {
 public:
  Balancer(BalanceMode mode, Random& random) : mode_(mode), random_(random) {}

  // Chooses an eligible candidate and acquires it (AdmitCandidate, which may grant
  // trials). `skip[skip_offset + i]` is true for backends i not to pick (may be shorter:
  // missing = not skipped). nullopt: no eligible candidate. `info`, when given, says
  // what was acquired.
  std::optional<size_t> PickHealthy(const RoutingTable& table, const CandidateGroup& group,
                                    const std::vector<bool>& skip, SteadyTime now,
                                    size_t skip_offset = 0, PickInfo* info = nullptr);

  // The fail-open choice described above, acquired with ForceAdmitCandidate. nullopt when
  // no unskipped routable candidate exists.
  std::optional<size_t> PickFailOpen(const RoutingTable& table, const CandidateGroup& group,
                                     const std::vector<bool>& skip, SteadyTime now,
                                     size_t skip_offset = 0, PickInfo* info = nullptr);

  // The mode's choice among `eligible` (backend indices, group order), without health
  // checks or acquisition. nullopt only when `eligible` is empty.
  std::optional<size_t> Choose(const RoutingTable& table, const CandidateGroup& group,
                               std::span<const size_t> eligible);

 private:
  std::optional<size_t> ChooseRandom(const RoutingTable& table, std::span<const size_t> eligible);
  std::optional<size_t> ChooseRoundRobin(const CandidateGroup& group,
                                         std::span<const size_t> eligible);
  std::optional<size_t> ChooseLeastBusy(const RoutingTable& table,
                                        std::span<const size_t> eligible);

  BalanceMode mode_;
  Random& random_;
};

}  // namespace llmproxy
