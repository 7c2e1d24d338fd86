// MockLlm: an in-process fake LLM upstream for tests, the demo and the benchmark (the
// llmproxy-mockllm binary wraps it). It listens on 127.0.0.1 (port 0 by default), serves
// OpenAI chat/completions/embeddings/models, OpenAI Responses and Anthropic Messages
// (mock_answers.h) with plain or SSE replies, calls tools when asked to, records
// every request it received, notices clients that hang up before a reply is complete,
// and fails on command, either per request (x-mock-* request headers, handy with curl)
// or per mock (SetDefaultFault / PushFault, for "two backends, one broken" tests where
// the proxy forwards the same client headers to both).
//
// Routes (matched by path suffix, so backends configured with or without /v1 work):
//   POST .../chat/completions, .../completions, .../embeddings  (else 404; wrong method 405)
//   POST .../responses              OpenAI Responses (response object, or its event stream)
//   POST .../messages               Anthropic Messages; needs anthropic-version and x-api-key
//                                   or Authorization (else Anthropic's 400/401), max_tokens
//   POST .../messages/count_tokens  {"input_tokens": body bytes / 4}
//   GET  .../models                 {"object":"list","data":[{"id":m,...}]}
//   GET  /mock/stats                {"name","requests","cancelled","in_flight","connections"}
// Every response carries `x-mock-name: <name>`, `x-request-id: mock-<name>-<n>` and
// `x-ratelimit-remaining-requests: 99`. A reply echoes the `model` it received.
//
// Streams (`"stream": true`): N `data: {chunk}\n\n` events whose content is "tok0 ",
// "tok1 ", ... in order (the first delta also carries `"role":"assistant"`, the last
// finish_reason "stop"); then, when stream_options.include_usage is true, one usage event
// with `"choices":[]`; then `data: [DONE]\n\n`. N defaults to MockLlmOptions::chunks (5).
// Every chunk carries the response's own `"id":"chatcmpl-<name>-<n>"` (cmpl- on
// /completions; n as in x-request-id), `created` and `model`.
//
// Prefill continuation (chat, always on): when the last `messages` entry has role
// "assistant" and string content P, and P is a prefix of the full answer "tok0 tok1 ...",
// the reply (plain or stream) holds only the rest: when P ends inside a token, the first
// piece is that token's remainder. Otherwise the full answer. A continuation stream is a
// stream of its own (its own id, role in its first delta), as a real provider sends;
// when nothing is left it is one chunk with content "" and finish_reason "stop".
//
// Fault headers (each overrides the same field of the mock-wide fault):
//   x-mock-status: 500            reply with this status and an OpenAI error JSON
//   x-mock-retry-after: 2         add Retry-After: 2 (with x-mock-status)
//   x-mock-delay-ms: 200          wait before sending the response headers
//   x-mock-first-chunk-delay-ms   streams: headers at once, first chunk after this wait
//   x-mock-first-token-delay-ms: N  chat streams: headers and a role-only chunk
//                                 (`"delta":{"role":"assistant","content":""}`) at once,
//                                 the first content chunk after N ms (a slow first token)
//   x-mock-chunks: 500            number of content chunks in a stream
//   x-mock-chunk-gap-ms: 20       wait between chunks
//   x-mock-die-after-chunks: 3    close the connection after 3 chunks (no [DONE])
//   x-mock-partial-event-bytes: N with die-after-chunks: first send N bytes of an event
//                                 that never ends (no line end), then close
//   x-mock-after-done: close|stall  streams: after [DONE], close (or go silent) without
//                                 the terminating chunk
//   x-mock-stall-after-chunks: N  streams: after N content chunks go silent, connection
//                                 open, until the client leaves (a cancellation)
//   x-mock-context-length-exceeded: 1  chat/completions: 400 with OpenAI's
//                                 context_length_exceeded error (kContextLengthExceededBody)
//   x-mock-reject-prefill: 1      chat: a request whose last message has role "assistant"
//                                 gets 400 (kPrefillRejectedBody); others behave
//   x-mock-tool-call: 1           chat streams: the tokens are the `arguments` deltas of one
//                                 tool call (`"tool_calls":[{"index":0,...}]`), no content
//   x-mock-no-tools: 1            answer text even when the request defines tools
//
// Tools (all three protocols): a request that defines tools and whose last turn is a user
// message gets a call of the first tool with arguments {"q":"tok0 tok1 ... "} in N
// fragments; one whose last turn is a tool result gets "tool said: <result, 40 bytes>".
//   x-mock-hang: 1                read the request, never answer (until the client leaves)
//   x-mock-close: 1               read the request, close the connection without a reply
//   x-mock-garbage: 1             answer with bytes that are not HTTP, then close
//   x-mock-body: <text>           reply body verbatim (content-type application/json)
//   x-mock-unavailable-for-ms: T  503 to every request (GET /models too) until T ms after
//                                 the mock started (MockLlm::started_at), then behave: an
//                                 outage that ends by itself
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmproxy {

// The exact bodies of the two 400 faults, for tests that assert bytes.
inline constexpr std::string_view kContextLengthExceededBody =
    R"({"error":{"message":"This model's maximum context length is 8192 tokens. However, your )"
    R"(messages resulted in 9000 tokens. Please reduce the length of the messages.",)"
    R"("type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}})";
inline constexpr std::string_view kPrefillRejectedBody =
    R"({"error":{"message":"assistant message prefill is not supported",)"
    R"("type":"invalid_request_error","param":"messages","code":null}})";

// What a request (or the whole mock) should do wrong. Unset fields mean "behave".
struct MockFault {
  std::optional<int> status{};                // non-200: error JSON with this status
  std::optional<int> retry_after_s{};         // Retry-After header value (seconds)
  std::optional<int> delay_ms{};              // before response headers
  std::optional<int> first_chunk_delay_ms{};  // streams: after headers, before chunk 0
  std::optional<int> first_token_delay_ms{};  // chat streams: role-only chunk, then wait
  std::optional<int> chunks{};                // stream content chunk count
  std::optional<int> chunk_gap_ms{};          // stream inter-chunk gap
  std::optional<int> die_after_chunks{};      // stream: close after this many chunks
  std::optional<int> partial_event_bytes{};   // with die_after_chunks: unended event first
  std::optional<std::string> after_done{};    // stream: "close" or "stall" after [DONE]
  std::optional<int> stall_after_chunks{};    // stream: silent after this many chunks
  bool hang = false;                          // never answer
  bool close = false;                         // close without any reply
  bool garbage = false;                       // non-HTTP bytes, then close
  std::optional<std::string> body{};          // verbatim reply body
  std::optional<int> unavailable_for_ms{};    // 503 until this long after the mock started
  bool context_length_exceeded = false;       // 400 kContextLengthExceededBody
  bool reject_prefill = false;                // 400 kPrefillRejectedBody on a prefill
  bool tool_call = false;                     // chat streams: tokens as tool-call arguments
  bool no_tools = false;                      // answer text even when tools are defined

  // Field-wise overlay: every field set in `over` replaces ours.
  void MergeFrom(const MockFault& over);
  bool empty() const;
};

struct MockLlmOptions {
  std::string name = "mock";
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: the kernel picks; read it back with MockLlm::port()
  int threads = 1;
  // Both set: serve HTTPS with this certificate chain and key (PEM files).
  std::string tls_cert_file{};
  std::string tls_key_file{};
  std::vector<std::string> models = {"mock-small", "mock-large"};  // GET /v1/models
  int chunks = 5;                                                  // default stream length
  int chunk_gap_ms = 0;                                            // default gap between chunks
  // Recording keeps every request's headers and body; the benchmark turns it off so a
  // long run does not grow without bound (counters still work).
  bool record_requests = true;
  size_t max_body_bytes = 64u << 20;
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive connection idle limit
  bool log_requests = false;  // one stderr line per request (the CLI's --verbose)
};

struct ReceivedRequest {
  uint64_t seq = 0;  // 1-based arrival order; the same n as in x-request-id
  std::string method;
  std::string target;                                        // as sent, query included
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;
  std::string body_sha256;  // lowercase hex of the body bytes
  std::chrono::steady_clock::time_point received_at;

  // Case-insensitive header lookup; "" when absent.
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
};

// A reply the client abandoned: it closed the connection before the last byte.
struct MockCancellation {
  uint64_t seq = 0;     // which request (ReceivedRequest::seq)
  bool stream = false;  // true for SSE replies
  int chunks_sent = 0;  // content chunks written before the close was seen
  std::chrono::steady_clock::time_point seen_at;  // when the mock noticed the close
};

struct MockStats {
  uint64_t requests = 0;     // requests fully read (any route)
  uint64_t cancelled = 0;    // replies abandoned by the client
  uint64_t in_flight = 0;    // requests being answered right now
  uint64_t connections = 0;  // TCP connections accepted
};

class MockLlm {
 public:
  // Binds and starts serving at once on its own thread(s). Throws std::runtime_error when
  // it cannot bind or load the TLS files (tests want a loud failure).
  explicit MockLlm(MockLlmOptions options = {});
  ~MockLlm();  // Stop()
  MockLlm(const MockLlm&) = delete;
  MockLlm& operator=(const MockLlm&) = delete;

  uint16_t port() const { return port_; }
  const std::string& name() const { return options_.name; }
  bool tls() const;
  // "http://127.0.0.1:PORT/v1" (https when TLS): what a backend `url:` should say.
  std::string BaseUrl() const;
  // When the mock started listening (the origin of MockFault::unavailable_for_ms).
  std::chrono::steady_clock::time_point started_at() const;

  // Closes the listener and every connection and joins the threads. Idempotent.
  void Stop();

  // Faults. Each request starts from the default fault, replaced by the head of the
  // queue when one is pending (PushFault), then overlaid with its x-mock-* headers.
  void SetDefaultFault(MockFault fault);
  void PushFault(MockFault fault, int count = 1);  // the next `count` requests
  void ClearFaults();                              // default and queue

  std::vector<ReceivedRequest> Requests() const;
  size_t RequestCount() const;
  void ClearRequests();  // records and cancellations; counters in Stats() keep counting
  std::vector<MockCancellation> Cancellations() const;
  size_t CancelledCount() const;
  MockStats Stats() const;

  // Wait-until helpers for tests (no fixed sleeps): true when the condition held before
  // the timeout.
  bool WaitForRequests(size_t n, std::chrono::milliseconds timeout) const;
  bool WaitForCancellations(size_t n, std::chrono::milliseconds timeout) const;

  struct Impl;  // server internals (mock_llm.cc)

 private:
  MockLlmOptions options_;
  uint16_t port_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmproxy
