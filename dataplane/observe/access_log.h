// One access-log line per proxied request, in the process's log format (common/log/logging.h:
// one JSON object a line with --log-format json, key=value text otherwise), written at
// level info with msg "access", so --log-level warn silences it.
//
// Fields: request_id, method, path, status, model_requested, model_resolved, backend,
// attempts, continued (only when a broken stream was continued: how many times),
// hedge_won (only when a hedge started), stream, ttft_seconds, duration_seconds,
// overhead_seconds, prompt_tokens, completion_tokens, bytes_in, bytes_out, client, error
// (only when the proxy made the response). Absent values are JSON null (text: "-"). Never keys,
// Authorization values or bodies: RequestRecord carries none. Client-supplied strings
// (model_requested, request_id) are escaped, invalid UTF-8 is replaced, and they are cut to 256
// bytes.
//
// Buffered: the default log does not write(2) per request (that cost ~8% of worker CPU).
// Each thread appends whole lines to its own buffer, written with one write(2) when it
// passes buffer_bytes or its oldest line is older than max_age; a background flusher
// thread writes buffers that sit idle, so a line waits at most ~max_age + flush_interval
// (~200 ms). Flush() and the destructor write everything left (the worker calls Flush()
// after its drain). Lines are never split across writes and never mixed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/log/logging.h"
#include "dataplane/observe/request_record.h"

namespace llmproxy {

// Formats one line (ending in '\n'); pure, for tests and other sinks.
std::string FormatAccessLogLine(const RequestRecord& record, LogFormat format,
                                std::chrono::system_clock::time_point now);
// Same, appended to `out` (the buffered log formats straight into its buffer).
void AppendAccessLogLine(std::string& out, const RequestRecord& record, LogFormat format,
                         std::chrono::system_clock::time_point now);

struct AccessLogBufferOptions {
  int fd = 2;                                     // stderr
  size_t buffer_bytes = 32 * 1024;                // write when a buffer passes this
  std::chrono::milliseconds max_age{100};         // or its oldest line is this old
  std::chrono::milliseconds flush_interval{100};  // flusher wake-up period
  std::optional<LogFormat> format;                // else the current --log-format
};

class AccessLog final : public RequestObserver {
 public:
  using Sink = std::function<void(std::string_view line)>;

  // Buffered, to stderr, in the current --log-format.
  AccessLog();
  // Buffered, to options.fd (not closed by AccessLog).
  explicit AccessLog(AccessLogBufferOptions options);
  // Unbuffered: calls `sink` synchronously once per line, in `format` when given, else
  // the current --log-format.
  explicit AccessLog(Sink sink, std::optional<LogFormat> format = std::nullopt);
  ~AccessLog() override;

  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  void OnRequestDone(const RequestRecord& record) override;

  // Writes every buffered line now (any thread; blocks until written).
  void Flush();

 private:
  // One thread's pending lines. Its mutex is taken by that thread per line and by the
  // flusher now and then, so it is practically uncontended.
  struct Slot {
    std::mutex mu;
    std::string buffer;
    std::chrono::steady_clock::time_point oldest;  // when the first buffered line came
    std::thread::id owner;
  };

  Slot& ThisThreadSlot();
  // Writes slot.buffer (slot.mu held) and empties it.
  void WriteOut(Slot& slot);
  void FlusherLoop();
  // Writes the buffers whose oldest line is at least `age` old (0: all).
  void FlushOlderThan(std::chrono::steady_clock::duration age);

  Sink sink_;
  std::optional<LogFormat> format_;
  AccessLogBufferOptions options_;
  const uint64_t id_;  // tells this log from a destroyed one in the per-thread cache

  // Buffered mode only.
  std::mutex slots_mu_;  // guards slots_ (taken when a thread first logs, and by Flush)
  std::vector<std::unique_ptr<Slot>> slots_;
  // Serialises the write(2) calls of full buffers: one write larger than PIPE_BUF to a
  // pipe may be split and interleaved with another. Taken once per buffer, not per line.
  std::mutex write_mu_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread flusher_;
};

}  // namespace llmproxy
