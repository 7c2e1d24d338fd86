// SSE framing over arbitrary chunk boundaries, [DONE], usage extraction and the
// usage-only chunk that stream_usage: request hides.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/protocols/sse_parser.h"

namespace llmproxy {

// Readable failures: {prompt, completion, cached} instead of bytes.
void PrintTo(const TokenUsage& u, std::ostream* os) {
  *os << "{" << u.prompt_tokens << ", " << u.completion_tokens << ", " << u.cached_prompt_tokens
      << "}";
}

namespace {

const std::string kChunk1 =
    "data: "
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}"
    "\n\n";
const std::string kChunk2 =
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\\n\\n\"}}]}\n\n";
const std::string kUsageOnly =
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,"
    "\"total_tokens\":46}}\n\n";
const std::string kDone = "data: [DONE]\n\n";

std::string SampleStream() {
  return ": keep-alive comment\n\n" + kChunk1 + kChunk2 + kUsageOnly + kDone;
}

// Feeds `stream` split at the given positions; returns everything forwarded.
std::string FeedSplit(SseParser& parser, const std::string& stream,
                      const std::vector<size_t>& cuts) {
  std::string out;
  size_t prev = 0;
  for (size_t cut : cuts) {
    out.append(parser.Feed(std::string_view(stream).substr(prev, cut - prev)));
    prev = cut;
  }
  out.append(parser.Feed(std::string_view(stream).substr(prev)));
  out.append(parser.Finish());
  return out;
}

TEST(SseParser, WholeStreamPassesThroughIntact) {
  SseParser parser;
  const std::string stream = SampleStream();
  EXPECT_EQ(parser.Feed(stream), stream);
  EXPECT_EQ(parser.Finish(), "");
  EXPECT_TRUE(parser.done());
  EXPECT_EQ(parser.events(), 5u);
  ASSERT_TRUE(parser.usage().has_value());
  EXPECT_EQ(*parser.usage(), (TokenUsage{12, 34}));
}

TEST(SseParser, EverySingleSplitPointGivesTheSameBytesAndWholeEvents) {
  const std::string stream = SampleStream();
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser parser;
    std::string out;
    const std::string_view first = parser.Feed(std::string_view(stream).substr(0, cut));
    // Only whole events are forwarded: the output so far ends at an event boundary.
    if (!first.empty()) {
      EXPECT_TRUE(first.size() >= 2 && first.substr(first.size() - 2) == "\n\n") << cut;
    }
    out.append(first);
    out.append(parser.Feed(std::string_view(stream).substr(cut)));
    out.append(parser.Finish());
    EXPECT_EQ(out, stream) << "cut at " << cut;
    EXPECT_TRUE(parser.done()) << cut;
    EXPECT_EQ(parser.usage().value_or(TokenUsage{}), (TokenUsage{12, 34})) << cut;
    EXPECT_EQ(parser.events(), 5u) << cut;
  }
}

TEST(SseParser, EveryPairOfSplitPoints) {
  const std::string stream = kChunk1 + kUsageOnly + kDone;
  for (size_t a = 0; a <= stream.size(); ++a) {
    for (size_t b = a; b <= stream.size(); b += 3) {
      SseParser parser;
      ASSERT_EQ(FeedSplit(parser, stream, {a, b}), stream) << a << "," << b;
      ASSERT_TRUE(parser.done());
      ASSERT_TRUE(parser.usage().has_value());
    }
  }
}

TEST(SseParser, ByteAtATime) {
  const std::string stream = SampleStream();
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
  SseParser parser;
  EXPECT_EQ(FeedSplit(parser, stream, cuts), stream);
  EXPECT_TRUE(parser.done());
  EXPECT_EQ(parser.events(), 5u);
}

TEST(SseParser, CrLfFraming) {
  const std::string stream =
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r\n"
      "data: [DONE]\r\n\r\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser parser;
    EXPECT_EQ(FeedSplit(parser, stream, {cut}), stream) << cut;
    EXPECT_EQ(parser.events(), 3u) << cut;
    EXPECT_TRUE(parser.done()) << cut;
    EXPECT_EQ(parser.usage().value_or(TokenUsage{}), (TokenUsage{1, 2})) << cut;
  }
}

TEST(SseParser, PartialEventIsHeldBack) {
  SseParser parser;
  EXPECT_EQ(parser.Feed("data: {\"a\":"), "");
  EXPECT_EQ(parser.pending_bytes(), 11u);
  EXPECT_EQ(parser.Feed("1}\n"), "");
  EXPECT_EQ(parser.Feed("\ndata: x"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(parser.Feed("\n\n"), "data: x\n\n");
  EXPECT_EQ(parser.pending_bytes(), 0u);
}

TEST(SseParser, DropsUsageOnlyEventWhenAsked) {
  const std::string stream = SampleStream();
  const std::string expected = ": keep-alive comment\n\n" + kChunk1 + kChunk2 + kDone;
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser parser(SseParserOptions{.drop_usage_only_events = true});
    EXPECT_EQ(FeedSplit(parser, stream, {cut}), expected) << cut;
    EXPECT_EQ(parser.usage().value_or(TokenUsage{}), (TokenUsage{12, 34})) << cut;
    EXPECT_TRUE(parser.done());
  }
}

TEST(SseParser, KeepsChunksWithContentAndUsage) {
  // Some providers put usage on the last content chunk: never drop content.
  const std::string event =
      "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":5,"
      "\"completion_tokens\":6}}\n\n";
  SseParser parser(SseParserOptions{.drop_usage_only_events = true});
  EXPECT_EQ(parser.Feed(event), event);
  EXPECT_EQ(parser.usage().value_or(TokenUsage{}), (TokenUsage{5, 6}));
}

TEST(SseParser, OverlongEventIsPassedThroughNotBuffered) {
  SseParser parser(SseParserOptions{.drop_usage_only_events = false, .max_event_bytes = 64});
  const std::string big = "data: " + std::string(200, 'z');
  std::string out;
  out.append(parser.Feed(big.substr(0, 100)));
  EXPECT_LE(parser.pending_bytes(), 64u);
  out.append(parser.Feed(big.substr(100)));
  out.append(parser.Feed("\n"));
  out.append(parser.Feed("\ndata: [DONE]\n\n"));
  out.append(parser.Finish());
  EXPECT_EQ(out, big + "\n\ndata: [DONE]\n\n");
  EXPECT_TRUE(parser.done());
  EXPECT_EQ(parser.events(), 2u);
}

TEST(SseParser, FinishReturnsUnterminatedTail) {
  SseParser parser;
  EXPECT_EQ(parser.Feed("data: a\n\ndata: [DONE]\n"), "data: a\n\n");
  EXPECT_EQ(parser.Finish(), "data: [DONE]\n");
  EXPECT_TRUE(parser.done());
}

TEST(SseParser, NoDoneWhenStreamBreaks) {
  SseParser parser;
  parser.Feed(kChunk1 + kChunk2);
  parser.Finish();
  EXPECT_FALSE(parser.done());
  EXPECT_FALSE(parser.usage().has_value());
}

TEST(SseParser, UsageNullChunksAreCheapAndIgnoredButSplitUsageIsFound) {
  SseParser parser;
  const std::string stream = kChunk1 + kChunk1 +
                             "data: {\"choices\":[],\"usage\":\n"
                             "data: {\"prompt_tokens\":2,\"completion_tokens\":3}}\n\n" +
                             kDone;
  EXPECT_EQ(parser.Feed(stream), stream);
  EXPECT_EQ(parser.usage().value_or(TokenUsage{}), (TokenUsage{2, 3}));
  EXPECT_TRUE(parser.done());
}

TEST(SseEvent, InspectsDataLines) {
  EXPECT_TRUE(InspectSseEvent("data: [DONE]\n\n").is_done);
  EXPECT_TRUE(InspectSseEvent("data:[DONE]\r\n\r\n").is_done);
  EXPECT_FALSE(InspectSseEvent("data: {\"text\":\"[DONE]\"}\n\n").is_done);
  EXPECT_FALSE(InspectSseEvent(": comment [DONE]\n\n").is_done);
  // Multi-line data joins with '\n'.
  const SseEventInfo multi = InspectSseEvent(
      "event: message\ndata: {\"choices\":[],\n"
      "data: \"usage\":{\"prompt_tokens\":7,\"completion_tokens\":8}}\n\n");
  EXPECT_TRUE(multi.has_usage);
  EXPECT_TRUE(multi.usage_only);
  EXPECT_EQ(multi.usage, (TokenUsage{7, 8}));
  // usage:null or malformed JSON carries nothing.
  EXPECT_FALSE(InspectSseEvent("data: {\"choices\":[],\"usage\":null}\n\n").has_usage);
  EXPECT_FALSE(InspectSseEvent("data: {\"usage\":{\"prompt_tokens\":\n\n").has_usage);
  EXPECT_FALSE(InspectSseEvent("data: {\"usage\":{\"other\":1}}\n\n").has_usage);
}

TEST(Usage, FromPlainJsonBody) {
  EXPECT_EQ(
      ExtractUsageFromJson(
          R"({"id":"x","choices":[{"message":{"content":"\"usage\":{}"}}],"usage":{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19}})")
          .value_or(TokenUsage{}),
      (TokenUsage{9, 10}));
  EXPECT_EQ(ExtractUsageFromJson(R"({"usage":{"prompt_tokens":4}})").value_or(TokenUsage{}),
            (TokenUsage{4, 0}));
  EXPECT_FALSE(ExtractUsageFromJson(R"({"usage":null})").has_value());
  EXPECT_FALSE(ExtractUsageFromJson(R"({"choices":[]})").has_value());
  EXPECT_FALSE(ExtractUsageFromJson("not json").has_value());
  EXPECT_FALSE(ExtractUsageFromJson(R"({"usage":{"prompt_tokens":"many"}})").has_value());
}

std::optional<TokenUsage> Usage(std::string_view body) { return ExtractUsageFromJson(body); }

TEST(Usage, KeyInsideStringsOrNestedObjectsIsNotTheUsage) {
  // "usage" only as a string value, or only nested: no top-level usage.
  EXPECT_FALSE(Usage(R"({"note":"usage","x":{"usage":{"prompt_tokens":1}}})").has_value());
  EXPECT_FALSE(Usage(R"({"choices":[{"message":{"content":"{\"usage\":{\"prompt_tokens\":5}}"}}]})")
                   .has_value());
  // A nested decoy before the real one.
  EXPECT_EQ(Usage(R"({"meta":{"usage":{"prompt_tokens":100}},"usage":{"prompt_tokens":3,)"
                  R"("completion_tokens":4}})"),
            (TokenUsage{3, 4}));
  // Keys inside usage's own nested objects do not count.
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens_details":{"cached_tokens":7,"prompt_tokens":99},)"
                  R"("completion_tokens_details":{"reasoning_tokens":2,"completion_tokens":98},)"
                  R"("prompt_tokens":11,"completion_tokens":12,"total_tokens":23}})"),
            (TokenUsage{11, 12, 7}));
  // cached_tokens outside prompt_tokens_details is not the cached count.
  EXPECT_EQ(Usage(R"({"usage":{"cached_tokens":5,"completion_tokens_details":{"cached_tokens":4},)"
                  R"("prompt_tokens":9}})"),
            (TokenUsage{9, 0, 0}));
  EXPECT_EQ(Usage(R"({"usage":{"extra":[1,{"prompt_tokens":5},[[]],"]}",null,true,-1.5e3],)"
                  R"("completion_tokens":6}})"),
            (TokenUsage{0, 6}));
}

TEST(Usage, WhitespaceKeyOrderEscapesAndDuplicates) {
  EXPECT_EQ(Usage(" \n{ \"usage\" :\t{\r\n \"completion_tokens\" : 2 ,\n \"prompt_tokens\":1 } } "),
            (TokenUsage{1, 2}));
  EXPECT_EQ(Usage(R"({"usage":{"completion_tokens":8,"prompt_tokens":7},"id":"z"})"),
            (TokenUsage{7, 8}));
  // Escaped quotes and backslashes in strings around and inside usage.
  EXPECT_EQ(Usage(R"({"a":"x\"}\\","usage":{"name":"q\"\\\"","prompt_tokens":5}})"),
            (TokenUsage{5, 0}));
  // Escaped key spelling is the same key.
  EXPECT_EQ(Usage(R"({"usage":{"prompt\u005ftokens":6,"\u0063ompletion_tokens":1}})"),
            (TokenUsage{6, 1}));
  EXPECT_EQ(Usage(R"({"\u0075sage":{"prompt_tokens":2}})"), (TokenUsage{2, 0}));
  // Duplicate keys: the last one wins, like the JSON parsers upstreams are tested with.
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":"x","prompt_tokens":4}})"), (TokenUsage{4, 0}));
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":1},"usage":{"completion_tokens":9}})"),
            (TokenUsage{0, 9}));
}

TEST(Usage, CountValues) {
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":null,"completion_tokens":3}})"), (TokenUsage{0, 3}));
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":-5,"completion_tokens":0}})"), (TokenUsage{0, 0}));
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":-0}})"), (TokenUsage{0, 0}));
  // Neither count present, or empty: no usage.
  EXPECT_FALSE(Usage(R"({"usage":{}})").has_value());
  EXPECT_FALSE(Usage(R"({"usage":{"total_tokens":5}})").has_value());
  // Non-integers make the usage unusable.
  for (const char* bad : {"1.5", "1e3", "1.0", "true", "\"7\"", "[1]", "{}", "-2.5"}) {
    const std::string body =
        std::string(R"({"usage":{"completion_tokens":1,"prompt_tokens":)") + bad + "}}";
    EXPECT_FALSE(Usage(body).has_value()) << body;
  }
  // Malformed usage objects.
  for (const char* bad : {R"({"usage":{"prompt_tokens":1,}})", R"({"usage":{"prompt_tokens":01}})",
                          R"({"usage":{"prompt_tokens":1)", R"({"usage":{"prompt_tokens"1}})",
                          R"({"usage":{prompt_tokens:1}})", R"({"usage":[{"prompt_tokens":1}]})",
                          R"({"usage":"{\"prompt_tokens\":1}"})"}) {
    EXPECT_FALSE(Usage(bad).has_value()) << bad;
  }
}

TEST(Usage, CachedPromptTokensOfOpenAIAndDeepSeek) {
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":2006,"completion_tokens":300,)"
                  R"("prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0}}})"),
            (TokenUsage{2006, 300, 1920}));
  // DeepSeek's own field, when the OpenAI one is absent or 0.
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":50,"completion_tokens":1,)"
                  R"("prompt_cache_hit_tokens":32,"prompt_cache_miss_tokens":18}})"),
            (TokenUsage{50, 1, 32}));
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":50,"prompt_cache_hit_tokens":32,)"
                  R"("prompt_tokens_details":{"cached_tokens":0}}})"),
            (TokenUsage{50, 0, 32}));
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":50,"prompt_cache_hit_tokens":32,)"
                  R"("prompt_tokens_details":{"cached_tokens":16}}})"),
            (TokenUsage{50, 0, 16}));
  // Duplicates: the last details object, and the last count inside it, win.
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":50,"prompt_tokens_details":{"cached_tokens":9},)"
                  R"("prompt_tokens_details":{"cached_tokens":3,"cached_tokens":4}}})"),
            (TokenUsage{50, 0, 4}));
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":50,"prompt_tokens_details":{"cached_tokens":9},)"
                  R"("prompt_tokens_details":{}}})"),
            (TokenUsage{50, 0, 0}));
}

// A hostile or confused upstream's cached count never makes the usage unusable and never
// exceeds the prompt tokens it is part of.
TEST(Usage, HostileCachedCountsReadAsZeroAndKeepTheUsage) {
  for (const char* details :
       {R"("x")", "7", "null", "true", "[1]", R"({"cached_tokens":"7"})",
        R"({"cached_tokens":1.5})", R"({"cached_tokens":1e3})", R"({"cached_tokens":-3})",
        R"({"cached_tokens":null})", R"({"cached_tokens":[7]})", R"({"cached_tokens":{"n":7}})",
        R"({"cached_tokens":18446744073709551616})", R"({"cached_tokens":-9223372036854775809})",
        R"({"other":7})"}) {
    const std::string body = std::string(R"({"usage":{"prompt_tokens":10,"completion_tokens":2,)") +
                             R"("prompt_tokens_details":)" + details + "}}";
    EXPECT_EQ(Usage(body), (TokenUsage{10, 2, 0})) << body;
  }
  for (const char* count :
       {R"("7")", "1.5", "-3", "null", "[7]", R"({"n":7})", "1e3", "18446744073709551616"}) {
    const std::string hit =
        std::string(R"({"usage":{"prompt_tokens":10,"prompt_cache_hit_tokens":)") + count + "}}";
    EXPECT_EQ(Usage(hit), (TokenUsage{10, 0, 0})) << hit;
  }
  // More cached than prompt tokens: cut to the prompt tokens.
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":99}}})"),
            (TokenUsage{10, 0, 10}));
  EXPECT_EQ(Usage(R"({"usage":{"completion_tokens":3,"prompt_cache_hit_tokens":5}})"),
            (TokenUsage{0, 3, 0}));
  // Malformed JSON inside the details is malformed usage, as anywhere inside usage.
  for (const char* bad :
       {R"({"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":}}})",
        R"({"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":1,}}})",
        R"({"usage":{"prompt_tokens":1,"prompt_tokens_details":[1,]}})",
        R"({"usage":{"prompt_tokens":1,"prompt_tokens_details":{"a":tru}}})"}) {
    EXPECT_FALSE(Usage(bad).has_value()) << bad;
  }
  // Deep nesting inside the details: skipped up to the limit, refused beyond it.
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":4,"prompt_tokens_details":{"x":)" + deep +
                  R"(,"cached_tokens":2}}})"),
            (TokenUsage{4, 0, 2}));
  const std::string too_deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(
      Usage(R"({"usage":{"prompt_tokens":4,"prompt_tokens_details":{"x":)" + too_deep + R"(}}})")
          .has_value());
}

// Huge numbers: counts up to 2^64-1 are read exactly; beyond that (or a negative below
// -2^63) the usage is rejected (nullopt), never wrapped or clamped.
TEST(Usage, HugeNumbersAreExactOrRejected) {
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":18446744073709551615}})"),
            (TokenUsage{18446744073709551615ULL, 0}));
  EXPECT_FALSE(Usage(R"({"usage":{"prompt_tokens":18446744073709551616}})").has_value());
  EXPECT_FALSE(
      Usage(R"({"usage":{"prompt_tokens":1,"completion_tokens":99999999999999999999999999}})")
          .has_value());
  EXPECT_EQ(Usage(R"({"usage":{"prompt_tokens":-9223372036854775808}})"), (TokenUsage{0, 0}));
  EXPECT_FALSE(Usage(R"({"usage":{"prompt_tokens":-9223372036854775809}})").has_value());
}

// Deep nesting inside usage is skipped without recursion; beyond the limit it is rejected
// rather than risking the stack.
TEST(Usage, DeepNestingInsideUsage) {
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  EXPECT_EQ(Usage(R"({"usage":{"x":)" + deep + R"(,"prompt_tokens":1}})"), (TokenUsage{1, 0}));
  const std::string too_deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(Usage(R"({"usage":{"x":)" + too_deep + R"(,"prompt_tokens":1}})").has_value());
}

// A plain nlohmann DOM reading of the same rules, independent of json_reader.
std::optional<TokenUsage> DomUsage(std::string_view body) {
  const nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  const auto usage = doc.find("usage");
  if (usage == doc.end() || !usage->is_object()) return std::nullopt;
  if (!usage->contains("prompt_tokens") && !usage->contains("completion_tokens")) {
    return std::nullopt;
  }
  TokenUsage out;
  for (auto [key, dst] : {std::pair<const char*, uint64_t*>{"prompt_tokens", &out.prompt_tokens},
                          {"completion_tokens", &out.completion_tokens}}) {
    const auto it = usage->find(key);
    if (it == usage->end() || it->is_null()) continue;
    if (it->is_number_unsigned()) {
      *dst = it->get<uint64_t>();
    } else if (it->is_number_integer()) {
      *dst = it->get<int64_t>() < 0 ? 0 : static_cast<uint64_t>(it->get<int64_t>());
    } else {
      return std::nullopt;
    }
  }
  // Cached: a non-negative integer or 0; OpenAI's field, else DeepSeek's; at most prompt.
  auto count = [](const nlohmann::json& v) -> uint64_t {
    return v.is_number_unsigned() ? v.get<uint64_t>() : 0;
  };
  if (const auto d = usage->find("prompt_tokens_details"); d != usage->end() && d->is_object()) {
    if (const auto c = d->find("cached_tokens"); c != d->end())
      out.cached_prompt_tokens = count(*c);
  }
  if (const auto hit = usage->find("prompt_cache_hit_tokens");
      out.cached_prompt_tokens == 0 && hit != usage->end()) {
    out.cached_prompt_tokens = count(*hit);
  }
  out.cached_prompt_tokens = std::min(out.cached_prompt_tokens, out.prompt_tokens);
  return out;
}

struct GoldenUsage {
  std::string json;
  std::optional<TokenUsage> usage;
  bool usage_only = false;
};

// Chunks and bodies shaped as providers send them, with the usage a person read off them.
const std::vector<GoldenUsage>& Goldens() {
  static const std::vector<GoldenUsage> goldens = {
      // OpenAI, stream_options.include_usage final chunk.
      {R"({"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f85bea6784","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}})",
       TokenUsage{20, 9}, true},
      // OpenAI, a cache hit (prompt caching: cached_tokens are part of prompt_tokens).
      {R"({"id":"chatcmpl-C1","object":"chat.completion","created":1730,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}})",
       TokenUsage{2006, 300, 1920}, false},
      // DeepSeek, a cache hit reported its own way.
      {R"({"id":"a1","object":"chat.completion.chunk","model":"deepseek-chat","choices":[],"usage":{"prompt_tokens":64,"completion_tokens":5,"total_tokens":69,"prompt_cache_hit_tokens":48,"prompt_cache_miss_tokens":16}})",
       TokenUsage{64, 5, 48}, true},
      // OpenAI content chunk with "usage":null.
      {R"({"id":"chatcmpl-B9","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null})",
       std::nullopt},
      // DeepSeek: usage on the last content chunk, cache fields.
      {R"({"id":"930c60df","object":"chat.completion.chunk","created":1738,"model":"deepseek-chat","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":18,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":11}})",
       TokenUsage{11, 18}, false},
      // A non-streamed completion with the usage key first and text that mentions usage.
      {R"({"usage":{"completion_tokens":7,"prompt_tokens":5},"id":"x","choices":[{"message":{"role":"assistant","content":"\"usage\":{\"prompt_tokens\":99}"},"finish_reason":"stop"}]})",
       TokenUsage{5, 7}, false},
      // VolcEngine-style pretty-printed body.
      {"{\n  \"choices\": [],\n  \"usage\": {\n    \"prompt_tokens\": 3,\n    "
       "\"completion_tokens\": "
       "4\n  }\n}",
       TokenUsage{3, 4}, true},
      {R"({"choices":[],"usage":{"prompt_tokens":1.5,"completion_tokens":2}})", std::nullopt},
      {R"({"choices":[],"usage":{"prompt_tokens":"3"}})", std::nullopt},
      {R"({"usage":{"prompt_tokens":4294967296000,"completion_tokens":null}})",
       TokenUsage{4294967296000ULL, 0}, true},
      {R"({"usage":{"prompt_tokens":2},"usage":null})", std::nullopt},
      {R"({"choices":{},"usage":{"prompt_tokens":2}})", TokenUsage{2, 0}, false},
      {R"({"choices":[],"usage":{"prompt_tokens":2})", std::nullopt},  // truncated
  };
  return goldens;
}

TEST(Usage, GoldenValuesOfRealShapedChunks) {
  for (const GoldenUsage& g : Goldens()) {
    EXPECT_EQ(ExtractUsageFromJson(g.json), g.usage) << g.json;
    // The stream path reads the same JSON inside an event (one data line per JSON line).
    std::string data;
    for (char c : g.json) data += c == '\n' ? std::string("\ndata: ") : std::string(1, c);
    const SseEventInfo info = InspectSseEvent("data: " + data + "\n\n");
    EXPECT_EQ(info.has_usage, g.usage.has_value()) << g.json;
    if (g.usage) {
      EXPECT_EQ(info.usage, *g.usage) << g.json;
      EXPECT_EQ(info.usage_only, g.usage_only) << g.json;
    }
  }
}

TEST(Usage, AgreesWithADomParser) {
  std::vector<std::string> bodies = {
      R"({"usage":{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19}})",
      R"({"usage":{"prompt_tokens":"x","prompt_tokens":4}})",
      R"({"usage":{"prompt_tokens":4,"prompt_tokens":"x"}})",
      R"({"usage":{"prompt_tokens":1},"usage":{"completion_tokens":9}})",
      R"({"usage":{"prompt_tokens":null}})",
      R"({"usage":{"completion_tokens":-7,"prompt_tokens":-0}})",
      R"({"usage":{"prompt_tokens":18446744073709551615}})",
      R"({"usage":{"prompt_tokens":18446744073709551616}})",
      R"({"usage":{"prompt_tokens":-9223372036854775808}})",
      R"({"usage":{"prompt_tokens":-9223372036854775809}})",
      R"({"usage":{"prompt_tokens":1.0}})",
      R"({"usage":{"prompt_tokens":1E2}})",
      R"({"usage":{"prompt_tokens":false}})",
      R"({"usage":{"prompt_tokens":{"n":1}}})",
      R"({"usage":{"prompt\u005ftokens":6}})",
      R"({"usage":{"prompt_tokens_details":{"cached_tokens":1},"completion_tokens":3}})",
      R"({"usage":{"prompt_tokens":8,"prompt_tokens_details":{"cached_tokens":5}}})",
      R"({"usage":{"prompt_tokens":8,"prompt_tokens_details":{"cached_tokens":-5}}})",
      R"({"usage":{"prompt_tokens":8,"prompt_tokens_details":{"cached_tokens":"5"}}})",
      R"({"usage":{"prompt_tokens":8,"prompt_tokens_details":5}})",
      R"({"usage":{"prompt_tokens":8,"prompt_cache_hit_tokens":6}})",
      R"({"usage":{"prompt_tokens":8,"prompt_cache_hit_tokens":60}})",
      R"({"usage":{"total_tokens":3}})",
      R"({"usage":{}})",
      R"({"usage":[]})",
      R"({"usage":null})",
      R"( { "usage" : { "completion_tokens" : 2 , "prompt_tokens" : 1 } } )",
      R"({"a":"\"usage\":{\"prompt_tokens\":1}","usage":{"prompt_tokens":2}})",
  };
  for (const GoldenUsage& g : Goldens()) bodies.push_back(g.json);
  for (const std::string& body : bodies) {
    EXPECT_EQ(ExtractUsageFromJson(body), DomUsage(body)) << body;
  }
}

// A std::string body is read in place when its capacity leaves the padding.
TEST(Usage, StringBodiesUseTheirCapacity) {
  std::string body = R"({"usage":{"prompt_tokens":1,"completion_tokens":2}})";
  body.reserve(body.size() + 2 * kJsonPadding);
  EXPECT_EQ(ExtractUsageFromJson(body), (TokenUsage{1, 2}));
  body.shrink_to_fit();
  EXPECT_EQ(ExtractUsageFromJson(body), (TokenUsage{1, 2}));
}

// The events of SampleStream() as (lines, expected kept in drop mode).
struct Event {
  std::vector<std::string> lines;
  bool usage_only = false;
};
const std::vector<Event>& SampleEvents() {
  static const std::vector<Event> events = {
      {{": keep-alive comment"}},
      {{"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],"
        "\"usage\":null}"}},
      {{"event: message", "data: {\"choices\":[{\"delta\":{\"content\":\"lo\\r\\n\"}}],",
        "data: \"x\":1}"}},
      {{"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,"
        "\"completion_tokens\":34}}"},
       true},
      {{"data: [DONE]"}},
  };
  return events;
}

// The stream with every line ended by `eol` (mixed: rotating through the three).
std::string BuildStream(const std::vector<std::string_view>& eols, bool drop_usage_only) {
  std::string out;
  size_t k = 0;
  for (const Event& e : SampleEvents()) {
    std::string event;
    for (const std::string& line : e.lines) event += line + std::string(eols[k++ % eols.size()]);
    event += eols[k++ % eols.size()];
    if (!(drop_usage_only && e.usage_only)) out += event;
  }
  return out;
}

// Where each event of `stream` becomes complete: just past the byte that makes its blank
// line (for a CR-ended blank line that is the CR, whether or not an LF follows).
std::vector<size_t> CompletionPoints(const std::string& stream) {
  std::vector<size_t> points;
  bool line_start = false;
  for (size_t i = 0; i < stream.size(); ++i) {
    const char c = stream[i];
    if (c == '\n' && i > 0 && stream[i - 1] == '\r') continue;  // the LF of a CRLF
    if (c == '\n' || c == '\r') {
      if (line_start) {
        points.push_back(i + 1);
        line_start = false;
        if (c == '\r' && i + 1 < stream.size() && stream[i + 1] == '\n') ++i;
        continue;
      }
      line_start = true;
    } else {
      line_start = false;
    }
  }
  return points;
}

// Mixed styles never put a lone CR right before an LF (that pair is one CRLF).
const std::vector<std::vector<std::string_view>> kLineEndStyles = {
    {"\n"}, {"\r\n"}, {"\r"}, {"\n", "\r", "\r\n"}, {"\r\n", "\r"}, {"\r", "\r\n"}};

// Issue 10 item 11: every line-ending style, the stream cut at every byte offset: the
// bytes come out unchanged, each event is forwarded as soon as its blank line is in
// (never held for the next piece), and [DONE]/usage/event counts are right.
TEST(SseParser, EveryLineEndStyleCutAtEveryOffsetStreamsEventByEvent) {
  for (bool drop : {false, true}) {
    for (const auto& eols : kLineEndStyles) {
      const std::string stream = BuildStream(eols, false);
      const std::string expected = BuildStream(eols, drop);
      const std::vector<size_t> points = CompletionPoints(stream);
      ASSERT_EQ(points.size(), SampleEvents().size());
      for (size_t cut = 0; cut <= stream.size(); ++cut) {
        SseParser parser(SseParserOptions{.drop_usage_only_events = drop});
        std::string out(parser.Feed(std::string_view(stream).substr(0, cut)));
        // Everything complete by `cut` went out (minus the dropped usage-only event).
        size_t complete = 0;
        for (size_t p : points) complete += p <= cut;
        if (!drop) {
          const size_t must = complete == 0 ? 0 : points[complete - 1];
          ASSERT_GE(out.size(), must) << "cut " << cut;
          ASSERT_EQ(out, stream.substr(0, out.size())) << "cut " << cut;
        }
        out.append(parser.Feed(std::string_view(stream).substr(cut)));
        out.append(parser.Finish());
        ASSERT_EQ(out, expected) << "cut " << cut << " drop " << drop;
        EXPECT_TRUE(parser.done()) << cut;
        EXPECT_EQ(parser.events(), SampleEvents().size()) << cut;
        EXPECT_EQ(parser.usage().value_or(TokenUsage{}), (TokenUsage{12, 34})) << cut;
      }
    }
  }
}

TEST(SseParser, EveryLineEndStyleByteAtATime) {
  for (const auto& eols : kLineEndStyles) {
    const std::string stream = BuildStream(eols, false);
    const std::vector<size_t> points = CompletionPoints(stream);
    SseParser parser;
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < stream.size(); ++i) {
      out.append(parser.Feed(std::string_view(stream).substr(i, 1)));
      if (next < points.size() && points[next] == i + 1) {
        // The byte that completed an event released it at once.
        ASSERT_EQ(out, stream.substr(0, i + 1)) << i;
        ++next;
      }
    }
    out.append(parser.Finish());
    EXPECT_EQ(out, stream);
    EXPECT_EQ(parser.events(), points.size());
    EXPECT_TRUE(parser.done());
  }
}

// A CR-only stream is not held until the end (it was: the framer only knew LF).
TEST(SseParser, CrOnlyEventsGoOutAsTheyArrive) {
  SseParser parser;
  EXPECT_EQ(parser.Feed("data: a\r\r"), "data: a\r\r");
  EXPECT_EQ(parser.Feed("data: b\r"), "");
  EXPECT_EQ(parser.Feed("\rdata: [DONE]\r\r"), "data: b\r\rdata: [DONE]\r\r");
  EXPECT_TRUE(parser.done());
  EXPECT_EQ(parser.events(), 3u);
}

// A CRLF blank line split after its CR: the event goes out at the CR and the LF follows
// with the next piece, never counted as an event of its own.
TEST(SseParser, CrLfSplitAfterTheCr) {
  SseParser parser;
  EXPECT_EQ(parser.Feed("data: a\r\n\r"), "data: a\r\n\r");
  EXPECT_EQ(parser.Feed("\n"), "\n");
  EXPECT_EQ(parser.Feed("data: b\r\n\r\n"), "data: b\r\n\r\n");
  EXPECT_EQ(parser.events(), 2u);
  // Dropped usage-only event: its LF is dropped with it.
  SseParser dropping(SseParserOptions{.drop_usage_only_events = true});
  const std::string usage =
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r";
  EXPECT_EQ(dropping.Feed(usage), "");
  EXPECT_EQ(dropping.Feed("\ndata: [DONE]\r\n\r\n"), "data: [DONE]\r\n\r\n");
  EXPECT_EQ(dropping.usage().value_or(TokenUsage{}), (TokenUsage{1, 2}));
}

TEST(SseParser, OverlongCrOnlyEventIsPassedThrough) {
  SseParser parser(SseParserOptions{.drop_usage_only_events = false, .max_event_bytes = 64});
  const std::string big = "data: " + std::string(200, 'z');
  std::string out(parser.Feed(big + "\r"));
  EXPECT_EQ(parser.pending_bytes(), 0u);
  out.append(parser.Feed("\rdata: [DONE]\r\r"));
  EXPECT_EQ(out, big + "\r\rdata: [DONE]\r\r");
  EXPECT_TRUE(parser.done());
  EXPECT_EQ(parser.events(), 2u);
}

}  // namespace
}  // namespace llmproxy

namespace llmproxy {
namespace {

TEST(SseFields, EventNameAndDataOfOneEventWhateverTheLineEnds) {
  SseFields f;
  ReadSseFields("event: content_block_delta\ndata: {\"a\":1}\n\n", f);
  EXPECT_EQ(f.event, "content_block_delta");
  EXPECT_EQ(f.data, "{\"a\":1}");
  EXPECT_TRUE(f.has_data);
  ReadSseFields("event:ping\r\ndata:{}\r\n\r\n", f);  // no space after the colon
  EXPECT_EQ(f.event, "ping");
  EXPECT_EQ(f.data, "{}");
  ReadSseFields(": comment\rdata: a\rdata:  b\r\r", f);  // lone CRs; one space is eaten
  EXPECT_EQ(f.event, "");
  EXPECT_EQ(f.data, "a\n b");
  ReadSseFields(": only a comment\n\n", f);
  EXPECT_FALSE(f.has_data);
  EXPECT_EQ(f.data, "");
  ReadSseFields("data\n\n", f);  // a field without a colon: an empty value
  EXPECT_TRUE(f.has_data);
  EXPECT_EQ(f.data, "");
}

TEST(SseFields, AppendSseEventWritesOneEvent) {
  std::string out;
  AppendSseEvent(out, "message_stop", "{\"type\":\"message_stop\"}");
  AppendSseEvent(out, "", "[DONE]");
  EXPECT_EQ(out, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\ndata: [DONE]\n\n");
}

// A hook that upper-cases data and ends the stream at "END".
class UpperHook : public SseEventHook {
 public:
  std::string_view OnEvent(std::string_view event, size_t) override {
    ++events;
    ReadSseFields(event, fields_);
    out_.clear();
    if (!fields_.has_data || fields_.data == "skip") return out_;
    std::string data(fields_.data);
    for (char& c : data) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (data == "END") done_ = true;
    AppendSseEvent(out_, "x", data);
    return out_;
  }
  void OnUnframed() override { ++unframed; }
  bool done() const override { return done_; }
  int events = 0;
  int unframed = 0;

 private:
  SseFields fields_;
  std::string out_;
  bool done_ = false;
};

TEST(SseParserHook, EveryEventIsReplacedByTheHooksBytesAtEveryCut) {
  const std::string stream = "data: ab\r\n\r\ndata: skip\n\n: c\n\ndata: cd\r\rdata: end\n\n";
  const std::string want = "event: x\ndata: AB\n\nevent: x\ndata: CD\n\nevent: x\ndata: END\n\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    UpperHook hook;
    SseParser p(SseParserOptions{.hook = &hook});
    std::string got(p.Feed(std::string_view(stream).substr(0, cut)));
    got += p.Feed(std::string_view(stream).substr(cut));
    got += p.Finish();
    EXPECT_EQ(got, want) << "cut at " << cut;
    EXPECT_TRUE(p.done());
    EXPECT_EQ(hook.events, 5);
  }
}

TEST(SseParserHook, AnUnterminatedLastEventStillReachesTheHook) {
  UpperHook hook;
  SseParser p(SseParserOptions{.hook = &hook});
  EXPECT_EQ(p.Feed("data: a\n\ndata: end"), "event: x\ndata: A\n\n");
  EXPECT_EQ(p.Finish(), "event: x\ndata: END\n\n");
  EXPECT_TRUE(p.done());
}

TEST(SseParserHook, AnOverLongEventIsDroppedNotForwardedRaw) {
  UpperHook hook;
  SseParser p(SseParserOptions{.max_event_bytes = 16, .hook = &hook});
  std::string got(p.Feed("data: 0123456789012345678901234"));
  got += p.Feed("56789\n\ndata: ok\n\n");
  got += p.Finish();
  EXPECT_EQ(got, "event: x\ndata: OK\n\n");
  EXPECT_EQ(hook.unframed, 1);
}

}  // namespace
}  // namespace llmproxy
