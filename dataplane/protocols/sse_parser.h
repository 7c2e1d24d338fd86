// Server-Sent Events framing for the stream relay, and token usage extraction. Pure: the
// relay feeds it upstream body pieces as they arrive (any chunk boundaries) and writes
// what it returns to the client. It forwards whole events only, so a stream that breaks
// later can end with a clean `data: {"error":...}` event, and (stream_usage: request) it
// can drop the usage-only chunk the proxy asked for. Only events containing the bytes
// "usage" are JSON-parsed, so the common chunk costs one scan.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmproxy {

struct TokenUsage {
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  bool operator==(const TokenUsage&) const = default;
};

// Usage of a plain (non-streaming) JSON response body: top-level "usage" object with
// numeric "prompt_tokens" / "completion_tokens" (a missing one counts 0). nullopt when
// there is no usable usage object.
std::optional<TokenUsage> ExtractUsageFromJson(std::string_view json_body);

struct SseParserOptions {
  // Drop events whose JSON is a usage-only chunk ("choices": [] and "usage" an object),
  // i.e. the chunk stream_options.include_usage adds (stream_usage: request when the
  // client did not ask for it). Their usage is still recorded.
  bool drop_usage_only_events = false;
  // An event growing beyond this without its blank line is passed through as-is
  // (framing given up for that event) instead of being held back in memory.
  size_t max_event_bytes = 1 << 20;
};

class SseParser {
 public:
  explicit SseParser(SseParserOptions options = {});

  // Consumes the next upstream piece; returns the bytes to send to the client now: the
  // complete events (each with its terminating blank line, "\n\n" or "\r\n\r\n" as the
  // upstream wrote it) minus dropped ones. A partial trailing event is held back until its
  // end arrives. The view points into `chunk` when possible (no copy) or into an internal
  // buffer; valid until the next Feed/Finish call. May be empty.
  std::string_view Feed(std::string_view chunk);

  // At upstream end of stream: the held-back partial event, if any (forward it as-is).
  std::string_view Finish();

  // A `data: [DONE]` event was seen.
  bool done() const { return done_; }
  // Number of complete events seen (dropped ones included).
  uint64_t events() const { return events_; }
  // The last usage seen in any event's JSON ("usage" object with token counts).
  const std::optional<TokenUsage>& usage() const { return usage_; }
  // Bytes currently held back (a partial event).
  size_t pending_bytes() const { return pending_.size() - consumed_; }

 private:
  // Inspects one complete event; returns false when it must be dropped.
  bool OnEvent(std::string_view event);

  SseParserOptions options_;
  std::string pending_;             // partial event carried over from the previous chunk
  std::string out_;                 // output when it cannot be a view of the chunk
  size_t consumed_ = 0;             // prefix of pending_ already returned (erased on the next call)
  size_t scan_from_ = 0;            // where to resume looking for the blank line in pending_
  bool passthrough_event_ = false;  // inside an over-long event: forward until its end
  bool done_ = false;
  uint64_t events_ = 0;
  std::optional<TokenUsage> usage_;
};

// Classifies one complete SSE event (its raw bytes). Exposed for tests.
struct SseEventInfo {
  bool is_done = false;     // data: [DONE]
  bool has_usage = false;   // JSON data with a usage object
  bool usage_only = false;  // has_usage and "choices" is an empty array
  TokenUsage usage;
};
SseEventInfo InspectSseEvent(std::string_view event);

}  // namespace llmproxy
