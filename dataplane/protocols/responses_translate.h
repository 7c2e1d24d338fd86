// OpenAI Responses (`POST /v1/responses`, what Codex CLI speaks) over a chat-completions
// backend, translated both ways and statelessly (docs/protocols.md "OpenAI Responses"):
//
//   client body --ResponsesRequestToChat--> chat body (or a 400 message)
//   client body --EchoOfResponsesRequest--> what every Responses object repeats of it
//   2xx chat body --ChatResponseToResponses--> one `response` object
//   error body (status >= 400) --ErrorBodyToResponses--> {"error":{message,type,param,code}}
//   chat SSE event data, one at a time --ChatStreamToResponses--> Responses SSE events
//
// Pure: strings in, strings out; no I/O, no clock, no random source (ids derive from the
// upstream's chat id). The stream translator writes each chat chunk's events as soon as the
// chunk arrives; only what the closing events repeat (the text and arguments so far) is
// kept. Request and whole bodies are read with nlohmann (after a nesting-depth check),
// stream chunks with simdjson's DOM parser (the hot path, as json_reader.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/protocols/json_reader.h"  // TokenUsage
#include "dataplane/protocols/request_translation.h"

namespace llmproxy {

struct SseFields;  // sse_parser.h

struct ResponsesToChatOptions {
  std::string_view model;     // model name to send upstream ("" keeps the client's)
  bool include_usage = true;  // when streaming: "stream_options":{"include_usage":true}
  // Tools of a type other than "function" (web_search, custom, local_shell...) are a 400
  // naming them; true drops them instead (named in `dropped`), for clients such as Codex
  // CLI that send web_search unless it is disabled.
  bool drop_unsupported_tools = false;
};

// A Responses request body -> a chat-completions request body. `error` set: the client
// gets a 400 with it (body not a JSON object, input missing or malformed, a stateful
// feature such as previous_response_id, a tool type chat cannot express...).
RequestTranslation ResponsesRequestToChat(std::string_view body, const ResponsesToChatOptions& o);

// What a translated answer echoes of the request: instructions, tools, tool_choice,
// temperature, top_p, max_output_tokens, parallel_tool_calls, reasoning, text, metadata,
// store, truncation, user, with the API's defaults for absent ones.
struct ResponsesEcho {
  // JSON object members without the braces ("\"instructions\":null,\"tools\":[],...");
  // never empty, so it is spliced into a response object followed by a comma.
  std::string fields_json;
  // The function tools of the request's `namespace` tools, which chat knows only flat
  // (NamespacedToolName): chat name -> {namespace, name}, so a call of one comes back as a
  // function_call item with its namespace.
  std::map<std::string, std::pair<std::string, std::string>, std::less<>> namespaced;
};

// The chat function name of tool `name` in Responses namespace `ns`: "<ns>__<name>", the
// shape agents already use for MCP tools (docs/protocols.md "OpenAI Responses").
std::string NamespacedToolName(std::string_view ns, std::string_view name);
// Built once from the client body; a body that is not a JSON object gives the defaults.
ResponsesEcho EchoOfResponsesRequest(std::string_view body);

// A whole 2xx chat answer -> a Responses `response` object (choice 0): status "completed",
// or "incomplete" (incomplete_details.reason "max_output_tokens" for finish_reason length,
// "content_filter" for content_filter); output: a reasoning item (reasoning_content), a
// message item (output_text), function_call items; usage in the Responses shape (null when
// the answer had none). `model` "" takes the answer's own. nullopt: not a usable chat
// completion (not JSON, no choices[0].message, an error object): the caller answers 502.
std::optional<std::string> ChatResponseToResponses(std::string_view chat_body,
                                                   const ResponsesEcho& echo,
                                                   std::string_view model);

// An upstream error answer (status >= 400, any body) in the Responses error shape
// {"error":{"message","type","param","code"}}: a body that already is one (an "error"
// object with a string "message") comes back unchanged; anything else is wrapped, its text
// (cut, made valid UTF-8) in the message and the type chosen by status.
std::string ErrorBodyToResponses(int status, std::string_view upstream_body);

// Upstream chat SSE events (the data of each, in order) -> Responses SSE events
// ("event: <type>\ndata: {...,"type":"<type>","sequence_number":N}\n\n"), each chunk's
// events written when it arrives. Event order: response.created, response.in_progress;
// per output item output_item.added, its deltas, its ...done events and output_item.done;
// finally response.completed (or response.incomplete, or response.failed). Items: a
// reasoning item for reasoning_content (reasoning_text parts), a message item for content
// (output_text), one function_call item per chat tool call index. Choice 0 only.
class ChatStreamToResponses {
 public:
  ChatStreamToResponses(ResponsesEcho echo, std::string_view model);
  ~ChatStreamToResponses();
  ChatStreamToResponses(const ChatStreamToResponses&) = delete;
  ChatStreamToResponses& operator=(const ChatStreamToResponses&) = delete;

  // One chat SSE event's data: a chunk's JSON or "[DONE]" ([DONE] finishes, as Finish).
  // Appends zero or more whole Responses SSE events to out. A chunk that is not a JSON
  // object is skipped and counted; a chunk with an "error" object fails the stream.
  void OnChunk(std::string_view data, std::string& out);
  // What SseParser::Feed or Finish returned (whole events, any line ends, several at once):
  // OnChunk with the data of each event that has a data line. Trailing bytes without their
  // blank line (Finish's partial event) count as one event.
  void OnEvents(std::string_view sse, std::string& out);
  // The upstream ended (after [DONE] or without it): closes open items (their ...done
  // events) and ends with response.completed, or response.incomplete for finish_reason
  // length / content_filter. Once; later calls append nothing.
  void Finish(std::string& out);
  // The stream broke: appends a `response.failed` event (response.status "failed", error
  // {code, message}); nothing comes after it. Nothing when the stream already ended.
  void Fail(std::string_view code, std::string_view message, std::string& out);

  bool done() const { return done_; }
  // From the usage chunk (prompt_tokens / completion_tokens); zeros until one came.
  const TokenUsage& usage() const { return usage_; }
  uint64_t skipped() const { return skipped_; }  // malformed chunks skipped

  // The answer may not keep more than this many bytes of text, arguments and items (a
  // hostile upstream cannot grow memory without bound): beyond it the stream fails.
  static constexpr size_t kMaxKeptBytes = 32u << 20;
  // What one output item counts besides its text (ids, status, its JSON in the final
  // response), so an upstream alternating reasoning and text cannot grow the item list
  // without bound either.
  static constexpr size_t kItemBytes = 256;
  // Tool call indexes beyond this many distinct calls are ignored (and counted skipped).
  static constexpr size_t kMaxToolCalls = 128;

 private:
  struct Item;
  struct Chunk;
  struct Parser;

  void Start(std::string& out);
  void Event(std::string& out, std::string_view type, std::string_view fields);
  void OnDelta(const Chunk& chunk, std::string& out);
  Item* OpenText(bool reasoning, std::string& out);  // nullptr: the stream failed
  void CloseText(std::string& out);
  void CloseItem(Item& item, std::string& out);
  std::string ResponseJson(std::string_view status, std::string_view extra) const;
  bool Keep(size_t bytes, std::string& out);

  ResponsesEcho echo_;
  std::string model_;
  std::string base_;  // id stem from the first chunk's "id"
  int64_t created_ = 0;
  std::vector<Item> items_;
  std::map<int64_t, size_t> tool_item_;  // chat tool call index -> items_ index
  std::optional<size_t> text_item_;      // the open reasoning or message item
  std::string finish_reason_;
  std::string usage_json_ = "null";
  TokenUsage usage_;
  uint64_t sequence_ = 0;
  uint64_t skipped_ = 0;
  size_t kept_ = 0;
  bool started_ = false;
  bool done_ = false;
  std::unique_ptr<Parser> parser_;
  std::string scratch_;  // event fields under construction
  std::unique_ptr<SseFields> fields_;
};

}  // namespace llmproxy
