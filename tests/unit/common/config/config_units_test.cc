// Durations, byte sizes, ${NAME} expansion and did-you-mean: the small parsers behind
// config values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/config/config_loader.h"
#include "common/config/did_you_mean.h"
#include "common/config/env_expander.h"

namespace llmproxy {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

TEST(ConfigUnitsTest, ParsesGoStyleDurations) {
  EXPECT_EQ(ParseDuration("180s"), Millis(180s));
  EXPECT_EQ(ParseDuration("500ms"), Millis(500));
  EXPECT_EQ(ParseDuration("1m30s"), Millis(90s));
  EXPECT_EQ(ParseDuration("2h"), Millis(2h));
  EXPECT_EQ(ParseDuration("1h2m3s4ms"), Millis(3'723'004));
  EXPECT_EQ(ParseDuration("1.5s"), Millis(1500));
  EXPECT_EQ(ParseDuration("0.25m"), Millis(15s));
  EXPECT_EQ(ParseDuration("0"), Millis(0));
  EXPECT_EQ(ParseDuration("0s"), Millis(0));
}

TEST(ConfigUnitsTest, ParsesDaysForBudgetPeriods) {
  EXPECT_EQ(ParseDuration("1d"), Millis(24h));
  EXPECT_EQ(ParseDuration("30d"), Millis(720h));
  EXPECT_EQ(ParseDuration("366d"), Millis(366 * 24h));
  EXPECT_EQ(ParseDuration("1d12h"), Millis(36h));
  EXPECT_EQ(ParseDuration("1.5d"), Millis(36h));
  EXPECT_EQ(ParseDuration("3650d"), Millis(3650 * 24h));
  EXPECT_EQ(ParseDuration("3651d"), std::nullopt);  // past the ten-year bound
  for (const char* bad : {"1D", "5days", "d", "1dd"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
  }
}

TEST(ConfigUnitsTest, RejectsMalformedDurations) {
  for (const char* bad :
       {"", "180", "s", "10 s", "-5s", "5x", "1.s", ".s", "5sec", "1w", "99999999999h", "1m 30s"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
  }
}

TEST(ConfigUnitsTest, FormatDurationRoundTrips) {
  EXPECT_EQ(FormatDuration(180s), "180s");
  EXPECT_EQ(FormatDuration(Millis(500)), "500ms");
  EXPECT_EQ(FormatDuration(Millis(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(Millis(0)), "0s");
  for (Millis d : {Millis(1), Millis(999), Millis(1000), Millis(90'500), Millis(7'200'000)}) {
    EXPECT_EQ(ParseDuration(FormatDuration(d)), d) << d.count();
  }
}

TEST(ConfigUnitsTest, ParsesByteSizes) {
  EXPECT_EQ(ParseByteSize("1048576"), 1048576u);
  EXPECT_EQ(ParseByteSize("10MiB"), 10u * 1024 * 1024);
  EXPECT_EQ(ParseByteSize("512KiB"), 512u * 1024);
  EXPECT_EQ(ParseByteSize("1GiB"), 1024u * 1024 * 1024);
  EXPECT_EQ(ParseByteSize("1MB"), 1'000'000u);
  EXPECT_EQ(ParseByteSize("2KB"), 2000u);
  EXPECT_EQ(ParseByteSize("3 MiB"), 3u * 1024 * 1024);
  EXPECT_EQ(ParseByteSize("100B"), 100u);
}

TEST(ConfigUnitsTest, RejectsMalformedSizes) {
  for (const char* bad : {"", "MiB", "-1", "10 parsecs", "1.5MiB", "10mb", "99999999999999GiB"}) {
    EXPECT_EQ(ParseByteSize(bad), std::nullopt) << bad;
  }
}

EnvLookup Env() {
  return [](std::string_view name) -> std::optional<std::string> {
    if (name == "A") return "alpha";
    if (name == "EMPTY") return "";
    return std::nullopt;
  };
}

TEST(EnvExpanderTest, WholeInsideAndRepeated) {
  EXPECT_EQ(ExpandEnv("${A}", Env()).value, "alpha");
  EXPECT_EQ(ExpandEnv("x-${A}-${A}.", Env()).value, "x-alpha-alpha.");
  EXPECT_EQ(ExpandEnv("[${EMPTY}]", Env()).value, "[]");
  EXPECT_TRUE(ExpandEnv("${A}", Env()).expanded);
  EXPECT_FALSE(ExpandEnv("plain $A {A}", Env()).expanded);
  EXPECT_EQ(ExpandEnv("plain $A {A}", Env()).value, "plain $A {A}");
}

TEST(EnvExpanderTest, ErrorsNameTheVariableOnly) {
  const ExpandResult r = ExpandEnv("sk-secret-${NOPE}-${A}-${ALSO_NOPE}", Env());
  EXPECT_THAT(r.errors, ElementsAre("environment variable 'NOPE' is not set",
                                    "environment variable 'ALSO_NOPE' is not set"));
  EXPECT_FALSE(ExpandEnv("${1BAD}", Env()).ok());
  EXPECT_FALSE(ExpandEnv("${}", Env()).ok());
  EXPECT_FALSE(ExpandEnv("abc ${A", Env()).ok());
}

TEST(DidYouMeanTest, EditDistance) {
  EXPECT_EQ(EditDistance("backends", "backends"), 0u);
  EXPECT_EQ(EditDistance("backnds", "backends"), 1u);
  EXPECT_EQ(EditDistance("wieght", "weight"), 1u);  // transposition counts once
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
}

TEST(DidYouMeanTest, ClosestMatchOnlyWhenPlausible) {
  const std::vector<std::string_view> keys = {"name", "url", "api_key", "weight", "models"};
  EXPECT_EQ(ClosestMatch("wieght", keys), "weight");
  EXPECT_EQ(ClosestMatch("ulr", keys), "url");
  EXPECT_EQ(ClosestMatch("apikey", keys), "api_key");
  EXPECT_EQ(ClosestMatch("model", keys), "models");
  EXPECT_EQ(ClosestMatch("flux_capacitor", keys), "");
  EXPECT_EQ(ClosestMatch("zz", keys), "");
}

}  // namespace
}  // namespace llmproxy
