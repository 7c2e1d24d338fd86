// libFuzzer target: the control plane's lease authority (controlplane/core/lease_authority.h)
// driven by arbitrary worker reports, and its saved state read back from arbitrary text.
// The property: whenever it grants anything, what is used in the window plus what all
// workers hold (the grant included) stays within the key's limit, whatever the reports
// claim; and nothing crashes or overflows.
#include <cstddef>
#include <cstdint>
#include <string>

#include "controlplane/core/lease_authority.h"

namespace {

constexpr int64_t kT0 = 1'700'000'000'000;

void Check(bool ok, const char* what) {
  if (!ok) {
    __builtin_trap();  // libFuzzer reports the input
  }
  (void)what;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using llmproxy::KeyLimits;
  using llmproxy::LeaseAuthority;
  LeaseAuthority a;
  KeyLimits limits;
  limits.limit = {30, 1000, 4, 5000};
  limits.budget_period_ms = 24 * 3600 * 1000;
  a.SetLimits({{"k", limits}}, {}, kT0);
  if (size > 0 && data[0] == '{') {  // saved state
    a.Load(std::string(reinterpret_cast<const char*>(data), size), kT0);
    (void)a.Save(kT0);
    return 0;
  }
  int64_t now = kT0;
  // Each op: worker, session, time step, then held / spent / want for each of the four
  // limits, and the grant the worker says it applied: 16 bytes.
  for (size_t i = 0; i + 16 <= size; i += 16) {
    const uint8_t* op = data + i;
    const std::string worker = "w" + std::to_string(op[0] % 3);
    const uint64_t session = 1 + op[1] % 4;
    now += op[2] * 250;
    llmproxy::v1::LoadReport report;
    report.set_applied_grant(op[15]);
    if (op[3] % 8 != 0) {
      auto* lease = report.add_leases();
      lease->set_key(op[3] % 8 == 7 ? "unknown" : "k");
      lease->mutable_held()->set_requests(op[4] % 40);
      lease->mutable_held()->set_tokens(op[5] * 8);
      lease->mutable_held()->set_parallel(op[6] % 6);
      lease->mutable_held()->set_budget(op[7] * 40);
      lease->mutable_spent()->set_requests(op[8] % 8);
      lease->mutable_spent()->set_tokens(op[9]);
      lease->mutable_spent()->set_budget(op[10]);
      lease->mutable_want()->set_requests(op[11] % 10);
      lease->mutable_want()->set_tokens(op[12] * 4);
      lease->mutable_want()->set_parallel(op[13] % 5);
      lease->mutable_want()->set_budget(op[14] * 20);
    }
    const auto grant = a.OnReport(worker, session, report, now);
    if (!grant) continue;
    for (const auto& g : grant->keys()) {
      Check(g.key() == "k", "only configured keys are answered");
      const auto state = a.State("k", now);
      Check(state.has_value(), "the key has state");
      auto within = [](uint64_t granted, uint64_t used, uint64_t held, uint64_t limit) {
        return granted == 0 || (used <= limit && held <= limit - used);
      };
      Check(within(g.granted().requests(), state->used.requests, state->held.requests, 30),
            "requests");
      Check(within(g.granted().tokens(), state->used.tokens, state->held.tokens, 1000), "tokens");
      Check(within(g.granted().parallel(), 0, state->held.parallel, 4), "parallel");
      Check(within(g.granted().budget(), state->used.budget, state->held.budget, 5000), "budget");
    }
  }
  // What it saves it can read back.
  LeaseAuthority b;
  b.SetLimits({{"k", limits}}, {}, now);
  Check(b.Load(a.Save(now), now), "its own state reads back");
  return 0;
}
