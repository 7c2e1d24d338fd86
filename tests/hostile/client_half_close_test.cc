// Half-close: a client that sends its request(s) and then FIN (shutdown(SHUT_WR), as
// HTTP/1.0 tools and `nc -N` do) gets every response, pipelined ones included, and then
// the connection closes. Before, the FIN looked like a hang-up and cancelled the upstream.
#include <string>

#include <gtest/gtest.h>

#include "tests/hostile/raw_client_util.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using hostile::RoundTrip;

std::string Chat(const std::string& model, bool stream = false) {
  return R"({"model":")" + model + R"(","stream":)" + (stream ? "true" : "false") +
         R"(,"messages":[]})";
}

class HalfClose : public ::testing::Test {
 protected:
  MockLlm a{test::NamedMock("a")};
  MockLlm b{test::NamedMock("b")};
  test::TestWorker worker{test::TestConfig({test::MockBackend("a", a.BaseUrl(), {"model-a"}),
                                            test::MockBackend("b", b.BaseUrl(), {"model-b"})})};
};

TEST_F(HalfClose, OneRequestThenFinIsAnswered) {
  hostile::Exchange ex =
      RoundTrip(worker.port(), hostile::Post("/v1/chat/completions", Chat("model-a")), true);
  EXPECT_TRUE(ex.closed);
  ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
  EXPECT_EQ(ex.rest, "");
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(ex.replies[0].Get("x-llmproxy-backend"), "a");
  EXPECT_NE(ex.replies[0].body.find(R"("model":"model-a")"), std::string::npos)
      << ex.replies[0].body;
  EXPECT_EQ(a.Stats().cancelled, 0u);
}

TEST_F(HalfClose, PipelinedRequestsThenFinAreAllAnsweredInOrder) {
  const std::string bytes = hostile::Post("/v1/chat/completions", Chat("model-a")) +
                            "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" +
                            hostile::Post("/v1/chat/completions", Chat("model-b")) +
                            hostile::Post("/v1/chat/completions", Chat("model-a"));
  hostile::Exchange ex = RoundTrip(worker.port(), bytes, true);
  EXPECT_TRUE(ex.closed);
  ASSERT_EQ(ex.replies.size(), 4u) << ex.raw;
  EXPECT_EQ(ex.rest, "");
  for (const auto& r : ex.replies) EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(ex.replies[0].Get("x-llmproxy-backend"), "a");
  EXPECT_NE(ex.replies[1].body.find(R"("status":"ok")"), std::string::npos);
  EXPECT_EQ(ex.replies[2].Get("x-llmproxy-backend"), "b");
  EXPECT_EQ(ex.replies[3].Get("x-llmproxy-backend"), "a");
  EXPECT_EQ(a.RequestCount(), 2u);
  EXPECT_EQ(b.RequestCount(), 1u);
  EXPECT_EQ(a.Stats().cancelled + b.Stats().cancelled, 0u);
}

TEST_F(HalfClose, AStreamThenFinIsRelayedToItsEnd) {
  hostile::Exchange ex = RoundTrip(
      worker.port(),
      hostile::Post("/v1/chat/completions", Chat("model-a", true), "x-mock-chunks: 20\r\n"), true);
  EXPECT_TRUE(ex.closed);
  ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(ex.replies[0].Get("transfer-encoding"), "chunked");
  const std::string& body = ex.replies[0].body;
  ASSERT_GE(body.size(), 14u);
  EXPECT_EQ(body.substr(body.size() - 14), "data: [DONE]\n\n");
  EXPECT_EQ(body.find("\"error\""), std::string::npos) << body;
  EXPECT_EQ(a.Stats().cancelled, 0u);
}

TEST_F(HalfClose, Http10RequestThenFinIsAnswered) {
  const std::string body = Chat("model-b");
  const std::string bytes =
      "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  hostile::Exchange ex = RoundTrip(worker.port(), bytes, true);
  EXPECT_TRUE(ex.closed);
  ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.0 200 OK");
  EXPECT_EQ(ex.replies[0].Get("x-llmproxy-backend"), "b");
}

// A request that closes the connection after its answer (HTTP/1.0, or `Connection:
// close`) can be followed by nothing else, so its FIN, even one that comes while the
// upstream works, is a half-close: the answer arrives whole and nothing is cancelled.
TEST_F(HalfClose, ALateFinAfterARequestThatClosesIsStillAnswered) {
  const std::string body = Chat("model-a");
  const std::string requests[] = {
      "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
      "x-mock-delay-ms: 300\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body,
      hostile::Post("/v1/chat/completions", body, "Connection: close\r\nx-mock-delay-ms: 300\r\n"),
  };
  uint64_t served = 0;
  for (const std::string& bytes : requests) {
    hostile::RawConnection c;
    ASSERT_TRUE(c.Connect(worker.port()));
    ASSERT_TRUE(c.Send(bytes));
    ASSERT_TRUE(a.WaitForRequests(++served, 5s));
    c.ShutdownWrite();  // after the upstream got the request: a late FIN
    ASSERT_TRUE(c.ReadUntilClosed(10s));
    std::string rest;
    const auto replies = hostile::SplitResponses(c.received(), &rest);
    ASSERT_EQ(replies.size(), 1u) << c.received();
    EXPECT_EQ(replies[0].status_line.substr(9), "200 OK");
    EXPECT_EQ(replies[0].Get("x-llmproxy-backend"), "a");
    EXPECT_NE(replies[0].body.find("\"choices\""), std::string::npos) << replies[0].body;
    EXPECT_EQ(a.Stats().cancelled, 0u);
  }
}

// A FIN that comes later, while the upstream works, on a keep-alive request is still a
// hang-up: cancelled (tokens cost money; such a client could have sent more requests).
TEST_F(HalfClose, AFinWhileTheUpstreamWorksStillCancelsIt) {
  hostile::RawConnection c;
  ASSERT_TRUE(c.Connect(worker.port()));
  ASSERT_TRUE(
      c.Send(hostile::Post("/v1/chat/completions", Chat("model-a"), "x-mock-delay-ms: 3000\r\n")));
  ASSERT_TRUE(a.WaitForRequests(1, 5s));
  c.ShutdownWrite();
  EXPECT_TRUE(a.WaitForCancellations(1, 1000ms));
}

}  // namespace
}  // namespace llmproxy
