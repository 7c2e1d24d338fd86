// ConfigDiscovery end to end inside one process: the control plane's discovery and admin
// services on a real gRPC port, and the worker's ControlPlaneClient feeding a real
// TableStore. Covers ACK, NACK (last good table kept), load reports, no needless resend,
// reconnect after the control plane restarts, and admin auth.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <memory>

#include "common/config/config_proto.h"
#include "controlplane/admin_service.h"
#include "controlplane/config_publisher.h"
#include "controlplane/ctl_metrics.h"
#include "controlplane/discovery_service.h"
#include "controlplane/snapshot_hub.h"
#include "dataplane/config_sync/control_plane_client.h"
#include "dataplane/config_sync/table_store.h"
#include "tests/e2e/e2e_util.h"
#include "llmproxy/v1/admin.grpc.pb.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using e2e::WaitUntil;

Config OneBackend(const std::string& model) {
  Config c;
  BackendConfig b;
  b.name = "a";
  b.url = "http://127.0.0.1:1/v1";
  b.api_key = "secret-key";
  b.models = {model};
  b.default_model = model;
  c.backends = {b};
  return c;
}

// A control plane's gRPC side, restartable on the same port.
class CtlServer {
 public:
  explicit CtlServer(SnapshotHub& hub) : hub_(hub), discovery_(hub) {}
  ~CtlServer() { Stop(); }

  void Start(uint16_t port = 0) {
    grpc::ServerBuilder b;
    int bound = 0;
    b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                       &bound);
    b.RegisterService(&discovery_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    port_ = static_cast<uint16_t>(bound);
  }
  void Stop() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now() + 200ms);
    server_->Wait();
    server_.reset();
  }
  uint16_t port() const { return port_; }

 private:
  SnapshotHub& hub_;
  DiscoveryService discovery_;
  std::unique_ptr<grpc::Server> server_;
  uint16_t port_ = 0;
};

std::optional<WorkerRecord> FindWorker(SnapshotHub& hub, const std::string& id) {
  for (auto& w : hub.Workers()) {
    if (w.id == id) return w;
  }
  return std::nullopt;
}

ControlPlaneClientOptions ClientOpts(uint16_t port) {
  ControlPlaneClientOptions o;
  o.target = "127.0.0.1:" + std::to_string(port);
  o.worker_id = "w1";
  o.address = "127.0.0.1:8080";
  o.metrics_port = 9400;
  return o;
}

TEST(CtlDiscovery, WorkerAppliesAndAcksEveryNewVersion) {
  SnapshotHub hub("ctl-a");
  hub.Publish(ToProto(OneBackend("m1")));
  CtlServer server(hub);
  server.Start();
  TableStore store;
  ControlPlaneClient client(ClientOpts(server.port()), store, [] { return v1::LoadReport(); });
  client.Start();

  ASSERT_TRUE(WaitUntil([&] { return store.version() == 1; }, 5s));
  ASSERT_TRUE(WaitUntil([&] { return FindWorker(hub, "w1")->acked_version == 1; }, 5s));
  auto w = *FindWorker(hub, "w1");
  EXPECT_TRUE(w.connected);
  EXPECT_EQ(w.pid, static_cast<int64_t>(::getpid()));
  EXPECT_EQ(w.address, "127.0.0.1:8080");
  EXPECT_EQ(w.metrics_port, 9400u);
  EXPECT_EQ(store.Current()->config.backends[0].models, std::vector<std::string>{"m1"});

  hub.Publish(ToProto(OneBackend("m2")));
  ASSERT_TRUE(WaitUntil([&] { return store.version() == 2; }, 5s));
  EXPECT_EQ(store.Current()->config.backends[0].models, std::vector<std::string>{"m2"});
  ASSERT_TRUE(WaitUntil([&] { return FindWorker(hub, "w1")->acked_version == 2; }, 5s));
  EXPECT_EQ(client.snapshots_acked(), 2u);
  EXPECT_EQ(client.snapshots_nacked(), 0u);
  EXPECT_TRUE(client.connected());

  client.Stop();
  EXPECT_TRUE(WaitUntil([&] { return !FindWorker(hub, "w1")->connected; }, 5s));
  EXPECT_EQ(store.version(), 2u);  // the table stays after the stream ends
}

TEST(CtlDiscovery, InvalidTableIsNackedAndLastGoodKept) {
  SnapshotHub hub("ctl-b");
  hub.Publish(ToProto(OneBackend("m1")));
  CtlServer server(hub);
  server.Start();
  TableStore store;
  ControlPlaneClient client(ClientOpts(server.port()), store, [] { return v1::LoadReport(); });
  client.Start();
  ASSERT_TRUE(WaitUntil([&] { return store.version() == 1; }, 5s));

  v1::RoutingTable bad = ToProto(OneBackend("m1"));
  bad.mutable_backends(0)->set_url("");  // a worker refuses a backend without a url
  uint64_t v2 = hub.Publish(bad);
  ASSERT_TRUE(WaitUntil([&] { return FindWorker(hub, "w1")->nacked_version == v2; }, 5s));
  auto w = *FindWorker(hub, "w1");
  EXPECT_EQ(w.acked_version, 1u);
  EXPECT_FALSE(w.last_nack_error.empty());
  EXPECT_EQ(store.version(), 1u);
  EXPECT_EQ(client.snapshots_nacked(), 1u);

  // The next good version goes through.
  uint64_t v3 = hub.Publish(ToProto(OneBackend("m3")));
  ASSERT_TRUE(WaitUntil([&] { return store.version() == v3; }, 5s));
}

TEST(CtlDiscovery, TestHookRejectsOneVersion) {
  ::setenv("LLMPROXY_TEST_REJECT_VERSION", "2", 1);
  SnapshotHub hub("ctl-c");
  hub.Publish(ToProto(OneBackend("m1")));
  CtlServer server(hub);
  server.Start();
  TableStore store;
  ControlPlaneClient client(ClientOpts(server.port()), store, [] { return v1::LoadReport(); });
  ::unsetenv("LLMPROXY_TEST_REJECT_VERSION");
  client.Start();
  ASSERT_TRUE(WaitUntil([&] { return store.version() == 1; }, 5s));
  hub.Publish(ToProto(OneBackend("m2")));
  ASSERT_TRUE(WaitUntil([&] { return FindWorker(hub, "w1")->nacked_version == 2; }, 5s));
  EXPECT_NE(FindWorker(hub, "w1")->last_nack_error.find("LLMPROXY_TEST_REJECT_VERSION"),
            std::string::npos);
  EXPECT_EQ(store.version(), 1u);
}

TEST(CtlDiscovery, LoadReportsReachTheControlPlane) {
  SnapshotHub hub("ctl-d");
  hub.Publish(ToProto(OneBackend("m1")));
  CtlServer server(hub);
  server.Start();
  TableStore store;
  std::atomic<int> calls{0};
  ControlPlaneClient client(ClientOpts(server.port()), store, [&] {
    ++calls;
    v1::LoadReport r;
    r.set_in_flight(7);
    auto* b = r.add_backends();
    b->set_name("a");
    b->set_up(true);
    b->set_outstanding(7);
    return r;
  });
  client.Start();
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = FindWorker(hub, "w1");
        return w && w->has_load && w->load.in_flight() == 7;
      },
      10s));
  EXPECT_EQ(FindWorker(hub, "w1")->load.backends(0).name(), "a");
}

TEST(CtlDiscovery, ReconnectToSameControlPlaneDoesNotResend) {
  SnapshotHub hub("ctl-e");
  hub.Publish(ToProto(OneBackend("m1")));
  CtlServer server(hub);
  server.Start();
  uint16_t port = server.port();
  TableStore store;
  ControlPlaneClient client(ClientOpts(port), store, [] { return v1::LoadReport(); });
  client.Start();
  ASSERT_TRUE(WaitUntil(
      [&] { return FindWorker(hub, "w1") && FindWorker(hub, "w1")->acked_version == 1; }, 5s));
  auto first_since = FindWorker(hub, "w1")->session;

  // The gRPC server goes away and comes back on the same port; the hub (our state) stays.
  server.Stop();
  ASSERT_TRUE(
      WaitUntil([&] { return !client.connected() || !FindWorker(hub, "w1")->connected; }, 5s));
  server.Start(port);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = FindWorker(hub, "w1");
        return w->connected && w->session != first_since;
      },
      10s));
  // Give a resend every chance to happen, then check none did.
  hub.Wake();
  EXPECT_FALSE(WaitUntil([&] { return client.snapshots_acked() > 1; }, 500ms));
  EXPECT_EQ(FindWorker(hub, "w1")->acked_version, 1u);
  EXPECT_EQ(store.version(), 1u);
}

TEST(CtlDiscovery, RestartedControlPlaneResyncsWorkerAboveItsVersion) {
  TableStore store;
  uint16_t port;
  {
    SnapshotHub old_hub("ctl-old");
    old_hub.Publish(ToProto(OneBackend("m1")));
    old_hub.Publish(ToProto(OneBackend("m2")));
    old_hub.Publish(ToProto(OneBackend("m3")));
    CtlServer server(old_hub);
    server.Start();
    port = server.port();
    ControlPlaneClient client(ClientOpts(port), store, [] { return v1::LoadReport(); });
    client.Start();
    ASSERT_TRUE(WaitUntil([&] { return store.version() == 3; }, 5s));
    client.Stop();
  }
  // A new control plane (fresh numbering) with a different file.
  SnapshotHub hub("ctl-new");
  hub.Publish(ToProto(OneBackend("m9")));
  CtlServer server(hub);
  server.Start(port);
  ControlPlaneClient client(ClientOpts(port), store, [] { return v1::LoadReport(); });
  client.Start();
  ASSERT_TRUE(WaitUntil([&] { return store.version() == 4; }, 5s));
  EXPECT_EQ(store.Current()->config.backends[0].models, std::vector<std::string>{"m9"});
  ASSERT_TRUE(WaitUntil([&] { return FindWorker(hub, "w1")->acked_version == 4; }, 5s));
}

TEST(CtlDiscovery, WorkerKeepsTableAndReconnectsWhenControlPlaneReturns) {
  SnapshotHub hub("ctl-f");
  hub.Publish(ToProto(OneBackend("m1")));
  auto server = std::make_unique<CtlServer>(hub);
  server->Start();
  uint16_t port = server->port();
  TableStore store;
  ControlPlaneClient client(ClientOpts(port), store, [] { return v1::LoadReport(); });
  client.Start();
  ASSERT_TRUE(WaitUntil([&] { return store.version() == 1; }, 5s));
  server.reset();
  ASSERT_TRUE(WaitUntil([&] { return !client.connected(); }, 5s));
  EXPECT_EQ(store.version(), 1u);
  ASSERT_NE(store.Current(), nullptr);
  hub.Publish(ToProto(OneBackend("m2")));
  server = std::make_unique<CtlServer>(hub);
  server->Start(port);
  ASSERT_TRUE(WaitUntil([&] { return store.version() == 2; }, 10s));
}

// Admin over gRPC: reads are open, mutations need the bearer token.
TEST(CtlAdmin, MutationsNeedTheAdminToken) {
  e2e::TempDir dir;
  std::string path = dir.File("config.yaml");
  e2e::WriteFileAtomic(path,
                       "control_plane:\n  admin_token: s3cret\n"
                       "backends:\n  - name: a\n    url: http://127.0.0.1:1/v1\n"
                       "    api_key: k\n    models: [m1]\n");
  CtlMetrics metrics;
  SnapshotHub hub("ctl-g");
  ConfigPublisher publisher(path, hub, metrics);
  ASSERT_TRUE(publisher.Reload("test").ok);
  AdminService admin(hub, publisher);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&admin);
  auto server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::Admin::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  {
    grpc::ClientContext ctx;
    v1::GetConfigResponse resp;
    ASSERT_TRUE(stub->GetConfig(&ctx, {}, &resp).ok());
    EXPECT_EQ(resp.version(), 1u);
    EXPECT_EQ(resp.table().backends(0).api_key(), "<redacted>");
  }
  v1::SetBackendStateRequest drain;
  drain.set_backend("a");
  drain.set_action(v1::SetBackendStateRequest::ACTION_DRAIN);
  {
    grpc::ClientContext ctx;
    v1::SetBackendStateResponse resp;
    EXPECT_EQ(stub->SetBackendState(&ctx, drain, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer wrong");
    v1::ReloadResponse resp;
    EXPECT_EQ(stub->Reload(&ctx, {}, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer s3cret");
    v1::SetBackendStateResponse resp;
    ASSERT_TRUE(stub->SetBackendState(&ctx, drain, &resp).ok());
    EXPECT_EQ(resp.version(), 2u);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer s3cret");
    v1::SetBackendStateRequest unknown = drain;
    unknown.set_backend("nope");
    v1::SetBackendStateResponse resp;
    EXPECT_EQ(stub->SetBackendState(&ctx, unknown, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::ListBackendsResponse resp;
    ASSERT_TRUE(stub->ListBackends(&ctx, {}, &resp).ok());
    ASSERT_EQ(resp.backends_size(), 1);
    EXPECT_TRUE(resp.backends(0).drained());
  }
  // The drain survives a reload of an edited file.
  e2e::WriteFileAtomic(path,
                       "control_plane:\n  admin_token: s3cret\n"
                       "backends:\n  - name: a\n    url: http://127.0.0.1:1/v1\n"
                       "    api_key: k\n    models: [m1, m2]\n");
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer s3cret");
    v1::ReloadResponse resp;
    ASSERT_TRUE(stub->Reload(&ctx, {}, &resp).ok());
    EXPECT_TRUE(resp.ok());
    EXPECT_EQ(resp.version(), 3u);
  }
  auto snap = hub.Current();
  EXPECT_TRUE(snap->table->backends(0).drained());
  EXPECT_EQ(snap->table->backends(0).models_size(), 2);
  server->Shutdown();
}

TEST(CtlAdmin, BearerMatching) {
  EXPECT_TRUE(BearerMatches("Bearer abc", "abc"));
  EXPECT_FALSE(BearerMatches("Bearer abcd", "abc"));
  EXPECT_FALSE(BearerMatches("Bearer ab", "abc"));
  EXPECT_FALSE(BearerMatches("abc", "abc"));
  EXPECT_FALSE(BearerMatches("Basic abc", "abc"));
}

}  // namespace
}  // namespace llmproxy
