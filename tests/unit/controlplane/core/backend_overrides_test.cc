// Admin overrides survive reloads of config.yaml.
#include <gtest/gtest.h>

#include "controlplane/core/backend_overrides.h"

namespace llmproxy {
namespace {

Config TwoBackends() {
  Config c;
  BackendConfig a;
  a.name = "a";
  a.weight = 5;
  BackendConfig b;
  b.name = "b";
  b.weight = 1;
  c.backends = {a, b};
  return c;
}

TEST(BackendOverrides, DrainAndEnable) {
  BackendOverrides o;
  o.Drain("a");
  Config c = o.Apply(TwoBackends());
  EXPECT_TRUE(c.backends[0].drained);
  EXPECT_FALSE(c.backends[1].drained);
  o.Enable("a");
  EXPECT_FALSE(o.Apply(TwoBackends()).backends[0].drained);
  EXPECT_TRUE(o.all().empty());
}

TEST(BackendOverrides, WeightOverrideAndReset) {
  BackendOverrides o;
  o.SetWeight("b", 7, 1);
  EXPECT_EQ(o.Apply(TwoBackends()).backends[1].weight, 7u);
  o.Drain("b");
  o.Enable("b");
  EXPECT_EQ(o.Apply(TwoBackends()).backends[1].weight, 7u);  // enable keeps the weight
  o.SetWeight("b", 1, 1);
  EXPECT_TRUE(o.all().empty());
}

TEST(BackendOverrides, ReappliedToEveryReloadAndIgnoredForMissingBackends) {
  BackendOverrides o;
  o.Drain("gone");
  o.Drain("a");
  Config edited = TwoBackends();
  edited.backends[0].weight = 9;  // the file changed
  Config c = o.Apply(edited);
  EXPECT_TRUE(c.backends[0].drained);
  EXPECT_EQ(c.backends[0].weight, 9u);
  EXPECT_EQ(c.backends.size(), 2u);
  EXPECT_TRUE(o.Get("gone").has_value());
}

}  // namespace
}  // namespace llmproxy
