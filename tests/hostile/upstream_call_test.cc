// UpstreamCall and UpstreamPool against the raw hostile upstream, below the pipeline: what
// reaches a call (exact bytes, resends(), errors) and what the pool keeps, for an extra
// unrequested response, an answer before the body was read, a reset during the write, a
// huge chunked body and an idle connection left alone.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/field.hpp>

#include "dataplane/upstream/upstream_call.h"
#include "dataplane/protocols/upstream_url.h"
#include "raw_upstream_util.h"

namespace llmproxy::hostile_upstream {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

struct CallResult {
  std::error_code ec;
  unsigned status = 0;
  std::string body;
  size_t body_capacity = 0;
  bool reused = false;
  uint32_t resends = 0;
};

// Runs calls on one io thread with its own pool, as a worker thread does.
class CallLoop {
 public:
  explicit CallLoop(UpstreamPoolOptions options = {})
      : pool_(std::make_unique<UpstreamPool>(ioc_.get_executor(), std::move(options))) {}
  ~CallLoop() { pool_.reset(); }
  UpstreamPool& pool() { return *pool_; }
  asio::io_context& ioc() { return ioc_; }

  // One POST with `body`, the whole answer read with ReadAll(limit).
  CallResult Post(const std::string& base_url, std::string body, size_t limit = 1 << 20) {
    CallResult result;
    bool finished = false;
    asio::co_spawn(
        ioc_,
        [&, body = std::move(body)]() -> asio::awaitable<void> {
          const UpstreamUrl url = *ParseUpstreamUrl(base_url);
          const std::string head = "POST " + url.Target("/chat/completions") +
                                   " HTTP/1.1\r\nHost: " + url.HostHeader() +
                                   "\r\nContent-Type: application/json\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n";
          UpstreamCall call(*pool_);
          result.ec = co_await call.StartRaw(url, head, body, {});
          result.resends = call.resends();
          result.reused = call.reused_connection();
          if (!result.ec) {
            result.status = call.status();
            result.ec = co_await call.ReadAll(result.body, limit, 10s);
            result.body_capacity = result.body.capacity();
          }
          finished = true;
          ioc_.stop();
        },
        asio::detached);
    ioc_.restart();
    ioc_.run_for(30s);
    EXPECT_TRUE(finished) << "call did not finish";
    return result;
  }

 private:
  asio::io_context ioc_;
  std::unique_ptr<UpstreamPool> pool_;
};

const std::string kSmall = R"({"model":"m1"})";

// A body no socket buffer pair holds: the write is still going when the upstream acts.
std::string LargeBody() { return R"({"model":"m1","pad":")" + std::string(16 << 20, 'p') + "\"}"; }

TEST(UpstreamCallHostile, ExtraResponseArrivingAfterTheReplyIsNeverReadAsTheNextAnswer) {
  RawUpstream up;
  const std::string first = JsonResponse(200, "OK", R"({"n":1})", "up-1");
  const std::string extra = JsonResponse(200, "OK", R"({"unrequested":true})", "up-x");
  up.Push(RawUpstreamAction::ReplyThenExtra(first, extra, 30ms));
  CallLoop loop;
  const CallResult a = loop.Post(up.BaseUrl(), kSmall);
  ASSERT_FALSE(a.ec) << a.ec.message();
  EXPECT_EQ(a.body, R"({"n":1})");
  EXPECT_EQ(loop.pool().idle_count(), 1u);  // nothing extra had arrived yet
  ASSERT_TRUE(up.WaitFor([](const RawUpstream& u) { return u.ExtrasSent() == 1; }, 5s));
  // Well within a second of idling: the reuse check peeks anyway, sees the extra bytes
  // and drops the connection.
  const CallResult b = loop.Post(up.BaseUrl(), kSmall);
  ASSERT_FALSE(b.ec) << b.ec.message();
  EXPECT_EQ(b.status, 200u);
  EXPECT_EQ(b.body, RawUpstream::DefaultBody(2));
  EXPECT_FALSE(b.reused);
  EXPECT_EQ(b.resends, 0u);
  const CallResult c = loop.Post(up.BaseUrl(), kSmall);
  ASSERT_FALSE(c.ec) << c.ec.message();
  EXPECT_EQ(c.body, RawUpstream::DefaultBody(3));
  EXPECT_TRUE(c.reused);
  ASSERT_EQ(up.Connections().size(), 2u);
  EXPECT_EQ(up.RequestCount(), 3u);
}

TEST(UpstreamCallHostile, ExtraResponseInTheSameSegmentIsNotPooled) {
  RawUpstream up;
  const std::string first = JsonResponse(200, "OK", R"({"n":1})", "up-1");
  const std::string extra = JsonResponse(200, "OK", R"({"unrequested":true})", "up-x");
  up.Push(RawUpstreamAction::Reply(first + extra));  // one send: read with the reply
  CallLoop loop;
  const CallResult a = loop.Post(up.BaseUrl(), kSmall);
  ASSERT_FALSE(a.ec) << a.ec.message();
  EXPECT_EQ(a.body, R"({"n":1})");
  EXPECT_EQ(loop.pool().idle_count(), 0u);  // bytes past the response: closed at release
  const CallResult b = loop.Post(up.BaseUrl(), kSmall);
  ASSERT_FALSE(b.ec) << b.ec.message();
  EXPECT_EQ(b.body, RawUpstream::DefaultBody(2));
  EXPECT_FALSE(b.reused);
  EXPECT_EQ(up.Connections().size(), 2u);
}

TEST(UpstreamCallHostile, AnswerBeforeTheBodyWasReadIsTheResponseNotAWriteError) {
  RawUpstream up;
  const std::string answer =
      JsonResponse(413, "Payload Too Large", R"({"error":{"message":"too big"}})", "up-413", true);
  up.Push(RawUpstreamAction::AnswerEarlyThenClose(answer));
  CallLoop loop;
  const CallResult r = loop.Post(up.BaseUrl(), LargeBody());
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 413u);
  EXPECT_EQ(r.body, R"({"error":{"message":"too big"}})");
  EXPECT_EQ(r.resends, 0u);
  EXPECT_EQ(loop.pool().idle_count(), 0u);  // the request never went out whole
  ASSERT_EQ(up.RequestCount(), 1u);
  EXPECT_FALSE(up.Requests()[0].body_complete);
}

TEST(UpstreamCallHostile, EarlyAnswerOnAPooledConnectionIsNotResent) {
  RawUpstream up;
  CallLoop loop;
  ASSERT_FALSE(loop.Post(up.BaseUrl(), kSmall).ec);
  up.Push(RawUpstreamAction::AnswerEarlyThenClose(
      JsonResponse(413, "Payload Too Large", "{}", "up-413", true)));
  const CallResult r = loop.Post(up.BaseUrl(), LargeBody());
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_TRUE(r.reused);
  EXPECT_EQ(r.status, 413u);
  EXPECT_EQ(r.resends, 0u);  // it answered: nothing to resend
  EXPECT_EQ(up.RequestCount(), 2u);
}

TEST(UpstreamCallHostile, PooledConnectionResetDuringTheWriteIsResentOnceAndCounted) {
  RawUpstream up;
  CallLoop loop;
  ASSERT_FALSE(loop.Post(up.BaseUrl(), kSmall).ec);
  up.Push(RawUpstreamAction::ResetAfterHead());  // the write fails, no answer: never processed
  const std::string body = LargeBody();
  const CallResult r = loop.Post(up.BaseUrl(), body);
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, RawUpstream::DefaultBody(3));
  EXPECT_EQ(r.resends, 1u);
  EXPECT_FALSE(r.reused);  // the final connection is the fresh one
  const std::vector<RawUpstreamRequest> requests = up.Requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_FALSE(requests[1].body_complete);
  EXPECT_TRUE(requests[2].body_complete);
  EXPECT_EQ(requests[2].body, body);
  EXPECT_EQ(requests[2].connection, 2);
}

TEST(UpstreamCallHostile, PooledConnectionThatTookTheRequestAndClosedIsNotResent) {
  RawUpstream up;
  CallLoop loop;
  ASSERT_FALSE(loop.Post(up.BaseUrl(), kSmall).ec);
  up.Push(RawUpstreamAction::CloseAfterRequest());
  const CallResult r = loop.Post(up.BaseUrl(), kSmall);
  EXPECT_EQ(r.ec, UpstreamErrc::kReadFailed) << r.ec.message();
  EXPECT_EQ(r.resends, 0u);
  EXPECT_EQ(up.RequestCount(), 2u);  // no silent duplicate
  EXPECT_EQ(up.Connections().size(), 1u);
}

TEST(UpstreamCallHostile, ChunkedBodyOverTheLimitStopsThereAndNeverGrowsPastIt) {
  RawUpstream up;
  constexpr size_t kLimit = 3 * 1000 * 1000 + 7;  // not a power of two: growth must stop at it
  up.Push(RawUpstreamAction::HugeChunked(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      64u << 20));
  CallLoop loop;
  const CallResult r = loop.Post(up.BaseUrl(), kSmall, kLimit);
  EXPECT_EQ(r.ec, UpstreamErrc::kBodyTooLarge) << r.ec.message();
  // Read up to the limit (the last piece, which would pass it, is not kept).
  EXPECT_LE(r.body.size(), kLimit);
  EXPECT_GT(r.body.size(), kLimit - 64 * 1024);
  EXPECT_LE(r.body_capacity, kLimit);
  EXPECT_EQ(loop.pool().idle_count(), 0u);
  // We stopped reading and closed: the upstream's send failed long before 64 MiB.
  ASSERT_TRUE(up.WaitFor(
      [](const RawUpstream& u) {
        const auto c = u.Connections();
        return !c.empty() && c[0].send_failed;
      },
      10s));
  EXPECT_LT(up.Connections()[0].body_bytes_sent, size_t{32} << 20);
}

TEST(UpstreamCallHostile, ChunkedBodyExactlyAtTheLimitIsWhole) {
  RawUpstream up;
  constexpr size_t kLimit = 3 * 1000 * 1000 + 7;
  up.Push(RawUpstreamAction::HugeChunked(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      kLimit));
  CallLoop loop;
  const CallResult r = loop.Post(up.BaseUrl(), kSmall, kLimit);
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.body, std::string(kLimit, 'x'));
  EXPECT_LE(r.body_capacity, kLimit);
  EXPECT_EQ(loop.pool().idle_count(), 1u);
}

TEST(UpstreamCallHostile, ContentLengthOverTheLimitIsRefusedBeforeTheBody) {
  RawUpstream up;
  up.Push(RawUpstreamAction::Reply(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000001\r\n\r\n"));
  CallLoop loop;
  const CallResult r = loop.Post(up.BaseUrl(), kSmall, 5000000);
  EXPECT_EQ(r.ec, UpstreamErrc::kBodyTooLarge) << r.ec.message();
  EXPECT_EQ(r.body, "");
  EXPECT_LE(r.body_capacity, 15u);  // nothing allocated for it
}

TEST(UpstreamCallHostile, IdleConnectionIsClosedByTheSweepAloneAtItsExpiry) {
  RawUpstream up;
  UpstreamPoolOptions options;
  options.idle_expiry = 300ms;
  CallLoop loop(options);
  ASSERT_FALSE(loop.Post(up.BaseUrl(), kSmall).ec);
  ASSERT_EQ(loop.pool().idle_count(), 1u);
  // No request follows; the io thread just runs, as a worker's does.
  std::thread io([&] {
    loop.ioc().restart();
    loop.ioc().run_for(5s);
  });
  const bool closed = up.WaitFor(
      [](const RawUpstream& u) {
        const auto c = u.Connections();
        return !c.empty() && c[0].closed_by_peer;
      },
      4s);
  io.join();
  ASSERT_TRUE(closed) << "the idle connection was not closed";
  const RawUpstreamConnection c = up.Connections()[0];
  const auto idle_for = c.peer_closed_at - c.last_reply_sent;
  EXPECT_GE(idle_for, 280ms);
  EXPECT_LT(idle_for, 1500ms);
  EXPECT_EQ(loop.pool().idle_count(), 0u);
  EXPECT_EQ(up.RequestCount(), 1u);
}

}  // namespace
}  // namespace llmproxy::hostile_upstream
