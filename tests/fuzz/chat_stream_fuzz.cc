// libFuzzer target: the chat-stream hooks (chat_stream.h) inside SseParser. The input is
// an upstream chat stream; the fuzzer's own bytes also pick where it is cut. Checks:
//  - the tracker never changes the bytes forwarded, and sees the same first token, text,
//    finish, tool call, continuability, id and created whether the stream is cut or not;
//  - the first-token-only mode agrees with the full mode on first_token();
//  - the continuation filter forwards the same bytes cut or not, filtering its own output
//    again changes nothing, and what the client sees carries only the original id and
//    created;
//  - AppendAssistantPrefill, when it accepts the stream bytes as a body, only inserts.
// Layout: byte 0 = option bits (0x80 scales cut steps by 64), byte 1 = the number N
// (% 16) of cut steps that follow, one byte each, then the stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/protocols/chat_stream.h"
#include "dataplane/protocols/sse_parser.h"

namespace {

using llmproxy::ChatStreamTracker;
using llmproxy::ContinuationFilter;
using llmproxy::SseParser;
using llmproxy::SseParserOptions;

constexpr std::string_view kId = "chatcmpl-orig";
constexpr int64_t kCreated = 1700000000;

void Check(bool cond, const char* what, std::string_view stream) {
  if (cond) return;
  std::fprintf(stderr, "fuzz invariant failed: %s\nstream (%zu bytes): %.*s\n", what, stream.size(),
               static_cast<int>(stream.size() < 512 ? stream.size() : 512), stream.data());
  std::abort();
}

std::string Feed(std::string_view stream, const std::vector<size_t>& cuts,
                 SseParserOptions options) {
  SseParser parser(options);
  std::string out;
  size_t at = 0;
  for (size_t cut : cuts) {
    const std::string owned(stream.substr(at, cut - at));  // stale views show under ASan
    out.append(parser.Feed(owned));
    at = cut;
  }
  const std::string rest(stream.substr(at));
  out.append(parser.Feed(rest));
  out.append(parser.Finish());
  return out;
}

struct Facts {
  bool first_token, finished, tool_call, continuable, done;
  std::string text, id;
  int64_t created;
  bool operator==(const Facts&) const = default;
};

Facts FactsOf(const ChatStreamTracker& t) {
  return Facts{t.first_token(), t.finished(), t.in_tool_call(),    t.continuable(),
               t.done(),        t.text(),     std::string(t.id()), t.created()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const size_t ncuts = data[1] % 16;
  if (size < 2 + ncuts) return 0;
  const std::string_view stream(reinterpret_cast<const char*>(data + 2 + ncuts), size - 2 - ncuts);
  std::vector<size_t> cuts;
  size_t at = 0;
  for (size_t i = 0; i < ncuts; ++i) {
    at += (flags & 0x80) ? data[2 + i] * size_t{64} : data[2 + i];
    if (at > stream.size()) break;
    cuts.push_back(at);
  }
  const size_t no_limit = stream.size() + 16;  // framing never given up

  // Tracker alone: bytes untouched, same facts cut or whole, modes agree.
  ChatStreamTracker whole, split, quick({.text = false});
  Check(Feed(stream, {}, {.max_event_bytes = no_limit, .tracker = &whole}) == stream,
        "the tracker does not change bytes", stream);
  Check(Feed(stream, cuts, {.max_event_bytes = no_limit, .tracker = &split}) == stream,
        "the tracker does not change bytes, cut", stream);
  Feed(stream, cuts, {.max_event_bytes = no_limit, .tracker = &quick});
  Check(FactsOf(whole) == FactsOf(split), "same tracker facts, whole or cut", stream);
  Check(whole.first_token() == quick.first_token(), "both modes agree on the first token", stream);

  // Filter (and a tracker of what the client sees).
  ContinuationFilter f1(kId, kCreated), f2(kId, kCreated), f3(kId, kCreated);
  ChatStreamTracker seen;
  const std::string once =
      Feed(stream, {}, {.max_event_bytes = no_limit, .tracker = &seen, .continuation = &f1});
  Check(Feed(stream, cuts, {.max_event_bytes = no_limit, .continuation = &f2}) == once,
        "same filtered bytes, whole or cut", stream);
  Check(Feed(once, {}, {.max_event_bytes = once.size() + 16, .continuation = &f3}) == once,
        "filtering the filtered stream changes nothing", stream);
  Check(seen.id().empty() || seen.id() == kId, "the client sees only the original id", stream);
  Check(seen.created() == 0 || seen.created() == kCreated,
        "the client sees only the original created", stream);

  // With a small event limit nothing crashes and the tracker gives up continuing.
  ChatStreamTracker limited;
  ContinuationFilter f4(kId, kCreated);
  Feed(stream, cuts, {.max_event_bytes = 64, .tracker = &limited, .continuation = &f4});

  if (auto out = llmproxy::AppendAssistantPrefill(stream, whole.text())) {
    Check(out->size() > stream.size(), "the prefill adds bytes", stream);
    size_t k = 0;
    while (k < stream.size() && (*out)[k] == stream[k]) ++k;
    const size_t added = out->size() - stream.size();
    Check(std::string_view(*out).substr(k + added) == stream.substr(k), "the prefill only inserts",
          stream);
  }
  return 0;
}
