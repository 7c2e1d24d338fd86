#include "controlplane/snapshot_hub.h"

#include <utility>

namespace llmproxy {
namespace {

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int64_t SnapshotHub::SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

SnapshotHub::SnapshotHub(std::string instance_id, std::function<void(uint64_t, size_t)> on_change)
    : store_(std::move(instance_id)), on_change_(std::move(on_change)) {}

void SnapshotHub::Changed() {
  cv_.notify_all();
  if (!on_change_) return;
  uint64_t v;
  size_t n;
  {
    std::lock_guard lock(mu_);
    v = store_.version();
    n = store_.ConnectedCount();
  }
  on_change_(v, n);
}

uint64_t SnapshotHub::Publish(v1::RoutingTable table) {
  uint64_t v;
  {
    std::lock_guard lock(mu_);
    v = store_.Publish(std::move(table));
  }
  Changed();
  return v;
}

std::optional<Snapshot> SnapshotHub::Current() const {
  std::lock_guard lock(mu_);
  return store_.Current();
}

uint64_t SnapshotHub::version() const {
  std::lock_guard lock(mu_);
  return store_.version();
}

uint64_t SnapshotHub::Connect(const v1::WorkerHello& hello) {
  uint64_t s;
  {
    std::lock_guard lock(mu_);
    s = store_.Connect(hello, NowUnixMs());
    store_.Seen(hello.id(), s, SteadyNowMs());
  }
  Changed();
  return s;
}

void SnapshotHub::Disconnect(const std::string& worker_id, uint64_t session) {
  {
    std::lock_guard lock(mu_);
    store_.Disconnect(worker_id, session);
  }
  Changed();
}

std::optional<Snapshot> SnapshotHub::WaitPending(const std::string& worker_id, uint64_t session,
                                                 const std::function<bool()>& done,
                                                 std::chrono::milliseconds poll) {
  std::unique_lock lock(mu_);
  while (true) {
    if (shutdown_ || done()) return std::nullopt;
    if (auto snap = store_.TakePending(worker_id, session)) return snap;
    cv_.wait_for(lock, poll);
  }
}

void SnapshotHub::Wake() {
  { std::lock_guard lock(mu_); }
  cv_.notify_all();
}

void SnapshotHub::Shutdown() {
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

bool SnapshotHub::Ack(const std::string& worker_id, uint64_t session, const v1::Ack& ack) {
  std::lock_guard lock(mu_);
  store_.Seen(worker_id, session, SteadyNowMs());
  return store_.Ack(worker_id, session, ack);
}

bool SnapshotHub::Nack(const std::string& worker_id, uint64_t session, const v1::Nack& nack) {
  std::lock_guard lock(mu_);
  store_.Seen(worker_id, session, SteadyNowMs());
  return store_.Nack(worker_id, session, nack);
}

bool SnapshotHub::Report(const std::string& worker_id, uint64_t session,
                         const v1::LoadReport& report) {
  std::lock_guard lock(mu_);
  store_.Seen(worker_id, session, SteadyNowMs());
  return store_.Report(worker_id, session, report);
}

std::vector<WorkerRecord> SnapshotHub::Workers() const {
  std::lock_guard lock(mu_);
  return store_.Workers();
}

size_t SnapshotHub::ConnectedCount() const {
  std::lock_guard lock(mu_);
  return store_.ConnectedCount();
}

}  // namespace llmproxy
