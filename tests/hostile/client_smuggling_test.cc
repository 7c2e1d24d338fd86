// Request smuggling (TE.0 / TE.CL): a request whose Transfer-Encoding is anything but one
// final `chunked` gets 400 (501 for an unknown coding before chunked) and the connection
// closes, so the bytes behind its head never run as a second request. Beast alone treats
// such a request as bodiless and parses its body as the next request.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/hostile/raw_client_util.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using hostile::RoundTrip;

constexpr std::string_view kChat = R"({"model":"m","messages":[]})";

// What an attacker hides in the "body": a complete second request. If it ran, the
// upstream would see a request and a second response would come back.
std::string Smuggled() { return hostile::Post("/v1/chat/completions", kChat); }

std::string HeadWithTe(std::string_view te_lines, std::string_view version = "HTTP/1.1") {
  std::string out = "POST /v1/chat/completions ";
  out += version;
  out += "\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  out += te_lines;
  out += "\r\n";
  return out;
}

std::string ErrorJson(std::string_view message, std::string_view type = "invalid_request_error",
                      std::string_view code = "invalid_request") {
  return R"({"error":{"message":")" + std::string(message) + R"(","type":")" + std::string(type) +
         R"(","code":")" + std::string(code) + R"("}})";
}

class Smuggling : public ::testing::Test {
 protected:
  void ExpectRefused(const std::string& bytes, std::string_view status_line,
                     const std::string& body) {
    hostile::Exchange ex = RoundTrip(worker.port(), bytes);
    EXPECT_TRUE(ex.closed) << "the connection must close";
    ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
    EXPECT_EQ(ex.rest, "");
    const hostile::RawReply& r = ex.replies[0];
    EXPECT_EQ(r.status_line, status_line);
    EXPECT_EQ(r.Get("connection"), "close");
    EXPECT_EQ(r.Get("content-type"), "application/json");
    EXPECT_EQ(r.Get("content-length"), std::to_string(body.size()));
    EXPECT_EQ(r.body, body);
    EXPECT_EQ(a.RequestCount(), 0u) << "a smuggled request reached the upstream";
  }

  MockLlm a{[] {
    MockLlmOptions o;
    o.name = "a";
    return o;
  }()};
  test::TestWorker worker{test::TestConfig({test::MockBackend("a", a.BaseUrl(), {"m"})})};
};

TEST_F(Smuggling, TransferCodingsThatDoNotEndInChunkedAre400) {
  const std::string must_end = ErrorJson("Transfer-Encoding must end with chunked.");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"identity", must_end},
      {"gzip", must_end},
      {"xchunked", must_end},
      {"chunkedx", must_end},
      {"chunked, identity", must_end},
      {"chunked;ext=1", must_end},
      {",", must_end},
      {"", must_end},
      {"\"chunked\"", ErrorJson("Malformed Transfer-Encoding.")},
      {"chunked\"", ErrorJson("Malformed Transfer-Encoding.")},
  };
  for (const auto& [te, body] : cases) {
    SCOPED_TRACE(te);
    ExpectRefused(HeadWithTe("Transfer-Encoding: " + te + "\r\n") + Smuggled(),
                  "HTTP/1.1 400 Bad Request", body);
  }
}

TEST_F(Smuggling, AnUnknownCodingBeforeChunkedIs501) {
  for (std::string te : {"gzip, chunked", "x-custom;q=1, chunked"}) {
    SCOPED_TRACE(te);
    ExpectRefused(HeadWithTe("Transfer-Encoding: " + te + "\r\n") + "0\r\n\r\n" + Smuggled(),
                  "HTTP/1.1 501 Not Implemented",
                  ErrorJson("Only the chunked transfer coding is supported on requests.",
                            "invalid_request_error", "unsupported_transfer_encoding"));
  }
  // The same list split over two field lines.
  ExpectRefused(HeadWithTe("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n") +
                    "0\r\n\r\n" + Smuggled(),
                "HTTP/1.1 501 Not Implemented",
                ErrorJson("Only the chunked transfer coding is supported on requests.",
                          "invalid_request_error", "unsupported_transfer_encoding"));
}

TEST_F(Smuggling, ChunkedTwiceIs400) {
  ExpectRefused(HeadWithTe("Transfer-Encoding: chunked, chunked\r\n") + "0\r\n\r\n" + Smuggled(),
                "HTTP/1.1 400 Bad Request",
                ErrorJson("Transfer-Encoding applies chunked more than once."));
  // Two field lines: Beast refuses the duplicate itself.
  ExpectRefused(HeadWithTe("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") +
                    "0\r\n\r\n" + Smuggled(),
                "HTTP/1.1 400 Bad Request", ErrorJson("Malformed HTTP request."));
}

TEST_F(Smuggling, ContentLengthWithTransferEncodingIs400InEitherOrder) {
  const std::string smuggled = Smuggled();
  const std::string length = "Content-Length: " + std::to_string(smuggled.size()) + "\r\n";
  // Content-Length first, then chunked: Beast refuses the conflict.
  ExpectRefused(HeadWithTe(length + "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n" + smuggled,
                "HTTP/1.1 400 Bad Request", ErrorJson("Malformed HTTP request."));
  // A non-chunked coding, then Content-Length: Beast takes the length; we do not.
  ExpectRefused(HeadWithTe("Transfer-Encoding: identity\r\n" + length) + smuggled,
                "HTTP/1.1 400 Bad Request",
                ErrorJson("A request must not carry both Content-Length and Transfer-Encoding."));
  // chunked first, then Content-Length.
  ExpectRefused(HeadWithTe("Transfer-Encoding: chunked\r\n" + length) + "0\r\n\r\n" + smuggled,
                "HTTP/1.1 400 Bad Request", ErrorJson("Malformed HTTP request."));
}

TEST_F(Smuggling, TransferEncodingInHttp10Is400) {
  ExpectRefused(HeadWithTe("Transfer-Encoding: chunked\r\n", "HTTP/1.0") + "0\r\n\r\n" + Smuggled(),
                "HTTP/1.1 400 Bad Request",
                ErrorJson("Transfer-Encoding is not allowed in an HTTP/1.0 request."));
}

TEST_F(Smuggling, PlainChunkedIsServedAndTheNextRequestRunsOnlyOnce) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", kChat.size());
  const std::string chunked =
      HeadWithTe("Transfer-Encoding: Chunked\r\n") + size + std::string(kChat) + "\r\n0\r\n\r\n";
  const std::string second = hostile::Post("/v1/chat/completions", kChat, "Connection: close\r\n");
  hostile::Exchange ex = RoundTrip(worker.port(), chunked + second);
  EXPECT_TRUE(ex.closed);
  ASSERT_EQ(ex.replies.size(), 2u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(ex.replies[1].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(ex.rest, "");
  ASSERT_EQ(a.RequestCount(), 2u);
  for (const auto& r : a.Requests()) EXPECT_EQ(r.body, kChat);
}

}  // namespace
}  // namespace llmproxy
