// ConfigDiscovery.Sync, the control plane's side: one stream per worker on the sync gRPC
// server (workers are few, so a thread per stream is fine). The handler thread reads
// Hello, ACKs, NACKs and load reports; a writer thread per stream sends a snapshot
// whenever the SnapshotHub says the worker is due one.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <string>

#include "controlplane/snapshot_hub.h"
#include "llmproxy/v1/discovery.grpc.pb.h"

namespace llmproxy {

class DiscoveryService final : public v1::ConfigDiscovery::Service {
 public:
  // `on_report` (optional) also gets every load report with the worker's id and stream
  // session: its usage goes to the ledger and its leases to the authority
  // (ConfigPublisher::OnReport); a grant it returns is sent back on the same stream.
  using ReportHandler = std::function<std::optional<v1::LeaseGrant>(
      const std::string& worker, uint64_t session, const v1::LoadReport& report)>;
  explicit DiscoveryService(SnapshotHub& hub, ReportHandler on_report = {})
      : hub_(hub), on_report_(std::move(on_report)) {}

  grpc::Status Sync(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<v1::ConfigSnapshot, v1::SyncRequest>* stream) override;

 private:
  SnapshotHub& hub_;
  ReportHandler on_report_;
};

}  // namespace llmproxy
