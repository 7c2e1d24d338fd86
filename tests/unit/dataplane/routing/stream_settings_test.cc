// Which first-token and idle deadline a candidate gets: backend, then alias, then top level.
#include "dataplane/routing/stream_settings.h"

#include <gtest/gtest.h>

namespace llmproxy {
namespace {

using namespace std::chrono_literals;

TEST(StreamSettings, TopLevelWhenNothingElseIsSet) {
  Config c;
  c.first_token_timeout = 7s;
  c.stream_idle_timeout = 40s;
  BackendConfig b;
  const StreamSettings s = StreamSettingsFor(c, nullptr, b);
  EXPECT_EQ(s.first_token_timeout, 7s);
  EXPECT_EQ(s.stream_idle_timeout, 40s);
}

TEST(StreamSettings, AliasOverridesTopLevelAndBackendOverridesAlias) {
  Config c;
  c.first_token_timeout = 7s;
  c.stream_idle_timeout = 40s;
  ModelAlias alias;
  alias.first_token_timeout = 3s;
  alias.stream_idle_timeout = 20s;
  BackendConfig plain;
  const StreamSettings from_alias = StreamSettingsFor(c, &alias, plain);
  EXPECT_EQ(from_alias.first_token_timeout, 3s);
  EXPECT_EQ(from_alias.stream_idle_timeout, 20s);

  BackendConfig slow;
  slow.first_token_timeout = 30s;  // its idle timeout stays the alias's
  const StreamSettings from_backend = StreamSettingsFor(c, &alias, slow);
  EXPECT_EQ(from_backend.first_token_timeout, 30s);
  EXPECT_EQ(from_backend.stream_idle_timeout, 20s);
}

TEST(StreamSettings, ZeroOnANarrowerScopeTurnsTheFirstTokenDeadlineOff) {
  Config c;
  c.first_token_timeout = 7s;
  BackendConfig b;
  b.first_token_timeout = 0ms;
  EXPECT_EQ(StreamSettingsFor(c, nullptr, b).first_token_timeout, 0ms);
}

}  // namespace
}  // namespace llmproxy
