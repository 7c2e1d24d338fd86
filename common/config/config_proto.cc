#include "common/config/config_proto.h"

#include "common/config/config_loader.h"
#include "common/config/config_validator.h"

namespace llmproxy {
namespace {

constexpr std::string_view kRedacted = "<redacted>";

void SetDuration(Millis d, google::protobuf::Duration* out) {
  out->set_seconds(d.count() / 1000);
  out->set_nanos(static_cast<int32_t>(d.count() % 1000 * 1'000'000));
}

Millis FromDuration(const google::protobuf::Duration& d) {
  return Millis(d.seconds() * 1000 + d.nanos() / 1'000'000);
}

v1::BalanceMode ToProto(BalanceMode mode) {
  switch (mode) {
    case BalanceMode::kRandom:
      return v1::BALANCE_MODE_RANDOM;
    case BalanceMode::kRoundRobin:
      return v1::BALANCE_MODE_ROUND_ROBIN;
    case BalanceMode::kLeastBusy:
      return v1::BALANCE_MODE_LEAST_BUSY;
  }
  return v1::BALANCE_MODE_RANDOM;
}

}  // namespace

void BudgetToProto(const KeyBudget& budget, v1::KeyBudget* out) {
  if (budget.unit == KeyBudget::Unit::kUsd) {
    out->set_usd(budget.amount);
  } else {
    out->set_tokens(static_cast<uint64_t>(budget.amount));
  }
  SetDuration(budget.period, out->mutable_period());
}

std::optional<KeyBudget> BudgetFromProto(const v1::KeyBudget& in, std::string& error) {
  KeyBudget budget;
  switch (in.amount_case()) {
    case v1::KeyBudget::kUsd:
      budget.amount = in.usd();
      break;
    case v1::KeyBudget::kTokens:
      budget.unit = KeyBudget::Unit::kTokens;
      budget.amount = static_cast<double>(in.tokens());
      break;
    case v1::KeyBudget::AMOUNT_NOT_SET:
      error = "needs usd or tokens";
      return std::nullopt;
  }
  if (in.period().seconds() < 0 || in.period().nanos() < 0) {
    error = "period must not be negative";
    return std::nullopt;
  }
  budget.period = FromDuration(in.period());
  return budget;
}

v1::RoutingTable ToProto(const Config& config) {
  v1::RoutingTable table;
  v1::ServerSettings* server = table.mutable_server();
  server->set_port(config.server.port);
  server->set_host(config.server.host);
  server->set_metrics_port(config.server.metrics_port);
  server->set_max_body_bytes(config.server.max_body_bytes);
  server->set_max_buffered_bytes(config.server.max_buffered_bytes);
  server->set_max_response_bytes(config.server.max_response_bytes);
  SetDuration(config.timeout, table.mutable_timeout());
  SetDuration(config.stream_idle_timeout, table.mutable_stream_idle_timeout());
  SetDuration(config.connect_timeout, table.mutable_connect_timeout());
  table.set_retry(config.retry);
  SetDuration(config.retry_backoff, table.mutable_retry_backoff());
  SetDuration(config.max_retry_wait, table.mutable_max_retry_wait());
  SetDuration(config.first_token_timeout, table.mutable_first_token_timeout());
  table.set_hedge_budget(config.hedge_budget);
  table.set_mode(ToProto(config.mode));
  for (const ClientKey& key : config.auth_keys) {
    v1::ClientKey* out = table.add_client_keys();
    out->set_name(key.name);
    out->set_sha256(key.sha256);
    for (const std::string& m : key.models) out->add_models(m);
    out->set_rpm(key.rpm);
    out->set_tpm(key.tpm);
    out->set_max_parallel(key.max_parallel);
    if (key.budget) BudgetToProto(*key.budget, out->mutable_budget());
  }
  // By model name (a std::map), so equal configs give equal tables.
  for (const auto& [model, price] : config.prices) {
    v1::ModelPrice* out = table.add_prices();
    out->set_model(model);
    out->set_prompt(price.prompt);
    out->set_completion(price.completion);
    if (price.cached_prompt) out->set_cached_prompt(*price.cached_prompt);
  }
  v1::Limits* limits = table.mutable_limits();
  limits->set_on_control_plane_loss(config.limits.on_control_plane_loss == ControlPlaneLoss::kDeny
                                        ? v1::CONTROL_PLANE_LOSS_DENY
                                        : v1::CONTROL_PLANE_LOSS_ALLOW);
  limits->set_default_max_tokens(config.limits.default_max_tokens);
  for (const ModelAlias& alias : config.model_aliases) {
    v1::ModelAlias* out = table.add_model_aliases();
    out->set_name(alias.name);
    for (const std::string& m : alias.models) out->add_models(m);
    if (alias.hedge_after.kind == HedgeAfter::Kind::kAuto) {
      out->mutable_hedge_after()->set_auto_(true);
    } else if (alias.hedge_after.kind == HedgeAfter::Kind::kFixed) {
      SetDuration(alias.hedge_after.delay, out->mutable_hedge_after()->mutable_delay());
    }
    if (alias.first_token_timeout) {
      SetDuration(*alias.first_token_timeout, out->mutable_first_token_timeout());
    }
    if (alias.stream_idle_timeout) {
      SetDuration(*alias.stream_idle_timeout, out->mutable_stream_idle_timeout());
    }
  }
  v1::HealthSettings* health = table.mutable_health();
  health->set_failure_threshold(config.health.failure_threshold);
  SetDuration(config.health.cooldown, health->mutable_cooldown());
  SetDuration(config.health.max_cooldown, health->mutable_max_cooldown());
  SetDuration(config.health.probe_interval, health->mutable_probe_interval());
  table.set_unknown_model(config.unknown_model == UnknownModelPolicy::kReject
                              ? v1::UNKNOWN_MODEL_POLICY_REJECT
                              : v1::UNKNOWN_MODEL_POLICY_FALLBACK);
  table.set_cross_model_fallback(config.cross_model_fallback);
  table.set_stream_usage(config.stream_usage == StreamUsage::kRequest
                             ? v1::STREAM_USAGE_REQUEST
                             : v1::STREAM_USAGE_PASSTHROUGH);
  for (const BackendConfig& b : config.backends) {
    v1::Backend* out = table.add_backends();
    out->set_name(b.name);
    out->set_url(b.url);
    out->set_api_key(b.api_key);
    out->set_weight(b.weight);
    out->set_default_model(b.default_model);
    for (const std::string& m : b.models) out->add_models(m);
    for (const auto& [name, value] : b.headers) (*out->mutable_headers())[name] = value;
    if (b.timeout.has_value()) SetDuration(*b.timeout, out->mutable_timeout());
    out->set_tls_insecure_skip_verify(b.tls_insecure_skip_verify);
    out->set_drained(b.drained);
    if (b.first_token_timeout) {
      SetDuration(*b.first_token_timeout, out->mutable_first_token_timeout());
    }
    if (b.stream_idle_timeout) {
      SetDuration(*b.stream_idle_timeout, out->mutable_stream_idle_timeout());
    }
    out->set_prefill(b.prefill);
    out->set_api(b.api == BackendApi::kAnthropic ? v1::BACKEND_API_ANTHROPIC
                                                 : v1::BACKEND_API_OPENAI);
    out->set_native_responses(b.native_responses);
    if (b.reasoning_param) {
      out->set_reasoning_param(*b.reasoning_param == ReasoningParam::kThinking
                                   ? v1::REASONING_PARAM_THINKING
                               : *b.reasoning_param == ReasoningParam::kReasoningEffort
                                   ? v1::REASONING_PARAM_REASONING_EFFORT
                                   : v1::REASONING_PARAM_NONE);
    }
    for (const auto& [model, window] : b.context_windows) {
      (*out->mutable_context_windows())[model] = window;
    }
  }
  return table;
}

FromProtoResult FromProto(const v1::RoutingTable& table) {
  FromProtoResult result;
  std::vector<std::string> errors;
  Config config;
  // Unset messages keep the model's defaults, so a minimal table means what a minimal
  // config.yaml means.
  if (table.has_server()) {
    const v1::ServerSettings& s = table.server();
    if (s.port() > 65535) errors.push_back("server.port: must be between 1 and 65535");
    if (s.metrics_port() > 65535) {
      errors.push_back("server.metrics_port: must be between 1 and 65535");
    }
    config.server.port = static_cast<uint16_t>(s.port());
    if (!s.host().empty()) config.server.host = s.host();
    if (s.metrics_port() != 0) config.server.metrics_port = static_cast<uint16_t>(s.metrics_port());
    if (s.max_body_bytes() != 0) config.server.max_body_bytes = s.max_body_bytes();
    if (s.max_buffered_bytes() != 0) config.server.max_buffered_bytes = s.max_buffered_bytes();
    if (s.max_response_bytes() != 0) config.server.max_response_bytes = s.max_response_bytes();
  }
  auto duration = [&errors](const google::protobuf::Duration& d, const char* path, Millis& out) {
    if (d.seconds() < 0 || d.nanos() < 0) {
      errors.push_back(std::string(path) + ": must not be negative");
      return;
    }
    out = FromDuration(d);
  };
  if (table.has_timeout()) duration(table.timeout(), "timeout", config.timeout);
  if (table.has_stream_idle_timeout()) {
    duration(table.stream_idle_timeout(), "stream_idle_timeout", config.stream_idle_timeout);
  }
  if (table.has_connect_timeout()) {
    duration(table.connect_timeout(), "connect_timeout", config.connect_timeout);
  }
  config.retry = table.retry();
  if (table.has_retry_backoff()) {
    duration(table.retry_backoff(), "retry_backoff", config.retry_backoff);
  }
  if (table.has_max_retry_wait()) {
    duration(table.max_retry_wait(), "max_retry_wait", config.max_retry_wait);
  }
  switch (table.mode()) {
    case v1::BALANCE_MODE_ROUND_ROBIN:
      config.mode = BalanceMode::kRoundRobin;
      break;
    case v1::BALANCE_MODE_LEAST_BUSY:
      config.mode = BalanceMode::kLeastBusy;
      break;
    default:
      config.mode = BalanceMode::kRandom;
      break;
  }
  for (int i = 0; i < table.client_keys_size(); ++i) {
    const v1::ClientKey& in = table.client_keys(i);
    ClientKey key;
    key.name = in.name();
    key.sha256 = in.sha256();
    key.models.assign(in.models().begin(), in.models().end());
    key.rpm = in.rpm();
    key.tpm = in.tpm();
    key.max_parallel = in.max_parallel();
    if (in.has_budget()) {
      // Ranges are the validator's (CheckConfig), as for a loaded file.
      std::string error;
      key.budget = BudgetFromProto(in.budget(), error);
      if (!key.budget) errors.push_back("auth.keys[" + std::to_string(i) + "].budget: " + error);
    }
    config.auth_keys.push_back(std::move(key));
  }
  for (const v1::ModelPrice& p : table.prices()) {
    ModelPrice price{p.prompt(), p.completion()};
    if (p.has_cached_prompt()) price.cached_prompt = p.cached_prompt();
    if (!config.prices.emplace(p.model(), price).second) {
      errors.push_back("prices: duplicate model '" + p.model() + "'");
    }
  }
  if (table.has_limits()) {
    config.limits.on_control_plane_loss =
        table.limits().on_control_plane_loss() == v1::CONTROL_PLANE_LOSS_DENY
            ? ControlPlaneLoss::kDeny
            : ControlPlaneLoss::kAllow;
    // 0 (or a table from a control plane without limits): the default.
    if (table.limits().default_max_tokens() != 0) {
      config.limits.default_max_tokens = table.limits().default_max_tokens();
    }
  }
  auto optional_duration = [&duration](const google::protobuf::Duration& d, const std::string& path,
                                       std::optional<Millis>& out) {
    Millis t{0};
    duration(d, path.c_str(), t);
    out = t;
  };
  for (const v1::ModelAlias& a : table.model_aliases()) {
    ModelAlias alias;
    alias.name = a.name();
    alias.models.assign(a.models().begin(), a.models().end());
    const std::string path = "model_aliases." + a.name();
    if (a.hedge_after().auto_()) {
      alias.hedge_after.kind = HedgeAfter::Kind::kAuto;
    } else if (a.hedge_after().has_delay()) {
      Millis delay{0};
      duration(a.hedge_after().delay(), (path + ".hedge_after").c_str(), delay);
      if (delay.count() > 0) alias.hedge_after = {HedgeAfter::Kind::kFixed, delay};
    }
    if (a.has_first_token_timeout()) {
      optional_duration(a.first_token_timeout(), path + ".first_token_timeout",
                        alias.first_token_timeout);
    }
    if (a.has_stream_idle_timeout()) {
      optional_duration(a.stream_idle_timeout(), path + ".stream_idle_timeout",
                        alias.stream_idle_timeout);
    }
    config.model_aliases.push_back(std::move(alias));
  }
  if (table.has_first_token_timeout()) {
    duration(table.first_token_timeout(), "first_token_timeout", config.first_token_timeout);
  }
  if (table.has_hedge_budget()) {
    if (!(table.hedge_budget() >= 0 && table.hedge_budget() <= 1)) {
      errors.push_back("hedge_budget: must be between 0 and 1");
    } else {
      config.hedge_budget = table.hedge_budget();
    }
  }
  if (table.has_health()) {
    config.health.failure_threshold = table.health().failure_threshold();
    if (table.health().has_cooldown()) {
      duration(table.health().cooldown(), "health.cooldown", config.health.cooldown);
    }
    if (table.health().has_max_cooldown()) {
      duration(table.health().max_cooldown(), "health.max_cooldown", config.health.max_cooldown);
    }
    // Absent (an older control plane): the default; present and zero: probing off.
    if (table.health().has_probe_interval()) {
      duration(table.health().probe_interval(), "health.probe_interval",
               config.health.probe_interval);
    }
  }
  config.unknown_model = table.unknown_model() == v1::UNKNOWN_MODEL_POLICY_REJECT
                             ? UnknownModelPolicy::kReject
                             : UnknownModelPolicy::kFallback;
  config.cross_model_fallback = table.cross_model_fallback();
  config.stream_usage = table.stream_usage() == v1::STREAM_USAGE_REQUEST
                            ? StreamUsage::kRequest
                            : StreamUsage::kPassthrough;
  for (int i = 0; i < table.backends_size(); ++i) {
    const v1::Backend& in = table.backends(i);
    BackendConfig b;
    b.name = in.name();
    b.url = in.url();
    b.api_key = in.api_key();
    b.weight = in.weight();
    b.default_model = in.default_model();
    b.models.assign(in.models().begin(), in.models().end());
    // proto maps have no order; std::map sorts, so a round trip is stable.
    b.headers.insert(in.headers().begin(), in.headers().end());
    if (in.has_timeout()) {
      Millis t{0};
      const std::string path = "backends[" + std::to_string(i) + "].timeout";
      duration(in.timeout(), path.c_str(), t);
      b.timeout = t;
    }
    b.tls_insecure_skip_verify = in.tls_insecure_skip_verify();
    b.drained = in.drained();
    const std::string path = "backends[" + std::to_string(i) + "]";
    if (in.has_first_token_timeout()) {
      optional_duration(in.first_token_timeout(), path + ".first_token_timeout",
                        b.first_token_timeout);
    }
    if (in.has_stream_idle_timeout()) {
      optional_duration(in.stream_idle_timeout(), path + ".stream_idle_timeout",
                        b.stream_idle_timeout);
    }
    b.prefill = in.prefill();
    b.api = in.api() == v1::BACKEND_API_ANTHROPIC ? BackendApi::kAnthropic : BackendApi::kOpenAI;
    b.native_responses = in.native_responses();
    if (in.has_reasoning_param()) {
      b.reasoning_param = in.reasoning_param() == v1::REASONING_PARAM_THINKING
                              ? ReasoningParam::kThinking
                          : in.reasoning_param() == v1::REASONING_PARAM_REASONING_EFFORT
                              ? ReasoningParam::kReasoningEffort
                              : ReasoningParam::kNone;
    }
    for (const auto& [model, window] : in.context_windows()) {
      if (window > 0) b.context_windows.emplace(model, window);
    }
    config.backends.push_back(std::move(b));
  }
  NormalizeConfig(config);
  for (std::string& e : ValidateConfig(config)) errors.push_back(std::move(e));
  if (!errors.empty()) {
    for (std::size_t i = 0; i < errors.size(); ++i) {
      if (i > 0) result.error += "; ";
      result.error += errors[i];
    }
    return result;
  }
  result.config = std::move(config);
  return result;
}

v1::RoutingTable Redacted(const v1::RoutingTable& table) {
  v1::RoutingTable copy = table;
  // A digest of a weak key can be searched for: not shown either.
  for (v1::ClientKey& key : *copy.mutable_client_keys()) key.set_sha256(std::string(kRedacted));
  for (v1::Backend& b : *copy.mutable_backends()) {
    // An empty key stays empty: "no key configured" is useful and reveals nothing.
    if (!b.api_key().empty()) b.set_api_key(std::string(kRedacted));
    for (auto& [name, value] : *b.mutable_headers()) value = std::string(kRedacted);
  }
  return copy;
}

}  // namespace llmproxy
