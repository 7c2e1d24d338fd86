// Hostile upstream answers through the worker (issue 10, items 8 and 13): an answer sent
// before the request body was read, followed by a close, reaches the client as the
// upstream's answer; a response larger than server.max_response_bytes ends in a 502 once
// the limit is reached, without reading the rest.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>

#include "dataplane/routing/attempt_outcome.h"
#include "raw_upstream_util.h"

namespace llmproxy::hostile_upstream {
namespace {

using namespace std::chrono_literals;

const char kChunkedHead[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: up-big\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";

TEST(UpstreamAnswerHostile, AnAnswerBeforeTheBodyWasReadIsRelayedNotRetried) {
  RawUpstream up;
  const std::string error = R"({"error":{"message":"request too large","type":"invalid"}})";
  up.Push(RawUpstreamAction::AnswerEarlyThenClose(
      JsonResponse(413, "Payload Too Large", error, "up-413", true)));
  Config config = OneBackendConfig(up.BaseUrl(), 3);
  config.server.max_body_bytes = 64ull << 20;
  PoolTunedWorker worker(std::move(config));
  // Larger than any pair of socket buffers: the upstream answers and closes mid-write.
  const std::string body = R"({"model":"m1","pad":")" + std::string(16 << 20, 'p') + "\"}";
  const ClientResponse r = ParseClientResponse(ExchangeChat(worker.port(), body, 30s));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status_line, "HTTP/1.1 413 Payload Too Large");
  EXPECT_EQ(r.body, error);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("x-request-id"), "up-413");
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b1");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_EQ(r.rest, "");
  // Not counted as a connect error and not retried: the upstream said no, once.
  EXPECT_EQ(up.RequestCount(), 1u);
  ASSERT_TRUE(worker.observer().WaitForRecords(1, 5s));
  const auto attempts = worker.observer().Attempts();
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].second, AttemptOutcome::kClientError);
}

TEST(UpstreamAnswerHostile, AChunkedResponseOverTheLimitIsCutThereWithA502) {
  RawUpstream up;
  up.Push(RawUpstreamAction::HugeChunked(kChunkedHead, 64u << 20));
  Config config = OneBackendConfig(up.BaseUrl(), 0);
  config.server.max_response_bytes = 1 << 20;
  PoolTunedWorker worker(std::move(config));
  const ClientResponse r =
      ParseClientResponse(ExchangeChat(worker.port(), R"({"model":"m1"})", 30s));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status_line, "HTTP/1.1 502 Bad Gateway");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_NE(r.body.find("upstream response body too large"), std::string::npos) << r.body;
  EXPECT_EQ(r.rest, "");
  // The worker stopped reading at the limit and hung up: the upstream could not send
  // its 64 MiB.
  ASSERT_TRUE(up.WaitFor(
      [](const RawUpstream& u) {
        const auto c = u.Connections();
        return !c.empty() && c[0].send_failed;
      },
      10s));
  EXPECT_LT(up.Connections()[0].body_bytes_sent, size_t{32} << 20);
}

TEST(UpstreamAnswerHostile, AResponseExactlyAtTheLimitIsRelayedWhole) {
  RawUpstream up;
  up.Push(RawUpstreamAction::HugeChunked(kChunkedHead, 1 << 20));
  Config config = OneBackendConfig(up.BaseUrl(), 0);
  config.server.max_response_bytes = 1 << 20;
  PoolTunedWorker worker(std::move(config));
  const ClientResponse r =
      ParseClientResponse(ExchangeChat(worker.port(), R"({"model":"m1"})", 30s));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.Header("x-request-id"), "up-big");
  EXPECT_EQ(r.Header("content-length"), std::to_string(1 << 20));
  EXPECT_EQ(r.body, std::string(1 << 20, 'x'));
  EXPECT_EQ(r.rest, "");
}

TEST(UpstreamAnswerHostile, AContentLengthOverTheLimitIsRefusedWithoutReadingTheBody) {
  RawUpstream up;
  up.Push(RawUpstreamAction::Reply(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1048577\r\n\r\n"));
  Config config = OneBackendConfig(up.BaseUrl(), 0);
  config.server.max_response_bytes = 1 << 20;
  PoolTunedWorker worker(std::move(config));
  const ClientResponse r = ParseClientResponse(ExchangeChat(worker.port(), R"({"model":"m1"})"));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status_line, "HTTP/1.1 502 Bad Gateway");
  EXPECT_NE(r.body.find("upstream response body too large"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace llmproxy::hostile_upstream
