// The validated configuration model shared by llmproxy-ctl and llmproxy-worker.
// Built by the loader (config_loader.h) from YAML, or from a pushed protobuf
// RoutingTable (config_proto.h); plain values, copied into an immutable table.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmproxy {

using Millis = std::chrono::milliseconds;

enum class BalanceMode { kRandom, kRoundRobin, kLeastBusy };
enum class UnknownModelPolicy { kFallback, kReject };
enum class StreamUsage { kPassthrough, kRequest };
// The protocol a backend speaks (docs/protocols.md): OpenAI's chat completions (and
// /completions, /embeddings), or Anthropic Messages.
enum class BackendApi { kOpenAI, kAnthropic };
// How an Anthropic `thinking` request reaches an OpenAI-protocol backend: dropped,
// as `reasoning_effort` (OpenAI), or as `"thinking":{"type":"enabled"}` (DeepSeek, VolcEngine).
enum class ReasoningParam { kNone, kReasoningEffort, kThinking };

std::string_view ToString(BalanceMode mode);  // "random" | "round-robin" | "least-busy"
std::string_view ToString(UnknownModelPolicy policy);
std::string_view ToString(StreamUsage usage);
std::string_view ToString(BackendApi api);        // "openai" | "anthropic"
std::string_view ToString(ReasoningParam param);  // "none" | "reasoning_effort" | "thinking"

struct BackendConfig {
  std::string name;
  std::string url;  // requests go to url + "/chat/completions" (etc.), the original's rule
  std::string api_key;
  uint32_t weight = 1;        // 0 = no traffic
  std::string default_model;  // defaults to models[0]
  std::vector<std::string> models;
  std::map<std::string, std::string> headers;  // extra headers sent upstream
  std::optional<Millis> timeout;               // unset: Config::timeout
  bool tls_insecure_skip_verify = false;
  bool drained = false;  // admin drain: no new traffic
  // Streams (docs/routing.md "Slow and broken streams"); unset: the alias's, then Config's.
  std::optional<Millis> first_token_timeout;
  std::optional<Millis> stream_idle_timeout;
  // The provider continues an assistant message given as the last one (a prefill), so a
  // broken stream may be continued here (docs/routing.md "Continuation").
  bool prefill = false;
  // Declared context windows, in tokens, of models listed in the object form
  // `{name: m, context_window: N}`; a model absent here has no declared window.
  std::map<std::string, uint64_t> context_windows;
  // The protocol spoken (docs/protocols.md); `native_responses`: an OpenAI backend that
  // serves /responses itself (OpenAI, Azure), so Responses requests go there untranslated.
  BackendApi api = BackendApi::kOpenAI;
  bool native_responses = false;
  // Unset: known from the url's host (api.openai.com and Azure: reasoning_effort;
  // DeepSeek and VolcEngine: thinking), else none.
  std::optional<ReasoningParam> reasoning_param;

  bool operator==(const BackendConfig&) const = default;
};

// How long a request waits for a first token before a hedge starts (docs/routing.md
// "Hedging"): off, a fixed delay, or `auto` (the candidate's recent p95 time to first token).
struct HedgeAfter {
  enum class Kind { kOff, kFixed, kAuto };
  Kind kind = Kind::kOff;
  Millis delay{0};  // kFixed only

  bool operator==(const HedgeAfter&) const = default;
};

// A key's budget (auth.keys[].budget): spending over a sliding period, in USD (priced by
// `prices:`) or in tokens (prompt + completion).
struct KeyBudget {
  enum class Unit { kUsd, kTokens };
  Unit unit = Unit::kUsd;
  double amount = 0;  // USD, or tokens (a whole number)
  Millis period{0};   // > 0, e.g. 30d

  bool operator==(const KeyBudget&) const = default;
};

// One entry of auth.keys (docs/config.md "auth"). The key itself is never kept: only its
// SHA-256, which is what workers receive and compare a presented key's digest against.
struct ClientKey {
  std::string name;    // label in logs and admin; "key-<n>" for an entry of the old string form
  std::string sha256;  // 64 lowercase hex digits (key_hash.h)
  // The model names (served models or aliases) this key may ask for; empty = any.
  std::vector<std::string> models;
  // Limits held across every worker by leases (docs/limits.md); 0 / unset = no limit.
  uint64_t rpm = 0;           // requests per minute (sliding)
  uint64_t tpm = 0;           // tokens per minute, prompt + completion (sliding)
  uint64_t max_parallel = 0;  // requests in flight
  std::optional<KeyBudget> budget = std::nullopt;

  bool limited() const { return rpm != 0 || tpm != 0 || max_parallel != 0 || budget.has_value(); }
  bool operator==(const ClientKey&) const = default;
};

// USD per million tokens of one model (prices:), for the usage ledger's cost and budgets.
struct ModelPrice {
  double prompt = 0;
  double completion = 0;
  // Prompt tokens read from the provider's cache; unset: priced as prompt tokens.
  std::optional<double> cached_prompt = std::nullopt;
  bool operator==(const ModelPrice&) const = default;
};

// What a worker does when a key's lease is spent and the control plane cannot be reached
// (docs/limits.md "Losing the control plane").
enum class ControlPlaneLoss { kAllow, kDeny };
std::string_view ToString(ControlPlaneLoss policy);  // "allow" | "deny"

struct LimitsConfig {
  ControlPlaneLoss on_control_plane_loss = ControlPlaneLoss::kAllow;
  // A request's completion estimate when it sets no max_tokens / max_output_tokens.
  uint64_t default_max_tokens = 4096;

  bool operator==(const LimitsConfig&) const = default;
};

struct ModelAlias {
  std::string name;
  std::vector<std::string> models;  // tried in order
  // The object form `{models: [...], hedge_after, first_token_timeout, stream_idle_timeout}`.
  HedgeAfter hedge_after{};
  std::optional<Millis> first_token_timeout{};  // unset: Config's (a backend's own wins)
  std::optional<Millis> stream_idle_timeout{};

  bool operator==(const ModelAlias&) const = default;
};

struct ServerConfig {
  uint16_t port = 8080;
  std::string host = "0.0.0.0";
  uint16_t metrics_port = 9400;
  uint64_t max_body_bytes = 10ull * 1024 * 1024;
  // Request bytes buffered by one worker across all its connections; a body that would
  // go past it gets 503 (keyless or slow clients cannot pin the worker's memory).
  uint64_t max_buffered_bytes = 256ull * 1024 * 1024;
  // Largest non-streamed upstream answer relayed (an error body included); beyond: 502.
  uint64_t max_response_bytes = 256ull * 1024 * 1024;

  bool operator==(const ServerConfig&) const = default;
};

struct ControlPlaneConfig {
  std::string listen = "127.0.0.1:50051";
  uint16_t metrics_port = 9399;
  std::string admin_token;  // empty: mutating admin calls are open
  // The SQLite database of state that outlives a restart (stored client keys); a relative
  // path is taken from the config file's directory. "" = no state: keys only in the file.
  std::string state_path = "llmproxy-state.db";

  bool operator==(const ControlPlaneConfig&) const = default;
};

struct HealthConfig {
  uint32_t failure_threshold = 5;
  Millis cooldown = std::chrono::seconds(30);
  Millis max_cooldown = std::chrono::seconds(300);  // cap for the doubling
  // Ejected backends get a GET <url>/models this often (half-open); 0 = passive only.
  Millis probe_interval = std::chrono::seconds(5);

  bool operator==(const HealthConfig&) const = default;
};

struct Config {
  ServerConfig server;
  ControlPlaneConfig control_plane;
  Millis timeout = std::chrono::seconds(180);  // whole request; time to first byte for streams
  Millis stream_idle_timeout = std::chrono::seconds(60);
  // Streams: a candidate that has sent no first token by then is abandoned for the next
  // one while nothing went to the client; 0 = off.
  Millis first_token_timeout{0};
  // Hedges may add at most this share of the requests a worker proxies (0..1).
  double hedge_budget = 0.10;
  Millis connect_timeout = std::chrono::seconds(5);
  uint32_t retry = 3;  // extra attempts after the first
  // Before an attempt on a candidate this request already tried (no untried one left):
  // retry_backoff, doubling per repeat, with jitter (docs/routing.md).
  Millis retry_backoff = std::chrono::milliseconds(250);
  // The longest Retry-After waited out instead of failing over (or giving up).
  Millis max_retry_wait = std::chrono::seconds(10);
  BalanceMode mode = BalanceMode::kRandom;
  std::vector<ClientKey> auth_keys;  // empty: open
  // By model name as resolved (what the backend was asked for); workers use them to
  // reserve a budget in USD.
  std::map<std::string, ModelPrice> prices;
  LimitsConfig limits;
  std::vector<ModelAlias> model_aliases;
  HealthConfig health;
  UnknownModelPolicy unknown_model = UnknownModelPolicy::kFallback;
  bool cross_model_fallback = false;
  StreamUsage stream_usage = StreamUsage::kPassthrough;
  std::vector<BackendConfig> backends;

  bool operator==(const Config&) const = default;
};

}  // namespace llmproxy
