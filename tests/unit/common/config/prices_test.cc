// prices: (docs/config.md): USD per million tokens by model, for the usage ledger's cost.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/config/config_loader.h"

namespace llmproxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kBackend =
    "backends:\n  - name: a\n    url: http://127.0.0.1:9000\n    models: [m1, m2]\n";

LoadResult Load(const std::string& prices) {
  return LoadConfigString(prices + std::string(kBackend), "c.yaml",
                          [](std::string_view) { return std::nullopt; });
}

TEST(Prices, PerModelPromptAndCompletion) {
  const LoadResult r = Load("prices:\n  m1: {prompt: 0.27, completion: 1.10}\n  m2: {prompt: 3}\n");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.config->prices.size(), 2u);
  EXPECT_EQ(r.config->prices.at("m1"), (ModelPrice{0.27, 1.10}));
  EXPECT_EQ(r.config->prices.at("m2"), (ModelPrice{3, 0}));  // an absent price is 0
}

TEST(Prices, CachedPromptIsItsOwnPriceAndAbsentMeansThePromptPrice) {
  const LoadResult r = Load(
      "prices:\n  m1: {prompt: 2.5, completion: 10, cached_prompt: 1.25}\n"
      "  m2: {prompt: 3, cached_prompt: 0}\n");
  ASSERT_TRUE(r.ok()) << testing::PrintToString(r.FormattedErrors());
  EXPECT_EQ(r.config->prices.at("m1"), (ModelPrice{2.5, 10, 1.25}));
  EXPECT_EQ(r.config->prices.at("m2"), (ModelPrice{3, 0, 0.0}));  // a free cache is a price
  const LoadResult plain = Load("prices:\n  m1: {prompt: 2.5}\n");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain.config->prices.at("m1").cached_prompt, std::nullopt);
}

TEST(Prices, BadValuesAreErrorsAndUnservedModelsWarnings) {
  EXPECT_THAT(Load("prices:\n  m1: {prompt: -1}\n").FormattedErrors(),
              ElementsAre(HasSubstr("prices.m1.prompt: must be USD per million tokens, 0 or "
                                    "more, got '-1'")));
  EXPECT_THAT(Load("prices:\n  m1: {prompt: cheap}\n").FormattedErrors(),
              ElementsAre(HasSubstr("prices.m1.prompt: must be USD per million tokens")));
  EXPECT_THAT(Load("prices:\n  m1: {prompt: 1, completon: 2}\n").FormattedErrors(),
              ElementsAre(HasSubstr("unknown key 'completon' in prices.m1 (did you mean "
                                    "'completion'?)")));
  EXPECT_THAT(Load("prices:\n  m1: {prompt: 1, cached_prompt: -0.1}\n").FormattedErrors(),
              ElementsAre("c.yaml:2:34: prices.m1.cached_prompt: must be USD per million "
                          "tokens, 0 or more, got '-0.1'"));
  EXPECT_THAT(Load("prices:\n  m1: {prompt: 1, cached_prompt: [1]}\n").FormattedErrors(),
              ElementsAre(HasSubstr("prices.m1.cached_prompt: must be a number, not a list")));
  EXPECT_THAT(Load("prices: [m1]\n").FormattedErrors(),
              ElementsAre(HasSubstr("prices: must be a mapping")));
  const LoadResult unserved = Load("prices:\n  m9: {prompt: 1}\n");
  ASSERT_TRUE(unserved.ok());
  ASSERT_EQ(unserved.diagnostics.size(), 1u);
  EXPECT_THAT(unserved.diagnostics[0].Format(),
              HasSubstr("warning: prices.m9: no backend serves model 'm9'"));
}

}  // namespace
}  // namespace llmproxy
