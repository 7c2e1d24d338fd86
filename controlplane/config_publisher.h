// Owns the configuration the control plane serves: loads config.yaml with the shared
// loader, applies the admin overrides on top, and publishes each changed, valid result
// as a new version through the SnapshotHub. An invalid file is logged (every error as
// file:line:column), counted, remembered for Admin.GetConfig, and the last good
// version stays in force. Thread-safe: the watcher, SIGHUP and admin calls all land here.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.h"
#include "common/config/config_loader.h"
#include "controlplane/core/backend_overrides.h"
#include "controlplane/ctl_metrics.h"
#include "controlplane/key_store.h"
#include "controlplane/snapshot_hub.h"
#include "controlplane/usage_ledger.h"
#include "llmproxy/v1/discovery.pb.h"

namespace llmproxy {

class ConfigPublisher {
 public:
  ConfigPublisher(std::string path, SnapshotHub& hub, CtlMetrics& metrics,
                  EnvLookup env = ProcessEnv());

  struct ReloadOutcome {
    bool ok = false;
    bool changed = false;  // a new version was published
    uint64_t version = 0;  // the version in force afterwards
    std::vector<std::string> errors;
  };
  // Reads the file again. `trigger` is logged ("startup", "file change", "SIGHUP", "admin").
  ReloadOutcome Reload(std::string_view trigger);

  enum class Action { kDrain, kEnable, kSetWeight };
  struct StateOutcome {
    enum class Code { kOk, kNotFound, kInvalid } code = Code::kOk;
    uint64_t version = 0;
    std::string error;
  };
  StateOutcome SetBackendState(const std::string& backend, Action action, uint32_t weight);

  struct View {
    std::string path;
    std::optional<Config> file;       // last good file content
    std::optional<Config> effective;  // with overrides, as published
    BackendOverrides overrides;
    uint64_t version = 0;
    uint64_t reloads_ok = 0;
    uint64_t reloads_rejected = 0;
    std::vector<std::string> last_errors;
  };
  View view() const;
  std::string admin_token() const;

  // Stored client keys (key_store.h), merged into every published table beside the file's
  // keys. The store opens at the first good load (control_plane.state_path, relative to
  // the config file's directory); a damaged one fails that load, a missing one that cannot
  // be created leaves the store off (OpenStoreLocked).
  struct KeyOutcome {
    enum class Code { kOk, kNotFound, kInvalid, kExists, kUnavailable } code = Code::kOk;
    std::string key;  // Create: the secret, shown once
    uint64_t version = 0;
    std::string error;
  };
  KeyOutcome CreateKey(const std::string& name, const std::vector<std::string>& models);
  KeyOutcome RotateKey(const std::string& name);  // a new secret, the old one refused
  KeyOutcome RevokeKey(const std::string& name);
  struct KeyInfo {
    ClientKey key;        // sha256 included: callers show what they may
    bool stored = false;  // false: from the file
    int64_t created_at = 0;
    std::optional<int64_t> revoked_at;
  };
  std::vector<KeyInfo> ListKeys() const;

  // A worker's load report: its usage sums go to the ledger (this hour, cost from prices:).
  void RecordUsage(const v1::LoadReport& report);
  // The ledger's rows since `since` (Unix seconds), of one key or all; nullopt: no ledger.
  std::optional<std::vector<UsageRow>> Usage(const std::optional<std::string>& key,
                                             int64_t since) const;

 private:
  // Publishes overrides_.Apply(*file_) plus the stored keys when it differs from what is in
  // force.
  bool PublishLocked();
  Config EffectiveLocked() const;
  KeyOutcome StoreReadyLocked() const;  // kUnavailable without a store
  // StoreReadyLocked, then a new secret in `key` and its SHA-256 in `digest`.
  KeyOutcome NewSecretLocked(const std::string& name, std::string& digest) const;
  std::string OpenStoreLocked(const Config& config);  // "" or why it cannot

  std::string path_;
  SnapshotHub& hub_;
  CtlMetrics& metrics_;
  EnvLookup env_;

  mutable std::mutex mu_;
  std::optional<Config> file_;
  std::optional<Config> effective_;
  BackendOverrides overrides_;
  std::unique_ptr<KeyStore> keys_;       // null: control_plane.state_path ""
  std::unique_ptr<UsageLedger> ledger_;  // with keys_, in the same database
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_rejected_ = 0;
  std::vector<std::string> last_errors_;
};

}  // namespace llmproxy
