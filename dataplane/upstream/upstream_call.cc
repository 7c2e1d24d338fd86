#include "dataplane/upstream/upstream_call.h"

#include <algorithm>
#include <array>
#include <exception>
#include <initializer_list>
#include <string>
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

// Makes room for `more` bytes in `out` without letting its capacity pass `limit`. The
// string's own doubling would reach up to twice the limit, and each regrowth copies the
// whole body, old and new buffer alive at once: a 256 MiB limit cost ~500 MiB. Small
// bodies double as usual; past 1 MiB the rest of the limit is reserved once (pages are
// only touched as bytes arrive), so resident memory stays the body plus at most 1 MiB.
// False when even the exact size cannot be allocated.
bool GrowFor(std::string& out, size_t more, size_t limit) {
  constexpr size_t kDoubleUpTo = size_t{1} << 20;
  const size_t need = out.size() + more;
  if (need <= out.capacity()) return true;
  size_t target = std::max(need, out.capacity() * 2);
  if (target > kDoubleUpTo) target = limit;
  target = std::max(need, std::min(target, limit));
  // Into a fresh string: reserve on a non-empty one rounds up to twice its capacity,
  // which could pass the limit.
  for (const size_t size : {target, need}) {  // need: no room for target (strict overcommit)
    try {
      std::string grown;
      grown.reserve(size);
      grown.append(out);
      out.swap(grown);
      return true;
    } catch (const std::exception&) {
    }
  }
  return false;
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
  // Bytes past the response mean the upstream answered more than it was asked: pooled,
  // they would become the next request's answer.
  const bool reusable = started_ && body_done_ && !sticky_error_ && !cancel_.cancelled &&
                        !write_failed_ && parser_ && parser_->keep_alive() &&
                        !conn_->HasBufferedBytes();
  if (reusable) {
    pool_.Release(std::move(conn_));
  } else {
    conn_->Close();
    conn_.reset();
  }
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
    write_failed_ = false;

    bool unsent = false;
    const std::error_code ec =
        co_await SendAndReadHead(*conn_, Clock::now() + options.response_timeout, unsent);
    if (!ec) co_return ec;
    if (cancel_.cancelled) co_return UpstreamErrc::kCancelled;
    conn_->Close();
    conn_.reset();
    // The keep-alive race: the server closed this pooled connection as we reused it, and
    // the write failed before the request was whole, with no answer. The upstream cannot
    // have acted on it, so one resend on a fresh connection is safe. A request that went
    // out whole may have been processed: that is the pipeline's retry decision.
    if (!(reused_ && unsent)) co_return ec;
    ++resends_;
  }
  co_return UpstreamErrc::kWriteFailed;
}

asio::awaitable<std::error_code> UpstreamCall::SendAndReadHead(UpstreamConnection& conn,
                                                               Clock::time_point deadline,
                                                               bool& unsent) {
  unsent = false;
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
    if (cancel_.cancelled) co_return UpstreamErrc::kCancelled;
    if (conn.timed_out()) co_return UpstreamErrc::kResponseTimeout;
    if (write_ec == asio::error::operation_aborted) co_return UpstreamErrc::kCancelled;
    // An upstream may answer before it has read the whole body (413 to a large upload)
    // and close: the write then fails, but the answer is already in our receive queue
    // (the kernel keeps it after a reset). Read it and let it be classified like any
    // answer; only when there is none is this a write failure.
    write_failed_ = true;
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
      const bool nothing_received = conn.buffer().size() == 0 && read == 0;
      if (write_failed_ && !cancel_.cancelled && !conn.timed_out()) {
        unsent = nothing_received;
        co_return UpstreamErrc::kWriteFailed;
      }
      co_return MapReadError(read_ec, cancel_.cancelled, conn.timed_out(),
                             UpstreamErrc::kResponseTimeout);
    }
    // Interim 1xx responses (100 Continue, 103 Early Hints) precede the real one.
    const unsigned status = parser_->get().result_int();
    if (status < 100 || status >= 200 || status == 101) break;
  }
  conn.ExpiresNever();
  chunk_size_ = std::max(conn.body_chunk_size(),
                         std::min(kFirstChunkBytes, pool_.options().read_chunk_bytes));
  chunk_ = conn.BodyChunk(chunk_size_);
  chunk_full_ = false;
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
  GrowChunkIfFull();
  size_t got = 0;
  piece.ec = co_await ReadSome(chunk_, chunk_size_, Clock::now() + idle_timeout, got);
  chunk_full_ = got == chunk_size_;
  if (piece.ec) co_return piece;
  piece.data = std::string_view(chunk_, got);
  piece.done = body_done_;
  co_return piece;
}

void UpstreamCall::GrowChunkIfFull() {
  if (!chunk_full_ || conn_ == nullptr) return;
  chunk_full_ = false;
  const size_t max = pool_.options().read_chunk_bytes;
  if (chunk_size_ >= max) return;
  chunk_size_ = std::min(chunk_size_ * 2, max);
  chunk_ = conn_->BodyChunk(chunk_size_);
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
    const size_t room = limit - std::min(limit, out.size());
    // One byte past the room tells that the limit is exceeded; reading more would not.
    GrowChunkIfFull();
    const size_t want = std::min(chunk_size_, room + 1);
    size_t got = 0;
    const std::error_code ec = co_await ReadSome(chunk_, want, deadline, got);
    chunk_full_ = got == chunk_size_;
    if (ec) co_return ec;
    if (got > room) co_return fail(UpstreamErrc::kBodyTooLarge);
    if (!GrowFor(out, got, limit)) co_return fail(UpstreamErrc::kBodyTooLarge);
    out.append(chunk_, got);
  }
  co_return std::error_code{};
}

}  // namespace llmproxy
