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
#include "controlplane/core/lease_authority.h"
#include "controlplane/ctl_metrics.h"
#include "controlplane/key_store.h"
#include "controlplane/lease_store.h"
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
  // A new stored key with `key`'s name, models and limits (its sha256 is replaced by the
  // new secret's digest), validated as part of the table it would join.
  KeyOutcome CreateKey(ClientKey key);
  KeyOutcome RotateKey(const std::string& name);  // a new secret, the old one refused
  KeyOutcome RevokeKey(const std::string& name);
  struct KeyInfo {
    ClientKey key;        // sha256 and limits included: callers show what they may
    bool stored = false;  // false: from the file
    int64_t created_at = 0;
    std::optional<int64_t> revoked_at;
  };
  std::vector<KeyInfo> ListKeys() const;

  // A worker's load report: its usage sums go to the ledger (this hour, cost from prices:).
  void RecordUsage(const v1::LoadReport& report);
  // The same, then its leases to the lease authority (docs/limits.md); returns the grant
  // for the worker's stream `session`, if the report holds leases.
  std::optional<v1::LeaseGrant> OnReport(const std::string& worker, uint64_t session,
                                         const v1::LoadReport& report);
  // The authority's state into the state database, when it has one (the control plane
  // calls this every second and at shutdown), so a restart forgets no lease or window.
  void SaveLeases();
  LeaseAuthority& leases() { return leases_; }
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
  // The limits of the keys in effect_ to the authority (after each publish); the first
  // time, with what the lease store saved.
  void SetLimitsLocked();

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
  std::unique_ptr<LeaseStore> lease_store_;  // with keys_ too
  LeaseAuthority leases_;
  bool leases_loaded_ = false;
  std::string last_saved_leases_;  // SaveLeases only (one caller thread)
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_rejected_ = 0;
  std::vector<std::string> last_errors_;
};

}  // namespace llmproxy
