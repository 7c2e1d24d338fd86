// Server-Sent Events framing for the stream relay, and token usage extraction. Pure: the
// relay feeds it upstream body pieces as they arrive (any chunk boundaries) and writes
// what it returns to the client. It forwards whole events only, so a stream that breaks
// later can end with a clean `data: {"error":...}` event, and (stream_usage: request) it
// can drop the usage-only chunk the proxy asked for. Lines may end in LF, CRLF or a lone
// CR (the SSE spec allows all three); an event is forwarded as soon as its blank line is
// complete. Only events where a "usage" key has an object value are JSON-read (by
// json_reader), so the common chunk costs one scan.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dataplane/protocols/json_reader.h"  // TokenUsage

namespace llmproxy {

class ChatStreamTracker;   // chat_stream.h
class ContinuationFilter;  // chat_stream.h

// Sees every complete event and says what is forwarded in its place (a protocol
// translation: dataplane/protocols/stream_bridge.h). Set instead of the chat hooks.
class SseEventHook {
 public:
  virtual ~SseEventHook() = default;
  // One complete event, raw. Returns the bytes to forward instead (empty: nothing), valid
  // until the next call. `readable_after`: bytes after event.end() that may be read.
  virtual std::string_view OnEvent(std::string_view event, size_t readable_after) = 0;
  // An event longer than max_event_bytes: it is not forwarded (it cannot be translated
  // unseen), only reported.
  virtual void OnUnframed() = 0;
  // The stream's end event went out (the relay stops reading, as at [DONE]).
  virtual bool done() const = 0;
};

// Usage of a plain (non-streaming) JSON response body: top-level "usage" object with
// integer "prompt_tokens" / "completion_tokens" (a missing one counts 0); see ReadUsageJson
// in json_reader.h for the exact rules. nullopt when there is no usable usage object.
// `readable_after`: bytes after json_body.end() that may be read (fewer than kJsonPadding
// means the body is copied into a padded buffer first).
std::optional<TokenUsage> ExtractUsageFromJson(std::string_view json_body,
                                               size_t readable_after = 0);
// A std::string body has its spare capacity as padding, so it is read in place when the
// capacity allows (constrained so string literals still pick the string_view form).
template <typename S>
requires std::same_as<S, std::string> std::optional<TokenUsage> ExtractUsageFromJson(
    const S& json_body) {
  return ExtractUsageFromJson(std::string_view(json_body), json_body.capacity() - json_body.size());
}

struct SseParserOptions {
  // Drop events whose JSON is a usage-only chunk ("choices": [] and "usage" an object),
  // i.e. the chunk stream_options.include_usage adds (stream_usage: request when the
  // client did not ask for it). Their usage is still recorded.
  bool drop_usage_only_events = false;
  // An event growing beyond this without its blank line is passed through as-is
  // (framing given up for that event) instead of being held back in memory.
  size_t max_event_bytes = 1 << 20;
  // Chat-stream hooks (chat_stream.h), not owned, each optional. For every complete event
  // the continuation filter runs first (its verdict decides what is forwarded: the event,
  // nothing, or its rewrite), then the tracker observes the event as forwarded. An
  // over-long event passed through unframed is reported to the tracker
  // (ObserveUnframed) and not rewritten; Finish()'s partial event reaches neither (a relay
  // that continues a broken stream must not forward it). Both null: one flag test per event.
  ChatStreamTracker* tracker = nullptr;
  ContinuationFilter* continuation = nullptr;
  // Set: every complete event goes to it after the usage and [DONE] checks, and what it
  // returns is forwarded instead (the chat hooks above are then the hook's business).
  SseEventHook* hook = nullptr;
};

class SseParser {
 public:
  explicit SseParser(SseParserOptions options = {});

  // Consumes the next upstream piece; returns the bytes to send to the client now: the
  // complete events (each with its terminating blank line as the upstream wrote it:
  // "\n\n", "\r\n\r\n", "\r\r"...) minus dropped ones. When a piece ends in the lone CR
  // that ended an event, an LF that starts the next piece completes that CRLF and is
  // forwarded (or dropped) with that event. A partial trailing event is held back until its
  // end arrives. The view points into `chunk` when possible (no copy) or into an internal
  // buffer; valid until the next Feed/Finish call. May be empty.
  std::string_view Feed(std::string_view chunk);

  // At upstream end of stream: the held-back partial event, if any (forward it as-is).
  // With a hook: what the hook makes of that partial event (nothing for an over-long one).
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
  // Where the search for an event's blank line stands: the next byte to look at
  // (relative to the start of the unterminated event), whether it starts a line, and
  // whether the byte before it was a CR (an LF now would be part of that line end).
  struct LineScan {
    size_t pos = 0;
    bool line_start = false;
    bool prev_cr = false;
  };
  // What to do with an LF that may follow an event ended by a lone CR at a piece's end.
  enum class PendingLf { kNone, kKeep, kDrop };

  // The end of the event whose blank line comes at or after scan.pos in `data` (the index
  // just past that blank line's line end), or npos with `scan` advanced to data.size().
  // *open_cr: the blank line is a CR that is data's last byte.
  static size_t FindEventEnd(std::string_view data, LineScan& scan, bool* open_cr);

  // What to do with one complete event: forward it, drop it, or forward replacement_.
  enum class Verdict { kKeep, kDrop, kReplace };
  // Inspects one complete event. `readable_after`: bytes after the event that may be read
  // (JSON padding).
  Verdict OnEvent(std::string_view event, size_t readable_after);
  // OnEvent's usage and [DONE] checks; false when the event must be dropped.
  bool InspectEvent(std::string_view event, size_t readable_after);
  // OnEvent with a continuation filter and/or tracker.
  Verdict OnChatEvent(std::string_view event, size_t readable_after);
  // OnEvent with a hook.
  Verdict OnHookEvent(std::string_view event, size_t readable_after);

  SseParserOptions options_;
  bool chat_hooks_ = false;       // options_.tracker or options_.continuation set
  std::string_view replacement_;  // Verdict::kReplace: the bytes to forward instead
  std::string pending_;           // partial event carried over; capacity keeps kJsonPadding spare
  std::string out_;               // output when it cannot be a view of the chunk
  std::string hook_out_;          // Finish(): the hook's output for a partial last event
  size_t consumed_ = 0;           // prefix of pending_ already returned (erased on the next call)
  LineScan scan_;
  PendingLf pending_lf_ = PendingLf::kNone;
  bool passthrough_event_ = false;  // inside an over-long event: forward until its end
  bool done_ = false;
  uint64_t events_ = 0;
  std::optional<TokenUsage> usage_;
};

// The fields of one complete SSE event (its raw bytes, as SseParser forwards them): the
// `event:` name ("" when absent) and the `data:` lines joined with '\n' (one optional space
// after the colon is not part of the value; lines end in LF, CRLF or a lone CR). Comments
// and other fields are skipped. `data` views the event when it has one data line, else
// `storage`; `has_data` is false when there is no data line at all (a comment, a ping).
struct SseFields {
  std::string_view event;
  std::string_view data;
  bool has_data = false;
  std::string storage;
};
void ReadSseFields(std::string_view raw, SseFields& out);

// Appends one SSE event: "event: <event>\n" (skipped when `event` is empty), "data: <data>\n"
// and the blank line. `data` must hold no line break (one JSON text does not).
void AppendSseEvent(std::string& out, std::string_view event, std::string_view data);

// Classifies one complete SSE event (its raw bytes). Exposed for tests.
struct SseEventInfo {
  bool is_done = false;     // data: [DONE]
  bool has_usage = false;   // JSON data with a usage object
  bool usage_only = false;  // has_usage and "choices" is an empty array
  TokenUsage usage;
};
SseEventInfo InspectSseEvent(std::string_view event);

}  // namespace llmproxy
