#include "dataplane/config_sync/control_plane_client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>

#include "common/config/config_proto.h"
#include "common/log/logging.h"
#include "dataplane/config_sync/key_leases.h"
#include "dataplane/config_sync/table_store.h"
#include "llmproxy/v1/discovery.grpc.pb.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;

constexpr auto kMinBackoff = 200ms;
constexpr auto kMaxBackoff = 5000ms;

std::optional<uint64_t> TestRejectVersion() {
  const char* v = std::getenv("LLMPROXY_TEST_REJECT_VERSION");
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return n;
}

}  // namespace

ControlPlaneClient::ControlPlaneClient(ControlPlaneClientOptions opts, TableStore& store,
                                       std::function<v1::LoadReport()> report,
                                       std::function<void(const v1::LoadReport&)> lost,
                                       KeyLeases* leases)
    : opts_(std::move(opts)),
      store_(store),
      report_(std::move(report)),
      lost_(std::move(lost)),
      leases_(leases),
      reject_version_(TestRejectVersion()) {
  if (leases_ != nullptr) {
    leases_->SetWake([this] {
      {
        std::lock_guard lock(report_mu_);
        report_wake_ = true;
      }
      report_cv_.notify_all();
    });
  }
}

ControlPlaneClient::~ControlPlaneClient() {
  Stop();
  if (leases_ != nullptr) leases_->SetWake({});
}

void ControlPlaneClient::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Run(); });
}

void ControlPlaneClient::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (active_ctx_ != nullptr) active_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool ControlPlaneClient::WaitFor(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stopping_; });
  return !stopping_;
}

void ControlPlaneClient::Run() {
  // Jitter spreads the reconnects of many workers after a control-plane restart.
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = std::chrono::milliseconds(kMinBackoff);
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    bool healthy = RunSession();
    connected_ = false;
    if (healthy) backoff = kMinBackoff;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
    auto wait = std::chrono::milliseconds(jitter(rng));
    LogInfo("control plane stream closed; reconnecting",
            {{"target", opts_.target}, {"retry_in_ms", static_cast<int64_t>(wait.count())}});
    if (!WaitFor(wait)) return;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, kMaxBackoff);
  }
}

bool ControlPlaneClient::RunSession() {
  auto channel = grpc::CreateChannel(opts_.target, grpc::InsecureChannelCredentials());
  auto stub = v1::ConfigDiscovery::NewStub(channel);
  grpc::ClientContext ctx;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    active_ctx_ = &ctx;
  }
  auto stream = stub->Sync(&ctx);

  // Reads happen on this thread and reports on another, so writes need one lock:
  // gRPC allows one Read and one Write at a time, not two Writes.
  std::mutex write_mu;
  auto write = [&](const v1::SyncRequest& req) {
    std::lock_guard lock(write_mu);
    return stream->Write(req);
  };

  v1::SyncRequest hello;
  auto* h = hello.mutable_hello();
  h->set_id(opts_.worker_id);
  h->set_pid(static_cast<int64_t>(::getpid()));
  h->set_address(opts_.address);
  h->set_current_version(store_.version());
  if (store_.version() == applied_version_) h->set_current_nonce(applied_nonce_);
  h->set_metrics_port(opts_.metrics_port);
  h->set_report_interval_ms(static_cast<uint32_t>(opts_.report_interval.count()));

  bool got_snapshot = false;
  bool session_over = false;  // guarded by report_mu_
  std::thread reporter;

  if (write(hello)) {
    if (leases_ != nullptr) leases_->OnStream(true, LeaseNowMs());
    reporter = std::thread([&] {
      std::unique_lock lock(report_mu_);
      auto next = std::chrono::steady_clock::now() + opts_.report_interval;
      while (true) {
        report_cv_.wait_until(lock, next, [&] { return session_over || report_wake_; });
        if (session_over) break;
        report_wake_ = false;
        lock.unlock();
        v1::SyncRequest req;
        if (report_) *req.mutable_report() = report_();
        if (leases_ != nullptr) leases_->TakeReport(*req.mutable_report(), LeaseNowMs());
        bool ok = write(req);
        if (!ok && lost_) lost_(req.report());
        if (!ok && leases_ != nullptr) leases_->Restore(req.report());
        lock.lock();
        if (!ok) break;
        const auto now = std::chrono::steady_clock::now();
        if (now >= next) next = now + opts_.report_interval;
      }
    });

    v1::ConfigSnapshot snap;
    while (stream->Read(&snap)) {
      if (snap.has_lease() && !snap.has_table()) {  // a grant, not a snapshot
        if (leases_ != nullptr) leases_->OnGrant(snap.lease(), LeaseNowMs());
        continue;
      }
      if (!got_snapshot) {
        got_snapshot = true;
        connected_ = true;
        LogInfo("connected to control plane", {{"target", opts_.target}});
      }
      v1::SyncRequest reply;
      std::string error;
      if (reject_version_ && *reject_version_ == snap.version()) {
        error = "rejected by LLMPROXY_TEST_REJECT_VERSION (test hook)";
      } else {
        FromProtoResult converted = FromProto(snap.table());
        if (!converted.config) {
          error = converted.error.empty() ? "invalid routing table" : converted.error;
        } else {
          error = store_.Apply(std::move(*converted.config), snap.version());
        }
      }
      if (error.empty()) {
        ++acked_;
        applied_version_ = snap.version();
        applied_nonce_ = snap.nonce();
        LogInfo("applied config snapshot", {{"version", snap.version()}});
        reply.mutable_ack()->set_version(snap.version());
        reply.mutable_ack()->set_nonce(snap.nonce());
      } else {
        ++nacked_;
        LogWarn("rejected config snapshot; keeping the last good table",
                {{"version", snap.version()}, {"error", error}});
        reply.mutable_nack()->set_version(snap.version());
        reply.mutable_nack()->set_nonce(snap.nonce());
        reply.mutable_nack()->set_error(error);
      }
      if (!write(reply)) break;
    }
  }

  {
    std::lock_guard lock(report_mu_);
    session_over = true;
  }
  report_cv_.notify_all();
  if (leases_ != nullptr) leases_->OnStream(false, LeaseNowMs());
  ctx.TryCancel();  // unblocks a reporter stuck in Write
  if (reporter.joinable()) reporter.join();
  grpc::Status status = stream->Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
    LogDebug("control plane stream ended", {{"code", static_cast<int64_t>(status.error_code())},
                                            {"message", status.error_message()}});
  }
  {
    std::lock_guard lock(mu_);
    active_ctx_ = nullptr;
  }
  return got_snapshot;
}

}  // namespace llmproxy
