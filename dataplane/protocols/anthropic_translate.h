// Translation between Anthropic Messages (POST /v1/messages) and OpenAI chat completions,
// both ways: request bodies, whole answers, error answers and SSE streams. Pure: bodies
// and events in, bodies and events out, no I/O, no clock (a `created` time is passed in).
// docs/protocols.md ("Anthropic Messages") lists exactly what is translated and dropped.
//
//   client Messages request --MessagesRequestToChat--> chat upstream
//     answer: ChatResponseToMessages / ChatStreamToMessages / ErrorBodyToMessages
//   client chat request --ChatRequestToMessages--> Messages upstream (api: anthropic)
//     answer: MessagesResponseToChat / MessagesStreamToChat / ErrorBodyToChat
//
// Streams are translated event by event: each complete upstream SSE event (SseParser
// frames them, ReadSseFields in sse_parser.h splits name and data) gives the client's
// events for it at once; nothing is held back except the few facts a later event needs
// (open block, stop reason, usage). Input is untrusted: JSON is read with simdjson's DOM
// (UTF-8 checked, nesting at most kMaxJsonDepth), output JSON is built with nlohmann or by
// hand with AppendJsonString, and every failure is a value (error text, nullopt, a skipped
// event), never an exception or a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/protocols/json_reader.h"          // TokenUsage
#include "dataplane/protocols/request_translation.h"  // RequestTranslation

namespace llmproxy {

inline constexpr size_t kMaxDropped = 16;

// How a backend takes Anthropic's `thinking`: kNone drops it; kReasoningEffort sends
// "reasoning_effort" ("low" for budget_tokens < 4096, "medium" < 16384, else "high");
// kThinkingObject sends {"thinking":{"type":"enabled"}} (DeepSeek / VolcEngine style).
enum class ReasoningStyle { kNone, kReasoningEffort, kThinkingObject };

struct MessagesToChatOptions {
  std::string_view model = {};  // model name to send upstream (replaces the body's; "" keeps it)
  bool include_usage = true;    // when streaming: "stream_options":{"include_usage":true}
  ReasoningStyle reasoning = ReasoningStyle::kNone;
  // Send max_tokens as "max_completion_tokens" (OpenAI's reasoning models refuse
  // "max_tokens").
  bool max_completion_tokens = false;
};
RequestTranslation MessagesRequestToChat(std::string_view body, const MessagesToChatOptions& o);

struct ChatToMessagesOptions {
  std::string_view model = {};  // "" keeps the body's
  // Messages requires max_tokens; chat's max_completion_tokens / max_tokens win.
  uint32_t default_max_tokens = 4096;
};
RequestTranslation ChatRequestToMessages(std::string_view body, const ChatToMessagesOptions& o);

// Whole (non-stream) 2xx answers. nullopt: the upstream body is not a usable answer of its
// protocol (answer 502). `model`: reported when the upstream body has none. `created`: the
// chat answer's "created" (Unix seconds; Messages answers carry no time).
std::optional<std::string> ChatResponseToMessages(std::string_view chat_body,
                                                  std::string_view model);
std::optional<std::string> MessagesResponseToChat(std::string_view messages_body,
                                                  std::string_view model, int64_t created = 0);

// Error answers (any status >= 400, any body: JSON in either shape, or text) in the other
// protocol's shape. The message is the upstream's when it has one (control characters
// replaced, long key-like tokens redacted, at most kMaxErrorMessageBytes), else a generic
// one naming the status.
//   Messages: {"type":"error","error":{"type":...,"message":...}}
//   chat:     {"error":{"message":...,"type":...,"code":...}}
inline constexpr size_t kMaxErrorMessageBytes = 512;
std::string ErrorBodyToMessages(int status, std::string_view upstream_body);
std::string ErrorBodyToChat(int status, std::string_view upstream_body);
// The Messages error type for an HTTP status (400 invalid_request_error ... 529
// overloaded_error; other 4xx invalid_request_error, other 5xx api_error).
std::string_view MessagesErrorTypeForStatus(int status);
// One Messages SSE error event:
//   event: error\ndata: {"type":"error","error":{"type":...,"message":...}}\n\n
std::string MessagesErrorEvent(std::string_view type, std::string_view message);

// Chat chunks in (each chat SSE event's data), Messages events out.
class ChatStreamToMessages {
 public:
  explicit ChatStreamToMessages(std::string_view model);

  // One chat SSE event's data: a chunk's JSON or "[DONE]". Appends zero or more whole
  // Messages SSE events to `out`. A chunk that is not JSON (or not an object) is skipped
  // and counted; a chunk {"error":{...}} is the upstream failing: Fail(api_error, its
  // message).
  void OnChunk(std::string_view data, std::string& out);
  // The upstream ended (after [DONE] or without it): closes the open block and ends with
  // message_delta + message_stop, once (stop_reason end_turn when no finish_reason came).
  // Idempotent.
  void Finish(std::string& out);
  // The stream broke: closes nothing, appends MessagesErrorEvent(type, message). After it
  // (and after message_stop) OnChunk/Finish/Fail append nothing.
  void Fail(std::string_view type, std::string_view message, std::string& out);

  bool done() const { return stopped_; }              // message_stop went out
  bool failed() const { return failed_; }             // an error event went out
  const TokenUsage& usage() const { return usage_; }  // from the upstream's usage chunk
  uint64_t cached_tokens() const { return cached_; }  // prompt_tokens_details.cached_tokens
  uint64_t skipped() const { return skipped_; }  // events not usable (bad JSON, lost tool args)

 private:
  enum class Block { kNone, kThinking, kText, kTool };
  void Start(std::string& out);
  void Open(Block kind, std::string& out);
  void Close(std::string& out);
  void End(std::string& out);  // message_delta + message_stop
  void AppendDelta(std::string_view type, std::string_view key, std::string_view value,
                   std::string& out);

  std::string model_;
  std::string id_;
  bool started_ = false;
  bool stopped_ = false;
  bool failed_ = false;
  bool finish_seen_ = false;
  bool usage_seen_ = false;
  std::string stop_reason_ = "end_turn";
  Block open_ = Block::kNone;
  uint32_t index_ = 0;          // index of the open block (next one when none is open)
  int64_t tool_index_ = -1;     // chat index of the open tool call
  std::string tool_id_;         // its id
  uint64_t tools_started_ = 0;  // for ids the upstream did not give
  TokenUsage usage_;
  uint64_t cached_ = 0;
  uint64_t skipped_ = 0;
};

// Messages events in, chat chunks out ("data: {...}\n\n"; after message_stop the usage-only
// chunk when include_usage, then "data: [DONE]\n\n"). Every chunk has the same id
// ("chatcmpl-" + the message id), created and model.
class MessagesStreamToChat {
 public:
  explicit MessagesStreamToChat(std::string_view model, bool include_usage, int64_t created = 0);

  // One Messages SSE event (its event name and data). The data's "type" decides (the
  // event name when the data has none). ping and unknown types are ignored; data that is
  // not a JSON object is skipped and counted. An `error` event becomes one chunk
  // {"error":{"message","type","code"}} and ends the translation (error()).
  void OnEvent(std::string_view event, std::string_view data, std::string& out);
  // The upstream ended. Appends nothing: without message_stop the stream is broken (done()
  // stays false) and the relay ends it as it ends any broken chat stream.
  void Finish(std::string& out);

  bool done() const { return done_; }    // message_stop came and [DONE] went out
  bool error() const { return error_; }  // an error event came
  // prompt_tokens = input_tokens + cache_read + cache_creation; completion = output_tokens;
  // cached_prompt_tokens = cache_read (Anthropic's input_tokens leaves cached ones out).
  const TokenUsage& usage() const { return usage_; }
  uint64_t cached_tokens() const { return cache_read_; }
  uint64_t skipped() const { return skipped_; }

 private:
  void StartChunk(std::string& out);
  void EndChunk(std::string& out);
  void UpdateUsage();

  std::string model_;
  bool include_usage_;
  int64_t created_;
  std::string prefix_;  // data: {"id":..,"object":..,"created":..,"model":..,
  bool started_ = false;
  bool role_sent_ = false;
  bool finish_sent_ = false;
  bool done_ = false;
  bool error_ = false;
  // Messages block index -> chat tool_calls index (-1: not a tool block).
  std::vector<int32_t> tool_of_block_;
  int32_t tools_ = 0;
  uint64_t input_ = 0, cache_read_ = 0, cache_creation_ = 0, output_ = 0;
  TokenUsage usage_;
  uint64_t skipped_ = 0;
};

// count_tokens for a backend that cannot count: an estimate of a Messages body's input
// tokens (docs/protocols.md): ceil(UTF-8 bytes of all text / 4) + 4 per message + 85 per
// image. nullopt when the body is not a Messages request (not an object, no messages array).
std::optional<uint64_t> EstimateMessagesInputTokens(std::string_view body);

}  // namespace llmproxy
