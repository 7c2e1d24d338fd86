// A worker's leases: admission spends the local balance, asks when short, waits only when
// the control plane may have room, and settles reservations with what was really used.
#include "dataplane/config_sync/key_leases.h"

#include <gtest/gtest.h>

namespace llmproxy {
namespace {

using Verdict = AdmitResult::Verdict;

ClientKey Key(uint64_t rpm, uint64_t tpm = 0, uint64_t parallel = 0) {
  ClientKey k;
  k.name = "team-a";
  k.rpm = rpm;
  k.tpm = tpm;
  k.max_parallel = parallel;
  return k;
}

v1::LeaseGrant Grant(uint64_t seq, uint64_t requests, uint64_t tokens = 0, uint64_t parallel = 0,
                     uint64_t remaining = 100, uint64_t reset_ms = 0) {
  v1::LeaseGrant g;
  g.set_seq(seq);
  g.set_ttl_ms(10'000);
  auto* k = g.add_keys();
  k->set_key("team-a");
  k->mutable_granted()->set_requests(requests);
  k->mutable_granted()->set_tokens(tokens);
  k->mutable_granted()->set_parallel(parallel);
  k->mutable_remaining()->set_requests(remaining);
  k->mutable_remaining()->set_tokens(remaining);
  k->mutable_remaining()->set_parallel(remaining);
  k->mutable_reset_ms()->set_requests(reset_ms);
  k->mutable_reset_ms()->set_tokens(reset_ms);
  return g;
}

TEST(KeyLeases, AnUnlimitedKeyIsAdmittedWithoutALease) {
  KeyLeases l;
  ClientKey k;
  k.name = "open";
  AdmitResult r = l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 0, true);
  EXPECT_EQ(r.verdict, Verdict::kAdmit);
  EXPECT_FALSE(r.ticket.active);
  v1::LoadReport rep;
  l.TakeReport(rep, 0);
  EXPECT_EQ(rep.leases_size(), 0);
}

TEST(KeyLeases, ShortOfBalanceARequestAsksAndWaitsThenSpendsTheGrant) {
  KeyLeases l;
  int wakes = 0;
  l.SetWake([&] { ++wakes; });
  l.OnStream(true, 0);
  const ClientKey k = Key(30);
  AdmitResult r = l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 10, true);
  EXPECT_EQ(r.verdict, Verdict::kWait);
  EXPECT_GE(wakes, 2);  // the stream's announcement, then the ask
  EXPECT_TRUE(l.report_due());
  v1::LoadReport rep;
  l.TakeReport(rep, 10);
  ASSERT_EQ(rep.leases_size(), 1);
  EXPECT_EQ(rep.leases(0).want().requests(), 1u);
  EXPECT_FALSE(l.report_due());

  const uint64_t gen = l.generation();
  l.OnGrant(Grant(7, 4), 20);
  EXPECT_GT(l.generation(), gen);
  r = l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 21, true);
  ASSERT_EQ(r.verdict, Verdict::kAdmit);
  EXPECT_TRUE(r.ticket.active);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 22, true).verdict, Verdict::kAdmit);
  }
  v1::LoadReport rep2;
  l.TakeReport(rep2, 30);
  EXPECT_EQ(rep2.applied_grant(), 7u);
  ASSERT_EQ(rep2.leases_size(), 1);
  EXPECT_EQ(rep2.leases(0).held().requests(), 0u);
  EXPECT_EQ(rep2.leases(0).spent().requests(), 4u);
  EXPECT_EQ(rep2.leases(0).want().requests(), 1u);  // ran low: asked ahead
}

TEST(KeyLeases, AControlPlaneWithNoRoomLeftRefusesAtOnceWithItsResetTime) {
  KeyLeases l;
  l.OnStream(true, 0);
  const ClientKey k = Key(30, 1000);
  l.OnGrant(Grant(1, 1, 500, 0, /*remaining=*/0, /*reset_ms=*/42'000), 100);
  EXPECT_EQ(l.TryAdmit(k, {100, 0}, ControlPlaneLoss::kDeny, 101, true).verdict, Verdict::kAdmit);
  AdmitResult r = l.TryAdmit(k, {100, 0}, ControlPlaneLoss::kDeny, 102, true);
  ASSERT_EQ(r.verdict, Verdict::kDeny);
  EXPECT_EQ(r.denied, LimitKind::kRequests);
  EXPECT_EQ(r.requests.limit, 30u);
  EXPECT_EQ(r.requests.remaining, 0u);
  EXPECT_EQ(r.tokens.limit, 1000u);
  EXPECT_EQ(r.tokens.remaining, 400u);
  EXPECT_EQ(r.retry_after_ms, 41'998u);
  // A second later that answer is old: the next request asks again.
  EXPECT_EQ(l.TryAdmit(k, {100, 0}, ControlPlaneLoss::kDeny, 1200, true).verdict, Verdict::kWait);
  // The wait is over and its ask went unanswered: the control plane's loss, not the limit.
  AdmitResult late = l.TryAdmit(k, {100, 0}, ControlPlaneLoss::kDeny, 1300, false);
  EXPECT_EQ(late.verdict, Verdict::kDeny);
  EXPECT_EQ(late.denied, LimitKind::kControlPlane);
  EXPECT_TRUE(l.TryAdmit(k, {100, 0}, ControlPlaneLoss::kAllow, 1300, false).by_loss_policy);
  // An answer with no room (fresh): the limit's refusal again.
  l.OnGrant(Grant(2, 0, 0, 0, 0, 40'000), 1400);
  AdmitResult full = l.TryAdmit(k, {100, 0}, ControlPlaneLoss::kDeny, 1401, false);
  EXPECT_EQ(full.verdict, Verdict::kDeny);
  EXPECT_EQ(full.denied, LimitKind::kRequests);
}

TEST(KeyLeases, WithoutAControlPlaneTheLeaseIsSpentThenThePolicyDecides) {
  KeyLeases l;
  l.OnStream(true, 0);
  const ClientKey k = Key(30);
  l.OnGrant(Grant(1, 2), 0);
  l.OnStream(false, 10);
  EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 20, true).verdict, Verdict::kAdmit);
  EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 30, true).verdict, Verdict::kAdmit);
  AdmitResult denied = l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 40, true);
  ASSERT_EQ(denied.verdict, Verdict::kDeny);
  EXPECT_EQ(denied.denied, LimitKind::kControlPlane);
  AdmitResult allowed = l.TryAdmit(k, {}, ControlPlaneLoss::kAllow, 50, true);
  ASSERT_EQ(allowed.verdict, Verdict::kAdmit);
  EXPECT_TRUE(allowed.by_loss_policy);
  EXPECT_TRUE(allowed.ticket.unleased);
  // What loss admitted is reported as spent once a stream is back.
  l.OnStream(true, 60);
  v1::LoadReport rep;
  l.TakeReport(rep, 60);
  ASSERT_EQ(rep.leases_size(), 1);
  EXPECT_EQ(rep.leases(0).spent().requests(), 3u);
}

TEST(KeyLeases, AStreamThatAnswersNothingCountsAsLost) {
  KeyLeasesOptions o;
  o.ask_timeout_ms = 3000;
  KeyLeases l(o);
  l.OnStream(true, 0);
  const ClientKey k = Key(30);
  EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 0, true).verdict, Verdict::kWait);
  v1::LoadReport rep;
  l.TakeReport(rep, 0);
  EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 3000, true).verdict, Verdict::kWait);
  AdmitResult r = l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 3001, true);
  ASSERT_EQ(r.verdict, Verdict::kDeny);
  EXPECT_EQ(r.denied, LimitKind::kControlPlane);
}

TEST(KeyLeases, AnExpiredLeaseIsNotSpent) {
  KeyLeases l;
  l.OnStream(true, 0);
  const ClientKey k = Key(30);
  l.OnGrant(Grant(1, 5), 0);  // ttl 10 s
  EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 9'999, false).verdict, Verdict::kAdmit);
  l.OnStream(false, 10'000);
  EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 10'000, false).verdict, Verdict::kDeny);
  v1::LoadReport rep;
  l.TakeReport(rep, 10'001);
  ASSERT_EQ(rep.leases_size(), 1);
  EXPECT_EQ(rep.leases(0).held().requests(), 0u);
}

TEST(KeyLeases, SettlingReturnsWhatAReservationDidNotUseAndCountsWhatItDid) {
  KeyLeases l;
  l.OnStream(true, 0);
  const ClientKey k = Key(0, 1000, 2);
  l.OnGrant(Grant(1, 0, 1000, 2, /*remaining=*/1000), 0);
  AdmitResult a = l.TryAdmit(k, {600, 0}, ControlPlaneLoss::kDeny, 1, true);
  ASSERT_EQ(a.verdict, Verdict::kAdmit);
  EXPECT_EQ(a.ticket.tokens, 600u);
  EXPECT_TRUE(a.ticket.parallel);
  // 400 left: a second request of 600 waits for more.
  EXPECT_EQ(l.TryAdmit(k, {600, 0}, ControlPlaneLoss::kDeny, 2, true).verdict, Verdict::kWait);
  v1::LoadReport rep;
  l.TakeReport(rep, 3);
  ASSERT_EQ(rep.leases_size(), 1);
  EXPECT_EQ(rep.leases(0).held().tokens(), 1000u);  // 400 balance + 600 reserved
  EXPECT_EQ(rep.leases(0).held().parallel(), 2u);
  EXPECT_EQ(rep.leases(0).want().tokens(), 600u);

  const uint64_t gen = l.generation();
  l.Settle(a.ticket, 150, 0, 4);  // used 150 of 600
  EXPECT_GT(l.generation(), gen);
  AdmitResult b = l.TryAdmit(k, {600, 0}, ControlPlaneLoss::kDeny, 5, true);
  ASSERT_EQ(b.verdict, Verdict::kAdmit);  // 850 back in the balance
  l.Settle(b.ticket, 900, 0, 6);          // an overrun of 300: counted, balance floors at 0
  v1::LoadReport rep2;
  l.TakeReport(rep2, 7);
  ASSERT_EQ(rep2.leases_size(), 1);
  EXPECT_EQ(rep2.leases(0).spent().tokens(), 1050u);
  EXPECT_EQ(rep2.leases(0).held().tokens(), 250u);
  EXPECT_EQ(rep2.leases(0).held().parallel(), 2u);
}

TEST(KeyLeases, AnIdleKeyReturnsItsBalanceAndAFailedReportIsPutBack) {
  KeyLeasesOptions o;
  o.idle_return_ms = 3000;
  KeyLeases l(o);
  l.OnStream(true, 0);
  const ClientKey k = Key(30);
  l.OnGrant(Grant(1, 5), 0);
  ASSERT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 0, true).verdict, Verdict::kAdmit);
  v1::LoadReport failed;
  l.TakeReport(failed, 100);
  ASSERT_EQ(failed.leases(0).spent().requests(), 1u);
  l.Restore(failed);
  v1::LoadReport rep;
  l.TakeReport(rep, 200);
  ASSERT_EQ(rep.leases_size(), 1);
  EXPECT_EQ(rep.leases(0).spent().requests(), 1u);
  v1::LoadReport idle;
  l.TakeReport(idle, 3500);
  EXPECT_EQ(idle.leases_size(), 0);  // left out: its 4 go back to the control plane
  l.OnGrant(Grant(2, 0, 0, 0, 0, 0), 3600);
  EXPECT_EQ(l.TryAdmit(k, {}, ControlPlaneLoss::kDeny, 3601, true).verdict, Verdict::kDeny);
}

}  // namespace
}  // namespace llmproxy
