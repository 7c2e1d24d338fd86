// Anthropic Messages <-> chat completions: request bodies, whole answers, error answers
// and streams, each compared as parsed JSON against expectations written from the two
// APIs' references; streams also cut at every byte offset and checked event by event.
#include "dataplane/protocols/anthropic_translate.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/protocols/sse_parser.h"

namespace llmproxy {
namespace {

using nlohmann::json;

json Parse(std::string_view s) { return json::parse(s); }

// --- Messages request -> chat request ---------------------------------------------------

TEST(MessagesRequestToChat, ToolUseRoundTripHistory) {
  const std::string body = R"({
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "You are terse."},
               {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "get_weather", "description": "Weather by city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
    "messages": [
      {"role": "user", "content": "Weather in Paris and Rome?"},
      {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "two calls", "signature": "abc"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
      {"role": "user", "content": [
        {"type": "text", "text": "here you go"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
         "content": [{"type": "text", "text": "timeout"}, {"type": "text", "text": "retry"}]}]}
    ],
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "metadata": {"user_id": "u-1"},
    "stream": true
  })";
  const RequestTranslation r = MessagesRequestToChat(body, {.model = "gpt-4o"});
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.stream);
  const json expected = {
      {"model", "gpt-4o"},
      {"max_tokens", 1024},
      {"stop", {"END"}},
      {"temperature", 0.5},
      {"top_p", 0.9},
      {"user", "u-1"},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
      {"parallel_tool_calls", false},
      {"tool_choice", "auto"},
      {"tools",
       {{{"type", "function"},
         {"function",
          {{"name", "get_weather"},
           {"description", "Weather by city"},
           {"parameters",
            {{"type", "object"},
             {"properties", {{"city", {{"type", "string"}}}}},
             {"required", {"city"}}}}}}}}},
      {"messages",
       {{{"role", "system"}, {"content", "You are terse.\n\nUse tools."}},
        {{"role", "user"}, {"content", "Weather in Paris and Rome?"}},
        {{"role", "assistant"},
         {"content", "Checking."},
         {"tool_calls",
          {{{"id", "toolu_1"},
            {"type", "function"},
            {"function", {{"name", "get_weather"}, {"arguments", R"({"city":"Paris"})"}}}},
           {{"id", "toolu_2"},
            {"type", "function"},
            {"function", {{"name", "get_weather"}, {"arguments", R"({"city":"Rome"})"}}}}}}},
        // Tool answers first, then the rest of that user message.
        {{"role", "tool"}, {"tool_call_id", "toolu_1"}, {"content", "18C"}},
        {{"role", "tool"}, {"tool_call_id", "toolu_2"}, {"content", "Error: timeout\n\nretry"}},
        {{"role", "user"}, {"content", "here you go"}}}}};
  EXPECT_EQ(Parse(r.body), expected);
  // In the order met: top-level fields first, then system, then messages.
  EXPECT_EQ(r.dropped, (std::vector<std::string>{"top_k", "cache_control", "thinking"}));
}

TEST(MessagesRequestToChat, ImagesBase64AndUrlBecomeContentParts) {
  const std::string body = R"({"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
    {"type":"text","text":"What is this?"},
    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
    {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]})";
  const RequestTranslation r = MessagesRequestToChat(body, {});
  ASSERT_EQ(r.error, "");
  EXPECT_FALSE(r.stream);
  const json expected = {
      {"model", "m"},
      {"max_tokens", 10},
      {"messages",
       {{{"role", "user"},
         {"content",
          {{{"type", "text"}, {"text", "What is this?"}},
           {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,iVBORw0KGgo="}}}},
           {{"type", "image_url"}, {"image_url", {{"url", "https://example.com/cat.jpg"}}}}}}}}}};
  EXPECT_EQ(Parse(r.body), expected);
  EXPECT_TRUE(r.dropped.empty());
}

TEST(MessagesRequestToChat, ToolResultImagesFollowTheToolMessages) {
  const std::string body = R"({"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
    {"type":"tool_result","tool_use_id":"t1","content":[
      {"type":"text","text":"screenshot taken"},
      {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},
      {"type":"image","source":{"type":"file","file_id":"f"}}]}]}]})";
  const RequestTranslation r =
      MessagesRequestToChat(body, {.model = "m", .max_completion_tokens = true});
  ASSERT_EQ(r.error, "");
  const json expected = {
      {"model", "m"},
      {"max_completion_tokens", 10},
      {"messages",
       {{{"role", "tool"}, {"tool_call_id", "t1"}, {"content", "screenshot taken"}},
        {{"role", "user"},
         {"content",
          {{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,AAAA"}}}}}}}}}};
  EXPECT_EQ(Parse(r.body), expected);
  EXPECT_EQ(r.dropped, std::vector<std::string>{"tool_result.image"});  // the file source
}

TEST(MessagesRequestToChat, SystemStringAndSystemRoleInMessages) {
  const std::string body = R"({"model":"m","max_tokens":5,"system":"Be nice.","messages":[
    {"role":"system","content":"Extra rule."},
    {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
    {"role":"assistant","content":"ok"}]})";
  const RequestTranslation r = MessagesRequestToChat(body, {.model = "x", .include_usage = false});
  ASSERT_EQ(r.error, "");
  const json expected = {{"model", "x"},
                         {"max_tokens", 5},
                         {"messages",
                          {{{"role", "system"}, {"content", "Be nice."}},
                           {{"role", "system"}, {"content", "Extra rule."}},
                           {{"role", "user"}, {"content", "a\n\nb"}},
                           {{"role", "assistant"}, {"content", "ok"}}}}};
  EXPECT_EQ(Parse(r.body), expected);
}

TEST(MessagesRequestToChat, StreamWithoutIncludeUsage) {
  const RequestTranslation r = MessagesRequestToChat(
      R"({"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]})",
      {.model = "up", .include_usage = false});
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.stream);
  const json b = Parse(r.body);
  EXPECT_EQ(b["stream"], true);
  EXPECT_FALSE(b.contains("stream_options"));
}

std::string ThinkingBody(std::string_view thinking) {
  return R"({"model":"m","max_tokens":30000,"messages":[{"role":"user","content":"hi"}],"thinking":)" +
         std::string(thinking) + "}";
}

TEST(MessagesRequestToChat, ThinkingPerReasoningStyle) {
  auto effort = [](int budget) {
    const RequestTranslation r = MessagesRequestToChat(
        ThinkingBody(R"({"type":"enabled","budget_tokens":)" + std::to_string(budget) + "}"),
        {.reasoning = ReasoningStyle::kReasoningEffort});
    EXPECT_EQ(r.error, "");
    return Parse(r.body).value("reasoning_effort", "");
  };
  EXPECT_EQ(effort(1024), "low");
  EXPECT_EQ(effort(4095), "low");
  EXPECT_EQ(effort(4096), "medium");
  EXPECT_EQ(effort(16383), "medium");
  EXPECT_EQ(effort(16384), "high");
  EXPECT_EQ(effort(32000), "high");

  const std::string enabled = ThinkingBody(R"({"type":"enabled","budget_tokens":2048})");
  RequestTranslation r =
      MessagesRequestToChat(enabled, {.reasoning = ReasoningStyle::kThinkingObject});
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(Parse(r.body)["thinking"], (json{{"type", "enabled"}}));
  EXPECT_FALSE(Parse(r.body).contains("reasoning_effort"));

  r = MessagesRequestToChat(ThinkingBody(R"({"type":"disabled"})"),
                            {.reasoning = ReasoningStyle::kThinkingObject});
  EXPECT_EQ(Parse(r.body)["thinking"], (json{{"type", "disabled"}}));
  r = MessagesRequestToChat(ThinkingBody(R"({"type":"disabled"})"),
                            {.reasoning = ReasoningStyle::kReasoningEffort});
  EXPECT_FALSE(Parse(r.body).contains("reasoning_effort"));

  r = MessagesRequestToChat(enabled, {.reasoning = ReasoningStyle::kNone});
  ASSERT_EQ(r.error, "");
  EXPECT_FALSE(Parse(r.body).contains("thinking"));
  EXPECT_FALSE(Parse(r.body).contains("reasoning_effort"));
  EXPECT_EQ(r.dropped, std::vector<std::string>{"thinking"});
}

TEST(MessagesRequestToChat, ToolChoiceMapping) {
  auto choice = [](std::string_view tc) {
    const RequestTranslation r = MessagesRequestToChat(
        R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],)"
        R"("tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":)" +
            std::string(tc) + "}",
        {});
    EXPECT_EQ(r.error, "") << tc;
    return r.error.empty() ? Parse(r.body) : json();
  };
  EXPECT_EQ(choice(R"({"type":"auto"})")["tool_choice"], "auto");
  EXPECT_FALSE(choice(R"({"type":"auto"})").contains("parallel_tool_calls"));
  EXPECT_EQ(choice(R"({"type":"any"})")["tool_choice"], "required");
  EXPECT_EQ(choice(R"({"type":"none"})")["tool_choice"], "none");
  EXPECT_EQ(choice(R"({"type":"tool","name":"f"})")["tool_choice"],
            (json{{"type", "function"}, {"function", {{"name", "f"}}}}));
  EXPECT_EQ(choice(R"({"type":"any","disable_parallel_tool_use":true})")["parallel_tool_calls"],
            false);
  // A tool without input_schema gets an empty object schema.
  const RequestTranslation r = MessagesRequestToChat(
      R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],)"
      R"("tools":[{"name":"g"},{"type":"web_search_20250305","name":"web_search"}]})",
      {});
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(Parse(r.body)["tools"],
            (json{{{"type", "function"},
                   {"function",
                    {{"name", "g"},
                     {"parameters", {{"type", "object"}, {"properties", json::object()}}}}}}}));
  EXPECT_EQ(r.dropped, std::vector<std::string>{"tools.web_search_20250305"});
}

TEST(MessagesRequestToChat, UnknownFieldsAreDroppedAndNamedBounded) {
  std::string body = R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}])";
  for (int i = 0; i < 40; ++i) body += ",\"x" + std::to_string(i) + "\":1";
  body += R"(,"service_tier":"auto","weird\"key\u0001":2})";
  const RequestTranslation r = MessagesRequestToChat(body, {});
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.dropped.size(), kMaxDropped);
  const json b = Parse(r.body);
  EXPECT_FALSE(b.contains("x0"));
  EXPECT_FALSE(b.contains("service_tier"));
  for (const std::string& name : r.dropped) {
    for (char c : name) EXPECT_TRUE(c >= 0x21 && c < 0x7f) << name;
  }
}

TEST(MessagesRequestToChat, EmptyModelOptionKeepsTheBodysModel) {
  const RequestTranslation r = MessagesRequestToChat(
      R"({"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]})", {});
  EXPECT_EQ(Parse(r.body)["model"], "claude-x");
}

TEST(MessagesRequestToChat, BadRequestsAreErrorsWithoutEchoingBytes) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "the body must be one JSON object"},
      {"[1,2]", "the body must be one JSON object"},
      {R"({"model":"m")", "the body must be one JSON object"},
      {R"({"model":"m"} trailing)", "the body must be one JSON object"},
      {R"({"model":"m","max_tokens":5})", "messages: required"},
      {R"({"model":"m","messages":{"role":"user"}})", "messages: must be an array"},
      {R"({"model":"m","messages":["hi"]})", "messages[0]: must be an object"},
      {R"({"model":"m","messages":[{"role":"sk-secret","content":"x"}]})",
       "messages[0].role: must be user or assistant"},
      {R"({"model":"m","messages":[{"content":"x"}]})",
       "messages[0].role: must be user or assistant"},
      {R"({"model":"m","messages":[{"role":"user","content":42}]})",
       "messages[0].content: must be a string or an array"},
      {R"({"model":"m","messages":[{"role":"user"}]})",
       "messages[0].content: must be a string or an array"},
      {R"({"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}]})",
       "messages[1].content[0]: tool_use needs a string id and name"},
      {R"({"model":"m","messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","input":{}}]}]})",
       "messages[0].content[0]: tool_use needs a string id and name"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]})",
       "messages[0].content[0].tool_use_id: must be a non-empty string"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":5}]}]})",
       "messages[0].content[0].text: must be a string"},
      {R"({"model":"m","messages":[{"role":"user","content":[7]}]})",
       "messages[0].content[0]: must be an object with a type"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]})",
       "messages[0].content[0].source: must be base64 or url"},
      {R"({"model":"m","system":42,"messages":[]})",
       "system: must be a string or an array of text blocks"},
      {R"({"model":7,"messages":[]})", "model: must be a string"},
      {R"({"model":"m","max_tokens":"many","messages":[]})", "max_tokens: must be an integer"},
      {R"({"model":"m","stream":"yes","messages":[]})", "stream: must be a boolean"},
      {R"({"model":"m","temperature":"hot","messages":[]})", "temperature: must be a number"},
      {R"({"model":"m","stop_sequences":"END","messages":[]})",
       "stop_sequences: must be an array of strings"},
      {R"({"model":"m","messages":[],"tool_choice":{"type":"tool"}})",
       "tool_choice: type must be auto, any, tool (with a name) or none"},
      {R"({"model":"m","messages":[],"tools":[{"description":"no name"}]})",
       "tools[0]: must be an object with a name"},
      {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
       "the body must be one JSON object"},
  };
  for (const auto& [body, error] : cases) {
    const RequestTranslation r = MessagesRequestToChat(body, {});
    EXPECT_EQ(r.error, error) << body;
    EXPECT_EQ(r.body, "") << body;
  }
}

TEST(MessagesRequestToChat, DeepAndHugeBodiesAreRefusedOrTranslatedWithoutCrashing) {
  const std::string deep =
      R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":)" +
      std::string(100000, '[') + std::string(100000, ']') + "}]}";
  EXPECT_EQ(MessagesRequestToChat(deep, {}).error, "the body must be one JSON object");
  // Nesting just inside the limit is translated.
  const std::string ok =
      R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":)" +
      std::string(200, '[') + std::string(200, ']') + "}]}";
  EXPECT_EQ(MessagesRequestToChat(ok, {}).error, "");
  std::string big = R"({"model":"m","messages":[)";
  for (int i = 0; i < 20000; ++i) big += R"({"role":"user","content":"hello"},)";
  big += R"({"role":"user","content":"end"}]})";
  const RequestTranslation r = MessagesRequestToChat(big, {});
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(Parse(r.body)["messages"].size(), 20001u);
}

// --- chat request -> Messages request ---------------------------------------------------

TEST(ChatRequestToMessages, ToolsHistoryImagesAndMerging) {
  const std::string body = R"({
    "model": "gpt-4o",
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
      {"role": "user", "content": [
        {"type": "text", "text": "Weather here?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call.2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
      {"role": "tool", "tool_call_id": "call.2", "content": [{"type": "text", "text": "noon"}]},
      {"role": "user", "content": "thanks"},
      {"role": "user", "content": "and tomorrow?"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
              {"type": "function", "function": {"name": "get_time"}}],
    "tool_choice": "required",
    "parallel_tool_calls": false,
    "max_completion_tokens": 500,
    "max_tokens": 100,
    "stop": "END",
    "temperature": 0.2,
    "top_p": 1,
    "user": "u-9",
    "stream": true,
    "stream_options": {"include_usage": true},
    "presence_penalty": 0.5
  })";
  const RequestTranslation r = ChatRequestToMessages(body, {.model = "claude-sonnet-4-5"});
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.stream);
  const json expected = {
      {"model", "claude-sonnet-4-5"},
      {"max_tokens", 500},
      {"system", "Be brief.\n\nUse metric."},
      {"stop_sequences", {"END"}},
      {"temperature", 0.2},
      {"top_p", 1},
      {"metadata", {{"user_id", "u-9"}}},
      {"stream", true},
      {"tool_choice", {{"type", "any"}, {"disable_parallel_tool_use", true}}},
      {"tools",
       {{{"name", "get_weather"},
         {"description", "w"},
         {"input_schema", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}},
        {{"name", "get_time"},
         {"input_schema", {{"type", "object"}, {"properties", json::object()}}}}}},
      {"messages",
       {{{"role", "user"},
         {"content",
          {{{"type", "text"}, {"text", "Weather here?"}},
           {{"type", "image"},
            {"source", {{"type", "base64"}, {"media_type", "image/jpeg"}, {"data", "/9j/4AAQ"}}}},
           {{"type", "image"},
            {"source", {{"type", "url"}, {"url", "https://example.com/a.png"}}}}}}},
        {{"role", "assistant"},
         {"content",
          {{{"type", "tool_use"},
            {"id", "call_1"},
            {"name", "get_weather"},
            {"input", {{"city", "Paris"}}}},
           {{"type", "tool_use"},
            {"id", "call_2"},
            {"name", "get_time"},
            {"input", json::object()}}}}},
        // Both tool answers and the two user turns: one user message, tool results first.
        {{"role", "user"},
         {"content",
          {{{"type", "tool_result"}, {"tool_use_id", "call_1"}, {"content", "18C"}},
           {{"type", "tool_result"}, {"tool_use_id", "call_2"}, {"content", "noon"}},
           {{"type", "text"}, {"text", "thanks"}},
           {{"type", "text"}, {"text", "and tomorrow?"}}}}}}}};
  EXPECT_EQ(Parse(r.body), expected);
  EXPECT_EQ(r.dropped, std::vector<std::string>{"presence_penalty"});
}

TEST(ChatRequestToMessages, MaxTokensStopAndToolChoiceVariants) {
  auto translate = [](std::string extra) {
    const RequestTranslation r = ChatRequestToMessages(
        R"({"model":"g","messages":[{"role":"user","content":"hi"}])" + extra + "}",
        {.default_max_tokens = 777});
    EXPECT_EQ(r.error, "") << extra;
    return r.error.empty() ? Parse(r.body) : json();
  };
  EXPECT_EQ(translate("")["max_tokens"], 777);
  EXPECT_EQ(translate("")["model"], "g");
  EXPECT_EQ(translate(R"(,"max_tokens":12)")["max_tokens"], 12);
  EXPECT_EQ(translate(R"(,"max_tokens":null)")["max_tokens"], 777);
  EXPECT_EQ(translate(R"(,"stop":["a","b"])")["stop_sequences"], (json{"a", "b"}));
  EXPECT_FALSE(translate(R"(,"stop":null)").contains("stop_sequences"));
  const std::string tools = R"(,"tools":[{"type":"function","function":{"name":"f"}}])";
  EXPECT_EQ(translate(tools + R"(,"tool_choice":"auto")")["tool_choice"], (json{{"type", "auto"}}));
  EXPECT_EQ(translate(tools + R"(,"tool_choice":"none")")["tool_choice"], (json{{"type", "none"}}));
  EXPECT_EQ(
      translate(tools +
                R"(,"tool_choice":{"type":"function","function":{"name":"f"}})")["tool_choice"],
      (json{{"type", "tool"}, {"name", "f"}}));
  EXPECT_EQ(translate(tools + R"(,"parallel_tool_calls":false)")["tool_choice"],
            (json{{"type", "auto"}, {"disable_parallel_tool_use", true}}));
  EXPECT_FALSE(translate(tools + R"(,"parallel_tool_calls":true)").contains("tool_choice"));
  EXPECT_EQ(translate(R"(,"n":1)").size(), translate("").size());
}

TEST(ChatRequestToMessages, ReasoningEffortBecomesAThinkingBudget) {
  auto thinking = [](std::string extra) {
    const RequestTranslation r = ChatRequestToMessages(
        R"({"model":"g","messages":[{"role":"user","content":"hi"}])" + extra + "}",
        {.default_max_tokens = 32000});
    EXPECT_EQ(r.error, "");
    return Parse(r.body);
  };
  EXPECT_EQ(thinking(R"(,"reasoning_effort":"low")")["thinking"],
            (json{{"type", "enabled"}, {"budget_tokens", 1024}}));
  EXPECT_EQ(thinking(R"(,"reasoning_effort":"medium")")["thinking"],
            (json{{"type", "enabled"}, {"budget_tokens", 8192}}));
  const json high = thinking(R"(,"reasoning_effort":"high","temperature":0.3)");
  EXPECT_EQ(high["thinking"], (json{{"type", "enabled"}, {"budget_tokens", 24576}}));
  EXPECT_FALSE(high.contains("temperature"));  // Messages takes no temperature with thinking
  // The budget stays below max_tokens; below the 1024 minimum there is no thinking.
  EXPECT_EQ(thinking(R"(,"reasoning_effort":"high","max_tokens":10000)")["thinking"],
            (json{{"type", "enabled"}, {"budget_tokens", 9999}}));
  EXPECT_FALSE(thinking(R"(,"reasoning_effort":"high","max_tokens":1000)").contains("thinking"));
  EXPECT_FALSE(thinking(R"(,"reasoning_effort":"none")").contains("thinking"));
}

TEST(ChatRequestToMessages, BadRequestsAreErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"nope", "the body must be one JSON object"},
      {R"({"model":"g"})", "messages: required"},
      {R"({"messages":"hi"})", "messages: must be an array"},
      {R"({"messages":[{"role":"function","content":"x"}]})",
       "messages[0].role: must be system, developer, user, assistant or tool"},
      {R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}]})",
       "messages[0].tool_calls[0].function.arguments: must be a JSON object"},
      {R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]})",
       "messages[0].tool_calls[0].function.arguments: must be a JSON object"},
      {R"({"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]})",
       "messages[0].tool_calls[0]: needs an id and function.name"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"file:///etc/passwd"}}]}]})",
       "messages[0].content[0].image_url: must be a data URL or an http(s) URL"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]})",
       "messages[0].content[0].image_url: a data URL must be data:<media type>;base64,<data>"},
      {R"({"messages":[{"role":"tool","content":"x"}]})",
       "messages[0].tool_call_id: must be a non-empty string"},
      {R"({"messages":[{"role":"user","content":5}]})",
       "messages[0].content: must be a string, null or an array"},
      {R"({"messages":[],"tool_choice":"sometimes"})",
       "tool_choice: must be auto, required, none or a function"},
      {R"({"messages":[],"max_tokens":-1.5})", "max_tokens: must be an integer"},
      {R"({"messages":[],"stop":[1]})", "stop: must be a string or strings"},
  };
  for (const auto& [body, error] : cases) {
    EXPECT_EQ(ChatRequestToMessages(body, {}).error, error) << body;
  }
}

TEST(ChatRequestToMessages, EmptyMessagesAreDroppedNotSent) {
  const RequestTranslation r = ChatRequestToMessages(
      R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":""},{"role":"user","content":"again"}]})",
      {});
  ASSERT_EQ(r.error, "");
  // The empty assistant turn goes, so the two user turns merge.
  EXPECT_EQ(
      Parse(r.body)["messages"],
      (json{{{"role", "user"},
             {"content",
              {{{"type", "text"}, {"text", "hi"}}, {{"type", "text"}, {"text", "again"}}}}}}));
  EXPECT_EQ(r.dropped, std::vector<std::string>{"messages.empty"});
}

// A Messages request sent to a chat backend and back (as a chat client's request to an
// api: anthropic backend) keeps the conversation's structure and tool pairing.
TEST(RequestRoundTrip, MessagesToChatToMessages) {
  const std::string body = R"({"model":"claude","max_tokens":300,"system":"Be brief.",
    "tools":[{"name":"get_weather","description":"w","input_schema":{"type":"object"}}],
    "messages":[
      {"role":"user","content":"Weather?"},
      {"role":"assistant","content":[{"type":"text","text":"Checking."},
        {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"},
        {"type":"text","text":"thanks"}]}]})";
  const RequestTranslation chat = MessagesRequestToChat(body, {.model = "gpt"});
  ASSERT_EQ(chat.error, "");
  const RequestTranslation back = ChatRequestToMessages(chat.body, {.model = "claude"});
  ASSERT_EQ(back.error, "");
  const json expected = {
      {"model", "claude"},
      {"max_tokens", 300},
      {"system", "Be brief."},
      {"tools",
       {{{"name", "get_weather"}, {"description", "w"}, {"input_schema", {{"type", "object"}}}}}},
      {"messages",
       {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Weather?"}}}}},
        {{"role", "assistant"},
         {"content",
          {{{"type", "text"}, {"text", "Checking."}},
           {{"type", "tool_use"},
            {"id", "toolu_1"},
            {"name", "get_weather"},
            {"input", {{"city", "Paris"}}}}}}},
        {{"role", "user"},
         {"content",
          {{{"type", "tool_result"}, {"tool_use_id", "toolu_1"}, {"content", "18C"}},
           {{"type", "text"}, {"text", "thanks"}}}}}}}};
  EXPECT_EQ(Parse(back.body), expected);
}

TEST(ToolArguments, DeepOrHugeArgumentsAreRefusedNotCrashedOn) {
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  const json request = {
      {"messages",
       {{{"role", "assistant"},
         {"tool_calls",
          {{{"id", "c"},
            {"type", "function"},
            {"function", {{"name", "f"}, {"arguments", "{\"a\":" + deep + "}"}}}}}}}}}};
  EXPECT_EQ(ChatRequestToMessages(request.dump(), {}).error,
            "messages[0].tool_calls[0].function.arguments: must be a JSON object");
  const json answer = {
      {"choices",
       {{{"message",
          {{"role", "assistant"},
           {"tool_calls",
            {{{"id", "c"},
              {"type", "function"},
              {"function", {{"name", "f"}, {"arguments", "{\"a\":" + deep + "}"}}}}}}}}}}}};
  const auto m = ChatResponseToMessages(answer.dump(), "m");
  ASSERT_TRUE(m);
  EXPECT_EQ(Parse(*m)["content"][0]["input"],
            (json{{"_unparsed_arguments", "{\"a\":" + deep + "}"}}));
  // Big but shallow arguments (over the shared parser's size) translate.
  json big = json::object();
  for (int i = 0; i < 30000; ++i) big["k" + std::to_string(i)] = std::string(20, 'v');
  json answer2 = answer;
  answer2["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = big.dump();
  const auto m2 = ChatResponseToMessages(answer2.dump(), "m");
  ASSERT_TRUE(m2);
  EXPECT_EQ(Parse(*m2)["content"][0]["input"], big);
}

// --- whole answers ----------------------------------------------------------------------

TEST(ChatResponseToMessages, ReasoningTextAndToolCalls) {
  const std::string chat = R"({
    "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
      "role": "assistant", "content": "Let me check.", "reasoning_content": "need weather",
      "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "{\"city\":"}}]}}],
    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
              "prompt_tokens_details": {"cached_tokens": 60}}
  })";
  const auto m = ChatResponseToMessages(chat, "fallback");
  ASSERT_TRUE(m);
  const json expected = {
      {"id", "msg_abc123"},
      {"type", "message"},
      {"role", "assistant"},
      {"model", "gpt-4o"},
      {"content",
       {{{"type", "thinking"}, {"thinking", "need weather"}, {"signature", ""}},
        {{"type", "text"}, {"text", "Let me check."}},
        {{"type", "tool_use"},
         {"id", "call_1"},
         {"name", "get_weather"},
         {"input", {{"city", "Paris"}}}},
        {{"type", "tool_use"},
         {"id", "call_2"},
         {"name", "broken"},
         {"input", {{"_unparsed_arguments", "{\"city\":"}}}}}},
      {"stop_reason", "tool_use"},
      {"stop_sequence", nullptr},
      {"usage", {{"input_tokens", 40}, {"output_tokens", 20}, {"cache_read_input_tokens", 60}}}};
  EXPECT_EQ(Parse(*m), expected);
}

TEST(ChatResponseToMessages, FinishReasonsAndMissingParts) {
  auto stop = [](std::string_view finish) {
    const auto m = ChatResponseToMessages(
        R"({"id":"x","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":)" +
            std::string(finish) + "}]}",
        "m");
    EXPECT_TRUE(m);
    return m ? Parse(*m)["stop_reason"] : json();
  };
  EXPECT_EQ(stop(R"("stop")"), "end_turn");
  EXPECT_EQ(stop(R"("length")"), "max_tokens");
  EXPECT_EQ(stop(R"("tool_calls")"), "tool_use");
  EXPECT_EQ(stop(R"("content_filter")"), "refusal");
  EXPECT_EQ(stop("null"), "end_turn");
  const auto m = ChatResponseToMessages(
      R"({"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]})",
      "fallback-model");
  ASSERT_TRUE(m);
  const json j = Parse(*m);
  EXPECT_EQ(j["model"], "fallback-model");
  EXPECT_EQ(j["id"], "msg_proxy");
  EXPECT_EQ(j["content"], (json{{{"type", "text"}, {"text", "hi"}}}));
  EXPECT_EQ(j["usage"], (json{{"input_tokens", 0}, {"output_tokens", 0}}));
}

TEST(ChatResponseToMessages, NotAnAnswerIsNullopt) {
  for (std::string_view body :
       {"", "null", "[]", "{}", R"({"choices":[]})", R"({"choices":[1]})",
        R"({"choices":[{"text":"legacy"}]})", R"({"error":{"message":"x"}})", "{\"choices\":["}) {
    EXPECT_FALSE(ChatResponseToMessages(body, "m")) << body;
  }
}

TEST(MessagesResponseToChat, ThinkingTextToolUseAndUsage) {
  const std::string msg = R"({
    "id": "msg_01XYZ", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
      {"type": "thinking", "thinking": "hmm", "signature": "sig"},
      {"type": "text", "text": "Checking."},
      {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "n": [1, 2.5]}}],
    "stop_reason": "tool_use", "stop_sequence": null,
    "usage": {"input_tokens": 10, "cache_read_input_tokens": 50, "cache_creation_input_tokens": 5,
              "output_tokens": 7}
  })";
  const auto c = MessagesResponseToChat(msg, "fallback", 1700000123);
  ASSERT_TRUE(c);
  const json expected = {
      {"id", "chatcmpl-01XYZ"},
      {"object", "chat.completion"},
      {"created", 1700000123},
      {"model", "claude-sonnet-4-5"},
      {"choices",
       {{{"index", 0},
         {"finish_reason", "tool_calls"},
         {"message",
          {{"role", "assistant"},
           {"content", "Checking."},
           {"reasoning_content", "hmm"},
           {"tool_calls",
            {{{"id", "toolu_1"},
              {"type", "function"},
              {"function",
               {{"name", "get_weather"}, {"arguments", R"({"city":"Paris","n":[1,2.5]})"}}}}}}}}}}},
      {"usage",
       {{"prompt_tokens", 65},
        {"completion_tokens", 7},
        {"total_tokens", 72},
        {"prompt_tokens_details", {{"cached_tokens", 50}}}}}};
  EXPECT_EQ(Parse(*c), expected);
  // What the proxy records for an Anthropic answer: the usage of its chat translation,
  // prompt = input + cache read + cache write, cached = the cache read.
  EXPECT_EQ(ExtractUsageFromJson(*c), (TokenUsage{65, 7, 50}));
}

TEST(MessagesResponseToChat, StopReasonsAndNonAnswers) {
  auto finish = [](std::string_view stop) {
    const auto c = MessagesResponseToChat(
        R"({"type":"message","content":[{"type":"text","text":"x"}],"stop_reason":")" +
            std::string(stop) + "\"}",
        "m");
    EXPECT_TRUE(c);
    return c ? Parse(*c)["choices"][0]["finish_reason"] : json();
  };
  EXPECT_EQ(finish("end_turn"), "stop");
  EXPECT_EQ(finish("stop_sequence"), "stop");
  EXPECT_EQ(finish("max_tokens"), "length");
  EXPECT_EQ(finish("tool_use"), "tool_calls");
  EXPECT_EQ(finish("refusal"), "content_filter");
  EXPECT_EQ(finish("pause_turn"), "stop");
  const auto c = MessagesResponseToChat(R"({"type":"message","content":[]})", "fallback");
  ASSERT_TRUE(c);
  EXPECT_EQ(Parse(*c)["model"], "fallback");
  EXPECT_EQ(Parse(*c)["choices"][0]["message"], (json{{"role", "assistant"}, {"content", ""}}));
  for (std::string_view body :
       {"", "{}", R"({"type":"error","error":{"type":"api_error","message":"x"}})",
        R"({"type":"message","content":"text"})", "[1]"}) {
    EXPECT_FALSE(MessagesResponseToChat(body, "m")) << body;
  }
}

// --- errors -----------------------------------------------------------------------------

json ErrorType(int status, std::string_view body) {
  return Parse(ErrorBodyToMessages(status, body))["error"]["type"];
}

TEST(ErrorBodyToMessages, StatusMapping) {
  const std::vector<std::pair<int, std::string>> cases = {{400, "invalid_request_error"},
                                                          {401, "authentication_error"},
                                                          {403, "permission_error"},
                                                          {404, "not_found_error"},
                                                          {413, "request_too_large"},
                                                          {429, "rate_limit_error"},
                                                          {500, "api_error"},
                                                          {529, "overloaded_error"},
                                                          {503, "overloaded_error"},
                                                          {502, "api_error"},
                                                          {422, "invalid_request_error"}};
  for (const auto& [status, type] : cases) {
    const json j = Parse(ErrorBodyToMessages(status, "upstream exploded"));
    EXPECT_EQ(
        j,
        (json{{"type", "error"},
              {"error",
               {{"type", type}, {"message", "upstream answered HTTP " + std::to_string(status)}}}}))
        << status;
  }
}

TEST(ErrorBodyToMessages, OpenAiAndAnthropicBodies) {
  const std::string openai =
      R"({"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}})";
  EXPECT_EQ(Parse(ErrorBodyToMessages(400, openai)),
            (json{{"type", "error"},
                  {"error",
                   {{"type", "invalid_request_error"},
                    {"message", "This model's maximum context length is 128000 tokens."}}}}));
  // The OpenAI code decides over a status that says less.
  EXPECT_EQ(
      ErrorType(
          400,
          R"({"error":{"message":"k","type":"invalid_request_error","code":"invalid_api_key"}})"),
      "authentication_error");
  EXPECT_EQ(
      ErrorType(
          400,
          R"({"error":{"message":"q","type":"insufficient_quota","code":"insufficient_quota"}})"),
      "rate_limit_error");
  EXPECT_EQ(ErrorType(500, R"({"error":{"message":"s","type":"server_error","code":null}})"),
            "api_error");
  EXPECT_EQ(
      ErrorType(404, R"({"error":{"message":"no","type":"whatever","code":"model_not_found"}})"),
      "not_found_error");
  // Unknown OpenAI type: the status decides.
  EXPECT_EQ(ErrorType(429, R"({"error":{"message":"slow","type":"tokens","code":"x"}})"),
            "rate_limit_error");
  // Already Anthropic-shaped: kept.
  EXPECT_EQ(
      Parse(ErrorBodyToMessages(
          529, R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})")),
      (json{{"type", "error"},
            {"error", {{"type", "overloaded_error"}, {"message", "Overloaded"}}}}));
  // {"error":"text"} and {"message":...} bodies give their text.
  EXPECT_EQ(Parse(ErrorBodyToMessages(500, R"({"error":"boom"})"))["error"]["message"], "boom");
  EXPECT_EQ(Parse(ErrorBodyToMessages(500, R"({"message":"bang"})"))["error"]["message"], "bang");
  EXPECT_EQ(Parse(ErrorBodyToMessages(500, R"({"detail":"Not Found"})"))["error"]["message"],
            "Not Found");
}

TEST(ErrorBodyToMessages, MessagesAreSanitizedAndBounded) {
  const std::string key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef";
  const json j = Parse(ErrorBodyToMessages(
      401, R"({"error":{"message":"Incorrect API key provided: )" + key +
               R"(.\nline\ttwo","type":"invalid_request_error","code":"invalid_api_key"}})"));
  EXPECT_EQ(j["error"]["message"], "Incorrect API key provided: [redacted]. line two");
  EXPECT_EQ(Parse(ErrorBodyToMessages(
                401, R"({"error":{"message":"bad key sk-abcdefgh123"}})"))["error"]["message"],
            "bad key [redacted]");
  std::string words;
  for (int i = 0; i < 200; ++i) words += "word ";
  std::string m = Parse(
      ErrorBodyToMessages(500, R"({"error":{"message":")" + words + "\"}}"))["error"]["message"];
  EXPECT_EQ(m, words.substr(0, kMaxErrorMessageBytes));
  // Multi-byte characters are not split at the bound: 1 + 3 * 170 = 511 bytes fit.
  std::string euros = "a";
  for (int i = 0; i < 300; ++i) euros += "\xE2\x82\xAC";
  m = Parse(
      ErrorBodyToMessages(500, R"({"error":{"message":")" + euros + "\"}}"))["error"]["message"];
  EXPECT_EQ(m, euros.substr(0, 511));
  // Bytes that are not UTF-8 (a text body is not JSON, so the generic message) and in a
  // message given directly.
  EXPECT_EQ(Parse(ErrorBodyToMessages(500, "\xff\xfe not json \x01"))["error"]["message"],
            "upstream answered HTTP 500");
  EXPECT_EQ(MessagesErrorEvent("api_error", "a\xff\xC3"),
            "event: error\ndata: "
            "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"a??\"}}\n\n");
}

TEST(ErrorBodyToChat, ShapesAndTypes) {
  EXPECT_EQ(
      Parse(ErrorBodyToChat(
          429, R"({"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}})")),
      (json{{"error",
             {{"message", "Slow down"},
              {"type", "rate_limit_error"},
              {"code", "rate_limit_exceeded"}}}}));
  EXPECT_EQ(
      Parse(ErrorBodyToChat(
          529, R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})")),
      (json{{"error",
             {{"message", "Overloaded"}, {"type", "server_error"}, {"code", "overloaded"}}}}));
  EXPECT_EQ(Parse(ErrorBodyToChat(401, "denied")),
            (json{{"error",
                   {{"message", "upstream answered HTTP 401"},
                    {"type", "authentication_error"},
                    {"code", nullptr}}}}));
  EXPECT_EQ(Parse(ErrorBodyToChat(500, ""))["error"]["type"], "server_error");
  EXPECT_EQ(Parse(ErrorBodyToChat(413, ""))["error"]["code"], "request_too_large");
  EXPECT_EQ(
      Parse(ErrorBodyToChat(
          400, R"({"error":{"message":"m","type":"invalid_request_error","code":"c"}})")),
      (json{{"error", {{"message", "m"}, {"type", "invalid_request_error"}, {"code", "c"}}}}));
}

TEST(MessagesErrorEvent, OneErrorEvent) {
  const std::string e = MessagesErrorEvent("overloaded_error", "Overloaded\nnow");
  EXPECT_EQ(
      e,
      "event: error\n"
      R"(data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded now"}})"
      "\n\n");
}

// --- streams ----------------------------------------------------------------------------

struct Event {
  std::string name;
  json data;
};

// Splits a Messages SSE byte stream into events; each must be whole, with an event name
// equal to its data's "type".
std::vector<Event> MessagesEvents(std::string_view bytes) {
  std::vector<Event> events;
  SseParser parser;
  std::string framed(parser.Feed(bytes));
  EXPECT_EQ(parser.pending_bytes(), 0u) << "a partial event";
  size_t pos = 0;
  while (pos < framed.size()) {
    const size_t end = framed.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos) break;
    SseFields f;
    ReadSseFields(std::string_view(framed).substr(pos, end + 2 - pos), f);
    Event e{std::string(f.event), json::parse(f.data)};
    EXPECT_EQ(e.data.value("type", ""), e.name) << f.data;
    events.push_back(std::move(e));
    pos = end + 2;
  }
  return events;
}

// Chat SSE bytes -> the data of each event (JSON, or the string "[DONE]").
std::vector<json> ChatEvents(std::string_view bytes) {
  std::vector<json> events;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t end = bytes.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos) break;
    std::string_view event = bytes.substr(pos, end - pos);
    EXPECT_EQ(event.substr(0, 6), "data: ");
    event.remove_prefix(6);
    events.push_back(event == "[DONE]" ? json("[DONE]") : json::parse(event));
    pos = end + 2;
  }
  return events;
}

std::string ChatChunk(const json& delta, const json& finish = nullptr) {
  const json chunk = {{"id", "chatcmpl-7"},
                      {"object", "chat.completion.chunk"},
                      {"created", 1700000000},
                      {"model", "gpt-4o"},
                      {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}}};
  return "data: " + chunk.dump() + "\n\n";
}

// A chat stream with reasoning, text and two tool calls whose arguments come in pieces,
// then the finish chunk, the usage chunk and [DONE].
std::string ToolChatStream() {
  std::string s = ": keep-alive\n\n";
  s += ChatChunk({{"role", "assistant"}, {"content", ""}});
  s += ChatChunk({{"reasoning_content", "Two "}});
  s += ChatChunk({{"reasoning_content", "cities."}});
  s += ChatChunk({{"content", "Checking"}});
  s += ChatChunk({{"content", " both."}});
  s += ChatChunk({{"tool_calls",
                   {{{"index", 0},
                     {"id", "call_a"},
                     {"type", "function"},
                     {"function", {{"name", "get_weather"}, {"arguments", ""}}}}}}});
  s += ChatChunk({{"tool_calls", {{{"index", 0}, {"function", {{"arguments", "{\"city\":"}}}}}}});
  s += ChatChunk({{"tool_calls", {{{"index", 0}, {"function", {{"arguments", "\"Paris\"}"}}}}}}});
  s += ChatChunk({{"tool_calls",
                   {{{"index", 1},
                     {"id", "call_b"},
                     {"type", "function"},
                     {"function", {{"name", "get_weather"}, {"arguments", "{\"city\""}}}}}}});
  s += ChatChunk({{"tool_calls", {{{"index", 1}, {"function", {{"arguments", ":\"Rome\"}"}}}}}}});
  s += ChatChunk(json::object(), "tool_calls");
  s +=
      R"(data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":100}}})"
      "\n\n";
  s += "data: [DONE]\n\n";
  return s;
}

// Feeds a chat stream, split at `cuts`, through SseParser and the translator.
std::string RunChatStream(std::string_view stream, const std::vector<size_t>& cuts,
                          ChatStreamToMessages& t) {
  SseParser parser;
  SseFields f;
  std::string out;
  size_t at = 0;
  auto feed = [&](std::string_view piece) {
    std::string_view events = parser.Feed(piece);
    while (!events.empty()) {
      size_t end = events.find("\n\n");
      std::string_view one = events.substr(0, end + 2);
      events.remove_prefix(one.size());
      ReadSseFields(one, f);
      if (f.has_data) t.OnChunk(f.data, out);
    }
  };
  for (size_t cut : cuts) {
    const std::string piece(stream.substr(at, cut - at));
    feed(piece);
    at = cut;
  }
  const std::string rest(stream.substr(at));
  feed(rest);
  t.Finish(out);
  return out;
}

TEST(ChatResponseToMessages, StopAfterToolCallsIsToolUse) {
  const auto m = ChatResponseToMessages(
      R"({"choices":[{"finish_reason":"stop","message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}}]})",
      "m");
  ASSERT_TRUE(m);
  EXPECT_EQ(Parse(*m)["stop_reason"], "tool_use");
  EXPECT_EQ(Parse(*m)["content"],
            (json{{{"type", "tool_use"}, {"id", "c"}, {"name", "f"}, {"input", json::object()}}}));
  ChatStreamToMessages t("m");
  std::string out;
  t.OnChunk(
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]}}]})",
      out);
  t.OnChunk(R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})", out);
  t.Finish(out);
  const std::vector<Event> e = MessagesEvents(out);
  ASSERT_GE(e.size(), 2u);
  EXPECT_EQ(e[e.size() - 2].data["delta"]["stop_reason"], "tool_use");
}

TEST(ChatStreamToMessages, ThinkingTextAndToolCallsEventByEvent) {
  ChatStreamToMessages t("claude-sonnet-4-5");
  const std::string out = RunChatStream(ToolChatStream(), {}, t);
  const std::vector<Event> events = MessagesEvents(out);
  auto delta = [](int index, json d) {
    return json{{"type", "content_block_delta"}, {"index", index}, {"delta", std::move(d)}};
  };
  auto stop = [](int index) { return json{{"type", "content_block_stop"}, {"index", index}}; };
  const std::vector<json> expected = {
      {{"type", "message_start"},
       {"message",
        {{"id", "msg_7"},
         {"type", "message"},
         {"role", "assistant"},
         {"model", "claude-sonnet-4-5"},
         {"content", json::array()},
         {"stop_reason", nullptr},
         {"stop_sequence", nullptr},
         {"usage", {{"input_tokens", 0}, {"output_tokens", 0}}}}}},
      {{"type", "content_block_start"},
       {"index", 0},
       {"content_block", {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}}},
      delta(0, {{"type", "thinking_delta"}, {"thinking", "Two "}}),
      delta(0, {{"type", "thinking_delta"}, {"thinking", "cities."}}),
      stop(0),
      {{"type", "content_block_start"},
       {"index", 1},
       {"content_block", {{"type", "text"}, {"text", ""}}}},
      delta(1, {{"type", "text_delta"}, {"text", "Checking"}}),
      delta(1, {{"type", "text_delta"}, {"text", " both."}}),
      stop(1),
      {{"type", "content_block_start"},
       {"index", 2},
       {"content_block",
        {{"type", "tool_use"},
         {"id", "call_a"},
         {"name", "get_weather"},
         {"input", json::object()}}}},
      delta(2, {{"type", "input_json_delta"}, {"partial_json", "{\"city\":"}}),
      delta(2, {{"type", "input_json_delta"}, {"partial_json", "\"Paris\"}"}}),
      stop(2),
      {{"type", "content_block_start"},
       {"index", 3},
       {"content_block",
        {{"type", "tool_use"},
         {"id", "call_b"},
         {"name", "get_weather"},
         {"input", json::object()}}}},
      delta(3, {{"type", "input_json_delta"}, {"partial_json", "{\"city\""}}),
      delta(3, {{"type", "input_json_delta"}, {"partial_json", ":\"Rome\"}"}}),
      stop(3),
      {{"type", "message_delta"},
       {"delta", {{"stop_reason", "tool_use"}, {"stop_sequence", nullptr}}},
       {"usage", {{"input_tokens", 20}, {"cache_read_input_tokens", 100}, {"output_tokens", 30}}}},
      {{"type", "message_stop"}}};
  ASSERT_EQ(events.size(), expected.size()) << out;
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(events[i].data, expected[i]) << i;
  EXPECT_TRUE(t.done());
  EXPECT_EQ(t.usage(), (TokenUsage{120, 30, 100}));
  EXPECT_EQ(t.cached_tokens(), 100u);
  EXPECT_EQ(t.skipped(), 0u);
}

TEST(ChatStreamToMessages, EachChunkIsTranslatedAtOnce) {
  ChatStreamToMessages t("m");
  std::string out;
  t.OnChunk(R"({"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant"}}]})", out);
  EXPECT_EQ(MessagesEvents(out).size(), 1u);  // message_start
  out.clear();
  t.OnChunk(R"({"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hi"}}]})", out);
  std::vector<Event> e = MessagesEvents(out);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].name, "content_block_start");
  EXPECT_EQ(e[1].data["delta"]["text"], "Hi");
  out.clear();
  t.OnChunk(
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a"}}]}}]})",
      out);
  e = MessagesEvents(out);
  ASSERT_EQ(e.size(), 3u);  // text stop, tool start, the first fragment
  EXPECT_EQ(e[2].data["delta"], (json{{"type", "input_json_delta"}, {"partial_json", "{\"a"}}));
  out.clear();
  t.OnChunk(
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":1}"}}]}}]})",
      out);
  e = MessagesEvents(out);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].data["delta"]["partial_json"], "\":1}");
  out.clear();
  // finish_reason closes the block at once; message_delta waits for the usage chunk.
  t.OnChunk(R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})", out);
  e = MessagesEvents(out);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].name, "content_block_stop");
  EXPECT_FALSE(t.done());
  out.clear();
  t.OnChunk(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}})", out);
  e = MessagesEvents(out);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].data["usage"],
            (json{{"input_tokens", 5}, {"cache_read_input_tokens", 0}, {"output_tokens", 3}}));
  EXPECT_EQ(e[1].name, "message_stop");
  EXPECT_TRUE(t.done());
  out.clear();
  t.OnChunk("[DONE]", out);
  t.Finish(out);
  t.Fail("api_error", "late", out);
  EXPECT_EQ(out, "");
}

TEST(ChatStreamToMessages, DoneOrFinishWithoutUsageEndsTheMessage) {
  {
    ChatStreamToMessages t("m");
    std::string out;
    t.OnChunk(
        R"({"id":"chatcmpl-2","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"length"}]})",
        out);
    t.OnChunk("[DONE]", out);
    const std::vector<Event> e = MessagesEvents(out);
    ASSERT_EQ(e.size(), 6u);
    EXPECT_EQ(e[4].data["delta"]["stop_reason"], "max_tokens");
    EXPECT_EQ(e[5].name, "message_stop");
    std::string more;
    t.Finish(more);
    EXPECT_EQ(more, "");
  }
  {
    // No finish_reason, no [DONE]: Finish ends it with end_turn; nothing came, so it
    // starts the message too.
    ChatStreamToMessages t("m");
    std::string out;
    t.Finish(out);
    const std::vector<Event> e = MessagesEvents(out);
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0].name, "message_start");
    EXPECT_EQ(e[1].data["delta"]["stop_reason"], "end_turn");
    EXPECT_EQ(e[2].name, "message_stop");
    EXPECT_TRUE(t.done());
  }
  {
    // Usage in the finish chunk itself ends at once.
    ChatStreamToMessages t("m");
    std::string out;
    t.OnChunk(
        R"({"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}})",
        out);
    EXPECT_TRUE(t.done());
    EXPECT_EQ(MessagesEvents(out).back().name, "message_stop");
  }
}

TEST(ChatStreamToMessages, FailAndUpstreamErrorChunks) {
  {
    ChatStreamToMessages t("m");
    std::string out;
    t.OnChunk(R"({"choices":[{"index":0,"delta":{"content":"par"}}]})", out);
    out.clear();
    t.Fail("overloaded_error", "upstream broke", out);
    EXPECT_EQ(out, MessagesErrorEvent("overloaded_error", "upstream broke"));
    out.clear();
    t.OnChunk(R"({"choices":[{"index":0,"delta":{"content":"more"}}]})", out);
    t.Finish(out);
    EXPECT_EQ(out, "");
    EXPECT_FALSE(t.done());
    EXPECT_TRUE(t.failed());
  }
  {
    ChatStreamToMessages t("m");
    std::string out;
    t.OnChunk(R"({"error":{"message":"rate limited","type":"tokens"}})", out);
    const std::vector<Event> e = MessagesEvents(out);
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].data, (json{{"type", "error"},
                               {"error", {{"type", "api_error"}, {"message", "rate limited"}}}}));
  }
}

TEST(ChatStreamToMessages, HostileChunksAreSkippedAndCounted) {
  ChatStreamToMessages t("m");
  std::string out;
  t.OnChunk("{not json", out);
  t.OnChunk("\xff\xfe", out);
  t.OnChunk("42", out);
  t.OnChunk(std::string(300, '[') + std::string(300, ']'), out);
  EXPECT_EQ(out, "");
  EXPECT_EQ(t.skipped(), 4u);
  // Wrong types inside a chunk are ignored, not crashed on.
  t.OnChunk(R"({"choices":"x","usage":7})", out);
  t.OnChunk(R"({"choices":[{"index":0,"delta":{"content":5,"tool_calls":{"a":1}}}]})", out);
  t.OnChunk(
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"function":{"arguments":"lost"}}]}}]})",
      out);
  EXPECT_EQ(t.skipped(), 5u);  // arguments of a call never started
  t.OnChunk(R"({"choices":[{"index":0,"delta":{"content":"ok \u0000 \ud83d\ude00"}}]})", out);
  t.Finish(out);
  const std::vector<Event> e = MessagesEvents(out);
  ASSERT_EQ(e.size(), 6u);
  EXPECT_EQ(e[2].data["delta"]["text"], std::string("ok \0 \xF0\x9F\x98\x80", 9));
}

// The output of a stream cut in two anywhere equals the output of the whole stream.
TEST(ChatStreamToMessages, EveryByteOffsetGivesTheSameEvents) {
  const std::string stream = ToolChatStream();
  ChatStreamToMessages whole_t("m");
  const std::string whole = RunChatStream(stream, {}, whole_t);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    ChatStreamToMessages t("m");
    ASSERT_EQ(RunChatStream(stream, {cut}, t), whole) << cut;
  }
  // And one byte at a time.
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
  ChatStreamToMessages t("m");
  EXPECT_EQ(RunChatStream(stream, cuts, t), whole);
}

// An Anthropic stream as the Messages streaming reference shows it: text, then a tool_use
// whose input arrives as input_json_delta pieces, with pings and an unknown event.
std::string MessagesStream() {
  return "event: message_start\n"
         R"(data: {"type":"message_start","message":{"id":"msg_014p7","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_read_input_tokens":100,"cache_creation_input_tokens":8,"output_tokens":2}}})"
         "\n\n"
         "event: content_block_start\n"
         R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}})"
         "\n\n"
         "event: content_block_delta\n"
         R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Paris?"}})"
         "\n\n"
         "event: content_block_delta\n"
         R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}})"
         "\n\n"
         "event: content_block_stop\n"
         R"(data: {"type":"content_block_stop","index":0})"
         "\n\n"
         "event: ping\n"
         R"(data: {"type": "ping"})"
         "\n\n"
         "event: content_block_start\n"
         R"(data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}})"
         "\n\n"
         "event: content_block_delta\n"
         R"(data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay"}})"
         "\n\n"
         "event: content_block_stop\n"
         R"(data: {"type":"content_block_stop","index":1})"
         "\n\n"
         "event: content_block_start\n"
         R"(data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1","name":"get_weather","input":{}}})"
         "\n\n"
         "event: content_block_delta\n"
         R"(data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}})"
         "\n\n"
         "event: content_block_delta\n"
         R"(data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}})"
         "\n\n"
         "event: content_block_delta\n"
         R"(data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"Paris\"}"}})"
         "\n\n"
         "event: content_block_stop\n"
         R"(data: {"type":"content_block_stop","index":2})"
         "\n\n"
         "event: brand_new_event\n"
         R"(data: {"type":"brand_new_event","x":1})"
         "\n\n"
         "event: message_delta\n"
         R"(data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}})"
         "\n\n"
         "event: message_stop\n"
         R"(data: {"type":"message_stop"})"
         "\n\n";
}

std::string RunMessagesStream(std::string_view stream, const std::vector<size_t>& cuts,
                              MessagesStreamToChat& t) {
  SseParser parser;
  SseFields f;
  std::string out;
  size_t at = 0;
  auto feed = [&](std::string_view piece) {
    std::string_view events = parser.Feed(piece);
    while (!events.empty()) {
      size_t end = events.find("\n\n");
      std::string_view one = events.substr(0, end + 2);
      events.remove_prefix(one.size());
      ReadSseFields(one, f);
      t.OnEvent(f.event, f.data, out);
    }
  };
  for (size_t cut : cuts) {
    const std::string piece(stream.substr(at, cut - at));
    feed(piece);
    at = cut;
  }
  const std::string rest(stream.substr(at));
  feed(rest);
  t.Finish(out);
  return out;
}

json Chunk(json delta, json finish = nullptr) {
  return {{"id", "chatcmpl-014p7"},
          {"object", "chat.completion.chunk"},
          {"created", 1700000555},
          {"model", "claude-sonnet-4-5"},
          {"choices", {{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}}}};
}

TEST(MessagesStreamToChat, TextThinkingToolUseAndUsage) {
  MessagesStreamToChat t("", true, 1700000555);
  const std::string out = RunMessagesStream(MessagesStream(), {}, t);
  const std::vector<json> events = ChatEvents(out);
  const std::vector<json> expected = {
      Chunk({{"role", "assistant"}, {"content", ""}}),
      Chunk({{"reasoning_content", "Paris?"}}),
      Chunk({{"content", "Okay"}}),
      Chunk({{"tool_calls",
              {{{"index", 0},
                {"id", "toolu_01T1"},
                {"type", "function"},
                {"function", {{"name", "get_weather"}, {"arguments", ""}}}}}}}),
      Chunk({{"tool_calls", {{{"index", 0}, {"function", {{"arguments", ""}}}}}}}),
      Chunk({{"tool_calls", {{{"index", 0}, {"function", {{"arguments", "{\"location\":"}}}}}}}),
      Chunk({{"tool_calls", {{{"index", 0}, {"function", {{"arguments", " \"Paris\"}"}}}}}}}),
      Chunk(json::object(), "tool_calls"),
      {{"id", "chatcmpl-014p7"},
       {"object", "chat.completion.chunk"},
       {"created", 1700000555},
       {"model", "claude-sonnet-4-5"},
       {"choices", json::array()},
       {"usage",
        {{"prompt_tokens", 580},
         {"completion_tokens", 89},
         {"total_tokens", 669},
         {"prompt_tokens_details", {{"cached_tokens", 100}}}}}},
      "[DONE]"};
  ASSERT_EQ(events.size(), expected.size()) << out;
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(events[i], expected[i]) << i;
  EXPECT_TRUE(t.done());
  EXPECT_FALSE(t.error());
  // Anthropic's input_tokens (472) leaves out the cache read (100) and write (8): the
  // prompt tokens are all three, the cached ones the read.
  EXPECT_EQ(t.usage(), (TokenUsage{580, 89, 100}));
  EXPECT_EQ(t.cached_tokens(), 100u);
  EXPECT_EQ(t.skipped(), 0u);
}

TEST(MessagesStreamToChat, WithoutIncludeUsageAndOneEventAtATime) {
  MessagesStreamToChat t("fallback", false, 7);
  std::string out;
  t.OnEvent(
      "message_start",
      R"({"type":"message_start","message":{"id":"msg_1","model":"claude-x","usage":{"input_tokens":3}}})",
      out);
  ASSERT_EQ(ChatEvents(out).size(), 1u);
  EXPECT_EQ(ChatEvents(out)[0]["model"], "fallback");  // the option's model wins
  out.clear();
  t.OnEvent("content_block_delta",
            R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"A"}})",
            out);
  ASSERT_EQ(ChatEvents(out).size(), 1u);
  EXPECT_EQ(ChatEvents(out)[0]["choices"][0]["delta"], (json{{"content", "A"}}));
  out.clear();
  t.OnEvent(
      "message_delta",
      R"({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":4}})",
      out);
  ASSERT_EQ(ChatEvents(out).size(), 1u);
  EXPECT_EQ(ChatEvents(out)[0]["choices"][0]["finish_reason"], "length");
  out.clear();
  t.OnEvent("message_stop", R"({"type":"message_stop"})", out);
  EXPECT_EQ(out, "data: [DONE]\n\n");
  EXPECT_EQ(t.usage(), (TokenUsage{3, 4}));
  out.clear();
  t.OnEvent(
      "content_block_delta",
      R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}})",
      out);
  EXPECT_EQ(out, "");
}

TEST(MessagesStreamToChat, ErrorEventBecomesAnErrorChunk) {
  MessagesStreamToChat t("m", true);
  std::string out;
  t.OnEvent("message_start", R"({"type":"message_start","message":{"id":"msg_1"}})", out);
  out.clear();
  t.OnEvent("error",
            R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})", out);
  EXPECT_EQ(
      ChatEvents(out),
      (std::vector<json>{
          {{"error",
            {{"message", "Overloaded"}, {"type", "server_error"}, {"code", "overloaded"}}}}}));
  EXPECT_TRUE(t.error());
  EXPECT_FALSE(t.done());
  out.clear();
  t.OnEvent("message_stop", R"({"type":"message_stop"})", out);
  t.Finish(out);
  EXPECT_EQ(out, "");
}

TEST(MessagesStreamToChat, TruncatedStreamIsNotDone) {
  const std::string stream = MessagesStream();
  const std::string cut = stream.substr(0, stream.find("event: message_delta"));
  MessagesStreamToChat t("m", true);
  const std::string out = RunMessagesStream(cut, {}, t);
  EXPECT_FALSE(t.done());
  for (const json& e : ChatEvents(out)) EXPECT_NE(e, json("[DONE]"));
}

TEST(MessagesStreamToChat, HostileEventsAreSkipped) {
  MessagesStreamToChat t("m", true);
  std::string out;
  t.OnEvent("message_start", "{broken", out);
  t.OnEvent("", "\xff", out);
  t.OnEvent("ping", "", out);  // a ping without data is no fault
  EXPECT_EQ(t.skipped(), 2u);
  t.OnEvent(
      "content_block_delta",
      R"({"type":"content_block_delta","index":9,"delta":{"type":"input_json_delta","partial_json":"x"}})",
      out);
  t.OnEvent(
      "content_block_start",
      R"({"type":"content_block_start","index":99999999999,"content_block":{"type":"tool_use","id":"t","name":"n"}})",
      out);
  EXPECT_EQ(t.skipped(), 4u);
  t.OnEvent("message_delta", R"({"type":"message_delta","delta":"x","usage":[1]})", out);
  // No message_start yet: chunks still carry one id; the event name stands in for a missing type.
  t.OnEvent("message_stop", "{}", out);
  EXPECT_TRUE(t.done());
  const std::vector<json> events = ChatEvents(out);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["id"], "chatcmpl-proxy");
  EXPECT_EQ(events[0]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(events[2], "[DONE]");
}

TEST(MessagesStreamToChat, EveryByteOffsetGivesTheSameChunks) {
  const std::string stream = MessagesStream();
  MessagesStreamToChat whole_t("m", true, 1);
  const std::string whole = RunMessagesStream(stream, {}, whole_t);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    MessagesStreamToChat t("m", true, 1);
    ASSERT_EQ(RunMessagesStream(stream, {cut}, t), whole) << cut;
  }
}

// Round trip: a chat stream translated to Messages and back keeps the text, reasoning,
// tool calls (fragments one for one) and the finish reason.
TEST(Streams, ChatToMessagesToChatKeepsTheFragments) {
  ChatStreamToMessages there("m");
  const std::string messages = RunChatStream(ToolChatStream(), {}, there);
  MessagesStreamToChat back("m", false, 1700000000);
  const std::string chat = RunMessagesStream(messages, {}, back);
  std::string text, reasoning, args0, args1;
  std::vector<std::string> fragments;
  json finish;
  for (const json& e : ChatEvents(chat)) {
    if (e == json("[DONE]")) continue;
    const json& c = e["choices"][0];
    const json& d = c["delta"];
    text += d.value("content", "");
    reasoning += d.value("reasoning_content", "");
    if (d.contains("tool_calls")) {
      const json& tc = d["tool_calls"][0];
      const std::string a = tc["function"].value("arguments", "");
      (tc["index"] == 0 ? args0 : args1) += a;
      if (!tc.contains("id")) fragments.push_back(a);
    }
    if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  EXPECT_EQ(text, "Checking both.");
  EXPECT_EQ(reasoning, "Two cities.");
  EXPECT_EQ(args0, "{\"city\":\"Paris\"}");
  EXPECT_EQ(args1, "{\"city\":\"Rome\"}");
  EXPECT_EQ(fragments,
            (std::vector<std::string>{"{\"city\":", "\"Paris\"}", "{\"city\"", ":\"Rome\"}"}));
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_TRUE(back.done());
}

// --- count_tokens estimate --------------------------------------------------------------

TEST(EstimateMessagesInputTokens, DocumentedMethod) {
  // Text bytes: system 8 ("You help") + "Hi there" 8 + tool_use name 3 ("get") +
  // input {"a":1} 7 + tool_result "done" 4 + tool name 3 + description 5 ("tells") +
  // schema {"type":"object"} 17 = 55 -> ceil(55/4) = 14; 3 messages -> 12; 1 image -> 85.
  const std::string body = R"({"model":"m","max_tokens":5,"system":"You help",
    "tools":[{"name":"get","description":"tells","input_schema":{"type": "object"}}],
    "messages":[
      {"role":"user","content":[{"type":"text","text":"Hi there"},
        {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
      {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"get","input":{"a": 1}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"done"}]}]}]})";
  EXPECT_EQ(EstimateMessagesInputTokens(body), std::optional<uint64_t>(14 + 12 + 85));
  EXPECT_EQ(EstimateMessagesInputTokens(R"({"messages":[]})"), std::optional<uint64_t>(0));
  EXPECT_EQ(EstimateMessagesInputTokens(R"({"messages":[{"role":"user","content":"abcde"}]})"),
            std::optional<uint64_t>(2 + 4));
  EXPECT_FALSE(EstimateMessagesInputTokens("[]"));
  EXPECT_FALSE(EstimateMessagesInputTokens(R"({"messages":"x"})"));
  EXPECT_FALSE(EstimateMessagesInputTokens("{"));
}

}  // namespace
}  // namespace llmproxy
