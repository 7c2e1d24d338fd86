// libFuzzer target: the Responses <-> chat translators (responses_translate.h). The input
// is read four ways: as a Responses request body, as a whole chat answer, as an error body
// and as an upstream chat SSE stream (through SseParser, whole and cut where the fuzzer's
// own bytes say). Checks:
//  - a request gives exactly one of a body and an error; the body is a JSON object with a
//    "messages" array; `dropped` holds at most 16 distinct names; the echo is JSON members;
//  - a whole answer, when accepted, is a response object with a known status and an output
//    array; an error body always comes back as {"error":{"message": string, ...}};
//  - the stream translation is the same whether the stream is cut or not, and whether
//    OnEvents or a second SseParser splits the parser's output into events; every event is
//    "event: T\ndata: {...}\n\n" with data.type T and sequence numbers 0, 1, 2..., and it
//    ends with exactly one terminal event (completed, incomplete or failed).
// Every output is parsed by nlohmann with UTF-8 checks on (the bytes must be valid JSON
// for any client). Layout: byte 0 = error status selector, byte 1 = the number N (% 16) of
// cut steps that follow, one byte each, then the data.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/protocols/responses_translate.h"
#include "dataplane/protocols/sse_parser.h"

namespace {

using llmproxy::ChatStreamToResponses;
using nlohmann::json;

void Check(bool cond, const char* what, std::string_view input) {
  if (cond) return;
  std::fprintf(stderr, "fuzz invariant failed: %s\ninput (%zu bytes): %.*s\n", what, input.size(),
               static_cast<int>(input.size() < 512 ? input.size() : 512), input.data());
  std::abort();
}

json Parse(std::string_view s) { return json::parse(s, nullptr, /*allow_exceptions=*/false); }

bool ValidUtf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

void Request(std::string_view body) {
  for (const bool drop : {false, true}) {
    const llmproxy::RequestTranslation r =
        llmproxy::ResponsesRequestToChat(body, {.model = "m", .drop_unsupported_tools = drop});
    Check(r.error.empty() != r.body.empty(), "a request gives a body or an error", body);
    Check(ValidUtf8(r.error), "the error message is valid UTF-8", body);
    if (r.error.empty()) {
      const json chat = Parse(r.body);
      Check(chat.is_object() && chat.contains("messages") && chat["messages"].is_array() &&
                !chat["messages"].empty(),
            "the chat body is an object with messages", body);
      Check(chat.value("stream", false) == r.stream, "stream flag matches the body", body);
    }
    Check(r.dropped.size() <= 16, "at most 16 dropped names", body);
    for (size_t i = 0; i < r.dropped.size(); ++i) {
      Check(ValidUtf8(r.dropped[i]), "dropped names are valid UTF-8", body);
      for (size_t j = 0; j < i; ++j) Check(r.dropped[i] != r.dropped[j], "dropped distinct", body);
    }
  }
  const llmproxy::ResponsesEcho echo = llmproxy::EchoOfResponsesRequest(body);
  Check(Parse("{" + echo.fields_json + "}").is_object(), "the echo is JSON members", body);
}

void Whole(std::string_view chat, const llmproxy::ResponsesEcho& echo) {
  if (std::optional<std::string> out = llmproxy::ChatResponseToResponses(chat, echo, "m")) {
    const json r = Parse(*out);
    Check(r.is_object(), "the response is a JSON object", chat);
    Check(r["status"] == "completed" || r["status"] == "incomplete", "a final status", chat);
    Check(r["output"].is_array(), "output is an array", chat);
  }
}

void Error(int status, std::string_view body) {
  const json e = Parse(llmproxy::ErrorBodyToResponses(status, body));
  Check(e.is_object() && e["error"].is_object() && e["error"]["message"].is_string(),
        "an error body has error.message", body);
}

// `on_events`: the parser's output goes to ChatStreamToResponses::OnEvents, which splits
// it itself; otherwise a second parser splits it (below).
std::string Stream(std::string_view stream, const std::vector<size_t>& cuts,
                   const llmproxy::ResponsesEcho& echo, bool on_events) {
  llmproxy::SseParser parser;
  ChatStreamToResponses t(echo, "m");
  std::string out;
  llmproxy::SseFields fields;
  // SseParser returns whole events, several at once; a second parser fed its output one
  // byte at a time returns each event alone (the relay's integrator has the same task).
  auto forward = [&](std::string_view events) {
    if (on_events) {
      t.OnEvents(events, out);
      return;
    }
    llmproxy::SseParser again;
    size_t i = 0;
    while (i < events.size()) {
      const std::string_view e = again.Feed(events.substr(i, 1));
      ++i;
      if (e.empty()) continue;
      const std::string raw(e);
      llmproxy::ReadSseFields(raw, fields);
      if (fields.has_data) t.OnChunk(fields.data, out);
    }
    const std::string rest(again.Finish());
    if (!rest.empty()) {
      llmproxy::ReadSseFields(rest, fields);
      if (fields.has_data) t.OnChunk(fields.data, out);
    }
  };
  size_t at = 0;
  for (size_t cut : cuts) {
    const std::string piece(stream.substr(at, cut - at));  // stale views show under ASan
    forward(parser.Feed(piece));
    at = cut;
  }
  const std::string rest(stream.substr(at));
  forward(parser.Feed(rest));
  forward(parser.Finish());
  t.Finish(out);
  Check(t.done(), "finished", stream);
  return out;
}

void CheckEvents(std::string_view out, std::string_view input) {
  uint64_t seq = 0;
  size_t terminal = 0;
  bool last_terminal = false;
  while (!out.empty()) {
    const size_t end = out.find("\n\n");
    Check(end != std::string_view::npos, "events end in a blank line", input);
    const std::string_view raw = out.substr(0, end);
    out.remove_prefix(end + 2);
    Check(raw.substr(0, 7) == "event: ", "an event line first", input);
    const size_t nl = raw.find('\n');
    Check(nl != std::string_view::npos && raw.substr(nl + 1, 6) == "data: ", "then data", input);
    const std::string_view type = raw.substr(7, nl - 7);
    const json data = Parse(raw.substr(nl + 7));
    Check(data.is_object() && data["type"] == type, "data is an object of that type", input);
    Check(data["sequence_number"] == seq++, "sequence numbers count up from 0", input);
    last_terminal =
        type == "response.completed" || type == "response.incomplete" || type == "response.failed";
    terminal += last_terminal ? 1 : 0;
  }
  Check(terminal == 1 && last_terminal, "one terminal event, last", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static constexpr int kStatuses[] = {400, 401, 403, 404, 413, 422, 429, 500, 502, 503};
  const int status = kStatuses[data[0] % 10];
  const size_t ncuts = data[1] % 16;
  if (size < 2 + ncuts) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data + 2 + ncuts), size - 2 - ncuts);
  std::vector<size_t> cuts;
  size_t at = 0;
  for (size_t i = 0; i < ncuts; ++i) {
    at += data[2 + i];
    if (at > input.size()) break;
    cuts.push_back(at);
  }

  Request(input);
  const llmproxy::ResponsesEcho echo = llmproxy::EchoOfResponsesRequest(input);
  Whole(input, echo);
  Error(status, input);

  const std::string whole = Stream(input, {}, echo, false);
  CheckEvents(whole, input);
  Check(Stream(input, cuts, echo, false) == whole, "same events, whole or cut", input);
  Check(Stream(input, cuts, echo, true) == whole, "OnEvents splits events as SseParser does",
        input);
  return 0;
}
