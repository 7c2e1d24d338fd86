// The `limits:` section, the warning for a USD budget whose models have no price, and the
// validator's bounds on key limits that reach it without the loader (pushed tables, stored
// keys) (docs/config.md "auth", "limits").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/config/config_loader.h"
#include "common/config/config_validator.h"
#include "common/config/key_hash.h"

namespace llmproxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr std::string_view kBackends =
    "model_aliases:\n"
    "  fast: [m1, m3]\n"
    "backends:\n"
    "  - name: a\n"
    "    url: http://127.0.0.1:9000\n"
    "    models: [m1, m2]\n"
    "  - name: b\n"
    "    url: http://127.0.0.1:9001\n"
    "    models: [m3]\n";

LoadResult Load(std::string_view text) {
  return LoadConfigString(std::string(text) + std::string(kBackends), "c.yaml",
                          [](std::string_view) { return std::nullopt; });
}

std::vector<std::string> Warnings(const LoadResult& r) {
  std::vector<std::string> out;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.severity == Diagnostic::Severity::kWarning) out.push_back(d.Format());
  }
  return out;
}

TEST(LimitsSection, DefaultsAndBothFields) {
  const LoadResult none = Load("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none.config->limits.on_control_plane_loss, ControlPlaneLoss::kAllow);
  EXPECT_EQ(none.config->limits.default_max_tokens, 4096u);

  const LoadResult r = Load("limits:\n  on_control_plane_loss: deny\n  default_max_tokens: 1024\n");
  ASSERT_TRUE(r.ok()) << testing::PrintToString(r.FormattedErrors());
  EXPECT_EQ(r.config->limits, (LimitsConfig{ControlPlaneLoss::kDeny, 1024}));
  const LoadResult allow = Load("limits:\n  on_control_plane_loss: allow\n");
  ASSERT_TRUE(allow.ok());
  EXPECT_EQ(allow.config->limits, (LimitsConfig{ControlPlaneLoss::kAllow, 4096}));
  EXPECT_TRUE(Load("limits:\n").ok());  // an empty section keeps the defaults
}

TEST(LimitsSection, BadValuesAndUnknownKeysAreErrors) {
  EXPECT_THAT(Load("limits:\n  on_control_plane_loss: deni\n").FormattedErrors(),
              ElementsAre("c.yaml:2:26: limits.on_control_plane_loss: must be allow or deny, got "
                          "'deni' (did you mean 'deny'?)"));
  EXPECT_THAT(Load("limits:\n  default_max_tokens: 0\n").FormattedErrors(),
              ElementsAre("c.yaml:2:23: limits.default_max_tokens: must be an integer between 1 "
                          "and 1000000000000, got '0'"));
  EXPECT_THAT(Load("limits:\n  default_max_tokens: 1.5\n").FormattedErrors(),
              ElementsAre(HasSubstr("limits.default_max_tokens: must be an integer between 1")));
  EXPECT_THAT(Load("limits:\n  on_control_plane_los: deny\n").FormattedErrors(),
              ElementsAre("c.yaml:2:3: unknown key 'on_control_plane_los' in limits (did you "
                          "mean 'on_control_plane_loss'?)"));
  EXPECT_THAT(Load("limits: deny\n").FormattedErrors(),
              ElementsAre(HasSubstr("limits: must be a mapping")));
  EXPECT_THAT(Load("limts:\n  default_max_tokens: 5\n").FormattedErrors(),
              ElementsAre(HasSubstr("unknown key 'limts' (did you mean 'limits'?)")));
}

TEST(UsdBudget, ModelsWithoutAPriceAreAWarningNamingThem) {
  // Unrestricted: every served model counts (m1, m2, m3); m1 has a price.
  const LoadResult all = Load(
      "prices:\n  m1: {prompt: 1}\n"
      "auth:\n  keys:\n    - {name: k, key: s, budget: {usd: 5, period: 30d}}\n");
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(Warnings(all),
              ElementsAre("c.yaml:5:33: warning: auth.keys[0].budget: key 'k' has a budget in "
                          "USD but models 'm2', 'm3' have no price in prices: (they count 0 USD "
                          "against the budget)"));
  // Restricted: what the key may ask for, an alias by the models it resolves to.
  const LoadResult alias = Load(
      "prices:\n  m1: {prompt: 1}\n  m2: {prompt: 1}\n"
      "auth:\n  keys:\n    - {name: k, key: s, models: [fast], budget: {usd: 5, period: 1d}}\n");
  ASSERT_TRUE(alias.ok());
  EXPECT_THAT(Warnings(alias), ElementsAre(HasSubstr("auth.keys[0].budget: key 'k' has a budget "
                                                     "in USD but model 'm3' has no price")));
  const LoadResult priced = Load(
      "prices:\n  m1: {prompt: 1}\n"
      "auth:\n  keys:\n    - {name: k, key: s, models: [m1], budget: {usd: 5, period: 1d}}\n");
  ASSERT_TRUE(priced.ok());
  EXPECT_TRUE(Warnings(priced).empty());
  // A budget in tokens needs no price.
  const LoadResult tokens =
      Load("auth:\n  keys:\n    - {name: k, key: s, budget: {tokens: 5, period: 1d}}\n");
  ASSERT_TRUE(tokens.ok());
  EXPECT_TRUE(Warnings(tokens).empty());
}

// A table that did not come from the loader: the validator holds the same bounds.
Config Valid() {
  Config c;
  BackendConfig b;
  b.name = "a";
  b.url = "http://a";
  b.models = {"m"};
  c.backends.push_back(b);
  NormalizeConfig(c);
  ClientKey k;
  k.name = "k";
  k.sha256 = Sha256Hex("s");
  c.auth_keys.push_back(k);
  c.prices["m"] = ModelPrice{1, 2, 0.5};
  return c;
}

std::vector<std::string> Problems(const Config& c) { return ValidateConfig(c); }

TEST(KeyLimitBounds, ValidatorRefusesWhatTheLoaderWould) {
  EXPECT_TRUE(Problems(Valid()).empty());
  Config c = Valid();
  c.auth_keys[0].rpm = kMaxKeyRate;
  c.auth_keys[0].budget = KeyBudget{KeyBudget::Unit::kUsd, 1e9, 366 * 24h};
  EXPECT_TRUE(Problems(c).empty());

  c = Valid();
  c.auth_keys[0].rpm = kMaxKeyRate + 1;
  c.auth_keys[0].tpm = kMaxKeyRate + 1;
  c.auth_keys[0].max_parallel = kMaxKeyRate + 1;
  EXPECT_THAT(Problems(c), ElementsAre("auth.keys[0].rpm: must be at most 1000000000000",
                                       "auth.keys[0].tpm: must be at most 1000000000000",
                                       "auth.keys[0].max_parallel: must be at most 1000000000000"));
  c = Valid();
  c.auth_keys[0].budget = KeyBudget{KeyBudget::Unit::kUsd, 0, 0ms};
  EXPECT_THAT(Problems(c),
              ElementsAre("auth.keys[0].budget.usd: must be more than 0 and at most 1000000000",
                          "auth.keys[0].budget.period: must be longer than 0 and at most 366d"));
  c.auth_keys[0].budget = KeyBudget{KeyBudget::Unit::kTokens, 1.5, 367 * 24h};
  EXPECT_THAT(Problems(c), ElementsAre("auth.keys[0].budget.tokens: must be a whole number from 1 "
                                       "to 1000000000000000",
                                       "auth.keys[0].budget.period: must be longer than 0 and at "
                                       "most 366d"));
  c = Valid();
  c.limits.default_max_tokens = 0;
  c.prices["m"].cached_prompt = -1;
  EXPECT_THAT(Problems(c), ElementsAre("prices.m.cached_prompt: must be USD per million tokens, 0 "
                                       "or more",
                                       "limits.default_max_tokens: must be between 1 and "
                                       "1000000000000"));
}

}  // namespace
}  // namespace llmproxy
