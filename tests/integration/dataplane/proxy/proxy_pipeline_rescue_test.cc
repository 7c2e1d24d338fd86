// Slow and broken streams, through the worker (docs/routing.md "Slow and broken streams"):
// a candidate with no first token by first_token_timeout is abandoned for the next one
// (issue rule 6), stream_idle_timeout is set per backend and per alias (rule 10), and a
// stream that breaks after bytes went out is continued on a `prefill: true` backend in the
// original stream's framing (rule 8). Measured on the client's bytes (the whole answer,
// every token once, one role chunk, one id) and on what the mocks saw.
#include <chrono>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using test::MockBackend;
using test::PostJson;
using test::TestConfig;
using test::TestWorker;

constexpr const char* kChat = "/v1/chat/completions";
constexpr const char* kStreamBody =
    R"({"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]})";
constexpr const char* kWholeAnswer = "tok0 tok1 tok2 tok3 tok4 ";

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// The answer a client assembles from a chat stream: every delta's content, in order.
std::string ContentOf(const std::string& sse) {
  static const std::regex kContent(R"re("content":"([^"]*)")re");
  std::string text;
  for (auto it = std::sregex_iterator(sse.begin(), sse.end(), kContent);
       it != std::sregex_iterator(); ++it) {
    text += (*it)[1].str();
  }
  return text;
}

std::set<std::string> IdsOf(const std::string& sse) {
  static const std::regex kId(R"re("id":"([^"]*)")re");
  std::set<std::string> ids;
  for (auto it = std::sregex_iterator(sse.begin(), sse.end(), kId); it != std::sregex_iterator();
       ++it) {
    ids.insert((*it)[1].str());
  }
  return ids;
}

MockFault FirstTokenAfter(int ms) {
  MockFault f;
  f.first_token_delay_ms = ms;
  return f;
}

MockFault DieAfter(int chunks) {
  MockFault f;
  f.die_after_chunks = chunks;
  return f;
}

MockFault StallAfter(int chunks) {
  MockFault f;
  f.stall_after_chunks = chunks;
  return f;
}

// --- Rule 6: first-token deadline ---

TEST(ProxyRescue, ACandidateWithNoFirstTokenByTheDeadlineIsAbandonedForTheNext) {
  MockLlm slow(test::NamedMock("slow")), fast(test::NamedMock("fast"));
  slow.SetDefaultFault(FirstTokenAfter(5000));  // role chunk at once, the token much later
  Config c = TestConfig(
      {MockBackend("slow", slow.BaseUrl(), {"m"}), MockBackend("fast", fast.BaseUrl(), {"m"})});
  c.first_token_timeout = 400ms;
  TestWorker worker(std::move(c));  // round-robin: slow first
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "fast");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer);
  EXPECT_EQ(Count(r.body, R"("role":"assistant")"), 1u) << "the slow one's role chunk leaked";
  EXPECT_EQ(Count(r.body, "data: [DONE]"), 1u);
  EXPECT_EQ(IdsOf(r.body).size(), 1u);
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 3s) << "the slow first token was waited for";
  EXPECT_EQ(slow.RequestCount(), 1u);
  EXPECT_EQ(fast.RequestCount(), 1u);
  // Abandoned means its connection is closed, so the provider stops generating.
  EXPECT_TRUE(slow.WaitForCancellations(1, 2s));
}

TEST(ProxyRescue, WithoutAFirstTokenDeadlineASlowFirstTokenIsWaitedFor) {
  MockLlm slow(test::NamedMock("slow"));
  slow.SetDefaultFault(FirstTokenAfter(600));
  TestWorker worker(TestConfig({MockBackend("slow", slow.BaseUrl(), {"m"})}));
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 600ms);
}

TEST(ProxyRescue, AnAliasFirstTokenDeadlineAppliesToTheAliasAndABackendsOwnWins) {
  MockLlm slow(test::NamedMock("slow")), patient(test::NamedMock("patient"));
  slow.SetDefaultFault(FirstTokenAfter(5000));
  patient.SetDefaultFault(FirstTokenAfter(700));
  BackendConfig p = MockBackend("patient", patient.BaseUrl(), {"m2"});
  p.first_token_timeout = 3s;  // slow to its first token, and known to be
  Config c = TestConfig({MockBackend("slow", slow.BaseUrl(), {"m1"}), p});
  ModelAlias alias;
  alias.name = "smart";
  alias.models = {"m1", "m2"};
  alias.first_token_timeout = 300ms;
  c.model_aliases = {alias};
  TestWorker worker(std::move(c));
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r =
      PostJson(worker.port(), kChat, R"({"model":"smart","stream":true,"messages":[]})");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "patient");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer);
  EXPECT_GE(took, 300ms + 700ms);
  EXPECT_LT(took, 4s);
}

// --- Rule 10: stalls, per backend ---

TEST(ProxyRescue, ABackendsOwnStreamIdleTimeoutEndsAStallWithTheErrorEvent) {
  MockLlm stalling(test::NamedMock("stalling"));
  stalling.SetDefaultFault(StallAfter(2));
  BackendConfig b = MockBackend("stalling", stalling.BaseUrl(), {"m"});
  b.stream_idle_timeout = 300ms;  // the top level (TestConfig) says 5 s
  TestWorker worker(TestConfig({b}));
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(ContentOf(r.body), "tok0 tok1 ");
  EXPECT_EQ(Count(r.body, R"("error")"), 1u) << r.body;
  EXPECT_EQ(Count(r.body, "[DONE]"), 0u);
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s) << "the top-level 5 s idle timeout was used";
}

TEST(ProxyRescue, AnAliasStreamIdleTimeoutAppliesToTheAliasRequests) {
  MockLlm stalling(test::NamedMock("stalling"));
  stalling.SetDefaultFault(StallAfter(1));
  Config c = TestConfig({MockBackend("stalling", stalling.BaseUrl(), {"m"})});
  ModelAlias alias;
  alias.name = "quick";
  alias.models = {"m"};
  alias.stream_idle_timeout = 300ms;
  c.model_aliases = {alias};
  TestWorker worker(std::move(c));
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r =
      PostJson(worker.port(), kChat, R"({"model":"quick","stream":true,"messages":[]})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(ContentOf(r.body), "tok0 ");
  EXPECT_EQ(Count(r.body, R"("error")"), 1u) << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// --- Rule 8: continuation ---

struct Pair {
  MockLlm first{test::NamedMock("first")};
  MockLlm second{test::NamedMock("second")};
};

Config ContinuationConfig(const Pair& mocks, bool prefill) {
  BackendConfig a = MockBackend("first", mocks.first.BaseUrl(), {"m"});
  BackendConfig b = MockBackend("second", mocks.second.BaseUrl(), {"m"});
  b.prefill = prefill;
  Config c = TestConfig({a, b});
  c.stream_idle_timeout = 300ms;
  return c;
}

TEST(ProxyRescue, AStreamCutMidAnswerIsContinuedOnAPrefillBackendAsOneStream) {
  Pair mocks;
  mocks.first.SetDefaultFault(DieAfter(3));
  test::RecordingObserver observer;
  TestWorker worker(ContinuationConfig(mocks, true), 1, {&observer});
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "first");  // the head went out before the cut
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer) << r.body;
  EXPECT_EQ(Count(r.body, R"("role":"assistant")"), 1u) << r.body;
  EXPECT_EQ(Count(r.body, R"("error")"), 0u) << r.body;
  EXPECT_EQ(Count(r.body, "data: [DONE]"), 1u);
  const std::set<std::string> ids = IdsOf(r.body);
  ASSERT_EQ(ids.size(), 1u) << r.body;
  EXPECT_EQ(*ids.begin(), "chatcmpl-first-1");  // the original stream's id throughout
  // The second backend got the same request with the answer so far as a prefill.
  const auto requests = mocks.second.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_NE(
      requests[0].body.find(
          R"({"role":"user","content":"hi"},{"role":"assistant","content":"tok0 tok1 tok2 "}])"),
      std::string::npos)
      << requests[0].body;
  ASSERT_TRUE(observer.WaitForRecords(1, 2s));
  EXPECT_EQ(observer.Records()[0].continued, 1u);
  EXPECT_EQ(observer.Records()[0].attempts, 2u);
}

TEST(ProxyRescue, AStalledStreamIsContinuedAfterTheIdleTimeout) {
  Pair mocks;
  mocks.first.SetDefaultFault(StallAfter(2));
  TestWorker worker(ContinuationConfig(mocks, true));
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer) << r.body;
  EXPECT_EQ(Count(r.body, R"("role":"assistant")"), 1u);
  EXPECT_EQ(Count(r.body, "data: [DONE]"), 1u);
  EXPECT_EQ(IdsOf(r.body).size(), 1u);
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  // The stalled upstream was let go.
  EXPECT_TRUE(mocks.first.WaitForCancellations(1, 2s));
}

TEST(ProxyRescue, WithoutAPrefillBackendABreakEndsWithTheErrorEventAsBefore) {
  Pair mocks;
  mocks.first.SetDefaultFault(DieAfter(3));
  TestWorker worker(ContinuationConfig(mocks, false));
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(ContentOf(r.body), "tok0 tok1 tok2 ");
  EXPECT_EQ(Count(r.body, R"("error")"), 1u);
  EXPECT_EQ(Count(r.body, "[DONE]"), 0u);
  EXPECT_EQ(mocks.second.RequestCount(), 0u);
}

TEST(ProxyRescue, ARefusedPrefillEndsWithTheErrorEventNotWithTheRefusal) {
  Pair mocks;
  mocks.first.SetDefaultFault(DieAfter(2));
  MockFault refuse;
  refuse.reject_prefill = true;
  mocks.second.SetDefaultFault(refuse);
  test::RecordingObserver observer;
  TestWorker worker(ContinuationConfig(mocks, true), 1, {&observer});
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(ContentOf(r.body), "tok0 tok1 ");
  EXPECT_EQ(Count(r.body, R"("error")"), 1u) << r.body;
  EXPECT_EQ(r.body.find("prefill is not supported"), std::string::npos) << r.body;
  EXPECT_EQ(Count(r.body, "[DONE]"), 0u);
  EXPECT_EQ(mocks.second.RequestCount(), 1u);
  ASSERT_TRUE(observer.WaitForRecords(1, 2s));
  EXPECT_EQ(observer.Records()[0].continued, 0u);
}

TEST(ProxyRescue, AContinuationThatBreaksToIsContinuedAgain) {
  // first cuts after 1 token; second (prefill) cuts after its first new token; first is
  // not a prefill backend, so the third leg goes to second again (its second pass).
  Pair mocks;
  mocks.first.SetDefaultFault(DieAfter(1));
  mocks.second.PushFault(DieAfter(1), 1);
  TestWorker worker(ContinuationConfig(mocks, true));
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer) << r.body;
  EXPECT_EQ(Count(r.body, R"("role":"assistant")"), 1u);
  EXPECT_EQ(IdsOf(r.body).size(), 1u);
  EXPECT_EQ(mocks.second.RequestCount(), 2u);
}

}  // namespace
}  // namespace llmproxy

namespace llmproxy {
namespace {

// --- Rule 7: hedged requests ---

Config HedgeConfig(const MockLlm& first, const MockLlm& second, Millis hedge_after) {
  Config c = TestConfig({MockBackend("first", first.BaseUrl(), {"m"}),
                         MockBackend("second", second.BaseUrl(), {"m"})});
  ModelAlias alias;
  alias.name = "smart";
  alias.models = {"m"};
  alias.hedge_after = {HedgeAfter::Kind::kFixed, hedge_after};
  c.model_aliases = {alias};
  return c;
}

constexpr const char* kSmartStream = R"({"model":"smart","stream":true,"messages":[]})";

TEST(ProxyHedge, ASlowFirstTokenStartsAHedgeAndTheFirstTokenWins) {
  MockLlm slow(test::NamedMock("first")), fast(test::NamedMock("second"));
  slow.SetDefaultFault(FirstTokenAfter(5000));
  test::RecordingObserver observer;
  TestWorker worker(HedgeConfig(slow, fast, 200ms), 1, {&observer});  // round-robin: slow first
  const auto start = std::chrono::steady_clock::now();
  test::StreamingResponse response;
  ASSERT_TRUE(
      response.Open(worker.port(), kChat, kSmartStream, {{"Content-Type", "application/json"}}));
  const auto head_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(response.ReadToEnd());
  ASSERT_EQ(response.status(), 200);
  EXPECT_EQ(response.Header("x-llmproxy-backend"), "second");
  EXPECT_EQ(response.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(ContentOf(response.body()), kWholeAnswer);
  EXPECT_EQ(Count(response.body(), R"("role":"assistant")"), 1u) << response.body();
  EXPECT_EQ(IdsOf(response.body()).size(), 1u);
  EXPECT_GE(head_at - start, 200ms) << "the hedge started before hedge_after";
  EXPECT_LT(head_at - start, 3s);
  // The hedge started after hedge_after (counted from the first attempt's start, which
  // is after the client's), not before.
  ASSERT_EQ(slow.RequestCount(), 1u);
  ASSERT_EQ(fast.RequestCount(), 1u);
  EXPECT_GE(fast.Requests()[0].received_at - start, 200ms);
  EXPECT_LT(fast.Requests()[0].received_at - start, 2s);
  // The loser's upstream connection was closed within 100 ms of the win (the win comes
  // before the head reaches the client).
  ASSERT_TRUE(slow.WaitForCancellations(1, 2s));
  EXPECT_LE(slow.Cancellations()[0].seen_at, head_at + 100ms);
  ASSERT_TRUE(observer.WaitForRecords(1, 2s));
  EXPECT_TRUE(observer.Records()[0].hedged);
  EXPECT_TRUE(observer.Records()[0].hedge_won);
}

TEST(ProxyHedge, AFirstTokenBeforeHedgeAfterMeansNoHedge) {
  MockLlm first(test::NamedMock("first")), second(test::NamedMock("second"));
  TestWorker worker(HedgeConfig(first, second, 500ms));
  test::HttpResult r = PostJson(worker.port(), kChat, kSmartStream);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer);
  EXPECT_EQ(second.RequestCount(), 0u);
}

TEST(ProxyHedge, WhenTheOriginalsTokenComesFirstTheHedgeIsCancelled) {
  MockLlm first(test::NamedMock("first")), second(test::NamedMock("second"));
  first.SetDefaultFault(FirstTokenAfter(500));
  second.SetDefaultFault(FirstTokenAfter(5000));
  test::RecordingObserver observer;
  TestWorker worker(HedgeConfig(first, second, 100ms), 1, {&observer});
  const auto start = std::chrono::steady_clock::now();
  test::HttpResult r = PostJson(worker.port(), kChat, kSmartStream);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "first");
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(second.RequestCount(), 1u);
  EXPECT_TRUE(second.WaitForCancellations(1, 2s));
  ASSERT_TRUE(observer.WaitForRecords(1, 2s));
  EXPECT_TRUE(observer.Records()[0].hedged);
  EXPECT_FALSE(observer.Records()[0].hedge_won);
}

TEST(ProxyHedge, AHedgeThatFailsLeavesTheOriginalToAnswer) {
  MockLlm first(test::NamedMock("first")), second(test::NamedMock("second"));
  first.SetDefaultFault(FirstTokenAfter(600));
  MockFault broken;
  broken.status = 500;
  second.SetDefaultFault(broken);
  TestWorker worker(HedgeConfig(first, second, 100ms));
  test::HttpResult r = PostJson(worker.port(), kChat, kSmartStream);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "first");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(ContentOf(r.body), kWholeAnswer);
  EXPECT_EQ(second.RequestCount(), 1u);
}

TEST(ProxyHedge, AZeroHedgeBudgetMeansNoHedge) {
  MockLlm first(test::NamedMock("first")), second(test::NamedMock("second"));
  first.SetDefaultFault(FirstTokenAfter(600));
  Config c = HedgeConfig(first, second, 100ms);
  c.hedge_budget = 0;
  TestWorker worker(std::move(c));
  test::HttpResult r = PostJson(worker.port(), kChat, kSmartStream);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(second.RequestCount(), 0u);
}

TEST(ProxyHedge, TheBudgetCapsHedgesToItsShareOfRequests) {
  // hedge_budget 10%: ten slow requests in a row may start one hedge between them.
  MockLlm first(test::NamedMock("first")), second(test::NamedMock("second"));
  first.SetDefaultFault(FirstTokenAfter(300));
  second.SetDefaultFault(FirstTokenAfter(300));
  test::RecordingObserver observer;
  TestWorker worker(HedgeConfig(first, second, 50ms), 1, {&observer});
  for (int i = 0; i < 10; ++i) {
    test::HttpResult r = PostJson(worker.port(), kChat, kSmartStream);
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(ContentOf(r.body), kWholeAnswer) << i;
  }
  ASSERT_TRUE(observer.WaitForRecords(10, 2s));
  int hedged = 0;
  for (const RequestRecord& record : observer.Records()) hedged += record.hedged ? 1 : 0;
  EXPECT_EQ(hedged, 1);
  EXPECT_EQ(first.RequestCount() + second.RequestCount(), 11u);
}

}  // namespace
}  // namespace llmproxy

namespace llmproxy {
namespace {

TEST(ProxyRescue, AStreamBrokenInsideAToolCallEndsWithTheErrorEvent) {
  Pair mocks;
  MockFault cut_tool_call = DieAfter(2);
  cut_tool_call.tool_call = true;
  mocks.first.SetDefaultFault(cut_tool_call);
  TestWorker worker(ContinuationConfig(mocks, true));
  test::HttpResult r = PostJson(worker.port(), kChat, kStreamBody);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Count(r.body, R"("arguments":"tok)"), 2u) << r.body;
  EXPECT_EQ(Count(r.body, R"("error")"), 1u) << r.body;
  EXPECT_EQ(Count(r.body, "[DONE]"), 0u);
  EXPECT_EQ(mocks.second.RequestCount(), 0u) << "a tool call was continued as text";
}

}  // namespace
}  // namespace llmproxy
