// Chat-stream tracking (first token, answer so far), the continuation rewrite and the
// prefill body, on the chunks real providers and llmproxy-mockllm send, fed whole, through
// SseParser at every split point, and hostile.
#include "dataplane/protocols/chat_stream.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/protocols/sse_parser.h"

namespace llmproxy {
namespace {

// One chat chunk as llmproxy-mockllm writes it.
std::string MockChunk(const std::string& id, const std::string& delta, bool last = false) {
  return R"(data: {"id":")" + id +
         R"(","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":)"
         R"([{"index":0,"delta":)" +
         delta + R"(,"finish_reason":)" + (last ? R"("stop")" : "null") + "}]}\n\n";
}

// OpenAI's real first chunks: role-only with empty content, then content.
const std::string kOpenAiRole =
    R"(data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1733000000,)"
    R"("model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,)"
    R"("delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,)"
    R"("finish_reason":null}]})"
    "\n\n";
std::string OpenAiContent(const std::string& content_json) {
  return R"(data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1733000000,)"
         R"("model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,)"
         R"("delta":{"content":)" +
         content_json + R"(},"logprobs":null,"finish_reason":null}]})" + "\n\n";
}
const std::string kOpenAiStop =
    R"(data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1733000000,)"
    R"("model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,)"
    R"("delta":{},"logprobs":null,"finish_reason":"stop"}]})"
    "\n\n";
const std::string kDone = "data: [DONE]\n\n";

// Feeds `stream` through a parser with the hooks, cut at `cuts`; returns what it forwards.
std::string FeedSplit(SseParser& parser, std::string_view stream, const std::vector<size_t>& cuts) {
  std::string out;
  size_t prev = 0;
  for (size_t cut : cuts) {
    out.append(parser.Feed(stream.substr(prev, cut - prev)));
    prev = cut;
  }
  out.append(parser.Feed(stream.substr(prev)));
  out.append(parser.Finish());
  return out;
}

TEST(ChatStreamTracker, MockStreamTokensTextIdAndFinish) {
  ChatStreamTracker t;
  EXPECT_FALSE(t.first_token());
  t.Observe(MockChunk("chatcmpl-a-1", R"({"role":"assistant","content":"tok0 "})"));
  EXPECT_TRUE(t.first_token());
  EXPECT_EQ(t.text(), "tok0 ");
  EXPECT_EQ(t.id(), "chatcmpl-a-1");
  EXPECT_EQ(t.created(), 1700000000);
  EXPECT_TRUE(t.continuable());
  t.Observe(MockChunk("chatcmpl-a-1", R"({"content":"tok1 "})"));
  EXPECT_EQ(t.text(), "tok0 tok1 ");
  EXPECT_TRUE(t.continuable());
  EXPECT_FALSE(t.finished());
  t.Observe(MockChunk("chatcmpl-a-1", R"({"content":"tok2 "})", /*last=*/true));
  EXPECT_TRUE(t.finished());
  EXPECT_FALSE(t.continuable());
  t.Observe(kDone);
  EXPECT_TRUE(t.done());
  EXPECT_EQ(t.text(), "tok0 tok1 tok2 ");
  EXPECT_EQ(t.events(), 4u);
}

TEST(ChatStreamTracker, HeadersCommentsAndRoleOnlyChunksAreNotATokenButDoneIs) {
  ChatStreamTracker t;
  t.Observe(": OPENROUTER PROCESSING\n\n");
  t.Observe("event: ping\n\n");
  t.Observe(kOpenAiRole);
  t.Observe(MockChunk("x", R"({"role":"assistant"})"));
  t.Observe(MockChunk("x", R"({"content":null})"));
  t.Observe(MockChunk("x", R"({"tool_calls":[]})"));
  t.Observe(MockChunk("x", R"({"content":"","reasoning_content":""})"));
  EXPECT_FALSE(t.first_token());
  EXPECT_TRUE(t.continuable());
  EXPECT_EQ(t.id(), "chatcmpl-AbC");  // the first chunk that had one
  EXPECT_EQ(t.created(), 1733000000);
  EXPECT_EQ(t.text(), "");

  // An empty answer is not a silent one: [DONE], a finish_reason or an error counts.
  ChatStreamTracker done;
  done.Observe(kDone);
  EXPECT_TRUE(done.first_token());
  ChatStreamTracker stop;
  stop.Observe(kOpenAiStop);
  EXPECT_TRUE(stop.first_token());
  EXPECT_TRUE(stop.finished());
  ChatStreamTracker error;
  error.Observe(R"(data: {"error":{"message":"overloaded","type":"server_error"}})"
                "\n\n");
  EXPECT_TRUE(error.first_token());
  EXPECT_TRUE(error.error());
  ChatStreamTracker refusal;
  refusal.Observe(MockChunk("x", R"({"refusal":"I can't"})"));
  EXPECT_TRUE(refusal.first_token());
  EXPECT_EQ(refusal.text(), "");
}

TEST(ChatStreamTracker, DeepSeekReasoningIsATokenButNotText) {
  ChatStreamTracker t;
  const std::string head =
      R"(data: {"id":"5f1e","object":"chat.completion.chunk","created":1738000000,)"
      R"("model":"deepseek-reasoner","system_fingerprint":"fp_7","choices":[{"index":0,"delta":)";
  t.Observe(head +
            R"({"role":"assistant","content":null,"reasoning_content":""},)"
            R"("logprobs":null,"finish_reason":null}]})" +
            "\n\n");
  EXPECT_FALSE(t.first_token());
  t.Observe(head +
            R"({"content":null,"reasoning_content":"Okay"},"logprobs":null,)"
            R"("finish_reason":null}]})" +
            "\n\n");
  EXPECT_TRUE(t.first_token());
  EXPECT_TRUE(t.reasoning());
  EXPECT_EQ(t.text(), "");
  t.Observe(head +
            R"({"content":"Hi","reasoning_content":null},"logprobs":null,)"
            R"("finish_reason":null}]})" +
            "\n\n");
  EXPECT_EQ(t.text(), "Hi");
  EXPECT_TRUE(t.continuable());
  EXPECT_EQ(t.id(), "5f1e");
}

TEST(ChatStreamTracker, ToolCallsAreATokenAndNotContinuable) {
  ChatStreamTracker t;
  t.Observe(kOpenAiRole);
  t.Observe(
      R"(data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1",)"
      R"("type":"function","function":{"name":"get_weather","arguments":""}}]},)"
      R"("finish_reason":null}]})"
      "\n\n");
  EXPECT_TRUE(t.first_token());
  EXPECT_TRUE(t.in_tool_call());
  EXPECT_FALSE(t.continuable());
}

TEST(ChatStreamTracker, SeveralChoicesKeepChoiceZerosTextAndAreNotContinuable) {
  ChatStreamTracker t;
  t.Observe(R"(data: {"id":"c","choices":[{"index":1,"delta":{"content":"B"}},)"
            R"({"delta":{"content":"b"},"index":1},{"delta":{"content":"A"},"index":0}]})"
            "\n\n");
  EXPECT_EQ(t.text(), "A");
  EXPECT_TRUE(t.first_token());
  EXPECT_FALSE(t.continuable());
}

TEST(ChatStreamTracker, MalformedJsonAddsNothingAndEndsContinuability) {
  for (std::string bad :
       {R"(data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}])",
        R"(data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}})",
        R"(data: {"choices":[{"index":0,"delta":{"content":"x"}}]} trailing)", "data: 42",
        "data: [\"x\"]", "data: {\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",
        R"(data: {"choices":[{"index":"0","delta":{"content":"x"}}]})",
        R"(data: {"choices":[{"index":0,"delta":{"content":["x"]}}]})"}) {
    SCOPED_TRACE(bad);
    ChatStreamTracker t;
    t.Observe(MockChunk("c", R"({"content":"ok "})"));
    t.Observe(bad + "\n\n");
    EXPECT_EQ(t.text(), "ok ");
    EXPECT_FALSE(t.continuable());
  }
}

TEST(ChatStreamTracker, CrlfAndMultiLineDataEvents) {
  ChatStreamTracker t;
  t.Observe(
      "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\r\n\r\n");
  t.Observe("data: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"b\"}}]}\r\n\r\n");
  t.Observe("id: 7\revent: message\rdata:{\"choices\":[{\"delta\":{\"content\":\"c\"}}]}\r\r");
  EXPECT_EQ(t.text(), "abc");
  EXPECT_TRUE(t.continuable());
}

TEST(ChatStreamTracker, EscapesAndSurrogatePairsAreDecodedInText) {
  ChatStreamTracker t;
  t.Observe(MockChunk("c", R"({"content":"caf\u00e9 \"q\" \\ \n"})"));
  t.Observe(MockChunk("c", R"({"content":"\ud83d\ude00 \u4e2d"})"));
  EXPECT_EQ(t.text(), "caf\xc3\xa9 \"q\" \\ \n\xf0\x9f\x98\x80 \xe4\xb8\xad");
  // A lone surrogate is not valid JSON text: the chunk adds nothing.
  t.Observe(MockChunk("c", R"({"content":"\ud83d"})"));
  EXPECT_EQ(t.text(), "caf\xc3\xa9 \"q\" \\ \n\xf0\x9f\x98\x80 \xe4\xb8\xad");
  EXPECT_FALSE(t.continuable());
}

TEST(ChatStreamTracker, HugeContentIsKeptWhole) {
  std::string big;
  for (int i = 0; i < 300000; ++i) big.push_back(static_cast<char>('a' + i % 26));
  ChatStreamTracker t;
  t.Observe(MockChunk("c", R"({"content":")" + big + R"("})"));
  t.Observe(MockChunk("c", R"({"content":"\u0041"})"));
  EXPECT_EQ(t.text(), big + "A");
}

TEST(ChatStreamTracker, FirstTokenModeStopsInspectingOnceATokenCame) {
  ChatStreamTracker t({.text = false});
  t.Observe(kOpenAiRole);
  EXPECT_FALSE(t.first_token());
  t.Observe(OpenAiContent(R"("Hel")"));
  EXPECT_TRUE(t.first_token());
  EXPECT_EQ(t.events(), 2u);
  t.Observe(OpenAiContent(R"("lo")"));
  t.Observe(kOpenAiStop);
  EXPECT_EQ(t.events(), 2u);  // not looked at
  EXPECT_EQ(t.text(), "");
  EXPECT_FALSE(t.finished());
  EXPECT_FALSE(t.continuable());
  EXPECT_EQ(t.id(), "chatcmpl-AbC");
}

TEST(ChatStreamTracker, ThroughSseParserAtEverySplitPoint) {
  const std::string stream = ": ping\n\n" + kOpenAiRole + OpenAiContent(R"("Hel")") +
                             "data: {\"id\":\"chatcmpl-AbC\",\"choices\":[{\"index\":0,"
                             "\"delta\":{\"content\":\"lo \\u00e9\"}}]}\r\n\r\n" +
                             kOpenAiStop + kDone;
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    ChatStreamTracker t;
    SseParser parser({.tracker = &t});
    ASSERT_EQ(FeedSplit(parser, stream, {cut}), stream) << cut;
    EXPECT_EQ(t.text(), "Hello \xc3\xa9") << cut;
    EXPECT_TRUE(t.first_token());
    EXPECT_TRUE(t.finished());
    EXPECT_TRUE(t.done());
    EXPECT_TRUE(parser.done());
    EXPECT_EQ(t.events(), 6u);
  }
  // Until the first content chunk is complete there is no token.
  ChatStreamTracker t;
  SseParser parser({.tracker = &t});
  const std::string head = ": ping\n\n" + kOpenAiRole + OpenAiContent(R"("Hel")");
  parser.Feed(std::string_view(head).substr(0, head.size() - 1));
  EXPECT_FALSE(t.first_token());
  parser.Feed("\n");
  EXPECT_TRUE(t.first_token());
}

TEST(ChatStreamTracker, AnUnframedOverLongEventEndsContinuability) {
  ChatStreamTracker t;
  SseParser parser({.max_event_bytes = 64, .tracker = &t});
  parser.Feed(MockChunk("c", R"({"content":"a"})"));
  EXPECT_TRUE(t.continuable());
  parser.Feed("data: {\"choices\":[{\"delta\":{\"content\":\"" + std::string(200, 'x'));
  EXPECT_FALSE(t.continuable());
  EXPECT_TRUE(t.first_token());
}

// The mock's continuation of "tok0 tok1 to": its own id, role in the first delta.
std::string MockContinuation(const std::string& eol) {
  auto chunk = [&](const std::string& delta, const std::string& finish) {
    return R"(data: {"id":"chatcmpl-b-9","object":"chat.completion.chunk","created":1700000999,)"
           R"("model":"m","choices":[{"index":0,"delta":)" +
           delta + R"(,"finish_reason":)" + finish + "}]}" + eol + eol;
  };
  return chunk(R"({"role":"assistant","content":""})", "null") +
         chunk(R"({"role":"assistant","content":"k2 "})", "null") +
         chunk(R"({"content":"tok3 "})", R"("stop")") +
         R"(data: {"id":"chatcmpl-b-9","object":"chat.completion.chunk","created":1700000999,)"
         R"("model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,)"
         R"("total_tokens":11}})" +
         eol + eol + ": bye" + eol + eol + "data: [DONE]" + eol + eol;
}

std::string ExpectedSeamless(const std::string& eol) {
  auto chunk = [&](const std::string& delta, const std::string& finish) {
    return R"(data: {"id":"chatcmpl-a-1","object":"chat.completion.chunk","created":1700000000,)"
           R"("model":"m","choices":[{"index":0,"delta":)" +
           delta + R"(,"finish_reason":)" + finish + "}]}" + eol + eol;
  };
  return chunk(R"({"content":"k2 "})", "null") + chunk(R"({"content":"tok3 "})", R"("stop")") +
         R"(data: {"id":"chatcmpl-a-1","object":"chat.completion.chunk","created":1700000000,)"
         R"("model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,)"
         R"("total_tokens":11}})" +
         eol + eol + ": bye" + eol + eol + "data: [DONE]" + eol + eol;
}

TEST(ContinuationFilter, MockContinuationBecomesPartOfTheOriginalStream) {
  for (std::string eol : {"\n", "\r\n", "\r"}) {
    SCOPED_TRACE(eol.size());
    const std::string stream = MockContinuation(eol);
    const std::string want = ExpectedSeamless(eol);
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
      ContinuationFilter filter("chatcmpl-a-1", 1700000000);
      ChatStreamTracker t;
      SseParser parser({.tracker = &t, .continuation = &filter});
      ASSERT_EQ(FeedSplit(parser, stream, {cut}), want) << cut;
      EXPECT_EQ(t.text(), "k2 tok3 ");
      EXPECT_EQ(t.id(), "chatcmpl-a-1");  // the tracker sees what the client sees
      EXPECT_EQ(filter.dropped(), 1u);
      EXPECT_EQ(filter.replaced(), 3u);
      ASSERT_TRUE(parser.usage().has_value());
      EXPECT_EQ(parser.usage()->completion_tokens, 2u);
      EXPECT_TRUE(parser.done());
    }
  }
}

TEST(ContinuationFilter, VerdictsOnSingleEvents) {
  ContinuationFilter f("orig \"id\"", 5);
  auto verdict = [&](const std::string& e) { return f.Filter(e).verdict; };
  using V = ContinuationFilter::Verdict;
  EXPECT_EQ(verdict(kOpenAiRole), V::kDrop);
  EXPECT_EQ(verdict(R"(data: {"choices":[{"index":0,"delta":{}}]})"
                    "\n\n"),
            V::kDrop);
  EXPECT_EQ(verdict(R"(data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]})"
                    "\n\n"),
            V::kDrop);
  EXPECT_EQ(verdict(kDone), V::kKeep);
  EXPECT_EQ(verdict(": comment\n\n"), V::kKeep);
  EXPECT_EQ(verdict("data: not json\n\n"), V::kKeep);
  EXPECT_EQ(verdict("data: {\"choices\":[]}\n\n"), V::kKeep);  // no id: nothing to edit
  // A finish-only chunk and a tool call carry something.
  auto r = f.Filter(kOpenAiStop);
  ASSERT_EQ(r.verdict, V::kReplace);
  EXPECT_EQ(r.bytes,
            R"(data: {"id":"orig \"id\"","object":"chat.completion.chunk","created":5,)"
            R"("model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,)"
            R"("delta":{},"logprobs":null,"finish_reason":"stop"}]})"
            "\n\n");
  r = f.Filter(R"(data: {"choices":[{"delta":{"role":"assistant","tool_calls":[{"index":0}]}}]})"
               "\n\n");
  ASSERT_EQ(r.verdict, V::kReplace);
  EXPECT_EQ(r.bytes, R"(data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]})"
                     "\n\n");
  // role as the last member, with spaces; other fields and lines stay byte for byte.
  r = f.Filter(
      "id: 3\ndata: { \"choices\" : [ { \"delta\" : { \"content\" : \"x\" , "
      "\"role\" : \"assistant\" } } ] }\n\n");
  ASSERT_EQ(r.verdict, V::kReplace);
  EXPECT_EQ(r.bytes,
            "id: 3\ndata: { \"choices\" : [ { \"delta\" : { \"content\" : \"x\"  } } ] }\n\n");
  // Several data lines become one.
  r = f.Filter("data: {\"id\":\"b\",\ndata: \"choices\":[{\"delta\":{\"content\":\"y\"}}]}\n\n");
  ASSERT_EQ(r.verdict, V::kReplace);
  EXPECT_EQ(
      r.bytes,
      "data: {\"id\":\"orig \\\"id\\\"\", \"choices\":[{\"delta\":{\"content\":\"y\"}}]}\n\n");
  // An empty id and created 0 keep the event's own.
  ContinuationFilter keep_ids("", 0);
  r = keep_ids.Filter(MockChunk("own", R"({"content":"z"})"));
  EXPECT_EQ(r.verdict, V::kKeep);
}

TEST(AppendAssistantPrefill, AppendsAsTheLastMessageAndKeepsEveryOtherByte) {
  const std::string body =
      R"({"model":"gpt-4o", "messages": [{"role":"user","content":"hi"}] ,"stream":true})";
  EXPECT_EQ(AppendAssistantPrefill(body, "tok0 to"),
            R"({"model":"gpt-4o", "messages": [{"role":"user","content":"hi"},)"
            R"({"role":"assistant","content":"tok0 to"}] ,"stream":true})");
  EXPECT_EQ(AppendAssistantPrefill(R"({"messages":[]})", ""),
            R"({"messages":[{"role":"assistant","content":""}]})");
  EXPECT_EQ(AppendAssistantPrefill("{\"messages\":[ \n ]}", "a"),
            "{\"messages\":[ \n {\"role\":\"assistant\",\"content\":\"a\"}]}");
  EXPECT_EQ(AppendAssistantPrefill("{\"messages\":[1 \n ] }", "a"),
            "{\"messages\":[1 \n ,{\"role\":\"assistant\",\"content\":\"a\"}] }");
}

TEST(AppendAssistantPrefill, FindsTheTopLevelArrayNotLookalikesInsideStrings) {
  const std::string body =
      R"({"metadata":{"messages":[{"role":"x"}]},"note":"\"messages\":[]",)"
      R"("messages":[{"role":"user","content":"a ] \"messages\": [ }"}],"tail":["]"]})";
  auto out = AppendAssistantPrefill(body, "q");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, R"({"metadata":{"messages":[{"role":"x"}]},"note":"\"messages\":[]",)"
                  R"("messages":[{"role":"user","content":"a ] \"messages\": [ }"},)"
                  R"({"role":"assistant","content":"q"}],"tail":["]"]})");
  auto j = nlohmann::json::parse(*out);
  EXPECT_EQ(j["messages"].size(), 2u);
  EXPECT_EQ(j["messages"][1]["content"], "q");
  // An escaped key is the same key.
  EXPECT_EQ(AppendAssistantPrefill(R"({"m\u0065ssages":[]})", "x"),
            R"({"m\u0065ssages":[{"role":"assistant","content":"x"}]})");
}

TEST(AppendAssistantPrefill, TextIsJsonEscaped) {
  const std::string text = "say \"hi\"\\ \n\t\x01 caf\xc3\xa9 \xf0\x9f\x98\x80";
  auto out = AppendAssistantPrefill(R"({"messages":[]})", text);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(nlohmann::json::parse(*out)["messages"][0]["content"], text);
  EXPECT_NE(out->find(R"(say \"hi\"\\ \n\t\u0001)"), std::string::npos) << *out;
}

TEST(AppendAssistantPrefill, NoUsableMessagesArrayGivesNullopt) {
  for (std::string body :
       {"", "[]", "{}", R"({"messages":{}})", R"({"messages":"[]"})", R"({"messages":null})",
        R"({"messages":[],"messages":[]})", R"({"messages":[]} x)", R"({"messages":[)",
        R"({"a":{"messages":[]}})", "{\"messages\":[\"\xff\"]"}) {
    SCOPED_TRACE(body);
    EXPECT_FALSE(AppendAssistantPrefill(body, "x").has_value());
  }
}

// Hostile bytes: random cuts and mutations of real events must not crash any of the three.
TEST(ChatStream, HostileInputsDoNotCrash) {
  const std::string seed = MockContinuation("\n") + kOpenAiRole +
                           OpenAiContent(R"("\ud83d\ude00")") + kOpenAiStop +
                           R"(data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]})" + "\n\n";
  std::mt19937 rng(12345);
  for (int round = 0; round < 3000; ++round) {
    std::string s = seed;
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s[at] = static_cast<char>(rng() % 256);
          break;
        case 1:
          s.erase(at, 1 + rng() % 16);
          break;
        case 2:
          s.insert(at, std::string(1 + rng() % 4, "{}[]\",:\\\r\n"[rng() % 10]));
          break;
        default:
          s.resize(at);
          break;
      }
    }
    ContinuationFilter filter("id", 1);
    ChatStreamTracker t;
    SseParser parser({.max_event_bytes = 512, .tracker = &t, .continuation = &filter});
    FeedSplit(parser, s, {s.size() / 3, s.size() / 2});
    (void)AppendAssistantPrefill(s, t.text());
  }
}

}  // namespace
}  // namespace llmproxy
