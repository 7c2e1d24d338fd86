// Unauthenticated memory: a keyless client gets its 401 from the head alone (no body
// byte read, no 100 Continue) and the connection closes; and the request bytes buffered
// across all connections stay under server.max_buffered_bytes: a body that would pass
// it gets 503 before it is read, and every ended request gives its share back.
#include <string>

#include <gtest/gtest.h>

#include "common/config/key_hash.h"
#include "tests/hostile/raw_client_util.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using hostile::RawConnection;
using hostile::RoundTrip;

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
const std::string k401Body =
    R"({"error":{"message":"Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",)"
    R"("type":"invalid_request_error","code":"invalid_api_key"}})";

// A valid chat body of exactly `size` bytes.
std::string ChatOfSize(size_t size) {
  std::string body = R"({"model":"m","messages":[],"pad":")";
  body += std::string(size - body.size() - 2, 'p');
  body += "\"}";
  return body;
}

std::string HeadOnly(size_t length, std::string_view extra) {
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         "Content-Type: application/json\r\n" +
         std::string(extra) + "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

class KeylessClient : public ::testing::Test {
 protected:
  KeylessClient() {
    Config c = test::TestConfig({test::MockBackend("a", a.BaseUrl(), {"m"})});
    c.auth_keys = {ClientKey{"client", Sha256Hex("client-key"), {}}};
    worker = std::make_unique<test::TestWorker>(c, 1, std::vector<RequestObserver*>{&observer});
  }
  MockLlm a{test::NamedMock("a")};
  test::RecordingObserver observer;
  std::unique_ptr<test::TestWorker> worker;
};

TEST_F(KeylessClient, Gets401FromTheHeadAloneWithoutAContinueAndTheConnectionCloses) {
  RawConnection c;
  ASSERT_TRUE(c.Connect(worker->port()));
  // A megabyte announced, not one byte of it sent: the answer cannot depend on the body.
  ASSERT_TRUE(c.Send(HeadOnly(1 << 20, "Expect: 100-continue\r\n")));
  ASSERT_TRUE(c.ReadUntilClosed(10s)) << c.received();
  EXPECT_EQ(c.received().find("100 Continue"), std::string::npos) << c.received();
  std::string rest;
  auto replies = hostile::SplitResponses(c.received(), &rest);
  ASSERT_EQ(replies.size(), 1u) << c.received();
  EXPECT_EQ(rest, "");
  EXPECT_EQ(replies[0].status_line, "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(replies[0].Get("connection"), "close");
  EXPECT_EQ(replies[0].Get("content-type"), "application/json");
  EXPECT_EQ(replies[0].body, k401Body);
  EXPECT_EQ(a.RequestCount(), 0u);
  // Counted like any request (metrics and the access log read this record).
  ASSERT_TRUE(observer.WaitForRecords(1, 5s));
  const RequestRecord record = observer.Records()[0];
  EXPECT_EQ(record.status, 401);
  EXPECT_EQ(record.path, "/v1/chat/completions");
  EXPECT_EQ(record.bytes_in, 0u);
}

TEST_F(KeylessClient, AWrongKeyWithTheBodyAlreadySentAlsoClosesAfterThe401) {
  const std::string body = ChatOfSize(200);
  hostile::Exchange ex =
      RoundTrip(worker->port(), HeadOnly(body.size(), "Authorization: Bearer wrong\r\n") + body +
                                    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(ex.closed);
  // The unread body is never parsed as a request: one answer, then the close.
  ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(ex.replies[0].body, k401Body);
  EXPECT_EQ(a.RequestCount(), 0u);
}

TEST_F(KeylessClient, AKeyedClientStillGetsItsContinue) {
  RawConnection c;
  ASSERT_TRUE(c.Connect(worker->port()));
  const std::string body = ChatOfSize(300);
  ASSERT_TRUE(c.Send(HeadOnly(body.size(),
                              "Authorization: Bearer client-key\r\nExpect: 100-continue\r\n"
                              "Connection: close\r\n")));
  ASSERT_TRUE(c.ReadUntil([](const std::string& r) { return r.size() >= kContinue.size(); }, 5s));
  EXPECT_EQ(c.received(), kContinue);
  ASSERT_TRUE(c.Send(body));
  ASSERT_TRUE(c.ReadUntilClosed(10s));
  std::string rest;
  auto replies = hostile::SplitResponses(c.received(), &rest);
  ASSERT_EQ(replies.size(), 2u) << c.received();
  EXPECT_EQ(replies[1].status_line, "HTTP/1.1 200 OK");
  ASSERT_EQ(a.RequestCount(), 1u);
  EXPECT_EQ(a.Requests()[0].body, body);
}

// The cap: bodies up to 4096 bytes each, 6000 buffered at once over all connections.
class BufferedBytesCap : public ::testing::Test {
 protected:
  BufferedBytesCap() {
    Config c = test::TestConfig({test::MockBackend("a", a.BaseUrl(), {"m"})});
    c.server.max_body_bytes = 4096;
    c.server.max_buffered_bytes = 6000;
    worker = std::make_unique<test::TestWorker>(c, 2);
  }

  // Opens a connection whose 4000-byte body is announced (Expect) and reserved, but not
  // sent: the 100 Continue says the worker took the budget for it.
  void Hold(RawConnection& c) {
    ASSERT_TRUE(c.Connect(worker->port()));
    ASSERT_TRUE(c.Send(HeadOnly(4000, "Expect: 100-continue\r\nConnection: close\r\n")));
    ASSERT_TRUE(c.ReadUntil([](const std::string& r) { return r.size() >= kContinue.size(); }, 5s));
    ASSERT_EQ(c.received(), kContinue);
  }

  int PostStatus(size_t size) {
    hostile::Exchange ex =
        RoundTrip(worker->port(),
                  hostile::Post("/v1/chat/completions", ChatOfSize(size), "Connection: close\r\n"));
    return ex.replies.empty() ? 0 : ex.replies.back().status;
  }

  MockLlm a{test::NamedMock("a")};
  std::unique_ptr<test::TestWorker> worker;
};

const std::string k503Body =
    R"({"error":{"message":"The proxy is holding too many request bytes right now )"
    R"((server.max_buffered_bytes = 6000); retry the request later.",)"
    R"("type":"server_error","code":"server_busy"}})";

TEST_F(BufferedBytesCap, ABodyPastTheCapGets503AndTheCapIsGivenBackWhenRequestsEnd) {
  RawConnection holder;
  Hold(holder);
  // 4000 held + 3000 > 6000: refused before its body is read, connection closed.
  hostile::Exchange ex =
      RoundTrip(worker->port(), hostile::Post("/v1/chat/completions", ChatOfSize(3000)) +
                                    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(ex.closed);
  ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_EQ(ex.replies[0].Get("connection"), "close");
  EXPECT_EQ(ex.replies[0].Get("content-type"), "application/json");
  EXPECT_EQ(ex.replies[0].body, k503Body);
  // A chunked body is charged chunk by chunk: a 3000-byte chunk is refused too.
  char size[16];
  std::snprintf(size, sizeof size, "%x\r\n", 3000);
  hostile::Exchange chunked = RoundTrip(
      worker->port(),
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
          std::string(size) + ChatOfSize(3000) + "\r\n0\r\n\r\n");
  ASSERT_EQ(chunked.replies.size(), 1u) << chunked.raw;
  EXPECT_EQ(chunked.replies[0].status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_EQ(chunked.replies[0].body, k503Body);
  // What fits beside the held body is served.
  EXPECT_EQ(PostStatus(1500), 200);
  // The held body arrives and is served; its 4000 bytes go back to the budget.
  ASSERT_TRUE(holder.Send(ChatOfSize(4000)));
  ASSERT_TRUE(holder.ReadUntilClosed(10s));
  std::string rest;
  auto replies = hostile::SplitResponses(holder.received(), &rest);
  ASSERT_EQ(replies.size(), 2u) << holder.received();
  EXPECT_EQ(replies[1].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(PostStatus(4000), 200);
  EXPECT_EQ(a.RequestCount(), 3u);
}

TEST_F(BufferedBytesCap, AbandonedAndRefusedBodiesGiveTheirShareBack) {
  // A client that announces 4000 bytes and leaves mid-body.
  {
    RawConnection c;
    Hold(c);
    ASSERT_TRUE(c.Send(std::string(100, ' ')));
  }
  // The worker notices the hang-up asynchronously: until then its 4000 bytes stay held
  // and a 4000-byte body does not fit beside them (6000). Once one is served, nothing
  // of the abandoned upload stayed reserved.
  ASSERT_TRUE(test::WaitUntil([&] { return PostStatus(4000) == 200; }, 5s));
  // A body over max_body_bytes (413), and a body that is not JSON (400).
  hostile::Exchange too_large =
      RoundTrip(worker->port(), hostile::Post("/v1/chat/completions", ChatOfSize(4097)));
  ASSERT_EQ(too_large.replies.size(), 1u);
  EXPECT_EQ(too_large.replies[0].status, 413);
  hostile::Exchange bad = RoundTrip(
      worker->port(),
      hostile::Post("/v1/chat/completions", std::string(3000, '{'), "Connection: close\r\n"));
  ASSERT_EQ(bad.replies.size(), 1u);
  EXPECT_EQ(bad.replies[0].status, 400);
  // Two 3000-byte bodies fit at the same time: the refused ones gave their share back.
  RawConnection first;
  ASSERT_TRUE(first.Connect(worker->port()));
  ASSERT_TRUE(first.Send(HeadOnly(3000, "Expect: 100-continue\r\nConnection: close\r\n")));
  ASSERT_TRUE(
      first.ReadUntil([](const std::string& r) { return r.size() >= kContinue.size(); }, 5s));
  EXPECT_EQ(PostStatus(3000), 200);
  ASSERT_TRUE(first.Send(ChatOfSize(3000)));
  ASSERT_TRUE(first.ReadUntilClosed(10s));
  EXPECT_NE(first.received().find("HTTP/1.1 200 OK"), std::string::npos) << first.received();
}

}  // namespace
}  // namespace llmproxy
