// The lease authority's invariant: what is used in the window, held by workers and granted
// never exceeds a key's limit, whatever the workers ask, however their streams break.
#include "controlplane/core/lease_authority.h"

#include <gtest/gtest.h>

namespace llmproxy {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;  // wall-clock ms

KeyLimits Rpm(uint64_t n) {
  KeyLimits l;
  l.limit.requests = n;
  return l;
}

struct Lease {
  LimitAmounts held, spent, want;
};

v1::LoadReport Report(const std::map<std::string, Lease>& leases, uint64_t applied) {
  v1::LoadReport r;
  r.set_applied_grant(applied);
  for (const auto& [key, l] : leases) {
    auto* k = r.add_leases();
    k->set_key(key);
    auto set = [](const LimitAmounts& a, v1::LeaseAmounts* out) {
      out->set_requests(a.requests);
      out->set_tokens(a.tokens);
      out->set_parallel(a.parallel);
      out->set_budget(a.budget);
    };
    set(l.held, k->mutable_held());
    set(l.spent, k->mutable_spent());
    set(l.want, k->mutable_want());
  }
  return r;
}

const v1::KeyGrant& Only(const std::optional<v1::LeaseGrant>& g) {
  EXPECT_TRUE(g.has_value());
  EXPECT_EQ(g->keys_size(), 1);
  return g->keys(0);
}

// A worker as the authority sees it: it applies every grant at once, spends one request
// at a time, and reports what it holds and spent.
struct FakeWorker {
  std::string id;
  uint64_t session;
  uint64_t balance = 0;
  uint64_t spent = 0;
  uint64_t applied = 0;
  uint64_t admitted = 0;

  void Ask(LeaseAuthority& a, int64_t now) {
    auto g = a.OnReport(id, session, Report({{"k", {{balance}, {spent}, {1}}}}, applied), now);
    spent = 0;
    ASSERT_TRUE(g);
    applied = g->seq();
    balance += g->keys(0).granted().requests();
  }
  bool Admit() {
    if (balance == 0) return false;
    --balance;
    ++spent;
    ++admitted;
    return true;
  }
};

TEST(LeaseAuthority, TwoWorkersNeverAdmitMoreThanTheLimitInAWindow) {
  LeaseAuthority a;
  a.SetLimits({{"k", Rpm(30)}}, {}, kT0);
  FakeWorker w1{"w1", 1}, w2{"w2", 2};
  int64_t now = kT0;
  for (int i = 0; i < 200; ++i) {
    FakeWorker& w = i % 2 == 0 ? w1 : w2;
    if (!w.Admit()) w.Ask(a, now);
    now += 100;  // 20 s in all: one window
  }
  // Whatever they still hold is spent too: all 30, never 31.
  while (w1.Admit()) {
  }
  while (w2.Admit()) {
  }
  EXPECT_EQ(w1.admitted + w2.admitted, 30u);
  w1.Ask(a, now);
  w2.Ask(a, now);
  EXPECT_EQ(w1.balance + w2.balance, 0u);
  const auto state = a.State("k", now);
  ASSERT_TRUE(state);
  EXPECT_EQ(state->used.requests, 30u);

  // The window slides: a minute after the spending was reported, the capacity is back.
  now += 60'000;
  w1.Ask(a, now);
  EXPECT_GT(w1.balance, 0u);
}

TEST(LeaseAuthority, AGrantNotYetAppliedCountsAsHeld) {
  LeaseAuthority a;
  a.SetLimits({{"k", Rpm(10)}}, {}, kT0);
  // w1 asks for 10 (all of it) and has not applied the grant when w2 asks.
  auto g1 = a.OnReport("w1", 1, Report({{"k", {{}, {}, {10}}}}, 0), kT0);
  EXPECT_EQ(Only(g1).granted().requests(), 10u);
  EXPECT_EQ(Only(g1).remaining().requests(), 0u);
  // w1's next report still says it holds 0 and applied nothing: the grant stays counted.
  auto again = a.OnReport("w1", 1, Report({{"k", {{}, {}, {}}}}, 0), kT0 + 10);
  EXPECT_EQ(Only(again).granted().requests(), 0u);
  auto g2 = a.OnReport("w2", 2, Report({{"k", {{}, {}, {1}}}}, 0), kT0 + 20);
  EXPECT_EQ(Only(g2).granted().requests(), 0u);
  // Once w1 applied it and spent 4, it holds 6: w2 still gets nothing.
  auto g3 = a.OnReport("w1", 1, Report({{"k", {{6}, {4}, {}}}}, g1->seq()), kT0 + 30);
  auto g4 = a.OnReport("w2", 2, Report({{"k", {{}, {}, {1}}}}, 0), kT0 + 40);
  EXPECT_EQ(Only(g4).granted().requests(), 0u);
  // w1 goes idle and returns its 6 (its report no longer lists the key).
  EXPECT_FALSE(a.OnReport("w1", 1, Report({}, g3->seq()), kT0 + 50));
  auto g5 = a.OnReport("w2", 2, Report({{"k", {{}, {}, {6}}}}, 0), kT0 + 60);
  EXPECT_EQ(Only(g5).granted().requests(), 6u);
}

TEST(LeaseAuthority, AWaitingRequestGetsAllItNeedsOrNothing) {
  LeaseAuthority a;
  KeyLimits l;
  l.limit.tokens = 1000;
  a.SetLimits({{"k", l}}, {}, kT0);
  auto g = a.OnReport("w1", 1, Report({{"k", {{}, {}, {0, 600}}}}, 0), kT0);
  EXPECT_EQ(Only(g).granted().tokens(), 600u);
  // 400 left: a request needing 500 gets none of it (a part would only be stranded).
  auto g2 = a.OnReport("w2", 2, Report({{"k", {{}, {}, {0, 500}}}}, 0), kT0);
  EXPECT_EQ(Only(g2).granted().tokens(), 0u);
  EXPECT_EQ(Only(g2).remaining().tokens(), 400u);
  auto g3 = a.OnReport("w2", 2, Report({{"k", {{}, {}, {0, 400}}}}, g2->seq()), kT0);
  EXPECT_EQ(Only(g3).granted().tokens(), 400u);
}

TEST(LeaseAuthority, ABrokenStreamKeepsItsHoldingsCountedUntilTheyExpire) {
  LeaseOptions o;
  o.ttl_ms = 10'000;
  o.margin_ms = 5'000;
  LeaseAuthority a(o);
  a.SetLimits({{"k", Rpm(10)}}, {}, kT0);
  auto g = a.OnReport("w1", 1, Report({{"k", {{}, {}, {10}}}}, 0), kT0);
  ASSERT_EQ(Only(g).granted().requests(), 10u);
  // w1's stream is gone (no more reports): it may still spend those 10 for 10 s, so
  // nobody else gets them before 15 s.
  auto g2 = a.OnReport("w2", 2, Report({{"k", {{}, {}, {1}}}}, 0), kT0 + 14'999);
  EXPECT_EQ(Only(g2).granted().requests(), 0u);
  auto g3 = a.OnReport("w2", 2, Report({{"k", {{}, {}, {1}}}}, g2->seq()), kT0 + 15'000);
  EXPECT_GT(Only(g3).granted().requests(), 0u);
}

TEST(LeaseAuthority, ANewStreamReportsTheWholeTruthAndLateReportsOfTheOldOneAreIgnored) {
  LeaseAuthority a;
  a.SetLimits({{"k", Rpm(10)}}, {}, kT0);
  auto g = a.OnReport("w1", 1, Report({{"k", {{}, {}, {10}}}}, 0), kT0);
  ASSERT_EQ(Only(g).granted().requests(), 10u);
  // Reconnected (session 5): it says it holds 3 and spent 7 (the grant arrived).
  auto g2 = a.OnReport("w1", 5, Report({{"k", {{3}, {7}, {}}}}, 0), kT0 + 100);
  ASSERT_TRUE(g2);
  auto st = a.State("k", kT0 + 100);
  EXPECT_EQ(st->held.requests, 3u);
  EXPECT_EQ(st->used.requests, 7u);
  // A report of session 1 read late changes nothing.
  EXPECT_FALSE(a.OnReport("w1", 1, Report({{"k", {{0}, {0}, {5}}}}, 0), kT0 + 200));
  EXPECT_EQ(a.State("k", kT0 + 200)->held.requests, 3u);
}

TEST(LeaseAuthority, BudgetCountsItsHistoryAndForgetsWhatLeftThePeriod) {
  LeaseAuthority a;
  KeyLimits l;
  l.limit.budget = 1'000'000;  // 1 USD in micro-USD
  l.usd = true;
  l.budget_period_ms = 24 * 3600 * 1000;
  const int64_t hour = kT0 - kT0 % 3'600'000;
  a.SetLimits(
      {{"k", l}},
      [&](const std::string& key, const KeyLimits& lim) {
        EXPECT_EQ(key, "k");
        EXPECT_EQ(lim.budget_period_ms, l.budget_period_ms);
        return std::map<int64_t, uint64_t>{{hour - 23 * 3'600'000, 300'000}, {hour, 500'000}};
      },
      kT0);
  auto g = a.OnReport("w1", 1, Report({{"k", {{}, {}, {0, 0, 0, 300'000}}}}, 0), kT0);
  EXPECT_EQ(Only(g).granted().budget(), 0u);  // 200'000 left
  EXPECT_EQ(Only(g).remaining().budget(), 200'000u);
  EXPECT_GT(Only(g).reset_ms().budget(), 0u);
  // Two hours later the oldest 300'000 left the period: 500'000 left, 300'000 granted.
  const int64_t later = kT0 + 2 * 3'600'000;
  auto g2 = a.OnReport("w1", 1, Report({{"k", {{}, {}, {0, 0, 0, 300'000}}}}, g->seq()), later);
  EXPECT_EQ(Only(g2).granted().budget(), 300'000u);
  EXPECT_EQ(Only(g2).remaining().budget(), 200'000u);
  // Spent (reported): 800'000 of the period used, and 300'000 more is not there.
  auto g3 = a.OnReport(
      "w1", 1, Report({{"k", {{0, 0, 0, 0}, {0, 0, 0, 300'000}, {0, 0, 0, 300'000}}}}, g2->seq()),
      later);
  EXPECT_EQ(Only(g3).granted().budget(), 0u);
  EXPECT_EQ(Only(g3).remaining().budget(), 200'000u);
  EXPECT_EQ(a.State("k", later)->used.budget, 800'000u);
}

TEST(LeaseAuthority, SaveAndLoadCarryHoldingsAndWindowsAcrossARestart) {
  LeaseAuthority a;
  a.SetLimits({{"k", Rpm(10)}}, {}, kT0);
  auto g = a.OnReport("w1", 1, Report({{"k", {{}, {}, {6}}}}, 0), kT0);
  ASSERT_EQ(Only(g).granted().requests(), 6u);
  a.OnReport("w1", 1, Report({{"k", {{4}, {2}, {}}}}, g->seq()), kT0 + 1000);
  const std::string saved = a.Save(kT0 + 1000);

  LeaseAuthority b;
  b.SetLimits({{"k", Rpm(10)}}, {}, kT0 + 2000);
  ASSERT_TRUE(b.Load(saved, kT0 + 2000));
  auto st = b.State("k", kT0 + 2000);
  EXPECT_EQ(st->held.requests, 4u);
  EXPECT_EQ(st->used.requests, 2u);
  auto g2 = b.OnReport("w2", 1, Report({{"k", {{}, {}, {5}}}}, 0), kT0 + 2000);
  EXPECT_EQ(Only(g2).granted().requests(), 0u);
  EXPECT_EQ(Only(g2).remaining().requests(), 4u);

  EXPECT_FALSE(b.Load("{not json", kT0));
  EXPECT_FALSE(b.Load(R"({"workers":[{"id":"x"}]})", kT0));
}

TEST(LeaseAuthority, HostileReportsCannotOverflowOrGrantUnknownKeys) {
  LeaseAuthority a;
  a.SetLimits({{"k", Rpm(10)}}, {}, kT0);
  auto g = a.OnReport("w1", 1,
                      Report({{"k", {{UINT64_MAX, UINT64_MAX}, {UINT64_MAX}, {UINT64_MAX}}},
                              {"nope", {{}, {}, {5}}}},
                             0),
                      kT0);
  ASSERT_TRUE(g);
  ASSERT_EQ(g->keys_size(), 1);  // the unknown key is not answered
  EXPECT_EQ(g->keys(0).granted().requests(), 0u);
  EXPECT_FALSE(a.State("nope", kT0));
  // A key dropped from the configuration drops its state.
  a.SetLimits({}, {}, kT0);
  EXPECT_FALSE(a.State("k", kT0));
}

TEST(LeaseAuthority, LimitsOfAKeyInLeaseUnits) {
  ClientKey k;
  k.name = "a";
  EXPECT_FALSE(LimitsOf(k));
  k.rpm = 30;
  k.budget = KeyBudget{KeyBudget::Unit::kUsd, 2.5, std::chrono::hours(24)};
  auto l = LimitsOf(k);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->limit.requests, 30u);
  EXPECT_EQ(l->limit.budget, 2'500'000u);
  EXPECT_TRUE(l->usd);
  EXPECT_EQ(l->budget_period_ms, 86'400'000);
}

}  // namespace
}  // namespace llmproxy
