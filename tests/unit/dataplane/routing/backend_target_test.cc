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
  EXPECT_EQ(t.auth_name, "Authorization");
  EXPECT_EQ(t.auth_value, "Bearer sk-poe");
  // The agents' protocols, translated to chat completions (docs/protocols.md).
  EXPECT_EQ(t.target(ProxyRoute::kMessages), "/v1/chat/completions");
  EXPECT_EQ(t.target(ProxyRoute::kResponses), "/v1/chat/completions");
  EXPECT_EQ(t.wire(ProxyRoute::kMessages), Wire::kChat);
  EXPECT_EQ(t.wire(ProxyRoute::kResponses), Wire::kChat);
  EXPECT_EQ(t.target(ProxyRoute::kCountTokens), "");  // answered with an estimate
  EXPECT_EQ(t.reasoning, ReasoningParam::kNone);
  EXPECT_FALSE(t.headers_set_host);
  EXPECT_FALSE(t.headers_set_request_id);
  EXPECT_FALSE(t.headers_set_content_type);
}

TEST(BackendTarget, AnthropicBackendServesTheChatAndAgentRoutesAtMessages) {
  BackendConfig b = MakeBackend("claude", {"claude-sonnet-4-5"});
  b.url = "https://api.anthropic.com/v1";
  b.api_key = "sk-ant";
  b.api = BackendApi::kAnthropic;
  const BackendTarget t = MakeBackendTarget(b);
  EXPECT_EQ(t.target(ProxyRoute::kChatCompletions), "/v1/messages");
  EXPECT_EQ(t.target(ProxyRoute::kMessages), "/v1/messages");
  EXPECT_EQ(t.target(ProxyRoute::kResponses), "/v1/messages");
  EXPECT_EQ(t.target(ProxyRoute::kCountTokens), "/v1/messages/count_tokens");
  EXPECT_EQ(t.target(ProxyRoute::kEmbeddings), "");  // not served: another candidate's
  EXPECT_EQ(t.target(ProxyRoute::kCompletions), "");
  EXPECT_EQ(t.wire(ProxyRoute::kChatCompletions), Wire::kMessages);
  EXPECT_EQ(t.wire(ProxyRoute::kResponses), Wire::kMessages);
  EXPECT_EQ(t.wire(ProxyRoute::kCountTokens), Wire::kPlain);
  EXPECT_EQ(t.auth_name, "x-api-key");
  EXPECT_EQ(t.auth_value, "sk-ant");
}

TEST(BackendTarget, NativeResponsesAndTheReasoningOptionOfKnownHosts) {
  BackendConfig o = MakeBackend("openai", {"gpt-5"});
  o.url = "https://api.openai.com/v1";
  o.native_responses = true;
  const BackendTarget t = MakeBackendTarget(o);
  EXPECT_EQ(t.target(ProxyRoute::kResponses), "/v1/responses");
  EXPECT_EQ(t.wire(ProxyRoute::kResponses), Wire::kResponses);
  EXPECT_EQ(t.wire(ProxyRoute::kMessages), Wire::kChat);
  EXPECT_EQ(t.reasoning, ReasoningParam::kReasoningEffort);

  BackendConfig v = MakeBackend("volc", {"doubao"});
  v.url = "https://ark.cn-beijing.volces.com/api/v3";
  EXPECT_EQ(MakeBackendTarget(v).reasoning, ReasoningParam::kThinking);
  v.reasoning_param = ReasoningParam::kNone;  // the configured option wins
  EXPECT_EQ(MakeBackendTarget(v).reasoning, ReasoningParam::kNone);
  BackendConfig d = MakeBackend("deepseek", {"deepseek-chat"});
  d.url = "https://api.deepseek.com";
  EXPECT_EQ(MakeBackendTarget(d).reasoning, ReasoningParam::kThinking);
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
