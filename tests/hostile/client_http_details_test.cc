// HTTP details a hostile or merely unusual client relies on (RFC 9110/9112): HEAD is
// GET without the body, every 405 says Allow, exactly one Host, absolute-form targets,
// versions (1.2+ served as 1.1, other majors 505), headers named in Connection stay
// here, and error messages echoing client bytes stay valid UTF-8.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/hostile/raw_client_util.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using namespace std::chrono_literals;
using hostile::RoundTrip;

constexpr std::string_view kChat = R"({"model":"m","messages":[]})";
const std::string kFffd = "\xEF\xBF\xBD";

std::string ErrorJson(std::string_view message, std::string_view code = "invalid_request") {
  return R"({"error":{"message":")" + std::string(message) +
         R"(","type":"invalid_request_error","code":")" + std::string(code) + R"("}})";
}

class HttpDetails : public ::testing::Test {
 protected:
  MockLlm a{[] {
    MockLlmOptions o;
    o.name = "a";
    return o;
  }()};
  test::TestWorker worker{test::TestConfig({test::MockBackend("a", a.BaseUrl(), {"m"})})};
};

TEST_F(HttpDetails, HeadHealthIsGetWithoutTheBody) {
  // HEAD, then GET on the same connection: if the HEAD answer carried a body, the GET's
  // answer would not parse where it starts.
  hostile::Exchange ex = RoundTrip(worker.port(),
                                   "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                                   "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   false, 10s, {true, false});
  EXPECT_TRUE(ex.closed);
  ASSERT_EQ(ex.replies.size(), 2u) << ex.raw;
  EXPECT_EQ(ex.rest, "");
  const auto& head = ex.replies[0];
  const auto& get = ex.replies[1];
  EXPECT_EQ(head.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(get.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(head.body, "");
  EXPECT_FALSE(get.body.empty());
  EXPECT_EQ(head.Get("content-length"), std::to_string(get.body.size()));
  EXPECT_EQ(head.Get("content-type"), "application/json");
  // HEAD /v1/models too.
  hostile::Exchange models =
      RoundTrip(worker.port(), "HEAD /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                false, 10s, {true});
  ASSERT_EQ(models.replies.size(), 1u) << models.raw;
  EXPECT_EQ(models.replies[0].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(models.rest, "");
  EXPECT_NE(models.replies[0].Get("content-length"), "0");
}

TEST_F(HttpDetails, A405ToHeadHasNoBodyAndEvery405SaysAllow) {
  hostile::Exchange ex = RoundTrip(worker.port(),
                                   "HEAD /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n"
                                   "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   false, 10s, {true, false});
  ASSERT_EQ(ex.replies.size(), 2u) << ex.raw;
  EXPECT_EQ(ex.rest, "");
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 405 Method Not Allowed");
  EXPECT_EQ(ex.replies[0].Get("allow"), "POST, OPTIONS");
  EXPECT_EQ(ex.replies[0].body, "");
  EXPECT_EQ(ex.replies[1].status_line, "HTTP/1.1 200 OK");

  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"GET", "/v1/chat/completions", "POST, OPTIONS"},
      {"PUT", "/v1/embeddings", "POST, OPTIONS"},
      {"POST", "/health", "GET, HEAD, OPTIONS"},
      {"DELETE", "/v1/models", "GET, HEAD, OPTIONS"},
  };
  for (const auto& [method, path, allow] : cases) {
    SCOPED_TRACE(method + " " + path);
    hostile::Exchange r = RoundTrip(
        worker.port(), method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(r.replies.size(), 1u) << r.raw;
    EXPECT_EQ(r.replies[0].status_line, "HTTP/1.1 405 Method Not Allowed");
    EXPECT_EQ(r.replies[0].Count("allow"), 1u);
    EXPECT_EQ(r.replies[0].Get("allow"), allow);
    EXPECT_EQ(r.replies[0].body, ErrorJson("Method " + method + " is not allowed on this route.",
                                           "method_not_allowed"));
  }
}

TEST_F(HttpDetails, Http11WithoutHostOrWithTwoIs400AndCloses) {
  const std::string none = ErrorJson("An HTTP/1.1 request must carry a Host header.");
  const std::string two = ErrorJson("A request must not carry more than one Host header.");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"GET /health HTTP/1.1\r\n\r\n", none},
      {"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", two},
      {"GET /health HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", two},
      {"GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", two},
      {hostile::Post("/v1/chat/completions", kChat, "Host: evil\r\n"), two},
  };
  for (const auto& [bytes, body] : cases) {
    SCOPED_TRACE(bytes);
    hostile::Exchange ex =
        RoundTrip(worker.port(), bytes + "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(ex.closed);
    ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
    EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 400 Bad Request");
    EXPECT_EQ(ex.replies[0].Get("connection"), "close");
    EXPECT_EQ(ex.replies[0].body, body);
  }
  EXPECT_EQ(a.RequestCount(), 0u);
  // HTTP/1.0 needs no Host.
  hostile::Exchange ok = RoundTrip(worker.port(), "GET /health HTTP/1.0\r\n\r\n");
  ASSERT_EQ(ok.replies.size(), 1u) << ok.raw;
  EXPECT_EQ(ok.replies[0].status_line, "HTTP/1.0 200 OK");
}

TEST_F(HttpDetails, AbsoluteFormTargetsAreServed) {
  const std::string body(kChat);
  hostile::Exchange ex = RoundTrip(
      worker.port(),
      "POST http://gateway.example/v1/chat/completions HTTP/1.1\r\nHost: gateway.example\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body +
          "GET HTTPS://gateway.example/health?probe=1 HTTP/1.1\r\nHost: gateway.example\r\n"
          "Connection: close\r\n\r\n");
  ASSERT_EQ(ex.replies.size(), 2u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(ex.replies[0].Get("x-llmproxy-backend"), "a");
  EXPECT_EQ(ex.replies[1].status_line, "HTTP/1.1 200 OK");
  EXPECT_NE(ex.replies[1].body.find(R"("status":"ok")"), std::string::npos);
  ASSERT_EQ(a.RequestCount(), 1u);
  EXPECT_EQ(a.Requests()[0].target, "/v1/chat/completions");  // as for origin form
  EXPECT_EQ(a.Requests()[0].body, body);
  // An authority without a path is "/": not a route.
  hostile::Exchange root = RoundTrip(
      worker.port(), "GET http://gateway.example HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n");
  ASSERT_GE(root.replies.size(), 1u) << root.raw;
  EXPECT_EQ(root.replies[0].status_line, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(root.replies[0].body, ErrorJson("Unknown route: /", "not_found"));
}

// Beast parses HTTP/1.0 and HTTP/1.1 only; every other version gets 505 and a close.
TEST_F(HttpDetails, VersionsOtherThan10And11Get505) {
  const std::string body = ErrorJson("Only HTTP/1.0 and HTTP/1.1 are served on this port.",
                                     "http_version_not_supported");
  for (std::string version : {"HTTP/1.2", "HTTP/1.9", "HTTP/2.0", "HTTP/0.9", "HTTP/3.1"}) {
    SCOPED_TRACE(version);
    hostile::Exchange ex = RoundTrip(worker.port(), "GET /health " + version +
                                                        "\r\nHost: x\r\n\r\n"
                                                        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(ex.closed);
    ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
    EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 505 HTTP Version Not Supported");
    EXPECT_EQ(ex.replies[0].Get("connection"), "close");
    EXPECT_EQ(ex.replies[0].body, body);
  }
  // A proxied request with a body behind its head: nothing reaches the upstream.
  hostile::Exchange post = RoundTrip(
      worker.port(), hostile::Post("/v1/chat/completions", kChat).replace(26, 8, "HTTP/2.0"));
  ASSERT_EQ(post.replies.size(), 1u) << post.raw;
  EXPECT_EQ(post.replies[0].status, 505);
  EXPECT_EQ(a.RequestCount(), 0u);
}

TEST_F(HttpDetails, HeadersNamedInConnectionAreNotForwarded) {
  hostile::Exchange ex =
      RoundTrip(worker.port(),
                hostile::Post("/v1/chat/completions", kChat,
                              "Connection: keep-alive, X-Hop-Secret,x-hop-other\r\n"
                              "X-Hop-Secret: s3cret\r\nX-Hop-Other: o\r\nX-End-To-End: kept\r\n") +
                    "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(ex.replies.size(), 2u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 200 OK");
  ASSERT_EQ(a.RequestCount(), 1u);
  const auto requests = a.Requests();  // a copy: the mock returns its list by value
  const auto& seen = requests[0];
  EXPECT_FALSE(seen.HasHeader("x-hop-secret"));
  EXPECT_FALSE(seen.HasHeader("x-hop-other"));
  EXPECT_FALSE(seen.HasHeader("connection"));
  EXPECT_EQ(seen.Header("x-end-to-end"), "kept");
}

TEST_F(HttpDetails, EchoedClientBytesStayValidUtf8) {
  hostile::Exchange ex = RoundTrip(
      worker.port(), "GET /v9/\xff\xfe\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(ex.replies[0].body,
            ErrorJson("Unknown route: /v9/" + kFffd + kFffd + "\xc3\xa9", "not_found"));
  EXPECT_FALSE(nlohmann::json::parse(ex.replies[0].body, nullptr, false).is_discarded());
  // A long path is cut on a character boundary: 126 ASCII bytes then "é" (2 bytes) fits
  // exactly in 128; the next "é" does not.
  const std::string path = "/" + std::string(125, 'p') + "\xc3\xa9\xc3\xa9";
  hostile::Exchange cut =
      RoundTrip(worker.port(), "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(cut.replies.size(), 1u) << cut.raw;
  EXPECT_EQ(cut.replies[0].body,
            ErrorJson("Unknown route: /" + std::string(125, 'p') + "\xc3\xa9...", "not_found"));
  EXPECT_FALSE(nlohmann::json::parse(cut.replies[0].body, nullptr, false).is_discarded());
  // A long method in a 405 likewise.
  const std::string method(200, 'M');
  hostile::Exchange m = RoundTrip(
      worker.port(), method + " /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(m.replies.size(), 1u) << m.raw;
  EXPECT_EQ(m.replies[0].body,
            ErrorJson("Method " + std::string(128, 'M') + "... is not allowed on this route.",
                      "method_not_allowed"));
}

}  // namespace
}  // namespace llmproxy
