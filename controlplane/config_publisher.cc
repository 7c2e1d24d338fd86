#include "controlplane/config_publisher.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <utility>

#include "common/config/config_proto.h"
#include "common/config/config_validator.h"
#include "common/config/key_hash.h"
#include "common/config/price.h"
#include "common/log/logging.h"

namespace llmproxy {

ConfigPublisher::ConfigPublisher(std::string path, SnapshotHub& hub, CtlMetrics& metrics,
                                 EnvLookup env)
    : path_(std::move(path)), hub_(hub), metrics_(metrics), env_(std::move(env)) {}

namespace {
int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ConfigPublisher::KeyOutcome KeyFailure(ConfigPublisher::KeyOutcome::Code code, std::string error) {
  ConfigPublisher::KeyOutcome out;
  out.code = code;
  out.error = std::move(error);
  return out;
}

}  // namespace

Config ConfigPublisher::EffectiveLocked() const {
  Config next = overrides_.Apply(*file_);
  if (!keys_) return next;
  const auto models = RequestableModelNames(next);
  std::set<std::string> names, digests;
  for (const ClientKey& k : next.auth_keys) {
    names.insert(k.name);
    digests.insert(k.sha256);
  }
  for (ClientKey& k : keys_->Active()) {
    if (names.contains(k.name) || digests.contains(k.sha256)) {
      LogWarn("stored key shadowed by a key of the file; the file's is used", {{"key", k.name}});
      continue;
    }
    // A model the file no longer serves cannot be asked for: dropped from the list. A key
    // left with none is not accepted (an empty list would mean "any model").
    const bool restricted = !k.models.empty();
    std::erase_if(k.models, [&](const std::string& m) { return !models.contains(m); });
    if (restricted && k.models.empty()) {
      LogWarn("stored key not accepted: none of its models is served any more", {{"key", k.name}});
      continue;
    }
    names.insert(k.name);
    digests.insert(k.sha256);
    next.auth_keys.push_back(std::move(k));
  }
  return next;
}

std::string ConfigPublisher::OpenStoreLocked(const Config& config) {
  const std::string& state = config.control_plane.state_path;
  if (state.empty()) return {};
  std::filesystem::path p(state);
  if (p.is_relative()) p = std::filesystem::path(path_).parent_path() / p;
  std::string error;
  const bool existed = std::filesystem::exists(p);
  keys_ = KeyStore::Open(p.string(), error);
  if (!keys_ && !existed) {
    // No file holds no stored keys, so nothing is lost by running without one (a config
    // mounted read-only, as in deploy/k8s); the keys commands say why they cannot work.
    LogWarn("no state database: stored keys are off until control_plane.state_path is writable",
            {{"path", p.string()}, {"error", error}});
    return {};
  }
  if (!keys_) return error;
  ledger_ = UsageLedger::Open(p.string(), error);
  if (ledger_) lease_store_ = LeaseStore::Open(p.string(), error);
  if (!ledger_ || !lease_store_) {
    keys_.reset();
    ledger_.reset();
    return error;
  }
  LogInfo("state database open",
          {{"path", p.string()}, {"stored_keys", static_cast<uint64_t>(keys_->Active().size())}});
  return {};
}

bool ConfigPublisher::PublishLocked() {
  Config next = EffectiveLocked();
  if (effective_ && *effective_ == next) return false;
  effective_ = next;
  SetLimitsLocked();
  hub_.Publish(ToProto(next));
  return true;
}

void ConfigPublisher::SetLimitsLocked() {
  std::map<std::string, KeyLimits> limits;
  for (const ClientKey& k : effective_->auth_keys) {
    if (auto l = LimitsOf(k)) limits[k.name] = *l;
  }
  const int64_t now_ms = UnixNowMs();
  const UsageLedger* ledger = ledger_.get();
  // A budget's past spending: the ledger's hours within its period.
  leases_.SetLimits(
      limits,
      [ledger, now_ms](const std::string& key, const KeyLimits& l) {
        std::map<int64_t, uint64_t> hours;
        if (ledger == nullptr) return hours;
        const int64_t since = (now_ms - l.budget_period_ms) / 1000 - 3600;
        for (const UsageRow& r : ledger->Query(key, since)) {
          hours[r.hour * 1000] += l.usd ? static_cast<uint64_t>(std::llround(r.cost_usd * 1e6))
                                        : r.prompt_tokens + r.completion_tokens;
        }
        return hours;
      },
      now_ms);
  if (!leases_loaded_) {
    leases_loaded_ = true;
    if (lease_store_) {
      if (std::optional<std::string> saved = lease_store_->Load();
          saved && !leases_.Load(*saved, now_ms)) {
        LogWarn("saved lease state unreadable; starting without it");
      }
    }
  }
}

std::optional<v1::LeaseGrant> ConfigPublisher::OnReport(const std::string& worker, uint64_t session,
                                                        const v1::LoadReport& report) {
  RecordUsage(report);
  return leases_.OnReport(worker, session, report, UnixNowMs());
}

void ConfigPublisher::SaveLeases() {
  LeaseStore* store;
  {
    std::lock_guard lock(mu_);
    store = lease_store_.get();
  }
  if (store == nullptr) return;
  const int64_t now_ms = UnixNowMs();
  std::string state = leases_.Save(now_ms);
  if (state == last_saved_leases_) return;  // an idle gateway writes nothing
  if (store->Save(state, now_ms)) {
    last_saved_leases_ = std::move(state);
  } else {
    LogWarn("lease state could not be saved");
  }
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
  if (first) {
    if (std::string error = OpenStoreLocked(*loaded.config); !error.empty()) {
      // Without its stored keys the gateway would refuse their clients, or, with no key in
      // the file, be open: not started.
      LogError("cannot open control_plane.state_path", {{"error", error}});
      out.ok = false;
      out.errors = {error};
      out.version = hub_.version();
      return out;
    }
  }
  if (file_ && (file_->server.port != loaded.config->server.port ||
                file_->control_plane.listen != loaded.config->control_plane.listen ||
                file_->control_plane.state_path != loaded.config->control_plane.state_path)) {
    LogWarn(
        "server.port, control_plane.listen and control_plane.state_path changes take effect on "
        "restart");
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

ConfigPublisher::KeyOutcome ConfigPublisher::StoreReadyLocked() const {
  if (file_ && keys_) return {};
  return KeyFailure(KeyOutcome::Code::kUnavailable,
                    "no state database (control_plane.state_path is empty or not writable)");
}

ConfigPublisher::KeyOutcome ConfigPublisher::NewSecretLocked(const std::string& name,
                                                             std::string& digest) const {
  KeyOutcome out = StoreReadyLocked();
  if (out.code != KeyOutcome::Code::kOk) return out;
  out.key = NewClientKeySecret();
  if (out.key.empty()) {
    return KeyFailure(KeyOutcome::Code::kUnavailable,
                      "no random bytes for a new key '" + name + "'");
  }
  digest = Sha256Hex(out.key);
  return out;
}

ConfigPublisher::KeyOutcome ConfigPublisher::CreateKey(ClientKey key) {
  std::lock_guard lock(mu_);
  KeyOutcome out = NewSecretLocked(key.name, key.sha256);
  if (out.code != KeyOutcome::Code::kOk) return out;
  // The table it would join, through the validator every table passes: a bad name, one the
  // file or another key has, a model nobody serves, a limit out of bounds, are its messages.
  Config next = EffectiveLocked();
  const std::string path = "auth.keys[" + std::to_string(next.auth_keys.size()) + "]";
  next.auth_keys.push_back(key);
  std::string error;
  for (const ConfigIssue& issue : CheckConfig(next)) {
    if (!issue.warning) {
      error += (error.empty() ? "" : "; ") + issue.message;
    } else if (issue.path.starts_with(path)) {
      // E.g. a budget in USD over models without a price: allowed, but said.
      LogWarn("stored key warning", {{"key", key.name}, {"warning", issue.message}});
    }
  }
  if (!error.empty()) return KeyFailure(KeyOutcome::Code::kInvalid, std::move(error));
  if (std::string stored = keys_->Create(key, UnixNow()); !stored.empty()) {
    return KeyFailure(KeyOutcome::Code::kExists, std::move(stored));
  }
  PublishLocked();
  out.version = hub_.version();
  LogInfo("client key created by admin", {{"key", key.name},
                                          {"models", static_cast<uint64_t>(key.models.size())},
                                          {"limited", key.limited()},
                                          {"version", out.version}});
  return out;
}

ConfigPublisher::KeyOutcome ConfigPublisher::RotateKey(const std::string& name) {
  std::lock_guard lock(mu_);
  std::string digest;
  KeyOutcome out = NewSecretLocked(name, digest);
  if (out.code != KeyOutcome::Code::kOk) return out;
  if (std::string error = keys_->Rotate(name, digest, UnixNow()); !error.empty()) {
    return KeyFailure(KeyOutcome::Code::kNotFound, std::move(error));
  }
  PublishLocked();
  out.version = hub_.version();
  LogInfo("client key rotated by admin", {{"key", name}, {"version", out.version}});
  return out;
}

ConfigPublisher::KeyOutcome ConfigPublisher::RevokeKey(const std::string& name) {
  std::lock_guard lock(mu_);
  KeyOutcome out = StoreReadyLocked();
  if (out.code != KeyOutcome::Code::kOk) return out;
  if (!keys_->Revoke(name, UnixNow())) {
    const bool in_file = std::any_of(file_->auth_keys.begin(), file_->auth_keys.end(),
                                     [&](const ClientKey& k) { return k.name == name; });
    out.code = KeyOutcome::Code::kNotFound;
    out.error = in_file ? "'" + name + "' is a key of the config file: remove it there"
                        : "no active stored key named '" + name + "'";
    return out;
  }
  PublishLocked();
  out.version = hub_.version();
  LogInfo("client key revoked by admin", {{"key", name}, {"version", out.version}});
  return out;
}

void ConfigPublisher::RecordUsage(const v1::LoadReport& report) {
  if (report.usage_size() == 0) return;
  std::vector<UsageRow> rows;
  uint64_t refused = 0;
  UsageLedger* ledger = nullptr;
  {
    std::lock_guard lock(mu_);
    if (!ledger_ || !file_ || !effective_) return;
    ledger = ledger_.get();  // lives as long as the publisher; it locks itself
    // Rows name what the configuration names (a key revoked since still counts): anything
    // else is a confused or hostile reporter, kept out of the ledger and its labels.
    std::set<std::string, std::less<>> models = RequestableModelNames(*effective_), keys, backends;
    for (const ClientKey& k : effective_->auth_keys) keys.insert(k.name);
    for (const StoredKey& k : keys_->List()) keys.insert(k.key.name);
    for (const BackendConfig& b : effective_->backends) {
      backends.insert(b.name);
      if (!b.default_model.empty()) models.insert(b.default_model);
    }
    models.insert({"(unknown)", "(other)"});
    backends.insert({"(none)", "(other)"});
    const int64_t now = UnixNow();
    for (const v1::KeyUsage& u : report.usage()) {
      if (!keys.contains(u.key()) || !models.contains(u.model()) ||
          !backends.contains(u.backend())) {
        ++refused;
        continue;
      }
      UsageRow r{now,
                 u.key(),
                 u.model(),
                 u.backend(),
                 u.requests(),
                 u.prompt_tokens(),
                 u.completion_tokens(),
                 0};
      // Of prompt_tokens: a reporter's larger count is cut to them.
      r.cached_prompt_tokens = std::min(u.cached_prompt_tokens(), u.prompt_tokens());
      if (auto it = file_->prices.find(u.model()); it != file_->prices.end()) {
        r.cost_usd =
            UsageCostUsd(it->second, r.prompt_tokens, r.completion_tokens, r.cached_prompt_tokens);
      }
      rows.push_back(std::move(r));
    }
  }
  if (refused > 0) {
    LogWarn("usage rows naming no configured key, model or backend were not recorded",
            {{"rows", refused}});
  }
  if (!ledger->Add(rows)) {
    LogError("usage ledger write failed; this report's usage is lost",
             {{"rows", static_cast<uint64_t>(rows.size())}});
  }
}

std::optional<std::vector<UsageRow>> ConfigPublisher::Usage(const std::optional<std::string>& key,
                                                            int64_t since) const {
  UsageLedger* ledger = nullptr;
  {
    std::lock_guard lock(mu_);
    ledger = ledger_.get();
  }
  if (ledger == nullptr) return std::nullopt;
  return ledger->Query(key, since);
}

std::vector<ConfigPublisher::KeyInfo> ConfigPublisher::ListKeys() const {
  std::lock_guard lock(mu_);
  std::vector<KeyInfo> out;
  if (file_) {
    for (const ClientKey& k : file_->auth_keys) out.push_back(KeyInfo{k, false, 0, std::nullopt});
  }
  if (keys_) {
    for (StoredKey& k : keys_->List()) {
      out.push_back(KeyInfo{std::move(k.key), true, k.created_at, k.revoked_at});
    }
  }
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
