// What the proxy sends to each backend, derived once per table (dataplane/routing/
// backend_target.h): targets from the one route table, Host, credentials, header facts.
#include "dataplane/routing/backend_target.h"

#include <gtest/gtest.h>

#include "dataplane/routing/routing_table.h"
#include "routing_test_util.h"

namespace llmproxy {
namespace {

using namespace llmproxy::testing;

TEST(BackendTarget, EveryProxiedRouteGetsTheUrlBasePathPlusItsSuffix) {
  BackendConfig b = MakeBackend("poe", {"gpt-4o"});
  b.url = "https://api.poe.com/v1/";
  b.api_key = "sk-poe";
  const BackendTarget t = MakeBackendTarget(b);
  ASSERT_TRUE(t.url.has_value());
  EXPECT_EQ(t.target(ProxyRoute::kChatCompletions), "/v1/chat/completions");
  EXPECT_EQ(t.target(ProxyRoute::kCompletions), "/v1/completions");
  EXPECT_EQ(t.target(ProxyRoute::kEmbeddings), "/v1/embeddings");
  EXPECT_EQ(t.probe_target, "/v1/models");  // the health probe: url + "/models"
  EXPECT_EQ(t.host_header, "api.poe.com");
  EXPECT_EQ(t.bearer, "Bearer sk-poe");
  EXPECT_FALSE(t.headers_set_host);
  EXPECT_FALSE(t.headers_set_request_id);
  EXPECT_FALSE(t.headers_set_content_type);
}

TEST(BackendTarget, ConfiguredHeadersAreRecognizedWhateverTheirCase) {
  BackendConfig b = MakeBackend("x", {"m"});
  b.url = "http://127.0.0.1:8081";
  b.headers = {{"HOST", "h"}, {"X-Request-Id", "r"}, {"content-TYPE", "c"}, {"X-Extra", "e"}};
  const BackendTarget t = MakeBackendTarget(b);
  EXPECT_EQ(t.target(ProxyRoute::kChatCompletions), "/chat/completions");
  EXPECT_EQ(t.host_header, "127.0.0.1:8081");
  EXPECT_TRUE(t.headers_set_host);
  EXPECT_TRUE(t.headers_set_request_id);
  EXPECT_TRUE(t.headers_set_content_type);
}

TEST(BackendTarget, AnUnparsableUrlKeepsItsReason) {
  BackendConfig b = MakeBackend("x", {"m"});
  b.url = "ftp://example.com";
  const BackendTarget t = MakeBackendTarget(b);
  EXPECT_FALSE(t.url.has_value());
  EXPECT_FALSE(t.url_error.empty());
  EXPECT_EQ(t.target(ProxyRoute::kChatCompletions), "");
}

TEST(BackendTarget, TheTableCarriesOnePerBackendInConfigOrder) {
  BackendConfig a = MakeBackend("a", {"m"});
  a.url = "http://a.example/v1";
  BackendConfig b = MakeBackend("b", {"m"});
  b.url = "https://b.example:8443";
  auto table = RoutingTable::Build(MakeConfig({a, b}), 1);
  EXPECT_EQ(table->target(0).host_header, "a.example");
  EXPECT_EQ(table->target(0).target(ProxyRoute::kEmbeddings), "/v1/embeddings");
  EXPECT_EQ(table->target(1).host_header, "b.example:8443");
  ASSERT_TRUE(table->target(1).url.has_value());
  EXPECT_TRUE(table->target(1).url->tls);
}

}  // namespace
}  // namespace llmproxy
