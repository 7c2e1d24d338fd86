// A hostile upstream for the hostile tests: a raw-socket HTTP/1.1 server on 127.0.0.1:0
// whose answer is chosen per request from a queue of actions (exact bytes, an extra
// unrequested response after the real one, an answer before the body was read followed by
// a close, a huge chunked body, a close or reset after the request...). It records what
// arrived and what happened to each connection, so tests can assert what the worker sent
// upstream, how often, and when it hung up. Also: a worker harness with pool options of
// its own (TestWorker keeps the defaults) and a parser for the raw bytes a client gets.
// Names live in llmproxy::hostile_upstream (the hostile client helpers share the folder).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/config/config.h"
#include "dataplane/config_sync/table_store.h"
#include "dataplane/upstream/upstream_pool.h"
#include "dataplane/worker.h"
#include "tests/integration/proxy_test_util.h"

namespace llmproxy::hostile_upstream {

// What the upstream does with one request.
struct RawUpstreamAction {
  // Before the request body was read (the body is then never read: closing the socket
  // with it unread makes the kernel send a reset), or after the whole request.
  bool before_body = false;
  std::string bytes;  // sent as they are
  std::string extra;  // sent after `bytes`, `extra_delay` later
  std::chrono::milliseconds extra_delay{0};
  size_t chunked_body_bytes = 0;   // then a chunked body of this many bytes
  size_t chunk_bytes = 64 * 1024;  // (in chunks this large) and its last chunk
  bool close = false;              // then close (FIN, or RST with unread bytes)
  bool reset = false;              // then close with SO_LINGER 0 (RST)

  // `bytes`, the connection kept for the next request.
  static RawUpstreamAction Reply(std::string bytes);
  // A real response, then another nobody asked for.
  static RawUpstreamAction ReplyThenExtra(std::string bytes, std::string extra,
                                          std::chrono::milliseconds delay);
  // Answers as soon as the head is read, then closes with the body unread.
  static RawUpstreamAction AnswerEarlyThenClose(std::string bytes);
  // `head` (which must say Transfer-Encoding: chunked), then `body_bytes` of 'x'.
  static RawUpstreamAction HugeChunked(std::string head, size_t body_bytes);
  // Reads the whole request, closes without a byte of answer.
  static RawUpstreamAction CloseAfterRequest();
  // Reads the head only, resets the connection.
  static RawUpstreamAction ResetAfterHead();
};

// One request as it arrived (body: what had arrived when the action ran).
struct RawUpstreamRequest {
  int connection = 0;  // 1-based, in accept order
  std::string head;
  std::string body;
  bool body_complete = false;
};

// One accepted connection's fate.
struct RawUpstreamConnection {
  int requests = 0;
  bool closed_by_peer = false;  // the worker hung up (EOF or reset while we waited to read)
  std::chrono::steady_clock::time_point last_reply_sent{};
  std::chrono::steady_clock::time_point peer_closed_at{};
  size_t body_bytes_sent = 0;  // of a HugeChunked body
  bool send_failed = false;    // the worker stopped reading and closed under our send
};

// A JSON response with Content-Length and the given x-request-id (so the worker passes
// it through and the client's bytes are exact).
std::string JsonResponse(int status, const std::string& reason, const std::string& body,
                         const std::string& request_id, bool close = false);

class RawUpstream {
 public:
  RawUpstream();
  ~RawUpstream();
  RawUpstream(const RawUpstream&) = delete;
  RawUpstream& operator=(const RawUpstream&) = delete;

  uint16_t port() const { return port_; }
  std::string BaseUrl() const;  // http://127.0.0.1:<port>/v1

  // Actions are taken in order, one per request; with none queued a request gets
  // JsonResponse(200, "OK", DefaultBody(n), "up-<n>"), n = the request's 1-based number.
  void Push(RawUpstreamAction action);
  static std::string DefaultBody(int n);

  std::vector<RawUpstreamRequest> Requests() const;
  size_t RequestCount() const;
  std::vector<RawUpstreamConnection> Connections() const;
  size_t ExtrasSent() const;
  // Polls the recorded state until `pred` holds (true) or the timeout passes (false).
  bool WaitFor(const std::function<bool(const RawUpstream&)>& pred,
               std::chrono::milliseconds timeout) const;

 private:
  void AcceptLoop();
  void Serve(int fd, int index);
  struct State;
  std::shared_ptr<State> state_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread accept_thread_;
};

// The worker in-process on 127.0.0.1:0 over its own TableStore, like TestWorker, but with
// the upstream pool's options given (idle expiry, for one) and a RecordingObserver.
class PoolTunedWorker {
 public:
  explicit PoolTunedWorker(Config config, UpstreamPoolOptions pool = {});
  ~PoolTunedWorker();
  uint16_t port() const { return worker_->port(); }
  const test::RecordingObserver& observer() const { return observer_; }

 private:
  TableStore store_;
  test::RecordingObserver observer_;
  std::unique_ptr<Worker> worker_;
};

// A config with one backend `name` at `base_url` serving model "m1", the test timings of
// TestConfig, and `retry` extra attempts.
Config OneBackendConfig(const std::string& base_url, int retry);

// One HTTP/1.1 response cut out of raw bytes: the status line, the headers (names
// lower-cased), the body as sent (chunked framing removed) and whatever followed it.
struct ClientResponse {
  bool complete = false;
  std::string status_line;
  std::map<std::string, std::string> headers;
  std::string body;
  std::string rest;
  std::string Header(const std::string& lower_name) const;
};
ClientResponse ParseClientResponse(const std::string& raw);

// "POST /v1/chat/completions" for model m1 with `Connection: close`, and everything the
// worker sends back until it closes.
std::string ExchangeChat(uint16_t port, const std::string& body,
                         std::chrono::milliseconds timeout = std::chrono::seconds(15));

}  // namespace llmproxy::hostile_upstream
