// Helpers for the worker's integration tests: a small blocking HTTP/1.1 client (Beast,
// every call bounded by a timeout), a streaming reader that can stop or hang up
// mid-response, and a fixture-style harness that runs a Worker in-process on port 0
// against MockLlm upstreams. Linked into every integration test binary (*_util.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/config/config.h"
#include "dataplane/config_sync/table_store.h"
#include "dataplane/observe/request_record.h"
#include "dataplane/worker.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy::test {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResult {
  int status = 0;                              // 0 when no response arrived (see error)
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // chunked framing removed
  std::string error;                           // transport error, if any

  std::string Header(const std::string& lower_name) const;
};

// One request on a fresh connection; the whole exchange within `timeout`.
HttpResult HttpCall(uint16_t port, const std::string& method, const std::string& target,
                    const std::string& body = "", const Headers& headers = {},
                    std::chrono::milliseconds timeout = std::chrono::seconds(15));

inline HttpResult PostJson(uint16_t port, const std::string& target, const std::string& body,
                           const Headers& headers = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
  Headers h = headers;
  h.emplace_back("Content-Type", "application/json");
  return HttpCall(port, "POST", target, body, h, timeout);
}

// Several requests, in order, on one keep-alive connection.
std::vector<HttpResult> HttpCallsOnOneConnection(
    uint16_t port, const std::vector<std::pair<std::string, std::string>>& target_and_body,
    std::chrono::milliseconds timeout = std::chrono::seconds(15));

// Raw bytes in, everything the server sends until it closes (or the timeout) out.
std::string RawExchange(uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout = std::chrono::seconds(15));

// A response read incrementally: the head first, then the body a piece at a time. The
// test decides when to stop reading or to hang up.
class StreamingResponse {
 public:
  // Sends the request and reads the response head (false on failure/timeout).
  bool Open(uint16_t port, const std::string& target, const std::string& body,
            const Headers& headers = {},
            std::chrono::milliseconds timeout = std::chrono::seconds(15));
  int status() const { return status_; }
  std::string Header(const std::string& lower_name) const;
  // Reads more body bytes (decoded) until `pred(body so far)` holds, the body ends, or
  // the timeout passes. True when pred held.
  bool ReadUntil(const std::function<bool(const std::string&)>& pred,
                 std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Reads to the end of the body. True when the body ended cleanly.
  bool ReadToEnd(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  const std::string& body() const { return body_; }
  bool ended() const { return ended_; }
  void Close();  // hang up now

  ~StreamingResponse();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  int status_ = 0;
  std::map<std::string, std::string> headers_;
  std::string body_;
  bool ended_ = false;
};

// A plain blocking socket for tests that need to hang up at a precise moment.
class RawClient {
 public:
  ~RawClient();
  bool Connect(uint16_t port);
  bool Send(const std::string& bytes);
  // Appends whatever arrives within `timeout`; false on timeout, close or error.
  bool ReadSome(std::string& out, std::chrono::milliseconds timeout);
  void Close();

 private:
  int fd_ = -1;
};

// "POST <target>" with a JSON body, as raw bytes.
std::string RawPost(const std::string& target, const std::string& body,
                    const Headers& headers = {});

// A port with nothing listening on it (bound once, then closed).
uint16_t UnusedPort();

// Counts what the pipeline reports (thread-safe), for tests that check the record.
class RecordingObserver : public RequestObserver {
 public:
  void OnRequestStart() override;
  void OnAttempt(std::string_view backend, AttemptOutcome outcome) override;
  void OnRequestDone(const RequestRecord& record) override;

  std::vector<RequestRecord> Records() const;
  std::vector<std::pair<std::string, AttemptOutcome>> Attempts() const;
  bool WaitForRecords(size_t n, std::chrono::milliseconds timeout) const;

 private:
  struct State;
  std::shared_ptr<State> state_ = MakeState();
  static std::shared_ptr<State> MakeState();
};

// A backend entry pointing at a MockLlm-style base url.
BackendConfig MockBackend(const std::string& name, const std::string& base_url,
                          std::vector<std::string> models, const std::string& api_key = "");

// Worker in-process on 127.0.0.1:0 over its own TableStore.
class TestWorker {
 public:
  // `leases`: key limits held by these leases (fed by the test), else not held.
  explicit TestWorker(std::optional<Config> config, unsigned threads = 1,
                      std::vector<RequestObserver*> observers = {}, KeyLeases* leases = nullptr);
  ~TestWorker();
  uint16_t port() const { return worker_->port(); }
  TableStore& store() { return store_; }
  Worker& worker() { return *worker_; }
  // Applies a new config as the next version; "" on success.
  std::string Apply(Config config);

 private:
  TableStore store_;
  uint64_t version_ = 0;
  std::unique_ptr<Worker> worker_;
};

// A config with sensible test timings (short timeouts so failures are quick).
Config TestConfig(std::vector<BackendConfig> backends);

// Options of a mock upstream with just its name set (the name its replies carry).
inline MockLlmOptions NamedMock(const std::string& name) {
  MockLlmOptions o;
  o.name = name;
  return o;
}

// Polls `cond` every few ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// Lowercase hex SHA-256.
std::string Sha256Hex(const std::string& data);

}  // namespace llmproxy::test
