// One upstream HTTP/1.1 exchange (one attempt of the proxy pipeline): get a pooled or new
// connection, send the request, read the response head, then the body piece by piece.
// No exceptions: every step returns an std::error_code of UpstreamErrc (upstream_error.h).
// Lives on the io thread that owns `pool`; not thread-safe.
//
// How the pipeline uses it (ProxyRequest's attempt loop, dataplane/proxy/proxy_pipeline.cc):
//
//   UpstreamCall call(*thread_state.pool);       // this io thread's UpstreamPool
//   // head: request line + every header (Host, Content-Length, Authorization) + blank
//   // line, serialized by the pipeline; both views stay valid until StartRaw returns.
//   std::error_code ec = co_await call.StartRaw(url, head, body,
//       {.connect_timeout = cfg.connect_timeout, .response_timeout = backend_or_cfg_timeout,
//        .tls_insecure_skip_verify = backend.tls_insecure_skip_verify});
//   if (ec) { classify (IsConnectError / IsTimeout / kCancelled / ...), next attempt }
//   call.status(); call.head()[http::field::content_type] ...
//   // stream (2xx and text/event-stream or stream:true): relay piece by piece
//   for (;;) {
//     UpstreamBodyPiece p = co_await call.ReadBody(stream_idle_timeout);
//     if (p.ec) break;                           // kBodyTimeout / kReadFailed / kCancelled
//     write p.data to the client, then read again (backpressure)
//     if (p.done) break;                         // response complete
//   }
//   // anything else: the whole body, at most server.max_response_bytes
//   std::string body; ec = co_await call.ReadAll(body, limit, remaining_timeout);
//   call.Release();                              // before the client write; head() stays
//   // On client disconnect, from the client-watch side on the same thread: call.Cancel().
//
// Connection reuse (docs/upstream.md "Connection pool"): Release pools the connection only
// when the body was read to its end, both sides keep it alive and no byte beyond the
// response is buffered; the pool peeks every idle connection before reusing it.
//
// Resends: a pooled connection whose request write fails, with no answer waiting on it,
// is replaced by a fresh one and the request sent once more (resends()). A connection
// that took the whole request and then closed or reset without an answer is not resent
// here: the upstream may have processed it, so it is a failed attempt (kReadFailed) that
// the pipeline's retry rules decide on.
//
// Early answers: when the write fails because the upstream answered (a 413 to a large
// body) and closed, the answer already received is read and returned as the response.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "dataplane/http/http_head.h"
#include "dataplane/upstream/upstream_connection.h"
#include "dataplane/upstream/upstream_error.h"
#include "dataplane/upstream/upstream_pool.h"
#include "dataplane/protocols/upstream_url.h"

namespace llmproxy {

struct UpstreamCallOptions {
  // DNS + TCP connect + TLS handshake.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  // From the connection being ready until the response head is complete (request write
  // included): the time-to-first-byte budget.
  std::chrono::milliseconds response_timeout{std::chrono::seconds(180)};
  bool tls_insecure_skip_verify = false;
};

struct UpstreamBodyPiece {
  std::error_code ec;     // set on failure (data is then empty)
  std::string_view data;  // decoded body bytes (chunked framing removed); valid until the
                          // next ReadBody/ReadAll/Release/destruction
  bool done = false;      // the response body is complete (data may still hold bytes)
};

class UpstreamCall {
 public:
  explicit UpstreamCall(UpstreamPool& pool);
  ~UpstreamCall();  // Release()
  UpstreamCall(const UpstreamCall&) = delete;
  UpstreamCall& operator=(const UpstreamCall&) = delete;

  // Acquire + send + read the response head. `head` is the request line and every header,
  // Host and Content-Length included, up to and with the blank line; it and `body` must
  // stay valid until StartRaw returns. Sent in one gather write; the request keeps the
  // connection alive. Errors: kBadUrl, kDnsFailed, kConnectFailed, kConnectTimeout,
  // kTlsFailed (IsConnectError), kWriteFailed, kResponseTimeout, kReadFailed,
  // kBadResponse, kCancelled. Call once per UpstreamCall.
  boost::asio::awaitable<std::error_code> StartRaw(const UpstreamUrl& url, std::string_view head,
                                                   std::string_view body,
                                                   UpstreamCallOptions options);

  // The response head (valid after StartRaw succeeded, and after Release, until the call
  // is destroyed).
  using Head = boost::beast::http::response_header<ArenaFields>;
  const Head& head() const;
  unsigned status() const { return head().result_int(); }

  // Next body piece, waiting at most idle_timeout for bytes. After done or an error, further
  // calls return done / the same error.
  boost::asio::awaitable<UpstreamBodyPiece> ReadBody(std::chrono::milliseconds idle_timeout);

  // Reads the rest of the body into `out` (appends) within `timeout` overall.
  // kBodyTooLarge as soon as it would exceed `limit` bytes: a Content-Length beyond it is
  // refused before any body byte is read, and a chunked body stops at the limit. `out`
  // never grows past `limit` (reserved at most once past 1 MiB, so no large copies).
  boost::asio::awaitable<std::error_code> ReadAll(std::string& out, size_t limit,
                                                  std::chrono::milliseconds timeout);

  // Closes the connection now (client went away / give up): the pending operation and all
  // later ones end with kCancelled. Safe to call at any time, from the same thread.
  void Cancel();

  // Gives the connection back to the pool when the response was read completely, both
  // sides keep it alive, the whole request went out and nothing beyond the response is
  // buffered; otherwise closes it. Idempotent; called by the destructor.
  void Release();

  bool reused_connection() const { return reused_; }  // the final connection came pooled
  // Free resends this call made after a pooled connection failed on write (0 or 1); each
  // is one more attempt for the pipeline's counts.
  uint32_t resends() const { return resends_; }

 private:
  // `unsent` is set when the request may be resent elsewhere: its write failed and not a
  // byte of an answer arrived.
  boost::asio::awaitable<std::error_code> SendAndReadHead(
      UpstreamConnection& conn, std::chrono::steady_clock::time_point deadline, bool& unsent);
  // One body read into [data, data + size) before `deadline`; returns the bytes stored.
  boost::asio::awaitable<std::error_code> ReadSome(char* data, size_t size,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   size_t& got);

  UpstreamPool& pool_;
  UpstreamCancelState cancel_;
  std::unique_ptr<UpstreamConnection> conn_;
  std::string_view head_;
  std::string_view body_;
  // The response head's fields come from this arena (no malloc per header line).
  alignas(std::max_align_t) std::byte head_arena_block_[1024];
  std::pmr::monotonic_buffer_resource head_arena_{head_arena_block_, sizeof head_arena_block_};
  std::optional<
      boost::beast::http::response_parser<boost::beast::http::buffer_body, ArenaAllocator>>
      parser_;
  // Body piece buffer, owned by the connection. It starts at kFirstChunkBytes and
  // doubles, up to the pool's read_chunk_bytes, each time a read fills it: an SSE stream's
  // events are a few hundred bytes, and 10,000 streams with 16 KiB each would hold 160 MiB.
  static constexpr size_t kFirstChunkBytes = 4 * 1024;
  char* chunk_ = nullptr;
  size_t chunk_size_ = 0;
  // The last read filled the buffer: the next one gets a bigger one (not at once: the
  // piece handed out still points into the old buffer).
  bool chunk_full_ = false;
  void GrowChunkIfFull();
  std::error_code sticky_error_;
  bool started_ = false;
  bool body_done_ = false;
  bool reused_ = false;
  bool write_failed_ = false;  // the request did not fully go out: never pool the connection
  uint32_t resends_ = 0;
};

}  // namespace llmproxy
