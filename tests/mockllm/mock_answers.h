// The mock's answers in the Anthropic Messages and OpenAI Responses protocols, and what a
// request's conversation asks for (a tool call, or the answer to a tool's result) in all
// three protocols. Pure: parsed JSON in, reply bytes out; mock_llm.cc writes them and
// applies the faults (an event's `content` flag says which events the chunk-counting
// faults such as die-after-chunks count).
//
// The last input is the conversation's last entry that is not a system/developer message.
// A turn whose request defines tools and whose last input is a user message calls the
// first tool with arguments {"q":"tok0 tok1 ... "}, streamed as N argument fragments
// (ToolArgumentPieces); a turn whose last input is a tool's result answers
// "tool said: <result, at most 40 bytes>" (ToolResultPieces).
#pragma once

#include <ctime>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmproxy {

// Anthropic's answer to a prompt over the (mock's) limit, for the messages route's
// x-mock-context-length-exceeded.
inline constexpr std::string_view kAnthropicPromptTooLongBody =
    R"({"type":"error","error":{"type":"invalid_request_error",)"
    R"("message":"prompt is too long: 9000 tokens > 8192 maximum"}})";

// What the last input of a conversation asks of the mock.
struct MockTurn {
  std::optional<std::string> tool_name{};    // call this tool (the first one defined)
  std::optional<std::string> tool_result{};  // the text of the tool result being answered
  bool thinking = false;                     // Messages: `thinking` of type enabled/adaptive
};

MockTurn ReadChatTurn(const nlohmann::json& body);
MockTurn ReadMessagesTurn(const nlohmann::json& body);
MockTurn ReadResponsesTurn(const nlohmann::json& body);

// {"q":"tok0 ", "tok1 ", ..., "tok{n-1} "}: n fragments of one JSON object (one fragment
// `{"q":""}` when n is 0).
std::vector<std::string> ToolArgumentPieces(int n);
// "tool said: " and the result cut to 40 bytes (never inside a UTF-8 sequence).
std::vector<std::string> ToolResultPieces(std::string_view result);

// One answer of the mock, protocol-neutral.
struct MockAnswer {
  std::string model;
  std::string id;  // "<mock name>_<request n>", the tail of every id in the answer
  int input_tokens = 1;
  std::vector<std::string> pieces;       // text deltas, or argument fragments for a tool call
  std::optional<std::string> tool_name;  // set: the pieces are this tool call's arguments
  bool thinking = false;                 // Messages: a thinking block comes first
  std::time_t created = 0;
};

// One SSE event ("event: <type>\ndata: <json>\n\n"); `content` marks the token events
// (text or argument deltas; not thinking) the chunk faults count.
struct MockEvent {
  std::string bytes;
  bool content = false;
};

// Anthropic Messages: the message object, and the stream message_start ... message_stop.
std::string AnthropicMessageJson(const MockAnswer& a);
std::vector<MockEvent> AnthropicEvents(const MockAnswer& a);
// {"type":"error","error":{"type":<by status>,"message":...}}.
std::string AnthropicErrorJson(std::string_view type, std::string_view message);
std::string AnthropicStatusErrorJson(int status);

// OpenAI Responses: the response object (status completed), and the stream
// response.created ... response.completed with sequence numbers from 0.
std::string ResponsesJson(const MockAnswer& a);
std::vector<MockEvent> ResponsesEvents(const MockAnswer& a);

}  // namespace llmproxy
