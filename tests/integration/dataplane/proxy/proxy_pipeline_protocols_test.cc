// The routing matrix of docs/protocols.md through the worker: chat completions, Anthropic
// Messages and OpenAI Responses clients on `api: openai`, `api: anthropic` and
// `native_responses` backends (llmproxy-mockllm answers in all three protocols). Native
// cells are byte-exact but for the model and the key; translated cells are checked on the
// client's bytes (the shape its SDK parses) and on what the mock received. Errors the
// gateway makes, upstream errors and a broken stream reach the client in its protocol.
#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/config/key_hash.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::Headers;
using test::MockBackend;
using test::PostJson;
using test::TestConfig;
using test::TestWorker;

constexpr const char* kWholeAnswer = "tok0 tok1 tok2 tok3 tok4 ";

const std::string kMessagesBody =
    R"({"model":"claude-x","max_tokens":64,"messages":[{"role":"user","content":"hi"}]})";
const std::string kMessagesStreamBody =
    R"({"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]})";
const std::string kResponsesBody = R"({"model":"gpt-x","input":"hi"})";
const std::string kResponsesStreamBody = R"({"model":"gpt-x","input":"hi","stream":true})";
const std::string kChatBody = R"({"model":"chat-x","messages":[{"role":"user","content":"hi"}]})";
const std::string kChatStreamBody =
    R"({"model":"chat-x","stream":true,"messages":[{"role":"user","content":"hi"}]})";

const Headers kAnthropicHeaders = {{"x-api-key", "client-key"},
                                   {"anthropic-version", "2023-06-01"},
                                   {"anthropic-beta", "tools-2024-05-16"}};
const Headers kBearer = {{"Authorization", "Bearer client-key"}};

// One upstream per protocol role; every model name says which backend serves it.
struct Matrix {
  MockLlm chat{test::NamedMock("chat")};
  MockLlm anthropic{test::NamedMock("anthropic")};
  MockLlm responses{test::NamedMock("responses")};
  std::unique_ptr<TestWorker> worker;

  explicit Matrix(const std::function<void(Config&)>& edit = {},
                  test::RecordingObserver* observer = nullptr) {
    BackendConfig c =
        MockBackend("chat", chat.BaseUrl(), {"chat-x", "claude-x", "gpt-x"}, "sk-chat");
    BackendConfig a =
        MockBackend("anthropic", anthropic.BaseUrl(),
                    {"claude-native", "chat-on-anthropic", "gpt-on-anthropic"}, "sk-ant");
    a.api = BackendApi::kAnthropic;
    BackendConfig r = MockBackend("responses", responses.BaseUrl(), {"gpt-native"}, "sk-resp");
    r.native_responses = true;
    Config config = TestConfig({c, a, r});
    config.auth_keys = {ClientKey{"client", Sha256Hex("client-key"), {}}};
    if (edit) edit(config);
    std::vector<RequestObserver*> observers;
    if (observer != nullptr) observers.push_back(observer);
    worker = std::make_unique<TestWorker>(config, 1, observers);
  }
  uint16_t port() const { return worker->port(); }
};

std::string WithModel(std::string body, const std::string& from, const std::string& to) {
  body.replace(body.find(from), from.size(), to);
  return body;
}

// The SSE events of a stream, as (event name, data JSON) pairs; [DONE] as data "[DONE]".
struct Event {
  std::string name;
  std::string data;
};
std::vector<Event> EventsOf(const std::string& sse) {
  std::vector<Event> events;
  size_t pos = 0;
  while (pos < sse.size()) {
    size_t end = sse.find("\n\n", pos);
    if (end == std::string::npos) end = sse.size();
    Event e;
    size_t line = pos;
    while (line < end) {
      size_t eol = sse.find('\n', line);
      if (eol == std::string::npos || eol > end) eol = end;
      const std::string l = sse.substr(line, eol - line);
      if (l.rfind("event: ", 0) == 0) e.name = l.substr(7);
      if (l.rfind("data: ", 0) == 0) e.data = l.substr(6);
      line = eol + 1;
    }
    if (!e.data.empty()) events.push_back(e);
    pos = end + 2;
  }
  return events;
}

std::vector<std::string> NamesOf(const std::vector<Event>& events) {
  std::vector<std::string> names;
  for (const Event& e : events) names.push_back(e.name.empty() ? e.data : e.name);
  return names;
}

// --- /v1/messages ---

TEST(ProtocolMatrix, MessagesOnAnOpenAIBackendAreTranslatedBothWays) {
  Matrix m;
  const auto r = PostJson(m.port(), "/v1/messages", kMessagesBody, kAnthropicHeaders);
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = json::parse(r.body);
  EXPECT_EQ(answer["type"], "message");
  EXPECT_EQ(answer["role"], "assistant");
  ASSERT_EQ(answer["content"].size(), 1u) << r.body;
  EXPECT_EQ(answer["content"][0]["type"], "text");
  EXPECT_EQ(answer["content"][0]["text"], kWholeAnswer);
  EXPECT_EQ(answer["stop_reason"], "end_turn");
  EXPECT_GT(answer["usage"]["output_tokens"].get<int>(), 0);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "chat");

  ASSERT_EQ(m.chat.RequestCount(), 1u);
  const ReceivedRequest sent = m.chat.Requests()[0];
  EXPECT_EQ(sent.target, "/v1/chat/completions");
  EXPECT_EQ(sent.Header("authorization"), "Bearer sk-chat");
  EXPECT_FALSE(sent.HasHeader("x-api-key"));  // the client's key never goes upstream
  EXPECT_FALSE(sent.HasHeader("anthropic-version"));
  EXPECT_FALSE(sent.HasHeader("anthropic-beta"));
  const json body = json::parse(sent.body);
  EXPECT_EQ(body["model"], "claude-x");
  EXPECT_EQ(body["max_tokens"], 64);
  EXPECT_EQ(body["messages"], json::parse(R"([{"role":"user","content":"hi"}])"));
}

TEST(ProtocolMatrix, AMessagesStreamOnAnOpenAIBackendIsTranslatedEventByEvent) {
  Matrix m;
  const auto r = PostJson(m.port(), "/v1/messages", kMessagesStreamBody, kAnthropicHeaders);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type").rfind("text/event-stream", 0), 0u);
  const std::vector<Event> events = EventsOf(r.body);
  ASSERT_GE(events.size(), 5u) << r.body;
  EXPECT_EQ(events.front().name, "message_start");
  EXPECT_EQ(events.back().name, "message_stop");
  std::string text;
  bool delta_with_stop = false;
  for (const Event& e : events) {
    const json d = json::parse(e.data);
    EXPECT_EQ(d["type"], e.name) << e.data;
    if (e.name == "content_block_delta") text += d["delta"]["text"].get<std::string>();
    if (e.name == "message_delta") {
      delta_with_stop = d["delta"]["stop_reason"] == "end_turn";
      EXPECT_GT(d["usage"]["output_tokens"].get<int>(), 0) << e.data;
    }
  }
  EXPECT_EQ(text, kWholeAnswer);
  EXPECT_TRUE(delta_with_stop) << r.body;
  // Usage was asked of the upstream (the client's message_delta needs it).
  const json sent = json::parse(m.chat.Requests()[0].body);
  EXPECT_EQ(sent["stream_options"]["include_usage"], true);
}

TEST(ProtocolMatrix, MessagesToAnAnthropicBackendGoByteExactButForModelAndKey) {
  Matrix m;
  const std::string body = WithModel(kMessagesBody, "claude-x", "claude-native");
  const auto r = PostJson(m.port(), "/v1/messages", body, kAnthropicHeaders);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(m.anthropic.RequestCount(), 1u);
  const ReceivedRequest sent = m.anthropic.Requests()[0];
  EXPECT_EQ(sent.target, "/v1/messages");
  EXPECT_EQ(sent.body, body);
  EXPECT_EQ(sent.Header("x-api-key"), "sk-ant");
  EXPECT_FALSE(sent.HasHeader("authorization"));
  EXPECT_EQ(sent.Header("anthropic-version"), "2023-06-01");
  EXPECT_EQ(sent.Header("anthropic-beta"), "tools-2024-05-16");  // passed through
  const json answer = json::parse(r.body);
  EXPECT_EQ(answer["type"], "message");
  EXPECT_EQ(answer["content"][0]["text"], kWholeAnswer);
}

// The ledger and a limited key's reservation need the usage of an answer that goes to the
// client untranslated too.
TEST(ProtocolMatrix, ANativeMessagesAnswersUsageIsRecorded) {
  test::RecordingObserver observer;
  Matrix m({}, &observer);
  const std::string body = WithModel(kMessagesBody, "claude-x", "claude-native");
  const auto r = PostJson(m.port(), "/v1/messages", body, kAnthropicHeaders);
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = json::parse(r.body);
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  const RequestRecord record = observer.Records()[0];
  ASSERT_TRUE(record.prompt_tokens.has_value());
  EXPECT_EQ(*record.prompt_tokens, answer["usage"]["input_tokens"].get<uint64_t>());
  EXPECT_EQ(record.completion_tokens, answer["usage"]["output_tokens"].get<uint64_t>());
}

TEST(ProtocolMatrix, ANativeMessagesStreamIsRelayedAsItCame) {
  Matrix m;
  const std::string body = WithModel(kMessagesStreamBody, "claude-x", "claude-native");
  const auto r = PostJson(m.port(), "/v1/messages", body, kAnthropicHeaders);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<Event> events = EventsOf(r.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().name, "message_start");
  EXPECT_EQ(events.back().name, "message_stop");
  // A direct call to the mock gives the same bytes but for the per-response id.
  const auto direct = PostJson(m.anthropic.port(), "/v1/messages", body, kAnthropicHeaders);
  EXPECT_EQ(EventsOf(direct.body).size(), events.size());
  EXPECT_EQ(NamesOf(EventsOf(direct.body)), NamesOf(events));
}

TEST(ProtocolMatrix, CountTokensPassesToAnthropicAndIsEstimatedElsewhere) {
  Matrix m;
  const std::string native = WithModel(kMessagesBody, "claude-x", "claude-native");
  const auto a = PostJson(m.port(), "/v1/messages/count_tokens", native, kAnthropicHeaders);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_TRUE(json::parse(a.body).contains("input_tokens"));
  EXPECT_EQ(a.Header("x-llmproxy-token-estimate"), "");
  ASSERT_EQ(m.anthropic.RequestCount(), 1u);
  EXPECT_EQ(m.anthropic.Requests()[0].target, "/v1/messages/count_tokens");

  const auto e = PostJson(m.port(), "/v1/messages/count_tokens", kMessagesBody, kAnthropicHeaders);
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_GT(json::parse(e.body)["input_tokens"].get<int>(), 0);
  EXPECT_EQ(e.Header("x-llmproxy-token-estimate"), "bytes/4");
  EXPECT_EQ(m.chat.RequestCount(), 0u);  // never a 400 from a backend that cannot count
}

TEST(ProtocolMatrix, MessagesErrorsAreInAnthropicsShape) {
  Matrix m([](Config& c) { c.unknown_model = UnknownModelPolicy::kReject; });
  // The gateway's own: an unknown model, a bad key, malformed JSON.
  auto r = PostJson(m.port(), "/v1/messages", WithModel(kMessagesBody, "claude-x", "nope"),
                    kAnthropicHeaders);
  EXPECT_EQ(r.status, 404);
  json e = json::parse(r.body);
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["error"]["type"], "not_found_error") << r.body;
  r = PostJson(m.port(), "/v1/messages", kMessagesBody, {{"x-api-key", "wrong"}});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "authentication_error") << r.body;
  r = PostJson(m.port(), "/v1/messages", "{not json", kAnthropicHeaders);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "invalid_request_error") << r.body;
  // An upstream's: the OpenAI backend's 429 becomes Anthropic's rate_limit_error.
  MockFault limited;
  limited.status = 429;
  m.chat.SetDefaultFault(limited);
  r = PostJson(m.port(), "/v1/messages", kMessagesBody, kAnthropicHeaders);
  EXPECT_EQ(r.status, 429);
  e = json::parse(r.body);
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["error"]["type"], "rate_limit_error") << r.body;
}

TEST(ProtocolMatrix, AMessagesStreamThatBreaksEndsWithAnErrorEvent) {
  Matrix m([](Config& c) { c.retry = 0; });
  MockFault die;
  die.die_after_chunks = 2;
  m.chat.SetDefaultFault(die);
  const auto r = PostJson(m.port(), "/v1/messages", kMessagesStreamBody, kAnthropicHeaders);
  ASSERT_EQ(r.status, 200);
  const std::vector<Event> events = EventsOf(r.body);
  ASSERT_FALSE(events.empty()) << r.body;
  EXPECT_EQ(events.front().name, "message_start");
  EXPECT_EQ(events.back().name, "error") << r.body;
  EXPECT_EQ(json::parse(events.back().data)["type"], "error");
  for (const Event& e : events) EXPECT_NE(e.name, "message_stop");
}

// --- /v1/chat/completions to an Anthropic backend ---

TEST(ProtocolMatrix, ChatOnAnAnthropicBackendIsTranslatedBothWays) {
  Matrix m;
  const std::string body = WithModel(kChatBody, "chat-x", "chat-on-anthropic");
  const auto r = PostJson(m.port(), "/v1/chat/completions", body, kBearer);
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = json::parse(r.body);
  EXPECT_EQ(answer["object"], "chat.completion");
  EXPECT_EQ(answer["choices"][0]["message"]["content"], kWholeAnswer);
  EXPECT_EQ(answer["choices"][0]["finish_reason"], "stop");
  EXPECT_GT(answer["usage"]["completion_tokens"].get<int>(), 0);
  const ReceivedRequest sent = m.anthropic.Requests().at(0);
  EXPECT_EQ(sent.target, "/v1/messages");
  EXPECT_EQ(sent.Header("x-api-key"), "sk-ant");
  EXPECT_EQ(sent.Header("anthropic-version"), "2023-06-01");  // the default
  const json upstream = json::parse(sent.body);
  EXPECT_EQ(upstream["model"], "chat-on-anthropic");
  EXPECT_TRUE(upstream.contains("max_tokens"));  // Messages requires it
}

TEST(ProtocolMatrix, AChatStreamFromAnAnthropicBackendIsChatChunksAndDone) {
  Matrix m;
  const std::string body = WithModel(kChatStreamBody, "chat-x", "chat-on-anthropic");
  const auto r = PostJson(m.port(), "/v1/chat/completions", body, kBearer);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<Event> events = EventsOf(r.body);
  ASSERT_GE(events.size(), 3u) << r.body;
  EXPECT_EQ(events.back().data, "[DONE]");
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json chunk = json::parse(events[i].data);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    for (const json& c : chunk["choices"]) {
      if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
      if (c.contains("finish_reason") && c["finish_reason"].is_string())
        finish = c["finish_reason"];
    }
  }
  EXPECT_EQ(text, kWholeAnswer);
  EXPECT_EQ(finish, "stop");
}

// --- /v1/responses ---

TEST(ProtocolMatrix, ResponsesOnAChatBackendAreTranslatedBothWays) {
  Matrix m;
  const auto r = PostJson(m.port(), "/v1/responses", kResponsesBody, kBearer);
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = json::parse(r.body);
  EXPECT_EQ(answer["object"], "response");
  EXPECT_EQ(answer["status"], "completed");
  std::string text;
  for (const json& item : answer["output"]) {
    if (item["type"] != "message") continue;
    for (const json& part : item["content"]) text += part["text"].get<std::string>();
  }
  EXPECT_EQ(text, kWholeAnswer);
  EXPECT_GT(answer["usage"]["output_tokens"].get<int>(), 0);
  const ReceivedRequest sent = m.chat.Requests().at(0);
  EXPECT_EQ(sent.target, "/v1/chat/completions");
  EXPECT_EQ(json::parse(sent.body)["messages"], json::parse(R"([{"role":"user","content":"hi"}])"));
}

TEST(ProtocolMatrix, AResponsesStreamOnAChatBackendEndsWithResponseCompleted) {
  Matrix m;
  const auto r = PostJson(m.port(), "/v1/responses", kResponsesStreamBody, kBearer);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<Event> events = EventsOf(r.body);
  ASSERT_GE(events.size(), 4u) << r.body;
  EXPECT_EQ(events.front().name, "response.created");
  EXPECT_EQ(events.back().name, "response.completed");
  std::string text;
  int64_t last_sequence = -1;
  for (const Event& e : events) {
    const json d = json::parse(e.data);
    EXPECT_EQ(d["type"], e.name);
    EXPECT_GT(d["sequence_number"].get<int64_t>(), last_sequence);
    last_sequence = d["sequence_number"].get<int64_t>();
    if (e.name == "response.output_text.delta") text += d["delta"].get<std::string>();
  }
  EXPECT_EQ(text, kWholeAnswer);
}

TEST(ProtocolMatrix, ResponsesToANativeBackendGoByteExactButForModelAndKey) {
  Matrix m;
  const std::string body = WithModel(kResponsesBody, "gpt-x", "gpt-native");
  const auto r = PostJson(m.port(), "/v1/responses", body, kBearer);
  ASSERT_EQ(r.status, 200) << r.body;
  const ReceivedRequest sent = m.responses.Requests().at(0);
  EXPECT_EQ(sent.target, "/v1/responses");
  EXPECT_EQ(sent.body, body);
  EXPECT_EQ(sent.Header("authorization"), "Bearer sk-resp");
  const auto direct = PostJson(m.responses.port(), "/v1/responses", body, kBearer);
  json a = json::parse(r.body);
  json d = json::parse(direct.body);
  a.erase("id");
  d.erase("id");
  for (json* j : {&a, &d}) {
    for (json& item : (*j)["output"]) item.erase("id");
    j->erase("created_at");
  }
  EXPECT_EQ(a, d);
}

TEST(ProtocolMatrix, ResponsesOnAnAnthropicBackendGoThroughChatBothWays) {
  Matrix m;
  const std::string body = WithModel(kResponsesStreamBody, "gpt-x", "gpt-on-anthropic");
  const auto r = PostJson(m.port(), "/v1/responses", body, kBearer);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<Event> events = EventsOf(r.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().name, "response.completed") << r.body;
  std::string text;
  for (const Event& e : events) {
    if (e.name == "response.output_text.delta")
      text += json::parse(e.data)["delta"].get<std::string>();
  }
  EXPECT_EQ(text, kWholeAnswer);
  EXPECT_EQ(m.anthropic.Requests().at(0).target, "/v1/messages");
}

TEST(ProtocolMatrix, StatelessResponsesRefuseWhatTheyCannotTranslate) {
  Matrix m;
  auto r = PostJson(m.port(), "/v1/responses",
                    R"({"model":"gpt-x","input":"hi","previous_response_id":"resp_1"})", kBearer);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("previous_response_id"),
            std::string::npos)
      << r.body;
  r = PostJson(m.port(), "/v1/responses",
               R"({"model":"gpt-x","input":"hi","tools":[{"type":"web_search"}]})", kBearer);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("web_search"), std::string::npos) << r.body;
  EXPECT_EQ(m.chat.RequestCount(), 0u);
  // The native backend keeps state itself: previous_response_id goes through.
  r = PostJson(m.port(), "/v1/responses",
               R"({"model":"gpt-native","input":"hi","previous_response_id":"resp_1"})", kBearer);
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(ProtocolMatrix, AResponsesStreamThatBreaksEndsWithResponseFailed) {
  Matrix m([](Config& c) { c.retry = 0; });
  MockFault die;
  die.die_after_chunks = 2;
  m.chat.SetDefaultFault(die);
  const auto r = PostJson(m.port(), "/v1/responses", kResponsesStreamBody, kBearer);
  ASSERT_EQ(r.status, 200);
  const std::vector<Event> events = EventsOf(r.body);
  ASSERT_FALSE(events.empty()) << r.body;
  EXPECT_EQ(events.back().name, "response.failed") << r.body;
  EXPECT_EQ(json::parse(events.back().data)["response"]["status"], "failed");
}

// --- across kinds ---

TEST(ProtocolMatrix, ACandidateListMayMixKindsAndFailoverKeepsTheClientsProtocol) {
  MockLlm chat(test::NamedMock("chat"));
  MockLlm anthropic(test::NamedMock("anthropic"));
  BackendConfig c = MockBackend("chat", chat.BaseUrl(), {"m"}, "sk-chat");
  BackendConfig a = MockBackend("anthropic", anthropic.BaseUrl(), {"m"}, "sk-ant");
  a.api = BackendApi::kAnthropic;
  Config config = TestConfig({c, a});
  config.mode = BalanceMode::kRoundRobin;
  TestWorker worker(config);
  MockFault down;
  down.status = 500;
  // Whichever comes first fails; the other, of the other kind, answers.
  for (MockLlm* failing : {&chat, &anthropic}) {
    failing->SetDefaultFault(down);
    (failing == &chat ? anthropic : chat).SetDefaultFault(MockFault{});
    for (int i = 0; i < 2; ++i) {
      const auto r = PostJson(worker.port(), "/v1/messages",
                              WithModel(kMessagesBody, "claude-x", "m"), kAnthropicHeaders);
      ASSERT_EQ(r.status, 200) << r.body;
      const json answer = json::parse(r.body);
      EXPECT_EQ(answer["type"], "message");
      EXPECT_EQ(answer["content"][0]["text"], kWholeAnswer);
      EXPECT_EQ(r.Header("x-llmproxy-backend"), failing == &chat ? "anthropic" : "chat");
    }
  }
}

TEST(ProtocolMatrix, ARouteAnAnthropicBackendLacksMovesOnWithoutHurtingIt) {
  MockLlm anthropic(test::NamedMock("anthropic"));
  BackendConfig a = MockBackend("anthropic", anthropic.BaseUrl(), {"m"}, "sk-ant");
  a.api = BackendApi::kAnthropic;
  TestWorker worker(TestConfig({a}));
  const auto r = PostJson(worker.port(), "/v1/embeddings", R"({"model":"m","input":"x"})");
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(r.body.find("does not serve /v1/embeddings"), std::string::npos) << r.body;
  EXPECT_EQ(anthropic.RequestCount(), 0u);
  // Still healthy: chat requests go there.
  const auto ok =
      PostJson(worker.port(), "/v1/chat/completions", WithModel(kChatBody, "chat-x", "m"));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST(ProtocolMatrix, ModelsAnswerInAnthropicsShapeToAnthropicClients) {
  Matrix m;
  auto r = test::HttpCall(m.port(), "GET", "/v1/models", "", kAnthropicHeaders);
  ASSERT_EQ(r.status, 200) << r.body;
  json list = json::parse(r.body);
  EXPECT_EQ(list["has_more"], false);
  ASSERT_FALSE(list["data"].empty());
  EXPECT_EQ(list["data"][0]["type"], "model");
  EXPECT_EQ(list["first_id"], list["data"][0]["id"]);
  r = test::HttpCall(m.port(), "GET", "/v1/models", "", kBearer);
  EXPECT_EQ(json::parse(r.body)["object"], "list");
}

TEST(ProtocolMatrix, AWatchedNativeMessagesStreamWithASlowFirstTokenFailsOver) {
  MockLlm slow(test::NamedMock("slow"));
  MockLlm fast(test::NamedMock("fast"));
  BackendConfig s = MockBackend("slow", slow.BaseUrl(), {"m"}, "k");
  BackendConfig f = MockBackend("fast", fast.BaseUrl(), {"m"}, "k");
  s.api = BackendApi::kAnthropic;
  f.api = BackendApi::kAnthropic;
  s.weight = 1000000;
  f.weight = 1;
  Config config = TestConfig({s, f});
  config.first_token_timeout = 300ms;
  TestWorker worker(config);
  MockFault late;
  late.first_token_delay_ms = 3000;
  slow.SetDefaultFault(late);
  const auto r = PostJson(worker.port(), "/v1/messages",
                          WithModel(kMessagesStreamBody, "claude-x", "m"), kAnthropicHeaders);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "fast");
  std::string text;
  for (const Event& e : EventsOf(r.body)) {
    if (e.name == "content_block_delta")
      text += json::parse(e.data)["delta"]["text"].get<std::string>();
  }
  EXPECT_EQ(text, kWholeAnswer);
}

}  // namespace
}  // namespace llmproxy
