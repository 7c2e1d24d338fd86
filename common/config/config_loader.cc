#include "common/config/config_loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "common/config/config_validator.h"
#include "common/config/did_you_mean.h"
#include "common/config/env_expander.h"
#include "common/config/key_hash.h"

namespace llmproxy {
namespace {

using Keys = std::vector<std::string_view>;

const Keys kTopKeys = {"server",
                       "control_plane",
                       "timeout",
                       "stream_idle_timeout",
                       "connect_timeout",
                       "retry",
                       "mode",
                       "auth",
                       "model_aliases",
                       "health",
                       "unknown_model",
                       "cross_model_fallback",
                       "stream_usage",
                       "backends",
                       "retry_backoff",
                       "max_retry_wait",
                       "first_token_timeout",
                       "hedge_budget",
                       "prices",
                       "limits"};
const Keys kPriceKeys = {"prompt", "completion", "cached_prompt"};
const Keys kServerKeys = {
    "port", "host", "metrics_port", "max_body_bytes", "max_buffered_bytes", "max_response_bytes"};
const Keys kControlPlaneKeys = {"listen", "metrics_port", "admin_token", "state_path"};
const Keys kAuthKeys = {"keys"};
// The object form of an auth.keys entry.
const Keys kClientKeyKeys = {"name", "key", "key_sha256",   "models",
                             "rpm",  "tpm", "max_parallel", "budget"};
const Keys kBudgetKeys = {"usd", "tokens", "period"};
const Keys kLimitsKeys = {"on_control_plane_loss", "default_max_tokens"};
const Keys kHealthKeys = {"failure_threshold", "cooldown", "max_cooldown", "probe_interval"};
const Keys kBackendKeys = {"name",
                           "url",
                           "api_key",
                           "weight",
                           "default_model",
                           "models",
                           "headers",
                           "timeout",
                           "tls_insecure_skip_verify",
                           "first_token_timeout",
                           "stream_idle_timeout",
                           "prefill",
                           "api",
                           "native_responses",
                           "reasoning_param"};
const Keys kAliasKeys = {"models", "hedge_after", "first_token_timeout", "stream_idle_timeout"};
const Keys kModelKeys = {"name", "context_window"};

// A config file larger than this is certainly a mistake (e.g. the wrong file).
constexpr std::size_t kMaxConfigBytes = 16 * 1024 * 1024;

struct Pos {
  int line = 0;
  int column = 0;
};

Pos ToPos(const YAML::Mark& mark) {
  if (mark.line < 0 || mark.column < 0) return {};
  return {mark.line + 1, mark.column + 1};
}

bool ParseInt(std::string_view text, int64_t& out) {
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+') ++begin;
  const auto [ptr, ec] = std::from_chars(begin, end, out);
  return ec == std::errc() && ptr == end && begin != end;
}

bool AllDigits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// `keys: [${KEY}]` is what users write (and docs/config.md shows), but YAML forbids `{` and `}`
// in plain scalars inside [...] flow lists. So before parsing, the braces of each
// well-formed ${NAME} become two control bytes (same length, so every line:column stays
// right) and Unmask() restores them before expansion.
constexpr char kMaskOpen = '\x0e';
constexpr char kMaskClose = '\x0f';

std::string MaskEnvRefs(std::string_view text) {
  std::string out(text);
  std::size_t i = 0;
  while ((i = out.find("${", i)) != std::string::npos) {
    std::size_t j = i + 2;
    while (j < out.size() && (std::isalnum(static_cast<unsigned char>(out[j])) || out[j] == '_')) {
      ++j;
    }
    if (j < out.size() && out[j] == '}' && j > i + 2) {
      out[i + 1] = kMaskOpen;
      out[j] = kMaskClose;
    }
    i = j;
  }
  return out;
}

std::string Unmask(std::string s) {
  for (char& c : s) {
    if (c == kMaskOpen) c = '{';
    if (c == kMaskClose) c = '}';
  }
  return s;
}

class YamlLoader {
 public:
  YamlLoader(std::string file, const EnvLookup& env) : file_(std::move(file)), env_(env) {}

  LoadResult Load(std::string_view text) {
    YAML::Node root;
    try {
      root = YAML::Load(MaskEnvRefs(text));
    } catch (const YAML::Exception& e) {
      Error(ToPos(e.mark), "invalid YAML: " + e.msg);
      return Finish();
    }
    try {
      // A document that is not a mapping at all has nothing further worth reporting.
      if (!ReadRoot(root)) return Finish();
      NormalizeConfig(config_);
      for (const ConfigIssue& issue : CheckConfig(config_)) {
        if (UnderBadPath(issue.path)) continue;  // already reported by the parser
        Add(issue.warning, Find(issue.path), issue.message);
      }
    } catch (const std::exception& e) {
      // yaml-cpp may throw on odd documents; the API promises not to.
      Error({}, std::string("internal error while reading the config: ") + e.what());
    }
    return Finish();
  }

 private:
  // --- diagnostics ---
  void Add(bool warning, Pos pos, std::string message) {
    Diagnostic d;
    d.severity = warning ? Diagnostic::Severity::kWarning : Diagnostic::Severity::kError;
    d.file = file_;
    d.line = pos.line;
    d.column = pos.column;
    d.message = std::move(message);
    diagnostics_.push_back(std::move(d));
  }
  void Error(Pos pos, std::string message) { Add(false, pos, std::move(message)); }
  void FieldError(const YAML::Node& node, const std::string& path, std::string text) {
    bad_paths_.insert(path);
    Error(ToPos(node.Mark()), path + ": " + text);
  }

  LoadResult Finish() {
    // Reading order is file order except for semantic checks; sort so an operator
    // reads the file top to bottom. Unknown positions last.
    std::stable_sort(diagnostics_.begin(), diagnostics_.end(),
                     [](const Diagnostic& a, const Diagnostic& b) {
                       const int la = a.line == 0 ? INT_MAX : a.line;
                       const int lb = b.line == 0 ? INT_MAX : b.line;
                       return la != lb ? la < lb : a.column < b.column;
                     });
    LoadResult result;
    const bool has_error =
        std::any_of(diagnostics_.begin(), diagnostics_.end(),
                    [](const Diagnostic& d) { return d.severity == Diagnostic::Severity::kError; });
    if (!has_error) result.config = std::move(config_);
    result.diagnostics = std::move(diagnostics_);
    return result;
  }

  // --- paths -> positions, for semantic issues found after parsing ---
  void Remember(const std::string& path, const YAML::Node& node) {
    marks_.emplace(path, ToPos(node.Mark()));
  }
  Pos Find(std::string path) const {
    while (true) {
      if (auto it = marks_.find(path); it != marks_.end()) return it->second;
      if (path.empty()) return {};
      const std::size_t cut = path.find_last_of(".[");
      path = cut == std::string::npos ? "" : path.substr(0, cut);
    }
  }
  bool UnderBadPath(const std::string& path) const {
    for (const std::string& bad : bad_paths_) {
      if (path.compare(0, bad.size(), bad) == 0 &&
          (path.size() == bad.size() || path[bad.size()] == '.' || path[bad.size()] == '[')) {
        return true;
      }
    }
    return false;
  }

  // --- structure ---
  static YAML::Node Child(const YAML::Node& map, std::string_view key) {
    if (!map.IsMap()) return YAML::Node();
    return map[std::string(key)];
  }
  static bool Unset(const YAML::Node& node) { return !node.IsDefined() || node.IsNull(); }

  // Reports unknown and duplicate keys; false (with an error) when `node` is not a map.
  bool CheckMap(const YAML::Node& node, const std::string& path, const Keys& allowed) {
    if (Unset(node)) return false;
    if (!node.IsMap()) {
      FieldError(node, path.empty() ? "config" : path, "must be a mapping (key: value lines)");
      return false;
    }
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;  // a copy: it-> yields a temporary
      if (!key.IsScalar()) {
        Error(ToPos(key.Mark()), "keys must be plain names");
        continue;
      }
      const std::string name = Unmask(key.Scalar());
      const std::string where = path.empty() ? "" : " in " + path;
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        std::string message = "unknown key " + Quote(name) + where;
        if (std::string guess = ClosestMatch(name, allowed); !guess.empty()) {
          message += " (did you mean " + Quote(guess) + "?)";
        }
        Error(ToPos(key.Mark()), message);
      } else if (!seen.insert(name).second) {
        Error(ToPos(key.Mark()), "duplicate key " + Quote(name) + where);
      }
    }
    return true;
  }

  // The scalar's text with ${NAME} expanded; nullopt when unset or invalid (reported).
  // Secret values are never echoed in messages.
  std::optional<std::string> Text(const YAML::Node& node, const std::string& path,
                                  std::string_view expected) {
    if (Unset(node)) return std::nullopt;
    Remember(path, node);
    if (!node.IsScalar()) {
      FieldError(
          node, path,
          "must be " + std::string(expected) + ", not a " + (node.IsMap() ? "mapping" : "list"));
      return std::nullopt;
    }
    ExpandResult expanded = ExpandEnv(Unmask(node.Scalar()), env_);
    if (!expanded.ok()) {
      for (const std::string& e : expanded.errors) FieldError(node, path, e);
      return std::nullopt;
    }
    return std::move(expanded.value);
  }

  void ReadString(const YAML::Node& node, const std::string& path, std::string& out) {
    if (auto text = Text(node, path, "a string")) out = std::move(*text);
  }

  template <typename T>
  void ReadInt(const YAML::Node& node, const std::string& path, int64_t min, int64_t max, T& out) {
    auto text = Text(node, path, "an integer");
    if (!text) return;
    int64_t value = 0;
    if (!ParseInt(*text, value) || value < min || value > max) {
      std::string message = "must be an integer between " + std::to_string(min) + " and " +
                            std::to_string(max) + ", got " + Quote(*text);
      if (ParseInt(*text, value) && value < 0 && min == 0) {
        message = "must not be negative, got " + Quote(*text);
      }
      FieldError(node, path, message);
      return;
    }
    out = static_cast<T>(value);
  }

  void ReadBool(const YAML::Node& node, const std::string& path, bool& out) {
    auto text = Text(node, path, "true or false");
    if (!text) return;
    const std::string v = Lower(*text);
    if (v == "true" || v == "yes" || v == "on") {
      out = true;
    } else if (v == "false" || v == "no" || v == "off") {
      out = false;
    } else {
      FieldError(node, path, "must be true or false, got " + Quote(*text));
    }
  }

  // A bare integer is seconds: the original may have had `timeout: 180`.
  static std::optional<Millis> DurationValue(const std::string& text) {
    if (int64_t seconds = 0; AllDigits(text) && ParseInt(text, seconds)) {
      if (seconds <= int64_t{10} * 365 * 24 * 3600) return std::chrono::seconds(seconds);
      return std::nullopt;
    }
    return ParseDuration(text);
  }

  void ReadDuration(const YAML::Node& node, const std::string& path, Millis& out) {
    auto text = Text(node, path, "a duration");
    if (!text) return;
    if (auto d = DurationValue(*text)) {
      out = *d;
      return;
    }
    FieldError(node, path,
               "invalid duration " + Quote(*text) + " (use e.g. 180s, 500ms, 1m30s, 2h)");
  }

  void ReadOptionalDuration(const YAML::Node& node, const std::string& path,
                            std::optional<Millis>& out) {
    if (Unset(node)) return;
    Millis value{0};
    const std::size_t errors = diagnostics_.size();
    ReadDuration(node, path, value);
    if (diagnostics_.size() == errors) out = value;
  }

  void ReadSize(const YAML::Node& node, const std::string& path, uint64_t& out) {
    auto text = Text(node, path, "a size");
    if (!text) return;
    if (auto size = ParseByteSize(*text)) {
      out = *size;
    } else {
      FieldError(node, path,
                 "invalid size " + Quote(*text) + " (use e.g. 10MiB, 512KiB, 1MB, 1048576)");
    }
  }

  // A share: "10%" or a number from 0 to 1 ("0.1").
  void ReadFraction(const YAML::Node& node, const std::string& path, double& out) {
    auto text = Text(node, path, "a share");
    if (!text) return;
    std::string_view t = *text;
    const bool percent = !t.empty() && t.back() == '%';
    if (percent) t.remove_suffix(1);
    double value = -1;
    const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
    if (ec == std::errc() && ptr == t.data() + t.size() && !t.empty()) {
      if (percent) value /= 100;
      if (value >= 0 && value <= 1) {
        out = value;
        return;
      }
    }
    FieldError(node, path,
               "must be a share from 0% to 100% (e.g. 10% or 0.1), got " + Quote(*text));
  }

  // off | auto | a duration (0 = off).
  void ReadHedgeAfter(const YAML::Node& node, const std::string& path, HedgeAfter& out) {
    if (Unset(node)) return;
    if (node.IsScalar()) {
      const std::string v = Lower(Unmask(node.Scalar()));
      if (v == "auto") {
        Remember(path, node);
        out = {HedgeAfter::Kind::kAuto, Millis{0}};
        return;
      }
      if (v == "off" || v == "false" || v == "no") {
        Remember(path, node);
        out = {};
        return;
      }
    }
    Millis delay{0};
    const std::size_t errors = diagnostics_.size();
    ReadDuration(node, path, delay);
    if (diagnostics_.size() != errors) return;
    out = delay.count() > 0 ? HedgeAfter{HedgeAfter::Kind::kFixed, delay} : HedgeAfter{};
  }

  // A list of strings; `allow_scalar` also takes one bare string as a one-element list.
  void ReadStringList(const YAML::Node& node, const std::string& path,
                      std::vector<std::string>& out, bool allow_scalar) {
    if (Unset(node)) return;
    Remember(path, node);
    if (node.IsScalar() && allow_scalar) {
      if (auto text = Text(node, path + "[0]", "a string")) out.push_back(std::move(*text));
      return;
    }
    ForEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
      if (auto text = Text(item, item_path, "a string")) out.push_back(std::move(*text));
    });
  }

  // Calls `read(item, item_path)` for each entry of a list, reporting a node that is not a
  // list and empty entries.
  template <typename Read>
  void ForEachItem(const YAML::Node& node, const std::string& path, Read read) {
    if (!node.IsSequence()) {
      FieldError(node, path, "must be a list (e.g. [a, b] or '- a' lines)");
      return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      const YAML::Node item = node[i];
      if (Unset(item)) {
        Remember(item_path, item);
        FieldError(item, item_path, "empty list entry");
        continue;
      }
      read(item, item_path);
    }
  }

  template <typename Enum>
  void ReadEnum(const YAML::Node& node, const std::string& path,
                const std::vector<std::pair<std::string_view, Enum>>& spellings,
                std::string_view expected, Enum& out) {
    auto text = Text(node, path, "a string");
    if (!text) return;
    for (const auto& [spelling, value] : spellings) {
      if (*text == spelling) {
        out = value;
        return;
      }
    }
    std::vector<std::string_view> names;
    for (const auto& s : spellings) names.push_back(s.first);
    std::string message = "must be " + std::string(expected) + ", got " + Quote(*text);
    if (std::string guess = ClosestMatch(*text, names); !guess.empty()) {
      message += " (did you mean " + Quote(guess) + "?)";
    }
    FieldError(node, path, message);
  }

  // --- sections ---
  // False when the document is not a mapping (reported).
  bool ReadRoot(const YAML::Node& root) {
    Remember("", root);
    if (!Unset(root) && !root.IsMap()) {
      Error(ToPos(root.Mark()), "the config must be a mapping of key: value lines");
      return false;
    }
    if (!CheckMap(root, "", kTopKeys)) return true;
    ReadServer(Child(root, "server"));
    ReadControlPlane(Child(root, "control_plane"));
    ReadDuration(Child(root, "timeout"), "timeout", config_.timeout);
    ReadDuration(Child(root, "stream_idle_timeout"), "stream_idle_timeout",
                 config_.stream_idle_timeout);
    ReadDuration(Child(root, "connect_timeout"), "connect_timeout", config_.connect_timeout);
    ReadInt(Child(root, "retry"), "retry", 0, 100, config_.retry);
    ReadDuration(Child(root, "retry_backoff"), "retry_backoff", config_.retry_backoff);
    ReadDuration(Child(root, "max_retry_wait"), "max_retry_wait", config_.max_retry_wait);
    ReadDuration(Child(root, "first_token_timeout"), "first_token_timeout",
                 config_.first_token_timeout);
    ReadFraction(Child(root, "hedge_budget"), "hedge_budget", config_.hedge_budget);
    ReadEnum<BalanceMode>(Child(root, "mode"), "mode",
                          {{"random", BalanceMode::kRandom},
                           {"round-robin", BalanceMode::kRoundRobin},
                           {"round_robin", BalanceMode::kRoundRobin},
                           {"roundrobin", BalanceMode::kRoundRobin},
                           {"least-busy", BalanceMode::kLeastBusy},
                           {"least_busy", BalanceMode::kLeastBusy},
                           {"leastbusy", BalanceMode::kLeastBusy}},
                          "random, round-robin or least-busy", config_.mode);
    ReadAuth(Child(root, "auth"));
    ReadPrices(Child(root, "prices"));
    ReadLimits(Child(root, "limits"));
    ReadAliases(Child(root, "model_aliases"));
    ReadHealth(Child(root, "health"));
    ReadEnum<UnknownModelPolicy>(
        Child(root, "unknown_model"), "unknown_model",
        {{"fallback", UnknownModelPolicy::kFallback}, {"reject", UnknownModelPolicy::kReject}},
        "fallback or reject", config_.unknown_model);
    ReadBool(Child(root, "cross_model_fallback"), "cross_model_fallback",
             config_.cross_model_fallback);
    ReadEnum<StreamUsage>(
        Child(root, "stream_usage"), "stream_usage",
        {{"passthrough", StreamUsage::kPassthrough}, {"request", StreamUsage::kRequest}},
        "passthrough or request", config_.stream_usage);
    ReadBackends(Child(root, "backends"));
    return true;
  }

  void ReadServer(const YAML::Node& node) {
    if (!CheckMap(node, "server", kServerKeys)) return;
    Remember("server", node);
    ReadInt(Child(node, "port"), "server.port", 1, 65535, config_.server.port);
    ReadString(Child(node, "host"), "server.host", config_.server.host);
    ReadInt(Child(node, "metrics_port"), "server.metrics_port", 1, 65535,
            config_.server.metrics_port);
    ReadSize(Child(node, "max_body_bytes"), "server.max_body_bytes", config_.server.max_body_bytes);
    ReadSize(Child(node, "max_buffered_bytes"), "server.max_buffered_bytes",
             config_.server.max_buffered_bytes);
    ReadSize(Child(node, "max_response_bytes"), "server.max_response_bytes",
             config_.server.max_response_bytes);
  }

  void ReadControlPlane(const YAML::Node& node) {
    if (!CheckMap(node, "control_plane", kControlPlaneKeys)) return;
    ControlPlaneConfig& cp = config_.control_plane;
    const YAML::Node listen = Child(node, "listen");
    if (auto text = Text(listen, "control_plane.listen", "a string")) {
      // HOST:PORT; port 0 lets the system pick one (tests).
      const std::size_t colon = text->rfind(':');
      int64_t port = -1;
      if (colon == std::string::npos || colon == 0 ||
          !ParseInt(std::string_view(*text).substr(colon + 1), port) || port < 0 || port > 65535) {
        FieldError(listen, "control_plane.listen",
                   "must be HOST:PORT (e.g. 127.0.0.1:50051), got " + Quote(*text));
      } else {
        cp.listen = std::move(*text);
      }
    }
    ReadInt(Child(node, "metrics_port"), "control_plane.metrics_port", 1, 65535, cp.metrics_port);
    ReadString(Child(node, "admin_token"), "control_plane.admin_token", cp.admin_token);
    ReadString(Child(node, "state_path"), "control_plane.state_path", cp.state_path);
  }

  void ReadAuth(const YAML::Node& node) {
    if (!CheckMap(node, "auth", kAuthKeys)) return;
    const YAML::Node keys = Child(node, "keys");
    if (Unset(keys)) return;
    Remember("auth.keys", keys);
    ForEachItem(keys, "auth.keys", [&](const YAML::Node& item, const std::string& path) {
      ReadClientKey(item, path, config_.auth_keys.size() + 1);
    });
  }

  // prices: {model: {prompt: USD per 1M tokens, completion: ...}}.
  void ReadPrices(const YAML::Node& node) {
    if (Unset(node)) return;
    Remember("prices", node);
    if (!node.IsMap()) {
      FieldError(node, "prices", "must be a mapping of model: {prompt: X, completion: Y}");
      return;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;  // copies: it-> yields a temporary
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Error(ToPos(key.Mark()), "prices: model names must be plain strings");
        continue;
      }
      const std::string model = Unmask(key.Scalar());
      const std::string path = "prices." + model;
      if (!CheckMap(value, path, kPriceKeys)) {
        if (Unset(value)) FieldError(key, path, "needs prompt and completion (USD per 1M tokens)");
        continue;
      }
      ModelPrice price;
      ReadPrice(Child(value, "prompt"), path + ".prompt", price.prompt);
      ReadPrice(Child(value, "completion"), path + ".completion", price.completion);
      // Prompt tokens served from the provider's cache; absent: priced as prompt tokens.
      if (const YAML::Node cached = Child(value, "cached_prompt"); !Unset(cached)) {
        double cached_price = -1;
        ReadPrice(cached, path + ".cached_prompt", cached_price);
        if (cached_price >= 0) price.cached_prompt = cached_price;
      }
      if (!config_.prices.emplace(model, price).second) {
        Error(ToPos(key.Mark()), "prices: duplicate model " + Quote(model));
      }
    }
  }

  void ReadPrice(const YAML::Node& node, const std::string& path, double& out) {
    auto text = Text(node, path, "a number");
    if (!text) return;
    double value = -1;
    const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || ptr != text->data() + text->size() || !(value >= 0) || value > 1e6) {
      FieldError(node, path, "must be USD per million tokens, 0 or more, got " + Quote(*text));
      return;
    }
    out = value;
  }

  // An auth.keys entry: a plain string (the original program's form; named key-<n>) or
  // {name, key | key_sha256, models}. The key is hashed here and not kept.
  void ReadClientKey(const YAML::Node& node, const std::string& path, std::size_t number) {
    ClientKey key;
    std::optional<std::string> secret;
    if (node.IsScalar()) {
      key.name = "key-" + std::to_string(number);
      secret = Text(node, path, "a string");
      if (!secret) return;
    } else {
      if (!CheckMap(node, path, kClientKeyKeys)) return;  // a list entry: reported
      Remember(path, node);
      ReadString(Child(node, "name"), path + ".name", key.name);
      if (Unset(Child(node, "name"))) {
        FieldError(node, path, "a key object needs a name (the label in logs and admin)");
      }
      secret = Text(Child(node, "key"), path + ".key", "a string");
      const std::optional<std::string> digest =
          Text(Child(node, "key_sha256"), path + ".key_sha256", "a string");
      const bool has_key = !Unset(Child(node, "key"));
      const bool has_digest = !Unset(Child(node, "key_sha256"));
      if (has_key && has_digest) {
        FieldError(node, path, "give key or key_sha256, not both");
      } else if (!has_key && !has_digest) {
        FieldError(node, path, "needs key (the secret) or key_sha256 (its SHA-256 in hex)");
      } else if (has_digest && digest) {
        key.sha256 = NormalizeSha256Hex(*digest);
        if (key.sha256.empty()) {
          FieldError(Child(node, "key_sha256"), path + ".key_sha256",
                     "must be 64 hex digits (sha256sum of the key, without a newline)");
        }
      }
      ReadStringList(Child(node, "models"), path + ".models", key.models, true);
      ReadKeyLimit(Child(node, "rpm"), path + ".rpm", key.rpm);
      ReadKeyLimit(Child(node, "tpm"), path + ".tpm", key.tpm);
      ReadKeyLimit(Child(node, "max_parallel"), path + ".max_parallel", key.max_parallel);
      ReadBudget(Child(node, "budget"), path + ".budget", key.budget);
      if (has_digest || !secret) {
        if (!key.sha256.empty()) config_.auth_keys.push_back(std::move(key));
        return;
      }
    }
    if (secret->empty()) {
      FieldError(node, node.IsScalar() ? path : path + ".key", "client key is empty");
      return;
    }
    if (secret->find_first_of("\r\n") != std::string::npos) {
      FieldError(node, node.IsScalar() ? path : path + ".key", "client key contains a line break");
      return;
    }
    key.sha256 = Sha256Hex(*secret);
    config_.auth_keys.push_back(std::move(key));
  }

  // rpm, tpm, max_parallel: a whole number from 1 up. Absent is no limit; 0 or a negative
  // number is refused rather than read as "none" (a typo must not lift a limit).
  void ReadKeyLimit(const YAML::Node& node, const std::string& path, uint64_t& out) {
    auto text = Text(node, path, "a whole number");
    if (!text) return;
    int64_t value = 0;
    if (!ParseInt(*text, value) || value < 1 || static_cast<uint64_t>(value) > kMaxKeyRate) {
      FieldError(node, path,
                 "must be a whole number from 1 to " + std::to_string(kMaxKeyRate) +
                     " (omit the field for no limit), got " + Quote(*text));
      return;
    }
    out = static_cast<uint64_t>(value);
  }

  // budget: {usd: X, period: D} or {tokens: N, period: D}; set only when all of it is valid.
  void ReadBudget(const YAML::Node& node, const std::string& path, std::optional<KeyBudget>& out) {
    if (Unset(node)) return;
    Remember(path, node);
    if (!node.IsMap()) {
      FieldError(node, path, "must be {usd: X, period: 30d} or {tokens: N, period: 30d}");
      return;
    }
    CheckMap(node, path, kBudgetKeys);
    const YAML::Node usd = Child(node, "usd");
    const YAML::Node tokens = Child(node, "tokens");
    const YAML::Node period = Child(node, "period");
    KeyBudget budget;
    bool ok = true;
    if (!Unset(usd) && !Unset(tokens)) {
      FieldError(node, path, "give usd or tokens, not both");
      ok = false;
    } else if (Unset(usd) && Unset(tokens)) {
      FieldError(node, path,
                 "needs usd (USD per period) or tokens (prompt + completion tokens per period)");
      ok = false;
    } else if (!Unset(usd)) {
      budget.unit = KeyBudget::Unit::kUsd;
      auto text = Text(usd, path + ".usd", "a number");
      double value = -1;
      if (text) {
        const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
        if (ec != std::errc() || ptr != text->data() + text->size()) value = -1;
      }
      if (!(value > 0 && value <= kMaxBudgetUsd)) {
        if (text) {
          FieldError(usd, path + ".usd",
                     "must be USD, more than 0 and at most 1000000000, got " + Quote(*text));
        }
        ok = false;
      }
      budget.amount = value;
    } else {
      budget.unit = KeyBudget::Unit::kTokens;
      auto text = Text(tokens, path + ".tokens", "a whole number");
      int64_t value = 0;
      if (!text || !ParseInt(*text, value) || value < 1 ||
          static_cast<uint64_t>(value) > kMaxBudgetTokens) {
        if (text) {
          FieldError(tokens, path + ".tokens",
                     "must be a whole number of tokens from 1 to " +
                         std::to_string(kMaxBudgetTokens) + ", got " + Quote(*text));
        }
        ok = false;
      }
      budget.amount = static_cast<double>(value);
    }
    if (Unset(period)) {
      FieldError(node, path, "needs period, the window the budget is spent over (e.g. 30d)");
      ok = false;
    } else if (auto text = Text(period, path + ".period", "a duration")) {
      const std::optional<Millis> d = DurationValue(*text);
      if (!d || d->count() <= 0 || *d > kMaxBudgetPeriod) {
        FieldError(period, path + ".period",
                   "must be a duration longer than 0 and at most 366d (e.g. 30d, 7d, 24h), got " +
                       Quote(*text));
        ok = false;
      } else {
        budget.period = *d;
      }
    } else {
      ok = false;
    }
    if (ok) out = budget;
  }

  void ReadLimits(const YAML::Node& node) {
    if (!CheckMap(node, "limits", kLimitsKeys)) return;
    Remember("limits", node);
    ReadEnum<ControlPlaneLoss>(
        Child(node, "on_control_plane_loss"), "limits.on_control_plane_loss",
        {{"allow", ControlPlaneLoss::kAllow}, {"deny", ControlPlaneLoss::kDeny}}, "allow or deny",
        config_.limits.on_control_plane_loss);
    ReadInt(Child(node, "default_max_tokens"), "limits.default_max_tokens", 1,
            static_cast<int64_t>(kMaxKeyRate), config_.limits.default_max_tokens);
  }

  void ReadHealth(const YAML::Node& node) {
    if (!CheckMap(node, "health", kHealthKeys)) return;
    HealthConfig& h = config_.health;
    ReadInt(Child(node, "failure_threshold"), "health.failure_threshold", 1, 1'000'000,
            h.failure_threshold);
    ReadDuration(Child(node, "cooldown"), "health.cooldown", h.cooldown);
    ReadDuration(Child(node, "max_cooldown"), "health.max_cooldown", h.max_cooldown);
    ReadDuration(Child(node, "probe_interval"), "health.probe_interval", h.probe_interval);
  }

  void ReadAliases(const YAML::Node& node) {
    if (Unset(node)) return;
    Remember("model_aliases", node);
    if (!node.IsMap()) {
      FieldError(node, "model_aliases", "must be a mapping of alias: [models...]");
      return;
    }
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;  // copies: it-> yields a temporary
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Error(ToPos(key.Mark()), "model_aliases: alias names must be plain strings");
        continue;
      }
      ModelAlias alias;
      alias.name = Unmask(key.Scalar());
      const std::string path = "model_aliases." + alias.name;
      if (!seen.insert(alias.name).second) {
        Error(ToPos(key.Mark()), "model_aliases: duplicate alias " + Quote(alias.name));
        continue;
      }
      marks_.emplace(path, ToPos(key.Mark()));
      if (Unset(value)) {
        bad_paths_.insert(path);
        Error(ToPos(key.Mark()), path + ": alias " + Quote(alias.name) + " lists no models");
        continue;
      }
      if (value.IsMap()) {
        // The object form: {models: [...], hedge_after, first_token_timeout, ...}.
        CheckMap(value, path, kAliasKeys);
        const YAML::Node models = Child(value, "models");
        if (Unset(models)) {
          FieldError(value, path, "alias " + Quote(alias.name) + " lists no models");
          continue;
        }
        ReadStringList(models, path + ".models", alias.models, true);
        ReadHedgeAfter(Child(value, "hedge_after"), path + ".hedge_after", alias.hedge_after);
        ReadOptionalDuration(Child(value, "first_token_timeout"), path + ".first_token_timeout",
                             alias.first_token_timeout);
        ReadOptionalDuration(Child(value, "stream_idle_timeout"), path + ".stream_idle_timeout",
                             alias.stream_idle_timeout);
      } else {
        ReadStringList(value, path, alias.models, true);
      }
      config_.model_aliases.push_back(std::move(alias));
    }
  }

  void ReadBackends(const YAML::Node& node) {
    if (Unset(node)) return;
    Remember("backends", node);
    if (!node.IsSequence()) {
      FieldError(node, "backends", "must be a list of backends ('- name: ...' entries)");
      return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) ReadBackend(node[i], i);
  }

  void ReadBackend(const YAML::Node& node, std::size_t index) {
    const std::string path = "backends[" + std::to_string(index) + "]";
    BackendConfig b;
    Remember(path, node);
    if (Unset(node)) {
      FieldError(node, path, "empty backend entry");
      config_.backends.push_back(std::move(b));
      return;
    }
    if (!CheckMap(node, path, kBackendKeys)) {
      config_.backends.push_back(std::move(b));
      return;
    }
    ReadString(Child(node, "name"), path + ".name", b.name);
    ReadString(Child(node, "url"), path + ".url", b.url);
    ReadString(Child(node, "api_key"), path + ".api_key", b.api_key);
    ReadInt(Child(node, "weight"), path + ".weight", 0, 1'000'000, b.weight);
    ReadString(Child(node, "default_model"), path + ".default_model", b.default_model);
    ReadModels(Child(node, "models"), path + ".models", b);
    ReadHeaders(Child(node, "headers"), path + ".headers", b.headers);
    ReadOptionalDuration(Child(node, "timeout"), path + ".timeout", b.timeout);
    ReadBool(Child(node, "tls_insecure_skip_verify"), path + ".tls_insecure_skip_verify",
             b.tls_insecure_skip_verify);
    ReadOptionalDuration(Child(node, "first_token_timeout"), path + ".first_token_timeout",
                         b.first_token_timeout);
    ReadOptionalDuration(Child(node, "stream_idle_timeout"), path + ".stream_idle_timeout",
                         b.stream_idle_timeout);
    ReadBool(Child(node, "prefill"), path + ".prefill", b.prefill);
    ReadEnum<BackendApi>(Child(node, "api"), path + ".api",
                         {{"openai", BackendApi::kOpenAI}, {"anthropic", BackendApi::kAnthropic}},
                         "openai or anthropic", b.api);
    ReadBool(Child(node, "native_responses"), path + ".native_responses", b.native_responses);
    if (!Unset(Child(node, "reasoning_param"))) {
      ReasoningParam param = ReasoningParam::kNone;
      ReadEnum<ReasoningParam>(Child(node, "reasoning_param"), path + ".reasoning_param",
                               {{"none", ReasoningParam::kNone},
                                {"reasoning_effort", ReasoningParam::kReasoningEffort},
                                {"thinking", ReasoningParam::kThinking}},
                               "none, reasoning_effort or thinking", param);
      b.reasoning_param = param;
    }
    config_.backends.push_back(std::move(b));
  }

  // A backend's models: names, or {name: m, context_window: N} objects (model properties).
  void ReadModels(const YAML::Node& node, const std::string& path, BackendConfig& b) {
    if (Unset(node)) return;
    Remember(path, node);
    ForEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
      if (!item.IsMap()) {
        if (auto text = Text(item, item_path, "a string")) b.models.push_back(std::move(*text));
        return;
      }
      Remember(item_path, item);
      CheckMap(item, item_path, kModelKeys);
      std::string name;
      ReadString(Child(item, "name"), item_path + ".name", name);
      if (name.empty()) {
        FieldError(item, item_path, "a model entry needs a name");
        return;
      }
      uint64_t window = 0;
      if (const YAML::Node w = Child(item, "context_window"); !Unset(w)) {
        ReadInt(w, item_path + ".context_window", 1, int64_t{1} << 40, window);
      }
      if (window > 0) b.context_windows[name] = window;
      b.models.push_back(std::move(name));
    });
  }

  void ReadHeaders(const YAML::Node& node, const std::string& path,
                   std::map<std::string, std::string>& out) {
    if (Unset(node)) return;
    Remember(path, node);
    if (!node.IsMap()) {
      FieldError(node, path, "must be a mapping of header: value");
      return;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;  // copies: it-> yields a temporary
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Error(ToPos(key.Mark()), path + ": header names must be plain strings");
        continue;
      }
      const std::string name = Unmask(key.Scalar());
      const std::string header_path = path + "." + name;
      marks_.emplace(header_path, ToPos(key.Mark()));
      if (out.contains(name)) {
        Error(ToPos(key.Mark()), path + ": duplicate header " + Quote(name));
        continue;
      }
      std::string text;
      ReadString(value, header_path, text);
      out.emplace(name, std::move(text));
    }
  }

  std::string file_;
  const EnvLookup& env_;
  Config config_;
  std::vector<Diagnostic> diagnostics_;
  std::map<std::string, Pos> marks_;
  std::set<std::string> bad_paths_;
};

}  // namespace

std::string Diagnostic::Format() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  out += ": ";
  if (severity == Severity::kWarning) out += "warning: ";
  out += message;
  return out;
}

std::vector<std::string> LoadResult::FormattedErrors() const {
  std::vector<std::string> out;
  for (const Diagnostic& d : diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) out.push_back(d.Format());
  }
  return out;
}

EnvLookup ProcessEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

LoadResult LoadConfigFile(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.diagnostics.push_back({Diagnostic::Severity::kError, path, 0, 0,
                                  std::string("cannot read file: ") + std::strerror(errno)});
    return result;
  }
  std::string text;
  char buffer[64 * 1024];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) {
      LoadResult result;
      result.diagnostics.push_back(
          {Diagnostic::Severity::kError, path, 0, 0, "file is larger than 16 MiB"});
      return result;
    }
  }
  return LoadConfigString(text, path, env);
}

LoadResult LoadConfigString(std::string_view yaml, const std::string& filename,
                            const EnvLookup& env) {
  return YamlLoader(filename, env).Load(yaml);
}

std::vector<std::string> ValidateConfig(const Config& config) {
  std::vector<std::string> errors;
  for (const ConfigIssue& issue : CheckConfig(config)) {
    if (!issue.warning) errors.push_back(issue.message);
  }
  return errors;
}

std::string Summarize(const Config& config) {
  std::set<std::string> models;
  std::string names;
  for (const BackendConfig& b : config.backends) {
    models.insert(b.models.begin(), b.models.end());
    if (!names.empty()) names += ", ";
    names += b.name;
  }
  std::ostringstream out;
  out << "config ok: " << config.backends.size()
      << (config.backends.size() == 1 ? " backend (" : " backends (") << names << "), "
      << models.size() << (models.size() == 1 ? " model" : " models") << ", mode "
      << ToString(config.mode) << ", retry " << config.retry << ", timeout "
      << FormatDuration(config.timeout) << ", port " << config.server.port;
  if (!config.model_aliases.empty()) {
    out << ", " << config.model_aliases.size()
        << (config.model_aliases.size() == 1 ? " alias" : " aliases");
  }
  if (!config.auth_keys.empty()) {
    out << ", auth on (" << config.auth_keys.size()
        << (config.auth_keys.size() == 1 ? " key)" : " keys)");
  }
  return out.str();
}

}  // namespace llmproxy
