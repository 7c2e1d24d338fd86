// OpenAI Responses over chat completions (responses_translate.h): request, whole answer,
// error and stream translation against hand-written expectations from the OpenAI API
// reference (Responses object, input items, streaming events), streams cut at every byte
// offset, and hostile bodies and chunks.
#include "dataplane/protocols/responses_translate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/protocols/sse_parser.h"

namespace llmproxy {
namespace {

using nlohmann::json;

json J(std::string_view s) { return json::parse(s); }

RequestTranslation ToChat(std::string_view body, ResponsesToChatOptions o = {.model = "up"}) {
  return ResponsesRequestToChat(body, o);
}

// The chat body of a request that must translate.
json ChatOf(std::string_view body, ResponsesToChatOptions o = {.model = "up"}) {
  RequestTranslation r = ResponsesRequestToChat(body, o);
  EXPECT_EQ(r.error, "") << body;
  if (!r.error.empty()) return nullptr;
  return J(r.body);
}

std::string ErrorOf(std::string_view body, ResponsesToChatOptions o = {.model = "up"}) {
  RequestTranslation r = ResponsesRequestToChat(body, o);
  EXPECT_TRUE(r.body.empty()) << r.body;
  return r.error;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// ---------------------------------------------------------------------------------------
// Requests

TEST(ResponsesRequest, CodexLikeRequestTranslates) {
  const std::string body = R"({
    "model": "gpt-5-codex",
    "instructions": "You are Codex.",
    "input": [
      {"type": "message", "role": "developer",
       "content": [{"type": "input_text", "text": "<permissions>ask</permissions>"}]},
      {"type": "message", "role": "user",
       "content": [{"type": "input_text", "text": "<environment_context>/w</environment_context>"}]},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}
    ],
    "tools": [{"type": "function", "name": "shell", "description": "Runs a command",
               "strict": false,
               "parameters": {"type": "object",
                              "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                              "required": ["command"], "additionalProperties": false}}],
    "tool_choice": "auto",
    "parallel_tool_calls": false,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": false,
    "stream": true,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199a-b"
  })";
  RequestTranslation r = ToChat(body, {.model = "deepseek-chat"});
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(J(r.body), J(R"({
    "model": "deepseek-chat",
    "messages": [
      {"role": "system", "content": "You are Codex."},
      {"role": "system", "content": "<permissions>ask</permissions>"},
      {"role": "user", "content": "<environment_context>/w</environment_context>"},
      {"role": "user", "content": "list files"}
    ],
    "tools": [{"type": "function", "function": {
      "name": "shell", "description": "Runs a command",
      "parameters": {"type": "object",
                     "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                     "required": ["command"], "additionalProperties": false},
      "strict": false}}],
    "tool_choice": "auto",
    "parallel_tool_calls": false,
    "reasoning_effort": "medium",
    "stream": true,
    "stream_options": {"include_usage": true}
  })"));
  EXPECT_EQ(Sorted(r.dropped), (std::vector<std::string>{"include", "prompt_cache_key",
                                                         "reasoning.summary", "store"}));
}

TEST(ResponsesRequest, StringInputIsOneUserMessageAndTheClientModelStaysWithoutOverride) {
  RequestTranslation r = ToChat(R"({"model":"m1","input":"Hello"})", {});
  ASSERT_EQ(r.error, "");
  EXPECT_FALSE(r.stream);
  EXPECT_TRUE(r.dropped.empty());
  EXPECT_EQ(J(r.body), J(R"({"model":"m1","messages":[{"role":"user","content":"Hello"}]})"));
}

TEST(ResponsesRequest, SamplingAndLimitsMapToChatNames) {
  EXPECT_EQ(ChatOf(R"({"input":"x","max_output_tokens":256,"temperature":0.2,"top_p":0.9,
                       "user":"u-1","stream":false})"),
            J(R"({"model":"up","messages":[{"role":"user","content":"x"}],"max_tokens":256,
                  "temperature":0.2,"top_p":0.9,"user":"u-1"})"));
}

TEST(ResponsesRequest, StreamWithoutUsageOption) {
  EXPECT_EQ(ChatOf(R"({"input":"x","stream":true})", {.model = "up", .include_usage = false}),
            J(R"({"model":"up","messages":[{"role":"user","content":"x"}],"stream":true})"));
}

TEST(ResponsesRequest, FunctionCallHistoryBecomesAssistantToolCallsAndToolMessages) {
  // An assistant message, a reasoning item (dropped) and two function calls: one assistant
  // message carrying the text and both calls; then the two outputs as tool messages.
  const std::string body = R"({"input":[
    {"role":"user","content":"What is in /tmp and /etc?"},
    {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Looking."}]},
    {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAA"},
    {"type":"function_call","id":"fc_1","call_id":"call_1","name":"ls","arguments":"{\"p\":\"/tmp\"}"},
    {"type":"function_call","id":"fc_2","call_id":"call_2","name":"ls","arguments":"{\"p\":\"/etc\"}"},
    {"type":"function_call_output","call_id":"call_1","output":"a.txt"},
    {"type":"function_call_output","call_id":"call_2",
     "output":[{"type":"input_text","text":"hosts"},{"type":"input_text","text":"passwd"}]},
    {"type":"function_call","call_id":"call_3","name":"pwd","arguments":""},
    {"type":"function_call_output","call_id":"call_3","output":"/"}
  ]})";
  RequestTranslation r = ToChat(body);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(J(r.body), J(R"({"model":"up","messages":[
    {"role":"user","content":"What is in /tmp and /etc?"},
    {"role":"assistant","content":"Looking.","tool_calls":[
      {"id":"call_1","type":"function","function":{"name":"ls","arguments":"{\"p\":\"/tmp\"}"}},
      {"id":"call_2","type":"function","function":{"name":"ls","arguments":"{\"p\":\"/etc\"}"}}]},
    {"role":"tool","tool_call_id":"call_1","content":"a.txt"},
    {"role":"tool","tool_call_id":"call_2","content":"hosts\npasswd"},
    {"role":"assistant","content":null,"tool_calls":[
      {"id":"call_3","type":"function","function":{"name":"pwd","arguments":""}}]},
    {"role":"tool","tool_call_id":"call_3","content":"/"}
  ]})"));
  EXPECT_EQ(r.dropped, (std::vector<std::string>{"input.reasoning"}));
}

TEST(ResponsesRequest, ImagesBecomeImageUrlParts) {
  EXPECT_EQ(ChatOf(R"({"input":[{"role":"user","content":[
      {"type":"input_text","text":"What is this?"},
      {"type":"input_image","image_url":"https://x/cat.png","detail":"low"},
      {"type":"input_image","image_url":"data:image/png;base64,iVBO"}]}]})"),
            J(R"({"model":"up","messages":[{"role":"user","content":[
      {"type":"text","text":"What is this?"},
      {"type":"image_url","image_url":{"url":"https://x/cat.png","detail":"low"}},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]}]})"));
  EXPECT_EQ(
      ErrorOf(
          R"({"input":[{"role":"user","content":[{"type":"input_image","file_id":"file-1"}]}]})"),
      "input[0].content[0]: input_image with file_id is not supported: this gateway is "
      "stateless for this backend; send image_url (a URL or a data: URL)");
  EXPECT_EQ(
      ErrorOf(
          R"({"input":[{"role":"assistant","content":[{"type":"input_image","image_url":"u"}]}]})"),
      "input[0].content[0]: input_image is only supported in user messages");
  EXPECT_EQ(ErrorOf(R"({"input":[{"role":"user","content":[{"type":"input_image"}]}]})"),
            "input[0].content[0].image_url must be a string");
  EXPECT_EQ(
      ErrorOf(R"({"input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]})"),
      "input[0].content[0] has a content type not supported by this backend: input_file");
}

TEST(ResponsesRequest, TextFormats) {
  EXPECT_EQ(ChatOf(R"({"input":"x","text":{"format":{"type":"json_schema","name":"person",
      "schema":{"type":"object","properties":{"n":{"type":"string"}}},"strict":true},
      "verbosity":"low"}})"),
            J(R"({"model":"up","messages":[{"role":"user","content":"x"}],
      "response_format":{"type":"json_schema","json_schema":{"name":"person",
        "schema":{"type":"object","properties":{"n":{"type":"string"}}},"strict":true}}})"));
  EXPECT_EQ(ChatOf(R"({"input":"x","text":{"format":{"type":"json_object"}}})"),
            J(R"({"model":"up","messages":[{"role":"user","content":"x"}],
                  "response_format":{"type":"json_object"}})"));
  EXPECT_EQ(ChatOf(R"({"input":"x","text":{"format":{"type":"text"}}})"),
            J(R"({"model":"up","messages":[{"role":"user","content":"x"}]})"));
  RequestTranslation r = ToChat(R"({"input":"x","text":{"verbosity":"low"}})");
  EXPECT_EQ(r.dropped, (std::vector<std::string>{"text.verbosity"}));
  EXPECT_EQ(ErrorOf(R"({"input":"x","text":{"format":{"type":"json_schema","schema":{}}}})"),
            "text.format.name must be a string");
  EXPECT_EQ(ErrorOf(R"({"input":"x","text":{"format":{"type":"yaml"}}})"),
            "text.format.type must be text, json_object or json_schema");
}

TEST(ResponsesRequest, ToolChoiceForms) {
  const std::string tools = R"("tools":[{"type":"function","name":"f"}])";
  EXPECT_EQ(ChatOf(R"({"input":"x",)" + tools + R"(,"tool_choice":{"type":"function","name":"f"},
                       "parallel_tool_calls":true})"),
            J(R"({"model":"up","messages":[{"role":"user","content":"x"}],
                  "tools":[{"type":"function","function":{"name":"f"}}],
                  "tool_choice":{"type":"function","function":{"name":"f"}},
                  "parallel_tool_calls":true})"));
  for (const char* s : {"none", "required", "auto"}) {
    EXPECT_EQ(ChatOf(R"({"input":"x","tool_choice":")" + std::string(s) + "\"}")["tool_choice"], s);
  }
  // Without tools, parallel_tool_calls is left out (OpenAI chat rejects it alone).
  EXPECT_FALSE(
      ChatOf(R"({"input":"x","parallel_tool_calls":true})").contains("parallel_tool_calls"));
  EXPECT_EQ(ErrorOf(R"({"input":"x","tool_choice":"sometimes"})"),
            "tool_choice must be auto, none, required or a function, not sometimes");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tool_choice":{"type":"web_search_preview"}})"),
            "tool_choice type not supported by this backend: web_search_preview");
}

TEST(ResponsesRequest, StatefulFeaturesAreClear400s) {
  EXPECT_EQ(ErrorOf(R"({"input":"x","previous_response_id":"resp_1"})"),
            "previous_response_id is not supported: this gateway is stateless for this backend; "
            "send the full conversation in input");
  EXPECT_EQ(ErrorOf(R"({"input":"x","conversation":"conv_1"})"),
            "conversation is not supported: this gateway is stateless for this backend; send the "
            "full conversation in input");
  EXPECT_EQ(ErrorOf(R"({"input":[{"type":"item_reference","id":"msg_1"}]})"),
            "item_reference is not supported: this gateway is stateless for this backend; send "
            "the full conversation in input");
  EXPECT_EQ(ErrorOf(R"({"input":"x","prompt":{"id":"pmpt_1"}})"),
            "prompt templates are not supported: this gateway is stateless for this backend; "
            "send the full conversation in input");
  EXPECT_EQ(ErrorOf(R"({"input":"x","background":true})"),
            "background is not supported by this backend");
  // null means absent.
  EXPECT_EQ(ToChat(R"({"input":"x","previous_response_id":null,"background":false})").error, "");
}

TEST(ResponsesRequest, NonFunctionToolsAre400sNamingThem) {
  const std::string body = R"({"input":"x","tools":[{"type":"web_search"},
      {"type":"function","name":"f"},{"type":"file_search","vector_store_ids":["v"]},
      {"type":"web_search"},{"type":"local_shell"},{"type":"custom","name":"apply_patch"}]})";
  EXPECT_EQ(
      ErrorOf(body),
      "tool types not supported by this backend: web_search, file_search, local_shell, custom");
  // Opt-in: dropped instead, the function tool kept.
  RequestTranslation r = ToChat(body, {.model = "up", .drop_unsupported_tools = true});
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(J(r.body)["tools"], J(R"([{"type":"function","function":{"name":"f"}}])"));
  EXPECT_EQ(r.dropped, (std::vector<std::string>{"tools.web_search", "tools.file_search",
                                                 "tools.local_shell", "tools.custom"}));
}

// Codex sends its sub-agent tools grouped in a `namespace` tool (Responses API): chat gets
// each as a flat function "<namespace>__<name>", history calls and tool_choice likewise.
constexpr std::string_view kNamespacedBody = R"({"input":[
    {"type":"message","role":"user","content":"go"},
    {"type":"function_call","call_id":"c1","namespace":"multi_agent_v1","name":"spawn_agent",
     "arguments":"{\"task\":\"a\"}"},
    {"type":"function_call_output","call_id":"c1","output":"spawned"}],
  "tools":[{"type":"function","name":"exec_command","parameters":{"type":"object"}},
    {"type":"namespace","name":"multi_agent_v1","description":"Sub-agents.","tools":[
      {"type":"function","name":"spawn_agent","description":"Start one.",
       "parameters":{"type":"object","properties":{"task":{"type":"string"}}}},
      {"type":"function","name":"wait","strict":false}]}],
  "tool_choice":{"type":"function","namespace":"multi_agent_v1","name":"wait"}})";

TEST(ResponsesRequest, NamespaceToolsBecomeFlatFunctions) {
  const json chat = ChatOf(kNamespacedBody);
  EXPECT_EQ(chat["tools"], J(R"j([
    {"type":"function","function":{"name":"exec_command","parameters":{"type":"object"}}},
    {"type":"function","function":{"name":"multi_agent_v1__spawn_agent",
      "description":"Start one.\n\n(Part of multi_agent_v1: Sub-agents.)",
      "parameters":{"type":"object","properties":{"task":{"type":"string"}}}}},
    {"type":"function","function":{"name":"multi_agent_v1__wait",
      "description":"(Part of multi_agent_v1: Sub-agents.)","strict":false}}])j"));
  EXPECT_EQ(chat["messages"][1]["tool_calls"][0]["function"],
            J(R"({"name":"multi_agent_v1__spawn_agent","arguments":"{\"task\":\"a\"}"})"));
  EXPECT_EQ(chat["tool_choice"],
            J(R"({"type":"function","function":{"name":"multi_agent_v1__wait"}})"));
  EXPECT_EQ(NamespacedToolName("crm", "lookup"), "crm__lookup");
}

TEST(ResponsesRequest, NamespaceToolErrorsAre400s) {
  // A non-function tool inside a namespace is named like any other.
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"web_search"},{"type":"namespace",
      "name":"ns","tools":[{"type":"custom","name":"patch"},{"type":"function","name":"f"}]}]})"),
            "tool types not supported by this backend: web_search, custom");
  RequestTranslation dropped =
      ToChat(R"({"input":"x","tools":[{"type":"namespace","name":"ns","tools":[
          {"type":"custom","name":"patch"},{"type":"function","name":"f"}]}]})",
             {.model = "up", .drop_unsupported_tools = true});
  ASSERT_EQ(dropped.error, "");
  EXPECT_EQ(J(dropped.body)["tools"], J(R"([{"type":"function","function":{"name":"ns__f"}}])"));
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"namespace","tools":[]}]})"),
            "tools[0].name must be a non-empty string");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"namespace","name":"ns"}]})"),
            "tools[0].tools must be an array");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"namespace","name":"ns","tools":[7]}]})"),
            "tools[0].tools[0] must be an object with a string type");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"namespace","name":"ns","description":3,
      "tools":[]}]})"),
            "tools[0].description must be a string");
  // The flat name must not meet a plain function of the same name.
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"function","name":"ns__f"},
      {"type":"namespace","name":"ns","tools":[{"type":"function","name":"f"}]}]})"),
            "tools[1].tools[0]: a second tool named ns__f (namespace ns, f)");
  EXPECT_EQ(ErrorOf(R"({"input":[{"type":"function_call","call_id":"c","name":"f",
      "namespace":5,"arguments":"{}"}]})"),
            "input[0].namespace must be a string");
}

TEST(ResponsesRequest, MalformedBodiesAndItemsAre400s) {
  EXPECT_EQ(ErrorOf(""), "request body is not valid JSON");
  EXPECT_EQ(ErrorOf(R"({"input":"x")"), "request body is not valid JSON");
  EXPECT_EQ(ErrorOf("[1]"), "request body must be a JSON object");
  EXPECT_EQ(ErrorOf(R"("input")"), "request body must be a JSON object");
  EXPECT_EQ(ErrorOf(R"({"model":"m"})"), "input is required");
  EXPECT_EQ(ErrorOf(R"({"input":null})"), "input is required");
  EXPECT_EQ(ErrorOf(R"({"input":42})"), "input must be a string or an array of items");
  EXPECT_EQ(ErrorOf(R"({"input":[]})"), "input must hold at least one message");
  EXPECT_EQ(ErrorOf(R"({"input":["hi"]})"), "input[0] must be an object");
  EXPECT_EQ(ErrorOf(R"({"input":[{"content":"hi"}]})"), "input[0] has no type");
  EXPECT_EQ(ErrorOf(R"({"input":[{"type":7}]})"), "input[0].type must be a string");
  EXPECT_EQ(ErrorOf(R"({"input":["x",{"role":"user","content":"a"}]})"),
            "input[0] must be an object");
  EXPECT_EQ(ErrorOf(R"({"input":[{"role":"user","content":"a"},{"type":"computer_call_output"}]})"),
            "input item type not supported by this backend: computer_call_output (input[1])");
  EXPECT_EQ(ErrorOf(R"({"input":[{"role":"tool","content":"a"}]})"),
            "input[0].role must be user, assistant, system or developer, not tool");
  EXPECT_EQ(ErrorOf(R"({"input":[{"role":"user","content":5}]})"),
            "input[0].content must be a string or an array of content parts");
  EXPECT_EQ(ErrorOf(R"({"input":[{"role":"user"}]})"), "input[0].content is required");
  EXPECT_EQ(ErrorOf(R"({"input":[{"role":"user","content":[{"type":"input_text","text":1}]}]})"),
            "input[0].content[0].text must be a string");
  EXPECT_EQ(ErrorOf(R"({"input":[{"role":"user","content":[3]}]})"),
            "input[0].content[0] must be an object with a string type");
  EXPECT_EQ(ErrorOf(R"({"input":[{"type":"function_call","name":"f","arguments":"{}"}]})"),
            "input[0].call_id must be a string");
  EXPECT_EQ(
      ErrorOf(R"({"input":[{"type":"function_call","call_id":"c","name":"f","arguments":{}}]})"),
      "input[0].arguments must be a string");
  EXPECT_EQ(ErrorOf(R"({"input":[{"type":"function_call_output","call_id":"c"}]})"),
            "input[0].output is required");
  EXPECT_EQ(ErrorOf(R"({"input":[{"type":"function_call_output","call_id":"c","output":[
                       {"type":"input_image","image_url":"u"}]}]})"),
            "input[0].output[0] has a type chat tool messages cannot carry: input_image");
  EXPECT_EQ(ErrorOf(R"({"input":"x","instructions":["a"]})"), "instructions must be a string");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":{}})"), "tools must be an array");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"function"}]})"),
            "tools[0].name must be a string");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[{"type":"function","name":"f","parameters":"{}"}]})"),
            "tools[0].parameters must be an object");
  EXPECT_EQ(ErrorOf(R"({"input":"x","tools":[7]})"),
            "tools[0] must be an object with a string type");
  EXPECT_EQ(ErrorOf(R"({"input":"x","max_output_tokens":"10"})"),
            "max_output_tokens must be an integer");
  EXPECT_EQ(ErrorOf(R"({"input":"x","max_output_tokens":1.5})"),
            "max_output_tokens must be an integer");
  EXPECT_EQ(ErrorOf(R"({"input":"x","temperature":"hot"})"), "temperature must be a number");
  EXPECT_EQ(ErrorOf(R"({"input":"x","top_p":true})"), "top_p must be a number");
  EXPECT_EQ(ErrorOf(R"({"input":"x","stream":"yes"})"), "stream must be a boolean");
  EXPECT_EQ(ErrorOf(R"({"input":"x","parallel_tool_calls":1})"),
            "parallel_tool_calls must be a boolean");
  EXPECT_EQ(ErrorOf(R"({"input":"x","reasoning":"high"})"), "reasoning must be an object");
  EXPECT_EQ(ErrorOf(R"({"input":"x","user":{}})"), "user must be a string");
  EXPECT_EQ(ErrorOf(R"({"input":"x","text":"plain"})"), "text must be an object");
}

TEST(ResponsesRequest, UnknownAndStatefulOnlyFieldsAreDroppedDistinctAndCapped) {
  std::string body = R"({"input":"x","metadata":{"a":"b"},"truncation":"auto","service_tier":"flex",
      "store":true,"safety_identifier":"s","top_logprobs":2,"max_tool_calls":3,"zzz":1,"zzz":2)";
  for (int i = 0; i < 30; ++i) body += ",\"extra" + std::to_string(i) + "\":true";
  body += "}";
  RequestTranslation r = ToChat(body);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(J(r.body), J(R"({"model":"up","messages":[{"role":"user","content":"x"}]})"));
  ASSERT_EQ(r.dropped.size(), 16u);
  EXPECT_EQ(std::vector<std::string>(r.dropped.begin(), r.dropped.begin() + 9),
            (std::vector<std::string>{"metadata", "truncation", "service_tier", "store",
                                      "safety_identifier", "top_logprobs", "max_tool_calls", "zzz",
                                      "extra0"}));
}

TEST(ResponsesRequest, HostileBodiesGetErrorsNotCrashes) {
  EXPECT_EQ(ErrorOf(std::string(100000, '[')), "request body is not valid JSON");
  EXPECT_EQ(ErrorOf("{\"input\":" + std::string(300, '[') + std::string(300, ']') + "}"),
            "request body is not valid JSON");  // deeper than kMaxJsonDepth
  EXPECT_EQ(ErrorOf("{\"input\":\"\xff\xfe\"}"), "request body is not valid JSON");
  EXPECT_EQ(ErrorOf(R"({"input":"\ud800"})"), "request body is not valid JSON");
  EXPECT_EQ(ErrorOf(std::string("{\"input\":\"a\0b\"}", 15)), "request body is not valid JSON");
  // An unknown item type with bytes that need escaping is named, cut and valid UTF-8.
  const std::string e = ErrorOf(R"({"input":[{"type":")" + std::string(500, 'x') + R"(\"\n"}]})");
  EXPECT_LT(e.size(), 200u);
  EXPECT_EQ(e.rfind("input item type not supported by this backend: xxx", 0), 0u);
  std::string deep_ok =
      "{\"input\":\"x\",\"metadata\":" + std::string(200, '[') + std::string(200, ']') + "}";
  EXPECT_EQ(ToChat(deep_ok).error, "");
  // Every byte value as a body, and truncations of a real body: never a crash, always a
  // verdict (an error or one JSON object).
  const std::string real =
      R"({"input":[{"role":"user","content":[{"type":"input_text","text":"a"}]},
      {"type":"function_call","call_id":"c","name":"f","arguments":"{}"}],"tools":[{"type":"function","name":"f"}]})";
  for (size_t n = 0; n <= real.size(); ++n) {
    RequestTranslation r = ToChat(real.substr(0, n));
    EXPECT_TRUE(r.error.empty() != r.body.empty()) << n;
    if (r.error.empty()) {
      EXPECT_TRUE(J(r.body).is_object());
    }
  }
}

// ---------------------------------------------------------------------------------------
// Echo and whole answers

// The Responses object members a request without settings echoes (API defaults; store false
// since nothing is stored).
json DefaultEcho() {
  return J(R"({"background":false,"instructions":null,"max_output_tokens":null,"metadata":{},
    "parallel_tool_calls":true,"previous_response_id":null,
    "reasoning":{"effort":null,"summary":null},"store":false,"temperature":1.0,
    "text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,
    "truncation":"disabled","user":null})");
}

json EchoJson(const ResponsesEcho& e) { return J("{" + e.fields_json + "}"); }

TEST(ResponsesEcho, DefaultsAndGivenSettings) {
  EXPECT_EQ(EchoJson(EchoOfResponsesRequest(R"({"input":"x"})")), DefaultEcho());
  EXPECT_EQ(EchoJson(EchoOfResponsesRequest("not json")), DefaultEcho());
  json want = DefaultEcho();
  want["instructions"] = "be brief";
  want["max_output_tokens"] = 100;
  want["metadata"] = {{"k", "v"}};
  want["parallel_tool_calls"] = false;
  want["reasoning"] = {{"effort", "high"}, {"summary", "auto"}};
  want["temperature"] = 0.5;
  want["tool_choice"] = "required";
  want["tools"] = J(R"([{"type":"function","name":"f"}])");
  want["text"] = J(R"({"format":{"type":"json_object"}})");
  want["top_p"] = 0.3;
  want["user"] = "u";
  want["store"] = true;
  EXPECT_EQ(EchoJson(EchoOfResponsesRequest(R"({"input":"x","instructions":"be brief",
      "max_output_tokens":100,"metadata":{"k":"v"},"parallel_tool_calls":false,
      "reasoning":{"effort":"high","summary":"auto"},"temperature":0.5,"tool_choice":"required",
      "tools":[{"type":"function","name":"f"}],"text":{"format":{"type":"json_object"}},
      "top_p":0.3,"user":"u","store":true})")),
            want);
}

// A response object as the reference shows it, with the default echo.
json Response(std::string_view id, int64_t created, std::string_view status, json output,
              json usage, json incomplete = nullptr, std::string_view model = "gpt-x") {
  json r = DefaultEcho();
  r["id"] = id;
  r["object"] = "response";
  r["created_at"] = created;
  r["status"] = status;
  r["error"] = nullptr;
  r["incomplete_details"] = std::move(incomplete);
  r["model"] = model;
  r["output"] = std::move(output);
  r["usage"] = std::move(usage);
  return r;
}

json MessageItem(std::string_view id, std::string_view text,
                 std::string_view status = "completed") {
  return {
      {"id", id},
      {"type", "message"},
      {"status", status},
      {"role", "assistant"},
      {"content",
       json::array({{{"type", "output_text"}, {"text", text}, {"annotations", json::array()}}})}};
}

json ReasoningItem(std::string_view id, std::string_view text,
                   std::string_view status = "completed") {
  return {{"id", id},
          {"type", "reasoning"},
          {"status", status},
          {"summary", json::array()},
          {"content", json::array({{{"type", "reasoning_text"}, {"text", text}}})}};
}

json FunctionItem(std::string_view id, std::string_view call_id, std::string_view name,
                  std::string_view arguments, std::string_view status = "completed") {
  return {{"id", id},     {"type", "function_call"}, {"status", status}, {"call_id", call_id},
          {"name", name}, {"arguments", arguments}};
}

json Usage(int in, int cached, int out, int reasoning, int total) {
  return {{"input_tokens", in},
          {"input_tokens_details", {{"cached_tokens", cached}}},
          {"output_tokens", out},
          {"output_tokens_details", {{"reasoning_tokens", reasoning}}},
          {"total_tokens", total}};
}

const ResponsesEcho& Echo() {
  static const ResponsesEcho echo = EchoOfResponsesRequest(R"({"model":"gpt-x","input":"hi"})");
  return echo;
}

json Whole(std::string_view chat, std::string_view model = "gpt-x") {
  std::optional<std::string> out = ChatResponseToResponses(chat, Echo(), model);
  EXPECT_TRUE(out.has_value()) << chat;
  return out ? J(*out) : json();
}

TEST(ResponsesWhole, TextAnswer) {
  EXPECT_EQ(
      Whole(R"({"id":"chatcmpl-1","object":"chat.completion","created":1700000000,
      "model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant",
      "content":"Hello!"},"finish_reason":"stop"}],
      "usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,
               "prompt_tokens_details":{"cached_tokens":4}}})"),
      Response("resp_chatcmpl-1", 1700000000, "completed",
               json::array({MessageItem("msg_chatcmpl-1_0", "Hello!")}), Usage(10, 4, 3, 0, 13)));
}

TEST(ResponsesWhole, ToolCallsBecomeFunctionCallItems) {
  EXPECT_EQ(
      Whole(R"({"id":"c2","created":5,"choices":[{"index":0,"message":{"role":"assistant",
      "content":null,"tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"shell","arguments":"{\"command\":[\"ls\"]}"}},
        {"id":"call_b","type":"function","function":{"name":"pwd","arguments":"{}"}}]},
      "finish_reason":"tool_calls"}]})"),
      Response("resp_c2", 5, "completed",
               json::array({FunctionItem("fc_c2_0", "call_a", "shell", R"({"command":["ls"]})"),
                            FunctionItem("fc_c2_1", "call_b", "pwd", "{}")}),
               nullptr));
}

TEST(ResponsesWhole, NamespacedCallsComeBackWithTheirNamespace) {
  const ResponsesEcho echo = EchoOfResponsesRequest(kNamespacedBody);
  EXPECT_EQ(echo.namespaced.size(), 2u);
  const std::optional<std::string> out = ChatResponseToResponses(
      R"({"id":"c3","created":5,"choices":[{"index":0,"message":{"role":"assistant",
      "content":null,"tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"multi_agent_v1__spawn_agent",
         "arguments":"{}"}},
        {"id":"call_b","type":"function","function":{"name":"exec_command","arguments":"{}"}},
        {"id":"call_c","type":"function","function":{"name":"other__x","arguments":"{}"}}]},
      "finish_reason":"tool_calls"}]})",
      echo, "gpt-x");
  ASSERT_TRUE(out.has_value());
  const json output = J(*out)["output"];
  ASSERT_EQ(output.size(), 3u);
  json want = FunctionItem("fc_c3_0", "call_a", "spawn_agent", "{}");
  want["namespace"] = "multi_agent_v1";
  EXPECT_EQ(output[0], want);
  EXPECT_EQ(output[1], FunctionItem("fc_c3_1", "call_b", "exec_command", "{}"));
  // A name that only looks namespaced (no such namespace tool in the request) stays as is.
  EXPECT_EQ(output[2], FunctionItem("fc_c3_2", "call_c", "other__x", "{}"));
}

TEST(ResponsesWhole, ReasoningTextAndCallInOrder) {
  EXPECT_EQ(
      Whole(R"({"id":"c3","created":6,"model":"deepseek-reasoner","choices":[{"index":0,
      "message":{"role":"assistant","reasoning_content":"Think.","content":"Done.",
      "tool_calls":[{"id":"call_x","type":"function","function":{"name":"f","arguments":"{}"}}]},
      "finish_reason":"tool_calls"}],
      "usage":{"prompt_tokens":7,"completion_tokens":9,"prompt_cache_hit_tokens":2,
               "completion_tokens_details":{"reasoning_tokens":5}}})",
            ""),
      Response("resp_c3", 6, "completed",
               json::array({ReasoningItem("rs_c3_0", "Think."), MessageItem("msg_c3_1", "Done."),
                            FunctionItem("fc_c3_2", "call_x", "f", "{}")}),
               Usage(7, 2, 9, 5, 16), nullptr, "deepseek-reasoner"));
}

TEST(ResponsesWhole, LengthIsIncomplete) {
  EXPECT_EQ(Whole(R"({"id":"c4","created":1,"choices":[{"index":0,"message":{"role":"assistant",
      "content":"Once upon"},"finish_reason":"length"}]})"),
            Response("resp_c4", 1, "incomplete",
                     json::array({MessageItem("msg_c4_0", "Once upon", "incomplete")}), nullptr,
                     {{"reason", "max_output_tokens"}}));
}

TEST(ResponsesWhole, EmptyAnswerIsOneEmptyMessageAndIdsWithoutChatIdAreHashes) {
  EXPECT_EQ(Whole(R"({"id":"e","choices":[{"message":{"role":"assistant","content":null},
                      "finish_reason":"stop"}]})")["output"],
            json::array({MessageItem("msg_e_0", "")}));
  const json r = Whole(R"({"choices":[{"message":{"content":"x"}}]})");
  const std::string id = r["id"];
  ASSERT_EQ(id.size(), 5u + 16u);
  EXPECT_EQ(id.substr(0, 5), "resp_");
  EXPECT_EQ(r["output"][0]["id"], "msg_" + id.substr(5) + "_0");
  EXPECT_EQ(Whole(R"({"choices":[{"message":{"content":"x"}}]})")["id"], id);  // deterministic
}

TEST(ResponsesWhole, UnusableBodiesAreNullopt) {
  for (const char* body :
       {"", "nope", "[]", "{}", R"({"choices":[]})", R"({"choices":{}})", R"({"choices":[1]})",
        R"({"choices":[{"index":0}]})", R"({"choices":[{"message":"hi"}]})",
        R"({"error":{"message":"overloaded"},"choices":[{"message":{"content":"x"}}]})",
        "{\"choices\":[{\"message\":{\"content\":\"\xff\"}}]}"}) {
    EXPECT_FALSE(ChatResponseToResponses(body, Echo(), "m").has_value()) << body;
  }
}

// ---------------------------------------------------------------------------------------
// Errors

TEST(ResponsesErrors, OpenAiShapedErrorsPassUnchanged) {
  const std::string body =
      R"({"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}})";
  EXPECT_EQ(ErrorBodyToResponses(429, body), body);
  const std::string minimal = R"({"error":{"message":"bad"}})";
  EXPECT_EQ(ErrorBodyToResponses(400, minimal), minimal);
}

TEST(ResponsesErrors, OtherBodiesAreWrapped) {
  EXPECT_EQ(J(ErrorBodyToResponses(503, "upstream connect error")),
            J(R"({"error":{"message":"upstream returned HTTP 503: upstream connect error",
                  "type":"server_error","param":null,"code":null}})"));
  EXPECT_EQ(J(ErrorBodyToResponses(401, "")),
            J(R"({"error":{"message":"upstream returned HTTP 401","type":"authentication_error",
                  "param":null,"code":null}})"));
  EXPECT_EQ(J(ErrorBodyToResponses(400, R"({"error":"model not found"})")),
            J(R"({"error":{"message":"model not found","type":"invalid_request_error","param":null,
                  "code":null}})"));
  EXPECT_EQ(J(ErrorBodyToResponses(422, R"({"message":"bad field","code":7})")),
            J(R"({"error":{"message":"bad field","type":"invalid_request_error","param":null,
                  "code":null}})"));
  EXPECT_EQ(
      J(ErrorBodyToResponses(429, R"({"error":{"type":"quota","code":"insufficient_quota"}})")),
      J(R"({"error":{"message":"{\"type\":\"quota\",\"code\":\"insufficient_quota\"}",
                  "type":"quota","param":null,"code":"insufficient_quota"}})"));
  EXPECT_EQ(J(ErrorBodyToResponses(404, "[1,2]"))["error"]["type"], "not_found_error");
  EXPECT_EQ(J(ErrorBodyToResponses(403, "x"))["error"]["type"], "permission_error");
}

TEST(ResponsesErrors, HostileBodiesGiveValidJson) {
  const json e = J(ErrorBodyToResponses(500, "\xff\xfe<html>" + std::string(5000, 'x')));
  const std::string m = e["error"]["message"];
  EXPECT_LE(m.size(), 1030u);
  EXPECT_EQ(m.rfind("upstream returned HTTP 500: \xef\xbf\xbd\xef\xbf\xbd<html>xxx", 0), 0u);
  EXPECT_EQ(e["error"]["type"], "server_error");
  EXPECT_NO_THROW(J(ErrorBodyToResponses(502, std::string(100000, '{'))));
}

// ---------------------------------------------------------------------------------------
// Streams

struct Ev {
  std::string event;
  json data;
};

// Splits the translator's output into events, checking the framing of each: an `event:`
// line naming the data's type, one data line, the blank line.
std::vector<Ev> Events(std::string_view out) {
  std::vector<Ev> events;
  while (!out.empty()) {
    const size_t end = out.find("\n\n");
    EXPECT_NE(end, std::string_view::npos) << out;
    if (end == std::string_view::npos) break;
    const std::string_view raw = out.substr(0, end);
    out.remove_prefix(end + 2);
    const size_t nl = raw.find('\n');
    EXPECT_EQ(raw.substr(0, 7), "event: ");
    EXPECT_EQ(raw.substr(nl + 1, 6), "data: ");
    Ev ev{std::string(raw.substr(7, nl - 7)), J(raw.substr(nl + 7))};
    EXPECT_EQ(ev.data["type"], ev.event);
    events.push_back(std::move(ev));
  }
  return events;
}

// The event list with sequence numbers checked (0, 1, 2...) and removed.
std::vector<json> Payloads(std::string_view out, uint64_t first_sequence = 0) {
  std::vector<json> v;
  uint64_t seq = first_sequence;
  for (Ev& e : Events(out)) {
    EXPECT_EQ(e.data["sequence_number"], seq++) << e.data;
    e.data.erase("sequence_number");
    v.push_back(std::move(e.data));
  }
  return v;
}

std::string Translate(const std::vector<std::string>& chunks, ChatStreamToResponses& t) {
  std::string out;
  for (const std::string& c : chunks) t.OnChunk(c, out);
  t.Finish(out);
  return out;
}

std::string Chunk(std::string_view id, std::string_view delta, std::string_view finish = "null") {
  return R"({"id":")" + std::string(id) +
         R"(","object":"chat.completion.chunk","created":1700000000,"model":"up",)"
         R"("choices":[{"index":0,"delta":)" +
         std::string(delta) + R"(,"finish_reason":)" + std::string(finish) + "}]}";
}

json Ev0(std::string_view type, json fields) {
  fields["type"] = type;
  return fields;
}

json Lifecycle(std::string_view type, json response) {
  return Ev0(type, {{"response", std::move(response)}});
}

json Part(std::string_view item, int output, json extra) {
  extra["item_id"] = item;
  extra["output_index"] = output;
  extra["content_index"] = 0;
  return extra;
}

json ItemEv(std::string_view type, int output, json item) {
  return Ev0(type, {{"output_index", output}, {"item", std::move(item)}});
}

const json kTextPart = {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}};

std::vector<std::string> TextChunks() {
  return {Chunk("chatcmpl-7", R"({"role":"assistant","content":""})"),
          Chunk("chatcmpl-7", R"({"content":"Hel"})"),
          Chunk("chatcmpl-7", R"({"content":"lo \"w\"\n"})"),
          Chunk("chatcmpl-7", "{}", "\"stop\""),
          R"({"id":"chatcmpl-7","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,
              "total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}})",
          "[DONE]"};
}

TEST(ResponsesStream, TextStreamGolden) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  const std::vector<json> got = Payloads(Translate(TextChunks(), t));
  const std::string id = "msg_chatcmpl-7_0";
  const json in_progress =
      Response("resp_chatcmpl-7", 1700000000, "in_progress", json::array(), nullptr);
  json text_part = kTextPart;
  text_part["text"] = "Hello \"w\"\n";
  const std::vector<json> want = {
      Lifecycle("response.created", in_progress),
      Lifecycle("response.in_progress", in_progress),
      ItemEv("response.output_item.added", 0,
             {{"id", id},
              {"type", "message"},
              {"status", "in_progress"},
              {"role", "assistant"},
              {"content", json::array()}}),
      Ev0("response.content_part.added", Part(id, 0, {{"part", kTextPart}})),
      Ev0("response.output_text.delta",
          Part(id, 0, {{"delta", "Hel"}, {"logprobs", json::array()}})),
      Ev0("response.output_text.delta",
          Part(id, 0, {{"delta", "lo \"w\"\n"}, {"logprobs", json::array()}})),
      Ev0("response.output_text.done",
          Part(id, 0, {{"text", "Hello \"w\"\n"}, {"logprobs", json::array()}})),
      Ev0("response.content_part.done", Part(id, 0, {{"part", text_part}})),
      ItemEv("response.output_item.done", 0, MessageItem(id, "Hello \"w\"\n")),
      Lifecycle("response.completed",
                Response("resp_chatcmpl-7", 1700000000, "completed",
                         json::array({MessageItem(id, "Hello \"w\"\n")}), Usage(5, 1, 2, 0, 7))),
  };
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << i;
  EXPECT_TRUE(t.done());
  EXPECT_EQ(t.usage(), (TokenUsage{5, 2}));
  EXPECT_EQ(t.skipped(), 0u);
}

TEST(ResponsesStream, EventsLeaveAsEachChunkArrives) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  t.OnChunk(Chunk("c", R"({"role":"assistant","content":""})"), out);
  std::vector<Ev> ev = Events(out);
  ASSERT_EQ(ev.size(), 2u);  // created, in_progress: the client learns at once it started
  EXPECT_EQ(ev[0].event, "response.created");
  out.clear();
  t.OnChunk(Chunk("c", R"({"content":"A"})"), out);
  ev = Events(out);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].event, "response.output_item.added");
  EXPECT_EQ(ev[1].event, "response.content_part.added");
  EXPECT_EQ(ev[2].event, "response.output_text.delta");
  EXPECT_EQ(ev[2].data["delta"], "A");
  out.clear();
  t.OnChunk(Chunk("c", R"({"content":"B"})"), out);
  ev = Events(out);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data["delta"], "B");
  EXPECT_EQ(ev[0].data["sequence_number"], 5);
  out.clear();
  t.OnChunk(Chunk("c", "{}", "\"stop\""), out);
  EXPECT_EQ(out, "");  // usage may still come: completion waits for [DONE] / Finish
  EXPECT_FALSE(t.done());
}

TEST(ResponsesStream, ToolCallArgumentsOneDeltaPerFragment) {
  const std::vector<std::string> chunks = {
      Chunk("chatcmpl-9", R"({"role":"assistant","content":null,"tool_calls":[{"index":0,
            "id":"call_a","type":"function","function":{"name":"shell","arguments":""}}]})"),
      Chunk("chatcmpl-9",
            R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"command\":"}}]})"),
      Chunk("chatcmpl-9", R"({"tool_calls":[{"index":0,"function":{"arguments":"[\"ls\"]}"}}]})"),
      Chunk("chatcmpl-9", R"({"tool_calls":[{"index":1,"id":"call_b","type":"function",
            "function":{"name":"pwd","arguments":"{}"}}]})"),
      Chunk("chatcmpl-9", "{}", "\"tool_calls\""),
      "[DONE]"};
  ChatStreamToResponses t(Echo(), "gpt-x");
  const std::vector<json> got = Payloads(Translate(chunks, t));
  const json in_progress =
      Response("resp_chatcmpl-9", 1700000000, "in_progress", json::array(), nullptr);
  const std::string a = "fc_chatcmpl-9_0", b = "fc_chatcmpl-9_1";
  auto delta = [](std::string_view item, int output, std::string_view d) {
    return Ev0("response.function_call_arguments.delta",
               {{"item_id", item}, {"output_index", output}, {"delta", d}});
  };
  auto done = [](std::string_view item, int output, std::string_view name, std::string_view args) {
    return Ev0("response.function_call_arguments.done",
               {{"item_id", item}, {"output_index", output}, {"name", name}, {"arguments", args}});
  };
  const std::vector<json> want = {
      Lifecycle("response.created", in_progress),
      Lifecycle("response.in_progress", in_progress),
      ItemEv("response.output_item.added", 0,
             FunctionItem(a, "call_a", "shell", "", "in_progress")),
      delta(a, 0, "{\"command\":"),
      delta(a, 0, "[\"ls\"]}"),
      ItemEv("response.output_item.added", 1, FunctionItem(b, "call_b", "pwd", "", "in_progress")),
      delta(b, 1, "{}"),
      done(a, 0, "shell", R"({"command":["ls"]})"),
      ItemEv("response.output_item.done", 0,
             FunctionItem(a, "call_a", "shell", R"({"command":["ls"]})")),
      done(b, 1, "pwd", "{}"),
      ItemEv("response.output_item.done", 1, FunctionItem(b, "call_b", "pwd", "{}")),
      Lifecycle("response.completed",
                Response("resp_chatcmpl-9", 1700000000, "completed",
                         json::array({FunctionItem(a, "call_a", "shell", R"({"command":["ls"]})"),
                                      FunctionItem(b, "call_b", "pwd", "{}")}),
                         nullptr)),
  };
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << i;
}

TEST(ResponsesStream, NamespacedCallKeepsItsNamespaceInEveryEvent) {
  ChatStreamToResponses t(EchoOfResponsesRequest(kNamespacedBody), "gpt-x");
  const std::vector<json> got = Payloads(
      Translate({Chunk("chatcmpl-n", R"({"role":"assistant","content":null,"tool_calls":[{"index":0,
             "id":"call_a","type":"function","function":{"name":"multi_agent_v1__wait",
             "arguments":"{}"}}]})"),
                 Chunk("chatcmpl-n", "{}", "\"tool_calls\""), "[DONE]"},
                t));
  const std::string id = "fc_chatcmpl-n_0";
  json added = FunctionItem(id, "call_a", "wait", "", "in_progress");
  added["namespace"] = "multi_agent_v1";
  json done_item = FunctionItem(id, "call_a", "wait", "{}");
  done_item["namespace"] = "multi_agent_v1";
  ASSERT_EQ(got.size(), 7u);
  EXPECT_EQ(got[2], ItemEv("response.output_item.added", 0, added));
  EXPECT_EQ(got[4], Ev0("response.function_call_arguments.done", {{"item_id", id},
                                                                  {"output_index", 0},
                                                                  {"namespace", "multi_agent_v1"},
                                                                  {"name", "wait"},
                                                                  {"arguments", "{}"}}));
  EXPECT_EQ(got[5], ItemEv("response.output_item.done", 0, done_item));
  EXPECT_EQ(got[6]["response"]["output"][0], done_item);
}

TEST(ResponsesStream, ReasoningThenTextAreTwoItems) {
  const std::vector<std::string> chunks = {
      Chunk("r", R"({"role":"assistant","content":null,"reasoning_content":"Think"})"),
      Chunk("r", R"({"content":null,"reasoning_content":"ing"})"),
      Chunk("r", R"({"content":"Hi","reasoning_content":null})"), Chunk("r", "{}", "\"stop\"")};
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  for (const std::string& c : chunks) t.OnChunk(c, out);
  t.Finish(out);  // no [DONE]: the upstream just ended
  const std::vector<json> got = Payloads(out);
  const json reasoning_part = {{"type", "reasoning_text"}, {"text", ""}};
  const json reasoning_done = {{"type", "reasoning_text"}, {"text", "Thinking"}};
  json text_done = kTextPart;
  text_done["text"] = "Hi";
  const json in_progress = Response("resp_r", 1700000000, "in_progress", json::array(), nullptr);
  const std::vector<json> want = {
      Lifecycle("response.created", in_progress),
      Lifecycle("response.in_progress", in_progress),
      ItemEv("response.output_item.added", 0,
             {{"id", "rs_r_0"},
              {"type", "reasoning"},
              {"status", "in_progress"},
              {"summary", json::array()},
              {"content", json::array()}}),
      Ev0("response.content_part.added", Part("rs_r_0", 0, {{"part", reasoning_part}})),
      Ev0("response.reasoning_text.delta", Part("rs_r_0", 0, {{"delta", "Think"}})),
      Ev0("response.reasoning_text.delta", Part("rs_r_0", 0, {{"delta", "ing"}})),
      Ev0("response.reasoning_text.done", Part("rs_r_0", 0, {{"text", "Thinking"}})),
      Ev0("response.content_part.done", Part("rs_r_0", 0, {{"part", reasoning_done}})),
      ItemEv("response.output_item.done", 0, ReasoningItem("rs_r_0", "Thinking")),
      ItemEv("response.output_item.added", 1,
             {{"id", "msg_r_1"},
              {"type", "message"},
              {"status", "in_progress"},
              {"role", "assistant"},
              {"content", json::array()}}),
      Ev0("response.content_part.added", Part("msg_r_1", 1, {{"part", kTextPart}})),
      Ev0("response.output_text.delta",
          Part("msg_r_1", 1, {{"delta", "Hi"}, {"logprobs", json::array()}})),
      Ev0("response.output_text.done",
          Part("msg_r_1", 1, {{"text", "Hi"}, {"logprobs", json::array()}})),
      Ev0("response.content_part.done", Part("msg_r_1", 1, {{"part", text_done}})),
      ItemEv("response.output_item.done", 1, MessageItem("msg_r_1", "Hi")),
      Lifecycle("response.completed", Response("resp_r", 1700000000, "completed",
                                               json::array({ReasoningItem("rs_r_0", "Thinking"),
                                                            MessageItem("msg_r_1", "Hi")}),
                                               nullptr)),
  };
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << i;
}

TEST(ResponsesStream, LengthEndsWithResponseIncomplete) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  const std::vector<json> got =
      Payloads(Translate({Chunk("L", R"({"content":"Once"})"), Chunk("L", "{}", "\"length\""),
                          "[DONE]", Chunk("L", R"({"content":"after done"})")},
                         t));
  ASSERT_EQ(got.size(), 9u);
  EXPECT_EQ(got[7]["item"], MessageItem("msg_L_0", "Once", "incomplete"));
  EXPECT_EQ(got[8], Lifecycle("response.incomplete",
                              Response("resp_L", 1700000000, "incomplete",
                                       json::array({MessageItem("msg_L_0", "Once", "incomplete")}),
                                       nullptr, {{"reason", "max_output_tokens"}})));
}

TEST(ResponsesStream, FinishIsOnceAndFailEndsTheStream) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  t.OnChunk(Chunk("F", R"({"content":"par"})"), out);
  t.Fail("stream_broken", "upstream connection reset", out);
  EXPECT_TRUE(t.done());
  const std::vector<json> got = Payloads(out);
  ASSERT_EQ(got.size(), 6u);
  json failed = Response("resp_F", 1700000000, "failed",
                         json::array({MessageItem("msg_F_0", "par", "incomplete")}), nullptr);
  failed["error"] = {{"code", "stream_broken"}, {"message", "upstream connection reset"}};
  EXPECT_EQ(got[5], Lifecycle("response.failed", failed));
  const size_t size = out.size();
  t.OnChunk(Chunk("F", R"({"content":"more"})"), out);
  t.Finish(out);
  t.Fail("x", "y", out);
  EXPECT_EQ(out.size(), size);

  ChatStreamToResponses u(Echo(), "gpt-x");
  std::string once;
  u.Finish(once);
  const std::vector<json> empty = Payloads(once);
  ASSERT_EQ(empty.size(), 3u);  // created, in_progress, completed with nothing in it
  EXPECT_EQ(empty[2]["type"], "response.completed");
  EXPECT_EQ(empty[2]["response"]["output"], json::array());
  u.Finish(once);
  EXPECT_EQ(Payloads(once).size(), 3u);
}

TEST(ResponsesStream, UpstreamErrorChunkFailsTheStream) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  t.OnChunk(Chunk("E", R"({"content":"a"})"), out);
  t.OnChunk(R"({"error":{"message":"context too long","type":"invalid_request_error",
                "code":"context_length_exceeded"}})",
            out);
  const std::vector<json> got = Payloads(out);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[5]["type"], "response.failed");
  EXPECT_EQ(got[5]["response"]["error"],
            J(R"({"code":"context_length_exceeded","message":"context too long"})"));
  EXPECT_TRUE(t.done());
}

TEST(ResponsesStream, MalformedChunksAreSkippedAndCounted) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  for (std::string_view bad :
       {std::string_view("{\"choices\":["), std::string_view("42"), std::string_view(""),
        std::string_view("\xff\xfe"),
        std::string_view("{\"choices\":[{\"delta\":{\"content\":\"\xc3\"}}]}")}) {
    t.OnChunk(bad, out);
  }
  EXPECT_EQ(out, "");  // nothing started on garbage
  EXPECT_EQ(t.skipped(), 5u);
  t.OnChunk(Chunk("ok", R"({"content":"fine"})"), out);
  t.OnChunk("not json", out);
  t.OnChunk(R"({"choices":[{"index":"0","delta":{"content":"wrong index type"}}]})", out);
  t.OnChunk(R"({"choices":[{"index":1,"delta":{"content":"other choice"}}]})", out);
  t.OnChunk(R"({"choices":[{"index":0,"delta":{"content":7,"tool_calls":"x"}}]})", out);
  t.Finish(out);
  EXPECT_EQ(t.skipped(), 6u);
  const std::vector<json> got = Payloads(out);
  EXPECT_EQ(got.back()["response"]["output"], json::array({MessageItem("msg_ok_0", "fine")}));
}

TEST(ResponsesStream, ToolCallCountIsBounded) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  for (size_t i = 0; i < ChatStreamToResponses::kMaxToolCalls + 10; ++i) {
    t.OnChunk(Chunk("T", R"({"tool_calls":[{"index":)" + std::to_string(i) +
                             R"(,"id":"c","function":{"name":"f","arguments":"{}"}}]})"),
              out);
  }
  t.Finish(out);
  EXPECT_EQ(t.skipped(), 10u);
  EXPECT_EQ(Payloads(out).back()["response"]["output"].size(),
            ChatStreamToResponses::kMaxToolCalls);
}

TEST(ResponsesStream, KeptBytesAreBounded) {
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  const std::string big = Chunk("B", R"({"content":")" + std::string(1 << 20, 'x') + "\"}");
  size_t n = 0;
  while (!t.done() && n < 100) {
    if (out.size() > (8u << 20)) out.clear();  // the relay writes it out; only state stays
    t.OnChunk(big, out);
    ++n;
  }
  EXPECT_TRUE(t.done());
  // 32 chunks of 1 MiB plus the message item's own cost exceed 32 MiB.
  EXPECT_EQ(ChatStreamToResponses::kMaxKeptBytes, 32u << 20);
  EXPECT_EQ(n, 32u);
  EXPECT_NE(out.find("\"code\":\"response_too_large\""), std::string::npos);
}

TEST(ResponsesStream, ItemCountIsBoundedToo) {
  // Alternating reasoning and text opens a new item per chunk; each counts kItemBytes.
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  const std::string r = Chunk("A", R"({"reasoning_content":"r"})");
  const std::string c = Chunk("A", R"({"content":"c"})");
  size_t chunks = 0;
  while (!t.done() && chunks < 1000000) {
    if (out.size() > (1u << 20)) out.clear();
    t.OnChunk(chunks % 2 == 0 ? r : c, out);
    ++chunks;
  }
  ASSERT_TRUE(t.done());
  const size_t per_item = ChatStreamToResponses::kItemBytes + 1;
  EXPECT_EQ(chunks, ChatStreamToResponses::kMaxKeptBytes / per_item + 1);
  const std::vector<Ev> last = Events(out.substr(out.rfind("event: response.failed")));
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].data["response"]["error"]["code"], "response_too_large");
}

// An upstream SSE stream of the chunks (LF line ends, a comment and an id field mixed in).
std::string SseStream(const std::vector<std::string>& chunks) {
  std::string s = ": connected\n\n";
  for (const std::string& c : chunks) {
    std::string one_line = c;
    std::erase(one_line, '\n');
    s += "id: 1\ndata: " + one_line + "\n\n";
  }
  return s;
}

// Feeds the stream through SseParser in the given pieces and each whole event's data to a
// translator; returns what the translator wrote.
// With `on_events` the parser's output goes to OnEvents as it is, which splits it itself.
std::string ThroughParser(std::string_view stream, const std::vector<size_t>& cuts,
                          bool on_events = false) {
  SseParser parser;
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  SseFields fields;
  auto forward = [&](std::string_view events) {
    if (on_events) {
      t.OnEvents(events, out);
      return;
    }
    while (!events.empty()) {
      const size_t end = events.find("\n\n");
      const std::string_view raw =
          events.substr(0, end == std::string_view::npos ? events.size() : end + 2);
      events.remove_prefix(raw.size());
      ReadSseFields(raw, fields);
      if (fields.has_data) t.OnChunk(fields.data, out);
    }
  };
  size_t at = 0;
  for (size_t cut : cuts) {
    const std::string piece(stream.substr(at, cut - at));
    forward(parser.Feed(piece));
    at = cut;
  }
  const std::string rest(stream.substr(at));
  forward(parser.Feed(rest));
  forward(parser.Finish());
  t.Finish(out);
  return out;
}

TEST(ResponsesStream, EveryCutOfTheUpstreamStreamGivesTheSameEvents) {
  std::vector<std::string> chunks = {
      Chunk("cut", R"({"role":"assistant","content":null,"reasoning_content":"hm"})"),
      Chunk("cut", R"({"content":"caf\u00e9 \ud83d\ude00"})"),
      Chunk(
          "cut",
          R"({"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\""}}]})"),
      Chunk("cut", R"({"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]})"),
      Chunk("cut", "{}", "\"tool_calls\""),
      R"({"id":"cut","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}})",
      "[DONE]"};
  const std::string stream = SseStream(chunks);
  const std::string whole = ThroughParser(stream, {});
  const std::vector<json> events = Payloads(whole);  // also checks sequence numbers 0..N-1
  ASSERT_EQ(events.size(), 20u);
  EXPECT_EQ(events.back()["response"]["usage"], Usage(3, 0, 4, 0, 7));
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    ASSERT_EQ(ThroughParser(stream, {cut}), whole) << "cut at " << cut;
    ASSERT_EQ(ThroughParser(stream, {cut}, true), whole) << "OnEvents, cut at " << cut;
  }
  // CRLF and lone-CR line ends, split by OnEvents: the same events.
  for (const std::string_view eol : {std::string_view("\r\n"), std::string_view("\r")}) {
    std::string other;
    for (const char c : stream) {
      if (c == '\n') {
        other += eol;
      } else {
        other += c;
      }
    }
    for (size_t cut = 0; cut <= other.size(); ++cut) {
      ASSERT_EQ(ThroughParser(other, {cut}, true), whole) << eol.size() << " cut at " << cut;
    }
  }
  for (size_t a = 0; a < stream.size(); a += 7) {
    for (size_t b = a; b <= stream.size(); b += 13) {
      ASSERT_EQ(ThroughParser(stream, {a, b}), whole) << "cuts at " << a << ", " << b;
    }
  }
}

TEST(ResponsesStream, OnEventsSplitsWhatTheParserReturns) {
  ChatStreamToResponses a(Echo(), "gpt-x"), b(Echo(), "gpt-x");
  std::string out_a, out_b;
  // Comments, an event without data, an event of two data lines (joined with a newline),
  // mixed line ends, a final event without its blank line.
  a.OnEvents(": hi\n\nevent: x\n\n" + ("data: " + Chunk("o", R"({"content":"A"})")) +
                 "\n\ndata: {\"choices\":\ndata: []}\r\n\r\n" +
                 ("data: " + Chunk("o", R"({"content":"B"})")) + "\r\rdata: [DONE]",
             out_a);
  b.OnChunk(Chunk("o", R"({"content":"A"})"), out_b);
  b.OnChunk("{\"choices\":\n[]}", out_b);
  b.OnChunk(Chunk("o", R"({"content":"B"})"), out_b);
  b.OnChunk("[DONE]", out_b);
  EXPECT_EQ(out_a, out_b);
  EXPECT_TRUE(a.done());
  EXPECT_EQ(a.skipped(), 0u);  // a JSON text may span lines
  EXPECT_EQ(Payloads(out_a).back()["response"]["output"],
            json::array({MessageItem("msg_o_0", "AB")}));
}

TEST(ResponsesStream, HostileChunksNeverBreakTheOutput) {
  const std::string real = Chunk("h", R"({"content":"x","tool_calls":[{"index":0,"id":"c",
      "function":{"name":"f","arguments":"{}"}}],"reasoning_content":"r"})",
                                 "\"stop\"");
  ChatStreamToResponses t(Echo(), "gpt-x");
  std::string out;
  for (size_t n = 0; n <= real.size(); ++n) t.OnChunk(real.substr(0, n), out);
  t.OnChunk(std::string(100000, '['), out);
  t.OnChunk(R"({"choices":[{"delta":{"tool_calls":[{"index":-5,"function":{"arguments":"a"}},
            {"index":9223372036854775807,"function":{"arguments":"b"}},{"index":1e400}]}}]})",
            out);
  t.OnChunk(R"({"id":"\u0000\"<script>","choices":[{"delta":{"content":"\u0000"}}]})", out);
  t.Finish(out);
  const std::vector<json> events = Payloads(out);  // every event parses, numbers in order
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "response.completed");
  EXPECT_EQ(events[0]["response"]["id"], "resp_h");
}

}  // namespace
}  // namespace llmproxy
