// One access-log line per proxied request, in the process's log format (common/logging:
// one JSON object a line with --log-format json, key=value text otherwise), written at
// level info with msg "access", so --log-level warn silences it.
//
// Fields: request_id, method, path, status, model_requested, model_resolved, backend,
// attempts, stream, ttft_seconds, duration_seconds, overhead_seconds, prompt_tokens,
// completion_tokens, bytes_in, bytes_out, client, error (only when the proxy made the
// response). Absent values are JSON null (text: "-"). Never keys, Authorization values
// or bodies: RequestRecord carries none. Client-supplied strings (model_requested,
// request_id) are escaped, invalid UTF-8 is replaced, and they are cut to 256 bytes.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/logging.h"
#include "dataplane/request_record.h"

namespace llmproxy {

// Formats one line (ending in '\n'); pure, for tests and other sinks.
std::string FormatAccessLogLine(const RequestRecord& record, LogFormat format,
                                std::chrono::system_clock::time_point now);

class AccessLog final : public RequestObserver {
 public:
  using Sink = std::function<void(std::string_view line)>;

  // Writes to stderr (WriteLogLine) in the current --log-format.
  AccessLog();
  // Writes to `sink`, in `format` when given, else the current --log-format.
  explicit AccessLog(Sink sink, std::optional<LogFormat> format = std::nullopt);

  void OnRequestDone(const RequestRecord& record) override;

 private:
  Sink sink_;
  std::optional<LogFormat> format_;
};

}  // namespace llmproxy
