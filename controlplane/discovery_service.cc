#include "controlplane/discovery_service.h"

#include <atomic>
#include <mutex>
#include <thread>

#include "common/log/logging.h"

namespace llmproxy {

grpc::Status DiscoveryService::Sync(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ConfigSnapshot, v1::SyncRequest>* stream) {
  v1::SyncRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;
  if (!first.has_hello() || first.hello().id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first message must be a hello with a worker id");
  }
  const v1::WorkerHello hello = first.hello();
  const std::string id = hello.id();
  const uint64_t session = hub_.Connect(hello);
  LogInfo("worker connected", {{"worker", id},
                               {"pid", hello.pid()},
                               {"address", hello.address()},
                               {"holds_version", hello.current_version()},
                               {"peer", context->peer()}});

  std::atomic<bool> done{false};
  // Snapshots (writer thread) and lease grants (this thread) share the stream: one Write
  // at a time.
  std::mutex write_mu;
  std::thread writer([&] {
    while (auto snap = hub_.WaitPending(
               id, session, [&] { return done.load() || context->IsCancelled(); },
               std::chrono::milliseconds(500))) {
      v1::ConfigSnapshot msg;
      msg.set_version(snap->version);
      msg.set_nonce(snap->nonce);
      *msg.mutable_table() = *snap->table;
      std::unique_lock lock(write_mu);
      if (!stream->Write(msg)) break;
      lock.unlock();
      LogInfo("sent config snapshot", {{"worker", id}, {"version", snap->version}});
    }
  });

  v1::SyncRequest req;
  while (stream->Read(&req)) {
    switch (req.kind_case()) {
      case v1::SyncRequest::kAck:
        if (hub_.Ack(id, session, req.ack())) {
          LogInfo("worker acked config", {{"worker", id}, {"version", req.ack().version()}});
        }
        break;
      case v1::SyncRequest::kNack:
        if (hub_.Nack(id, session, req.nack())) {
          LogWarn(
              "worker rejected config",
              {{"worker", id}, {"version", req.nack().version()}, {"error", req.nack().error()}});
        }
        break;
      case v1::SyncRequest::kReport:
        hub_.Report(id, session, req.report());
        if (on_report_) {  // usage is real whatever the session
          if (auto grant = on_report_(id, session, req.report())) {
            v1::ConfigSnapshot msg;
            *msg.mutable_lease() = std::move(*grant);
            std::lock_guard lock(write_mu);
            stream->Write(msg);  // a broken stream ends the Read loop next
          }
        }
        break;
      default:
        break;  // a repeated hello or an unknown kind: nothing to do
    }
  }

  done = true;
  hub_.Wake();
  writer.join();
  hub_.Disconnect(id, session);
  LogInfo("worker disconnected", {{"worker", id}});
  return grpc::Status::OK;
}

}  // namespace llmproxy
