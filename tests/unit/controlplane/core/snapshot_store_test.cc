// The ConfigDiscovery resend rules, without gRPC: what a worker is sent, when, and what
// its ACKs and NACKs change.
#include <gtest/gtest.h>

#include "controlplane/core/snapshot_store.h"

namespace llmproxy {
namespace {

v1::RoutingTable Table(uint32_t retry) {
  v1::RoutingTable t;
  t.set_retry(retry);
  return t;
}

v1::WorkerHello Hello(const std::string& id, uint64_t version = 0, std::string nonce = "") {
  v1::WorkerHello h;
  h.set_id(id);
  h.set_pid(42);
  h.set_address("127.0.0.1:8080");
  h.set_current_version(version);
  h.set_current_nonce(std::move(nonce));
  return h;
}

v1::Ack AckOf(const Snapshot& s) {
  v1::Ack a;
  a.set_version(s.version);
  a.set_nonce(s.nonce);
  return a;
}

TEST(SnapshotStore, VersionsGrowAndNoncesAreUnique) {
  SnapshotStore store("ctl");
  EXPECT_EQ(store.version(), 0u);
  EXPECT_FALSE(store.Current().has_value());
  EXPECT_EQ(store.Publish(Table(1)), 1u);
  std::string n1 = store.Current()->nonce;
  EXPECT_EQ(store.Publish(Table(2)), 2u);
  EXPECT_NE(store.Current()->nonce, n1);
  EXPECT_EQ(store.Current()->table->retry(), 2u);
}

TEST(SnapshotStore, NoncesDifferAcrossInstances) {
  SnapshotStore a("ctl-a"), b("ctl-b");
  a.Publish(Table(1));
  b.Publish(Table(1));
  EXPECT_NE(a.Current()->nonce, b.Current()->nonce);
}

TEST(SnapshotStore, NewWorkerGetsCurrentSnapshotOnce) {
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t s = store.Connect(Hello("w0"), 1000);
  ASSERT_TRUE(store.HasPending("w0", s));
  auto snap = store.TakePending("w0", s);
  ASSERT_TRUE(snap.has_value());
  EXPECT_EQ(snap->version, 1u);
  EXPECT_FALSE(store.HasPending("w0", s));
  EXPECT_FALSE(store.TakePending("w0", s).has_value());
  EXPECT_TRUE(store.Ack("w0", s, AckOf(*snap)));
  EXPECT_FALSE(store.HasPending("w0", s));
  auto workers = store.Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].acked_version, 1u);
  EXPECT_EQ(workers[0].pid, 42);
  EXPECT_EQ(workers[0].connected_since_ms, 1000);
}

TEST(SnapshotStore, NewVersionIsSentToEveryConnectedWorker) {
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t a = store.Connect(Hello("a"), 0);
  uint64_t b = store.Connect(Hello("b"), 0);
  store.Ack("a", a, AckOf(*store.TakePending("a", a)));
  store.Ack("b", b, AckOf(*store.TakePending("b", b)));
  store.Publish(Table(2));
  EXPECT_TRUE(store.HasPending("a", a));
  EXPECT_TRUE(store.HasPending("b", b));
  EXPECT_EQ(store.TakePending("a", a)->version, 2u);
}

TEST(SnapshotStore, ReconnectWithSameSnapshotIsNotResent) {
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t s1 = store.Connect(Hello("w"), 0);
  auto snap = *store.TakePending("w", s1);
  store.Ack("w", s1, AckOf(snap));
  store.Disconnect("w", s1);
  uint64_t s2 = store.Connect(Hello("w", snap.version, snap.nonce), 0);
  EXPECT_FALSE(store.HasPending("w", s2));
  EXPECT_EQ(store.Workers()[0].acked_version, 1u);
}

TEST(SnapshotStore, RestartedWorkerShowsNothingAckedUntilItAcks) {
  // A worker killed and restarted under the same id holds no table: the record must not
  // keep the dead process's ACK (or NACK), or "acked" says it serves before it can.
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t s1 = store.Connect(Hello("w"), 0);
  store.Ack("w", s1, AckOf(*store.TakePending("w", s1)));
  v1::Nack nack;
  nack.set_version(1);
  nack.set_nonce(store.Current()->nonce);
  nack.set_error("bad table");
  store.Disconnect("w", s1);
  uint64_t s2 = store.Connect(Hello("w"), 0);
  EXPECT_EQ(store.Workers()[0].acked_version, 0u);
  EXPECT_EQ(store.Workers()[0].held_version, 0u);
  auto snap = store.TakePending("w", s2);
  ASSERT_TRUE(snap.has_value());
  EXPECT_TRUE(store.Nack("w", s2, nack));
  EXPECT_EQ(store.Workers()[0].nacked_version, 1u);
  store.Disconnect("w", s2);
  uint64_t s3 = store.Connect(Hello("w"), 0);
  EXPECT_EQ(store.Workers()[0].nacked_version, 0u);
  EXPECT_TRUE(store.Workers()[0].last_nack_error.empty());
  EXPECT_TRUE(store.Ack("w", s3, AckOf(*store.TakePending("w", s3))));
  EXPECT_EQ(store.Workers()[0].acked_version, 1u);
}

TEST(SnapshotStore, ReconnectWithOlderVersionIsResent) {
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t s1 = store.Connect(Hello("w"), 0);
  auto snap1 = *store.TakePending("w", s1);
  store.Disconnect("w", s1);
  store.Publish(Table(2));
  uint64_t s2 = store.Connect(Hello("w", snap1.version, snap1.nonce), 0);
  auto snap2 = store.TakePending("w", s2);
  ASSERT_TRUE(snap2.has_value());
  EXPECT_EQ(snap2->version, 2u);
}

TEST(SnapshotStore, WorkerFromEarlierControlPlaneIsResentAboveItsVersion) {
  // A restarted control plane starts at version 1 while the worker kept version 7.
  SnapshotStore store("ctl-new");
  store.Publish(Table(1));
  uint64_t s = store.Connect(Hello("w", 7, "ctl-old-9"), 0);
  auto snap = store.TakePending("w", s);
  ASSERT_TRUE(snap.has_value());
  EXPECT_EQ(snap->version, 8u);
  EXPECT_EQ(store.version(), 8u);
  EXPECT_EQ(snap->table->retry(), 1u);
  // Same version number but a nonce we never issued: resent too.
  SnapshotStore other("ctl-x");
  other.Publish(Table(1));
  uint64_t t = other.Connect(Hello("w", 1, "ctl-old-1"), 0);
  auto again = other.TakePending("w", t);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->version, 2u);
}

TEST(SnapshotStore, NackKeepsWorkerOnItsTableAndIsNotResent) {
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t s = store.Connect(Hello("w"), 0);
  store.Ack("w", s, AckOf(*store.TakePending("w", s)));
  store.Publish(Table(2));
  auto snap = *store.TakePending("w", s);
  v1::Nack nack;
  nack.set_version(snap.version);
  nack.set_nonce(snap.nonce);
  nack.set_error("bad table");
  EXPECT_TRUE(store.Nack("w", s, nack));
  EXPECT_FALSE(store.HasPending("w", s));
  auto w = store.Workers()[0];
  EXPECT_EQ(w.acked_version, 1u);
  EXPECT_EQ(w.nacked_version, 2u);
  EXPECT_EQ(w.last_nack_error, "bad table");
  // The next version is offered again.
  store.Publish(Table(3));
  EXPECT_EQ(store.TakePending("w", s)->version, 3u);
}

TEST(SnapshotStore, StaleAcksAndSessionsAreIgnored) {
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t s1 = store.Connect(Hello("w"), 0);
  auto snap1 = *store.TakePending("w", s1);
  store.Publish(Table(2));
  auto snap2 = *store.TakePending("w", s1);
  EXPECT_FALSE(store.Ack("w", s1, AckOf(snap1)));  // nonce no longer the last sent
  EXPECT_TRUE(store.Ack("w", s1, AckOf(snap2)));
  // A newer stream of the same worker supersedes the old one.
  uint64_t s2 = store.Connect(Hello("w", 2, snap2.nonce), 0);
  EXPECT_FALSE(store.Disconnect("w", s1));
  EXPECT_FALSE(store.Ack("w", s1, AckOf(snap2)));
  EXPECT_FALSE(store.Report("w", s1, v1::LoadReport()));
  EXPECT_EQ(store.ConnectedCount(), 1u);
  EXPECT_TRUE(store.Disconnect("w", s2));
  EXPECT_EQ(store.ConnectedCount(), 0u);
  EXPECT_FALSE(store.HasPending("w", s2));
}

TEST(SnapshotStore, ReportsAreKeptPerWorker) {
  SnapshotStore store("ctl");
  store.Publish(Table(1));
  uint64_t s = store.Connect(Hello("w"), 0);
  v1::LoadReport r;
  r.set_in_flight(3);
  auto* b = r.add_backends();
  b->set_name("a");
  b->set_up(true);
  EXPECT_TRUE(store.Report("w", s, r));
  auto w = store.Workers()[0];
  EXPECT_TRUE(w.has_load);
  EXPECT_EQ(w.load.in_flight(), 3u);
  EXPECT_EQ(w.load.backends(0).name(), "a");
}

TEST(SnapshotStore, ForgetOnlyDropsDisconnectedWorkers) {
  SnapshotStore store("ctl");
  uint64_t s = store.Connect(Hello("w"), 0);
  store.Forget("w");
  EXPECT_EQ(store.Workers().size(), 1u);
  store.Disconnect("w", s);
  store.Forget("w");
  EXPECT_TRUE(store.Workers().empty());
}

}  // namespace
}  // namespace llmproxy
