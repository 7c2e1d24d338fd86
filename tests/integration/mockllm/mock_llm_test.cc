// Self-tests of the fake upstream (tests/mockllm): the proxy's integration tests trust
// what it records and how it fails, so those behaviours are pinned here with a plain
// socket client that knows nothing about the mock's internals.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/protocols/chat_stream.h"
#include "dataplane/protocols/sse_parser.h"
#include "tests/mockllm/mock_answers.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Headers = std::vector<std::pair<std::string, std::string>>;

// A blocking loopback connection whose every read has a deadline, so a broken mock
// fails a test instead of hanging it.
class Conn {
 public:
  explicit Conn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Conn() { Close(); }
  bool connected() const { return connected_; }

  void Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Appends what arrives within `timeout`: >0 bytes read, 0 peer closed, -1 timeout/error.
  ssize_t Recv(std::string& out, milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return -1;
    char buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    return n < 0 ? -1 : n;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::string Request(const std::string& method, const std::string& target, const std::string& body,
                    const Headers& headers = {}) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& [k, v] : headers) r += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") {
    r +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return r + "\r\n" + body;
}

struct Reply {
  bool complete = false;  // a whole HTTP message was parsed
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // de-chunked; partial when !complete
  std::string raw;                             // bytes as received
};

// `already`: bytes of this reply the test read from `c` before.
Reply ReadReply(Conn& c, milliseconds timeout = milliseconds(10000), std::string already = "") {
  Reply r;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  parser.eager(true);
  r.raw = already;
  std::string pending = std::move(already);
  const auto deadline = Clock::now() + timeout;
  boost::beast::error_code ec;
  for (;;) {
    while (!pending.empty() && !parser.is_done()) {
      size_t used = parser.put(boost::asio::buffer(pending), ec);
      pending.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec || used == 0) break;
    }
    if (ec || parser.is_done()) break;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    size_t before = r.raw.size();
    ssize_t n = c.Recv(r.raw, left);
    if (n <= 0) break;
    pending.append(r.raw, before, std::string::npos);
  }
  r.complete = !ec && parser.is_done();
  if (parser.is_header_done()) {
    const auto& msg = parser.get();
    r.status = static_cast<int>(msg.result_int());
    for (const auto& f : msg) {
      std::string name(f.name_string());
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      r.headers[name] = std::string(f.value());
    }
    r.body = msg.body();
  }
  return r;
}

Reply Call(uint16_t port, const std::string& method, const std::string& target,
           const std::string& body, const Headers& headers = {}) {
  Conn c(port);
  EXPECT_TRUE(c.connected());
  c.Send(Request(method, target, body, headers));
  return ReadReply(c);
}

// The `data:` payloads of an SSE body, in order.
std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end + 2;
  }
  return out;
}

const std::string kChat = R"({"model":"gpt-test","messages":[{"role":"user","content":"hi"}]})";
const std::string kChatStream =
    R"({"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},"messages":[]})";

TEST(MockLlm, PlainChatEchoesModelWithUsageAndRecordsTheRequest) {
  MockLlm mock({.name = "alpha"});
  ASSERT_NE(mock.port(), 0);
  Reply r = Call(mock.port(), "POST", "/v1/chat/completions", kChat,
                 {{"Authorization", "Bearer sk-test"}, {"X-Custom", "yes"}});
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["x-mock-name"], "alpha");
  EXPECT_EQ(r.headers["x-request-id"], "mock-alpha-1");
  EXPECT_EQ(r.headers["content-type"], "application/json");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["model"], "gpt-test");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  ASSERT_EQ(mock.RequestCount(), 1u);
  auto reqs = mock.Requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].seq, 1u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].target, "/v1/chat/completions");
  EXPECT_EQ(reqs[0].body, kChat);
  EXPECT_EQ(reqs[0].body_sha256.size(), 64u);
  EXPECT_EQ(reqs[0].Header("authorization"), "Bearer sk-test");
  EXPECT_EQ(reqs[0].Header("x-custom"), "yes");
  EXPECT_FALSE(reqs[0].HasHeader("x-absent"));
}

TEST(MockLlm, BodyHashIsSha256OfTheExactBytes) {
  MockLlm mock;
  // Known digests: sha256("") and sha256("abc"); the mock hashes bytes, not JSON.
  Call(mock.port(), "GET", "/v1/models", "");
  Call(mock.port(), "POST", "/v1/embeddings", "abc");
  auto reqs = mock.Requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].body_sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(reqs[1].body_sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(MockLlm, RoutesWorkWithAndWithoutV1Prefix) {
  MockLlm mock({.models = {"m-one", "m-two"}});
  for (std::string prefix : {"/v1", "", "/api/openai/v1"}) {
    SCOPED_TRACE(prefix);
    Reply chat = Call(mock.port(), "POST", prefix + "/chat/completions", kChat);
    EXPECT_EQ(chat.status, 200);
    EXPECT_EQ(nlohmann::json::parse(chat.body)["object"], "chat.completion");
    Reply comp = Call(mock.port(), "POST", prefix + "/completions", R"({"model":"c"})");
    EXPECT_EQ(comp.status, 200);
    EXPECT_EQ(nlohmann::json::parse(comp.body)["choices"][0]["text"], "tok0 tok1 tok2 tok3 tok4 ");
    Reply emb = Call(mock.port(), "POST", prefix + "/embeddings", R"({"model":"e","input":"x"})");
    EXPECT_EQ(emb.status, 200);
    auto ej = nlohmann::json::parse(emb.body);
    EXPECT_EQ(ej["model"], "e");
    EXPECT_TRUE(ej["data"][0]["embedding"].is_array());
    Reply models = Call(mock.port(), "GET", prefix + "/models", "");
    EXPECT_EQ(models.status, 200);
    auto mj = nlohmann::json::parse(models.body);
    ASSERT_EQ(mj["data"].size(), 2u);
    EXPECT_EQ(mj["data"][1]["id"], "m-two");
  }
  EXPECT_EQ(Call(mock.port(), "POST", "/v1/nope", kChat).status, 404);
  EXPECT_EQ(Call(mock.port(), "GET", "/v1/chat/completions", "").status, 405);
  Reply bad = Call(mock.port(), "POST", "/v1/chat/completions", R"({"model":)");
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(nlohmann::json::parse(bad.body)["error"].is_object());
}

TEST(MockLlm, StreamOf500ChunksArrivesWholeInOrderWithUsageAndDone) {
  MockLlm mock;
  Reply r =
      Call(mock.port(), "POST", "/v1/chat/completions", kChatStream, {{"x-mock-chunks", "500"}});
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  auto events = SseData(r.body);
  ASSERT_EQ(events.size(), 502u);  // 500 content chunks + usage + [DONE]
  for (int i = 0; i < 500; ++i) {
    auto j = nlohmann::json::parse(events[i]);
    ASSERT_EQ(j["choices"][0]["delta"]["content"], "tok" + std::to_string(i) + " ") << i;
    EXPECT_EQ(j["model"], "gpt-test");
    EXPECT_EQ(j["choices"][0]["finish_reason"].is_null(), i != 499);
  }
  auto usage = nlohmann::json::parse(events[500]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 500);
  EXPECT_EQ(events[501], "[DONE]");
  EXPECT_EQ(mock.CancelledCount(), 0u);
}

TEST(MockLlm, StreamWithoutIncludeUsageHasNoUsageEvent) {
  MockLlm mock({.chunks = 3});
  Reply r = Call(mock.port(), "POST", "/v1/completions", R"({"model":"c","stream":true})");
  ASSERT_TRUE(r.complete);
  auto events = SseData(r.body);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(events[2])["choices"][0]["text"], "tok2 ");
  EXPECT_EQ(events[3], "[DONE]");
}

TEST(MockLlm, HeaderStatusFaultCarriesRetryAfterAndJsonError) {
  MockLlm mock;
  Reply r = Call(mock.port(), "POST", "/v1/chat/completions", kChat,
                 {{"x-mock-status", "429"}, {"x-mock-retry-after", "2"}});
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "2");
  EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["type"], "rate_limit_error");
  Reply custom = Call(mock.port(), "POST", "/v1/chat/completions", kChat,
                      {{"x-mock-status", "400"}, {"x-mock-body", R"({"error":"mine"})"}});
  EXPECT_EQ(custom.status, 400);
  EXPECT_EQ(custom.body, R"({"error":"mine"})");
}

TEST(MockLlm, DefaultFaultHitsOnlyThatMockAndQueuedFaultsAreConsumedInOrder) {
  MockLlm broken({.name = "broken"});
  MockLlm healthy({.name = "healthy"});
  broken.SetDefaultFault(MockFault{.status = 500});
  EXPECT_EQ(Call(broken.port(), "POST", "/v1/chat/completions", kChat).status, 500);
  EXPECT_EQ(Call(healthy.port(), "POST", "/v1/chat/completions", kChat).status, 200);

  broken.ClearFaults();
  broken.PushFault(MockFault{.status = 503}, 2);
  EXPECT_EQ(Call(broken.port(), "POST", "/v1/chat/completions", kChat).status, 503);
  EXPECT_EQ(Call(broken.port(), "POST", "/v1/chat/completions", kChat).status, 503);
  EXPECT_EQ(Call(broken.port(), "POST", "/v1/chat/completions", kChat).status, 200);
  EXPECT_EQ(broken.RequestCount(), 4u);
  EXPECT_EQ(healthy.RequestCount(), 1u);
}

TEST(MockLlm, DelayHoldsTheResponseHeaders) {
  MockLlm mock;
  const auto start = Clock::now();
  Reply r = Call(mock.port(), "POST", "/v1/chat/completions", kChat, {{"x-mock-delay-ms", "200"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(Clock::now() - start, milliseconds(200));
}

TEST(MockLlm, FirstChunkDelaySendsHeadersFirst) {
  MockLlm mock;
  Conn c(mock.port());
  c.Send(Request("POST", "/v1/chat/completions", kChatStream,
                 {{"x-mock-first-chunk-delay-ms", "60000"}}));
  std::string got;
  // Headers come at once; no event until the (long) first-chunk delay.
  const auto deadline = Clock::now() + milliseconds(5000);
  while (got.find("\r\n\r\n") == std::string::npos && Clock::now() < deadline) {
    if (c.Recv(got, milliseconds(5000)) <= 0) break;
  }
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
  EXPECT_EQ(got.find("data:"), std::string::npos);
}

TEST(MockLlm, DieAfterChunksBreaksTheStreamWithoutDoneAndIsNotACancellation) {
  MockLlm mock;
  Reply r = Call(mock.port(), "POST", "/v1/chat/completions", kChatStream,
                 {{"x-mock-chunks", "10"}, {"x-mock-die-after-chunks", "3"}});
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.status, 200);
  auto events = SseData(r.body);
  EXPECT_EQ(events.size(), 3u);
  EXPECT_EQ(r.body.find("[DONE]"), std::string::npos);
  EXPECT_EQ(mock.CancelledCount(), 0u);

  // The same fault on a plain reply: a body cut short of its Content-Length.
  Reply plain =
      Call(mock.port(), "POST", "/v1/chat/completions", kChat, {{"x-mock-die-after-chunks", "0"}});
  EXPECT_FALSE(plain.complete);
  EXPECT_EQ(plain.status, 200);
}

TEST(MockLlm, ClientClosingMidStreamIsSeenWithin100ms) {
  MockLlm mock;
  Conn c(mock.port());
  // A long gap: the close must be noticed by reading, not by the next write.
  c.Send(Request("POST", "/v1/chat/completions", kChatStream,
                 {{"x-mock-chunks", "50"}, {"x-mock-chunk-gap-ms", "10000"}}));
  std::string got;
  const auto deadline = Clock::now() + milliseconds(5000);
  while (got.find("tok0") == std::string::npos && Clock::now() < deadline) {
    if (c.Recv(got, milliseconds(5000)) <= 0) break;
  }
  ASSERT_NE(got.find("tok0"), std::string::npos);
  const auto closed_at = Clock::now();
  c.Close();
  ASSERT_TRUE(mock.WaitForCancellations(1, milliseconds(5000)));
  auto cancels = mock.Cancellations();
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].seq, 1u);
  EXPECT_TRUE(cancels[0].stream);
  EXPECT_EQ(cancels[0].chunks_sent, 1);
  EXPECT_LT(cancels[0].seen_at - closed_at, milliseconds(100));
  EXPECT_EQ(mock.Stats().cancelled, 1u);
}

TEST(MockLlm, HangNeverAnswersAndTheClientLeavingIsRecorded) {
  MockLlm mock;
  Conn c(mock.port());
  c.Send(Request("POST", "/v1/chat/completions", kChat, {{"x-mock-hang", "1"}}));
  ASSERT_TRUE(mock.WaitForRequests(1, milliseconds(5000)));
  std::string got;
  EXPECT_EQ(c.Recv(got, milliseconds(300)), -1);  // nothing arrives
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(mock.Stats().in_flight, 1u);
  c.Close();
  ASSERT_TRUE(mock.WaitForCancellations(1, milliseconds(5000)));
  EXPECT_FALSE(mock.Cancellations()[0].stream);
}

TEST(MockLlm, GarbageAndCloseFaults) {
  MockLlm mock;
  Reply garbage =
      Call(mock.port(), "POST", "/v1/chat/completions", kChat, {{"x-mock-garbage", "1"}});
  EXPECT_FALSE(garbage.complete);
  EXPECT_FALSE(garbage.raw.empty());
  EXPECT_NE(garbage.raw.rfind("HTTP/", 0), 0u);

  Reply closed = Call(mock.port(), "POST", "/v1/chat/completions", kChat, {{"x-mock-close", "1"}});
  EXPECT_FALSE(closed.complete);
  EXPECT_TRUE(closed.raw.empty());
  EXPECT_EQ(mock.RequestCount(), 2u);  // both requests were read before the fault
}

TEST(MockLlm, KeepAliveServesSeveralRequestsOnOneConnection) {
  MockLlm mock;
  Conn c(mock.port());
  for (int i = 0; i < 3; ++i) {
    c.Send(Request("POST", "/v1/chat/completions", i == 1 ? kChatStream : kChat));
    Reply r = ReadReply(c);
    ASSERT_TRUE(r.complete) << i;
    EXPECT_EQ(r.status, 200);
  }
  EXPECT_EQ(mock.Stats().connections, 1u);
  EXPECT_EQ(mock.Stats().requests, 3u);
  EXPECT_EQ(mock.CancelledCount(), 0u);
}

TEST(MockLlm, StopClosesTheListenerAndIsIdempotent) {
  MockLlm mock;
  const uint16_t port = mock.port();
  EXPECT_EQ(Call(port, "POST", "/v1/chat/completions", kChat).status, 200);
  mock.Stop();
  mock.Stop();
  Conn c(port);
  EXPECT_FALSE(c.connected());
  EXPECT_EQ(mock.RequestCount(), 1u);  // records survive Stop
}

TEST(MockLlm, StatsEndpointIsNotCountedAsTraffic) {
  MockLlm mock({.name = "s"});
  Call(mock.port(), "POST", "/v1/chat/completions", kChat);
  // The chat reply's bookkeeping may finish just after its bytes arrive: poll until the
  // mock is idle. A stats request counting itself would never read in_flight 0.
  nlohmann::json j;
  const auto deadline = Clock::now() + milliseconds(5000);
  do {
    j = nlohmann::json::parse(Call(mock.port(), "GET", "/mock/stats", "").body);
  } while (j["in_flight"] != 0 && Clock::now() < deadline);
  EXPECT_EQ(j["in_flight"], 0);
  EXPECT_EQ(j["name"], "s");
  EXPECT_EQ(j["requests"], 1);
  EXPECT_EQ(mock.RequestCount(), 1u);
}

// Reads raw bytes until `needle` has arrived (true) or `timeout` passed.
bool RecvUntil(Conn& c, std::string& got, std::string_view needle, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (got.find(needle) == std::string::npos) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || c.Recv(got, left) <= 0) return false;
  }
  return true;
}

std::string ChatBody(bool stream, const std::string& last_role, const std::string& last_content) {
  nlohmann::json j = {
      {"model", "gpt-test"},
      {"messages",
       {{{"role", "user"}, {"content", "hi"}}, {{"role", last_role}, {"content", last_content}}}}};
  if (stream) j["stream"] = true;
  return j.dump();
}

// One chat chunk event exactly as the mock writes it.
std::string ChunkEvent(const std::string& id, int64_t created, const std::string& delta,
                       bool last) {
  return R"(data: {"id":")" + id + R"(","object":"chat.completion.chunk","created":)" +
         std::to_string(created) + R"(,"model":"gpt-test","choices":[{"index":0,"delta":)" + delta +
         R"(,"finish_reason":)" + (last ? R"("stop")" : "null") + "}]}\n\n";
}

int64_t CreatedOf(const std::string& sse_body) {
  auto events = SseData(sse_body);
  if (events.empty()) return -1;
  return nlohmann::json::parse(events[0])["created"].get<int64_t>();
}

TEST(MockLlm, StreamBytesCarryOneIdPerResponseAndDifferAcrossResponsesAndMocks) {
  MockLlm a({.name = "a", .chunks = 2});
  MockLlm b({.name = "b", .chunks = 2});
  const std::string req = ChatBody(true, "user", "hello");
  Reply a1 = Call(a.port(), "POST", "/v1/chat/completions", req);
  Reply a2 = Call(a.port(), "POST", "/v1/chat/completions", req);
  Reply b1 = Call(b.port(), "POST", "/v1/chat/completions", req);
  ASSERT_TRUE(a1.complete && a2.complete && b1.complete);
  const int64_t created = CreatedOf(a1.body);
  ASSERT_GT(created, 0);
  auto expect = [&](const std::string& id, int64_t cr) {
    return ChunkEvent(id, cr, R"({"role":"assistant","content":"tok0 "})", false) +
           ChunkEvent(id, cr, R"({"content":"tok1 "})", true) + "data: [DONE]\n\n";
  };
  EXPECT_EQ(a1.body, expect("chatcmpl-a-1", created));
  EXPECT_EQ(a2.body, expect("chatcmpl-a-2", created));
  EXPECT_EQ(b1.body, expect("chatcmpl-b-1", CreatedOf(b1.body)));
  EXPECT_EQ(nlohmann::json::parse(Call(a.port(), "POST", "/v1/chat/completions", kChat).body)["id"],
            "chatcmpl-a-3");
}

TEST(MockLlm, FirstTokenDelaySendsRoleChunkAtOnceAndTheFirstTokenAfterTheWait) {
  MockLlm mock({.name = "slow", .chunks = 2});
  constexpr milliseconds kDelay(1500);
  Conn c(mock.port());
  const auto sent = Clock::now();
  c.Send(Request("POST", "/v1/chat/completions", ChatBody(true, "user", "hello"),
                 {{"x-mock-first-token-delay-ms", std::to_string(kDelay.count())}}));
  std::string got;
  ASSERT_TRUE(RecvUntil(c, got, R"("content":""},"finish_reason":null}]})", kDelay));
  EXPECT_LT(Clock::now() - sent, kDelay);
  EXPECT_EQ(got.find("tok0"), std::string::npos);
  Reply r = ReadReply(c, milliseconds(10000), got);
  ASSERT_TRUE(r.complete);
  EXPECT_GE(Clock::now() - sent, kDelay);
  const int64_t created = CreatedOf(r.body);
  EXPECT_EQ(r.body,
            ChunkEvent("chatcmpl-slow-1", created, R"({"role":"assistant","content":""})", false) +
                ChunkEvent("chatcmpl-slow-1", created, R"({"content":"tok0 "})", false) +
                ChunkEvent("chatcmpl-slow-1", created, R"({"content":"tok1 "})", true) +
                "data: [DONE]\n\n");
}

TEST(MockLlm, StallAfterChunksGoesSilentWithTheConnectionOpenUntilTheClientLeaves) {
  MockLlm mock({.name = "st"});
  Conn c(mock.port());
  c.Send(Request("POST", "/v1/chat/completions", ChatBody(true, "user", "hello"),
                 {{"x-mock-stall-after-chunks", "2"}}));
  Reply r = ReadReply(c, milliseconds(1000));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.status, 200);
  const int64_t created = CreatedOf(r.body);
  EXPECT_EQ(r.body, ChunkEvent("chatcmpl-st-1", created,
                               R"({"role":"assistant","content":"tok0 "})", false) +
                        ChunkEvent("chatcmpl-st-1", created, R"({"content":"tok1 "})", false));
  std::string more;
  EXPECT_EQ(c.Recv(more, milliseconds(300)), -1);  // silent, not closed
  EXPECT_TRUE(more.empty());
  EXPECT_EQ(mock.CancelledCount(), 0u);
  c.Close();
  ASSERT_TRUE(mock.WaitForCancellations(1, milliseconds(5000)));
  auto cancels = mock.Cancellations();
  EXPECT_EQ(cancels[0].seq, 1u);
  EXPECT_TRUE(cancels[0].stream);
  EXPECT_EQ(cancels[0].chunks_sent, 2);

  // Stalling after every content chunk: finish_reason went out, usage and [DONE] never do.
  Conn c2(mock.port());
  c2.Send(Request("POST", "/v1/chat/completions", kChatStream,
                  {{"x-mock-chunks", "1"}, {"x-mock-stall-after-chunks", "1"}}));
  Reply r2 = ReadReply(c2, milliseconds(1000));
  EXPECT_FALSE(r2.complete);
  EXPECT_NE(r2.body.find(R"("finish_reason":"stop")"), std::string::npos);
  EXPECT_EQ(r2.body.find("usage"), std::string::npos);
  EXPECT_EQ(r2.body.find("[DONE]"), std::string::npos);
}

TEST(MockLlm, ContextLengthExceededAnswersOpenAisExact400) {
  MockLlm mock;
  constexpr std::string_view kBody =
      R"({"error":{"message":"This model's maximum context length is 8192 tokens. However, )"
      R"(your messages resulted in 9000 tokens. Please reduce the length of the messages.",)"
      R"("type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}})";
  EXPECT_EQ(kContextLengthExceededBody, kBody);
  for (const std::string& body : {kChat, kChatStream}) {
    Reply r = Call(mock.port(), "POST", "/v1/chat/completions", body,
                   {{"x-mock-context-length-exceeded", "1"}});
    ASSERT_TRUE(r.complete);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.headers["content-type"], "application/json");
    EXPECT_EQ(r.body, kBody);
  }
  // Per mock, and the model list stays healthy (a probe must not see it).
  mock.SetDefaultFault({.context_length_exceeded = true});
  EXPECT_EQ(Call(mock.port(), "POST", "/v1/completions", R"({"model":"c"})").body, kBody);
  EXPECT_EQ(Call(mock.port(), "GET", "/v1/models", "").status, 200);
}

TEST(MockLlm, RejectPrefillRefusesOnlyRequestsEndingWithAnAssistantMessage) {
  MockLlm mock;
  constexpr std::string_view kBody =
      R"({"error":{"message":"assistant message prefill is not supported",)"
      R"("type":"invalid_request_error","param":"messages","code":null}})";
  EXPECT_EQ(kPrefillRejectedBody, kBody);
  const Headers reject = {{"x-mock-reject-prefill", "1"}};
  for (bool stream : {false, true}) {
    Reply r = Call(mock.port(), "POST", "/v1/chat/completions",
                   ChatBody(stream, "assistant", "tok0 "), reject);
    ASSERT_TRUE(r.complete);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.body, kBody);
  }
  Reply ok =
      Call(mock.port(), "POST", "/v1/chat/completions", ChatBody(false, "user", "x"), reject);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(nlohmann::json::parse(ok.body)["choices"][0]["message"]["content"],
            "tok0 tok1 tok2 tok3 tok4 ");
  mock.PushFault({.reject_prefill = true});
  EXPECT_EQ(
      Call(mock.port(), "POST", "/v1/chat/completions", ChatBody(false, "assistant", "")).status,
      400);
  EXPECT_EQ(
      Call(mock.port(), "POST", "/v1/chat/completions", ChatBody(false, "assistant", "")).status,
      200);
}

TEST(MockLlm, PlainReplyContinuesAnAssistantPrefillWithOnlyTheRest) {
  MockLlm mock;
  auto content = [&](const std::string& prefill) {
    Reply r =
        Call(mock.port(), "POST", "/v1/chat/completions", ChatBody(false, "assistant", prefill));
    EXPECT_EQ(r.status, 200);
    return nlohmann::json::parse(r.body)["choices"][0]["message"]["content"].get<std::string>();
  };
  EXPECT_EQ(content("tok0 tok1 "), "tok2 tok3 tok4 ");
  EXPECT_EQ(content("tok0 tok1 to"), "k2 tok3 tok4 ");
  EXPECT_EQ(content("tok0 tok1 tok2"), " tok3 tok4 ");
  EXPECT_EQ(content(""), "tok0 tok1 tok2 tok3 tok4 ");
  EXPECT_EQ(content("tok0 tok1 tok2 tok3 tok4 "), "");
  EXPECT_EQ(content("hello"), "tok0 tok1 tok2 tok3 tok4 ");  // not our answer
  EXPECT_EQ(content("tok0 tok1 tok2 tok3 tok4 tok5"), "tok0 tok1 tok2 tok3 tok4 ");  // longer
  EXPECT_EQ(content("tok0 tox"), "tok0 tok1 tok2 tok3 tok4 ");
  // Only a string content is a prefill; content parts answer in full.
  Reply parts = Call(mock.port(), "POST", "/v1/chat/completions",
                     R"({"messages":[{"role":"assistant","content":[{"type":"text",)"
                     R"("text":"tok0 "}]}]})");
  EXPECT_EQ(nlohmann::json::parse(parts.body)["choices"][0]["message"]["content"],
            "tok0 tok1 tok2 tok3 tok4 ");
}

TEST(MockLlm, StreamContinuesAPrefillAsAStreamOfItsOwn) {
  MockLlm mock({.name = "c"});
  Reply first = Call(mock.port(), "POST", "/v1/chat/completions", ChatBody(true, "user", "x"));
  EXPECT_TRUE(first.complete);
  Reply r = Call(mock.port(), "POST", "/v1/chat/completions",
                 ChatBody(true, "assistant", "tok0 tok1 to"), {{"x-mock-chunks", "4"}});
  ASSERT_TRUE(r.complete);
  const int64_t created = CreatedOf(r.body);
  EXPECT_EQ(r.body,
            ChunkEvent("chatcmpl-c-2", created, R"({"role":"assistant","content":"k2 "})", false) +
                ChunkEvent("chatcmpl-c-2", created, R"({"content":"tok3 "})", true) +
                "data: [DONE]\n\n");
  // Nothing left to say: one empty chunk that ends the answer.
  Reply done = Call(mock.port(), "POST", "/v1/chat/completions",
                    ChatBody(true, "assistant", "tok0 tok1 "), {{"x-mock-chunks", "2"}});
  EXPECT_EQ(done.body,
            ChunkEvent("chatcmpl-c-3", created, R"({"role":"assistant","content":""})", true) +
                "data: [DONE]\n\n");
  // Faults count the continuation's own chunks.
  Reply cut = Call(mock.port(), "POST", "/v1/chat/completions",
                   ChatBody(true, "assistant", "tok0 "), {{"x-mock-die-after-chunks", "1"}});
  EXPECT_FALSE(cut.complete);
  EXPECT_EQ(cut.body, ChunkEvent("chatcmpl-c-4", created,
                                 R"({"role":"assistant","content":"tok1 "})", false));
}

// The contract the gateway's continuation relies on, end to end without the gateway: a
// stream cut after two chunks (the second one half sent), its text as an assistant
// prefill to another mock, and that continuation through ContinuationFilter give exactly
// the bytes of the unbroken stream.
TEST(MockLlm, BrokenStreamPlusFilteredContinuationEqualsTheWholeStream) {
  MockLlm a({.name = "a"});
  MockLlm b({.name = "b"});
  const std::string req = ChatBody(true, "user", "hello");
  Reply whole = Call(a.port(), "POST", "/v1/chat/completions", req);
  ASSERT_TRUE(whole.complete);

  Reply broken = Call(a.port(), "POST", "/v1/chat/completions", req,
                      {{"x-mock-die-after-chunks", "2"}, {"x-mock-partial-event-bytes", "40"}});
  ASSERT_FALSE(broken.complete);
  ChatStreamTracker tracker;
  SseParser first({.tracker = &tracker});
  const std::string sent(first.Feed(broken.body));  // what the client got; Finish() is not sent
  EXPECT_EQ(first.pending_bytes(), 46u);            // "data: " + 40 bytes held back
  ASSERT_TRUE(tracker.continuable());
  EXPECT_EQ(tracker.text(), "tok0 tok1 ");
  EXPECT_EQ(tracker.id(), "chatcmpl-a-2");

  auto prefilled = AppendAssistantPrefill(req, tracker.text());
  ASSERT_TRUE(prefilled.has_value());
  Reply cont = Call(b.port(), "POST", "/v1/chat/completions", *prefilled);
  ASSERT_TRUE(cont.complete);
  ContinuationFilter filter(tracker.id(), tracker.created());
  SseParser second({.continuation = &filter});
  std::string rest(second.Feed(cont.body));
  rest += second.Finish();

  // The whole stream, with the broken response's id (ids differ per response).
  std::string want = whole.body;
  for (size_t at = 0; (at = want.find("chatcmpl-a-1", at)) != std::string::npos;) {
    want.replace(at, 12, "chatcmpl-a-2");
  }
  EXPECT_EQ(sent + rest, want);
  EXPECT_EQ(filter.replaced(), 3u);  // tok2 (its role removed), tok3, tok4
  EXPECT_NE(cont.body.find(R"("id":"chatcmpl-b-1")"), std::string::npos);
}

TEST(MockLlm, RateLimitOnceThenOkAndAnOutageThatEndsByItself) {
  MockLlm mock;
  mock.PushFault({.status = 429, .retry_after_s = 2});
  Reply limited = Call(mock.port(), "POST", "/v1/chat/completions", kChat);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.headers["retry-after"], "2");
  Reply ok = Call(mock.port(), "POST", "/v1/chat/completions", kChat);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.headers.count("retry-after"), 0u);

  MockLlm down;
  down.SetDefaultFault({.unavailable_for_ms = 400});
  Reply during = Call(down.port(), "GET", "/v1/models", "");
  while (Clock::now() - down.started_at() < milliseconds(400)) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(Call(down.port(), "POST", "/v1/chat/completions", kChat).status, 200);
  auto reqs = down.Requests();
  ASSERT_EQ(reqs.size(), 2u);
  // The mock's own clock decided: a request received inside the window got 503.
  EXPECT_EQ(during.status, reqs[0].received_at - down.started_at() < milliseconds(400) ? 503 : 200);
}

TEST(MockLlm, ServesTlsWithACertificateMadeAtTestTime) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("mockllm-tls-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);

  MockLlm mock({.name = "tls", .tls_cert_file = cert, .tls_key_file = key});
  EXPECT_TRUE(mock.tls());
  EXPECT_EQ(mock.BaseUrl(), "https://127.0.0.1:" + std::to_string(mock.port()) + "/v1");
  // A TLS client that verifies against the throwaway certificate gets a normal reply;
  // one that trusts another CA refuses the connection.
  const std::string out = (dir / "out.txt").string();
  const std::string url = "https://localhost:" + std::to_string(mock.port()) + "/v1/models";
  const std::string curl = "curl -sS --max-time 10 -o " + out + " --cacert ";
  EXPECT_EQ(std::system((curl + cert + " " + url + " 2>/dev/null").c_str()), 0);
  std::ifstream f(out);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(nlohmann::json::parse(text)["object"], "list") << text;
  EXPECT_EQ(mock.RequestCount(), 1u);
  const std::string other = (dir / "other.pem").string();
  ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other "
                         "-keyout " +
                         (dir / "other-key.pem").string() + " -out " + other + " >/dev/null 2>&1")
                            .c_str()),
            0);
  EXPECT_NE(std::system((curl + other + " " + url + " 2>/dev/null").c_str()), 0);
  EXPECT_EQ(mock.RequestCount(), 1u);

  // Plain HTTP to a TLS port is not answered as HTTP.
  Reply plain = Call(mock.port(), "GET", "/v1/models", "");
  EXPECT_FALSE(plain.complete);
  EXPECT_THROW(MockLlm({.tls_cert_file = cert, .tls_key_file = (dir / "missing.pem").string()}),
               std::runtime_error);
  fs::remove_all(dir);
}

// ---- Anthropic Messages, OpenAI Responses and tool calls (tests/mockllm/mock_answers.h) ----

const Headers kAnthropicHeaders = {{"anthropic-version", "2023-06-01"}, {"x-api-key", "sk-ant"}};

std::string MessagesBody(bool stream, const std::string& extra = "") {
  return R"({"model":"claude-test","max_tokens":64,)" +
         std::string(stream ? R"("stream":true,)" : "") + extra +
         R"("messages":[{"role":"user","content":"hi"}]})";
}

Headers With(Headers h, const Headers& more) {
  h.insert(h.end(), more.begin(), more.end());
  return h;
}

struct SseEvent {
  std::string name;
  nlohmann::json data;
};

// "event: X\ndata: {...}\n\n" events; fails the test on any other framing.
std::vector<SseEvent> NamedEvents(const std::string& body) {
  std::vector<SseEvent> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t nl = body.find('\n', pos);
    size_t end = body.find("\n\n", pos);
    if (body.compare(pos, 7, "event: ") != 0 || nl == std::string::npos ||
        end == std::string::npos || body.compare(nl + 1, 6, "data: ") != 0) {
      ADD_FAILURE() << "bad SSE framing at byte " << pos << ": " << body.substr(pos, 80);
      break;
    }
    out.push_back({body.substr(pos + 7, nl - pos - 7),
                   nlohmann::json::parse(body.substr(nl + 7, end - nl - 7))});
    pos = end + 2;
  }
  return out;
}

std::vector<std::string> Names(const std::vector<SseEvent>& events) {
  std::vector<std::string> n;
  for (const auto& e : events) n.push_back(e.name);
  return n;
}

TEST(MockLlmMessages, PlainAnswerIsAnAnthropicMessageAndTheKeyIsRecorded) {
  MockLlm mock({.name = "an"});
  const std::string body = MessagesBody(false);
  Reply r = Call(mock.port(), "POST", "/v1/messages", body, kAnthropicHeaders);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "application/json");
  const std::string in = std::to_string(body.size() / 4);
  EXPECT_EQ(r.body, R"({"id":"msg_an_1","type":"message","role":"assistant","model":"claude-test",)"
                    R"("content":[{"type":"text","text":"tok0 tok1 tok2 tok3 tok4 "}],)"
                    R"("stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":)" +
                        in +
                        R"(,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,)"
                        R"("output_tokens":5}})");
  auto reqs = mock.Requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].Header("x-api-key"), "sk-ant");
  EXPECT_FALSE(reqs[0].HasHeader("authorization"));
  EXPECT_EQ(reqs[0].Header("anthropic-version"), "2023-06-01");
  // Without /v1, with a query string (Claude Code asks for /v1/messages?beta=true), and
  // with a bearer token instead of x-api-key.
  Reply q = Call(mock.port(), "POST", "/messages?beta=true", body,
                 {{"anthropic-version", "2023-06-01"}, {"Authorization", "Bearer t"}});
  EXPECT_EQ(q.status, 200);
  EXPECT_EQ(nlohmann::json::parse(q.body)["id"], "msg_an_2");
}

TEST(MockLlmMessages, RequestErrorsAreTheApisExactAnswers) {
  MockLlm mock;
  Reply nover =
      Call(mock.port(), "POST", "/v1/messages", MessagesBody(false), {{"x-api-key", "k"}});
  EXPECT_EQ(nover.status, 400);
  EXPECT_EQ(nover.body, R"({"type":"error","error":{"type":"invalid_request_error",)"
                        R"("message":"anthropic-version: header is required"}})");
  Reply nokey = Call(mock.port(), "POST", "/v1/messages", MessagesBody(false),
                     {{"anthropic-version", "2023-06-01"}});
  EXPECT_EQ(nokey.status, 401);
  EXPECT_EQ(nokey.body, R"({"type":"error","error":{"type":"authentication_error",)"
                        R"("message":"x-api-key header is required"}})");
  Reply nomax =
      Call(mock.port(), "POST", "/v1/messages",
           R"({"model":"c","messages":[{"role":"user","content":"hi"}]})", kAnthropicHeaders);
  EXPECT_EQ(nomax.status, 400);
  EXPECT_EQ(nomax.body, R"({"type":"error","error":{"type":"invalid_request_error",)"
                        R"("message":"max_tokens: Field required"}})");
  Reply badmax = Call(mock.port(), "POST", "/v1/messages", R"({"model":"c","max_tokens":"9"})",
                      kAnthropicHeaders);
  EXPECT_EQ(badmax.status, 400);
  EXPECT_EQ(nlohmann::json::parse(badmax.body)["error"]["message"],
            "max_tokens: Input should be a valid integer");
  Reply garbage = Call(mock.port(), "POST", "/v1/messages", "{not json", kAnthropicHeaders);
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(nlohmann::json::parse(garbage.body)["type"], "error");
  EXPECT_EQ(nlohmann::json::parse(garbage.body)["error"]["type"], "invalid_request_error");
  Reply get = Call(mock.port(), "GET", "/v1/messages", "", kAnthropicHeaders);
  EXPECT_EQ(get.status, 405);
}

TEST(MockLlmMessages, ScriptedFailuresUseAnthropicsErrorShape) {
  MockLlm mock;
  const std::vector<std::pair<int, std::string>> cases = {
      {429, "rate_limit_error"},     {529, "overloaded_error"}, {500, "api_error"},
      {401, "authentication_error"}, {404, "not_found_error"},  {400, "invalid_request_error"}};
  for (const auto& [status, type] : cases) {
    Reply r = Call(mock.port(), "POST", "/v1/messages", MessagesBody(true),
                   With(kAnthropicHeaders,
                        {{"x-mock-status", std::to_string(status)}, {"x-mock-retry-after", "3"}}));
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.headers["retry-after"], "3");
    EXPECT_EQ(r.body, R"({"type":"error","error":{"type":")" + type +
                          R"(","message":"mock scripted failure (status )" +
                          std::to_string(status) + ")\"}}");
  }
  // A scripted status wins over the header checks, as x-mock-status does everywhere.
  EXPECT_EQ(Call(mock.port(), "POST", "/v1/messages", "", {{"x-mock-status", "503"}}).status, 503);
  Reply ctx = Call(mock.port(), "POST", "/v1/messages", MessagesBody(false),
                   With(kAnthropicHeaders, {{"x-mock-context-length-exceeded", "1"}}));
  EXPECT_EQ(ctx.status, 400);
  EXPECT_EQ(ctx.body, kAnthropicPromptTooLongBody);
}

TEST(MockLlmMessages, StreamIsTheEventSequenceOfTheApiByteForByte) {
  MockLlm mock({.name = "s", .chunks = 2});
  const std::string body = MessagesBody(true);
  Reply r = Call(mock.port(), "POST", "/v1/messages", body, kAnthropicHeaders);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  const std::string in = std::to_string(body.size() / 4);
  EXPECT_EQ(
      r.body,
      "event: message_start\n"
      R"(data: {"type":"message_start","message":{"id":"msg_s_1","type":"message",)"
      R"("role":"assistant","model":"claude-test","content":[],"stop_reason":null,)"
      R"("stop_sequence":null,"usage":{"input_tokens":)" +
          in +
          R"(,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}})"
          "\n\n"
          "event: content_block_start\n"
          R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
          "\n\n"
          "event: ping\n"
          R"(data: {"type":"ping"})"
          "\n\n"
          "event: content_block_delta\n"
          R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok0 "}})"
          "\n\n"
          "event: content_block_delta\n"
          R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok1 "}})"
          "\n\n"
          "event: content_block_stop\n"
          R"(data: {"type":"content_block_stop","index":0})"
          "\n\n"
          "event: message_delta\n"
          R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}})"
          "\n\n"
          "event: message_stop\n"
          R"(data: {"type":"message_stop"})"
          "\n\n");
}

TEST(MockLlmMessages, ThinkingComesFirstAndAToolIsCalledWithStreamedJsonInput) {
  MockLlm mock({.name = "t"});
  const std::string extra =
      R"("thinking":{"type":"enabled","budget_tokens":1024},)"
      R"("tools":[{"name":"lookup","input_schema":{"type":"object"}},{"name":"other","input_schema":{}}],)";
  Reply r = Call(mock.port(), "POST", "/v1/messages", MessagesBody(true, extra), kAnthropicHeaders);
  ASSERT_TRUE(r.complete);
  auto ev = NamedEvents(r.body);
  EXPECT_EQ(Names(ev), (std::vector<std::string>{
                           "message_start", "content_block_start", "content_block_delta",
                           "content_block_delta", "content_block_stop", "content_block_start",
                           "ping", "content_block_delta", "content_block_delta",
                           "content_block_delta", "content_block_delta", "content_block_delta",
                           "content_block_stop", "message_delta", "message_stop"}));
  for (const auto& e : ev) EXPECT_EQ(e.data["type"], e.name);
  ASSERT_EQ(ev.size(), 15u);
  EXPECT_EQ(ev[1].data["content_block"]["type"], "thinking");
  EXPECT_EQ(ev[2].data["delta"]["type"], "thinking_delta");
  EXPECT_EQ(ev[3].data["delta"]["type"], "signature_delta");
  EXPECT_EQ(ev[5].data["index"], 1);
  EXPECT_EQ(
      ev[5].data["content_block"],
      nlohmann::json::parse(R"({"type":"tool_use","id":"toolu_t_1","name":"lookup","input":{}})"));
  std::string partial;
  for (size_t i = 7; i < 12; ++i) {
    EXPECT_EQ(ev[i].data["index"], 1);
    EXPECT_EQ(ev[i].data["delta"]["type"], "input_json_delta");
    partial += ev[i].data["delta"]["partial_json"].get<std::string>();
  }
  EXPECT_EQ(partial, R"({"q":"tok0 tok1 tok2 tok3 tok4 "})");
  EXPECT_EQ(ev[13].data["delta"]["stop_reason"], "tool_use");
  EXPECT_EQ(ev[13].data["usage"]["output_tokens"], 5);

  // The same, not streamed; and "adaptive" thinking counts too.
  Reply p =
      Call(mock.port(), "POST", "/v1/messages",
           MessagesBody(false, R"("thinking":{"type":"adaptive"},"tools":[{"name":"lookup"}],)"),
           kAnthropicHeaders);
  auto j = nlohmann::json::parse(p.body);
  EXPECT_EQ(j["stop_reason"], "tool_use");
  EXPECT_EQ(j["content"],
            nlohmann::json::parse(
                R"([{"type":"thinking","thinking":"mock thinks ","signature":"mock-signature"},)"
                R"({"type":"tool_use","id":"toolu_t_2","name":"lookup",)"
                R"("input":{"q":"tok0 tok1 tok2 tok3 tok4 "}}])"));
}

TEST(MockLlmMessages, AToolResultIsEchoedAndTrailingSystemMessagesAreNoTurn) {
  MockLlm mock({.name = "r"});
  // 38 ASCII bytes then a 3-byte character: 40 bytes would cut it, so the echo stops at 38.
  const std::string result = std::string(38, 'a') + "\xe2\x82\xac" + "tail";
  nlohmann::json req = nlohmann::json::parse(
      R"({"model":"c","max_tokens":10,"tools":[{"name":"lookup"}],"messages":[)"
      R"({"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use",)"
      R"("id":"toolu_1","name":"lookup","input":{}}]},{"role":"user","content":[)"
      R"({"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":""}]}]}]})");
  req["messages"][2]["content"][0]["content"][0]["text"] = result;
  Reply r = Call(mock.port(), "POST", "/v1/messages", req.dump(), kAnthropicHeaders);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["stop_reason"], "end_turn");
  EXPECT_EQ(j["content"][0]["text"], "tool said: " + std::string(38, 'a'));
  // A string result of up to 40 bytes comes back whole, quotes and all.
  req["messages"][2]["content"][0]["content"] = "say \"hi\"\n";
  req["stream"] = true;
  Reply s = Call(mock.port(), "POST", "/v1/messages", req.dump(), kAnthropicHeaders);
  std::string text;
  for (const auto& e : NamedEvents(s.body)) {
    if (e.name == "content_block_delta") text += e.data["delta"]["text"].get<std::string>();
  }
  EXPECT_EQ(text, "tool said: say \"hi\"\n");
  // Claude Code ends with a role "system" message: the user turn before it still calls.
  const std::string cc = R"({"model":"c","max_tokens":10,"tools":[{"name":"Agent"}],"messages":[)"
                         R"({"role":"user","content":"hi"},{"role":"system","content":"env"}]})";
  Reply t = Call(mock.port(), "POST", "/v1/messages", cc, kAnthropicHeaders);
  EXPECT_EQ(nlohmann::json::parse(t.body)["content"][0]["name"], "Agent");
  // x-mock-no-tools answers text although tools are defined.
  Reply n = Call(mock.port(), "POST", "/v1/messages", cc,
                 With(kAnthropicHeaders, {{"x-mock-no-tools", "1"}}));
  EXPECT_EQ(nlohmann::json::parse(n.body)["content"][0]["text"], "tok0 tok1 tok2 tok3 tok4 ");
}

TEST(MockLlmMessages, CountTokensIsABytesOverFourEstimate) {
  MockLlm mock;
  const std::string body = R"({"model":"c","messages":[{"role":"user","content":"count these"}]})";
  Reply r = Call(mock.port(), "POST", "/v1/messages/count_tokens", body, kAnthropicHeaders);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"input_tokens":)" + std::to_string(body.size() / 4) + "}");
  EXPECT_EQ(
      Call(mock.port(), "POST", "/v1/messages/count_tokens", body, {{"x-api-key", "k"}}).status,
      400);
}

TEST(MockLlmMessages, StreamFaultsCountTextDeltas) {
  MockLlm mock({.name = "f"});
  // die-after-chunks 2: two deltas, then the connection closes before content_block_stop.
  Reply d = Call(mock.port(), "POST", "/v1/messages", MessagesBody(true),
                 With(kAnthropicHeaders, {{"x-mock-die-after-chunks", "2"}}));
  EXPECT_FALSE(d.complete);
  EXPECT_EQ(d.status, 200);
  auto ev = NamedEvents(d.body);
  EXPECT_EQ(Names(ev), (std::vector<std::string>{"message_start", "content_block_start", "ping",
                                                 "content_block_delta", "content_block_delta"}));
  EXPECT_EQ(mock.CancelledCount(), 0u);

  // first-token-delay: message_start, the block and ping at once; the first delta after it.
  constexpr milliseconds kDelay(300);
  Conn c(mock.port());
  const auto sent = Clock::now();
  c.Send(Request("POST", "/v1/messages", MessagesBody(true),
                 With(kAnthropicHeaders, {{"x-mock-first-token-delay-ms", "300"}})));
  std::string got;
  ASSERT_TRUE(RecvUntil(c, got, "event: ping\n", kDelay));
  EXPECT_LT(Clock::now() - sent, kDelay);
  EXPECT_EQ(got.find("text_delta"), std::string::npos);
  Reply slow = ReadReply(c, milliseconds(10000), got);
  ASSERT_TRUE(slow.complete);
  EXPECT_GE(Clock::now() - sent, kDelay);
  EXPECT_EQ(NamedEvents(slow.body).back().name, "message_stop");

  // stall-after-chunks 1: silent after one delta until the client leaves (a cancellation).
  Conn st(mock.port());
  st.Send(Request("POST", "/v1/messages", MessagesBody(true),
                  With(kAnthropicHeaders, {{"x-mock-stall-after-chunks", "1"}})));
  Reply part = ReadReply(st, milliseconds(500));
  EXPECT_FALSE(part.complete);
  EXPECT_EQ(Names(NamedEvents(part.body)).back(), "content_block_delta");
  st.Close();
  ASSERT_TRUE(mock.WaitForCancellations(1, milliseconds(5000)));
  EXPECT_EQ(mock.Cancellations()[0].chunks_sent, 1);
  EXPECT_TRUE(mock.Cancellations()[0].stream);

  // after-done close: message_stop arrives, the terminating chunk never does.
  Reply ad = Call(mock.port(), "POST", "/v1/messages", MessagesBody(true),
                  With(kAnthropicHeaders, {{"x-mock-after-done", "close"}}));
  EXPECT_FALSE(ad.complete);
  EXPECT_NE(ad.body.find("event: message_stop\n"), std::string::npos);
}

const std::string kResponsesBody = R"({"model":"gpt-r","input":"hi"})";

TEST(MockLlmResponses, PlainAnswerIsACompletedResponseObject) {
  MockLlm mock({.name = "re"});
  Reply r =
      Call(mock.port(), "POST", "/v1/responses", kResponsesBody, {{"Authorization", "Bearer sk"}});
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["id"], "resp_re_1");
  EXPECT_EQ(j["object"], "response");
  EXPECT_EQ(j["status"], "completed");
  EXPECT_EQ(j["model"], "gpt-r");
  EXPECT_EQ(j["error"], nullptr);
  EXPECT_EQ(j["output"],
            nlohmann::json::parse(
                R"([{"id":"msg_re_1","type":"message","status":"completed","role":"assistant",)"
                R"("content":[{"type":"output_text","text":"tok0 tok1 tok2 tok3 tok4 ",)"
                R"("annotations":[],"logprobs":[]}]}])"));
  const int in = static_cast<int>(kResponsesBody.size() / 4);
  EXPECT_EQ(j["usage"], nlohmann::json({{"input_tokens", in},
                                        {"input_tokens_details", {{"cached_tokens", 0}}},
                                        {"output_tokens", 5},
                                        {"output_tokens_details", {{"reasoning_tokens", 0}}},
                                        {"total_tokens", in + 5}}));
  EXPECT_EQ(mock.Requests()[0].Header("authorization"), "Bearer sk");
  // Errors are OpenAI's shape on this route.
  Reply e = Call(mock.port(), "POST", "/responses", kResponsesBody, {{"x-mock-status", "429"}});
  EXPECT_EQ(e.status, 429);
  EXPECT_EQ(nlohmann::json::parse(e.body)["error"]["type"], "rate_limit_error");
  EXPECT_EQ(Call(mock.port(), "POST", "/v1/responses", "[1]").status, 400);
}

TEST(MockLlmResponses, StreamIsTheSemanticEventSequenceWithSequenceNumbers) {
  MockLlm mock({.name = "rs", .chunks = 3});
  Reply r =
      Call(mock.port(), "POST", "/v1/responses", R"({"model":"gpt-r","stream":true,"input":"hi"})");
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  auto ev = NamedEvents(r.body);
  EXPECT_EQ(Names(ev), (std::vector<std::string>{
                           "response.created", "response.in_progress", "response.output_item.added",
                           "response.content_part.added", "response.output_text.delta",
                           "response.output_text.delta", "response.output_text.delta",
                           "response.output_text.done", "response.content_part.done",
                           "response.output_item.done", "response.completed"}));
  for (size_t i = 0; i < ev.size(); ++i) {
    EXPECT_EQ(ev[i].data["type"], ev[i].name);
    EXPECT_EQ(ev[i].data["sequence_number"], static_cast<int>(i));
  }
  ASSERT_EQ(ev.size(), 11u);
  EXPECT_EQ(ev[0].data["response"]["status"], "in_progress");
  EXPECT_EQ(ev[0].data["response"]["output"], nlohmann::json::array());
  EXPECT_EQ(ev[2].data["item"]["content"], nlohmann::json::array());
  std::string text;
  for (size_t i = 4; i < 7; ++i) {
    EXPECT_EQ(ev[i].data["item_id"], "msg_rs_1");
    EXPECT_EQ(ev[i].data["output_index"], 0);
    EXPECT_EQ(ev[i].data["content_index"], 0);
    text += ev[i].data["delta"].get<std::string>();
  }
  EXPECT_EQ(text, "tok0 tok1 tok2 ");
  EXPECT_EQ(ev[7].data["text"], text);
  EXPECT_EQ(ev[8].data["part"]["text"], text);
  const auto& done = ev[10].data["response"];
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["output"][0]["content"][0]["text"], text);
  EXPECT_EQ(done["usage"]["output_tokens"], 3);
}

TEST(MockLlmResponses, AFunctionToolIsCalledAndItsOutputAnswered) {
  MockLlm mock({.name = "fc", .chunks = 2});
  const std::string body =
      R"({"model":"gpt-r","stream":true,"tools":[{"type":"web_search"},)"
      R"({"type":"function","name":"lookup","parameters":{}}],)"
      R"("input":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"},)"
      R"({"role":"developer","content":"env"}]})";
  Reply r = Call(mock.port(), "POST", "/v1/responses", body);
  auto ev = NamedEvents(r.body);
  EXPECT_EQ(Names(ev),
            (std::vector<std::string>{
                "response.created", "response.in_progress", "response.output_item.added",
                "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                "response.function_call_arguments.done", "response.output_item.done",
                "response.completed"}));
  ASSERT_EQ(ev.size(), 8u);
  EXPECT_EQ(
      ev[2].data["item"],
      nlohmann::json::parse(R"({"id":"fc_fc_1","type":"function_call","status":"in_progress",)"
                            R"("arguments":"","call_id":"call_fc_1","name":"lookup"})"));
  EXPECT_EQ(ev[3].data["delta"].get<std::string>() + ev[4].data["delta"].get<std::string>(),
            R"({"q":"tok0 tok1 "})");
  EXPECT_EQ(ev[5].data["arguments"], R"({"q":"tok0 tok1 "})");
  EXPECT_EQ(ev[5].data["name"], "lookup");
  EXPECT_EQ(ev[7].data["response"]["output"][0]["arguments"], R"({"q":"tok0 tok1 "})");
  EXPECT_EQ(ev[7].data["response"]["output"][0]["status"], "completed");

  const std::string answer =
      R"({"model":"gpt-r","tools":[{"type":"function","name":"lookup"}],"input":[)"
      R"({"role":"user","content":"hi"},{"type":"function_call","call_id":"call_fc_1",)"
      R"("name":"lookup","arguments":"{}"},{"type":"function_call_output","call_id":"call_fc_1",)"
      R"("output":"sunny"}]})";
  auto j = nlohmann::json::parse(Call(mock.port(), "POST", "/v1/responses", answer).body);
  EXPECT_EQ(j["output"][0]["type"], "message");
  EXPECT_EQ(j["output"][0]["content"][0]["text"], "tool said: sunny");
}

TEST(MockLlmResponses, DieAfterChunksBreaksTheStreamBeforeTheNextDelta) {
  MockLlm mock;
  Reply r =
      Call(mock.port(), "POST", "/v1/responses", R"({"model":"m","stream":true,"input":"hi"})",
           {{"x-mock-die-after-chunks", "1"}, {"x-mock-partial-event-bytes", "10"}});
  EXPECT_FALSE(r.complete);
  const std::string tail = "event: xxxxxxxxxx";
  ASSERT_GE(r.body.size(), tail.size());
  EXPECT_EQ(r.body.substr(r.body.size() - tail.size()), tail);
  auto ev = NamedEvents(r.body.substr(0, r.body.size() - tail.size()));
  EXPECT_EQ(Names(ev).back(), "response.output_text.delta");
  EXPECT_EQ(ev.size(), 5u);
}

TEST(MockLlmChatTools, TheFirstToolIsCalledAndAToolMessageIsAnswered) {
  MockLlm mock({.name = "ct", .chunks = 3});
  const std::string tools =
      R"("tools":[{"type":"function","function":{"name":"lookup","parameters":{}}}],)";
  const std::string ask =
      R"({"model":"gpt-test",)" + tools + R"("messages":[{"role":"user","content":"hi"}]})";
  auto j = nlohmann::json::parse(Call(mock.port(), "POST", "/v1/chat/completions", ask).body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(
      j["choices"][0]["message"],
      nlohmann::json::parse(R"({"role":"assistant","content":null,"tool_calls":[)"
                            R"({"id":"call_ct_1","type":"function","function":)"
                            R"({"name":"lookup","arguments":"{\"q\":\"tok0 tok1 tok2 \"}"}}]})"));

  const std::string ask_stream = R"({"model":"gpt-test","stream":true,)" + tools +
                                 R"("messages":[{"role":"user","content":"hi"}]})";
  Reply s = Call(mock.port(), "POST", "/v1/chat/completions", ask_stream);
  ASSERT_TRUE(s.complete);
  const int64_t created = CreatedOf(s.body);
  const std::string head =
      R"(data: {"id":"chatcmpl-ct-2","object":"chat.completion.chunk","created":)" +
      std::to_string(created) + R"(,"model":"gpt-test","choices":[{"index":0,"delta":)";
  EXPECT_EQ(
      s.body,
      head +
          R"({"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_ct_2",)"
          R"("type":"function","function":{"name":"lookup","arguments":"{\"q\":\"tok0 "}}]})"
          R"(,"finish_reason":null}]})"
          "\n\n" +
          head +
          R"({"tool_calls":[{"index":0,"function":{"arguments":"tok1 "}}]},"finish_reason":null}]})"
          "\n\n" +
          head +
          R"({"tool_calls":[{"index":0,"function":{"arguments":"tok2 \"}"}}]},"finish_reason":"tool_calls"}]})"
          "\n\n"
          "data: [DONE]\n\n");

  // A tool message (text parts too) is echoed, escaped as JSON in the stream.
  const std::string answer =
      R"({"model":"gpt-test","stream":true,)" + tools +
      R"("messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,)"
      R"("tool_calls":[{"id":"c","type":"function","function":{"name":"lookup","arguments":"{}"}}]},)"
      R"({"role":"tool","tool_call_id":"c","content":[{"type":"text","text":"a \"b\"\n"}]}]})";
  Reply t = Call(mock.port(), "POST", "/v1/chat/completions", answer);
  std::string text;
  for (const auto& d : SseData(t.body)) {
    if (d == "[DONE]") continue;
    auto c = nlohmann::json::parse(d);
    text += c["choices"][0]["delta"]["content"].get<std::string>();
    EXPECT_FALSE(c["choices"][0]["delta"].contains("tool_calls"));
  }
  EXPECT_EQ(text, "tool said: a \"b\"\n");
  // x-mock-no-tools: plain text although tools are defined.
  auto n = nlohmann::json::parse(
      Call(mock.port(), "POST", "/v1/chat/completions", ask, {{"x-mock-no-tools", "1"}}).body);
  EXPECT_EQ(n["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
  EXPECT_EQ(n["choices"][0]["finish_reason"], "stop");
}

TEST(MockLlmChatTools, WrongTypesInTurnsAndToolsAreIgnoredNotFatal) {
  MockLlm mock;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/messages", R"({"model":"m","max_tokens":1,"tools":"x","messages":[1,"a",{"role":5}]})"},
      {"/v1/messages",
       R"({"model":"m","max_tokens":1,"tools":[1],"thinking":3,)"
       R"("messages":[{"role":"user","content":[7,{"type":"tool_result","content":{"a":1}}]}]})"},
      {"/v1/messages", R"({"model":"m","max_tokens":1,"stream":true,"messages":{"role":"user"}})"},
      {"/v1/responses",
       R"({"model":"m","input":[{"type":"function_call_output","output":{"x":1}}]})"},
      {"/v1/responses", R"({"model":"m","input":5,"tools":[{"type":"function","name":7}]})"},
      {"/v1/responses", R"({"model":"m","stream":true,"input":[null],"tools":{"a":1}})"},
      {"/v1/chat/completions", R"({"model":"m","tools":[{"function":"x"}],)"
                               R"("messages":[{"role":"tool","content":7}]})"},
      {"/v1/chat/completions", R"({"model":"m","tools":[[]],"messages":[{"role":"user"}]})"},
  };
  for (const auto& [path, body] : cases) {
    Reply r = Call(mock.port(), "POST", path, body, kAnthropicHeaders);
    EXPECT_TRUE(r.complete) << path << " " << body;
    EXPECT_EQ(r.status, 200) << path << " " << body << " -> " << r.body;
  }
  // A tool result of a non-text type is an empty result, still answered.
  auto j = nlohmann::json::parse(Call(mock.port(), "POST", "/v1/responses", cases[3].second).body);
  EXPECT_EQ(j["output"][0]["content"][0]["text"], "tool said: ");
  EXPECT_EQ(Call(mock.port(), "GET", "/v1/models", "").status, 200);
}

}  // namespace
}  // namespace llmproxy
