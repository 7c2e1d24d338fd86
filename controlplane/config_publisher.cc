#include "controlplane/config_publisher.h"

#include <algorithm>
#include <utility>

#include "common/config/config_proto.h"
#include "common/log/logging.h"

namespace llmproxy {

ConfigPublisher::ConfigPublisher(std::string path, SnapshotHub& hub, CtlMetrics& metrics,
                                 EnvLookup env)
    : path_(std::move(path)), hub_(hub), metrics_(metrics), env_(std::move(env)) {}

bool ConfigPublisher::PublishLocked() {
  Config next = overrides_.Apply(*file_);
  if (effective_ && *effective_ == next) return false;
  effective_ = next;
  hub_.Publish(ToProto(next));
  return true;
}

ConfigPublisher::ReloadOutcome ConfigPublisher::Reload(std::string_view trigger) {
  LoadResult loaded = LoadConfigFile(path_, env_);
  ReloadOutcome out;
  std::lock_guard lock(mu_);
  for (const Diagnostic& d : loaded.diagnostics) {
    if (d.severity == Diagnostic::Severity::kWarning) {
      LogWarn("config warning", {{"where", d.Format()}});
    }
  }
  if (!loaded.ok()) {
    ++reloads_rejected_;
    metrics_.CountReload(false);
    last_errors_ = loaded.FormattedErrors();
    if (last_errors_.empty()) last_errors_.push_back(path_ + ": invalid configuration");
    for (const std::string& e : last_errors_) LogError("config rejected", {{"error", e}});
    LogError("config reload rejected; the last good version stays in force",
             {{"trigger", trigger},
              {"errors", static_cast<uint64_t>(last_errors_.size())},
              {"version", hub_.version()}});
    out.ok = false;
    out.errors = last_errors_;
    out.version = hub_.version();
    return out;
  }
  ++reloads_ok_;
  metrics_.CountReload(true);
  const bool first = !file_.has_value();
  if (file_ && (file_->server.port != loaded.config->server.port ||
                file_->control_plane.listen != loaded.config->control_plane.listen)) {
    LogWarn("server.port and control_plane.listen changes take effect on restart");
  }
  file_ = std::move(*loaded.config);
  out.ok = true;
  out.changed = PublishLocked();
  out.version = hub_.version();
  if (out.changed) {
    LogInfo(first ? "config loaded" : "config reloaded",
            {{"trigger", trigger}, {"version", out.version}, {"summary", Summarize(*file_)}});
  } else {
    LogInfo("config unchanged", {{"trigger", trigger}, {"version", out.version}});
  }
  return out;
}

ConfigPublisher::StateOutcome ConfigPublisher::SetBackendState(const std::string& backend,
                                                               Action action, uint32_t weight) {
  StateOutcome out;
  std::lock_guard lock(mu_);
  if (!file_) {
    out.code = StateOutcome::Code::kInvalid;
    out.error = "no configuration loaded";
    return out;
  }
  auto it = std::find_if(file_->backends.begin(), file_->backends.end(),
                         [&](const BackendConfig& b) { return b.name == backend; });
  if (it == file_->backends.end()) {
    out.code = StateOutcome::Code::kNotFound;
    out.error = "no backend named \"" + backend + "\"";
    return out;
  }
  BackendOverrides saved = overrides_;
  switch (action) {
    case Action::kDrain:
      overrides_.Drain(backend);
      break;
    case Action::kEnable:
      overrides_.Enable(backend);
      break;
    case Action::kSetWeight:
      overrides_.SetWeight(backend, weight, it->weight);
      break;
  }
  std::vector<std::string> problems = ValidateConfig(overrides_.Apply(*file_));
  if (!problems.empty()) {
    overrides_ = std::move(saved);
    out.code = StateOutcome::Code::kInvalid;
    for (const std::string& p : problems) out.error += (out.error.empty() ? "" : "; ") + p;
    return out;
  }
  PublishLocked();
  out.version = hub_.version();
  LogInfo("backend state changed by admin", {{"backend", backend},
                                             {"action", action == Action::kDrain    ? "drain"
                                                        : action == Action::kEnable ? "enable"
                                                                                    : "weight"},
                                             {"weight", weight},
                                             {"version", out.version}});
  return out;
}

ConfigPublisher::View ConfigPublisher::view() const {
  std::lock_guard lock(mu_);
  View v;
  v.path = path_;
  v.file = file_;
  v.effective = effective_;
  v.overrides = overrides_;
  v.version = hub_.version();
  v.reloads_ok = reloads_ok_;
  v.reloads_rejected = reloads_rejected_;
  v.last_errors = last_errors_;
  return v;
}

std::string ConfigPublisher::admin_token() const {
  std::lock_guard lock(mu_);
  return file_ ? file_->control_plane.admin_token : std::string();
}

}  // namespace llmproxy
