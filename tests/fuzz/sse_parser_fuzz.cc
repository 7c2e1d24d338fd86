// libFuzzer target: the SSE framer (sse_parser.h). The input is an upstream stream; the
// fuzzer's own bytes also pick where it is cut into pieces. Checks:
//  - cut anywhere, the parser forwards the same bytes, counts the same events and sees
//    the same usage and [DONE] as when the stream arrives in one piece (with and without
//    dropping usage-only events);
//  - when nothing is dropped, what it forwards is exactly the stream, for any event-size
//    limit (framing given up for an over-long event must not lose or repeat a byte).
// Layout: byte 0 = option bits, bytes 1..2 = the event-size limit for the second check,
// then N cut offsets, one byte each, as given by byte 3 (N = byte3 % 16), then the stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/protocols/sse_parser.h"

namespace {

struct Run {
  std::string out;
  uint64_t events = 0;
  bool done = false;
  std::optional<llmproxy::TokenUsage> usage;
};

void Check(bool cond, const char* what, std::string_view stream) {
  if (cond) return;
  std::fprintf(stderr, "fuzz invariant failed: %s\nstream (%zu bytes): %.*s\n", what, stream.size(),
               static_cast<int>(stream.size() < 512 ? stream.size() : 512), stream.data());
  std::abort();
}

Run Parse(std::string_view stream, const std::vector<size_t>& cuts,
          llmproxy::SseParserOptions options) {
  llmproxy::SseParser parser(options);
  Run run;
  size_t at = 0;
  for (size_t cut : cuts) {  // ascending, within the stream
    const std::string_view piece = stream.substr(at, cut - at);
    // Feed may return a view of its argument: copy the piece so a stale view shows up
    // under ASan instead of reading the fuzzer's buffer by luck.
    const std::string owned(piece);
    run.out.append(parser.Feed(owned));
    Check(parser.pending_bytes() <= stream.size(), "pending bytes are bounded by the input",
          stream);
    at = cut;
  }
  const std::string rest(stream.substr(at));
  run.out.append(parser.Feed(rest));
  run.out.append(parser.Finish());
  Check(parser.pending_bytes() == 0, "Finish leaves nothing pending", stream);
  run.events = parser.events();
  run.done = parser.done();
  run.usage = parser.usage();
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint8_t flags = data[0];
  const size_t small_limit = 2 + ((static_cast<size_t>(data[1]) << 8 | data[2]) % 4096);
  const size_t ncuts = data[3] % 16;
  if (size < 4 + ncuts) return 0;
  std::vector<size_t> offsets(data + 4, data + 4 + ncuts);
  const std::string_view stream(reinterpret_cast<const char*>(data + 4 + ncuts), size - 4 - ncuts);
  // Cut offsets: each byte is a step forward (a long stream is cut in its first part
  // too; bit 0x80 of flags scales steps by 64 to reach the middle of large events).
  std::vector<size_t> cuts;
  size_t at = 0;
  for (size_t step : offsets) {
    at += (flags & 0x80) ? step * 64 : step;
    if (at > stream.size()) break;
    cuts.push_back(at);
  }

  for (bool drop : {false, true}) {
    llmproxy::SseParserOptions options;
    options.drop_usage_only_events = drop;
    options.max_event_bytes = stream.size() + 16;  // framing never given up here
    const Run whole = Parse(stream, {}, options);
    const Run split = Parse(stream, cuts, options);
    Check(whole.out == split.out, "same bytes forwarded, whole or cut", stream);
    Check(whole.events == split.events, "same event count, whole or cut", stream);
    Check(whole.done == split.done, "same [DONE], whole or cut", stream);
    Check(whole.usage == split.usage, "same usage, whole or cut", stream);
    if (!drop) Check(whole.out == stream, "nothing dropped: the stream as it came", stream);
    if (drop) Check(whole.out.size() <= stream.size(), "dropping only removes bytes", stream);
  }

  llmproxy::SseParserOptions limited;
  limited.max_event_bytes = small_limit;
  const Run split = Parse(stream, cuts, limited);
  Check(split.out == stream, "over-long events pass through byte for byte", stream);

  (void)llmproxy::ExtractUsageFromJson(stream);
  (void)llmproxy::InspectSseEvent(stream);
  return 0;
}
