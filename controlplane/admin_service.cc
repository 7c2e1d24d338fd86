#include "controlplane/admin_service.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "common/config/config_proto.h"
#include "common/log/logging.h"
#include "controlplane/core/worker_liveness.h"

namespace llmproxy {

bool BearerMatches(std::string_view header, std::string_view token) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (header.size() < kPrefix.size() || header.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  std::string_view given = header.substr(kPrefix.size());
  // Constant time over the token's length, so timing does not leak a matching prefix.
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < token.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(token[i]));
  }
  return diff == 0;
}

grpc::Status AdminService::Authorize(const grpc::ServerContext& ctx) const {
  std::string token = publisher_.admin_token();
  if (token.empty()) return grpc::Status::OK;
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it != md.end() &&
      BearerMatches(std::string_view(it->second.data(), it->second.size()), token)) {
    return grpc::Status::OK;
  }
  LogWarn("admin call refused: missing or wrong admin token", {{"peer", ctx.peer()}});
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this call needs authorization: Bearer <control_plane.admin_token>");
}

grpc::Status AdminService::ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                                       v1::ListWorkersResponse* resp) {
  const int64_t now_ms = SnapshotHub::SteadyNowMs();
  for (const WorkerRecord& w : hub_.Workers()) {
    v1::WorkerInfo* info = resp->add_workers();
    info->set_id(w.id);
    info->set_pid(w.pid);
    info->set_address(w.address);
    info->set_acked_version(w.acked_version);
    info->mutable_connected_since()->set_seconds(w.connected_since_ms / 1000);
    info->mutable_connected_since()->set_nanos(
        static_cast<int32_t>((w.connected_since_ms % 1000) * 1000000));
    info->set_in_flight(w.has_load ? w.load.in_flight() : 0);
    info->set_connected(w.connected);
    info->set_nacked_version(w.nacked_version);
    info->set_last_nack_error(w.last_nack_error);
    info->set_metrics_port(w.metrics_port);
    if (w.has_load) *info->mutable_backends() = w.load.backends();
    const Liveness live = JudgeLiveness(w.connected, w.last_seen_ms, w.report_interval_ms, now_ms);
    info->set_healthy(live.healthy());
    info->set_state(std::string(WorkerStateName(live.state)));
    info->set_last_report_age_ms(static_cast<uint64_t>(live.silent_for.count()));
    info->set_report_interval_ms(static_cast<uint32_t>(live.interval.count()));
  }
  resp->set_current_version(hub_.version());
  return grpc::Status::OK;
}

grpc::Status AdminService::ListBackends(grpc::ServerContext*, const v1::ListBackendsRequest*,
                                        v1::ListBackendsResponse* resp) {
  ConfigPublisher::View view = publisher_.view();
  resp->set_version(view.version);
  if (!view.file || !view.effective) return grpc::Status::OK;
  // Health as the connected workers last reported it.
  struct Agg {
    uint32_t up = 0, reporting = 0;
    uint64_t outstanding = 0;
    double ewma = 0;
  };
  std::map<std::string, Agg> agg;
  for (const WorkerRecord& w : hub_.Workers()) {
    if (!w.connected || !w.has_load) continue;
    for (const v1::BackendHealth& h : w.load.backends()) {
      Agg& a = agg[h.name()];
      ++a.reporting;
      if (h.up()) ++a.up;
      a.outstanding += h.outstanding();
      a.ewma = std::max(a.ewma, h.ewma_latency_seconds());
    }
  }
  for (size_t i = 0; i < view.effective->backends.size(); ++i) {
    const BackendConfig& b = view.effective->backends[i];
    v1::BackendInfo* info = resp->add_backends();
    info->set_name(b.name);
    info->set_url(b.url);
    info->set_weight(b.weight);
    uint32_t configured = b.weight;
    for (const BackendConfig& f : view.file->backends) {
      if (f.name == b.name) configured = f.weight;
    }
    info->set_configured_weight(configured);
    info->set_drained(b.drained);
    for (const std::string& m : b.models) info->add_models(m);
    info->set_default_model(b.default_model);
    auto it = agg.find(b.name);
    if (it != agg.end()) {
      info->set_workers_up(it->second.up);
      info->set_workers_reporting(it->second.reporting);
      info->set_outstanding(it->second.outstanding);
      info->set_ewma_latency_seconds(it->second.ewma);
    }
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::GetConfig(grpc::ServerContext*, const v1::GetConfigRequest*,
                                     v1::GetConfigResponse* resp) {
  ConfigPublisher::View view = publisher_.view();
  resp->set_version(view.version);
  if (view.effective) *resp->mutable_table() = Redacted(ToProto(*view.effective));
  resp->set_path(view.path);
  resp->set_reloads_ok(view.reloads_ok);
  resp->set_reloads_rejected(view.reloads_rejected);
  for (const std::string& e : view.last_errors) resp->add_last_errors(e);
  return grpc::Status::OK;
}

grpc::Status AdminService::Reload(grpc::ServerContext* ctx, const v1::ReloadRequest*,
                                  v1::ReloadResponse* resp) {
  if (grpc::Status s = Authorize(*ctx); !s.ok()) return s;
  ConfigPublisher::ReloadOutcome out = publisher_.Reload("admin");
  resp->set_ok(out.ok);
  resp->set_version(out.version);
  for (const std::string& e : out.errors) resp->add_errors(e);
  return grpc::Status::OK;
}

grpc::Status AdminService::SetBackendState(grpc::ServerContext* ctx,
                                           const v1::SetBackendStateRequest* req,
                                           v1::SetBackendStateResponse* resp) {
  if (grpc::Status s = Authorize(*ctx); !s.ok()) return s;
  ConfigPublisher::Action action;
  switch (req->action()) {
    case v1::SetBackendStateRequest::ACTION_DRAIN:
      action = ConfigPublisher::Action::kDrain;
      break;
    case v1::SetBackendStateRequest::ACTION_ENABLE:
      action = ConfigPublisher::Action::kEnable;
      break;
    case v1::SetBackendStateRequest::ACTION_SET_WEIGHT:
      action = ConfigPublisher::Action::kSetWeight;
      break;
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "action must be drain, enable or set_weight");
  }
  ConfigPublisher::StateOutcome out =
      publisher_.SetBackendState(req->backend(), action, req->weight());
  switch (out.code) {
    case ConfigPublisher::StateOutcome::Code::kOk:
      resp->set_version(out.version);
      return grpc::Status::OK;
    case ConfigPublisher::StateOutcome::Code::kNotFound:
      return grpc::Status(grpc::StatusCode::NOT_FOUND, out.error);
    case ConfigPublisher::StateOutcome::Code::kInvalid:
      break;
  }
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, out.error);
}

namespace {
grpc::Status KeyStatus(const ConfigPublisher::KeyOutcome& out) {
  using Code = ConfigPublisher::KeyOutcome::Code;
  switch (out.code) {
    case Code::kOk:
      return grpc::Status::OK;
    case Code::kNotFound:
      return grpc::Status(grpc::StatusCode::NOT_FOUND, out.error);
    case Code::kInvalid:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, out.error);
    case Code::kExists:
      return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, out.error);
    case Code::kUnavailable:
      break;
  }
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, out.error);
}

void SetTime(int64_t unix_seconds, google::protobuf::Timestamp* t) { t->set_seconds(unix_seconds); }
}  // namespace

grpc::Status AdminService::CreateKey(grpc::ServerContext* ctx, const v1::CreateKeyRequest* req,
                                     v1::CreateKeyResponse* resp) {
  if (grpc::Status s = Authorize(*ctx); !s.ok()) return s;
  ClientKey key;
  key.name = req->name();
  key.models.assign(req->models().begin(), req->models().end());
  key.rpm = req->rpm();
  key.tpm = req->tpm();
  key.max_parallel = req->max_parallel();
  if (req->has_budget()) {
    std::string error;
    key.budget = BudgetFromProto(req->budget(), error);
    if (!key.budget) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "budget: " + error);
  }
  // The limits' bounds are the validator's, as for the file's keys.
  const ConfigPublisher::KeyOutcome out = publisher_.CreateKey(std::move(key));
  if (out.code != ConfigPublisher::KeyOutcome::Code::kOk) return KeyStatus(out);
  resp->set_name(req->name());
  resp->set_key(out.key);
  resp->set_version(out.version);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListKeys(grpc::ServerContext* ctx, const v1::ListKeysRequest*,
                                    v1::ListKeysResponse* resp) {
  if (grpc::Status s = Authorize(*ctx); !s.ok()) return s;
  for (const ConfigPublisher::KeyInfo& k : publisher_.ListKeys()) {
    v1::KeyInfo* info = resp->add_keys();
    info->set_name(k.key.name);
    info->set_source(k.stored ? "stored" : "file");
    for (const std::string& m : k.key.models) info->add_models(m);
    if (k.stored) SetTime(k.created_at, info->mutable_created_at());
    if (k.revoked_at) SetTime(*k.revoked_at, info->mutable_revoked_at());
    info->set_sha256_prefix(k.key.sha256.substr(0, 8));
    info->set_rpm(k.key.rpm);
    info->set_tpm(k.key.tpm);
    info->set_max_parallel(k.key.max_parallel);
    if (k.key.budget) BudgetToProto(*k.key.budget, info->mutable_budget());
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::RotateKey(grpc::ServerContext* ctx, const v1::RotateKeyRequest* req,
                                     v1::CreateKeyResponse* resp) {
  if (grpc::Status s = Authorize(*ctx); !s.ok()) return s;
  const ConfigPublisher::KeyOutcome out = publisher_.RotateKey(req->name());
  if (out.code != ConfigPublisher::KeyOutcome::Code::kOk) return KeyStatus(out);
  resp->set_name(req->name());
  resp->set_key(out.key);
  resp->set_version(out.version);
  return grpc::Status::OK;
}

grpc::Status AdminService::Usage(grpc::ServerContext* ctx, const v1::UsageRequest* req,
                                 v1::UsageResponse* resp) {
  if (grpc::Status s = Authorize(*ctx); !s.ok()) return s;
  const int64_t since =
      req->has_since()
          ? req->since().seconds()
          : std::chrono::duration_cast<std::chrono::seconds>(
                (std::chrono::system_clock::now() - std::chrono::hours(24 * 30)).time_since_epoch())
                .count();
  std::optional<std::string> key;
  if (!req->key().empty()) key = req->key();
  const std::optional<std::vector<UsageRow>> rows = publisher_.Usage(key, since);
  if (!rows) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "no state database (control_plane.state_path is empty or not writable)");
  }
  for (const UsageRow& r : *rows) {
    v1::UsageRow* out = resp->add_rows();
    SetTime(r.hour, out->mutable_hour());
    out->set_key(r.key);
    out->set_model(r.model);
    out->set_backend(r.backend);
    out->set_requests(r.requests);
    out->set_prompt_tokens(r.prompt_tokens);
    out->set_completion_tokens(r.completion_tokens);
    out->set_cost_usd(r.cost_usd);
    out->set_cached_prompt_tokens(r.cached_prompt_tokens);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::RevokeKey(grpc::ServerContext* ctx, const v1::RevokeKeyRequest* req,
                                     v1::RevokeKeyResponse* resp) {
  if (grpc::Status s = Authorize(*ctx); !s.ok()) return s;
  const ConfigPublisher::KeyOutcome out = publisher_.RevokeKey(req->name());
  if (out.code != ConfigPublisher::KeyOutcome::Code::kOk) return KeyStatus(out);
  resp->set_version(out.version);
  return grpc::Status::OK;
}

}  // namespace llmproxy
