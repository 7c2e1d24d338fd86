#include "dataplane/protocols/responses_translate.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/log/json_escape.h"
#include "dataplane/protocols/error_response.h"
#include "dataplane/protocols/sse_parser.h"

namespace llmproxy {
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kMaxDropped = 16;
// Stream chunks up to this size reuse the translator's parser; larger ones get a parser of
// their own, freed after use (same idea as json_reader.cc).
constexpr size_t kKeepParserBytes = 512 * 1024;

// ---------------------------------------------------------------------------------------
// JSON helpers

// Nesting depth of `s` stays within kMaxJsonDepth (strings skipped), so nlohmann's
// recursive serializer cannot be driven into a stack overflow by what it parsed.
bool DepthOk(std::string_view s) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

// nullopt: not JSON (nlohmann also rejects invalid UTF-8 and lone surrogates) or too deep.
std::optional<Json> ParseJson(std::string_view s) {
  if (!DepthOk(s)) return std::nullopt;
  Json j = Json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// The member `key` of an object, nullptr when absent or null.
const Json* Get(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string_view StringOr(const Json* j, std::string_view fallback = {}) {
  return j != nullptr && j->is_string() ? std::string_view(j->get_ref<const std::string&>())
                                        : fallback;
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// The stem of every id of one answer: the chat id's [A-Za-z0-9_-] characters (at most 48),
// or a hash of the answer's bytes when that leaves nothing.
std::string IdBase(std::string_view chat_id, std::string_view fallback) {
  std::string base;
  for (const char c : chat_id) {
    if (base.size() >= 48) break;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
        c == '-') {
      base.push_back(c);
    }
  }
  if (!base.empty()) return base;
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t h = Fnv1a(fallback);
  base.resize(16);
  for (int i = 15; i >= 0; --i, h >>= 4) base[static_cast<size_t>(i)] = kHex[h & 15];
  return base;
}

std::string ItemId(std::string_view prefix, std::string_view base, size_t output_index) {
  std::string id(prefix);
  id += '_';
  id += base;
  id += '_';
  id += std::to_string(output_index);
  return id;
}

// ---------------------------------------------------------------------------------------
// Output items and response objects, shared by whole answers and streams

enum class ItemKind { kReasoning, kMessage, kFunction };

void AppendReasoningItem(std::string& out, std::string_view id, std::string_view status,
                         const std::string* text) {
  out += "{\"id\":";
  AppendJsonString(out, id);
  out += ",\"type\":\"reasoning\",\"status\":";
  AppendJsonString(out, status);
  out += ",\"summary\":[],\"content\":[";
  if (text != nullptr) {
    out += "{\"type\":\"reasoning_text\",\"text\":";
    AppendJsonString(out, *text);
    out += '}';
  }
  out += "]}";
}

void AppendTextPart(std::string& out, std::string_view text) {
  out += "{\"type\":\"output_text\",\"annotations\":[],\"text\":";
  AppendJsonString(out, text);
  out += '}';
}

void AppendMessageItem(std::string& out, std::string_view id, std::string_view status,
                       const std::string* text) {
  out += "{\"id\":";
  AppendJsonString(out, id);
  out += ",\"type\":\"message\",\"status\":";
  AppendJsonString(out, status);
  out += ",\"role\":\"assistant\",\"content\":[";
  if (text != nullptr) AppendTextPart(out, *text);
  out += "]}";
}

// A chat function name as the client named the tool: {namespace ("" for none), name}.
std::pair<std::string_view, std::string_view> ClientToolName(const ResponsesEcho& echo,
                                                             std::string_view chat_name) {
  if (auto it = echo.namespaced.find(chat_name); it != echo.namespaced.end()) {
    return {it->second.first, it->second.second};
  }
  return {{}, chat_name};
}

// `"name":...` of a function call, with `"namespace":...` first for a namespaced tool.
void AppendToolName(std::string& out, const ResponsesEcho& echo, std::string_view chat_name) {
  const auto [ns, name] = ClientToolName(echo, chat_name);
  if (!ns.empty()) {
    out += "\"namespace\":";
    AppendJsonString(out, ns);
    out += ',';
  }
  out += "\"name\":";
  AppendJsonString(out, name);
}

void AppendFunctionItem(std::string& out, const ResponsesEcho& echo, std::string_view id,
                        std::string_view status, std::string_view call_id, std::string_view name,
                        std::string_view arguments) {
  out += "{\"id\":";
  AppendJsonString(out, id);
  out += ",\"type\":\"function_call\",\"status\":";
  AppendJsonString(out, status);
  out += ",\"arguments\":";
  AppendJsonString(out, arguments);
  out += ",\"call_id\":";
  AppendJsonString(out, call_id);
  out += ',';
  AppendToolName(out, echo, name);
  out += '}';
}

// Token counts of a chat `usage` object, in the Responses usage shape.
struct UsageCounts {
  uint64_t input = 0, output = 0, cached = 0, reasoning = 0, total = 0;
  bool has_total = false;
};

void AppendUsage(std::string& out, const UsageCounts& u) {
  out += "{\"input_tokens\":" + std::to_string(u.input) +
         ",\"input_tokens_details\":{\"cached_tokens\":" + std::to_string(u.cached) +
         "},\"output_tokens\":" + std::to_string(u.output) +
         ",\"output_tokens_details\":{\"reasoning_tokens\":" + std::to_string(u.reasoning) +
         "},\"total_tokens\":" + std::to_string(u.has_total ? u.total : u.input + u.output) + "}";
}

struct ResponseParts {
  std::string_view id;
  int64_t created_at = 0;
  std::string_view status;
  std::string_view error = "null";     // JSON
  std::string_view incomplete_reason;  // "" -> null
  std::string_view echo;
  std::string_view model;
  std::string_view output;  // JSON array
  std::string_view usage = "null";
};

void AppendResponse(std::string& out, const ResponseParts& p) {
  out += "{\"id\":";
  AppendJsonString(out, p.id);
  out += ",\"object\":\"response\",\"created_at\":" + std::to_string(p.created_at) + ",\"status\":";
  AppendJsonString(out, p.status);
  out += ",\"error\":";
  out += p.error;
  out += ",\"incomplete_details\":";
  if (p.incomplete_reason.empty()) {
    out += "null";
  } else {
    out += "{\"reason\":";
    AppendJsonString(out, p.incomplete_reason);
    out += '}';
  }
  out += ',';
  out += p.echo;
  out += ",\"model\":";
  AppendJsonString(out, p.model);
  out += ",\"output\":";
  out += p.output;
  out += ",\"usage\":";
  out += p.usage;
  out += '}';
}

// finish_reason -> the incomplete_details reason ("" when the answer is complete).
std::string_view IncompleteReason(std::string_view finish_reason) {
  if (finish_reason == "length") return "max_output_tokens";
  if (finish_reason == "content_filter") return "content_filter";
  return {};
}

// ---------------------------------------------------------------------------------------
// Request: Responses -> chat

const char* const kStateless =
    ": this gateway is stateless for this backend; send the full conversation in input";

class RequestTranslator {
 public:
  explicit RequestTranslator(const ResponsesToChatOptions& o) : o_(o) {}

  RequestTranslation Run(std::string_view body) {
    std::optional<Json> parsed = ParseJson(body);
    if (!parsed) return Error("request body is not valid JSON");
    if (!parsed->is_object()) return Error("request body must be a JSON object");
    if (!Translate(*parsed)) r_.body.clear();
    return std::move(r_);
  }

 private:
  RequestTranslation Error(std::string message) {
    r_.error = std::move(message);
    return std::move(r_);
  }
  bool Fail(std::string message) {
    if (r_.error.empty()) r_.error = std::move(message);
    return false;
  }
  void Drop(std::string_view name) {
    if (r_.dropped.size() >= kMaxDropped) return;
    std::string n = SanitizeUtf8(name, 64);
    if (std::find(r_.dropped.begin(), r_.dropped.end(), n) == r_.dropped.end()) {
      r_.dropped.push_back(std::move(n));
    }
  }
  static std::string Where(size_t i) { return "input[" + std::to_string(i) + "]"; }
  static std::string Name(std::string_view s) { return SanitizeUtf8(s, 64); }

  bool Translate(const Json& req);
  bool Stateful(const Json& req);
  bool Input(const Json& input, Json& messages);
  bool Message(const Json& item, size_t i, Json& messages);
  bool Content(const Json& content, std::string_view role, const std::string& where, Json& out);
  bool FunctionCall(const Json& item, size_t i, Json& messages);
  bool FunctionOutput(const Json& item, size_t i, Json& messages);
  bool Tools(const Json& tools, Json& out);
  // One function tool (`ns` non-empty: inside that namespace tool) appended to out as a
  // chat function; `names` holds the chat names so far, which must stay distinct.
  bool FunctionTool(const Json& tool, const std::string& at, std::string_view ns,
                    std::string_view ns_description, std::vector<std::string>& names, Json& out);
  bool ToolChoice(const Json& choice, Json& out);
  bool TextFormat(const Json& text, Json& chat);

  const ResponsesToChatOptions& o_;
  RequestTranslation r_;
  std::optional<size_t> open_assistant_;  // messages index a function_call may join
};

bool RequestTranslator::Stateful(const Json& req) {
  if (Get(req, "previous_response_id") != nullptr) {
    return Fail(std::string("previous_response_id is not supported") + kStateless);
  }
  if (Get(req, "conversation") != nullptr) {
    return Fail(std::string("conversation is not supported") + kStateless);
  }
  if (Get(req, "prompt") != nullptr) {
    return Fail(std::string("prompt templates are not supported") + kStateless);
  }
  if (const Json* b = Get(req, "background");
      b != nullptr && !(b->is_boolean() && !b->get<bool>())) {
    return Fail("background is not supported by this backend");
  }
  return true;
}

bool RequestTranslator::Translate(const Json& req) {
  if (!Stateful(req)) return false;
  Json chat = Json::object();
  const std::string_view client_model = StringOr(Get(req, "model"));
  chat["model"] = std::string(o_.model.empty() ? client_model : o_.model);

  Json messages = Json::array();
  if (const Json* ins = Get(req, "instructions")) {
    if (!ins->is_string()) return Fail("instructions must be a string");
    if (!ins->get_ref<const std::string&>().empty()) {
      messages.push_back(Json{{"role", "system"}, {"content", *ins}});
    }
  }
  const Json* input = Get(req, "input");
  if (input == nullptr) return Fail("input is required");
  if (!Input(*input, messages)) return false;
  if (messages.empty()) return Fail("input must hold at least one message");
  chat["messages"] = std::move(messages);

  bool has_tools = false;
  if (const Json* tools = Get(req, "tools")) {
    Json out = Json::array();
    if (!Tools(*tools, out)) return false;
    has_tools = !out.empty();
    if (has_tools) chat["tools"] = std::move(out);
  }
  if (const Json* choice = Get(req, "tool_choice")) {
    Json out;
    if (!ToolChoice(*choice, out)) return false;
    if (!out.is_null()) chat["tool_choice"] = std::move(out);
  }
  if (const Json* p = Get(req, "parallel_tool_calls")) {
    if (!p->is_boolean()) return Fail("parallel_tool_calls must be a boolean");
    // OpenAI rejects parallel_tool_calls without tools.
    if (has_tools) chat["parallel_tool_calls"] = *p;
  }
  if (const Json* m = Get(req, "max_output_tokens")) {
    if (!m->is_number_integer()) return Fail("max_output_tokens must be an integer");
    chat["max_tokens"] = *m;
  }
  for (const char* key : {"temperature", "top_p"}) {
    if (const Json* v = Get(req, key)) {
      if (!v->is_number()) return Fail(std::string(key) + " must be a number");
      chat[key] = *v;
    }
  }
  if (const Json* text = Get(req, "text")) {
    if (!TextFormat(*text, chat)) return false;
  }
  if (const Json* reasoning = Get(req, "reasoning")) {
    if (!reasoning->is_object()) return Fail("reasoning must be an object");
    if (const Json* effort = Get(*reasoning, "effort")) {
      if (!effort->is_string()) return Fail("reasoning.effort must be a string");
      chat["reasoning_effort"] = *effort;
    }
    for (const auto& [k, v] : reasoning->items()) {
      if (k != "effort" && !v.is_null()) Drop("reasoning." + k);
    }
  }
  if (const Json* user = Get(req, "user")) {
    if (!user->is_string()) return Fail("user must be a string");
    chat["user"] = *user;
  }
  if (const Json* stream = Get(req, "stream")) {
    if (!stream->is_boolean()) return Fail("stream must be a boolean");
    r_.stream = stream->get<bool>();
  }
  if (r_.stream) {
    chat["stream"] = true;
    if (o_.include_usage) chat["stream_options"] = Json{{"include_usage", true}};
  }

  static constexpr std::array<std::string_view, 15> kHandled = {"model",
                                                                "input",
                                                                "instructions",
                                                                "tools",
                                                                "tool_choice",
                                                                "parallel_tool_calls",
                                                                "max_output_tokens",
                                                                "temperature",
                                                                "top_p",
                                                                "text",
                                                                "reasoning",
                                                                "user",
                                                                "stream",
                                                                "background",
                                                                "previous_response_id"};
  for (const auto& [key, value] : req.items()) {
    if (value.is_null()) continue;
    if (std::find(kHandled.begin(), kHandled.end(), key) != kHandled.end()) continue;
    Drop(key);  // store, include, metadata, truncation, prompt_cache_key... and unknown keys
  }
  r_.body = Dump(chat);
  return true;
}

bool RequestTranslator::Input(const Json& input, Json& messages) {
  if (input.is_string()) {
    messages.push_back(Json{{"role", "user"}, {"content", input}});
    return true;
  }
  if (!input.is_array()) return Fail("input must be a string or an array of items");
  for (size_t i = 0; i < input.size(); ++i) {
    const Json& item = input[i];
    if (!item.is_object()) return Fail(Where(i) + " must be an object");
    const Json* type = Get(item, "type");
    std::string_view t;
    if (type == nullptr) {
      if (Get(item, "role") == nullptr) return Fail(Where(i) + " has no type");
      t = "message";
    } else if (!type->is_string()) {
      return Fail(Where(i) + ".type must be a string");
    } else {
      t = type->get_ref<const std::string&>();
    }
    if (t == "message") {
      if (!Message(item, i, messages)) return false;
    } else if (t == "function_call") {
      if (!FunctionCall(item, i, messages)) return false;
    } else if (t == "function_call_output") {
      if (!FunctionOutput(item, i, messages)) return false;
    } else if (t == "reasoning") {
      Drop("input.reasoning");  // the backend reasons afresh; encrypted content means nothing here
    } else if (t == "item_reference") {
      return Fail(std::string("item_reference is not supported") + kStateless);
    } else {
      return Fail("input item type not supported by this backend: " + Name(t) + " (" + Where(i) +
                  ")");
    }
  }
  return true;
}

bool RequestTranslator::Message(const Json& item, size_t i, Json& messages) {
  const Json* role = Get(item, "role");
  if (role == nullptr || !role->is_string()) return Fail(Where(i) + ".role must be a string");
  std::string r = role->get<std::string>();
  if (r != "user" && r != "assistant" && r != "system" && r != "developer") {
    return Fail(Where(i) + ".role must be user, assistant, system or developer, not " + Name(r));
  }
  if (r == "developer") r = "system";  // chat backends other than OpenAI know no developer role
  const Json* content = Get(item, "content");
  if (content == nullptr) return Fail(Where(i) + ".content is required");
  Json out;
  if (!Content(*content, r, Where(i), out)) return false;
  messages.push_back(Json{{"role", r}, {"content", std::move(out)}});
  open_assistant_.reset();
  if (r == "assistant") open_assistant_ = messages.size() - 1;
  return true;
}

bool RequestTranslator::Content(const Json& content, std::string_view role,
                                const std::string& where, Json& out) {
  if (content.is_string()) {
    out = content;
    return true;
  }
  if (!content.is_array()) {
    return Fail(where + ".content must be a string or an array of content parts");
  }
  Json parts = Json::array();
  std::string joined;
  bool text_only = true;
  for (size_t j = 0; j < content.size(); ++j) {
    const Json& part = content[j];
    const std::string at = where + ".content[" + std::to_string(j) + "]";
    const std::string_view type = StringOr(Get(part, "type"));
    if (type.empty()) return Fail(at + " must be an object with a string type");
    if (type == "input_text" || type == "output_text" || type == "text" || type == "refusal") {
      const Json* text = Get(part, type == "refusal" ? "refusal" : "text");
      if (text == nullptr || !text->is_string()) return Fail(at + ".text must be a string");
      if (!parts.empty()) joined += '\n';
      joined += text->get_ref<const std::string&>();
      parts.push_back(Json{{"type", "text"}, {"text", *text}});
    } else if (type == "input_image") {
      if (role != "user") return Fail(at + ": input_image is only supported in user messages");
      if (Get(part, "file_id") != nullptr) {
        return Fail(at +
                    ": input_image with file_id is not supported: this gateway is stateless for "
                    "this backend; send image_url (a URL or a data: URL)");
      }
      const Json* url = Get(part, "image_url");
      if (url == nullptr || !url->is_string()) return Fail(at + ".image_url must be a string");
      Json image{{"url", *url}};
      if (const Json* detail = Get(part, "detail"); detail != nullptr && detail->is_string()) {
        image["detail"] = *detail;
      }
      parts.push_back(Json{{"type", "image_url"}, {"image_url", std::move(image)}});
      text_only = false;
    } else {
      return Fail(at + " has a content type not supported by this backend: " + Name(type));
    }
  }
  // Text alone becomes one string: every chat backend accepts that for every role.
  if (text_only) {
    out = std::move(joined);
  } else {
    out = std::move(parts);
  }
  return true;
}

bool RequestTranslator::FunctionCall(const Json& item, size_t i, Json& messages) {
  const Json* call_id = Get(item, "call_id");
  const Json* name = Get(item, "name");
  const Json* args = Get(item, "arguments");
  if (call_id == nullptr || !call_id->is_string())
    return Fail(Where(i) + ".call_id must be a string");
  if (name == nullptr || !name->is_string()) return Fail(Where(i) + ".name must be a string");
  if (args != nullptr && !args->is_string()) return Fail(Where(i) + ".arguments must be a string");
  const Json* ns = Get(item, "namespace");
  if (ns != nullptr && !ns->is_null() && !ns->is_string()) {
    return Fail(Where(i) + ".namespace must be a string");
  }
  const std::string_view ns_name = StringOr(ns);
  Json chat_name = ns_name.empty()
                       ? *name
                       : Json(NamespacedToolName(ns_name, name->get_ref<const std::string&>()));
  Json call{{"id", *call_id},
            {"type", "function"},
            {"function", Json{{"name", std::move(chat_name)},
                              {"arguments", args != nullptr ? *args : Json("")}}}};
  if (!open_assistant_) {
    messages.push_back(Json{{"role", "assistant"}, {"content", nullptr}});
    open_assistant_ = messages.size() - 1;
  }
  Json& target = messages[*open_assistant_];
  target["tool_calls"].push_back(std::move(call));
  return true;
}

bool RequestTranslator::FunctionOutput(const Json& item, size_t i, Json& messages) {
  const Json* call_id = Get(item, "call_id");
  if (call_id == nullptr || !call_id->is_string())
    return Fail(Where(i) + ".call_id must be a string");
  const Json* output = Get(item, "output");
  if (output == nullptr) return Fail(Where(i) + ".output is required");
  std::string text;
  if (output->is_string()) {
    text = output->get<std::string>();
  } else if (output->is_array()) {
    for (size_t j = 0; j < output->size(); ++j) {
      const Json& part = (*output)[j];
      const std::string at = Where(i) + ".output[" + std::to_string(j) + "]";
      const std::string_view type = StringOr(Get(part, "type"));
      if (type == "input_text" || type == "output_text" || type == "text") {
        const Json* t = Get(part, "text");
        if (t == nullptr || !t->is_string()) return Fail(at + ".text must be a string");
        if (j > 0) text += '\n';
        text += t->get_ref<const std::string&>();
      } else {
        return Fail(at + " has a type chat tool messages cannot carry: " +
                    Name(type.empty() ? "(none)" : type));
      }
    }
  } else {
    return Fail(Where(i) + ".output must be a string or an array of content parts");
  }
  messages.push_back(
      Json{{"role", "tool"}, {"tool_call_id", *call_id}, {"content", std::move(text)}});
  open_assistant_.reset();
  return true;
}

bool RequestTranslator::Tools(const Json& tools, Json& out) {
  if (!tools.is_array()) return Fail("tools must be an array");
  std::vector<std::string> unsupported;
  std::vector<std::string> names;
  auto unsupported_type = [&](std::string_view type) {
    std::string n = Name(type);
    if (o_.drop_unsupported_tools) {
      Drop("tools." + n);
    } else if (std::find(unsupported.begin(), unsupported.end(), n) == unsupported.end()) {
      unsupported.push_back(std::move(n));
    }
  };
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& tool = tools[i];
    const std::string at = "tools[" + std::to_string(i) + "]";
    const std::string_view type = StringOr(Get(tool, "type"));
    if (type.empty()) return Fail(at + " must be an object with a string type");
    if (type == "function") {
      if (!FunctionTool(tool, at, {}, {}, names, out)) return false;
      continue;
    }
    if (type != "namespace") {
      unsupported_type(type);
      continue;
    }
    // A namespace groups function tools; chat has no groups, so each becomes a function
    // named NamespacedToolName(namespace, name), and its calls go back with the namespace.
    const std::string_view ns = StringOr(Get(tool, "name"));
    if (ns.empty()) return Fail(at + ".name must be a non-empty string");
    const Json* inner = Get(tool, "tools");
    if (inner == nullptr || !inner->is_array()) return Fail(at + ".tools must be an array");
    const Json* d = Get(tool, "description");
    if (d != nullptr && !d->is_null() && !d->is_string()) {
      return Fail(at + ".description must be a string");
    }
    for (size_t j = 0; j < inner->size(); ++j) {
      const Json& t = (*inner)[j];
      const std::string in_at = at + ".tools[" + std::to_string(j) + "]";
      const std::string_view inner_type = StringOr(Get(t, "type"));
      if (inner_type.empty()) return Fail(in_at + " must be an object with a string type");
      if (inner_type != "function") {
        unsupported_type(inner_type);
        continue;
      }
      if (!FunctionTool(t, in_at, ns, StringOr(d), names, out)) return false;
    }
  }
  if (!unsupported.empty()) {
    std::string message = "tool types not supported by this backend: ";
    for (size_t i = 0; i < unsupported.size(); ++i) {
      if (i > 0) message += ", ";
      message += unsupported[i];
    }
    return Fail(std::move(message));
  }
  return true;
}

bool RequestTranslator::FunctionTool(const Json& tool, const std::string& at, std::string_view ns,
                                     std::string_view ns_description,
                                     std::vector<std::string>& names, Json& out) {
  const Json* name = Get(tool, "name");
  if (name == nullptr || !name->is_string()) return Fail(at + ".name must be a string");
  const std::string& plain = name->get_ref<const std::string&>();
  std::string chat_name = ns.empty() ? plain : NamespacedToolName(ns, plain);
  if (std::find(names.begin(), names.end(), chat_name) != names.end()) {
    return Fail(
        at + ": a second tool named " + Name(chat_name) +
        (ns.empty() ? std::string() : " (namespace " + Name(ns) + ", " + Name(plain) + ")"));
  }
  names.push_back(chat_name);
  Json function{{"name", std::move(chat_name)}};
  std::string description;
  if (const Json* d = Get(tool, "description")) {
    if (!d->is_string()) return Fail(at + ".description must be a string");
    description = d->get<std::string>();
  }
  if (!ns_description.empty()) {
    if (!description.empty()) description += "\n\n";
    description += "(Part of ";
    description += ns;
    description += ": ";
    description += ns_description;
    description += ')';
  }
  if (!description.empty() || Get(tool, "description") != nullptr) {
    function["description"] = std::move(description);
  }
  if (const Json* p = Get(tool, "parameters")) {
    if (!p->is_object()) return Fail(at + ".parameters must be an object");
    function["parameters"] = *p;
  }
  if (const Json* s = Get(tool, "strict")) {
    if (!s->is_boolean()) return Fail(at + ".strict must be a boolean");
    function["strict"] = *s;
  }
  out.push_back(Json{{"type", "function"}, {"function", std::move(function)}});
  return true;
}

bool RequestTranslator::ToolChoice(const Json& choice, Json& out) {
  if (choice.is_string()) {
    const std::string& s = choice.get_ref<const std::string&>();
    if (s != "auto" && s != "none" && s != "required") {
      return Fail("tool_choice must be auto, none, required or a function, not " + Name(s));
    }
    out = choice;
    return true;
  }
  const std::string_view type = StringOr(Get(choice, "type"));
  if (type.empty()) return Fail("tool_choice must be a string or an object with a string type");
  if (type == "function") {
    const Json* name = Get(choice, "name");
    if (name == nullptr || !name->is_string()) return Fail("tool_choice.name must be a string");
    const std::string_view ns = StringOr(Get(choice, "namespace"));
    Json chat_name =
        ns.empty() ? *name : Json(NamespacedToolName(ns, name->get_ref<const std::string&>()));
    out = Json{{"type", "function"}, {"function", Json{{"name", std::move(chat_name)}}}};
    return true;
  }
  if (type == "allowed_tools") {  // a restriction chat backends do not share: tools stay usable
    Drop("tool_choice.allowed_tools");
    return true;
  }
  if (o_.drop_unsupported_tools) {
    Drop("tool_choice." + Name(type));
    return true;
  }
  return Fail("tool_choice type not supported by this backend: " + Name(type));
}

bool RequestTranslator::TextFormat(const Json& text, Json& chat) {
  if (!text.is_object()) return Fail("text must be an object");
  for (const auto& [k, v] : text.items()) {
    if (k != "format" && !v.is_null()) Drop("text." + k);
  }
  const Json* format = Get(text, "format");
  if (format == nullptr) return true;
  const std::string_view type = StringOr(Get(*format, "type"));
  if (type == "text") return true;
  if (type == "json_object") {
    chat["response_format"] = Json{{"type", "json_object"}};
    return true;
  }
  if (type == "json_schema") {
    const Json* name = Get(*format, "name");
    const Json* schema = Get(*format, "schema");
    if (name == nullptr || !name->is_string()) return Fail("text.format.name must be a string");
    if (schema == nullptr || !schema->is_object())
      return Fail("text.format.schema must be an object");
    Json js{{"name", *name}};
    if (const Json* d = Get(*format, "description"); d != nullptr && d->is_string()) {
      js["description"] = *d;
    }
    js["schema"] = *schema;
    if (const Json* s = Get(*format, "strict")) {
      if (!s->is_boolean()) return Fail("text.format.strict must be a boolean");
      js["strict"] = *s;
    }
    chat["response_format"] = Json{{"type", "json_schema"}, {"json_schema", std::move(js)}};
    return true;
  }
  return Fail("text.format.type must be text, json_object or json_schema");
}

// ---------------------------------------------------------------------------------------
// Whole answers

uint64_t Count(const Json* j) {
  if (j == nullptr) return 0;
  if (j->is_number_unsigned()) return j->get<uint64_t>();
  return 0;  // negative, fractional or not a number
}

UsageCounts UsageOf(const Json& usage) {
  UsageCounts u;
  u.input = Count(Get(usage, "prompt_tokens"));
  u.output = Count(Get(usage, "completion_tokens"));
  if (const Json* d = Get(usage, "prompt_tokens_details"))
    u.cached = Count(Get(*d, "cached_tokens"));
  if (u.cached == 0) u.cached = Count(Get(usage, "prompt_cache_hit_tokens"));  // DeepSeek
  if (const Json* d = Get(usage, "completion_tokens_details")) {
    u.reasoning = Count(Get(*d, "reasoning_tokens"));
  }
  if (const Json* t = Get(usage, "total_tokens"); t != nullptr && t->is_number_unsigned()) {
    u.total = t->get<uint64_t>();
    u.has_total = true;
  }
  return u;
}

// Text of a chat message content: a string, or the text of its parts.
std::string ContentText(const Json* content) {
  if (content == nullptr) return {};
  if (content->is_string()) return content->get<std::string>();
  std::string text;
  if (content->is_array()) {
    for (const Json& part : *content) text += StringOr(Get(part, "text"));
  }
  return text;
}

}  // namespace

RequestTranslation ResponsesRequestToChat(std::string_view body, const ResponsesToChatOptions& o) {
  return RequestTranslator(o).Run(body);
}

std::string NamespacedToolName(std::string_view ns, std::string_view name) {
  std::string out;
  out.reserve(ns.size() + 2 + name.size());
  out += ns;
  out += "__";
  out += name;
  return out;
}

ResponsesEcho EchoOfResponsesRequest(std::string_view body) {
  Json req = Json::object();
  if (std::optional<Json> parsed = ParseJson(body); parsed && parsed->is_object()) {
    req = std::move(*parsed);
  }
  auto given = [&](const char* key, Json fallback) -> Json {
    const Json* v = Get(req, key);
    return v != nullptr ? *v : fallback;
  };
  Json reasoning{{"effort", nullptr}, {"summary", nullptr}};
  if (const Json* r = Get(req, "reasoning"); r != nullptr && r->is_object()) {
    if (const Json* e = Get(*r, "effort")) reasoning["effort"] = *e;
    if (const Json* s = Get(*r, "summary")) reasoning["summary"] = *s;
  }
  Json echo{{"background", false},
            {"instructions", given("instructions", nullptr)},
            {"max_output_tokens", given("max_output_tokens", nullptr)},
            {"metadata", given("metadata", Json::object())},
            {"parallel_tool_calls", given("parallel_tool_calls", true)},
            {"previous_response_id", nullptr},
            {"reasoning", std::move(reasoning)},
            {"store", given("store", false)},  // nothing is stored: the gateway is stateless
            {"temperature", given("temperature", 1.0)},
            {"text", given("text", Json{{"format", Json{{"type", "text"}}}})},
            {"tool_choice", given("tool_choice", "auto")},
            {"tools", given("tools", Json::array())},
            {"top_p", given("top_p", 1.0)},
            {"truncation", given("truncation", "disabled")},
            {"user", given("user", nullptr)}};
  std::string s = Dump(echo);
  ResponsesEcho out{s.substr(1, s.size() - 2), {}};
  if (const Json* tools = Get(req, "tools"); tools != nullptr && tools->is_array()) {
    for (const Json& tool : *tools) {
      const std::string_view ns = StringOr(Get(tool, "name"));
      const Json* inner = Get(tool, "tools");
      if (StringOr(Get(tool, "type")) != "namespace" || ns.empty() || inner == nullptr ||
          !inner->is_array()) {
        continue;
      }
      for (const Json& t : *inner) {
        const std::string_view name = StringOr(Get(t, "name"));
        if (StringOr(Get(t, "type")) != "function" || name.empty()) continue;
        out.namespaced.emplace(NamespacedToolName(ns, name),
                               std::pair{std::string(ns), std::string(name)});
      }
    }
  }
  return out;
}

std::optional<std::string> ChatResponseToResponses(std::string_view chat_body,
                                                   const ResponsesEcho& echo,
                                                   std::string_view model) {
  std::optional<Json> parsed = ParseJson(chat_body);
  if (!parsed || !parsed->is_object() || Get(*parsed, "error") != nullptr) return std::nullopt;
  const Json& chat = *parsed;
  const Json* choices = Get(chat, "choices");
  if (choices == nullptr || !choices->is_array() || choices->empty()) return std::nullopt;
  const Json* choice = &(*choices)[0];
  for (const Json& c : *choices) {
    if (const Json* index = Get(c, "index"); index != nullptr && *index == 0) choice = &c;
  }
  const Json* message = Get(*choice, "message");
  if (message == nullptr || !message->is_object()) return std::nullopt;

  const std::string base = IdBase(StringOr(Get(chat, "id")), chat_body);
  std::string output = "[";
  size_t n = 0;
  auto next = [&] {
    if (n > 0) output += ',';
    return n++;
  };
  std::string reasoning(StringOr(Get(*message, "reasoning_content")));
  if (reasoning.empty()) reasoning = StringOr(Get(*message, "reasoning"));  // OpenRouter
  if (!reasoning.empty()) {
    const size_t k = next();
    AppendReasoningItem(output, ItemId("rs", base, k), "completed", &reasoning);
  }
  std::string text = ContentText(Get(*message, "content"));
  if (text.empty()) text = StringOr(Get(*message, "refusal"));
  const Json* calls = Get(*message, "tool_calls");
  const bool has_calls = calls != nullptr && calls->is_array() && !calls->empty();
  const std::string_view finish = StringOr(Get(*choice, "finish_reason"));
  const std::string_view incomplete = IncompleteReason(finish);
  const std::string_view item_status = incomplete.empty() ? "completed" : "incomplete";
  if (!text.empty() || (!has_calls && reasoning.empty())) {
    const size_t k = next();
    AppendMessageItem(output, ItemId("msg", base, k), item_status, &text);
  }
  if (has_calls) {
    for (const Json& call : *calls) {
      const Json* function = Get(call, "function");
      if (function == nullptr) continue;
      const size_t k = next();
      std::string call_id(StringOr(Get(call, "id")));
      if (call_id.empty()) call_id = ItemId("call", base, k);
      const Json* args = Get(*function, "arguments");
      const std::string arguments = args == nullptr     ? ""
                                    : args->is_string() ? args->get<std::string>()
                                                        : Dump(*args);
      AppendFunctionItem(output, echo, ItemId("fc", base, k), item_status, call_id,
                         StringOr(Get(*function, "name")), arguments);
    }
  }
  output += ']';

  std::string usage = "null";
  if (const Json* u = Get(chat, "usage"); u != nullptr && u->is_object()) {
    usage.clear();
    AppendUsage(usage, UsageOf(*u));
  }
  const Json* created = Get(chat, "created");
  std::string out;
  AppendResponse(
      out, ResponseParts{
               .id = "resp_" + base,
               .created_at =
                   created != nullptr && created->is_number_integer() ? created->get<int64_t>() : 0,
               .status = incomplete.empty() ? "completed" : "incomplete",
               .incomplete_reason = incomplete,
               .echo = echo.fields_json,
               .model = model.empty() ? StringOr(Get(chat, "model")) : model,
               .output = output,
               .usage = usage,
           });
  return out;
}

std::string ErrorBodyToResponses(int status, std::string_view upstream_body) {
  std::string message;
  Json code = nullptr;
  Json param = nullptr;
  std::string type;
  if (std::optional<Json> parsed = ParseJson(upstream_body); parsed && parsed->is_object()) {
    const Json* error = Get(*parsed, "error");
    if (error != nullptr && error->is_object()) {
      const Json* m = Get(*error, "message");
      if (m != nullptr && m->is_string()) return std::string(upstream_body);  // already the shape
      type = StringOr(Get(*error, "type"));
      if (const Json* c = Get(*error, "code"); c != nullptr && (c->is_string() || c->is_number())) {
        code = *c;
      }
    } else if (error != nullptr && error->is_string()) {
      message = error->get<std::string>();
    }
    if (message.empty()) message = StringOr(Get(*parsed, "message"));
    if (message.empty() && error != nullptr) message = Dump(*error);
  }
  if (message.empty()) {
    message = "upstream returned HTTP " + std::to_string(status);
    if (!upstream_body.empty()) message += ": " + std::string(upstream_body.substr(0, 1024));
  }
  message = SanitizeUtf8(message, 1024);
  if (type.empty()) {
    type = status == 400   ? "invalid_request_error"
           : status == 401 ? "authentication_error"
           : status == 403 ? "permission_error"
           : status == 404 ? "not_found_error"
           : status == 429 ? "rate_limit_error"
           : status >= 500 ? "server_error"
                           : "invalid_request_error";
  }
  Json out{{"error", Json{{"message", message}, {"type", type}, {"param", param}, {"code", code}}}};
  return Dump(out);
}

// ---------------------------------------------------------------------------------------
// Streams

struct ChatStreamToResponses::Item {
  ItemKind kind;
  size_t output_index;
  std::string id;
  std::string text;  // text, reasoning text or arguments so far
  std::string call_id;
  std::string name;
  std::string status = "in_progress";
};

struct ChatStreamToResponses::Parser {
  simdjson::dom::parser parser;
  std::string padded;
};

// What one chunk says about choice 0 (views into the parser's buffers).
struct ChatStreamToResponses::Chunk {
  struct Tool {
    int64_t index = 0;
    std::string_view id, name, arguments;
  };
  std::string_view content, reasoning, finish_reason;
  std::vector<Tool> tools;
  bool has_choice = false;
};

namespace {

std::string_view Str(simdjson::dom::element e) {
  std::string_view s;
  if (e.get_string().get(s)) return {};
  return s;
}

std::string_view StrAt(simdjson::dom::object o, std::string_view key) {
  simdjson::dom::element e;
  if (o.at_key(key).get(e)) return {};
  return Str(e);
}

uint64_t CountAt(simdjson::dom::object o, std::string_view key, bool* present = nullptr) {
  simdjson::dom::element e;
  uint64_t v = 0;
  if (o.at_key(key).get(e) || e.get_uint64().get(v)) return 0;
  if (present != nullptr) *present = true;
  return v;
}

UsageCounts UsageOf(simdjson::dom::object u) {
  UsageCounts c;
  c.input = CountAt(u, "prompt_tokens");
  c.output = CountAt(u, "completion_tokens");
  simdjson::dom::object d;
  if (!u.at_key("prompt_tokens_details").get(d)) c.cached = CountAt(d, "cached_tokens");
  if (c.cached == 0) c.cached = CountAt(u, "prompt_cache_hit_tokens");
  if (!u.at_key("completion_tokens_details").get(d)) c.reasoning = CountAt(d, "reasoning_tokens");
  c.total = CountAt(u, "total_tokens", &c.has_total);
  return c;
}

}  // namespace

ChatStreamToResponses::ChatStreamToResponses(ResponsesEcho echo, std::string_view model)
    : echo_(std::move(echo)), model_(model), parser_(std::make_unique<Parser>()) {}

ChatStreamToResponses::~ChatStreamToResponses() = default;

void ChatStreamToResponses::Event(std::string& out, std::string_view type,
                                  std::string_view fields) {
  scratch_.clear();
  scratch_ += "{\"type\":\"";
  scratch_ += type;
  scratch_ += "\",";
  scratch_ += fields;
  scratch_ += ",\"sequence_number\":";
  scratch_ += std::to_string(sequence_++);
  scratch_ += '}';
  AppendSseEvent(out, type, scratch_);
}

std::string ChatStreamToResponses::ResponseJson(std::string_view status,
                                                std::string_view extra) const {
  std::string output = "[";
  for (const Item& item : items_) {
    if (output.size() > 1) output += ',';
    const std::string_view s = status == "failed" && item.status == "in_progress"
                                   ? std::string_view("incomplete")
                                   : std::string_view(item.status);
    switch (item.kind) {
      case ItemKind::kReasoning:
        AppendReasoningItem(output, item.id, s, &item.text);
        break;
      case ItemKind::kMessage:
        AppendMessageItem(output, item.id, s, &item.text);
        break;
      case ItemKind::kFunction:
        AppendFunctionItem(output, echo_, item.id, s, item.call_id, item.name, item.text);
        break;
    }
  }
  output += ']';
  const bool final = status != "in_progress";
  std::string out;
  AppendResponse(out, ResponseParts{
                          .id = "resp_" + base_,
                          .created_at = created_,
                          .status = status,
                          .error = status == "failed" ? extra : std::string_view("null"),
                          .incomplete_reason = status == "incomplete" ? extra : std::string_view(),
                          .echo = echo_.fields_json,
                          .model = model_,
                          .output = final ? std::string_view(output) : std::string_view("[]"),
                          .usage = final ? std::string_view(usage_json_) : std::string_view("null"),
                      });
  return out;
}

void ChatStreamToResponses::Start(std::string& out) {
  if (started_) return;
  started_ = true;
  if (base_.empty()) base_ = IdBase({}, "llmproxy");
  const std::string response = "\"response\":" + ResponseJson("in_progress", {});
  Event(out, "response.created", response);
  Event(out, "response.in_progress", response);
}

bool ChatStreamToResponses::Keep(size_t bytes, std::string& out) {
  kept_ += bytes;
  if (kept_ <= kMaxKeptBytes) return true;
  Fail("response_too_large", "the upstream answer is larger than this gateway translates", out);
  return false;
}

namespace {

std::string ItemFields(size_t output_index, std::string_view item_json) {
  return "\"output_index\":" + std::to_string(output_index) + ",\"item\":" + std::string(item_json);
}

std::string PartFields(std::string_view id, size_t output_index) {
  std::string f = "\"item_id\":";
  AppendJsonString(f, id);
  f += ",\"output_index\":" + std::to_string(output_index) + ",\"content_index\":0";
  return f;
}

}  // namespace

ChatStreamToResponses::Item* ChatStreamToResponses::OpenText(bool reasoning, std::string& out) {
  const ItemKind kind = reasoning ? ItemKind::kReasoning : ItemKind::kMessage;
  if (text_item_ && items_[*text_item_].kind == kind) return &items_[*text_item_];
  if (!Keep(kItemBytes, out)) return nullptr;
  CloseText(out);
  const size_t k = items_.size();
  items_.push_back(Item{.kind = kind,
                        .output_index = k,
                        .id = ItemId(reasoning ? "rs" : "msg", base_, k),
                        .text = {},
                        .call_id = {},
                        .name = {}});
  text_item_ = k;
  Item& item = items_.back();
  std::string json;
  if (reasoning) {
    AppendReasoningItem(json, item.id, "in_progress", nullptr);
  } else {
    AppendMessageItem(json, item.id, "in_progress", nullptr);
  }
  Event(out, "response.output_item.added", ItemFields(k, json));
  Event(
      out, "response.content_part.added",
      PartFields(item.id, k) + (reasoning ? ",\"part\":{\"type\":\"reasoning_text\",\"text\":\"\"}"
                                          : ",\"part\":{\"type\":\"output_text\",\"annotations\":"
                                            "[],\"text\":\"\"}"));
  return &item;
}

void ChatStreamToResponses::CloseText(std::string& out) {
  if (!text_item_) return;
  Item& item = items_[*text_item_];
  text_item_.reset();
  CloseItem(item, out);
}

void ChatStreamToResponses::CloseItem(Item& item, std::string& out) {
  if (item.status == "in_progress") {
    item.status = IncompleteReason(finish_reason_).empty() ? "completed" : "incomplete";
  }
  const size_t k = item.output_index;
  std::string json;
  switch (item.kind) {
    case ItemKind::kReasoning: {
      std::string part = "{\"type\":\"reasoning_text\",\"text\":";
      AppendJsonString(part, item.text);
      part += '}';
      std::string done = PartFields(item.id, k) + ",\"text\":";
      AppendJsonString(done, item.text);
      Event(out, "response.reasoning_text.done", done);
      Event(out, "response.content_part.done", PartFields(item.id, k) + ",\"part\":" + part);
      AppendReasoningItem(json, item.id, item.status, &item.text);
      break;
    }
    case ItemKind::kMessage: {
      std::string part;
      AppendTextPart(part, item.text);
      std::string done = PartFields(item.id, k) + ",\"text\":";
      AppendJsonString(done, item.text);
      done += ",\"logprobs\":[]";
      Event(out, "response.output_text.done", done);
      Event(out, "response.content_part.done", PartFields(item.id, k) + ",\"part\":" + part);
      AppendMessageItem(json, item.id, item.status, &item.text);
      break;
    }
    case ItemKind::kFunction: {
      std::string done = "\"item_id\":";
      AppendJsonString(done, item.id);
      done += ",\"output_index\":" + std::to_string(k) + ',';
      AppendToolName(done, echo_, item.name);
      done += ",\"arguments\":";
      AppendJsonString(done, item.text);
      Event(out, "response.function_call_arguments.done", done);
      AppendFunctionItem(json, echo_, item.id, item.status, item.call_id, item.name, item.text);
      break;
    }
  }
  Event(out, "response.output_item.done", ItemFields(k, json));
}

void ChatStreamToResponses::OnDelta(const Chunk& chunk, std::string& out) {
  if (!chunk.reasoning.empty()) {
    Item* item = OpenText(true, out);
    if (item == nullptr || !Keep(chunk.reasoning.size(), out)) return;
    item->text += chunk.reasoning;
    std::string f = PartFields(item->id, item->output_index) + ",\"delta\":";
    AppendJsonString(f, chunk.reasoning);
    Event(out, "response.reasoning_text.delta", f);
  }
  if (!chunk.content.empty()) {
    Item* item = OpenText(false, out);
    if (item == nullptr || !Keep(chunk.content.size(), out)) return;
    item->text += chunk.content;
    std::string f = PartFields(item->id, item->output_index) + ",\"delta\":";
    AppendJsonString(f, chunk.content);
    f += ",\"logprobs\":[]";
    Event(out, "response.output_text.delta", f);
  }
  for (const Chunk::Tool& t : chunk.tools) {
    auto it = tool_item_.find(t.index);
    if (it == tool_item_.end()) {
      if (tool_item_.size() >= kMaxToolCalls) {
        ++skipped_;
        continue;
      }
      if (!Keep(kItemBytes + t.id.size() + t.name.size(), out)) return;
      CloseText(out);
      const size_t k = items_.size();
      Item item{.kind = ItemKind::kFunction,
                .output_index = k,
                .id = ItemId("fc", base_, k),
                .text = {},
                .call_id = std::string(t.id),
                .name = std::string(t.name)};
      if (item.call_id.empty()) item.call_id = ItemId("call", base_, k);
      std::string json;
      AppendFunctionItem(json, echo_, item.id, "in_progress", item.call_id, item.name, "");
      items_.push_back(std::move(item));
      it = tool_item_.emplace(t.index, k).first;
      Event(out, "response.output_item.added", ItemFields(k, json));
    }
    Item& item = items_[it->second];
    if (item.name.empty() && !t.name.empty()) item.name = t.name;  // some send it late
    if (t.arguments.empty()) continue;
    if (!Keep(t.arguments.size(), out)) return;
    item.text += t.arguments;
    std::string f = "\"item_id\":";
    AppendJsonString(f, item.id);
    f += ",\"output_index\":" + std::to_string(item.output_index) + ",\"delta\":";
    AppendJsonString(f, t.arguments);
    Event(out, "response.function_call_arguments.delta", f);
  }
}

void ChatStreamToResponses::OnChunk(std::string_view data, std::string& out) {
  if (done_) return;
  const size_t first = data.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) {
    ++skipped_;
    return;
  }
  const std::string_view trimmed = data.substr(first, data.find_last_not_of(" \t\r\n") - first + 1);
  if (trimmed == "[DONE]") {
    Finish(out);
    return;
  }

  std::unique_ptr<simdjson::dom::parser> own;
  simdjson::dom::parser* parser = &parser_->parser;
  if (data.size() > kKeepParserBytes) {
    own = std::make_unique<simdjson::dom::parser>();
    parser = own.get();
  }
  std::string& padded = parser_->padded;
  padded.reserve(data.size() + simdjson::SIMDJSON_PADDING);
  padded.assign(data);
  simdjson::dom::element doc;
  simdjson::dom::object root;
  if (parser->parse(padded.data(), padded.size(), false).get(doc) || doc.get_object().get(root)) {
    ++skipped_;
    if (padded.capacity() > kKeepParserBytes) std::string().swap(padded);
    return;
  }

  if (!started_) {
    base_ = IdBase(StrAt(root, "id"), data);
    simdjson::dom::element created;
    int64_t value = 0;
    if (!root.at_key("created").get(created) && !created.get_int64().get(value)) created_ = value;
    if (model_.empty()) model_ = StrAt(root, "model");
  }

  simdjson::dom::object error;
  if (!root.at_key("error").get(error)) {
    std::string code(StrAt(error, "code"));
    if (code.empty()) code = StrAt(error, "type");
    std::string message(StrAt(error, "message"));
    Fail(code.empty() ? "upstream_error" : code, message.empty() ? "upstream error" : message, out);
    return;
  }

  Start(out);
  Chunk chunk;
  simdjson::dom::array choices;
  if (!root.at_key("choices").get(choices)) {
    for (simdjson::dom::element c : choices) {
      simdjson::dom::object choice;
      if (c.get_object().get(choice)) continue;
      simdjson::dom::element index;
      int64_t i = 0;
      if (!choice.at_key("index").get(index) && (index.get_int64().get(i) || i != 0)) continue;
      chunk.has_choice = true;
      chunk.finish_reason = StrAt(choice, "finish_reason");
      simdjson::dom::object delta;
      if (choice.at_key("delta").get(delta)) break;
      chunk.reasoning = StrAt(delta, "reasoning_content");
      if (chunk.reasoning.empty()) chunk.reasoning = StrAt(delta, "reasoning");
      chunk.content = StrAt(delta, "content");
      if (chunk.content.empty()) chunk.content = StrAt(delta, "refusal");
      simdjson::dom::array calls;
      if (!delta.at_key("tool_calls").get(calls)) {
        int64_t position = 0;
        for (simdjson::dom::element e : calls) {
          simdjson::dom::object call;
          if (e.get_object().get(call)) continue;
          Chunk::Tool t;
          simdjson::dom::element ie;
          if (call.at_key("index").get(ie) || ie.get_int64().get(t.index)) t.index = position;
          ++position;
          t.id = StrAt(call, "id");
          simdjson::dom::object function;
          if (!call.at_key("function").get(function)) {
            t.name = StrAt(function, "name");
            t.arguments = StrAt(function, "arguments");
          }
          chunk.tools.push_back(t);
        }
      }
      break;
    }
  }
  OnDelta(chunk, out);
  if (done_) return;
  if (!chunk.finish_reason.empty()) finish_reason_ = chunk.finish_reason;

  simdjson::dom::object usage;
  if (!root.at_key("usage").get(usage)) {
    const UsageCounts c = UsageOf(usage);
    usage_ = TokenUsage{c.input, c.output};
    usage_json_.clear();
    AppendUsage(usage_json_, c);
  }
  if (padded.capacity() > kKeepParserBytes) std::string().swap(padded);
}

void ChatStreamToResponses::OnEvents(std::string_view sse, std::string& out) {
  if (!fields_) fields_ = std::make_unique<SseFields>();
  auto dispatch = [&](std::string_view raw) {
    ReadSseFields(raw, *fields_);
    if (fields_->has_data) OnChunk(fields_->data, out);
  };
  size_t start = 0;
  size_t pos = 0;
  bool line_start = true;
  while (pos < sse.size()) {
    const char c = sse[pos];
    if (c != '\n' && c != '\r') {
      line_start = false;
      ++pos;
      continue;
    }
    pos += c == '\r' && pos + 1 < sse.size() && sse[pos + 1] == '\n' ? 2 : 1;
    if (line_start) {  // a blank line ends the event
      dispatch(sse.substr(start, pos - start));
      start = pos;
    }
    line_start = true;
  }
  if (start < sse.size()) dispatch(sse.substr(start));
}

void ChatStreamToResponses::Finish(std::string& out) {
  if (done_) return;
  Start(out);
  CloseText(out);
  for (Item& item : items_) {
    if (item.kind == ItemKind::kFunction && item.status == "in_progress") CloseItem(item, out);
  }
  done_ = true;
  const std::string_view reason = IncompleteReason(finish_reason_);
  const std::string_view type = reason.empty() ? "response.completed" : "response.incomplete";
  Event(out, type,
        "\"response\":" + ResponseJson(reason.empty() ? "completed" : "incomplete", reason));
}

void ChatStreamToResponses::Fail(std::string_view code, std::string_view message,
                                 std::string& out) {
  if (done_) return;
  Start(out);
  done_ = true;
  std::string error = "{\"code\":";
  AppendJsonString(error, SanitizeUtf8(code, 64));
  error += ",\"message\":";
  AppendJsonString(error, SanitizeUtf8(message, 1024));
  error += '}';
  Event(out, "response.failed", "\"response\":" + ResponseJson("failed", error));
}

}  // namespace llmproxy
