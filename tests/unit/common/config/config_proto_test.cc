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
