#include "tests/mockllm/mock_answers.h"

#include <nlohmann/json.hpp>

namespace llmproxy {

using nlohmann::json;
// Replies keep their keys in the order written, as the providers send them.
using ojson = nlohmann::ordered_json;

namespace {

constexpr size_t kToolResultEcho = 40;

// The text of a content value: a string, or the concatenated `text` of an array's blocks
// (chat text parts, Anthropic text blocks, Responses input_text/output_text parts).
std::string TextOf(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (!content.is_array()) return out;
  for (const auto& part : content) {
    if (!part.is_object()) continue;
    auto t = part.find("text");
    if (t != part.end() && t->is_string()) out += t->get<std::string>();
  }
  return out;
}

std::optional<std::string> StringField(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// The name of the first entry of `tools` (chat nests it in `function`).
std::optional<std::string> FirstToolName(const json& body, bool chat) {
  auto tools = body.find("tools");
  if (tools == body.end() || !tools->is_array() || tools->empty()) return std::nullopt;
  const json& first = tools->front();
  if (chat) {
    auto fn = first.is_object() ? first.find("function") : first.end();
    if (!first.is_object() || fn == first.end()) return std::nullopt;
    return StringField(*fn, "name");
  }
  return StringField(first, "name");
}

std::string Sse(std::string_view type, const ojson& data) {
  std::string e = "event: ";
  e += type;
  e += "\ndata: ";
  e += data.dump(-1, ' ', false, json::error_handler_t::replace);
  e += "\n\n";
  return e;
}

std::string Joined(const std::vector<std::string>& pieces) {
  std::string s;
  for (const auto& p : pieces) s += p;
  return s;
}

// The last entry of a conversation that is not a system (or developer) message: Claude
// Code ends its Messages requests with a role "system" message, which is no turn.
const json* LastTurn(const json& body, const char* key) {
  auto list = body.find(key);
  if (list == body.end() || !list->is_array()) return nullptr;
  for (auto it = list->rbegin(); it != list->rend(); ++it) {
    if (!it->is_object()) return nullptr;
    auto role = StringField(*it, "role");
    if (role != "system" && role != "developer") return &*it;
  }
  return nullptr;
}

int OutputTokens(const MockAnswer& a) { return static_cast<int>(a.pieces.size()); }

constexpr std::string_view kThinking = "mock thinks ";
constexpr std::string_view kSignature = "mock-signature";

}  // namespace

MockTurn ReadChatTurn(const json& body) {
  MockTurn t;
  if (!body.is_object()) return t;
  const json* turn = LastTurn(body, "messages");
  if (!turn) return t;
  const json& last = *turn;
  auto role = StringField(last, "role");
  if (role == "tool") {
    auto c = last.find("content");
    t.tool_result = c == last.end() ? "" : TextOf(*c);
  } else if (role == "user") {
    t.tool_name = FirstToolName(body, /*chat=*/true);
  }
  return t;
}

MockTurn ReadMessagesTurn(const json& body) {
  MockTurn t;
  if (!body.is_object()) return t;
  auto th = body.find("thinking");
  if (th != body.end()) {
    auto type = StringField(*th, "type");
    t.thinking = type == "enabled" || type == "adaptive";
  }
  const json* turn = LastTurn(body, "messages");
  if (!turn) return t;
  const json& last = *turn;
  if (StringField(last, "role") != "user") return t;
  auto content = last.find("content");
  if (content != last.end() && content->is_array()) {
    for (const auto& block : *content) {
      if (StringField(block, "type") != "tool_result") continue;
      auto c = block.find("content");
      t.tool_result = c == block.end() ? "" : TextOf(*c);
    }
  }
  if (!t.tool_result) t.tool_name = FirstToolName(body, /*chat=*/false);
  return t;
}

MockTurn ReadResponsesTurn(const json& body) {
  MockTurn t;
  if (!body.is_object()) return t;
  auto input = body.find("input");
  if (input == body.end()) return t;
  bool user = input->is_string();
  if (const json* turn = input->is_array() ? LastTurn(body, "input") : nullptr) {
    const json& last = *turn;
    if (StringField(last, "type") == "function_call_output") {
      auto out = last.find("output");
      t.tool_result = out == last.end() ? "" : TextOf(*out);
    } else {
      user = StringField(last, "role") == "user";
    }
  }
  if (user) {
    // Only function tools can be called with {"q":...}; Responses tools are flat.
    auto tools = body.find("tools");
    if (tools != body.end() && tools->is_array()) {
      for (const auto& tool : *tools) {
        if (StringField(tool, "type") != "function") continue;
        t.tool_name = StringField(tool, "name");
        break;
      }
    }
  }
  return t;
}

std::vector<std::string> ToolArgumentPieces(int n) {
  if (n <= 0) return {R"({"q":""})"};
  std::vector<std::string> pieces;
  pieces.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) pieces.push_back("tok" + std::to_string(i) + " ");
  pieces.front().insert(0, R"({"q":")");
  pieces.back() += R"("})";
  return pieces;
}

std::vector<std::string> ToolResultPieces(std::string_view result) {
  size_t cut = std::min(result.size(), kToolResultEcho);
  // Back off to a UTF-8 lead byte so the echo stays valid text (and valid JSON).
  if (cut < result.size()) {
    while (cut > 0 && (static_cast<unsigned char>(result[cut]) & 0xC0) == 0x80) --cut;
  }
  std::vector<std::string> pieces = {"tool said: "};
  if (cut > 0) pieces.emplace_back(result.substr(0, cut));
  return pieces;
}

std::string AnthropicErrorJson(std::string_view type, std::string_view message) {
  return ojson{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}}.dump(
      -1, ' ', false, ojson::error_handler_t::replace);
}

std::string AnthropicStatusErrorJson(int status) {
  // Anthropic's error types by status (its API reference, "Errors").
  std::string_view type = status == 400   ? "invalid_request_error"
                          : status == 401 ? "authentication_error"
                          : status == 403 ? "permission_error"
                          : status == 404 ? "not_found_error"
                          : status == 413 ? "request_too_large"
                          : status == 429 ? "rate_limit_error"
                          : status == 529 ? "overloaded_error"
                          : status >= 500 ? "api_error"
                                          : "invalid_request_error";
  return AnthropicErrorJson(type, "mock scripted failure (status " + std::to_string(status) + ")");
}

namespace {

ojson AnthropicUsage(const MockAnswer& a, int output) {
  return {{"input_tokens", a.input_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", 0},
          {"output_tokens", output}};
}

std::string ToolUseId(const MockAnswer& a) { return "toolu_" + a.id; }

}  // namespace

std::string AnthropicMessageJson(const MockAnswer& a) {
  ojson content = ojson::array();
  if (a.thinking) {
    content.push_back({{"type", "thinking"}, {"thinking", kThinking}, {"signature", kSignature}});
  }
  if (a.tool_name) {
    content.push_back({{"type", "tool_use"},
                       {"id", ToolUseId(a)},
                       {"name", *a.tool_name},
                       {"input", ojson::parse(Joined(a.pieces))}});
  } else {
    content.push_back({{"type", "text"}, {"text", Joined(a.pieces)}});
  }
  ojson j = {{"id", "msg_" + a.id},      {"type", "message"},
             {"role", "assistant"},      {"model", a.model},
             {"content", content},       {"stop_reason", a.tool_name ? "tool_use" : "end_turn"},
             {"stop_sequence", nullptr}, {"usage", AnthropicUsage(a, OutputTokens(a))}};
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::vector<MockEvent> AnthropicEvents(const MockAnswer& a) {
  std::vector<MockEvent> ev;
  ojson message = {{"id", "msg_" + a.id},       {"type", "message"},
                   {"role", "assistant"},       {"model", a.model},
                   {"content", ojson::array()}, {"stop_reason", nullptr},
                   {"stop_sequence", nullptr},  {"usage", AnthropicUsage(a, 1)}};
  ev.push_back({Sse("message_start", {{"type", "message_start"}, {"message", message}})});
  int index = 0;
  if (a.thinking) {
    ev.push_back(
        {Sse("content_block_start",
             {{"type", "content_block_start"},
              {"index", index},
              {"content_block", {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}}})});
    ev.push_back({Sse("content_block_delta",
                      {{"type", "content_block_delta"},
                       {"index", index},
                       {"delta", {{"type", "thinking_delta"}, {"thinking", kThinking}}}})});
    ev.push_back({Sse("content_block_delta",
                      {{"type", "content_block_delta"},
                       {"index", index},
                       {"delta", {{"type", "signature_delta"}, {"signature", kSignature}}}})});
    ev.push_back({Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", index}})});
    ++index;
  }
  ojson block = a.tool_name ? ojson{{"type", "tool_use"},
                                    {"id", ToolUseId(a)},
                                    {"name", *a.tool_name},
                                    {"input", ojson::object()}}
                            : ojson{{"type", "text"}, {"text", ""}};
  ev.push_back(
      {Sse("content_block_start",
           {{"type", "content_block_start"}, {"index", index}, {"content_block", block}})});
  ev.push_back({Sse("ping", {{"type", "ping"}})});
  for (const auto& p : a.pieces) {
    ojson delta = a.tool_name ? ojson{{"type", "input_json_delta"}, {"partial_json", p}}
                              : ojson{{"type", "text_delta"}, {"text", p}};
    ev.push_back({Sse("content_block_delta",
                      {{"type", "content_block_delta"}, {"index", index}, {"delta", delta}}),
                  true});
  }
  ev.push_back({Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", index}})});
  ev.push_back({Sse("message_delta", {{"type", "message_delta"},
                                      {"delta",
                                       {{"stop_reason", a.tool_name ? "tool_use" : "end_turn"},
                                        {"stop_sequence", nullptr}}},
                                      {"usage", {{"output_tokens", OutputTokens(a)}}}})});
  ev.push_back({Sse("message_stop", {{"type", "message_stop"}})});
  return ev;
}

namespace {

ojson ResponsesUsage(const MockAnswer& a) {
  const int out = OutputTokens(a);
  return {{"input_tokens", a.input_tokens},
          {"input_tokens_details", {{"cached_tokens", 0}}},
          {"output_tokens", out},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", a.input_tokens + out}};
}

ojson OutputText(const std::string& text) {
  return {{"type", "output_text"},
          {"text", text},
          {"annotations", ojson::array()},
          {"logprobs", ojson::array()}};
}

// The output item, finished (status completed) or just opened (in_progress, empty).
ojson OutputItem(const MockAnswer& a, bool done) {
  if (a.tool_name) {
    return {{"id", "fc_" + a.id},
            {"type", "function_call"},
            {"status", done ? "completed" : "in_progress"},
            {"arguments", done ? Joined(a.pieces) : ""},
            {"call_id", "call_" + a.id},
            {"name", *a.tool_name}};
  }
  return {{"id", "msg_" + a.id},
          {"type", "message"},
          {"status", done ? "completed" : "in_progress"},
          {"role", "assistant"},
          {"content", done ? ojson::array({OutputText(Joined(a.pieces))}) : ojson::array()}};
}

ojson ResponseObject(const MockAnswer& a, bool done) {
  return {{"id", "resp_" + a.id},
          {"object", "response"},
          {"created_at", a.created},
          {"status", done ? "completed" : "in_progress"},
          {"background", false},
          {"error", nullptr},
          {"incomplete_details", nullptr},
          {"instructions", nullptr},
          {"max_output_tokens", nullptr},
          {"model", a.model},
          {"output", done ? ojson::array({OutputItem(a, true)}) : ojson::array()},
          {"parallel_tool_calls", true},
          {"previous_response_id", nullptr},
          {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
          {"store", false},
          {"temperature", 1.0},
          {"text", {{"format", {{"type", "text"}}}}},
          {"tool_choice", "auto"},
          {"tools", ojson::array()},
          {"top_p", 1.0},
          {"truncation", "disabled"},
          {"usage", done ? ResponsesUsage(a) : ojson(nullptr)},
          {"user", nullptr},
          {"metadata", ojson::object()}};
}

}  // namespace

std::string ResponsesJson(const MockAnswer& a) {
  return ResponseObject(a, true).dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::vector<MockEvent> ResponsesEvents(const MockAnswer& a) {
  std::vector<MockEvent> ev;
  int seq = 0;
  auto add = [&](std::string_view type, const ojson& fields, bool content = false) {
    ojson data = {{"type", type}, {"sequence_number", seq++}};
    for (const auto& [k, v] : fields.items()) data[k] = v;
    std::string e = "event: ";
    e += type;
    e += "\ndata: ";
    e += data.dump(-1, ' ', false, ojson::error_handler_t::replace);
    e += "\n\n";
    ev.push_back({std::move(e), content});
  };
  add("response.created", {{"response", ResponseObject(a, false)}});
  add("response.in_progress", {{"response", ResponseObject(a, false)}});
  add("response.output_item.added", {{"output_index", 0}, {"item", OutputItem(a, false)}});
  const std::string full = Joined(a.pieces);
  if (a.tool_name) {
    const std::string item = "fc_" + a.id;
    for (const auto& p : a.pieces) {
      add("response.function_call_arguments.delta",
          {{"item_id", item}, {"output_index", 0}, {"delta", p}}, true);
    }
    add("response.function_call_arguments.done",
        {{"item_id", item}, {"output_index", 0}, {"name", *a.tool_name}, {"arguments", full}});
  } else {
    const std::string item = "msg_" + a.id;
    ojson where = {{"item_id", item}, {"output_index", 0}, {"content_index", 0}};
    ojson part_added = where;
    part_added["part"] = {{"type", "output_text"}, {"text", ""}, {"annotations", ojson::array()}};
    add("response.content_part.added", part_added);
    for (const auto& p : a.pieces) {
      ojson d = where;
      d["delta"] = p;
      d["logprobs"] = ojson::array();
      add("response.output_text.delta", d, true);
    }
    ojson text_done = where;
    text_done["text"] = full;
    text_done["logprobs"] = ojson::array();
    add("response.output_text.done", text_done);
    ojson part_done = where;
    part_done["part"] = {{"type", "output_text"}, {"text", full}, {"annotations", ojson::array()}};
    add("response.content_part.done", part_done);
  }
  add("response.output_item.done", {{"output_index", 0}, {"item", OutputItem(a, true)}});
  add("response.completed", {{"response", ResponseObject(a, true)}});
  return ev;
}

}  // namespace llmproxy
