#include "dataplane/upstream/upstream_call.h"

#include <algorithm>
#include <array>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>

#include "dataplane/http/http_head.h"
#include "dataplane/http/peer_error.h"
#include "dataplane/http/socket_write.h"

namespace llmproxy {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

// The peer closed or reset the connection (as opposed to a protocol error or timeout).
bool IsConnectionLoss(const boost::system::error_code& ec) { return IsPeerGone(ec); }

std::error_code MapReadError(const boost::system::error_code& ec, bool cancelled, bool timed_out,
                             UpstreamErrc timeout_code) {
  if (cancelled) return UpstreamErrc::kCancelled;
  if (timed_out) return timeout_code;
  if (ec == asio::error::operation_aborted) return UpstreamErrc::kCancelled;
  if (ec.category() == make_error_code(http::error::end_of_stream).category() &&
      !IsConnectionLoss(ec)) {
    return UpstreamErrc::kBadResponse;
  }
  return UpstreamErrc::kReadFailed;
}

}  // namespace

UpstreamCall::UpstreamCall(UpstreamPool& pool) : pool_(pool) {}

UpstreamCall::~UpstreamCall() { Release(); }

const UpstreamCall::Head& UpstreamCall::head() const {
  static const Head kEmpty;
  if (!parser_) return kEmpty;
  return parser_->get().base();
}

void UpstreamCall::Cancel() {
  cancel_.Cancel();
  if (conn_) conn_->Close();
  if (!sticky_error_) sticky_error_ = UpstreamErrc::kCancelled;
}

void UpstreamCall::Release() {
  if (!conn_) return;
  const bool reusable = started_ && body_done_ && !sticky_error_ && !cancel_.cancelled &&
                        request_keep_alive_ && parser_ && parser_->keep_alive();
  if (reusable) {
    pool_.Release(std::move(conn_));
  } else {
    conn_->Close();
    conn_.reset();
  }
}

asio::awaitable<std::error_code> UpstreamCall::Start(const UpstreamUrl& url,
                                                     http::request<http::string_body> request,
                                                     UpstreamCallOptions options) {
  if (request.find(http::field::host) == request.end()) {
    request.set(http::field::host, url.HostHeader());
  }
  request.version(11);
  request.prepare_payload();
  request_keep_alive_ = request.keep_alive();
  owned_head_.clear();
  AppendRequestLine(owned_head_, request.method_string(), request.target());
  AppendFields(owned_head_, request.base());
  owned_head_ += "\r\n";
  owned_body_ = std::move(request.body());
  co_return co_await StartRaw(url, owned_head_, owned_body_, options);
}

asio::awaitable<std::error_code> UpstreamCall::StartRaw(const UpstreamUrl& url,
                                                        std::string_view head,
                                                        std::string_view body,
                                                        UpstreamCallOptions options) {
  if (started_) co_return UpstreamErrc::kBadUrl;  // misuse: one exchange per call
  started_ = true;
  if (cancel_.cancelled) co_return UpstreamErrc::kCancelled;
  head_ = head;
  body_ = body;

  for (int round = 0; round < 2; ++round) {
    UpstreamPool::Acquired acquired = co_await pool_.Acquire(
        url, options.tls_insecure_skip_verify, options.connect_timeout, round > 0, cancel_);
    if (cancel_.cancelled) co_return UpstreamErrc::kCancelled;
    if (acquired.ec) co_return acquired.ec;
    conn_ = std::move(acquired.conn);
    reused_ = acquired.reused;
    ++connections_tried_;

    bool nothing_received = false;
    const std::error_code ec =
        co_await SendAndReadHead(*conn_, Clock::now() + options.response_timeout, nothing_received);
    if (!ec) co_return ec;
    if (cancel_.cancelled) co_return UpstreamErrc::kCancelled;
    conn_->Close();
    conn_.reset();
    // The keep-alive race: the server closed this idle connection as we reused it. It
    // never saw the request, so sending it again on a fresh connection is safe.
    const bool stale = reused_ && nothing_received &&
                       (ec == UpstreamErrc::kWriteFailed || ec == UpstreamErrc::kReadFailed);
    if (!stale) co_return ec;
  }
  co_return UpstreamErrc::kReadFailed;
}

asio::awaitable<std::error_code> UpstreamCall::SendAndReadHead(UpstreamConnection& conn,
                                                               Clock::time_point deadline,
                                                               bool& nothing_received) {
  nothing_received = false;
  conn.buffer().clear();
  conn.ExpiresAt(deadline);
  const std::array<asio::const_buffer, 2> request{asio::buffer(head_.data(), head_.size()),
                                                  asio::buffer(body_.data(), body_.size())};
  boost::system::error_code write_ec;
  if (conn.is_tls()) {
    auto [ec, written] = co_await conn.WithStream(
        [&](auto& stream) { return asio::async_write(stream, request, kUse); });
    (void)written;
    write_ec = ec;
  } else {
    write_ec = co_await WriteAll(conn.socket(), request);
  }
  if (write_ec) {
    nothing_received = true;
    if (cancel_.cancelled) co_return UpstreamErrc::kCancelled;
    if (conn.timed_out()) co_return UpstreamErrc::kResponseTimeout;
    if (write_ec == asio::error::operation_aborted) co_return UpstreamErrc::kCancelled;
    co_return UpstreamErrc::kWriteFailed;
  }
  while (true) {
    parser_.emplace(std::piecewise_construct, std::make_tuple(),
                    std::make_tuple(ArenaAllocator(&head_arena_)));
    parser_->header_limit(static_cast<uint32_t>(pool_.options().max_header_bytes));
    parser_->body_limit(boost::none);  // streams are unbounded; ReadAll applies its own limit
    auto [read_ec, read] = co_await conn.WithStream([&](auto& stream) {
      return http::async_read_header(stream, conn.buffer(), *parser_, kUse);
    });
    if (read_ec) {
      nothing_received = IsConnectionLoss(read_ec) && conn.buffer().size() == 0 && read == 0;
      co_return MapReadError(read_ec, cancel_.cancelled, conn.timed_out(),
                             UpstreamErrc::kResponseTimeout);
    }
    // Interim 1xx responses (100 Continue, 103 Early Hints) precede the real one.
    const unsigned status = parser_->get().result_int();
    if (status < 100 || status >= 200 || status == 101) break;
  }
  conn.ExpiresNever();
  chunk_ = conn.BodyChunk(pool_.options().read_chunk_bytes);
  body_done_ = parser_->is_done();
  co_return std::error_code{};
}

asio::awaitable<std::error_code> UpstreamCall::ReadSome(char* data, size_t size,
                                                        Clock::time_point deadline, size_t& got) {
  got = 0;
  conn_->ExpiresAt(deadline);
  // Loop until some body bytes arrive: a read may consume only chunk framing.
  while (true) {
    auto& body = parser_->get().body();
    body.data = data;
    body.size = size;
    // Bytes already buffered (a first chunk that came with the head, the rest of a small
    // body) are parsed in place: under a burst of streams the requeue of an async read
    // that completes at once was most of the time to first token.
    boost::system::error_code parse_ec;
    ParseBuffered(*parser_, conn_->buffer(), parse_ec);
    if (parse_ec) {
      sticky_error_ = UpstreamErrc::kBadResponse;
      conn_->Close();
      co_return sticky_error_;
    }
    got = size - body.size;
    body_done_ = parser_->is_done();
    if (got > 0 || body_done_) {
      if (body_done_) conn_->ExpiresNever();
      co_return std::error_code{};
    }
    auto [ec, n] = co_await conn_->WithStream([&](auto& stream) {
      return http::async_read_some(stream, conn_->buffer(), *parser_, kUse);
    });
    (void)n;
    if (cancel_.cancelled) {
      sticky_error_ = UpstreamErrc::kCancelled;
      co_return sticky_error_;
    }
    if (ec && ec != http::error::need_buffer) {
      sticky_error_ = MapReadError(ec, false, conn_->timed_out(), UpstreamErrc::kBodyTimeout);
      conn_->Close();
      co_return sticky_error_;
    }
    got = size - parser_->get().body().size;
    body_done_ = parser_->is_done();
    if (body_done_) conn_->ExpiresNever();
    if (got > 0 || body_done_) co_return std::error_code{};
  }
}

asio::awaitable<UpstreamBodyPiece> UpstreamCall::ReadBody(std::chrono::milliseconds idle_timeout) {
  UpstreamBodyPiece piece;
  if (sticky_error_) {
    piece.ec = sticky_error_;
    co_return piece;
  }
  if (!conn_ || !parser_) {
    piece.ec = body_done_ ? std::error_code{} : make_error_code(UpstreamErrc::kReadFailed);
    piece.done = body_done_;
    co_return piece;
  }
  if (body_done_ || parser_->is_done()) {
    body_done_ = true;
    piece.done = true;
    co_return piece;
  }
  size_t got = 0;
  piece.ec =
      co_await ReadSome(chunk_, pool_.options().read_chunk_bytes, Clock::now() + idle_timeout, got);
  if (piece.ec) co_return piece;
  piece.data = std::string_view(chunk_, got);
  piece.done = body_done_;
  co_return piece;
}

asio::awaitable<std::error_code> UpstreamCall::ReadAll(std::string& out, size_t limit,
                                                       std::chrono::milliseconds timeout) {
  auto fail = [&](UpstreamErrc e) {
    sticky_error_ = e;
    if (conn_) conn_->Close();
    return sticky_error_;
  };
  if (sticky_error_) co_return sticky_error_;
  if (!conn_ || !parser_)
    co_return body_done_ ? std::error_code{} : fail(UpstreamErrc::kReadFailed);
  const Clock::time_point deadline = Clock::now() + timeout;
  if (const auto remaining = parser_->content_length_remaining(); remaining && !body_done_) {
    // Known length: read straight into the output, no intermediate copies.
    if (*remaining > limit - std::min(limit, out.size()))
      co_return fail(UpstreamErrc::kBodyTooLarge);
    size_t filled = out.size();
    out.resize(filled + static_cast<size_t>(*remaining));
    while (!body_done_ && filled < out.size()) {
      size_t got = 0;
      const std::error_code ec =
          co_await ReadSome(out.data() + filled, out.size() - filled, deadline, got);
      filled += got;
      if (ec) {
        out.resize(filled);
        co_return ec;
      }
    }
    out.resize(filled);
    if (!body_done_ && parser_->is_done()) body_done_ = true;
    co_return std::error_code{};
  }
  while (!body_done_) {
    size_t got = 0;
    const std::error_code ec =
        co_await ReadSome(chunk_, pool_.options().read_chunk_bytes, deadline, got);
    if (ec) co_return ec;
    if (got > limit - std::min(limit, out.size())) co_return fail(UpstreamErrc::kBodyTooLarge);
    out.append(chunk_, got);
  }
  co_return std::error_code{};
}

}  // namespace llmproxy
