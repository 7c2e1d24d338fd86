// Chat-completions SSE streams seen event by event, for the stream relay's rescues:
// ChatStreamTracker tells when the first real token arrived (first_token_timeout,
// hedging) and keeps the answer so far (mid-stream continuation);
// ContinuationFilter rewrites a continuation stream so the client sees one stream; and
// AppendAssistantPrefill builds the continuation request. Pure: bytes in, facts or bytes
// out. SseParser calls the first two from OnEvent (SseParserOptions::tracker/continuation)
// with each complete event's raw bytes, so they never see a partial event.
//
// JSON is read with simdjson On-Demand as in json_reader.h (same kJsonPadding contract:
// `readable_after` says how many bytes after the text may be read, else it is copied
// into a padded scratch buffer). With tracking on, every event of a stream is read, which
// is the hot path nlohmann's DOM would slow down; the rewrite needs exact byte offsets of
// values, which only a reader of the raw text gives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmproxy {

struct TrackOptions {
  // true: read every event and keep choice 0's content (what a continuation needs).
  // false: look for the first token only and stop inspecting once it came (cheap; then
  // only first_token() and id()/created() are meaningful).
  bool text = true;
};

class ChatStreamTracker {
 public:
  explicit ChatStreamTracker(TrackOptions options = {});

  // One complete SSE event, raw (lines and blank line as the upstream sent them).
  // `readable_after`: bytes after event.end() that may be read (JSON padding).
  void Observe(std::string_view event, size_t readable_after = 0);
  // The parser forwarded an event without framing it (longer than max_event_bytes): its
  // content is unknown, so the stream counts as started and can no longer be continued.
  void ObserveUnframed();

  // An event carried a real token: a choice delta with non-empty `content`,
  // `reasoning_content` (or OpenRouter's `reasoning`) or `refusal`, a non-empty
  // `tool_calls` (or `function_call`), a `finish_reason`, a top-level `error` object, or
  // `[DONE]` (so an empty answer is not taken for a silent one). Headers, comments and
  // role-only or empty-content chunks are not tokens.
  bool first_token() const { return first_token_; }
  // Choice 0's `content`, concatenated and unescaped (full mode only).
  const std::string& text() const { return text_; }
  bool in_tool_call() const { return tool_call_; }  // a tool_calls delta was seen
  bool finished() const { return finished_; }       // a finish_reason was seen
  bool done() const { return done_; }               // data: [DONE]
  bool error() const { return error_; }             // an event with an `error` object
  // Reasoning text was streamed; a text prefill does not carry it, so a continuation
  // would stream the reasoning again.
  bool reasoning() const { return reasoning_; }
  // The stream so far can be continued with text() as an assistant prefill: full mode,
  // only choice index 0, every data event parsed as a JSON object, no tool call, no
  // finish_reason, no [DONE], nothing forwarded unframed.
  bool continuable() const;
  // From the first chunk that had them ("" / 0 when none did).
  std::string_view id() const { return id_; }
  int64_t created() const { return created_; }
  uint64_t events() const { return events_; }  // events inspected

 private:
  TrackOptions options_;
  std::string text_;
  std::string id_;
  int64_t created_ = 0;
  uint64_t events_ = 0;
  bool have_id_ = false;
  bool have_created_ = false;
  bool first_token_ = false;
  bool tool_call_ = false;
  bool finished_ = false;
  bool done_ = false;
  bool error_ = false;
  bool reasoning_ = false;
  bool other_choice_ = false;  // a choice index other than 0
  bool unparsed_ = false;      // a data event that was not a JSON object
  bool unframed_ = false;
};

// Rewrites the events of a continuation stream (the same request sent again with the
// answer so far as an assistant prefill) so that, appended to the original stream, the
// client sees one stream: the top-level `id` and `created` values become the original's,
// `role` members leave every delta, and a chunk that then carries nothing (every choice
// with empty or no content, no tool_calls, no finish_reason; no usage, no error) is
// dropped. Other events ([DONE], usage-only chunks, comments, non-JSON data) pass
// unchanged. Only the edited values' bytes change; line ends stay as they came. An event
// whose data spans several `data:` lines comes out as one `data:` line.
class ContinuationFilter {
 public:
  // `id`: the original stream's id ("" keeps each event's own); `created`: its created
  // (0 keeps each event's own), e.g. ChatStreamTracker::id()/created().
  ContinuationFilter(std::string_view id, int64_t created);

  enum class Verdict { kKeep, kDrop, kReplace };
  struct Result {
    Verdict verdict = Verdict::kKeep;
    std::string_view bytes;  // kReplace: the event to forward; valid until the next call
  };
  // One complete SSE event, raw; `readable_after` as in ChatStreamTracker::Observe.
  Result Filter(std::string_view event, size_t readable_after = 0);

  uint64_t dropped() const { return dropped_; }
  uint64_t replaced() const { return replaced_; }

 private:
  std::string id_json_;  // the id as a JSON string token, quotes included
  std::string created_;  // decimal, or "" to keep
  std::string out_;
  uint64_t dropped_ = 0;
  uint64_t replaced_ = 0;
};

// The request body (one JSON object with a top-level `messages` array) with
// {"role":"assistant","content":<text>} appended as the array's last element; every
// other byte unchanged. The array's end comes from the JSON parse, never a text search.
// The body is expected to be one the proxy already checked on arrival (ReadRequestJson):
// here only its structure is. nullopt when the body is not a JSON object, has no `messages` array,
// or has two.
std::optional<std::string> AppendAssistantPrefill(std::string_view body, std::string_view text);

}  // namespace llmproxy
