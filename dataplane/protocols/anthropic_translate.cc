#include "dataplane/protocols/anthropic_translate.h"

#include <simdjson.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/log/json_escape.h"
#include "dataplane/protocols/sse_parser.h"  // AppendSseEvent

namespace llmproxy {
namespace {

namespace dom = simdjson::dom;
using simdjson::SUCCESS;
// std::map-backed: lookups stay O(log n) however many keys a hostile object has.
using Json = nlohmann::json;

// As in json_reader.cc: documents up to this size use the thread's parser, a larger one
// gets its own, freed after use, so one big body does not pin memory per thread.
constexpr size_t kKeepParserBytes = 512 * 1024;

// One parsed JSON text. Slot 0 is for bodies and events, slot 1 for a JSON text nested in
// a string (tool-call arguments) read while slot 0's document is still in use.
class Parsed {
 public:
  bool Parse(std::string_view text, int slot = 0) {
    if (text.empty()) return false;  // no JSON text (and data() may be null: no memcpy)
    dom::parser* parser = nullptr;
    if (text.size() <= kKeepParserBytes) {
      thread_local dom::parser shared[2];
      parser = &shared[slot];
    } else {
      own_ = std::make_unique<dom::parser>();
      parser = own_.get();
    }
    if (parser->max_depth() != kMaxJsonDepth &&
        parser->allocate(std::max<size_t>(text.size(), 64), kMaxJsonDepth) != SUCCESS) {
      return false;
    }
    return parser->parse(text.data(), text.size()).get(root) == SUCCESS;
  }
  bool Object(std::string_view text, dom::object& out, int slot = 0) {
    return Parse(text, slot) && root.get_object().get(out) == SUCCESS;
  }
  dom::element root;

 private:
  std::unique_ptr<dom::parser> own_;
};

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::optional<dom::element> Field(dom::object o, std::string_view key) {
  dom::element e;
  if (o.at_key(key).get(e) != SUCCESS) return std::nullopt;
  return e;
}
bool IsNull(const std::optional<dom::element>& e) { return !e || e->is_null(); }
std::string_view StrOr(const std::optional<dom::element>& e, std::string_view fallback = {}) {
  std::string_view s;
  if (e && e->get_string().get(s) == SUCCESS) return s;
  return fallback;
}
bool GetStr(dom::object o, std::string_view key, std::string_view& out) {
  auto e = Field(o, key);
  return e && e->get_string().get(out) == SUCCESS;
}
// A non-negative integer count; negative counts 0, another type nullopt.
std::optional<uint64_t> Count(const std::optional<dom::element>& e) {
  if (!e) return std::nullopt;
  uint64_t u = 0;
  int64_t i = 0;
  if (e->get_uint64().get(u) == SUCCESS) return u;
  if (e->get_int64().get(i) == SUCCESS) return 0;
  return std::nullopt;
}
uint64_t CountOr0(dom::object o, std::string_view key) { return Count(Field(o, key)).value_or(0); }

// The element as nlohmann JSON (depth is bounded by the parser's kMaxJsonDepth).
Json ToJson(dom::element e) {
  switch (e.type()) {
    case dom::element_type::ARRAY: {
      Json a = Json::array();
      dom::array list;
      if (e.get_array().get(list) != SUCCESS) break;
      for (dom::element x : list) a.push_back(ToJson(x));
      return a;
    }
    case dom::element_type::OBJECT: {
      Json o = Json::object();
      dom::object fields;
      if (e.get_object().get(fields) != SUCCESS) break;
      for (dom::key_value_pair kv : fields) {
        o[std::string(kv.key)] = ToJson(kv.value);
      }
      return o;
    }
    case dom::element_type::INT64:
      return e.get_int64().value_unsafe();
    case dom::element_type::UINT64:
      return e.get_uint64().value_unsafe();
    case dom::element_type::DOUBLE:
      return e.get_double().value_unsafe();
    case dom::element_type::STRING:
      return std::string(e.get_string().value_unsafe());
    case dom::element_type::BOOL:
      return e.get_bool().value_unsafe();
    case dom::element_type::NULL_VALUE:
      break;
  }
  return nullptr;
}

// The names of what was not translated: distinct, printable, short, at most kMaxDropped.
class Dropped {
 public:
  explicit Dropped(std::vector<std::string>& names) : names_(names) {}
  void Add(std::string_view name) {
    if (names_.size() >= kMaxDropped) return;
    std::string clean;
    for (char c : name.substr(0, 48)) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || c == '.' || c == '[' || c == ']';
      clean.push_back(ok ? c : '?');
    }
    if (std::find(names_.begin(), names_.end(), clean) == names_.end()) names_.push_back(clean);
  }

 private:
  std::vector<std::string>& names_;
};

std::string At(std::string_view what, size_t i) {
  return std::string(what) + "[" + std::to_string(i) + "]";
}
std::string At(std::string_view what, size_t i, size_t j) {
  return At(what, i) + ".content[" + std::to_string(j) + "]";
}

// Messages image block -> chat image_url part; "" error on success.
std::string ImageToChat(dom::object block, Json& part, const std::string& where) {
  dom::object source;
  auto s = Field(block, "source");
  if (!s || s->get_object().get(source) != SUCCESS) return where + ".source: must be an object";
  std::string_view type, media, data, url;
  GetStr(source, "type", type);
  if (type == "base64") {
    if (!GetStr(source, "media_type", media) || !GetStr(source, "data", data)) {
      return where + ".source: base64 needs media_type and data";
    }
    std::string u = "data:";
    u.append(media).append(";base64,").append(data);
    part = {{"type", "image_url"}, {"image_url", {{"url", std::move(u)}}}};
    return {};
  }
  if (type == "url" && GetStr(source, "url", url)) {
    part = {{"type", "image_url"}, {"image_url", {{"url", std::string(url)}}}};
    return {};
  }
  return where + ".source: must be base64 or url";
}

// Text of a string or an array of text blocks (other blocks are named in `d`), joined
// with "\n\n". false when it is neither. With `images`, image blocks are added to it as
// chat image_url parts (an unusable one is dropped) instead of being dropped.
bool TextOf(dom::element e, std::string& out, Dropped& d, std::string_view image_name,
            Json* images = nullptr) {
  std::string_view s;
  if (e.get_string().get(s) == SUCCESS) {
    out.assign(s);
    return true;
  }
  dom::array blocks;
  if (e.get_array().get(blocks) != SUCCESS) return false;
  bool first = true;
  for (dom::element b : blocks) {
    dom::object bo;
    std::string_view type, text;
    if (b.get_object().get(bo) != SUCCESS || !GetStr(bo, "type", type)) return false;
    if (Field(bo, "cache_control")) d.Add("cache_control");
    if (type == "text" && GetStr(bo, "text", text)) {
      if (!first) out += "\n\n";
      out.append(text);
      first = false;
    } else if (type == "text") {
      return false;
    } else if (Json part; type == "image" && images && ImageToChat(bo, part, {}).empty()) {
      images->push_back(std::move(part));
    } else {
      d.Add(type == "image" ? image_name : type);
    }
  }
  return true;
}

std::string_view EffortForBudget(uint64_t budget) {
  return budget < 4096 ? "low" : budget < 16384 ? "medium" : "high";
}

// --- Messages request -> chat request ---------------------------------------------------

std::string UserToChat(dom::array blocks, size_t i, Json& msgs, Dropped& d) {
  Json parts = Json::array();
  bool only_text = true;
  std::string text;
  size_t j = 0;
  for (dom::element b : blocks) {
    const std::string where = At("messages", i, j++);
    dom::object bo;
    std::string_view type;
    if (b.get_object().get(bo) != SUCCESS || !GetStr(bo, "type", type)) {
      return where + ": must be an object with a type";
    }
    if (Field(bo, "cache_control")) d.Add("cache_control");
    if (type == "text") {
      std::string_view t;
      if (!GetStr(bo, "text", t)) return where + ".text: must be a string";
      parts.push_back({{"type", "text"}, {"text", std::string(t)}});
      if (!text.empty()) text += "\n\n";
      text.append(t);
    } else if (type == "image") {
      Json part;
      if (std::string e = ImageToChat(bo, part, where); !e.empty()) return e;
      parts.push_back(std::move(part));
      only_text = false;
    } else if (type == "tool_result") {
      std::string_view id;
      if (!GetStr(bo, "tool_use_id", id) || id.empty()) {
        return where + ".tool_use_id: must be a non-empty string";
      }
      std::string content;
      Json images = Json::array();
      auto c = Field(bo, "content");
      if (!IsNull(c) && !TextOf(*c, content, d, "tool_result.image", &images)) {
        return where + ".content: must be a string or an array of blocks";
      }
      // A tool message carries text only: its images go into the user message that
      // follows the tool messages.
      for (Json& image : images) {
        parts.push_back(std::move(image));
        only_text = false;
      }
      bool is_error = false;
      if (auto e = Field(bo, "is_error"); e && e->get_bool().get(is_error) == SUCCESS && is_error) {
        content.insert(0, "Error: ");
      }
      // Tool answers come first: chat wants them right after the assistant's tool_calls.
      msgs.push_back({{"role", "tool"}, {"tool_call_id", std::string(id)}, {"content", content}});
    } else if (type == "thinking" || type == "redacted_thinking") {
      d.Add("thinking");
    } else {
      d.Add(type);
    }
  }
  if (parts.empty() && j > 0) return {};  // only tool results (or dropped blocks)
  if (only_text) {
    msgs.push_back({{"role", "user"}, {"content", std::move(text)}});
  } else {
    msgs.push_back({{"role", "user"}, {"content", std::move(parts)}});
  }
  return {};
}

std::string AssistantToChat(dom::array blocks, size_t i, Json& msgs, Dropped& d) {
  std::string text;
  Json calls = Json::array();
  size_t j = 0;
  for (dom::element b : blocks) {
    const std::string where = At("messages", i, j++);
    dom::object bo;
    std::string_view type;
    if (b.get_object().get(bo) != SUCCESS || !GetStr(bo, "type", type)) {
      return where + ": must be an object with a type";
    }
    if (Field(bo, "cache_control")) d.Add("cache_control");
    if (type == "text") {
      std::string_view t;
      if (!GetStr(bo, "text", t)) return where + ".text: must be a string";
      if (!text.empty() && !t.empty()) text += "\n\n";
      text.append(t);
    } else if (type == "tool_use") {
      std::string_view id, name;
      if (!GetStr(bo, "id", id) || id.empty() || !GetStr(bo, "name", name) || name.empty()) {
        return where + ": tool_use needs a string id and name";
      }
      auto input = Field(bo, "input");
      std::string args = IsNull(input) ? "{}" : simdjson::to_string(*input);
      calls.push_back(
          {{"id", std::string(id)},
           {"type", "function"},
           {"function", {{"name", std::string(name)}, {"arguments", std::move(args)}}}});
    } else if (type == "thinking" || type == "redacted_thinking") {
      d.Add("thinking");
    } else {
      d.Add(type);
    }
  }
  Json m = {{"role", "assistant"}};
  if (calls.empty()) {
    m["content"] = std::move(text);
  } else {
    m["content"] = text.empty() ? Json(nullptr) : Json(std::move(text));
    m["tool_calls"] = std::move(calls);
  }
  msgs.push_back(std::move(m));
  return {};
}

std::string MessagesToChatMessages(dom::element messages, Json& msgs, Dropped& d) {
  dom::array list;
  if (messages.get_array().get(list) != SUCCESS) return "messages: must be an array";
  size_t i = 0;
  for (dom::element m : list) {
    const std::string where = At("messages", i);
    dom::object mo;
    if (m.get_object().get(mo) != SUCCESS) return where + ": must be an object";
    std::string_view role;
    GetStr(mo, "role", role);
    if (role != "user" && role != "assistant" && role != "system") {
      return where + ".role: must be user or assistant";
    }
    auto content = Field(mo, "content");
    std::string_view s;
    dom::array blocks;
    if (content && content->get_string().get(s) == SUCCESS) {
      msgs.push_back({{"role", role}, {"content", std::string(s)}});
    } else if (!content || content->get_array().get(blocks) != SUCCESS) {
      return where + ".content: must be a string or an array";
    } else if (role == "system") {
      std::string text;
      if (!TextOf(*content, text, d, "image")) return where + ".content: must be text blocks";
      msgs.push_back({{"role", "system"}, {"content", std::move(text)}});
    } else if (std::string e = role == "user" ? UserToChat(blocks, i, msgs, d)
                                              : AssistantToChat(blocks, i, msgs, d);
               !e.empty()) {
      return e;
    }
    ++i;
  }
  return {};
}

std::string ToolsToChat(dom::element tools, Json& out, Dropped& d) {
  dom::array list;
  if (tools.get_array().get(list) != SUCCESS) return "tools: must be an array";
  Json fns = Json::array();
  size_t i = 0;
  for (dom::element t : list) {
    const std::string where = At("tools", i++);
    dom::object to;
    std::string_view name, type, description;
    if (t.get_object().get(to) != SUCCESS || !GetStr(to, "name", name) || name.empty()) {
      return where + ": must be an object with a name";
    }
    if (Field(to, "cache_control")) d.Add("cache_control");
    auto schema = Field(to, "input_schema");
    if (GetStr(to, "type", type) && type != "custom" && !schema) {
      d.Add("tools." + std::string(type));  // a server tool (web_search, bash...)
      continue;
    }
    Json fn = {{"name", std::string(name)}};
    if (GetStr(to, "description", description)) fn["description"] = std::string(description);
    fn["parameters"] =
        IsNull(schema) ? Json{{"type", "object"}, {"properties", Json::object()}} : ToJson(*schema);
    fns.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  if (!fns.empty()) out["tools"] = std::move(fns);
  return {};
}

std::string ToolChoiceToChat(dom::element choice, Json& out) {
  dom::object co;
  std::string_view type, name;
  if (choice.get_object().get(co) != SUCCESS || !GetStr(co, "type", type)) {
    return "tool_choice: must be an object with a type";
  }
  if (type == "auto") {
    out["tool_choice"] = "auto";
  } else if (type == "any") {
    out["tool_choice"] = "required";
  } else if (type == "none") {
    out["tool_choice"] = "none";
  } else if (type == "tool" && GetStr(co, "name", name)) {
    out["tool_choice"] = {{"type", "function"}, {"function", {{"name", std::string(name)}}}};
  } else {
    return "tool_choice: type must be auto, any, tool (with a name) or none";
  }
  bool no_parallel = false;
  if (auto p = Field(co, "disable_parallel_tool_use");
      p && p->get_bool().get(no_parallel) == SUCCESS && no_parallel && type != "none") {
    out["parallel_tool_calls"] = false;
  }
  return {};
}

std::string ThinkingToChat(dom::element thinking, ReasoningStyle style, Json& out, Dropped& d) {
  dom::object to;
  std::string_view type;
  if (thinking.get_object().get(to) != SUCCESS || !GetStr(to, "type", type)) {
    return "thinking: must be an object with a type";
  }
  const bool enabled = type != "disabled";
  switch (style) {
    case ReasoningStyle::kNone:
      d.Add("thinking");
      break;
    case ReasoningStyle::kReasoningEffort:
      if (enabled) {
        out["reasoning_effort"] =
            EffortForBudget(Count(Field(to, "budget_tokens")).value_or(uint64_t{4096}));
      }
      break;
    case ReasoningStyle::kThinkingObject:
      out["thinking"] = {{"type", enabled ? "enabled" : "disabled"}};
      break;
  }
  return {};
}

bool IsNumber(dom::element e) { return e.is_number(); }

// --- chat request -> Messages request ---------------------------------------------------

std::string SanitizeToolId(std::string_view id) {
  std::string s(id);
  for (char& c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return s;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// chat image_url -> Messages image block; "" on success.
std::string ImageToMessages(dom::object part, Json& block, const std::string& where) {
  std::string_view url;
  auto iu = Field(part, "image_url");
  dom::object io;
  if (iu && iu->get_object().get(io) == SUCCESS) {
    GetStr(io, "url", url);
  } else if (iu) {
    url = StrOr(iu);
  }
  if (StartsWith(url, "data:")) {
    const size_t mark = url.find(";base64,");
    if (mark == std::string_view::npos || mark <= 5) {
      return where + ".image_url: a data URL must be data:<media type>;base64,<data>";
    }
    block = {{"type", "image"},
             {"source",
              {{"type", "base64"},
               {"media_type", std::string(url.substr(5, mark - 5))},
               {"data", std::string(url.substr(mark + 8))}}}};
    return {};
  }
  if (StartsWith(url, "https://") || StartsWith(url, "http://")) {
    block = {{"type", "image"}, {"source", {{"type", "url"}, {"url", std::string(url)}}}};
    return {};
  }
  return where + ".image_url: must be a data URL or an http(s) URL";
}

// Chat content (string, null or parts) -> Messages blocks appended to `blocks`.
std::string ContentToBlocks(const std::optional<dom::element>& content, const std::string& where,
                            Json& blocks, Dropped& d) {
  if (IsNull(content)) return {};
  std::string_view s;
  if (content->get_string().get(s) == SUCCESS) {
    if (!s.empty()) blocks.push_back({{"type", "text"}, {"text", std::string(s)}});
    return {};
  }
  dom::array parts;
  if (content->get_array().get(parts) != SUCCESS) {
    return where + ".content: must be a string, null or an array";
  }
  size_t j = 0;
  for (dom::element p : parts) {
    const std::string pw = where + ".content[" + std::to_string(j++) + "]";
    dom::object po;
    std::string_view type, text;
    if (p.get_object().get(po) != SUCCESS || !GetStr(po, "type", type)) {
      return pw + ": must be an object with a type";
    }
    if (type == "text" || type == "refusal") {
      if (!GetStr(po, type, text)) return pw + ": text must be a string";
      if (!text.empty()) blocks.push_back({{"type", "text"}, {"text", std::string(text)}});
    } else if (type == "image_url") {
      Json block;
      if (std::string e = ImageToMessages(po, block, pw); !e.empty()) return e;
      blocks.push_back(std::move(block));
    } else {
      d.Add("content." + std::string(type));
    }
  }
  return {};
}

// Text of chat content (string or parts, text parts only).
bool ChatText(const std::optional<dom::element>& content, std::string& out, Dropped& d) {
  if (IsNull(content)) return true;
  std::string_view s;
  if (content->get_string().get(s) == SUCCESS) {
    out.append(s);
    return true;
  }
  dom::array parts;
  if (content->get_array().get(parts) != SUCCESS) return false;
  for (dom::element p : parts) {
    dom::object po;
    std::string_view type, text;
    if (p.get_object().get(po) != SUCCESS || !GetStr(po, "type", type)) return false;
    if (type == "text" && GetStr(po, "text", text)) {
      if (!out.empty() && !text.empty()) out += "\n\n";
      out.append(text);
    } else {
      d.Add("content." + std::string(type));
    }
  }
  return true;
}

std::string ToolCallsToBlocks(dom::element calls, const std::string& where, Json& blocks) {
  dom::array list;
  if (calls.get_array().get(list) != SUCCESS) return where + ".tool_calls: must be an array";
  size_t k = 0;
  for (dom::element c : list) {
    const std::string cw = where + ".tool_calls[" + std::to_string(k++) + "]";
    dom::object co, fo;
    std::string_view id, name, args;
    std::optional<dom::element> fn;
    if (c.get_object().get(co) != SUCCESS || !GetStr(co, "id", id) || id.empty() ||
        !(fn = Field(co, "function")) || fn->get_object().get(fo) != SUCCESS ||
        !GetStr(fo, "name", name) || name.empty()) {
      return cw + ": needs an id and function.name";
    }
    auto a = Field(fo, "arguments");
    Json input = Json::object();
    if (!IsNull(a)) {
      if (a->get_string().get(args) != SUCCESS) return cw + ".function.arguments: must be a string";
      if (args.find_first_not_of(" \t\r\n") != std::string_view::npos) {
        Parsed parsed;
        dom::object ao;
        if (!parsed.Object(args, ao, 1)) {
          return cw + ".function.arguments: must be a JSON object";
        }
        input = ToJson(parsed.root);
      }
    }
    blocks.push_back({{"type", "tool_use"},
                      {"id", SanitizeToolId(id)},
                      {"name", std::string(name)},
                      {"input", std::move(input)}});
  }
  return {};
}

struct MessagesOut {
  Json messages = Json::array();
  std::string system;
};

void PushMessage(MessagesOut& out, std::string_view role, Json blocks, Dropped& d) {
  if (blocks.empty()) {
    d.Add("messages.empty");  // Messages rejects empty content
    return;
  }
  if (!out.messages.empty() && out.messages.back()["role"] == std::string(role)) {
    Json& prev = out.messages.back()["content"];
    for (Json& b : blocks) prev.push_back(std::move(b));
  } else {
    out.messages.push_back({{"role", role}, {"content", std::move(blocks)}});
  }
}

std::string ChatToMessagesMessages(dom::element messages, MessagesOut& out, Dropped& d) {
  dom::array list;
  if (messages.get_array().get(list) != SUCCESS) return "messages: must be an array";
  size_t i = 0;
  for (dom::element m : list) {
    const std::string where = At("messages", i++);
    dom::object mo;
    if (m.get_object().get(mo) != SUCCESS) return where + ": must be an object";
    std::string_view role;
    GetStr(mo, "role", role);
    auto content = Field(mo, "content");
    Json blocks = Json::array();
    if (role == "system" || role == "developer") {
      std::string text;
      if (!ChatText(content, text, d)) return where + ".content: must be a string or text parts";
      if (!text.empty()) {
        if (!out.system.empty()) out.system += "\n\n";
        out.system += text;
      }
      continue;
    }
    if (role == "user" || role == "assistant") {
      if (std::string e = ContentToBlocks(content, where, blocks, d); !e.empty()) return e;
      if (role == "assistant") {
        if (Field(mo, "reasoning_content")) d.Add("reasoning_content");
        if (auto calls = Field(mo, "tool_calls"); !IsNull(calls)) {
          if (std::string e = ToolCallsToBlocks(*calls, where, blocks); !e.empty()) return e;
        }
      }
      PushMessage(out, role, std::move(blocks), d);
    } else if (role == "tool") {
      std::string_view id;
      if (!GetStr(mo, "tool_call_id", id) || id.empty()) {
        return where + ".tool_call_id: must be a non-empty string";
      }
      std::string text;
      if (!ChatText(content, text, d)) return where + ".content: must be a string or text parts";
      blocks.push_back(
          {{"type", "tool_result"}, {"tool_use_id", SanitizeToolId(id)}, {"content", text}});
      PushMessage(out, "user", std::move(blocks), d);
    } else {
      return where + ".role: must be system, developer, user, assistant or tool";
    }
  }
  // tool_result blocks must lead a user message's content.
  for (Json& msg : out.messages) {
    if (msg["role"] != "user") continue;
    Json& c = msg["content"];
    std::stable_partition(c.begin(), c.end(),
                          [](const Json& b) { return b.value("type", "") == "tool_result"; });
  }
  return {};
}

std::string ChatToolsToMessages(dom::element tools, Json& out, Dropped& d) {
  dom::array list;
  if (tools.get_array().get(list) != SUCCESS) return "tools: must be an array";
  Json result = Json::array();
  size_t i = 0;
  for (dom::element t : list) {
    const std::string where = At("tools", i++);
    dom::object to, fo;
    std::string_view type, name, description;
    if (t.get_object().get(to) != SUCCESS) return where + ": must be an object";
    if (GetStr(to, "type", type) && type != "function") {
      d.Add("tools." + std::string(type));
      continue;
    }
    auto fn = Field(to, "function");
    if (!fn || fn->get_object().get(fo) != SUCCESS || !GetStr(fo, "name", name) || name.empty()) {
      return where + ".function: must be an object with a name";
    }
    Json tool = {{"name", std::string(name)}};
    if (GetStr(fo, "description", description)) tool["description"] = std::string(description);
    auto params = Field(fo, "parameters");
    tool["input_schema"] =
        IsNull(params) ? Json{{"type", "object"}, {"properties", Json::object()}} : ToJson(*params);
    if (Field(fo, "strict")) d.Add("tools.strict");
    result.push_back(std::move(tool));
  }
  if (!result.empty()) out["tools"] = std::move(result);
  return {};
}

std::string ChatToolChoiceToMessages(dom::element choice, Json& out) {
  std::string_view s;
  dom::object co, fo;
  std::string_view name;
  if (choice.get_string().get(s) == SUCCESS) {
    if (s == "auto") {
      out = {{"type", "auto"}};
    } else if (s == "required") {
      out = {{"type", "any"}};
    } else if (s == "none") {
      out = {{"type", "none"}};
    } else {
      return "tool_choice: must be auto, required, none or a function";
    }
    return {};
  }
  std::optional<dom::element> fn;
  if (choice.get_object().get(co) == SUCCESS && (fn = Field(co, "function")) &&
      fn->get_object().get(fo) == SUCCESS && GetStr(fo, "name", name)) {
    out = {{"type", "tool"}, {"name", std::string(name)}};
    return {};
  }
  return "tool_choice: must be auto, required, none or a function";
}

uint64_t BudgetForEffort(std::string_view effort) {
  if (effort == "minimal" || effort == "low") return 1024;
  if (effort == "medium") return 8192;
  if (effort == "high") return 24576;
  return 0;
}

// --- answers ----------------------------------------------------------------------------

std::string_view StopReasonFromFinish(std::string_view finish) {
  if (finish == "length") return "max_tokens";
  if (finish == "tool_calls" || finish == "function_call") return "tool_use";
  if (finish == "content_filter") return "refusal";
  return "end_turn";
}

std::string_view FinishFromStopReason(std::string_view stop) {
  if (stop == "max_tokens" || stop == "model_context_window_exceeded") return "length";
  if (stop == "tool_use") return "tool_calls";
  if (stop == "refusal") return "content_filter";
  return "stop";
}

// An id of ours made from an upstream's: a prefix and the id's safe characters, bounded.
std::string DerivedId(std::string_view prefix, std::string_view id, std::string_view strip) {
  if (StartsWith(id, strip)) id.remove_prefix(strip.size());
  std::string out(prefix);
  out += id.empty() ? "proxy" : SanitizeToolId(id.substr(0, 128));
  return out;
}

// Tool-call arguments text -> tool_use input: the JSON object it holds; anything else is
// kept as text under "_unparsed_arguments" so the tool's caller sees what came.
Json InputFromArguments(std::string_view args) {
  if (args.find_first_not_of(" \t\r\n") == std::string_view::npos) return Json::object();
  Parsed parsed;
  dom::object ao;
  if (parsed.Object(args, ao, 1)) return ToJson(parsed.root);
  return {{"_unparsed_arguments", std::string(args)}};
}

// --- errors -----------------------------------------------------------------------------

bool IsKeyChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

// The length of the valid UTF-8 sequence at in[i], 0 when there is none.
size_t Utf8Length(std::string_view in, size_t i) {
  const unsigned char c = in[i];
  if (c < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > in.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const unsigned char b = in[i + k];
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
  }
  return len;
}

// An upstream message fit to show a client: control characters become spaces, bytes that
// are not UTF-8 become '?', key-like runs (32+ key characters, or "sk-" and 8 more)
// become "[redacted]", at most kMaxErrorMessageBytes (whole characters only).
std::string SanitizeMessage(std::string_view in) {
  std::string out;
  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = in[i];
    std::string_view piece;
    size_t next = i + 1;
    if (IsKeyChar(c) && (i == 0 || !IsKeyChar(in[i - 1]))) {
      size_t j = i;
      while (j < in.size() && IsKeyChar(in[j])) ++j;
      const std::string_view run = in.substr(i, j - i);
      if (run.size() >= 32 ||
          ((StartsWith(run, "sk-") || StartsWith(run, "sk_")) && run.size() >= 11)) {
        piece = "[redacted]";
      } else {
        piece = run;
      }
      next = j;
    } else if (c < 0x20 || c == 0x7f) {
      piece = " ";
    } else if (const size_t len = Utf8Length(in, i); len > 0) {
      piece = in.substr(i, len);
      next = i + len;
    } else {
      piece = "?";
    }
    if (out.size() + piece.size() > kMaxErrorMessageBytes) {
      // A long plain run may be cut (ASCII); a character or a redaction may not.
      if (IsKeyChar(c) && piece != "[redacted]") {
        out.append(piece.substr(0, kMaxErrorMessageBytes - out.size()));
      }
      break;
    }
    out.append(piece);
    i = next;
  }
  return out;
}

struct UpstreamError {
  std::string message;
  std::string anthropic_type;  // a Messages error type the body named
  std::string openai_type;
  std::string openai_code;
};

UpstreamError ReadUpstreamError(std::string_view body) {
  UpstreamError u;
  Parsed parsed;
  dom::object top, err;
  if (!parsed.Object(body, top)) return u;
  std::string_view s;
  auto e = Field(top, "error");
  if (e && e->get_object().get(err) == SUCCESS) {
    if (GetStr(err, "message", s)) u.message = SanitizeMessage(s);
    std::string_view type;
    GetStr(err, "type", type);
    if (StrOr(Field(top, "type")) == "error") {
      u.anthropic_type = type;
    } else {
      u.openai_type = type;
      auto code = Field(err, "code");
      int64_t n = 0;
      if (code && code->get_string().get(s) == SUCCESS) {
        u.openai_code = s;
      } else if (code && code->get_int64().get(n) == SUCCESS) {
        u.openai_code = std::to_string(n);
      }
    }
  } else if (e && e->get_string().get(s) == SUCCESS) {
    u.message = SanitizeMessage(s);
  } else if (GetStr(top, "message", s) || GetStr(top, "detail", s)) {
    u.message = SanitizeMessage(s);
  }
  u.anthropic_type = SanitizeMessage(u.anthropic_type.substr(0, 64));
  u.openai_type = SanitizeMessage(u.openai_type.substr(0, 64));
  u.openai_code = SanitizeMessage(u.openai_code.substr(0, 64));
  return u;
}

constexpr std::string_view kMessagesErrorTypes[] = {
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "request_too_large",     "rate_limit_error",     "api_error",        "overloaded_error"};

bool IsMessagesErrorType(std::string_view t) {
  return std::find(std::begin(kMessagesErrorTypes), std::end(kMessagesErrorTypes), t) !=
         std::end(kMessagesErrorTypes);
}

// A Messages error type from an OpenAI error's type/code; "" when it says nothing known.
std::string_view MessagesTypeFromOpenAi(std::string_view type, std::string_view code) {
  for (std::string_view v : {code, type}) {
    if (v == "invalid_api_key" || v == "authentication_error") return "authentication_error";
    if (v == "permission_error" || v == "permission_denied") return "permission_error";
    if (v == "model_not_found" || v == "not_found_error") return "not_found_error";
    if (v == "rate_limit_exceeded" || v == "insufficient_quota" || v == "rate_limit_error") {
      return "rate_limit_error";
    }
    if (v == "context_length_exceeded" || v == "invalid_request_error") {
      return "invalid_request_error";
    }
    if (v == "server_error" || v == "api_error") return "api_error";
    if (v == "overloaded" || v == "overloaded_error") return "overloaded_error";
  }
  return {};
}

std::string GenericMessage(int status) {
  return "upstream answered HTTP " + std::to_string(status);
}

// --- streams ----------------------------------------------------------------------------

void AppendUint(std::string& out, uint64_t v) { out += std::to_string(v); }

}  // namespace

// ========================================================================================

RequestTranslation MessagesRequestToChat(std::string_view body, const MessagesToChatOptions& o) {
  RequestTranslation r;
  Dropped d(r.dropped);
  Parsed parsed;
  dom::object top;
  if (!parsed.Object(body, top)) {
    r.error = "the body must be one JSON object";
    return r;
  }
  Json out = Json::object();
  Json msgs = Json::array();
  std::optional<dom::element> messages, system, tools, tool_choice, thinking;
  std::string_view model;
  for (dom::key_value_pair kv : top) {
    const std::string_view k = kv.key;
    dom::element v = kv.value;
    if (k == "model") {
      if (v.get_string().get(model) != SUCCESS) r.error = "model: must be a string";
    } else if (k == "messages") {
      messages = v;
    } else if (k == "system") {
      system = v;
    } else if (k == "tools") {
      tools = v;
    } else if (k == "tool_choice") {
      tool_choice = v;
    } else if (k == "thinking") {
      thinking = v;
    } else if (k == "max_tokens") {
      if (!Count(v)) r.error = "max_tokens: must be an integer";
      out[o.max_completion_tokens ? "max_completion_tokens" : "max_tokens"] = Count(v).value_or(0);
    } else if (k == "temperature" || k == "top_p") {
      if (!v.is_null() && !IsNumber(v)) r.error = std::string(k) + ": must be a number";
      if (IsNumber(v)) out[std::string(k)] = ToJson(v);
    } else if (k == "stop_sequences") {
      dom::array a;
      if (v.get_array().get(a) != SUCCESS) {
        r.error = "stop_sequences: must be an array of strings";
        return r;
      }
      Json stop = Json::array();
      for (dom::element s : a) {
        std::string_view sv;
        if (s.get_string().get(sv) != SUCCESS)
          r.error = "stop_sequences: must be an array of strings";
        stop.push_back(std::string(sv));
      }
      if (!stop.empty()) out["stop"] = std::move(stop);
    } else if (k == "stream") {
      bool b = false;
      if (!v.is_null() && v.get_bool().get(b) != SUCCESS) r.error = "stream: must be a boolean";
      r.stream = b;
    } else if (k == "metadata") {
      dom::object mo;
      if (v.get_object().get(mo) != SUCCESS) continue;
      for (dom::key_value_pair m : mo) {
        std::string_view user;
        if (m.key == "user_id" && m.value.get_string().get(user) == SUCCESS) {
          out["user"] = std::string(user);
        } else if (!m.value.is_null()) {
          d.Add("metadata." + std::string(m.key));
        }
      }
    } else {
      d.Add(k);
    }
    if (!r.error.empty()) return r;
  }
  if (!r.error.empty()) return r;
  if (system && !system->is_null()) {
    std::string text;
    if (!TextOf(*system, text, d, "system.image")) {
      r.error = "system: must be a string or an array of text blocks";
      return r;
    }
    if (!text.empty()) msgs.push_back({{"role", "system"}, {"content", std::move(text)}});
  }
  if (!messages) {
    r.error = "messages: required";
    return r;
  }
  if (r.error = MessagesToChatMessages(*messages, msgs, d); !r.error.empty()) return r;
  if (tools && !tools->is_null()) {
    if (r.error = ToolsToChat(*tools, out, d); !r.error.empty()) return r;
  }
  if (tool_choice && !tool_choice->is_null()) {
    if (r.error = ToolChoiceToChat(*tool_choice, out); !r.error.empty()) return r;
  }
  if (thinking && !thinking->is_null()) {
    if (r.error = ThinkingToChat(*thinking, o.reasoning, out, d); !r.error.empty()) return r;
  }
  const std::string_view upstream_model = o.model.empty() ? model : o.model;
  if (!upstream_model.empty()) out["model"] = std::string(upstream_model);
  out["messages"] = std::move(msgs);
  if (r.stream) {
    out["stream"] = true;
    if (o.include_usage) out["stream_options"] = {{"include_usage", true}};
  }
  r.body = Dump(out);
  return r;
}

RequestTranslation ChatRequestToMessages(std::string_view body, const ChatToMessagesOptions& o) {
  RequestTranslation r;
  Dropped d(r.dropped);
  Parsed parsed;
  dom::object top;
  if (!parsed.Object(body, top)) {
    r.error = "the body must be one JSON object";
    return r;
  }
  Json out = Json::object();
  MessagesOut mo;
  std::optional<dom::element> messages, tools, tool_choice;
  std::optional<uint64_t> max_tokens, max_completion_tokens;
  std::string_view model, effort;
  bool no_parallel = false;
  for (dom::key_value_pair kv : top) {
    const std::string_view k = kv.key;
    dom::element v = kv.value;
    if (k == "model") {
      if (v.get_string().get(model) != SUCCESS) r.error = "model: must be a string";
    } else if (k == "messages") {
      messages = v;
    } else if (k == "tools") {
      tools = v;
    } else if (k == "tool_choice") {
      tool_choice = v;
    } else if (k == "max_tokens" || k == "max_completion_tokens") {
      if (v.is_null()) continue;
      if (!Count(v)) r.error = std::string(k) + ": must be an integer";
      (k == "max_tokens" ? max_tokens : max_completion_tokens) = Count(v);
    } else if (k == "temperature" || k == "top_p") {
      if (!v.is_null() && !IsNumber(v)) r.error = std::string(k) + ": must be a number";
      if (IsNumber(v)) out[std::string(k)] = ToJson(v);
    } else if (k == "stop") {
      std::string_view s;
      dom::array a;
      if (v.get_string().get(s) == SUCCESS) {
        out["stop_sequences"] = Json::array({std::string(s)});
      } else if (v.get_array().get(a) == SUCCESS) {
        Json stop = Json::array();
        for (dom::element x : a) {
          if (x.get_string().get(s) != SUCCESS) r.error = "stop: must be a string or strings";
          stop.push_back(std::string(s));
        }
        if (!stop.empty()) out["stop_sequences"] = std::move(stop);
      } else if (!v.is_null()) {
        r.error = "stop: must be a string or strings";
      }
    } else if (k == "user") {
      std::string_view user;
      if (v.get_string().get(user) == SUCCESS) out["metadata"] = {{"user_id", std::string(user)}};
    } else if (k == "stream") {
      bool b = false;
      if (!v.is_null() && v.get_bool().get(b) != SUCCESS) r.error = "stream: must be a boolean";
      r.stream = b;
    } else if (k == "stream_options") {
      // Messages streams always carry usage.
    } else if (k == "parallel_tool_calls") {
      bool b = true;
      no_parallel = v.get_bool().get(b) == SUCCESS && !b;
    } else if (k == "reasoning_effort") {
      if (v.get_string().get(effort) != SUCCESS) d.Add("reasoning_effort");
    } else if (k == "n") {
      if (Count(v).value_or(1) != 1) d.Add("n");
    } else {
      d.Add(k);
    }
    if (!r.error.empty()) return r;
  }
  if (!messages) {
    r.error = "messages: required";
    return r;
  }
  if (r.error = ChatToMessagesMessages(*messages, mo, d); !r.error.empty()) return r;
  if (tools && !tools->is_null()) {
    if (r.error = ChatToolsToMessages(*tools, out, d); !r.error.empty()) return r;
  }
  if (tool_choice && !tool_choice->is_null()) {
    Json choice;
    if (r.error = ChatToolChoiceToMessages(*tool_choice, choice); !r.error.empty()) return r;
    out["tool_choice"] = std::move(choice);
  }
  if (no_parallel && out.contains("tools")) {
    if (!out.contains("tool_choice")) out["tool_choice"] = {{"type", "auto"}};
    if (out["tool_choice"]["type"] != "none") {
      out["tool_choice"]["disable_parallel_tool_use"] = true;
    }
  }
  uint64_t max = max_completion_tokens.value_or(max_tokens.value_or(o.default_max_tokens));
  if (!effort.empty()) {
    uint64_t budget = std::min(BudgetForEffort(effort), max > 0 ? max - 1 : 0);
    if (budget >= 1024) {
      out["thinking"] = {{"type", "enabled"}, {"budget_tokens", budget}};
      if (out.contains("temperature")) {
        out.erase("temperature");  // Messages allows no temperature with thinking
        d.Add("temperature");
      }
    } else if (effort != "none") {
      d.Add("reasoning_effort");
    }
  }
  const std::string_view upstream_model = o.model.empty() ? model : o.model;
  if (!upstream_model.empty()) out["model"] = std::string(upstream_model);
  out["max_tokens"] = max;
  if (!mo.system.empty()) out["system"] = std::move(mo.system);
  out["messages"] = std::move(mo.messages);
  if (r.stream) out["stream"] = true;
  r.body = Dump(out);
  return r;
}

std::optional<std::string> ChatResponseToMessages(std::string_view chat_body,
                                                  std::string_view model) {
  Parsed parsed;
  dom::object top, choice, msg;
  dom::array choices;
  std::optional<dom::element> c;
  if (!parsed.Object(chat_body, top) || !(c = Field(top, "choices")) ||
      c->get_array().get(choices) != SUCCESS || choices.size() == 0 ||
      choices.at(0).get_object().get(choice) != SUCCESS) {
    return std::nullopt;
  }
  auto m = Field(choice, "message");
  if (!m || m->get_object().get(msg) != SUCCESS) return std::nullopt;
  Json content = Json::array();
  std::string_view s;
  if (GetStr(msg, "reasoning_content", s) || GetStr(msg, "reasoning", s)) {
    if (!s.empty())
      content.push_back({{"type", "thinking"}, {"thinking", std::string(s)}, {"signature", ""}});
  }
  if ((GetStr(msg, "content", s) && !s.empty()) || (GetStr(msg, "refusal", s) && !s.empty())) {
    content.push_back({{"type", "text"}, {"text", std::string(s)}});
  }
  dom::array calls;
  bool has_tools = false;
  if (auto tc = Field(msg, "tool_calls"); tc && tc->get_array().get(calls) == SUCCESS) {
    size_t k = 0;
    for (dom::element call : calls) {
      dom::object co, fo;
      std::string_view id, name, args;
      if (call.get_object().get(co) != SUCCESS) continue;
      auto fn = Field(co, "function");
      if (!fn || fn->get_object().get(fo) != SUCCESS) continue;
      GetStr(fo, "name", name);
      GetStr(fo, "arguments", args);
      std::string tool_id =
          GetStr(co, "id", id) && !id.empty() ? std::string(id) : "toolu_" + std::to_string(k);
      content.push_back({{"type", "tool_use"},
                         {"id", std::move(tool_id)},
                         {"name", std::string(name)},
                         {"input", InputFromArguments(args)}});
      has_tools = true;
      ++k;
    }
  }
  std::string_view finish = StrOr(Field(choice, "finish_reason"));
  std::string_view stop = StopReasonFromFinish(finish);
  // Some backends say "stop" after tool calls; a Messages client runs tools on tool_use.
  if (has_tools && (finish.empty() || finish == "stop")) stop = "tool_use";
  Json usage = {{"input_tokens", 0}, {"output_tokens", 0}};
  dom::object uo, details;
  if (auto u = Field(top, "usage"); u && u->get_object().get(uo) == SUCCESS) {
    const uint64_t prompt = CountOr0(uo, "prompt_tokens");
    uint64_t cached = 0;
    if (auto pd = Field(uo, "prompt_tokens_details");
        pd && pd->get_object().get(details) == SUCCESS) {
      cached = std::min(prompt, CountOr0(details, "cached_tokens"));
    }
    usage = {{"input_tokens", prompt - cached},
             {"output_tokens", CountOr0(uo, "completion_tokens")},
             {"cache_read_input_tokens", cached}};
  }
  Json out = {{"id", DerivedId("msg_", StrOr(Field(top, "id")), "chatcmpl-")},
              {"type", "message"},
              {"role", "assistant"},
              {"model", std::string(StrOr(Field(top, "model"), model))},
              {"content", std::move(content)},
              {"stop_reason", stop},
              {"stop_sequence", nullptr},
              {"usage", std::move(usage)}};
  return Dump(out);
}

std::optional<std::string> MessagesResponseToChat(std::string_view messages_body,
                                                  std::string_view model, int64_t created) {
  Parsed parsed;
  dom::object top;
  dom::array content;
  std::optional<dom::element> c;
  if (!parsed.Object(messages_body, top) || !(c = Field(top, "content")) ||
      c->get_array().get(content) != SUCCESS) {
    return std::nullopt;
  }
  std::string_view type;
  if (GetStr(top, "type", type) && type != "message") return std::nullopt;
  std::string text, thinking;
  Json calls = Json::array();
  for (dom::element b : content) {
    dom::object bo;
    std::string_view bt, s, id, name;
    if (b.get_object().get(bo) != SUCCESS || !GetStr(bo, "type", bt)) continue;
    if (bt == "text" && GetStr(bo, "text", s)) {
      text.append(s);
    } else if (bt == "thinking" && GetStr(bo, "thinking", s)) {
      thinking.append(s);
    } else if (bt == "tool_use") {
      GetStr(bo, "id", id);
      GetStr(bo, "name", name);
      auto input = Field(bo, "input");
      calls.push_back({{"id", std::string(id)},
                       {"type", "function"},
                       {"function",
                        {{"name", std::string(name)},
                         {"arguments", IsNull(input) ? "{}" : simdjson::to_string(*input)}}}});
    }
  }
  Json msg = {{"role", "assistant"}};
  msg["content"] = text.empty() && !calls.empty() ? Json(nullptr) : Json(std::move(text));
  if (!thinking.empty()) msg["reasoning_content"] = std::move(thinking);
  if (!calls.empty()) msg["tool_calls"] = std::move(calls);
  std::string_view stop = StrOr(Field(top, "stop_reason"));
  Json usage = {{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}};
  dom::object uo;
  if (auto u = Field(top, "usage"); u && u->get_object().get(uo) == SUCCESS) {
    const uint64_t cache_read = CountOr0(uo, "cache_read_input_tokens");
    const uint64_t prompt =
        CountOr0(uo, "input_tokens") + cache_read + CountOr0(uo, "cache_creation_input_tokens");
    const uint64_t completion = CountOr0(uo, "output_tokens");
    usage = {{"prompt_tokens", prompt},
             {"completion_tokens", completion},
             {"total_tokens", prompt + completion},
             {"prompt_tokens_details", {{"cached_tokens", cache_read}}}};
  }
  Json out = {{"id", DerivedId("chatcmpl-", StrOr(Field(top, "id")), "msg_")},
              {"object", "chat.completion"},
              {"created", created},
              {"model", std::string(StrOr(Field(top, "model"), model))},
              {"choices", Json::array({{{"index", 0},
                                        {"message", std::move(msg)},
                                        {"finish_reason", FinishFromStopReason(stop)}}})},
              {"usage", std::move(usage)}};
  return Dump(out);
}

std::string_view MessagesErrorTypeForStatus(int status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

std::string ErrorBodyToMessages(int status, std::string_view upstream_body) {
  const UpstreamError u = ReadUpstreamError(upstream_body);
  std::string_view type = MessagesErrorTypeForStatus(status);
  if (IsMessagesErrorType(u.anthropic_type)) {
    type = u.anthropic_type;
  } else if (std::string_view t = MessagesTypeFromOpenAi(u.openai_type, u.openai_code);
             !t.empty()) {
    type = t;
  }
  const Json out = {
      {"type", "error"},
      {"error",
       {{"type", type}, {"message", u.message.empty() ? GenericMessage(status) : u.message}}}};
  return Dump(out);
}

std::string ErrorBodyToChat(int status, std::string_view upstream_body) {
  const UpstreamError u = ReadUpstreamError(upstream_body);
  std::string type, code;
  if (!u.openai_type.empty() || !u.openai_code.empty()) {
    type = u.openai_type;
    code = u.openai_code;
  } else {
    const std::string_view mt = IsMessagesErrorType(u.anthropic_type)
                                    ? std::string_view(u.anthropic_type)
                                    : MessagesErrorTypeForStatus(status);
    if (mt == "api_error") {
      type = "server_error";
    } else if (mt == "overloaded_error") {
      type = "server_error";
      code = "overloaded";
    } else if (mt == "request_too_large") {
      type = "invalid_request_error";
      code = "request_too_large";
    } else if (mt == "rate_limit_error") {
      type = "rate_limit_error";
      code = "rate_limit_exceeded";
    } else {
      type = mt;
    }
  }
  if (type.empty()) type = status >= 500 ? "server_error" : "invalid_request_error";
  const Json out = {{"error",
                     {{"message", u.message.empty() ? GenericMessage(status) : u.message},
                      {"type", type},
                      {"code", code.empty() ? Json(nullptr) : Json(code)}}}};
  return Dump(out);
}

std::string MessagesErrorEvent(std::string_view type, std::string_view message) {
  std::string data = R"({"type":"error","error":{"type":)";
  AppendJsonString(data, SanitizeMessage(type.substr(0, 64)));
  data += R"(,"message":)";
  AppendJsonString(data, SanitizeMessage(message));
  data += "}}";
  std::string out;
  AppendSseEvent(out, "error", data);
  return out;
}

// --- ChatStreamToMessages ---------------------------------------------------------------

ChatStreamToMessages::ChatStreamToMessages(std::string_view model) : model_(model) {}

void ChatStreamToMessages::Start(std::string& out) {
  if (started_) return;
  started_ = true;
  std::string data = R"({"type":"message_start","message":{"id":)";
  AppendJsonString(data, id_.empty() ? std::string("msg_proxy") : id_);
  data += R"(,"type":"message","role":"assistant","model":)";
  AppendJsonString(data, model_);
  data += R"(,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":)";
  AppendUint(data, usage_.prompt_tokens - std::min(cached_, usage_.prompt_tokens));
  data += R"(,"output_tokens":0}}})";
  AppendSseEvent(out, "message_start", data);
}

void ChatStreamToMessages::Close(std::string& out) {
  if (open_ == Block::kNone) return;
  std::string data = R"({"type":"content_block_stop","index":)";
  AppendUint(data, index_);
  data += '}';
  AppendSseEvent(out, "content_block_stop", data);
  open_ = Block::kNone;
  tool_index_ = -1;
  ++index_;
}

void ChatStreamToMessages::Open(Block kind, std::string& out) {
  Close(out);
  open_ = kind;
  if (kind == Block::kTool) return;  // the caller writes the tool_use start
  std::string data = R"({"type":"content_block_start","index":)";
  AppendUint(data, index_);
  data += kind == Block::kThinking
              ? R"(,"content_block":{"type":"thinking","thinking":"","signature":""}})"
              : R"(,"content_block":{"type":"text","text":""}})";
  AppendSseEvent(out, "content_block_start", data);
}

void ChatStreamToMessages::AppendDelta(std::string_view type, std::string_view key,
                                       std::string_view value, std::string& out) {
  std::string data = R"({"type":"content_block_delta","index":)";
  AppendUint(data, index_);
  data += R"(,"delta":{"type":")";
  data += type;
  data += R"(",")";
  data += key;
  data += R"(":)";
  AppendJsonString(data, value);
  data += "}}";
  AppendSseEvent(out, "content_block_delta", data);
}

void ChatStreamToMessages::End(std::string& out) {
  Start(out);
  Close(out);
  std::string data = R"({"type":"message_delta","delta":{"stop_reason":)";
  AppendJsonString(data, stop_reason_);
  data += R"(,"stop_sequence":null},"usage":{"input_tokens":)";
  AppendUint(data, usage_.prompt_tokens - std::min(cached_, usage_.prompt_tokens));
  data += R"(,"cache_read_input_tokens":)";
  AppendUint(data, std::min(cached_, usage_.prompt_tokens));
  data += R"(,"output_tokens":)";
  AppendUint(data, usage_.completion_tokens);
  data += "}}";
  AppendSseEvent(out, "message_delta", data);
  AppendSseEvent(out, "message_stop", R"({"type":"message_stop"})");
  stopped_ = true;
}

void ChatStreamToMessages::OnChunk(std::string_view data, std::string& out) {
  if (stopped_ || failed_) return;
  if (data == "[DONE]") {
    End(out);
    return;
  }
  Parsed parsed;
  dom::object chunk;
  if (!parsed.Object(data, chunk)) {
    ++skipped_;
    return;
  }
  dom::object err;
  if (auto e = Field(chunk, "error"); e && !e->is_null()) {
    std::string_view message;
    if (e->get_object().get(err) == SUCCESS) GetStr(err, "message", message);
    Fail("api_error", message.empty() ? "the upstream stream failed" : message, out);
    return;
  }
  if (!started_) {
    id_ = DerivedId("msg_", StrOr(Field(chunk, "id")), "chatcmpl-");
    if (std::string_view m = StrOr(Field(chunk, "model")); !m.empty() && model_.empty()) {
      model_ = m;
    }
  }
  dom::object uo, details;
  bool usage_now = false;
  if (auto u = Field(chunk, "usage"); u && u->get_object().get(uo) == SUCCESS) {
    usage_.prompt_tokens = CountOr0(uo, "prompt_tokens");
    usage_.completion_tokens = CountOr0(uo, "completion_tokens");
    if (auto pd = Field(uo, "prompt_tokens_details");
        pd && pd->get_object().get(details) == SUCCESS) {
      cached_ = CountOr0(details, "cached_tokens");
    }
    usage_.cached_prompt_tokens = std::min(cached_, usage_.prompt_tokens);
    usage_seen_ = usage_now = true;
  }
  Start(out);
  dom::array choices;
  dom::object choice, delta;
  if (auto c = Field(chunk, "choices"); c && c->get_array().get(choices) == SUCCESS) {
    for (dom::element ch : choices) {
      if (ch.get_object().get(choice) != SUCCESS) continue;
      if (Count(Field(choice, "index")).value_or(0) != 0) continue;  // n > 1: choice 0 only
      if (finish_seen_) break;  // nothing after the finish but usage
      auto dl = Field(choice, "delta");
      if (dl && dl->get_object().get(delta) == SUCCESS) {
        std::string_view s;
        if ((GetStr(delta, "reasoning_content", s) || GetStr(delta, "reasoning", s)) &&
            !s.empty()) {
          if (open_ != Block::kThinking) Open(Block::kThinking, out);
          AppendDelta("thinking_delta", "thinking", s, out);
        }
        if (GetStr(delta, "content", s) && !s.empty()) {
          if (open_ != Block::kText) Open(Block::kText, out);
          AppendDelta("text_delta", "text", s, out);
        }
        dom::array calls;
        if (auto tc = Field(delta, "tool_calls"); tc && tc->get_array().get(calls) == SUCCESS) {
          for (dom::element call : calls) {
            dom::object co, fo;
            if (call.get_object().get(co) != SUCCESS) continue;
            const int64_t idx = static_cast<int64_t>(Count(Field(co, "index")).value_or(0));
            std::string_view id, name, args;
            GetStr(co, "id", id);
            if (auto fn = Field(co, "function"); fn && fn->get_object().get(fo) == SUCCESS) {
              GetStr(fo, "name", name);
              GetStr(fo, "arguments", args);
            }
            const bool same =
                open_ == Block::kTool && idx == tool_index_ && (id.empty() || id == tool_id_);
            if (!same) {
              if (id.empty() && name.empty()) {
                ++skipped_;  // arguments of a call whose block is closed: lost
                continue;
              }
              Open(Block::kTool, out);
              tool_index_ = idx;
              tool_id_ =
                  id.empty() ? id_ + "_tool" + std::to_string(tools_started_) : std::string(id);
              ++tools_started_;
              std::string start = R"({"type":"content_block_start","index":)";
              AppendUint(start, index_);
              start += R"(,"content_block":{"type":"tool_use","id":)";
              AppendJsonString(start, tool_id_);
              start += R"(,"name":)";
              AppendJsonString(start, name);
              start += R"(,"input":{}}})";
              AppendSseEvent(out, "content_block_start", start);
            }
            if (!args.empty()) AppendDelta("input_json_delta", "partial_json", args, out);
          }
        }
      }
      std::string_view finish;
      if (GetStr(choice, "finish_reason", finish) && !finish.empty()) {
        finish_seen_ = true;
        stop_reason_ = StopReasonFromFinish(finish);
        if (tools_started_ > 0 && finish == "stop") stop_reason_ = "tool_use";
        Close(out);
      }
      break;
    }
  }
  // The usage chunk usually follows the finish_reason chunk: end once both are known.
  if (finish_seen_ && usage_now) End(out);
}

void ChatStreamToMessages::Finish(std::string& out) {
  if (stopped_ || failed_) return;
  End(out);
}

void ChatStreamToMessages::Fail(std::string_view type, std::string_view message, std::string& out) {
  if (stopped_ || failed_) return;
  failed_ = true;
  out += MessagesErrorEvent(type, message);
}

// --- MessagesStreamToChat ---------------------------------------------------------------

MessagesStreamToChat::MessagesStreamToChat(std::string_view model, bool include_usage,
                                           int64_t created)
    : model_(model), include_usage_(include_usage), created_(created) {}

void MessagesStreamToChat::StartChunk(std::string& out) {
  out += prefix_;
  out += R"("choices":[{"index":0,"delta":{)";
  if (!role_sent_) {
    out += R"("role":"assistant",)";
    role_sent_ = true;
  }
}

void MessagesStreamToChat::EndChunk(std::string& out) {
  if (out.back() == ',') out.pop_back();
  out += R"(},"finish_reason":null}]})";
  out += "\n\n";
}

void MessagesStreamToChat::UpdateUsage() {
  usage_.prompt_tokens = input_ + cache_read_ + cache_creation_;
  usage_.completion_tokens = output_;
  usage_.cached_prompt_tokens = cache_read_;  // written to the cache (creation): not cached
}

void MessagesStreamToChat::OnEvent(std::string_view event, std::string_view data,
                                   std::string& out) {
  if (done_ || error_) return;
  Parsed parsed;
  dom::object ev;
  if (!parsed.Object(data, ev)) {
    if (event != "ping") ++skipped_;
    return;
  }
  std::string_view type = StrOr(Field(ev, "type"), event);
  auto read_usage = [this](std::optional<dom::element> u) {
    dom::object uo;
    if (!u || u->get_object().get(uo) != SUCCESS) return;
    if (auto v = Count(Field(uo, "input_tokens"))) input_ = *v;
    if (auto v = Count(Field(uo, "cache_read_input_tokens"))) cache_read_ = *v;
    if (auto v = Count(Field(uo, "cache_creation_input_tokens"))) cache_creation_ = *v;
    if (auto v = Count(Field(uo, "output_tokens"))) output_ = *v;
    UpdateUsage();
  };
  if (type == "error") {
    dom::object eo;
    std::string_view etype, message;
    if (auto e = Field(ev, "error"); e && e->get_object().get(eo) == SUCCESS) {
      GetStr(eo, "type", etype);
      GetStr(eo, "message", message);
    }
    error_ = true;
    out += "data: ";
    const std::string body = ErrorBodyToChat(
        etype == "overloaded_error" ? 529 : 500,
        Dump({{"type", "error"},
              {"error", {{"type", std::string(etype)}, {"message", std::string(message)}}}}));
    out += body;
    out += "\n\n";
    return;
  }
  if (type == "message_start") {
    dom::object mo;
    std::string id;
    if (auto m = Field(ev, "message"); m && m->get_object().get(mo) == SUCCESS) {
      id = DerivedId("chatcmpl-", StrOr(Field(mo, "id")), "msg_");
      if (model_.empty()) model_ = StrOr(Field(mo, "model"));
      read_usage(Field(mo, "usage"));
    }
    if (started_) return;
    started_ = true;
    prefix_ = "data: {\"id\":";
    AppendJsonString(prefix_, id.empty() ? std::string("chatcmpl-proxy") : id);
    prefix_ += R"(,"object":"chat.completion.chunk","created":)";
    prefix_ += std::to_string(created_);
    prefix_ += R"(,"model":)";
    AppendJsonString(prefix_, model_);
    prefix_ += ',';
    StartChunk(out);
    out += R"("content":"")";
    EndChunk(out);
    return;
  }
  if (!started_) {
    // Content before message_start: make the prefix from what we know.
    if (type != "content_block_start" && type != "content_block_delta" && type != "message_delta" &&
        type != "message_stop") {
      return;
    }
    started_ = true;
    prefix_ = R"(data: {"id":"chatcmpl-proxy","object":"chat.completion.chunk","created":)";
    prefix_ += std::to_string(created_);
    prefix_ += R"(,"model":)";
    AppendJsonString(prefix_, model_);
    prefix_ += ',';
  }
  const uint64_t index = Count(Field(ev, "index")).value_or(0);
  if (type == "content_block_start") {
    dom::object bo;
    std::string_view bt, id, name, text;
    auto b = Field(ev, "content_block");
    if (!b || b->get_object().get(bo) != SUCCESS || !GetStr(bo, "type", bt)) return;
    if (bt == "tool_use") {
      if (index >= 4096) {
        ++skipped_;
        return;
      }
      if (tool_of_block_.size() <= index) tool_of_block_.resize(index + 1, -1);
      tool_of_block_[index] = tools_;
      GetStr(bo, "id", id);
      GetStr(bo, "name", name);
      StartChunk(out);
      out += R"("tool_calls":[{"index":)";
      out += std::to_string(tools_++);
      out += R"(,"id":)";
      AppendJsonString(out, id);
      out += R"(,"type":"function","function":{"name":)";
      AppendJsonString(out, name);
      out += R"(,"arguments":""}}])";
      EndChunk(out);
    } else if (bt == "text" && GetStr(bo, "text", text) && !text.empty()) {
      StartChunk(out);
      out += R"("content":)";
      AppendJsonString(out, text);
      EndChunk(out);
    }
    return;
  }
  if (type == "content_block_delta") {
    dom::object dlo;
    std::string_view dt, s;
    auto dl = Field(ev, "delta");
    if (!dl || dl->get_object().get(dlo) != SUCCESS || !GetStr(dlo, "type", dt)) return;
    if (dt == "text_delta" && GetStr(dlo, "text", s)) {
      StartChunk(out);
      out += R"("content":)";
      AppendJsonString(out, s);
      EndChunk(out);
    } else if (dt == "thinking_delta" && GetStr(dlo, "thinking", s)) {
      StartChunk(out);
      out += R"("reasoning_content":)";
      AppendJsonString(out, s);
      EndChunk(out);
    } else if (dt == "input_json_delta" && GetStr(dlo, "partial_json", s)) {
      if (index >= tool_of_block_.size() || tool_of_block_[index] < 0) {
        ++skipped_;
        return;
      }
      StartChunk(out);
      out += R"("tool_calls":[{"index":)";
      out += std::to_string(tool_of_block_[index]);
      out += R"(,"function":{"arguments":)";
      AppendJsonString(out, s);
      out += "}}]";
      EndChunk(out);
    }
    return;
  }
  if (type == "message_delta") {
    read_usage(Field(ev, "usage"));
    dom::object dlo;
    std::string_view stop;
    if (auto dl = Field(ev, "delta"); dl && dl->get_object().get(dlo) == SUCCESS &&
                                      GetStr(dlo, "stop_reason", stop) && !finish_sent_) {
      finish_sent_ = true;
      StartChunk(out);
      if (out.back() == ',') out.pop_back();
      out += R"(},"finish_reason":)";
      AppendJsonString(out, FinishFromStopReason(stop));
      out += "}]}\n\n";
    }
    return;
  }
  if (type == "message_stop") {
    if (!finish_sent_) {
      finish_sent_ = true;
      StartChunk(out);
      if (out.back() == ',') out.pop_back();
      out += R"(},"finish_reason":"stop"}]})";
      out += "\n\n";
    }
    if (include_usage_) {
      out += prefix_;
      out += R"("choices":[],"usage":{"prompt_tokens":)";
      AppendUint(out, usage_.prompt_tokens);
      out += R"(,"completion_tokens":)";
      AppendUint(out, usage_.completion_tokens);
      out += R"(,"total_tokens":)";
      AppendUint(out, usage_.prompt_tokens + usage_.completion_tokens);
      out += R"(,"prompt_tokens_details":{"cached_tokens":)";
      AppendUint(out, cache_read_);
      out += "}}}\n\n";
    }
    out += "data: [DONE]\n\n";
    done_ = true;
  }
  // ping, content_block_stop and unknown types: nothing to say.
}

void MessagesStreamToChat::Finish(std::string&) {}

// --- count_tokens estimate --------------------------------------------------------------

std::optional<uint64_t> EstimateMessagesInputTokens(std::string_view body) {
  Parsed parsed;
  dom::object top;
  dom::array messages;
  std::optional<dom::element> m;
  if (!parsed.Object(body, top) || !(m = Field(top, "messages")) ||
      m->get_array().get(messages) != SUCCESS) {
    return std::nullopt;
  }
  uint64_t bytes = 0, images = 0, count = 0;
  std::string_view s;
  // Text of a string or a block list (tool_result content nests one level).
  auto blocks = [&](dom::element e, auto& self, int depth) -> void {
    dom::array list;
    if (e.get_string().get(s) == SUCCESS) {
      bytes += s.size();
      return;
    }
    if (e.get_array().get(list) != SUCCESS) return;
    for (dom::element b : list) {
      dom::object bo;
      std::string_view type;
      if (b.get_object().get(bo) != SUCCESS || !GetStr(bo, "type", type)) continue;
      if (type == "image" || type == "document") {
        ++images;
      } else if (type == "tool_use") {
        if (GetStr(bo, "name", s)) bytes += s.size();
        if (auto in = Field(bo, "input")) bytes += simdjson::to_string(*in).size();
      } else if (type == "tool_result") {
        if (auto c = Field(bo, "content"); c && depth == 0) self(*c, self, 1);
      } else {
        if (GetStr(bo, "text", s) || GetStr(bo, "thinking", s)) bytes += s.size();
      }
    }
  };
  if (auto sys = Field(top, "system")) blocks(*sys, blocks, 0);
  for (dom::element msg : messages) {
    dom::object mo;
    ++count;
    if (msg.get_object().get(mo) != SUCCESS) continue;
    if (auto c = Field(mo, "content")) blocks(*c, blocks, 0);
  }
  dom::array tools;
  if (auto t = Field(top, "tools"); t && t->get_array().get(tools) == SUCCESS) {
    for (dom::element tool : tools) {
      dom::object to;
      if (tool.get_object().get(to) != SUCCESS) continue;
      if (GetStr(to, "name", s)) bytes += s.size();
      if (GetStr(to, "description", s)) bytes += s.size();
      if (auto schema = Field(to, "input_schema")) bytes += simdjson::to_string(*schema).size();
    }
  }
  return (bytes + 3) / 4 + 4 * count + 85 * images;
}

}  // namespace llmproxy
