#include "controlplane/core/snapshot_store.h"

#include <algorithm>
#include <utility>

namespace llmproxy {

SnapshotStore::SnapshotStore(std::string instance_id) : instance_id_(std::move(instance_id)) {}

std::string SnapshotStore::NextNonce() {
  return instance_id_ + "-" + std::to_string(++nonce_counter_);
}

uint64_t SnapshotStore::Publish(v1::RoutingTable table) {
  Snapshot next;
  next.version = version() + 1;
  next.nonce = NextNonce();
  next.table = std::make_shared<const v1::RoutingTable>(std::move(table));
  current_ = std::move(next);
  return current_->version;
}

std::optional<Snapshot> SnapshotStore::Current() const { return current_; }

uint64_t SnapshotStore::Connect(const v1::WorkerHello& hello, int64_t now_ms) {
  WorkerRecord& w = workers_[hello.id()];
  w.id = hello.id();
  w.pid = hello.pid();
  w.address = hello.address();
  w.metrics_port = hello.metrics_port();
  w.connected = true;
  w.session = ++session_counter_;
  w.connected_since_ms = now_ms;
  w.held_version = hello.current_version();
  w.sent_version = 0;
  w.sent_nonce.clear();
  // ACKs and NACKs belong to a stream: the process behind a new one (a restarted worker
  // under the same id) has acknowledged nothing yet, whatever the last one did.
  w.acked_version = 0;
  w.nacked_version = 0;
  w.last_nack_error.clear();
  w.load.Clear();
  w.has_load = false;
  w.report_interval_ms = hello.report_interval_ms();

  if (current_ && hello.current_version() == current_->version &&
      hello.current_nonce() == current_->nonce) {
    // It already holds exactly this snapshot (it reconnected to us): nothing to resend.
    w.sent_version = current_->version;
    w.sent_nonce = current_->nonce;
    w.acked_version = current_->version;
  } else if (current_ && hello.current_version() >= current_->version) {
    // Fed by an earlier control plane with higher numbers: move above it so versions
    // never go backwards on any worker. Every worker gets the renumbered table.
    Snapshot next = *current_;
    next.version = hello.current_version() + 1;
    next.nonce = NextNonce();
    current_ = std::move(next);
  }
  return w.session;
}

bool SnapshotStore::Disconnect(const std::string& worker_id, uint64_t session) {
  WorkerRecord* w = Live(worker_id, session);
  if (w == nullptr) return false;
  w->connected = false;
  return true;
}

WorkerRecord* SnapshotStore::Live(const std::string& worker_id, uint64_t session) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.session != session || !it->second.connected) {
    return nullptr;
  }
  return &it->second;
}

const WorkerRecord* SnapshotStore::Live(const std::string& worker_id, uint64_t session) const {
  return const_cast<SnapshotStore*>(this)->Live(worker_id, session);
}

bool SnapshotStore::HasPending(const std::string& worker_id, uint64_t session) const {
  const WorkerRecord* w = Live(worker_id, session);
  return w != nullptr && current_ && w->sent_version != current_->version;
}

std::optional<Snapshot> SnapshotStore::TakePending(const std::string& worker_id, uint64_t session) {
  if (!HasPending(worker_id, session)) return std::nullopt;
  WorkerRecord* w = Live(worker_id, session);
  w->sent_version = current_->version;
  w->sent_nonce = current_->nonce;
  return current_;
}

bool SnapshotStore::Ack(const std::string& worker_id, uint64_t session, const v1::Ack& ack) {
  WorkerRecord* w = Live(worker_id, session);
  if (w == nullptr || ack.nonce().empty() || ack.nonce() != w->sent_nonce) return false;
  w->acked_version = ack.version();
  w->held_version = ack.version();
  return true;
}

bool SnapshotStore::Nack(const std::string& worker_id, uint64_t session, const v1::Nack& nack) {
  WorkerRecord* w = Live(worker_id, session);
  if (w == nullptr || nack.nonce().empty() || nack.nonce() != w->sent_nonce) return false;
  w->nacked_version = nack.version();
  w->last_nack_error = nack.error();
  return true;
}

bool SnapshotStore::Report(const std::string& worker_id, uint64_t session,
                           const v1::LoadReport& report) {
  WorkerRecord* w = Live(worker_id, session);
  if (w == nullptr) return false;
  w->load = report;
  w->has_load = true;
  return true;
}

bool SnapshotStore::Seen(const std::string& worker_id, uint64_t session, int64_t now_ms) {
  WorkerRecord* w = Live(worker_id, session);
  if (w == nullptr) return false;
  w->last_seen_ms = now_ms;
  return true;
}

std::vector<WorkerRecord> SnapshotStore::Workers() const {
  std::vector<WorkerRecord> out;
  out.reserve(workers_.size());
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

size_t SnapshotStore::ConnectedCount() const {
  return static_cast<size_t>(std::count_if(workers_.begin(), workers_.end(),
                                           [](const auto& kv) { return kv.second.connected; }));
}

void SnapshotStore::Forget(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it != workers_.end() && !it->second.connected) workers_.erase(it);
}

}  // namespace llmproxy
