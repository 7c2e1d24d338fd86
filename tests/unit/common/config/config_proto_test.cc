// Config <-> RoutingTable: what the control plane pushes must mean on the worker exactly
// what config.yaml meant, invalid tables are refused, and the shown copy has no secrets.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/config/config_loader.h"
#include "common/config/config_proto.h"

namespace llmproxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr uint64_t kMaxKeyRateForTest = 1'000'000'000'000;

Config FullConfig() {
  const EnvLookup env = [](std::string_view name) -> std::optional<std::string> {
    return "secret-" + std::string(name);
  };
  LoadResult r =
      LoadConfigFile(std::string(LLMPROXY_SOURCE_DIR) + "/tests/testdata/full.yaml", env);
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r.config : Config{};
}

TEST(ConfigProtoTest, RoundTripOfFullConfigIsExact) {
  Config c = FullConfig();
  ASSERT_FALSE(c.backends.empty());
  c.backends[0].drained = true;
  c.backends[0].timeout = Millis(2500);
  c.control_plane = ControlPlaneConfig{};  // not carried by the table
  const FromProtoResult back = FromProto(ToProto(c));
  ASSERT_TRUE(back.config.has_value()) << back.error;
  EXPECT_EQ(*back.config, c);
}

TEST(ConfigProtoTest, RoundTripOfOriginalSample) {
  LoadResult r =
      LoadConfigFile(std::string(LLMPROXY_SOURCE_DIR) + "/tests/testdata/original_sample.yaml",
                     [](std::string_view) { return std::nullopt; });
  ASSERT_TRUE(r.ok());
  const FromProtoResult back = FromProto(ToProto(*r.config));
  ASSERT_TRUE(back.config.has_value()) << back.error;
  EXPECT_EQ(*back.config, *r.config);
}

TEST(ConfigProtoTest, KeyLimitsPricesAndLimitsRoundTrip) {
  LoadResult r = LoadConfigString(
      "auth:\n  keys:\n"
      "    - {name: a, key: s, rpm: 600, tpm: 90000, max_parallel: 3,"
      " budget: {usd: 12.5, period: 30d}}\n"
      "    - {name: b, key: t, models: [m2], budget: {tokens: 2000000, period: 36h}}\n"
      "    - plain\n"
      "prices:\n  m2: {prompt: 3, completion: 15, cached_prompt: 0.3}\n"
      "  m1: {prompt: 0.27, completion: 1.1}\n"
      "limits: {on_control_plane_loss: deny, default_max_tokens: 512}\n"
      "backends:\n  - {name: x, url: 'http://x', models: [m1, m2]}\n",
      "c.yaml", [](std::string_view) { return std::nullopt; });
  ASSERT_TRUE(r.ok()) << testing::PrintToString(r.FormattedErrors());
  const v1::RoutingTable t = ToProto(*r.config);
  ASSERT_EQ(t.client_keys_size(), 3);
  EXPECT_EQ(t.client_keys(0).rpm(), 600u);
  EXPECT_EQ(t.client_keys(0).tpm(), 90000u);
  EXPECT_EQ(t.client_keys(0).max_parallel(), 3u);
  EXPECT_DOUBLE_EQ(t.client_keys(0).budget().usd(), 12.5);
  EXPECT_EQ(t.client_keys(0).budget().period().seconds(), 30 * 86400);
  EXPECT_EQ(t.client_keys(1).budget().tokens(), 2'000'000u);
  EXPECT_EQ(t.client_keys(1).budget().period().seconds(), 36 * 3600);
  EXPECT_FALSE(t.client_keys(2).has_budget());
  EXPECT_EQ(t.client_keys(2).rpm(), 0u);
  // Prices by model name, whatever the file's order: equal configs give equal tables.
  ASSERT_EQ(t.prices_size(), 2);
  EXPECT_EQ(t.prices(0).model(), "m1");
  EXPECT_FALSE(t.prices(0).has_cached_prompt());
  EXPECT_EQ(t.prices(1).model(), "m2");
  EXPECT_DOUBLE_EQ(t.prices(1).cached_prompt(), 0.3);
  EXPECT_EQ(t.limits().on_control_plane_loss(), v1::CONTROL_PLANE_LOSS_DENY);
  EXPECT_EQ(t.limits().default_max_tokens(), 512u);

  Config c = *r.config;
  c.control_plane = ControlPlaneConfig{};
  const FromProtoResult back = FromProto(t);
  ASSERT_TRUE(back.config.has_value()) << back.error;
  EXPECT_EQ(*back.config, c);
  EXPECT_EQ(back.config->auth_keys[0].budget,
            (KeyBudget{KeyBudget::Unit::kUsd, 12.5, Millis(30LL * 86'400'000)}));
  EXPECT_EQ(back.config->prices.at("m2"), (ModelPrice{3, 15, 0.3}));
  EXPECT_EQ(back.config->limits, (LimitsConfig{ControlPlaneLoss::kDeny, 512}));
}

TEST(ConfigProtoTest, TableWithoutLimitsGetsTheDefaultsAndBadLimitsAreRefused) {
  Config c = FullConfig();
  c.control_plane = ControlPlaneConfig{};
  v1::RoutingTable old = ToProto(c);
  old.clear_limits();  // a control plane that predates them
  old.clear_prices();
  FromProtoResult r = FromProto(old);
  ASSERT_TRUE(r.config.has_value()) << r.error;
  EXPECT_EQ(r.config->limits, LimitsConfig{});
  EXPECT_TRUE(r.config->prices.empty());
  old.mutable_limits()->set_default_max_tokens(0);  // 0: the default
  r = FromProto(old);
  ASSERT_TRUE(r.config.has_value()) << r.error;
  EXPECT_EQ(r.config->limits.default_max_tokens, 4096u);

  v1::RoutingTable bad = ToProto(c);
  v1::ClientKey* k = bad.mutable_client_keys(0);
  k->set_rpm(kMaxKeyRateForTest + 1);
  k->mutable_budget()->mutable_period()->set_seconds(3600);  // no usd, no tokens
  bad.mutable_client_keys(1)->mutable_budget()->set_usd(-1);
  for (int i = 0; i < 2; ++i) {
    v1::ModelPrice* p = bad.add_prices();
    p->set_model("deepseek-chat");
    p->set_prompt(1);
  }
  r = FromProto(bad);
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(r.error, HasSubstr("auth.keys[0].budget: needs usd or tokens"));
  EXPECT_THAT(r.error, HasSubstr("prices: duplicate model 'deepseek-chat'"));
  EXPECT_THAT(r.error, HasSubstr("auth.keys[0].rpm: must be at most 1000000000000"));
  EXPECT_THAT(r.error,
              HasSubstr("auth.keys[1].budget.usd: must be more than 0 and at most 1000000000"));
  EXPECT_THAT(r.error,
              HasSubstr("auth.keys[1].budget.period: must be longer than 0 and at most 366d"));
}

TEST(ConfigProtoTest, DurationsUseProtobufDuration) {
  Config c = FullConfig();
  const v1::RoutingTable t = ToProto(c);
  EXPECT_EQ(t.timeout().seconds(), 120);
  EXPECT_EQ(t.connect_timeout().seconds(), 1);
  EXPECT_EQ(t.connect_timeout().nanos(), 500'000'000);
  EXPECT_EQ(t.mode(), v1::BALANCE_MODE_LEAST_BUSY);
  EXPECT_EQ(t.unknown_model(), v1::UNKNOWN_MODEL_POLICY_REJECT);
  EXPECT_EQ(t.stream_usage(), v1::STREAM_USAGE_REQUEST);
  EXPECT_FALSE(t.backends(0).has_timeout());
  EXPECT_EQ(t.backends(1).timeout().seconds(), 60);
}

TEST(ConfigProtoTest, MinimalTableGetsDefaults) {
  v1::RoutingTable t;
  v1::Backend* b = t.add_backends();
  b->set_name("a");
  b->set_url("http://a");
  b->set_weight(1);
  b->add_models("m");
  t.set_retry(3);
  const FromProtoResult r = FromProto(t);
  ASSERT_TRUE(r.config.has_value()) << r.error;
  EXPECT_EQ(r.config->timeout, 180s);
  EXPECT_EQ(r.config->server.port, 8080);
  EXPECT_EQ(r.config->mode, BalanceMode::kRandom);
  EXPECT_EQ(r.config->health.failure_threshold, 5u);
  EXPECT_EQ(r.config->backends[0].default_model, "m");
}

TEST(ConfigProtoTest, ProbeIntervalRoundTripsZeroAndAbsentMeansDefault) {
  Config c = FullConfig();
  c.control_plane = ControlPlaneConfig{};
  for (Millis interval : {Millis(200), Millis(0), Millis(5000)}) {
    c.health.probe_interval = interval;
    const v1::RoutingTable t = ToProto(c);
    ASSERT_TRUE(t.health().has_probe_interval());
    EXPECT_EQ(t.health().probe_interval().seconds() * 1000 +
                  t.health().probe_interval().nanos() / 1'000'000,
              interval.count());
    const FromProtoResult back = FromProto(t);
    ASSERT_TRUE(back.config.has_value()) << back.error;
    EXPECT_EQ(back.config->health.probe_interval, interval);
    EXPECT_EQ(*back.config, c);
  }
  // A table from a control plane that predates the field: the default, not "off".
  v1::RoutingTable old = ToProto(c);
  old.mutable_health()->clear_probe_interval();
  const FromProtoResult r = FromProto(old);
  ASSERT_TRUE(r.config.has_value()) << r.error;
  EXPECT_EQ(r.config->health.probe_interval, 5s);

  v1::RoutingTable negative = ToProto(c);
  negative.mutable_health()->mutable_probe_interval()->set_seconds(-1);
  const FromProtoResult refused = FromProto(negative);
  EXPECT_FALSE(refused.config.has_value());
  EXPECT_THAT(refused.error, HasSubstr("health.probe_interval: must not be negative"));
}

TEST(ConfigProtoTest, InvalidTableIsRefusedWithEveryReason) {
  v1::RoutingTable t = ToProto(FullConfig());
  t.mutable_backends(1)->set_name("deepseek");
  t.mutable_backends(0)->set_url("file:///etc/passwd");
  t.mutable_server()->set_port(70000);
  const FromProtoResult r = FromProto(t);
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(r.error, HasSubstr("server.port: must be between 1 and 65535"));
  EXPECT_THAT(r.error, HasSubstr("backends[1].name: duplicate backend name 'deepseek'"));
  EXPECT_THAT(r.error, HasSubstr("backends[0].url: url must start with http:// or https://"));
  EXPECT_THAT(r.error, Not(HasSubstr("passwd")));
}

TEST(ConfigProtoTest, EmptyTableIsRefused) {
  const FromProtoResult r = FromProto(v1::RoutingTable{});
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(r.error, HasSubstr("no backends"));
}

TEST(ConfigProtoTest, RedactedHidesEverySecret) {
  const v1::RoutingTable t = Redacted(ToProto(FullConfig()));
  const std::string text = t.DebugString();
  EXPECT_THAT(text, Not(HasSubstr("secret-")));
  EXPECT_EQ(t.backends(0).api_key(), "<redacted>");
  EXPECT_EQ(t.backends(1).headers().at("X-Extra"), "<redacted>");
  EXPECT_EQ(t.backends(1).headers().at("X-Team"), "<redacted>");
  ASSERT_EQ(t.client_keys_size(), 2);
  EXPECT_EQ(t.client_keys(0).sha256(), "<redacted>");
  EXPECT_EQ(t.client_keys(0).name(), "key-1");  // names are labels, not secrets
  // Everything else is still there to look at.
  EXPECT_EQ(t.backends(0).url(), "https://api.deepseek.com");
  EXPECT_EQ(t.backends(1).models(0), "glm-4.7");
}

TEST(ConfigProtoTest, RedactedKeepsEmptyKeyEmpty) {
  Config c = FullConfig();
  c.backends[0].api_key.clear();
  EXPECT_EQ(Redacted(ToProto(c)).backends(0).api_key(), "");
}

}  // namespace
}  // namespace llmproxy
