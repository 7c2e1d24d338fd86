// The Admin gRPC service (proto/llmproxy/v1/admin.proto): read-only views of workers,
// backends and config for anyone who can reach the port, and mutating calls (Reload,
// SetBackendState) that need `authorization: Bearer <control_plane.admin_token>` when a
// token is configured.
#pragma once

#include <grpcpp/grpcpp.h>

#include "controlplane/config_publisher.h"
#include "controlplane/snapshot_hub.h"
#include "llmproxy/v1/admin.grpc.pb.h"

namespace llmproxy {

class AdminService final : public v1::Admin::Service {
 public:
  AdminService(SnapshotHub& hub, ConfigPublisher& publisher) : hub_(hub), publisher_(publisher) {}

  grpc::Status ListWorkers(grpc::ServerContext* ctx, const v1::ListWorkersRequest* req,
                           v1::ListWorkersResponse* resp) override;
  grpc::Status ListBackends(grpc::ServerContext* ctx, const v1::ListBackendsRequest* req,
                            v1::ListBackendsResponse* resp) override;
  grpc::Status GetConfig(grpc::ServerContext* ctx, const v1::GetConfigRequest* req,
                         v1::GetConfigResponse* resp) override;
  grpc::Status Reload(grpc::ServerContext* ctx, const v1::ReloadRequest* req,
                      v1::ReloadResponse* resp) override;
  grpc::Status SetBackendState(grpc::ServerContext* ctx, const v1::SetBackendStateRequest* req,
                               v1::SetBackendStateResponse* resp) override;
  // Keys: all three need the admin token (ListKeys too: names and digests are for admins).
  grpc::Status CreateKey(grpc::ServerContext* ctx, const v1::CreateKeyRequest* req,
                         v1::CreateKeyResponse* resp) override;
  grpc::Status ListKeys(grpc::ServerContext* ctx, const v1::ListKeysRequest* req,
                        v1::ListKeysResponse* resp) override;
  grpc::Status RevokeKey(grpc::ServerContext* ctx, const v1::RevokeKeyRequest* req,
                         v1::RevokeKeyResponse* resp) override;
  grpc::Status RotateKey(grpc::ServerContext* ctx, const v1::RotateKeyRequest* req,
                         v1::CreateKeyResponse* resp) override;
  grpc::Status Usage(grpc::ServerContext* ctx, const v1::UsageRequest* req,
                     v1::UsageResponse* resp) override;

 private:
  grpc::Status Authorize(const grpc::ServerContext& ctx) const;

  SnapshotHub& hub_;
  ConfigPublisher& publisher_;
};

// True when `header` is "Bearer <token>" (compared in constant time).
bool BearerMatches(std::string_view header, std::string_view token);

}  // namespace llmproxy
