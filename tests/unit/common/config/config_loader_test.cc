// The YAML loader: the original program's files, defaults, the extended schema, env
// expansion, and every class of bad config reported at its exact file:line:column.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "common/config/config_loader.h"
#include "common/config/key_hash.h"

namespace llmproxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

LoadResult Load(std::string_view yaml, std::map<std::string, std::string> env = {}) {
  return LoadConfigString(yaml, "c.yaml", FakeEnv(std::move(env)));
}

std::string TestData(std::string_view name) {
  return std::string(LLMPROXY_SOURCE_DIR) + "/tests/testdata/" + std::string(name);
}

std::string All(const LoadResult& r) {
  std::string out;
  for (const Diagnostic& d : r.diagnostics) out += d.Format() + "\n";
  return out;
}

std::vector<std::string> Warnings(const LoadResult& r) {
  std::vector<std::string> out;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.severity == Diagnostic::Severity::kWarning) out.push_back(d.Format());
  }
  return out;
}

// One backend, valid; tests append or vary one thing.
constexpr std::string_view kOneBackend =
    "backends:\n"
    "  - name: a\n"
    "    url: http://127.0.0.1:9000\n"
    "    models: [m1, m2]\n";

TEST(ConfigLoaderTest, OriginalSampleLoadsWithExactValues) {
  const LoadResult r = LoadConfigFile(TestData("original_sample.yaml"), FakeEnv({}));
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_TRUE(r.diagnostics.empty()) << All(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_EQ(c.timeout, 180s);
  EXPECT_EQ(c.retry, 3u);
  EXPECT_EQ(c.mode, BalanceMode::kRandom);
  ASSERT_EQ(c.backends.size(), 3u);
  const BackendConfig& d = c.backends[0];
  EXPECT_EQ(d.name, "deepseek");
  EXPECT_EQ(d.url, "https://api.deepseek.com");
  EXPECT_EQ(d.api_key, "sk-your-deepseek-key");
  EXPECT_EQ(d.weight, 5u);
  EXPECT_EQ(d.default_model, "deepseek-chat");
  EXPECT_THAT(d.models, ElementsAre("deepseek-chat", "deepseek-reasoner"));
  EXPECT_EQ(c.backends[1].name, "poe");
  EXPECT_EQ(c.backends[1].url, "https://api.poe.com/v1");
  EXPECT_EQ(c.backends[1].weight, 3u);
  EXPECT_EQ(c.backends[1].default_model, "Claude-Sonnet-4");
  EXPECT_THAT(c.backends[1].models, ElementsAre("Claude-Sonnet-4", "GPT-4o"));
  EXPECT_EQ(c.backends[2].name, "volc");
  EXPECT_EQ(c.backends[2].url, "https://ark.cn-beijing.volces.com/api/v3");
  EXPECT_EQ(c.backends[2].weight, 2u);
  EXPECT_EQ(c.backends[2].default_model, "doubao-seed-1-6-250615");
  EXPECT_THAT(c.backends[2].models, ElementsAre("doubao-seed-1-6-250615", "deepseek-v3-250324"));
  // Fields the original did not have keep their defaults.
  EXPECT_TRUE(c.auth_keys.empty());
  EXPECT_TRUE(c.model_aliases.empty());
  EXPECT_EQ(c.unknown_model, UnknownModelPolicy::kFallback);
  EXPECT_FALSE(c.cross_model_fallback);
}

TEST(ConfigLoaderTest, MinimalFileTakesDefaults) {
  const LoadResult r = LoadConfigFile(TestData("minimal.yaml"), FakeEnv({}));
  ASSERT_TRUE(r.ok()) << All(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_EQ(c.server.host, "0.0.0.0");
  EXPECT_EQ(c.server.metrics_port, 9400);
  EXPECT_EQ(c.server.max_body_bytes, 10u * 1024 * 1024);
  EXPECT_EQ(c.control_plane.listen, "127.0.0.1:50051");
  EXPECT_EQ(c.control_plane.metrics_port, 9399);
  EXPECT_EQ(c.timeout, 180s);
  EXPECT_EQ(c.stream_idle_timeout, 60s);
  EXPECT_EQ(c.connect_timeout, 5s);
  EXPECT_EQ(c.retry, 3u);
  EXPECT_EQ(c.mode, BalanceMode::kRandom);
  EXPECT_EQ(c.health.failure_threshold, 5u);
  EXPECT_EQ(c.health.cooldown, 30s);
  EXPECT_EQ(c.health.max_cooldown, 300s);
  EXPECT_EQ(c.stream_usage, StreamUsage::kPassthrough);
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].weight, 1u);
  EXPECT_EQ(c.backends[0].default_model, "llama-3");  // the first model
  EXPECT_FALSE(c.backends[0].timeout.has_value());
  EXPECT_FALSE(c.backends[0].tls_insecure_skip_verify);
}

TEST(ConfigLoaderTest, FullExtendedSchema) {
  const LoadResult r = LoadConfigFile(TestData("full.yaml"), FakeEnv({
                                                                 {"LLMPROXY_ADMIN_TOKEN", "tok"},
                                                                 {"LLMPROXY_KEY_1", "ck1"},
                                                                 {"DEEPSEEK_API_KEY", "sk-d"},
                                                                 {"ZHIPU_API_KEY", "sk-z"},
                                                             }));
  ASSERT_TRUE(r.ok()) << All(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.server.port, 8081);
  EXPECT_EQ(c.server.host, "127.0.0.1");
  EXPECT_EQ(c.server.metrics_port, 9401);
  EXPECT_EQ(c.server.max_body_bytes, 2u * 1024 * 1024);
  EXPECT_EQ(c.control_plane.listen, "127.0.0.1:50052");
  EXPECT_EQ(c.control_plane.metrics_port, 9398);
  EXPECT_EQ(c.control_plane.admin_token, "tok");
  EXPECT_EQ(c.timeout, 120s);
  EXPECT_EQ(c.stream_idle_timeout, 45s);
  EXPECT_EQ(c.connect_timeout, 1500ms);
  EXPECT_EQ(c.retry, 2u);
  EXPECT_EQ(c.mode, BalanceMode::kLeastBusy);
  ASSERT_EQ(c.auth_keys.size(), 2u);  // kept as digests only
  EXPECT_EQ(c.auth_keys[0], (ClientKey{"key-1", Sha256Hex("ck1"), {}}));
  EXPECT_EQ(c.auth_keys[1], (ClientKey{"key-2", Sha256Hex("static-ck1-suffix"), {}}));
  EXPECT_EQ(c.first_token_timeout, 20s);
  EXPECT_DOUBLE_EQ(c.hedge_budget, 0.05);
  ASSERT_EQ(c.model_aliases.size(), 4u);
  EXPECT_EQ(c.model_aliases[0].name, "gpt-4o");
  EXPECT_THAT(c.model_aliases[0].models, ElementsAre("deepseek-chat", "glm-4.7"));
  EXPECT_EQ(c.model_aliases[0].hedge_after.kind, HedgeAfter::Kind::kOff);
  EXPECT_FALSE(c.model_aliases[0].first_token_timeout.has_value());
  EXPECT_EQ(c.model_aliases[1].name, "fast");
  EXPECT_THAT(c.model_aliases[1].models, ElementsAre("deepseek-chat"));
  const ModelAlias& claude = c.model_aliases[2];
  EXPECT_EQ(claude.name, "claude-sonnet-4-5");
  EXPECT_THAT(claude.models, ElementsAre("deepseek-chat", "glm-4.7"));
  EXPECT_EQ(claude.hedge_after, (HedgeAfter{HedgeAfter::Kind::kFixed, 2s}));
  EXPECT_EQ(claude.first_token_timeout, std::optional<Millis>(10s));
  EXPECT_FALSE(claude.stream_idle_timeout.has_value());
  const ModelAlias& reasoner = c.model_aliases[3];
  EXPECT_EQ(reasoner.hedge_after.kind, HedgeAfter::Kind::kAuto);
  EXPECT_EQ(reasoner.stream_idle_timeout, std::optional<Millis>(120s));
  EXPECT_EQ(c.health.failure_threshold, 3u);
  EXPECT_EQ(c.health.cooldown, 10s);
  EXPECT_EQ(c.health.max_cooldown, 120s);
  EXPECT_EQ(c.unknown_model, UnknownModelPolicy::kReject);
  EXPECT_TRUE(c.cross_model_fallback);
  EXPECT_EQ(c.stream_usage, StreamUsage::kRequest);
  ASSERT_EQ(c.backends.size(), 2u);
  const BackendConfig& d = c.backends[0];
  EXPECT_EQ(d.api_key, "sk-d");
  EXPECT_THAT(d.models, ElementsAre("deepseek-chat", "deepseek-reasoner"));
  EXPECT_EQ(d.context_windows, (std::map<std::string, uint64_t>{{"deepseek-reasoner", 65536}}));
  EXPECT_TRUE(d.prefill);
  EXPECT_EQ(d.first_token_timeout, std::optional<Millis>(30s));
  EXPECT_FALSE(d.stream_idle_timeout.has_value());
  EXPECT_EQ(d.api, BackendApi::kOpenAI);
  EXPECT_FALSE(d.native_responses);
  EXPECT_FALSE(d.reasoning_param.has_value());
  const BackendConfig& z = c.backends[1];
  EXPECT_FALSE(z.prefill);
  EXPECT_TRUE(z.native_responses);
  EXPECT_EQ(z.reasoning_param, std::optional<ReasoningParam>(ReasoningParam::kThinking));
  EXPECT_TRUE(z.context_windows.empty());
  EXPECT_EQ(z.stream_idle_timeout, std::optional<Millis>(90s));
  EXPECT_EQ(z.weight, 0u);
  EXPECT_EQ(z.default_model, "glm-4.7");
  EXPECT_EQ(z.headers,
            (std::map<std::string, std::string>{{"X-Extra", "sk-z"}, {"X-Team", "llm"}}));
  EXPECT_EQ(z.timeout, std::optional<Millis>(60s));
  EXPECT_TRUE(z.tls_insecure_skip_verify);
}

TEST(ConfigLoaderTest, IntegerDurationsAreSeconds) {
  const LoadResult r =
      Load(std::string("timeout: 180\nconnect_timeout: 2\n") + std::string(kOneBackend));
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->timeout, 180s);
  EXPECT_EQ(r.config->connect_timeout, 2s);
}

TEST(ConfigLoaderTest, ModeSpellings) {
  for (const auto& [text, mode] :
       std::vector<std::pair<std::string, BalanceMode>>{{"random", BalanceMode::kRandom},
                                                        {"round-robin", BalanceMode::kRoundRobin},
                                                        {"round_robin", BalanceMode::kRoundRobin},
                                                        {"roundrobin", BalanceMode::kRoundRobin},
                                                        {"least-busy", BalanceMode::kLeastBusy},
                                                        {"least_busy", BalanceMode::kLeastBusy}}) {
    const LoadResult r = Load("mode: " + text + "\n" + std::string(kOneBackend));
    ASSERT_TRUE(r.ok()) << text << "\n" << All(r);
    EXPECT_EQ(r.config->mode, mode) << text;
  }
}

TEST(ConfigLoaderTest, BackendWithOnlyDefaultModelServesIt) {
  const LoadResult r = Load(
      "backends:\n"
      "  - name: a\n"
      "    url: https://x.example\n"
      "    default_model: only\n");
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_THAT(r.config->backends[0].models, ElementsAre("only"));
  EXPECT_EQ(r.config->backends[0].default_model, "only");
}

TEST(ConfigLoaderTest, WeightZeroIsAllowed) {
  const LoadResult r = Load(
      "backends:\n"
      "  - {name: a, url: 'http://a', models: [m], weight: 0}\n"
      "  - {name: b, url: 'http://b', models: [m], weight: 1}\n");
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->backends[0].weight, 0u);
  EXPECT_TRUE(r.diagnostics.empty()) << All(r);
}

TEST(ConfigLoaderTest, NullValuesKeepDefaults) {
  const LoadResult r =
      Load(std::string("timeout:\nserver:\n") + std::string(kOneBackend) + "    api_key:\n");
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->timeout, 180s);
  EXPECT_EQ(r.config->backends[0].api_key, "");
}

// ---- env expansion ----

TEST(ConfigLoaderTest, EnvWholeValue) {
  const LoadResult r = Load(std::string(kOneBackend) + "    api_key: ${KEY}\n", {{"KEY", "sk-1"}});
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->backends[0].api_key, "sk-1");
}

TEST(ConfigLoaderTest, EnvInsideStringAndSeveralTimes) {
  const LoadResult r = Load(
      "backends:\n"
      "  - name: a\n"
      "    url: https://${HOST}:${PORT}/v1\n"
      "    models: [m]\n",
      {{"HOST", "api.example.com"}, {"PORT", "8443"}});
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->backends[0].url, "https://api.example.com:8443/v1");
}

TEST(ConfigLoaderTest, EnvInNumbersAndDurations) {
  const LoadResult r = Load("server:\n  port: ${PORT}\ntimeout: ${T}\n" + std::string(kOneBackend),
                            {{"PORT", "9090"}, {"T", "30s"}});
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->server.port, 9090);
  EXPECT_EQ(r.config->timeout, 30s);
}

TEST(ConfigLoaderTest, EnvMissingVariableIsErrorNamingItAndPosition) {
  const LoadResult r = Load(std::string(kOneBackend) + "    api_key: ${DEEPSEEK_API_KEY}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:5:14: backends[0].api_key: environment variable "
                          "'DEEPSEEK_API_KEY' is not set"));
}

TEST(ConfigLoaderTest, EnvEveryMissingVariableReported) {
  const LoadResult r = Load("auth:\n  keys: [${K1}, ${K2}]\n" + std::string(kOneBackend));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:2:10: auth.keys[0]: environment variable 'K1' is not set",
                          "c.yaml:2:17: auth.keys[1]: environment variable 'K2' is not set"));
}

TEST(ConfigLoaderTest, EnvUnterminatedReference) {
  const LoadResult r = Load(std::string(kOneBackend) + "    api_key: ${OOPS\n");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.FormattedErrors().size(), 1u);
  EXPECT_THAT(r.FormattedErrors()[0], HasSubstr("c.yaml:5:14: backends[0].api_key: unterminated"));
}

TEST(ConfigLoaderTest, DollarWithoutBraceIsLiteral) {
  const LoadResult r = Load(std::string(kOneBackend) + "    api_key: pa$$word$x\n");
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->backends[0].api_key, "pa$$word$x");
}

// ---- bad configs, each at its exact position ----

TEST(ConfigLoaderTest, UnknownTopLevelKeyWithSuggestion) {
  const LoadResult r = Load("backnds: []\n" + std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:1:1: unknown key 'backnds' (did you mean 'backends'?)"));
}

TEST(ConfigLoaderTest, UnknownBackendKeyWithSuggestion) {
  const LoadResult r = Load(std::string(kOneBackend) + "    wieght: 3\n");
  EXPECT_THAT(
      r.FormattedErrors(),
      ElementsAre("c.yaml:5:5: unknown key 'wieght' in backends[0] (did you mean 'weight'?)"));
}

TEST(ConfigLoaderTest, UnknownKeyWithoutCloseMatchHasNoSuggestion) {
  const LoadResult r = Load("server:\n  flux_capacitor: 1\n" + std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:2:3: unknown key 'flux_capacitor' in server"));
}

TEST(ConfigLoaderTest, DuplicateKey) {
  const LoadResult r = Load("retry: 1\nretry: 2\n" + std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(), ElementsAre("c.yaml:2:1: duplicate key 'retry'"));
}

TEST(ConfigLoaderTest, WrongTypes) {
  const LoadResult r = Load(
      "server: 8080\n"
      "retry: [1]\n"
      "cross_model_fallback: maybe\n"
      "backends:\n"
      "  - name: a\n"
      "    url: http://a\n"
      "    models: m1\n");
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:1:9: server: must be a mapping (key: value lines)",
                          "c.yaml:2:8: retry: must be an integer, not a list",
                          "c.yaml:3:23: cross_model_fallback: must be true or false, got 'maybe'",
                          "c.yaml:7:13: backends[0].models: must be a list (e.g. [a, b] or '- a' "
                          "lines)"));
}

TEST(ConfigLoaderTest, BadDurationAndSize) {
  const LoadResult r = Load(
      "server:\n"
      "  max_body_bytes: 10 parsecs\n"
      "timeout: 3 minutes\n"
      "health:\n"
      "  cooldown: 5x\n" +
      std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:2:19: server.max_body_bytes: invalid size '10 parsecs' (use "
                          "e.g. 10MiB, 512KiB, 1MB, 1048576)",
                          "c.yaml:3:10: timeout: invalid duration '3 minutes' (use e.g. 180s, "
                          "500ms, 1m30s, 2h)",
                          "c.yaml:5:13: health.cooldown: invalid duration '5x' (use e.g. 180s, "
                          "500ms, 1m30s, 2h)"));
}

TEST(ConfigLoaderTest, HealthProbeIntervalDefaultReadAndOff) {
  const LoadResult unset = Load(kOneBackend);
  ASSERT_TRUE(unset.ok()) << All(unset);
  EXPECT_EQ(unset.config->health.probe_interval, 5s);

  const LoadResult set = Load("health:\n  probe_interval: 200ms\n" + std::string(kOneBackend));
  ASSERT_TRUE(set.ok()) << All(set);
  EXPECT_EQ(set.config->health.probe_interval, 200ms);

  // 0 is valid: passive health only, as before probing existed.
  const LoadResult off = Load("health:\n  probe_interval: 0\n" + std::string(kOneBackend));
  ASSERT_TRUE(off.ok()) << All(off);
  EXPECT_EQ(off.config->health.probe_interval, 0ms);

  const LoadResult bad = Load("health:\n  probe_interval: often\n" + std::string(kOneBackend));
  EXPECT_THAT(bad.FormattedErrors(),
              ElementsAre("c.yaml:2:19: health.probe_interval: invalid duration 'often' (use "
                          "e.g. 180s, 500ms, 1m30s, 2h)"));
}

TEST(ConfigLoaderTest, ResilienceSettingsDefaults) {
  const LoadResult r = Load(kOneBackend);
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->first_token_timeout, 0ms);  // off
  EXPECT_DOUBLE_EQ(r.config->hedge_budget, 0.10);
  EXPECT_FALSE(r.config->backends[0].prefill);
  EXPECT_FALSE(r.config->backends[0].first_token_timeout.has_value());
}

TEST(ConfigLoaderTest, HedgeBudgetSpellings) {
  for (const auto& [text, value] : std::vector<std::pair<std::string, double>>{
           {"10%", 0.10}, {"0.25", 0.25}, {"0", 0.0}, {"100%", 1.0}, {"1", 1.0}}) {
    const LoadResult r = Load("hedge_budget: " + text + "\n" + std::string(kOneBackend));
    ASSERT_TRUE(r.ok()) << text << ": " << All(r);
    EXPECT_DOUBLE_EQ(r.config->hedge_budget, value) << text;
  }
  for (const std::string text : {"150%", "-0.1", "lots", "1.5", "10 %"}) {
    const LoadResult r = Load("hedge_budget: " + text + "\n" + std::string(kOneBackend));
    EXPECT_THAT(r.FormattedErrors(),
                ElementsAre("c.yaml:1:15: hedge_budget: must be a share from 0% to 100% (e.g. 10% "
                            "or 0.1), got '" +
                            text + "'"));
  }
}

TEST(ConfigLoaderTest, AliasObjectFormErrors) {
  const LoadResult r = Load(
      "model_aliases:\n"
      "  a: {models: [m1], hedge_after: soon}\n"
      "  b: {hedge_after: 1s}\n"
      "  c: {models: [m1], first_token: 1s}\n" +
      std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:2:34: model_aliases.a.hedge_after: invalid duration 'soon' (use "
                          "e.g. 180s, 500ms, 1m30s, 2h)",
                          "c.yaml:3:6: model_aliases.b: alias 'b' lists no models",
                          "c.yaml:4:21: unknown key 'first_token' in model_aliases.c"));
}

TEST(ConfigLoaderTest, HedgeAfterOffAndZero) {
  const LoadResult r = Load(
      "model_aliases:\n"
      "  a: {models: [m1], hedge_after: off}\n"
      "  b: {models: [m1], hedge_after: 0s}\n"
      "  c: {models: [m1], hedge_after: 250ms}\n" +
      std::string(kOneBackend));
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->model_aliases[0].hedge_after.kind, HedgeAfter::Kind::kOff);
  EXPECT_EQ(r.config->model_aliases[1].hedge_after.kind, HedgeAfter::Kind::kOff);
  EXPECT_EQ(r.config->model_aliases[2].hedge_after, (HedgeAfter{HedgeAfter::Kind::kFixed, 250ms}));
}

TEST(ConfigLoaderTest, ModelObjectEntries) {
  const LoadResult r = Load(
      "backends:\n"
      "  - name: a\n"
      "    url: http://a\n"
      "    models: [m1, {name: m2, context_window: 128000}, {name: m3}]\n");
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_THAT(r.config->backends[0].models, ElementsAre("m1", "m2", "m3"));
  EXPECT_EQ(r.config->backends[0].context_windows,
            (std::map<std::string, uint64_t>{{"m2", 128000}}));
  EXPECT_EQ(r.config->backends[0].default_model, "m1");

  const LoadResult bad = Load(
      "backends:\n"
      "  - name: a\n"
      "    url: http://a\n"
      "    models: [{context_window: 5}, {name: m2, context_window: big}, {name: m3, ctx: 1}]\n");
  EXPECT_THAT(bad.FormattedErrors(),
              ElementsAre("c.yaml:4:14: backends[0].models[0]: a model entry needs a name",
                          "c.yaml:4:62: backends[0].models[1].context_window: must be an integer "
                          "between 1 and 1099511627776, got 'big'",
                          "c.yaml:4:79: unknown key 'ctx' in backends[0].models[2]"));
}

TEST(ConfigLoaderTest, AliasListingItsOwnNameIsNotWarned) {
  const LoadResult r = Load(
      "model_aliases:\n"
      "  m1: {models: [m1], hedge_after: 1s}\n" +
      std::string(kOneBackend));
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_TRUE(r.diagnostics.empty()) << All(r);
}

TEST(ConfigLoaderTest, BadModeWithSuggestion) {
  const LoadResult r = Load("mode: round-robn\n" + std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:1:7: mode: must be random, round-robin or least-busy, got "
                          "'round-robn' (did you mean 'round-robin'?)"));
}

TEST(ConfigLoaderTest, BadEnumsUnknownModelAndStreamUsage) {
  const LoadResult r =
      Load("unknown_model: drop\nstream_usage: always\n" + std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:1:16: unknown_model: must be fallback or reject, got 'drop'",
                          "c.yaml:2:15: stream_usage: must be passthrough or request, got "
                          "'always'"));
}

TEST(ConfigLoaderTest, BackendProtocols) {
  const LoadResult r = Load(
      "backends:\n"
      "  - {name: a, url: 'https://api.anthropic.com/v1', models: [claude-sonnet-4-5], "
      "api: anthropic}\n"
      "  - {name: o, url: 'https://api.openai.com/v1', models: [gpt-5], native_responses: true}\n"
      "  - {name: d, url: 'https://api.deepseek.com', models: [deepseek-chat], "
      "reasoning_param: none}\n");
  ASSERT_TRUE(r.ok()) << All(r);
  const auto& b = r.config->backends;
  EXPECT_EQ(b[0].api, BackendApi::kAnthropic);
  EXPECT_FALSE(b[0].native_responses);
  EXPECT_EQ(b[1].api, BackendApi::kOpenAI);
  EXPECT_TRUE(b[1].native_responses);
  EXPECT_EQ(b[2].reasoning_param, std::optional<ReasoningParam>(ReasoningParam::kNone));
}

TEST(ConfigLoaderTest, BackendProtocolErrors) {
  const LoadResult r = Load(
      "backends:\n"
      "  - {name: a, url: 'http://a', models: [m], api: claude}\n"
      "  - {name: b, url: 'http://b', models: [m], api: anthropic, native_responses: true}\n"
      "  - {name: c, url: 'http://c', models: [m], reasoning_param: effort}\n");
  EXPECT_THAT(
      r.FormattedErrors(),
      ElementsAre("c.yaml:2:50: backends[0].api: must be openai or anthropic, got 'claude'",
                  "c.yaml:3:79: backends[1].native_responses: only an api: openai backend can "
                  "serve /responses itself",
                  "c.yaml:4:62: backends[2].reasoning_param: must be none, reasoning_effort or "
                  "thinking, got 'effort'"));
}

TEST(ConfigLoaderTest, NegativeWeight) {
  const LoadResult r = Load(std::string(kOneBackend) + "    weight: -2\n");
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:5:13: backends[0].weight: must not be negative, got '-2'"));
}

TEST(ConfigLoaderTest, MissingUrl) {
  const LoadResult r = Load(
      "backends:\n"
      "  - name: a\n"
      "    models: [m]\n");
  EXPECT_THAT(r.FormattedErrors(), ElementsAre("c.yaml:2:5: backends[0].url: url is required"));
}

TEST(ConfigLoaderTest, NonHttpUrlNeverEchoed) {
  const LoadResult r = Load(
      "backends:\n"
      "  - name: a\n"
      "    url: ftp://user:secret@host\n"
      "    models: [m]\n");
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:3:10: backends[0].url: url must start with http:// or https://"));
  EXPECT_THAT(All(r), Not(HasSubstr("secret")));
}

TEST(ConfigLoaderTest, DuplicateBackendNames) {
  const LoadResult r = Load(
      "backends:\n"
      "  - {name: a, url: 'http://a', models: [m]}\n"
      "  - name: a\n"
      "    url: http://b\n"
      "    models: [m]\n");
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:3:11: backends[1].name: duplicate backend name 'a'"));
}

TEST(ConfigLoaderTest, NoBackends) {
  EXPECT_THAT(Load("backends: []\n").FormattedErrors(),
              ElementsAre("c.yaml:1:11: backends: no backends configured (at least one is "
                          "required)"));
  EXPECT_THAT(Load("retry: 1\n").FormattedErrors(),
              ElementsAre("c.yaml:1:1: backends: no backends configured (at least one is "
                          "required)"));
}

TEST(ConfigLoaderTest, EmptyFileIsAnError) {
  const LoadResult r = Load("");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.FormattedErrors(), ElementsAre(HasSubstr("backends: no backends configured")));
}

TEST(ConfigLoaderTest, DocumentThatIsNotAMapping) {
  EXPECT_THAT(Load("- just\n- a list\n").FormattedErrors(),
              ElementsAre("c.yaml:1:1: the config must be a mapping of key: value lines"));
}

TEST(ConfigLoaderTest, BackendEntryThatIsNotAMapping) {
  EXPECT_THAT(Load("backends:\n  - deepseek\n").FormattedErrors(),
              ElementsAre("c.yaml:2:5: backends[0]: must be a mapping (key: value lines)"));
}

TEST(ConfigLoaderTest, EnvReferencesInsideFlowLists) {
  // docs/config.md writes `keys: [${LLMPROXY_KEY_1}]`; plain YAML forbids braces there.
  const LoadResult r = Load("auth:\n  keys: [${K1}, x${K2}y]\n" + std::string(kOneBackend),
                            {{"K1", "one"}, {"K2", "two"}});
  ASSERT_TRUE(r.ok()) << All(r);
  ASSERT_EQ(r.config->auth_keys.size(), 2u);
  EXPECT_EQ(r.config->auth_keys[0].sha256, Sha256Hex("one"));
  EXPECT_EQ(r.config->auth_keys[1].sha256, Sha256Hex("xtwoy"));
}

TEST(ConfigLoaderTest, BackendWithoutModelsOrDefault) {
  const LoadResult r = Load(
      "backends:\n"
      "  - name: a\n"
      "    url: http://a\n");
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:2:5: backends[0].models: backend 'a' has no models and no "
                          "default_model"));
}

TEST(ConfigLoaderTest, PortOutOfRange) {
  EXPECT_THAT(Load("server:\n  port: 70000\n" + std::string(kOneBackend)).FormattedErrors(),
              ElementsAre("c.yaml:2:9: server.port: must be an integer between 1 and 65535, got "
                          "'70000'"));
  EXPECT_THAT(Load("server:\n  port: 0\n" + std::string(kOneBackend)).FormattedErrors(),
              ElementsAre("c.yaml:2:9: server.port: must be an integer between 1 and 65535, got "
                          "'0'"));
  EXPECT_THAT(
      Load("control_plane:\n  listen: localhost\n" + std::string(kOneBackend)).FormattedErrors(),
      ElementsAre("c.yaml:2:11: control_plane.listen: must be HOST:PORT (e.g. "
                  "127.0.0.1:50051), got 'localhost'"));
}

TEST(ConfigLoaderTest, AliasToUnservedModel) {
  const LoadResult r = Load(
      "model_aliases:\n"
      "  gpt-4o: [m1, nope]\n" +
      std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:2:16: model_aliases.gpt-4o[1]: alias 'gpt-4o' points to "
                          "model 'nope' that no backend serves"));
}

TEST(ConfigLoaderTest, AliasCollidingWithServedModelWarns) {
  const LoadResult r = Load("model_aliases:\n  m1: [m2]\n" + std::string(kOneBackend));
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_THAT(Warnings(r), ElementsAre("c.yaml:2:3: warning: model_aliases.m1: alias 'm1' has "
                                       "the name of a model that backends serve (the alias is "
                                       "used)"));
}

TEST(ConfigLoaderTest, AliasWithoutModels) {
  const LoadResult r = Load("model_aliases:\n  x:\n" + std::string(kOneBackend));
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre("c.yaml:2:3: model_aliases.x: alias 'x' lists no models"));
}

TEST(ConfigLoaderTest, DefaultModelNotAmongModelsWarnsButIsUsed) {
  const LoadResult r = Load(std::string(kOneBackend) + "    default_model: other\n");
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(r.config->backends[0].default_model, "other");
  EXPECT_THAT(Warnings(r),
              ElementsAre("c.yaml:5:20: warning: backends[0].default_model: default_model "
                          "'other' is not among the models of backend 'a' (it is still used as "
                          "the default)"));
}

TEST(ConfigLoaderTest, InvalidYamlSyntax) {
  const LoadResult r = Load("backends: [\n  - name: a\n");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.FormattedErrors().size(), 1u);
  EXPECT_THAT(r.FormattedErrors()[0], ::testing::StartsWith("c.yaml:"));
  EXPECT_THAT(r.FormattedErrors()[0], HasSubstr("invalid YAML"));
}

TEST(ConfigLoaderTest, ManyErrorsReportedAtOnceInFileOrder) {
  const LoadResult r = LoadConfigFile(TestData("many_errors.yaml"), FakeEnv({}));
  ASSERT_FALSE(r.ok());
  const std::string f = TestData("many_errors.yaml");
  EXPECT_THAT(
      r.FormattedErrors(),
      ElementsAre(f + ":2:9: server.port: must be an integer between 1 and 65535, got '70000'",
                  f + ":3:1: unknown key 'backnds' (did you mean 'backends'?)",
                  f + ":4:10: timeout: invalid duration 'soon' (use e.g. 180s, 500ms, 1m30s, 2h)",
                  f + ":5:7: mode: must be random, round-robin or least-busy, got 'fastest'",
                  f + ":8:10: backends[0].url: url must start with http:// or https://",
                  f + ":9:13: backends[0].weight: must not be negative, got '-1'",
                  f + ":11:11: backends[1].name: duplicate backend name 'a'",
                  f + ":14:5: backends[2].url: url is required"));
}

TEST(ConfigLoaderTest, MissingFile) {
  const LoadResult r = LoadConfigFile("/nonexistent/dir/config.yaml", FakeEnv({}));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.FormattedErrors(),
              ElementsAre(HasSubstr("/nonexistent/dir/config.yaml: cannot read file:")));
}

TEST(ConfigLoaderTest, ErrorsNeverContainKeyValues) {
  const LoadResult r = Load(
      "control_plane:\n"
      "  admin_token: [tok-SECRET1]\n"
      "auth:\n"
      "  keys: [\"ck-SECRET2\\nx\"]\n"
      "backends:\n"
      "  - name: a\n"
      "    url: http://a\n"
      "    models: [m]\n"
      "    api_key: \"sk-SECRET3\\r\\n\"\n"
      "    headers: {X-K: \"SECRET4\\n\"}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.FormattedErrors().size(), 4u) << All(r);
  EXPECT_THAT(All(r), Not(HasSubstr("SECRET")));
}

// ---- ValidateConfig and Summarize ----

TEST(ConfigLoaderTest, ValidateConfigWithoutPositions) {
  auto backend = [](std::string name, std::string url) {
    BackendConfig b;
    b.name = std::move(name);
    b.url = std::move(url);
    b.models = {"m"};
    return b;
  };
  Config c;
  c.backends.push_back(backend("a", "http://a"));
  c.backends.push_back(backend("a", "gopher://b"));
  c.model_aliases.push_back({"x", {"zzz"}});
  EXPECT_THAT(ValidateConfig(c),
              ElementsAre("backends[1].name: duplicate backend name 'a'",
                          "backends[1].url: url must start with http:// or https://",
                          "model_aliases.x[0]: alias 'x' points to model 'zzz' that no backend "
                          "serves"));
  c.backends.pop_back();
  c.model_aliases.clear();
  EXPECT_TRUE(ValidateConfig(c).empty());
  EXPECT_THAT(ValidateConfig(Config{}), ElementsAre(HasSubstr("no backends")));
}

TEST(ConfigLoaderTest, SummarizeOriginalSample) {
  const LoadResult r = LoadConfigFile(TestData("original_sample.yaml"), FakeEnv({}));
  ASSERT_TRUE(r.ok()) << All(r);
  EXPECT_EQ(Summarize(*r.config),
            "config ok: 3 backends (deepseek, poe, volc), 6 models, mode random, retry 3, "
            "timeout 180s, port 8080");
}

TEST(ConfigLoaderTest, SummarizeNeverContainsAKey) {
  const LoadResult r = LoadConfigFile(TestData("full.yaml"), FakeEnv({
                                                                 {"LLMPROXY_ADMIN_TOKEN", "TOK9"},
                                                                 {"LLMPROXY_KEY_1", "CK9"},
                                                                 {"DEEPSEEK_API_KEY", "SKD9"},
                                                                 {"ZHIPU_API_KEY", "SKZ9"},
                                                             }));
  ASSERT_TRUE(r.ok()) << All(r);
  const std::string s = Summarize(*r.config);
  EXPECT_EQ(s,
            "config ok: 2 backends (deepseek, zhipu), 3 models, mode least-busy, retry 2, "
            "timeout 120s, port 8081, 4 aliases, auth on (2 keys)");
  for (const char* secret : {"TOK9", "CK9", "SKD9", "SKZ9"}) EXPECT_THAT(s, Not(HasSubstr(secret)));
}

}  // namespace
}  // namespace llmproxy
