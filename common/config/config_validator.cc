#include "common/config/config_validator.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "common/config/key_hash.h"

namespace llmproxy {
namespace {

constexpr uint32_t kMaxWeight = 1'000'000;
constexpr uint32_t kMaxRetry = 100;
constexpr double kMaxPrice = 1e6;           // USD per million tokens (the loader's bound)
constexpr std::size_t kMaxNamesShown = 10;  // in one warning

bool IsHttpUrl(const std::string& url) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (url.size() > scheme.size() && url.compare(0, scheme.size(), scheme) == 0 &&
        url[scheme.size()] != '/') {
      return true;
    }
  }
  return false;
}

// RFC 9110 token characters: a header name outside them would corrupt the request.
bool IsHeaderName(const std::string& name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool HasLineBreak(const std::string& s) { return s.find_first_of("\r\n") != std::string::npos; }

class Checker {
 public:
  explicit Checker(const Config& config) : config_(config) {}

  std::vector<ConfigIssue> Run() {
    CheckGlobals();
    CheckBackends();
    CheckAliases();
    CheckKeys();
    CheckPrices();
    CheckLimits();
    return std::move(issues_);
  }

 private:
  void Error(std::string path, std::string text) { Add(false, std::move(path), std::move(text)); }
  void Warn(std::string path, std::string text) { Add(true, std::move(path), std::move(text)); }
  void Add(bool warning, std::string path, std::string text) {
    std::string message = path.empty() ? text : path + ": " + text;
    issues_.push_back({warning, std::move(path), std::move(message)});
  }

  void Positive(Millis d, const std::string& path) {
    if (d.count() <= 0) Error(path, "must be greater than zero");
  }

  void CheckGlobals() {
    if (config_.server.port == 0) Error("server.port", "must be between 1 and 65535");
    if (config_.server.host.empty()) Error("server.host", "must not be empty");
    if (config_.server.max_body_bytes == 0)
      Error("server.max_body_bytes", "must be greater than zero");
    if (config_.server.max_buffered_bytes < config_.server.max_body_bytes)
      Error("server.max_buffered_bytes", "must be at least server.max_body_bytes");
    if (config_.server.max_response_bytes == 0)
      Error("server.max_response_bytes", "must be greater than zero");
    Positive(config_.timeout, "timeout");
    Positive(config_.stream_idle_timeout, "stream_idle_timeout");
    Positive(config_.connect_timeout, "connect_timeout");
    if (config_.retry > kMaxRetry) Error("retry", "must be between 0 and 100");
    if (config_.health.failure_threshold == 0) {
      Error("health.failure_threshold", "must be at least 1");
    }
    Positive(config_.health.cooldown, "health.cooldown");
    if (config_.health.max_cooldown < config_.health.cooldown) {
      Error("health.max_cooldown", "must not be shorter than health.cooldown");
    }
    if (config_.health.probe_interval.count() < 0) {
      Error("health.probe_interval", "must not be negative (0 turns probing off)");
    }
  }

  void CheckBackends() {
    if (config_.backends.empty()) {
      Error("backends", "no backends configured (at least one is required)");
      return;
    }
    std::set<std::string> names;
    bool any_weight = false;
    for (std::size_t i = 0; i < config_.backends.size(); ++i) {
      const BackendConfig& b = config_.backends[i];
      const std::string path = "backends[" + std::to_string(i) + "]";
      const std::string who = b.name.empty() ? path : "backend '" + b.name + "'";
      if (b.name.empty()) {
        Error(path + ".name", "backend needs a name");
      } else if (!names.insert(b.name).second) {
        Error(path + ".name", "duplicate backend name '" + b.name + "'");
      }
      // The url is never echoed: it may carry credentials (https://user:pass@host).
      if (b.url.empty()) {
        Error(path + ".url", "url is required");
      } else if (!IsHttpUrl(b.url)) {
        Error(path + ".url", "url must start with http:// or https://");
      } else if (HasLineBreak(b.url) || b.url.find(' ') != std::string::npos) {
        Error(path + ".url", "url must not contain spaces or line breaks");
      } else if (b.url.back() == '/') {
        Warn(path + ".url",
             "url ends with '/': requests go to url + \"/chat/completions\", giving '//'");
      }
      if (HasLineBreak(b.api_key)) Error(path + ".api_key", "api_key contains a line break");
      if (b.weight > kMaxWeight) Error(path + ".weight", "must be between 0 and 1000000");
      if (b.weight > 0) any_weight = true;
      if (b.models.empty()) {
        Error(path + ".models", who + " has no models and no default_model");
      }
      for (std::size_t m = 0; m < b.models.size(); ++m) {
        if (b.models[m].empty()) {
          Error(path + ".models[" + std::to_string(m) + "]", "model name is empty");
        }
      }
      if (!b.models.empty() && !b.default_model.empty() &&
          std::find(b.models.begin(), b.models.end(), b.default_model) == b.models.end()) {
        Warn(path + ".default_model", "default_model '" + b.default_model +
                                          "' is not among the models of " + who +
                                          " (it is still used as the default)");
      }
      for (const auto& [name, value] : b.headers) {
        const std::string hpath = path + ".headers." + name;
        if (!IsHeaderName(name)) {
          Error(hpath, "invalid header name");
        } else if (HasLineBreak(value)) {
          Error(hpath, "header value contains a line break");
        }
      }
      if (b.timeout.has_value()) Positive(*b.timeout, path + ".timeout");
      if (b.stream_idle_timeout) Positive(*b.stream_idle_timeout, path + ".stream_idle_timeout");
      if (b.native_responses && b.api == BackendApi::kAnthropic) {
        Error(path + ".native_responses",
              "only an api: openai backend can serve /responses itself");
      }
    }
    if (!any_weight) {
      Warn("backends", "every backend has weight 0: no backend will receive traffic");
    }
  }

  void CheckAliases() {
    std::set<std::string> served;
    for (const BackendConfig& b : config_.backends) served.insert(b.models.begin(), b.models.end());
    std::set<std::string> names;
    for (const ModelAlias& alias : config_.model_aliases) {
      const std::string path = "model_aliases." + alias.name;
      if (alias.name.empty()) {
        Error("model_aliases", "alias name is empty");
        continue;
      }
      if (!names.insert(alias.name).second) {
        Error(path, "duplicate alias '" + alias.name + "'");
      }
      // An alias that lists its own name is how a served model gets alias options
      // (hedge_after, timeouts): no surprise to warn about.
      const bool lists_itself =
          std::find(alias.models.begin(), alias.models.end(), alias.name) != alias.models.end();
      if (served.contains(alias.name) && !lists_itself) {
        Warn(path, "alias '" + alias.name +
                       "' has the name of a model that backends serve (the alias is used)");
      }
      if (alias.models.empty()) Error(path, "alias '" + alias.name + "' lists no models");
      if (alias.stream_idle_timeout) {
        Positive(*alias.stream_idle_timeout, path + ".stream_idle_timeout");
      }
      for (std::size_t i = 0; i < alias.models.size(); ++i) {
        if (!served.contains(alias.models[i])) {
          Error(path + "[" + std::to_string(i) + "]", "alias '" + alias.name +
                                                          "' points to model '" + alias.models[i] +
                                                          "' that no backend serves");
        }
      }
    }
  }

  // auth.keys: distinct names and keys, digests well formed, models that exist.
  void CheckKeys() {
    const std::set<std::string, std::less<>> served = RequestableModelNames(config_);
    std::set<std::string> names, digests;
    for (std::size_t i = 0; i < config_.auth_keys.size(); ++i) {
      const ClientKey& key = config_.auth_keys[i];
      const std::string path = "auth.keys[" + std::to_string(i) + "]";
      if (!IsClientKeyName(key.name)) {
        Error(path + ".name", "must be 1 to 64 of A-Z a-z 0-9 . _ - (it labels logs and admin)");
      } else if (!names.insert(key.name).second) {
        Error(path + ".name", "two keys are named '" + key.name + "'");
      }
      if (NormalizeSha256Hex(key.sha256) != key.sha256 || key.sha256.empty()) {
        Error(path, "key digest is not 64 lowercase hex digits");
      } else if (!digests.insert(key.sha256).second) {
        Error(path, "the same key is listed twice (key '" + key.name + "')");
      }
      for (std::size_t m = 0; m < key.models.size(); ++m) {
        if (!served.contains(key.models[m])) {
          Error(path + ".models[" + std::to_string(m) + "]",
                "key '" + key.name + "' allows model '" + key.models[m] +
                    "' that no backend serves and no alias names");
        }
      }
      CheckKeyLimits(key, path);
    }
  }

  // The loader refuses these at their place in the file; a pushed table or a stored key
  // gets the same bounds here. 0 is "no limit" in the model, so only the tops are checked.
  void CheckKeyLimits(const ClientKey& key, const std::string& path) {
    for (const auto& [value, field] : {std::pair{key.rpm, ".rpm"}, std::pair{key.tpm, ".tpm"},
                                       std::pair{key.max_parallel, ".max_parallel"}}) {
      if (value > kMaxKeyRate) {
        Error(path + field, "must be at most " + std::to_string(kMaxKeyRate));
      }
    }
    if (!key.budget) return;
    const KeyBudget& b = *key.budget;
    if (b.unit == KeyBudget::Unit::kUsd) {
      if (!(b.amount > 0 && b.amount <= kMaxBudgetUsd)) {
        Error(path + ".budget.usd", "must be more than 0 and at most 1000000000");
      }
    } else if (!(b.amount >= 1 && b.amount <= static_cast<double>(kMaxBudgetTokens)) ||
               b.amount != std::floor(b.amount)) {
      Error(path + ".budget.tokens",
            "must be a whole number from 1 to " + std::to_string(kMaxBudgetTokens));
    }
    if (b.period.count() <= 0 || b.period > kMaxBudgetPeriod) {
      Error(path + ".budget.period", "must be longer than 0 and at most 366d");
    }
    if (b.unit == KeyBudget::Unit::kUsd) WarnUnpriced(key, path + ".budget");
  }

  // A budget in USD counts what `prices:` says each model as sent upstream costs; a model
  // the key can reach without a price costs nothing against it.
  void WarnUnpriced(const ClientKey& key, const std::string& path) {
    std::set<std::string> reached;
    if (key.models.empty()) {
      for (const BackendConfig& b : config_.backends) {
        reached.insert(b.models.begin(), b.models.end());
        if (!b.default_model.empty()) reached.insert(b.default_model);
      }
    } else {
      for (const std::string& name : key.models) {
        // An alias wins over a served model of its name (model_resolver.h).
        auto alias = std::find_if(config_.model_aliases.begin(), config_.model_aliases.end(),
                                  [&](const ModelAlias& a) { return a.name == name; });
        if (alias != config_.model_aliases.end()) {
          reached.insert(alias->models.begin(), alias->models.end());
        } else {
          reached.insert(name);
        }
      }
    }
    std::string unpriced;
    std::size_t count = 0;
    for (const std::string& model : reached) {
      if (config_.prices.contains(model)) continue;
      if (++count <= kMaxNamesShown) unpriced += (unpriced.empty() ? "'" : ", '") + model + "'";
    }
    if (count == 0) return;
    if (count > kMaxNamesShown) {
      unpriced += " and " + std::to_string(count - kMaxNamesShown) + " more";
    }
    Warn(path, "key '" + key.name + "' has a budget in USD but " +
                   (count == 1 ? "model " : "models ") + unpriced +
                   (count == 1 ? " has" : " have") +
                   " no price in prices: (they count 0 USD against the budget)");
  }

  void CheckPrices() {
    std::set<std::string> served;
    for (const BackendConfig& b : config_.backends) {
      served.insert(b.models.begin(), b.models.end());
      if (!b.default_model.empty()) served.insert(b.default_model);
    }
    for (const auto& [model, price] : config_.prices) {
      // The loader refuses these at their place; a pushed table gets the same bounds.
      const std::string path = "prices." + model;
      for (const auto& [value, field] :
           {std::pair{price.prompt, ".prompt"}, std::pair{price.completion, ".completion"},
            std::pair{price.cached_prompt.value_or(0), ".cached_prompt"}}) {
        if (!(value >= 0 && value <= kMaxPrice)) {
          Error(path + field, "must be USD per million tokens, 0 or more");
        }
      }
      if (model.empty()) Error("prices", "a price names no model");
      if (!served.contains(model)) {
        Warn("prices." + model, "no backend serves model '" + model + "' (its price is unused)");
      }
    }
  }

  void CheckLimits() {
    if (config_.limits.default_max_tokens == 0 || config_.limits.default_max_tokens > kMaxKeyRate) {
      Error("limits.default_max_tokens", "must be between 1 and " + std::to_string(kMaxKeyRate));
    }
  }

  const Config& config_;
  std::vector<ConfigIssue> issues_;
};

}  // namespace

std::set<std::string, std::less<>> RequestableModelNames(const Config& config) {
  std::set<std::string, std::less<>> names;
  for (const BackendConfig& b : config.backends) names.insert(b.models.begin(), b.models.end());
  for (const ModelAlias& a : config.model_aliases) names.insert(a.name);
  return names;
}

void NormalizeConfig(Config& config) {
  for (BackendConfig& b : config.backends) {
    if (b.default_model.empty() && !b.models.empty()) b.default_model = b.models.front();
    if (b.models.empty() && !b.default_model.empty()) b.models.push_back(b.default_model);
  }
}

std::vector<ConfigIssue> CheckConfig(const Config& config) { return Checker(config).Run(); }

}  // namespace llmproxy
