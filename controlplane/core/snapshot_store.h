// The control plane's book of what it published and what each worker holds: config
// versions, snapshot nonces, the resend rules of ConfigDiscovery.Sync, and per-worker
// ACK/NACK and load state. Plain logic with no locks, sockets or clock (the caller passes
// the time and guards it with its own mutex), so the protocol rules are unit-tested
// without gRPC.
//
// Rules:
// - Publish() gives every new table the next version; versions only grow.
// - A worker is sent the current snapshot unless it already holds it: same version and
//   same nonce in its Hello (a nonce is unique per control-plane process, so after a
//   control-plane restart every worker is resent once).
// - A worker that announces a version at or above ours (it was fed by an earlier control
//   plane) makes us republish the current table above it, so no worker ever sees its
//   version go backwards.
// - After a snapshot is sent, nothing is resent on that stream until the version changes,
//   whether the worker ACKs or NACKs it. A NACK keeps the worker on its last good table.
// - ACKs and NACKs whose nonce is not the one last sent on that stream are stale and ignored.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "llmproxy/v1/discovery.pb.h"

namespace llmproxy {

struct Snapshot {
  uint64_t version = 0;
  std::string nonce;
  std::shared_ptr<const v1::RoutingTable> table;
};

struct WorkerRecord {
  std::string id;
  int64_t pid = 0;
  std::string address;
  uint32_t metrics_port = 0;
  bool connected = false;
  uint64_t session = 0;            // which stream is the live one
  int64_t connected_since_ms = 0;  // caller's clock (unix ms)
  uint64_t held_version = 0;       // what the worker holds, by its Hello or ACKs
  uint64_t sent_version = 0;       // last snapshot sent on the live stream (0 = none)
  std::string sent_nonce;
  uint64_t acked_version = 0;
  uint64_t nacked_version = 0;  // last version refused (0 = none)
  std::string last_nack_error;
  v1::LoadReport load;  // latest report
  bool has_load = false;
  // When the live stream last carried anything from the worker (caller's monotonic clock,
  // ms; see Seen()) and the report interval it announced: worker_liveness.h judges them.
  int64_t last_seen_ms = 0;
  uint32_t report_interval_ms = 0;
};

class SnapshotStore {
 public:
  // `instance_id` makes nonces unique across control-plane processes (e.g. pid + start
  // time + random bits); nonces are "<instance_id>-<counter>".
  explicit SnapshotStore(std::string instance_id);

  // Makes `table` the current snapshot with the next version; returns that version.
  uint64_t Publish(v1::RoutingTable table);
  std::optional<Snapshot> Current() const;
  uint64_t version() const { return current_ ? current_->version : 0; }

  // A worker opened a stream. Returns the session id that later calls name; an older
  // session of the same worker id is superseded.
  uint64_t Connect(const v1::WorkerHello& hello, int64_t now_ms);
  // The stream `session` ended; false when a newer stream already replaced it.
  bool Disconnect(const std::string& worker_id, uint64_t session);

  // Whether `session` should be sent the current snapshot now.
  bool HasPending(const std::string& worker_id, uint64_t session) const;
  // Returns the snapshot to send on `session` and records it as sent, or nullopt.
  std::optional<Snapshot> TakePending(const std::string& worker_id, uint64_t session);

  // False when stale (unknown session or nonce not the last sent).
  bool Ack(const std::string& worker_id, uint64_t session, const v1::Ack& ack);
  bool Nack(const std::string& worker_id, uint64_t session, const v1::Nack& nack);
  bool Report(const std::string& worker_id, uint64_t session, const v1::LoadReport& report);
  // The worker sent something on `session` at `now_ms` (a monotonic clock, not the unix
  // clock of Connect: a clock step must not make workers look hung). False when stale.
  bool Seen(const std::string& worker_id, uint64_t session, int64_t now_ms);

  std::vector<WorkerRecord> Workers() const;  // sorted by id
  size_t ConnectedCount() const;
  // Forgets a disconnected worker (e.g. the supervisor removed its slot).
  void Forget(const std::string& worker_id);

 private:
  WorkerRecord* Live(const std::string& worker_id, uint64_t session);
  const WorkerRecord* Live(const std::string& worker_id, uint64_t session) const;
  std::string NextNonce();

  std::string instance_id_;
  uint64_t nonce_counter_ = 0;
  uint64_t session_counter_ = 0;
  std::optional<Snapshot> current_;
  std::map<std::string, WorkerRecord> workers_;
};

}  // namespace llmproxy
