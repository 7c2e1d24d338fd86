// One upstream HTTP/1.1 exchange (one attempt of the proxy pipeline): get a pooled or new
// connection, send the request, read the response head, then the body piece by piece.
// No exceptions: every step returns an std::error_code of UpstreamErrc (upstream_error.h).
// Lives on the io thread that owns `pool`; not thread-safe.
//
// How the pipeline uses it (inside its request coroutine):
//
//   UpstreamCall call(pool);                       // pool: this io thread's UpstreamPool
//   http::request<http::string_body> req{http::verb::post,
//                                        url.Target(UpstreamEndpointSuffix(route)), 11};
//   req.set(http::field::authorization, "Bearer " + backend.api_key);
//   req.set(http::field::content_type, "application/json");
//   req.body() = std::move(body);                  // moved, never copied
//   std::error_code ec = co_await call.Start(url, std::move(req),
//       {.connect_timeout = cfg.connect_timeout, .response_timeout = ttfb_or_whole,
//        .tls_insecure_skip_verify = backend.tls_insecure_skip_verify});
//   if (ec) { IsConnectError(ec) / IsTimeout(ec) / kCancelled -> classify, next backend }
//   unsigned status = call.status();  call.head()[http::field::content_type] ...
//   // non-streaming:
//   std::string body; ec = co_await call.ReadAll(body, limit, remaining_timeout);
//   // streaming (relay):
//   for (;;) {
//     UpstreamBodyPiece p = co_await call.ReadBody(stream_idle_timeout);
//     if (p.ec) break;                             // kBodyTimeout / kReadFailed / kCancelled
//     if (!p.data.empty()) co_await write p.data to the client (then read again)
//     if (p.done) break;                           // response complete
//   }
//   // On client disconnect, from another coroutine on the same thread: call.Cancel();
//   // ~UpstreamCall (or Release()) gives the connection back to the pool when the body was
//   // read to its end with keep-alive, otherwise closes it.
//
// Start sets Host (when absent), Content-Length (prepare_payload) and HTTP/1.1 keep-alive.
// A connection taken from the idle list that fails before any response byte arrives
// (peer closed it meanwhile: write error, EOF or reset on the head read) is replaced by a
// fresh connection and the request re-sent once, transparently.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory_resource>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "dataplane/upstream/upstream_url.h"
#include "dataplane/http/http_head.h"
#include "dataplane/upstream/upstream_connection.h"
#include "dataplane/upstream/upstream_error.h"
#include "dataplane/upstream/upstream_pool.h"

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

  // Acquire + send + read the response head. Errors: kBadUrl, kDnsFailed, kConnectFailed,
  // kConnectTimeout, kTlsFailed (IsConnectError), kWriteFailed, kResponseTimeout,
  // kReadFailed, kBadResponse, kCancelled. Call once per UpstreamCall.
  boost::asio::awaitable<std::error_code> Start(
      const UpstreamUrl& url, boost::beast::http::request<boost::beast::http::string_body> request,
      UpstreamCallOptions options);

  // The same with a request already serialized (the proxy's hot path): `head` is the
  // request line and every header, Host and Content-Length included, up to and with the
  // blank line; it and `body` must stay valid until Start returns. Sent in one gather
  // write; the request keeps the connection alive.
  boost::asio::awaitable<std::error_code> StartRaw(const UpstreamUrl& url, std::string_view head,
                                                   std::string_view body,
                                                   UpstreamCallOptions options);

  // The response head (valid after Start succeeded, and after Release, until the call
  // is destroyed).
  using Head = boost::beast::http::response_header<ArenaFields>;
  const Head& head() const;
  unsigned status() const { return head().result_int(); }

  // Next body piece, waiting at most idle_timeout for bytes. After done or an error, further
  // calls return done / the same error.
  boost::asio::awaitable<UpstreamBodyPiece> ReadBody(std::chrono::milliseconds idle_timeout);

  // Reads the rest of the body into `out` (appends) within `timeout` overall.
  // kBodyTooLarge when it would exceed `limit` bytes.
  boost::asio::awaitable<std::error_code> ReadAll(std::string& out, size_t limit,
                                                  std::chrono::milliseconds timeout);

  // Closes the connection now (client went away / give up): the pending operation and all
  // later ones end with kCancelled. Safe to call at any time, from the same thread.
  void Cancel();

  // Gives the connection back to the pool when the response was read completely and both
  // sides keep it alive; otherwise closes it. Idempotent; called by the destructor.
  void Release();

  bool body_done() const { return body_done_; }
  bool reused_connection() const { return reused_; }  // the final connection came pooled
  uint32_t connections_tried() const { return connections_tried_; }  // 2 after a stale retry
  // Free resends made after a stale pooled connection (each an attempt in metrics).
  uint32_t resends() const { return connections_tried_ > 1 ? connections_tried_ - 1 : 0; }

 private:
  boost::asio::awaitable<std::error_code> SendAndReadHead(
      UpstreamConnection& conn, std::chrono::steady_clock::time_point deadline,
      bool& nothing_received);
  // One body read into [data, data + size) before `deadline`; returns the bytes stored.
  boost::asio::awaitable<std::error_code> ReadSome(char* data, size_t size,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   size_t& got);

  UpstreamPool& pool_;
  UpstreamCancelState cancel_;
  std::unique_ptr<UpstreamConnection> conn_;
  std::string owned_head_;  // Start's serialized head (StartRaw borrows the caller's)
  std::string owned_body_;
  std::string_view head_;
  std::string_view body_;
  // The response head's fields come from this arena (no malloc per header line).
  alignas(std::max_align_t) std::byte head_arena_block_[1024];
  std::pmr::monotonic_buffer_resource head_arena_{head_arena_block_, sizeof head_arena_block_};
  std::optional<boost::beast::http::response_parser<boost::beast::http::buffer_body, ArenaAllocator>>
      parser_;
  char* chunk_ = nullptr;  // body piece buffer, owned by the connection
  std::error_code sticky_error_;
  bool started_ = false;
  bool body_done_ = false;
  bool reused_ = false;
  bool request_keep_alive_ = true;
  uint32_t connections_tried_ = 0;
};

}  // namespace llmproxy
