// libFuzzer target: the Anthropic Messages <-> chat translation
// (dataplane/protocols/anthropic_translate.h). Every function gets the same bytes. Checks:
//  - a request translation is an error or one JSON object, never both; at most kMaxDropped
//    names;
//  - answers and error bodies that come out are JSON (error messages within their bound);
//  - both stream translators give the same output whether the stream is cut or not, every
//    event they write is whole and JSON (Messages events named as their "type"), and the
//    Messages events follow the streaming grammar: message_start first, blocks opened and
//    closed in index order with deltas only inside the open block, message_stop last.
// Layout: byte 0 = option bits, byte 1 = where to cut (a fraction of the rest, /255),
// then the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "dataplane/protocols/anthropic_translate.h"
#include "dataplane/protocols/sse_parser.h"

namespace {

using llmproxy::SseFields;
using llmproxy::SseParser;
using nlohmann::json;

void Check(bool cond, const char* what, std::string_view input) {
  if (cond) return;
  std::fprintf(stderr, "fuzz invariant failed: %s\ninput (%zu bytes): %.*s\n", what, input.size(),
               static_cast<int>(input.size() < 512 ? input.size() : 512), input.data());
  std::abort();
}

json ParseOrDiscard(std::string_view s) { return json::parse(s, nullptr, false); }

void CheckRequest(const llmproxy::RequestTranslation& r, std::string_view input) {
  Check(r.error.empty() != r.body.empty(), "error xor body", input);
  Check(r.dropped.size() <= llmproxy::kMaxDropped, "dropped bounded", input);
  if (!r.body.empty()) Check(ParseOrDiscard(r.body).is_object(), "body is an object", input);
}

// The end of the first event in `s` (just past its blank line; lines end in LF, CRLF or
// CR), as SseParser frames them.
size_t EventEnd(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t eol = s.find_first_of("\r\n", pos);
    if (eol == std::string_view::npos) return s.size();
    const size_t next = eol + (s.substr(eol, 2) == "\r\n" ? 2 : 1);
    if (eol == pos) return next;  // the blank line
    pos = next;
  }
  return s.size();
}

// Feeds `stream` (cut at `cut`) through SseParser; calls on(fields) per complete event.
template <typename F>
void Frame(std::string_view stream, size_t cut, F on) {
  SseParser parser;
  SseFields f;
  auto feed = [&](std::string_view events) {
    while (!events.empty()) {
      const size_t end = EventEnd(events);
      ReadSseFields(events.substr(0, end), f);
      on(f);
      events.remove_prefix(end);
    }
  };
  const std::string a(stream.substr(0, cut)), b(stream.substr(cut));
  feed(parser.Feed(a));
  feed(parser.Feed(b));
}

std::string ChatToMessages(std::string_view stream, size_t cut) {
  llmproxy::ChatStreamToMessages t("m");
  std::string out;
  Frame(stream, cut, [&](const SseFields& f) {
    if (f.has_data) t.OnChunk(f.data, out);
  });
  t.Finish(out);
  return out;
}

std::string MessagesToChat(std::string_view stream, size_t cut, bool include_usage) {
  llmproxy::MessagesStreamToChat t("m", include_usage, 1);
  std::string out;
  Frame(stream, cut, [&](const SseFields& f) { t.OnEvent(f.event, f.data, out); });
  t.Finish(out);
  return out;
}

// The Messages events we wrote, checked one by one against the streaming grammar.
void CheckMessagesEvents(std::string_view out, std::string_view input) {
  bool started = false, stopped = false, failed = false, open = false;
  int64_t index = -1;
  size_t pos = 0;
  while (pos < out.size()) {
    const size_t end = out.find("\n\n", pos);
    Check(end != std::string_view::npos, "whole events", input);
    SseFields f;
    ReadSseFields(out.substr(pos, end + 2 - pos), f);
    pos = end + 2;
    const json data = ParseOrDiscard(f.data);
    Check(data.is_object() && data.value("type", "") == f.event, "event named as its type", input);
    Check(!stopped && !failed, "nothing after message_stop or error", input);
    if (f.event == "error") {
      failed = true;
      continue;
    }
    if (f.event == "message_start") {
      Check(!started, "one message_start", input);
      started = true;
      continue;
    }
    Check(started, "message_start first", input);
    if (f.event == "content_block_start") {
      Check(!open && data["index"] == index + 1, "blocks in order", input);
      open = true;
      index = data["index"];
    } else if (f.event == "content_block_delta") {
      Check(open && data["index"] == index, "delta in the open block", input);
    } else if (f.event == "content_block_stop") {
      Check(open && data["index"] == index, "stop of the open block", input);
      open = false;
    } else if (f.event == "message_delta") {
      Check(!open, "blocks closed before message_delta", input);
    } else if (f.event == "message_stop") {
      stopped = true;
    }
  }
  Check(stopped || failed, "the stream ends", input);
}

void CheckChatEvents(std::string_view out, std::string_view input) {
  size_t pos = 0;
  bool done = false;
  while (pos < out.size()) {
    const size_t end = out.find("\n\n", pos);
    Check(end != std::string_view::npos && out.substr(pos, 6) == "data: ", "whole data events",
          input);
    const std::string_view data = out.substr(pos + 6, end - pos - 6);
    pos = end + 2;
    Check(!done, "nothing after [DONE]", input);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    Check(ParseOrDiscard(data).is_object(), "chunk is an object", input);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2) return 0;
  const uint8_t options = bytes[0];
  const std::string input(reinterpret_cast<const char*>(bytes) + 2, size - 2);
  const size_t cut = input.size() * bytes[1] / 255;

  const auto style = static_cast<llmproxy::ReasoningStyle>(options % 3);
  CheckRequest(llmproxy::MessagesRequestToChat(
                   input, {.model = "up", .include_usage = (options & 4) != 0, .reasoning = style}),
               input);
  CheckRequest(llmproxy::ChatRequestToMessages(input, {.model = "", .default_max_tokens = options}),
               input);
  (void)llmproxy::EstimateMessagesInputTokens(input);

  if (auto m = llmproxy::ChatResponseToMessages(input, "m")) {
    Check(ParseOrDiscard(*m).is_object(), "Messages answer is JSON", input);
  }
  if (auto c = llmproxy::MessagesResponseToChat(input, "m", 1)) {
    Check(ParseOrDiscard(*c).is_object(), "chat answer is JSON", input);
  }
  const int status = 400 + options;
  const json me = ParseOrDiscard(llmproxy::ErrorBodyToMessages(status, input));
  Check(me.is_object() &&
            me["error"]["message"].get<std::string>().size() <= llmproxy::kMaxErrorMessageBytes,
        "Messages error body", input);
  const json ce = ParseOrDiscard(llmproxy::ErrorBodyToChat(status, input));
  Check(ce.is_object() && ce["error"]["message"].is_string(), "chat error body", input);

  const std::string whole = ChatToMessages(input, input.size());
  Check(ChatToMessages(input, cut) == whole, "chat stream: cut changes nothing", input);
  CheckMessagesEvents(whole, input);

  const bool include_usage = (options & 8) != 0;
  const std::string chat = MessagesToChat(input, input.size(), include_usage);
  Check(MessagesToChat(input, cut, include_usage) == chat, "Messages stream: cut changes nothing",
        input);
  CheckChatEvents(chat, input);
  return 0;
}
