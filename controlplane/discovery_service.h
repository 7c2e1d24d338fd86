// ConfigDiscovery.Sync, the control plane's side: one stream per worker on the sync gRPC
// server (workers are few, so a thread per stream is fine). The handler thread reads
// Hello, ACKs, NACKs and load reports; a writer thread per stream sends a snapshot
// whenever the SnapshotHub says the worker is due one.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>

#include "controlplane/snapshot_hub.h"
#include "llmproxy/v1/discovery.grpc.pb.h"

namespace llmproxy {

class DiscoveryService final : public v1::ConfigDiscovery::Service {
 public:
  // `on_report` (optional) also gets every load report of a known worker: its usage goes
  // to the ledger (ConfigPublisher::RecordUsage).
  explicit DiscoveryService(SnapshotHub& hub,
                            std::function<void(const v1::LoadReport&)> on_report = {})
      : hub_(hub), on_report_(std::move(on_report)) {}

  grpc::Status Sync(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<v1::ConfigSnapshot, v1::SyncRequest>* stream) override;

 private:
  SnapshotHub& hub_;
  std::function<void(const v1::LoadReport&)> on_report_;
};

}  // namespace llmproxy
