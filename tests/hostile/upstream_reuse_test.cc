// Hostile upstreams against the worker's connection reuse (issue 10, items 6, 7 and 14):
// a client's exact bytes and the attempt count when an upstream sends a reply nobody asked
// for, reads a request and drops it, or is left idle past the pool's idle limit.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/routing/attempt_outcome.h"
#include "raw_upstream_util.h"

namespace llmproxy::hostile_upstream {
namespace {

using namespace std::chrono_literals;

const std::string kChat = R"({"model":"m1","messages":[]})";

// The client got exactly one response: `status_line`, `body`, from backend b1 in
// `attempts` attempts, and nothing after it.
void ExpectResponse(const std::string& raw, const std::string& status_line, const std::string& body,
                    const std::string& request_id, int attempts) {
  const ClientResponse r = ParseClientResponse(raw);
  ASSERT_TRUE(r.complete) << raw;
  EXPECT_EQ(r.status_line, status_line);
  EXPECT_EQ(r.body, body);
  if (!request_id.empty()) {
    EXPECT_EQ(r.Header("x-request-id"), request_id);
  }
  EXPECT_EQ(r.Header("x-llmproxy-backend"), "b1");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), std::to_string(attempts));
  EXPECT_EQ(r.rest, "") << "bytes after the response";
}

TEST(UpstreamReuseHostile, AnExtraReplyIsNeverHandedToTheNextClient) {
  RawUpstream up;
  const std::string real = JsonResponse(200, "OK", R"({"id":"real"})", "up-real");
  const std::string extra = JsonResponse(200, "OK", R"({"id":"unrequested"})", "up-extra");
  up.Push(RawUpstreamAction::ReplyThenExtra(real, extra, 30ms));
  PoolTunedWorker worker(OneBackendConfig(up.BaseUrl(), 0));

  ExpectResponse(ExchangeChat(worker.port(), kChat), "HTTP/1.1 200 OK", R"({"id":"real"})",
                 "up-real", 1);
  ASSERT_TRUE(up.WaitFor([](const RawUpstream& u) { return u.ExtrasSent() == 1; }, 5s));
  // The next two clients come well within a second: each gets its own answer, neither
  // the stray one nor a 502 from a connection out of step.
  ExpectResponse(ExchangeChat(worker.port(), kChat), "HTTP/1.1 200 OK", RawUpstream::DefaultBody(2),
                 "up-2", 1);
  ExpectResponse(ExchangeChat(worker.port(), kChat), "HTTP/1.1 200 OK", RawUpstream::DefaultBody(3),
                 "up-3", 1);
  EXPECT_EQ(up.RequestCount(), 3u);
  EXPECT_EQ(up.Connections().size(), 2u);  // the desynced one dropped, the new one reused
  ASSERT_TRUE(worker.observer().WaitForRecords(3, 5s));
  EXPECT_EQ(worker.observer().Attempts().size(), 3u);
}

TEST(UpstreamReuseHostile, ARequestReadAndDroppedIsAFailedAttemptNotASilentDuplicate) {
  RawUpstream up;
  PoolTunedWorker worker(OneBackendConfig(up.BaseUrl(), 0));  // retry 0: one attempt only
  ExpectResponse(ExchangeChat(worker.port(), kChat), "HTTP/1.1 200 OK", RawUpstream::DefaultBody(1),
                 "up-1", 1);
  // The pooled connection takes the next request whole and closes without a byte: the
  // upstream may have run it, so it is not sent again behind the client's back.
  up.Push(RawUpstreamAction::CloseAfterRequest());
  const ClientResponse r = ParseClientResponse(ExchangeChat(worker.port(), kChat));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status_line, "HTTP/1.1 502 Bad Gateway");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "1");
  EXPECT_NE(r.body.find("upstream connection broke while reading"), std::string::npos) << r.body;
  EXPECT_EQ(up.RequestCount(), 2u);
  EXPECT_EQ(up.Connections().size(), 1u);
  ASSERT_TRUE(worker.observer().WaitForRecords(2, 5s));
  const auto attempts = worker.observer().Attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].second, AttemptOutcome::kSuccess);
  EXPECT_NE(attempts[1].second, AttemptOutcome::kSuccess);
}

TEST(UpstreamReuseHostile, ARequestReadAndDroppedGoesToTheNextBackendUnderTheRetryRules) {
  RawUpstream up1;
  RawUpstream up2;
  Config config = test::TestConfig({test::MockBackend("b1", up1.BaseUrl(), {"m1"}),
                                    test::MockBackend("b2", up2.BaseUrl(), {"m1"})});
  config.retry = 1;
  PoolTunedWorker worker(std::move(config));
  // Round-robin: one request each leaves a pooled connection to both backends.
  const ClientResponse a1 = ParseClientResponse(ExchangeChat(worker.port(), kChat));
  const ClientResponse a2 = ParseClientResponse(ExchangeChat(worker.port(), kChat));
  ASSERT_EQ(a1.status_line, "HTTP/1.1 200 OK");
  ASSERT_EQ(a2.status_line, "HTTP/1.1 200 OK");
  const bool b1_next = a1.Header("x-llmproxy-backend") == "b1";
  RawUpstream& dropper = b1_next ? up1 : up2;
  RawUpstream& other = b1_next ? up2 : up1;
  dropper.Push(RawUpstreamAction::CloseAfterRequest());
  const ClientResponse r = ParseClientResponse(ExchangeChat(worker.port(), kChat));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, RawUpstream::DefaultBody(2));  // the other upstream's second request
  EXPECT_EQ(r.Header("x-llmproxy-backend"), b1_next ? "b2" : "b1");
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  EXPECT_EQ(r.rest, "");
  EXPECT_EQ(dropper.RequestCount(), 2u);  // once each: no duplicate on the dropper
  EXPECT_EQ(other.RequestCount(), 2u);
}

TEST(UpstreamReuseHostile, APooledConnectionResetDuringTheWriteIsResentOnceOnAFreshOne) {
  RawUpstream up;
  Config config = OneBackendConfig(up.BaseUrl(), 0);  // retry 0: the resend is the only extra
  config.server.max_body_bytes = 64ull << 20;
  PoolTunedWorker worker(std::move(config));
  ExpectResponse(ExchangeChat(worker.port(), kChat), "HTTP/1.1 200 OK", RawUpstream::DefaultBody(1),
                 "up-1", 1);
  // The pooled connection is reset after its head arrived, mid-body: the write fails with
  // no answer, so the upstream cannot have run the request and it is sent again.
  up.Push(RawUpstreamAction::ResetAfterHead());
  const std::string body = R"({"model":"m1","pad":")" + std::string(16 << 20, 'p') + "\"}";
  const ClientResponse r = ParseClientResponse(ExchangeChat(worker.port(), body, 30s));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, RawUpstream::DefaultBody(3));
  EXPECT_EQ(r.Header("x-request-id"), "up-3");
  EXPECT_EQ(r.rest, "");
  // The resend is an attempt of its own (issue 10 item 14): in the header, the record and
  // the outcome counters, as a connect error that does not touch health.
  EXPECT_EQ(r.Header("x-llmproxy-attempts"), "2");
  const auto attempts = worker.observer().Attempts();
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_EQ(attempts[0].second, AttemptOutcome::kSuccess);
  EXPECT_EQ(attempts[1].second, AttemptOutcome::kConnectError);
  EXPECT_EQ(attempts[2].second, AttemptOutcome::kSuccess);
  const std::vector<RawUpstreamRequest> requests = up.Requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_FALSE(requests[1].body_complete);
  EXPECT_TRUE(requests[2].body_complete);
  EXPECT_EQ(requests[2].body, body);
  EXPECT_EQ(up.Connections().size(), 2u);
}

TEST(UpstreamReuseHostile, AnIdleUpstreamConnectionIsClosedAtTheIdleLimitWithoutANewRequest) {
  RawUpstream up;
  UpstreamPoolOptions pool;
  pool.idle_expiry = 300ms;  // 55 s in production (docs/upstream.md)
  PoolTunedWorker worker(OneBackendConfig(up.BaseUrl(), 0), pool);
  ExpectResponse(ExchangeChat(worker.port(), kChat), "HTTP/1.1 200 OK", RawUpstream::DefaultBody(1),
                 "up-1", 1);
  ASSERT_TRUE(up.WaitFor(
      [](const RawUpstream& u) {
        const auto c = u.Connections();
        return !c.empty() && c[0].closed_by_peer;
      },
      5s))
      << "the worker kept the idle connection past its limit";
  const RawUpstreamConnection c = up.Connections()[0];
  const auto idle_for = c.peer_closed_at - c.last_reply_sent;
  EXPECT_GE(idle_for, 280ms);
  EXPECT_LT(idle_for, 1500ms);
  EXPECT_EQ(up.RequestCount(), 1u);
}

}  // namespace
}  // namespace llmproxy::hostile_upstream
