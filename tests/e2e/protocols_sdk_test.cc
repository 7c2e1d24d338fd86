// The client protocols end to end with the official SDKs and the agent CLIs
// (tests/e2e/npm): a real llmproxy-ctl and one supervised llmproxy-worker in front of three
// in-process mocks, one per backend protocol, picked by model name:
//   gpt-chat       -> backend `chat`       (api: openai, the default)   chat/completions
//   claude-native  -> backend `anthropic`  (api: anthropic)             /v1/messages
//   gpt-responses  -> backend `responses`  (api: openai, native_responses: true)  /v1/responses
// One TEST per cell of client protocol x backend protocol, each running the matching node
// script (anthropic_sdk.mjs, openai_responses_sdk.mjs, chat_sdk.mjs) or CLI script
// (claude_code.sh, codex.sh) through the gateway, then checking which mock answered and on
// which path, with which upstream key. The scripts hold the protocol checks (text, tool
// round trip, streams, count_tokens, a 429); docs/mockllm.md says what the mocks answer.
// Skipped when node or tests/e2e/npm/node_modules is missing (scripts/install-deps.sh).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/e2e_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;

constexpr const char* kClientKey = "client-key";
constexpr const char* kChatModel = "gpt-chat";
constexpr const char* kAnthropicModel = "claude-native";
constexpr const char* kResponsesModel = "gpt-responses";

std::string NpmDir() { return std::string(LLMPROXY_SOURCE_DIR) + "/tests/e2e/npm"; }

bool NodeReady() {
  struct stat st {};
  if (::stat((NpmDir() + "/node_modules").c_str(), &st) != 0) return false;
  std::string out;
  return e2e::RunCommand({"/usr/bin/env", "node", "--version"}, &out, 10s) == 0;
}

class ProtocolsSdk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!NodeReady()) return;
    chat_ = new MockLlm({.name = "chat", .models = {kChatModel}});
    anthropic_ = new MockLlm({.name = "anthropic", .models = {kAnthropicModel}});
    responses_ = new MockLlm({.name = "responses", .models = {kResponsesModel}});
    dir_ = new e2e::TempDir();
    port_ = e2e::FreePort();
    const uint16_t ctl_port = e2e::FreePort();
    const uint16_t ctl_metrics = e2e::FreePort();
    const uint16_t metrics = e2e::FreePortRange(1);
    const std::string config =
        "server:\n  port: " + std::to_string(port_) + "\n  host: 127.0.0.1\n" +
        "  metrics_port: " + std::to_string(metrics) + "\n" +
        "control_plane:\n  listen: 127.0.0.1:" + std::to_string(ctl_port) + "\n" +
        "  metrics_port: " + std::to_string(ctl_metrics) + "\n" +
        // One backend per model: a failed attempt is the answer, not a retry elsewhere.
        "retry: 0\n" + "auth:\n  keys: [" + kClientKey + "]\n" +
        "backends:\n"
        "  - name: chat\n"
        "    url: " +
        chat_->BaseUrl() + "\n" +
        "    api_key: key-chat\n"
        "    models: [" +
        kChatModel + "]\n" +
        "  - name: anthropic\n"
        "    api: anthropic\n"
        "    url: " +
        anthropic_->BaseUrl() + "\n" +
        "    api_key: key-anthropic\n"
        "    models: [" +
        kAnthropicModel + "]\n" +
        "  - name: responses\n"
        "    url: " +
        responses_->BaseUrl() + "\n" +
        "    api_key: key-responses\n"
        "    native_responses: true\n"
        "    models: [" +
        kResponsesModel + "]\n";
    e2e::WriteFileAtomic(dir_->File("config.yaml"), config);
    ctl_ = new e2e::Process(
        {e2e::BinDir() + "/llmproxy-ctl", "-c", dir_->File("config.yaml"), "--workers", "1"},
        dir_->File("ctl.log"));
    // Ready when a chat request goes through the worker (not when the ctl gave up).
    ready_ =
        e2e::WaitUntil(
            [] {
              if (!ctl_->running()) return true;
              return e2e::HttpRequest(port_, "POST", "/v1/chat/completions",
                                      std::string(R"({"model":")") + kChatModel + R"("})",
                                      {{"Authorization", std::string("Bearer ") + kClientKey}}, 2s)
                         .status == 200;
            },
            30s, 100ms) &&
        ctl_->running();
  }

  static void TearDownTestSuite() {
    if (ctl_) {
      if (ctl_->running()) {
        ctl_->Signal(SIGTERM);
        ctl_->Wait(20s);
      }
      delete ctl_;
    }
    delete chat_;
    delete anthropic_;
    delete responses_;
    delete dir_;
    ctl_ = nullptr;
    chat_ = anthropic_ = responses_ = nullptr;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!chat_) GTEST_SKIP() << "node or " << NpmDir() << "/node_modules missing";
    ASSERT_TRUE(ready_) << "the gateway did not start or never answered (log below)";
    for (MockLlm* m : {chat_, anthropic_, responses_}) m->ClearRequests();
  }

  void TearDown() override {
    if (HasFailure() && ctl_) std::cerr << "---- ctl + worker log ----\n" << ctl_->Log() << "\n";
  }

  static std::string Gateway(bool v1) {
    return "http://127.0.0.1:" + std::to_string(port_) + (v1 ? "/v1" : "");
  }

  // Runs `argv` (under /usr/bin/env, so `node` is looked up on PATH) with `env` set;
  // expects exit 0 and returns the output.
  static std::string Run(std::vector<std::string> env, const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout) {
    std::vector<std::string> cmd = {"/usr/bin/env"};
    cmd.insert(cmd.end(), env.begin(), env.end());
    cmd.insert(cmd.end(), argv.begin(), argv.end());
    std::string out;
    const int rc = e2e::RunCommand(cmd, &out, timeout);
    EXPECT_EQ(rc, 0) << argv.back() << " failed:\n" << out;
    return out;
  }

  static std::string Sdk(const std::string& script, bool v1, const std::string& model) {
    std::string out = Run({"LLMPROXY_BASE_URL=" + Gateway(v1),
                           std::string("LLMPROXY_KEY=") + kClientKey, "MODEL=" + model},
                          {"node", NpmDir() + "/" + script}, 90s);
    EXPECT_NE(out.find(R"("ok":true)"), std::string::npos) << out;
    return out;
  }

  // Every request `m` received went to a path ending in `suffix` (query ignored), and
  // there was at least one; the other mocks got none.
  static void OnlyServedBy(MockLlm* m, const std::string& suffix) {
    auto reqs = m->Requests();
    EXPECT_FALSE(reqs.empty()) << m->name() << " got no request";
    for (const auto& r : reqs) {
      const std::string path = r.target.substr(0, r.target.find('?'));
      EXPECT_TRUE(path.size() >= suffix.size() &&
                  path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
          << m->name() << " got " << r.method << " " << r.target;
    }
    for (MockLlm* other : {chat_, anthropic_, responses_}) {
      if (other != m) {
        EXPECT_EQ(other->RequestCount(), 0u) << other->name() << " was asked";
      }
    }
  }

  // The gateway's upstream credentials, not the client's key.
  static void ChatAuth() {
    for (const auto& r : chat_->Requests()) {
      EXPECT_EQ(r.Header("authorization"), "Bearer key-chat") << r.target;
    }
  }
  static void AnthropicAuth() {
    for (const auto& r : anthropic_->Requests()) {
      EXPECT_EQ(r.Header("x-api-key"), "key-anthropic") << r.target;
      EXPECT_FALSE(r.Header("anthropic-version").empty()) << r.target;
      EXPECT_EQ(r.Header("authorization").find(kClientKey), std::string::npos) << r.target;
    }
  }

  static inline MockLlm* chat_ = nullptr;
  static inline MockLlm* anthropic_ = nullptr;
  static inline MockLlm* responses_ = nullptr;
  static inline e2e::TempDir* dir_ = nullptr;
  static inline e2e::Process* ctl_ = nullptr;
  static inline uint16_t port_ = 0;
  static inline bool ready_ = false;
};

// ---- Anthropic Messages clients ----

TEST_F(ProtocolsSdk, AnthropicSdkThroughTheGatewayToAChatBackendIsTranslated) {
  Sdk("anthropic_sdk.mjs", /*v1=*/false, kChatModel);
  // count_tokens is the gateway's own estimate here; the rest became chat completions.
  OnlyServedBy(chat_, "/chat/completions");
  ChatAuth();
}

TEST_F(ProtocolsSdk, AnthropicSdkThroughTheGatewayToAnAnthropicBackendIsNative) {
  Sdk("anthropic_sdk.mjs", /*v1=*/false, kAnthropicModel);
  OnlyServedBy(anthropic_, "");
  bool count_tokens = false;
  for (const auto& r : anthropic_->Requests()) {
    const std::string path = r.target.substr(0, r.target.find('?'));
    EXPECT_TRUE(path == "/v1/messages" || path == "/v1/messages/count_tokens") << r.target;
    count_tokens = count_tokens || path == "/v1/messages/count_tokens";
  }
  EXPECT_TRUE(count_tokens) << "count_tokens was not forwarded to the Anthropic backend";
  AnthropicAuth();
}

// ---- OpenAI Responses clients ----

TEST_F(ProtocolsSdk, ResponsesSdkThroughTheGatewayToAChatBackendIsTranslated) {
  Sdk("openai_responses_sdk.mjs", /*v1=*/true, kChatModel);
  OnlyServedBy(chat_, "/chat/completions");
  ChatAuth();
}

TEST_F(ProtocolsSdk, ResponsesSdkThroughTheGatewayToANativeResponsesBackendIsNative) {
  Sdk("openai_responses_sdk.mjs", /*v1=*/true, kResponsesModel);
  OnlyServedBy(responses_, "/v1/responses");
  for (const auto& r : responses_->Requests()) {
    EXPECT_EQ(r.Header("authorization"), "Bearer key-responses") << r.target;
  }
}

// ---- OpenAI chat completions clients ----

TEST_F(ProtocolsSdk, ChatSdkThroughTheGatewayToAnAnthropicBackendIsTranslated) {
  Sdk("chat_sdk.mjs", /*v1=*/true, kAnthropicModel);
  OnlyServedBy(anthropic_, "/v1/messages");
  AnthropicAuth();
}

TEST_F(ProtocolsSdk, ChatSdkThroughTheGatewayToAChatBackendIsNative) {
  Sdk("chat_sdk.mjs", /*v1=*/true, kChatModel);
  OnlyServedBy(chat_, "/chat/completions");
  ChatAuth();
}

// ---- Agent CLIs ----
// Against the mocks each CLI's first answer calls its first tool with {"q":...}; the CLI
// rejects the arguments and sends the error back as a tool result, and prints the mock's
// "tool said: ..." answer: a whole tool round trip in the CLI's own protocol.

TEST_F(ProtocolsSdk, ClaudeCodeThroughTheGatewayToAnAnthropicBackend) {
  std::string out = Run({std::string("MODEL=") + kAnthropicModel, "CLI_TIMEOUT=100"},
                        {NpmDir() + "/claude_code.sh", Gateway(false), kClientKey}, 120s);
  EXPECT_NE(out.find("tool said: "), std::string::npos) << out;
  OnlyServedBy(anthropic_, "/v1/messages");
  AnthropicAuth();
  // Native: the body's fields (context_management, output_config, adaptive thinking, role
  // "system" messages) need the client's betas, so they reach the provider.
  for (const auto& r : anthropic_->Requests()) {
    EXPECT_NE(r.body.find(std::string(R"("model":")") + kAnthropicModel + "\""), std::string::npos);
    EXPECT_NE(r.Header("anthropic-beta").find("claude-code-20250219"), std::string::npos)
        << r.Header("anthropic-beta");
  }
}

TEST_F(ProtocolsSdk, ClaudeCodeThroughTheGatewayToAChatBackend) {
  std::string out = Run({std::string("MODEL=") + kChatModel, "CLI_TIMEOUT=100"},
                        {NpmDir() + "/claude_code.sh", Gateway(false), kClientKey}, 120s);
  EXPECT_NE(out.find("tool said: "), std::string::npos) << out;
  OnlyServedBy(chat_, "/chat/completions");
  ChatAuth();
}

TEST_F(ProtocolsSdk, CodexThroughTheGatewayToANativeResponsesBackend) {
  std::string out = Run({std::string("MODEL=") + kResponsesModel, "CLI_TIMEOUT=100"},
                        {NpmDir() + "/codex.sh", Gateway(true), kClientKey}, 120s);
  EXPECT_NE(out.find("tool said: "), std::string::npos) << out;
  OnlyServedBy(responses_, "/v1/responses");
}

TEST_F(ProtocolsSdk, CodexThroughTheGatewayToAChatBackend) {
  std::string out = Run({std::string("MODEL=") + kChatModel, "CLI_TIMEOUT=100"},
                        {NpmDir() + "/codex.sh", Gateway(true), kClientKey}, 120s);
  EXPECT_NE(out.find("tool said: "), std::string::npos) << out;
  OnlyServedBy(chat_, "/chat/completions");
  ChatAuth();
  // Codex's sub-agent tools come as a `namespace` tool: the chat backend saw them flat.
  const auto reqs = chat_->Requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_NE(reqs.front().body.find(R"("name":"multi_agent_v1__)"), std::string::npos)
      << reqs.front().body.substr(0, 4000);
}

}  // namespace
}  // namespace llmproxy
