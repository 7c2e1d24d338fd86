// Streams through the worker: held headers and failover before the first chunk, every
// chunk relayed in order, no retry after bytes went out, the error event on a broken
// stream, and cancellation reaching the upstream when the client leaves.
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using test::MockBackend;
using test::StreamingResponse;
using test::TestConfig;
using test::TestWorker;

MockFault StatusFault(int status) {
  MockFault f;
  f.status = status;
  return f;
}

MockFault HangFault() {
  MockFault f;
  f.hang = true;
  return f;
}

MockFault FirstChunkDelayFault(int ms) {
  MockFault f;
  f.first_chunk_delay_ms = ms;
  return f;
}

MockFault DieAfterFault(int chunks, int die_after) {
  MockFault f;
  f.chunks = chunks;
  f.die_after_chunks = die_after;
  return f;
}

size_t Count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + 1)) ++n;
  return n;
}

constexpr const char* kStreamBody = R"({"model":"m","stream":true,"messages":[]})";

TEST(ProxyStream, FiveHundredChunksArriveIntactAndInOrder) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  StreamingResponse s;
  ASSERT_TRUE(
      s.Open(worker.port(), "/v1/chat/completions", kStreamBody, {{"x-mock-chunks", "500"}}));
  EXPECT_EQ(s.status(), 200);
  EXPECT_EQ(s.Header("content-type").substr(0, 17), "text/event-stream");
  EXPECT_EQ(s.Header("transfer-encoding"), "chunked");
  EXPECT_EQ(s.Header("x-llmproxy-backend"), "a");
  ASSERT_TRUE(s.ReadToEnd());
  const std::string& body = s.body();
  size_t pos = 0;
  for (int i = 0; i < 500; ++i) {
    size_t next = body.find("\"tok" + std::to_string(i) + " \"", pos);
    ASSERT_NE(next, std::string::npos) << "chunk " << i << " missing or out of order";
    pos = next;
  }
  EXPECT_EQ(Count(body, "data: [DONE]"), 1u);
  EXPECT_EQ(body.substr(body.size() - 14), "data: [DONE]\n\n");
}

TEST(ProxyStream, FailoverBeforeTheFirstChunkIsInvisible) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b"));
  TestWorker worker(
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})}));
  a.SetDefaultFault(StatusFault(502));
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody));
  EXPECT_EQ(s.status(), 200);
  EXPECT_EQ(s.Header("x-llmproxy-backend"), "b");
  EXPECT_EQ(s.Header("x-llmproxy-attempts"), "2");
  ASSERT_TRUE(s.ReadToEnd());
  EXPECT_EQ(Count(s.body(), "data: [DONE]"), 1u);
}

TEST(ProxyStream, AStreamThatSendsNothingInTimeFailsOver) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b"));
  Config c =
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})});
  c.timeout = 300ms;  // streams: time to the first byte
  TestWorker worker(c);
  // a answers the head at once but its first chunk comes far too late.
  a.SetDefaultFault(FirstChunkDelayFault(5000));
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody));
  EXPECT_EQ(s.status(), 200);
  EXPECT_EQ(s.Header("x-llmproxy-backend"), "b");
  ASSERT_TRUE(s.ReadToEnd());
}

TEST(ProxyStream, BrokenStreamEndsWithAnErrorEventAndIsNotRetried) {
  MockLlm a(test::NamedMock("a")), b(test::NamedMock("b"));
  TestWorker worker(
      TestConfig({MockBackend("a", a.BaseUrl(), {"m"}), MockBackend("b", b.BaseUrl(), {"m"})}));
  a.SetDefaultFault(DieAfterFault(10, 3));
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody));
  EXPECT_EQ(s.status(), 200);
  EXPECT_EQ(s.Header("x-llmproxy-backend"), "a");
  s.ReadToEnd();
  const std::string& body = s.body();
  EXPECT_NE(body.find("tok2 "), std::string::npos);
  EXPECT_EQ(body.find("tok3 "), std::string::npos);
  EXPECT_EQ(Count(body, "data: {\"error\":"), 1u);
  EXPECT_EQ(body.find("[DONE]"), std::string::npos);
  EXPECT_EQ(body.substr(body.size() - 2), "\n\n");
  EXPECT_EQ(b.RequestCount(), 0u);  // bytes went out: no second attempt
  EXPECT_EQ(a.RequestCount(), 1u);
}

TEST(ProxyStream, ClientDisconnectCancelsTheSilentUpstreamWithin100ms) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  a.SetDefaultFault(HangFault());  // not even a response head
  test::RawClient client;
  ASSERT_TRUE(client.Connect(worker.port()));
  ASSERT_TRUE(client.Send(test::RawPost("/v1/chat/completions", kStreamBody)));
  ASSERT_TRUE(a.WaitForRequests(1, 5s));
  auto closed_at = std::chrono::steady_clock::now();
  client.Close();
  ASSERT_TRUE(a.WaitForCancellations(1, 5s));
  auto seen = a.Cancellations()[0].seen_at;
  EXPECT_LT(seen - closed_at, 100ms);
}

TEST(ProxyStream, ClientDisconnectMidStreamCancelsTheUpstreamWithin100ms) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody,
                     {{"x-mock-chunks", "1000"}, {"x-mock-chunk-gap-ms", "20"}}));
  ASSERT_TRUE(
      s.ReadUntil([](const std::string& b) { return b.find("tok3 ") != std::string::npos; }));
  auto closed_at = std::chrono::steady_clock::now();
  s.Close();
  ASSERT_TRUE(a.WaitForCancellations(1, 5s));
  auto c = a.Cancellations()[0];
  EXPECT_TRUE(c.stream);
  EXPECT_LT(c.chunks_sent, 1000);
  EXPECT_LT(c.seen_at - closed_at, 100ms);
}

TEST(ProxyStream, AClientThatStopsReadingDoesNotHurtTheWorker) {
  MockLlm a(test::NamedMock("a"));
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.stream_idle_timeout = 500ms;  // a client write stuck this long ends the stream
  TestWorker worker(c);
  test::RawClient client;
  ASSERT_TRUE(client.Connect(worker.port()));
  ASSERT_TRUE(client.Send(
      test::RawPost("/v1/chat/completions", kStreamBody, {{"x-mock-chunks", "200000"}})));
  std::string first;
  ASSERT_TRUE(client.ReadSome(first, 5s));  // then never read again
  ASSERT_TRUE(a.WaitForCancellations(1, 10s));
  EXPECT_EQ(test::HttpCall(worker.port(), "GET", "/health").status, 200);
  client.Close();
}

TEST(ProxyStream, UsageOfTheFinalChunkIsRecorded) {
  MockLlm a(test::NamedMock("a"));
  test::RecordingObserver observer;
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}), 1, {&observer});
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions",
                     R"({"model":"m","stream":true,"stream_options":{"include_usage":true}})",
                     {{"x-mock-chunks", "7"}}));
  ASSERT_TRUE(s.ReadToEnd());
  EXPECT_NE(s.body().find("\"usage\""), std::string::npos);  // the client asked for it
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  RequestRecord rec = observer.Records()[0];
  EXPECT_TRUE(rec.stream);
  ASSERT_TRUE(rec.ttft_seconds.has_value());
  EXPECT_LE(*rec.ttft_seconds, rec.duration_seconds);
  ASSERT_TRUE(rec.completion_tokens.has_value());
  EXPECT_EQ(*rec.completion_tokens, 7u);
  EXPECT_EQ(rec.bytes_out, s.body().size());
}

TEST(ProxyStream, StreamUsageRequestAsksUpstreamAndHidesTheExtraChunk) {
  MockLlm a(test::NamedMock("a"));
  test::RecordingObserver observer;
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.stream_usage = StreamUsage::kRequest;
  TestWorker worker(c, 1, {&observer});
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody, {{"x-mock-chunks", "4"}}));
  ASSERT_TRUE(s.ReadToEnd());
  EXPECT_EQ(s.body().find("\"usage\""), std::string::npos);
  EXPECT_EQ(Count(s.body(), "data: [DONE]"), 1u);
  ASSERT_EQ(a.RequestCount(), 1u);
  EXPECT_NE(a.Requests()[0].body.find(R"("stream_options":{"include_usage":true})"),
            std::string::npos);
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  ASSERT_TRUE(observer.Records()[0].completion_tokens.has_value());
  EXPECT_EQ(*observer.Records()[0].completion_tokens, 4u);
}

// Issue 10 item 9: [DONE] ends the stream well, whatever the upstream does after it.
TEST(ProxyStream, AnUpstreamThatStallsAfterDoneEndsTheStreamAtOnce) {
  MockLlm a(test::NamedMock("a"));
  test::RecordingObserver observer;
  Config c = TestConfig({MockBackend("a", a.BaseUrl(), {"m"})});
  c.stream_idle_timeout = 10s;  // far beyond the bound below: no waiting for it
  TestWorker worker(c, 1, {&observer});
  StreamingResponse s;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody,
                     {{"x-mock-chunks", "3"}, {"x-mock-after-done", "stall"}}));
  ASSERT_TRUE(s.ReadToEnd(3s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(s.ended());
  const std::string& body = s.body();
  EXPECT_EQ(Count(body, "data: [DONE]"), 1u);
  EXPECT_EQ(body.substr(body.size() - 14), "data: [DONE]\n\n");
  EXPECT_EQ(body.find("\"error\""), std::string::npos);
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  EXPECT_EQ(observer.Records()[0].error, "");
  EXPECT_EQ(observer.Attempts(),
            (std::vector<std::pair<std::string, AttemptOutcome>>{{"a", AttemptOutcome::kSuccess}}));
}

TEST(ProxyStream, AnUpstreamThatClosesAfterDoneIsNotABrokenStream) {
  MockLlm a(test::NamedMock("a"));
  test::RecordingObserver observer;
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}), 1, {&observer});
  for (int i = 0; i < 2; ++i) {
    StreamingResponse s;
    ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody,
                       {{"x-mock-chunks", "3"}, {"x-mock-after-done", "close"}}));
    ASSERT_TRUE(s.ReadToEnd(3s));
    const std::string& body = s.body();
    EXPECT_EQ(body.substr(body.size() - 14), "data: [DONE]\n\n");
    EXPECT_EQ(body.find("\"error\""), std::string::npos);
  }
  ASSERT_TRUE(observer.WaitForRecords(2, 5s));
  EXPECT_EQ(observer.Attempts(),
            (std::vector<std::pair<std::string, AttemptOutcome>>{{"a", AttemptOutcome::kSuccess},
                                                                 {"a", AttemptOutcome::kSuccess}}));
  auto table = worker.store().Current();
  EXPECT_EQ(table->health(0).Snapshot(std::chrono::steady_clock::now()).consecutive_failures, 0u);
}

// Issue 10 item 10: an event over the framing limit is relayed as it comes; when the
// stream breaks inside it, the partial event is ended before the error event.
TEST(ProxyStream, ABreakInsideAHugeEventEndsItBeforeTheErrorEvent) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  const size_t huge = (size_t{1} << 20) + 4096;  // over SseParserOptions::max_event_bytes
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody,
                     {{"x-mock-chunks", "3"},
                      {"x-mock-die-after-chunks", "2"},
                      {"x-mock-partial-event-bytes", std::to_string(huge)}}));
  EXPECT_EQ(s.status(), 200);
  s.ReadToEnd();
  const std::string& body = s.body();
  // The event went out as it came, past the framing limit (the parser may hold back its
  // last bytes while it looks for the blank line; those are dropped with the break).
  const size_t at = body.find("data: xxxx");
  ASSERT_NE(at, std::string::npos);
  const size_t end = body.find_first_not_of('x', at + 6);
  ASSERT_NE(end, std::string::npos);
  EXPECT_GT(end - (at + 6), size_t{1} << 20);
  EXPECT_EQ(body.substr(end, 17), "\n\ndata: {\"error\":");
  EXPECT_EQ(Count(body, "data: {\"error\":"), 1u);
  EXPECT_EQ(body.substr(body.size() - 2), "\n\n");
  EXPECT_EQ(body.find("[DONE]"), std::string::npos);
}

// A partial event under the limit is held back, never relayed: the error event follows
// the last whole event directly.
TEST(ProxyStream, ABreakInsideASmallEventDropsItAndSendsOnlyTheErrorEvent) {
  MockLlm a(test::NamedMock("a"));
  TestWorker worker(TestConfig({MockBackend("a", a.BaseUrl(), {"m"})}));
  StreamingResponse s;
  ASSERT_TRUE(s.Open(worker.port(), "/v1/chat/completions", kStreamBody,
                     {{"x-mock-chunks", "3"},
                      {"x-mock-die-after-chunks", "2"},
                      {"x-mock-partial-event-bytes", "100"}}));
  s.ReadToEnd();
  const std::string& body = s.body();
  EXPECT_EQ(body.find("xxxx"), std::string::npos);
  const size_t error_at = body.find("data: {\"error\":");
  ASSERT_NE(error_at, std::string::npos);
  ASSERT_GE(error_at, 2u);
  EXPECT_EQ(body.substr(error_at - 2, 2), "\n\n");
  EXPECT_NE(body.substr(error_at - 4, 4), "\n\n\n\n");
}

}  // namespace
}  // namespace llmproxy
