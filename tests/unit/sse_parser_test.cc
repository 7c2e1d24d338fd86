// SSE framing over arbitrary chunk boundaries, [DONE], usage extraction and the
// usage-only chunk that stream_usage: request hides.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/sse_parser.h"

namespace llmproxy {
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

TEST(SseErrorEvent, IsOneDataEvent) {
  const std::string event = SseErrorEvent("upstream \"broke\"", "upstream_error", "stream_broken");
  EXPECT_EQ(event,
            "data: {\"error\":{\"code\":\"stream_broken\",\"message\":\"upstream \\\"broke\\\"\","
            "\"type\":\"upstream_error\"}}\n\n");
}

}  // namespace
}  // namespace llmproxy
