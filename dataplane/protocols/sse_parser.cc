#include "dataplane/protocols/sse_parser.h"

#include <cstring>

#include <nlohmann/json.hpp>

#include "dataplane/protocols/chat_stream.h"

namespace llmproxy {
namespace {

// Index of the first CR or LF at or after `i` (or data.size()). Eight bytes at a time:
// events are mostly JSON text without line ends.
size_t NextLineEndByte(std::string_view data, size_t i) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const size_t n = data.size();
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, data.data() + i, 8);
    const uint64_t lf = w ^ (kOnes * '\n');
    const uint64_t cr = w ^ (kOnes * '\r');
    if ((((lf - kOnes) & ~lf) | ((cr - kOnes) & ~cr)) & kHigh) break;
    i += 8;
  }
  while (i < n && data[i] != '\n' && data[i] != '\r') ++i;
  return i;
}

// Only events where some "usage" key has an object value are worth a JSON parse: several
// providers send "usage":null in every chunk. Works on a raw event too: whitespace, line
// ends and a "data:" continuation prefix between the key and its value are skipped.
bool MayCarryUsage(std::string_view text) {
  static constexpr std::string_view kKey = "\"usage\"";
  auto skip = [&](size_t i) {
    while (i < text.size()) {
      const char c = text[i];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++i;
      } else if (text.substr(i, 5) == "data:") {
        i += 5;
      } else {
        break;
      }
    }
    return i;
  };
  size_t at = 0;
  while ((at = text.find(kKey, at)) != std::string_view::npos) {
    at += kKey.size();
    size_t i = skip(at);
    if (i < text.size() && text[i] == ':') {
      i = skip(i + 1);
      if (i < text.size() && text[i] == '{') return true;
    }
  }
  return false;
}

}  // namespace

std::optional<TokenUsage> ExtractUsageFromJson(std::string_view json_body, size_t readable_after) {
  const std::optional<UsageRead> read = ReadUsageJson(json_body, readable_after);
  if (!read) return std::nullopt;
  return read->usage;
}

namespace {

// InspectSseEvent with the number of readable bytes after the event (padding for the
// JSON reader, so a single-line data field is read in place).
SseEventInfo Inspect(std::string_view event, size_t readable_after) {
  SseEventInfo info;
  // Collect the data field: "data:" lines joined with '\n' (one optional space after ':').
  // A line ends at LF, CRLF or a lone CR.
  std::string data;
  bool single = true;
  std::string_view single_view;
  int data_lines = 0;
  size_t pos = 0;
  while (pos < event.size()) {
    const size_t eol = NextLineEndByte(event, pos);
    std::string_view line = event.substr(pos, eol - pos);
    pos = eol + (event.substr(eol, 2) == "\r\n" ? 2 : 1);
    if (line.substr(0, 5) != "data:") continue;
    line.remove_prefix(5);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (data_lines == 0) {
      single_view = line;
    } else {
      if (single) {
        data.assign(single_view);
        single = false;
      }
      data += '\n';
      data.append(line);
    }
    ++data_lines;
  }
  if (data_lines == 0) return info;
  const std::string_view payload = single ? single_view : std::string_view(data);
  if (payload == "[DONE]") {
    info.is_done = true;
    return info;
  }
  if (!MayCarryUsage(payload)) return info;
  const size_t padding =
      single
          ? static_cast<size_t>(event.data() + event.size() - (payload.data() + payload.size())) +
                readable_after
          : data.capacity() - data.size();
  const std::optional<UsageRead> read = ReadUsageJson(payload, padding);
  if (!read) return info;
  info.has_usage = true;
  info.usage = read->usage;
  info.usage_only = read->usage_only;
  return info;
}

}  // namespace

// A line ends at LF, CRLF or a lone CR; a blank line ends the event.
size_t SseParser::FindEventEnd(std::string_view data, LineScan& scan, bool* open_cr) {
  const size_t n = data.size();
  size_t i = scan.pos;
  *open_cr = false;
  while (i < n) {
    const char c = data[i];
    if (c == '\n') {
      if (scan.prev_cr) {
        scan.prev_cr = false;  // the LF of a CRLF
      } else if (scan.line_start) {
        return i + 1;
      } else {
        scan.line_start = true;
      }
      ++i;
    } else if (c == '\r') {
      if (scan.line_start) {
        if (i + 1 < n) return data[i + 1] == '\n' ? i + 2 : i + 1;
        *open_cr = true;
        return i + 1;
      }
      scan.line_start = true;
      scan.prev_cr = true;
      ++i;
    } else {
      scan.line_start = false;
      scan.prev_cr = false;
      i = NextLineEndByte(data, i + 1);
    }
  }
  scan.pos = n;
  return std::string_view::npos;
}

SseEventInfo InspectSseEvent(std::string_view event) { return Inspect(event, 0); }

SseParser::SseParser(SseParserOptions options)
    : options_(options),
      chat_hooks_(options.tracker != nullptr || options.continuation != nullptr ||
                  options.hook != nullptr) {}

SseParser::Verdict SseParser::OnEvent(std::string_view event, size_t readable_after) {
  ++events_;
  if (chat_hooks_) [[unlikely]] {
    return OnChatEvent(event, readable_after);
  }
  return InspectEvent(event, readable_after) ? Verdict::kKeep : Verdict::kDrop;
}

bool SseParser::InspectEvent(std::string_view event, size_t readable_after) {
  // Cheap pre-checks: most chunks carry neither.
  if (event.find("[DONE]") == std::string_view::npos && !MayCarryUsage(event)) return true;
  const SseEventInfo info = Inspect(event, readable_after);
  if (info.is_done) done_ = true;
  if (info.has_usage) usage_ = info.usage;
  return !(options_.drop_usage_only_events && info.usage_only);
}

SseParser::Verdict SseParser::OnHookEvent(std::string_view event, size_t readable_after) {
  if (!InspectEvent(event, readable_after)) return Verdict::kDrop;
  replacement_ = options_.hook->OnEvent(event, readable_after);
  if (options_.hook->done()) done_ = true;
  return replacement_.empty() ? Verdict::kDrop : Verdict::kReplace;
}

SseParser::Verdict SseParser::OnChatEvent(std::string_view event, size_t readable_after) {
  if (options_.hook != nullptr) return OnHookEvent(event, readable_after);
  Verdict verdict = Verdict::kKeep;
  if (options_.continuation != nullptr) {
    const ContinuationFilter::Result r = options_.continuation->Filter(event, readable_after);
    if (r.verdict == ContinuationFilter::Verdict::kDrop) return Verdict::kDrop;
    if (r.verdict == ContinuationFilter::Verdict::kReplace) {
      verdict = Verdict::kReplace;
      replacement_ = r.bytes;
      event = r.bytes;
      readable_after = 0;  // the filter's buffer: no padding promised
    }
  }
  if (!InspectEvent(event, readable_after)) return Verdict::kDrop;
  if (options_.tracker != nullptr) options_.tracker->Observe(event, readable_after);
  return verdict;
}

std::string_view SseParser::Feed(std::string_view chunk) {
  out_.clear();
  if (consumed_ > 0) {
    pending_.erase(0, consumed_);
    consumed_ = 0;
  }
  // Fast path: nothing carried over, so events are views of the chunk itself.
  std::string_view data = chunk;
  const bool from_chunk = pending_.empty();
  if (!from_chunk) {
    pending_.reserve(pending_.size() + chunk.size() + kJsonPadding);
    pending_.append(chunk);
    data = pending_;
  }
  // Bytes after data[i] that may be read: the rest of the chunk, or pending_'s capacity.
  const size_t readable_end = from_chunk ? data.size() : pending_.capacity();

  size_t pos = 0;  // start of the current (unterminated) event in data
  // Kept bytes form one contiguous run [run_begin, run_end) until an event is dropped;
  // from then on they are copied to out_.
  size_t run_begin = 0, run_end = 0;
  bool use_out = false;
  auto keep = [&](size_t begin, size_t end) {
    if (use_out) {
      out_.append(data.substr(begin, end - begin));
    } else if (run_end == begin) {
      run_end = end;
    } else {
      use_out = true;
      out_.append(data.substr(run_begin, run_end - run_begin));
      out_.append(data.substr(begin, end - begin));
    }
  };
  auto drop = [&]() {
    if (!use_out) {
      use_out = true;
      out_.append(data.substr(run_begin, run_end - run_begin));
    }
  };
  auto result = [&]() {
    return use_out ? std::string_view(out_) : data.substr(run_begin, run_end - run_begin);
  };
  // After an event ended at data[end - 1]: the next event starts at `end`.
  auto next_event = [&](size_t end, bool open_cr, bool kept) {
    pos = end;
    scan_ = LineScan{.pos = end};
    if (open_cr) pending_lf_ = kept ? PendingLf::kKeep : PendingLf::kDrop;
  };

  if (pending_lf_ != PendingLf::kNone && pos < data.size()) {
    if (data[pos] == '\n') {
      if (pending_lf_ == PendingLf::kKeep) {
        keep(pos, pos + 1);
      } else {
        drop();
      }
      ++pos;
      scan_.pos = pos;
    }
    pending_lf_ = PendingLf::kNone;
  }

  bool open_cr = false;
  if (passthrough_event_) {
    const size_t end = FindEventEnd(data, scan_, &open_cr);
    if (end == std::string_view::npos) {
      // Still inside the over-long event: forward everything (the scan state remembers
      // how the last line ended); a hook's stream drops it.
      if (options_.hook != nullptr) {
        drop();
      } else {
        keep(pos, data.size());
      }
      if (from_chunk) {
        pending_.clear();
      } else {
        consumed_ = data.size();
      }
      scan_.pos = 0;
      return result();
    }
    ++events_;
    if (options_.hook != nullptr) {
      drop();
    } else {
      keep(pos, end);
    }
    passthrough_event_ = false;
    next_event(end, open_cr, options_.hook == nullptr);
  }

  while (true) {
    const size_t end = FindEventEnd(data, scan_, &open_cr);
    if (end == std::string_view::npos) break;
    const Verdict verdict = OnEvent(data.substr(pos, end - pos), readable_end - end);
    if (verdict == Verdict::kKeep) {
      keep(pos, end);
    } else {
      drop();
      if (verdict == Verdict::kReplace) out_.append(replacement_);
    }
    // A hook's replacement is whole events of its own: a lone CR's LF is not theirs.
    next_event(end, open_cr,
               verdict == Verdict::kKeep || (verdict == Verdict::kReplace && !options_.hook));
  }

  const size_t tail = data.size() - pos;
  scan_.pos -= pos;  // relative to the unterminated event's start
  if (tail > options_.max_event_bytes) {
    // Give up framing this event rather than hold it in memory: forward what we have
    // (a hook's stream: drop it, the hook is told).
    if (options_.hook != nullptr) {
      drop();
      options_.hook->OnUnframed();
    } else {
      keep(pos, data.size());
    }
    passthrough_event_ = true;
    if (options_.tracker != nullptr) options_.tracker->ObserveUnframed();
    if (from_chunk) {
      pending_.clear();
    } else {
      consumed_ = data.size();
    }
    scan_.pos = 0;
  } else if (from_chunk) {
    pending_.reserve(tail + kJsonPadding);
    pending_.assign(data.substr(pos));
  } else {
    consumed_ = pos;
  }
  return result();
}

std::string_view SseParser::Finish() {
  out_.clear();
  if (consumed_ > 0) {
    pending_.erase(0, consumed_);
    consumed_ = 0;
  }
  out_.swap(pending_);
  pending_.clear();
  scan_ = LineScan{};
  pending_lf_ = PendingLf::kNone;
  if (!out_.empty() && !passthrough_event_) {
    // An unterminated last event still counts ("data: [DONE]" without its blank line).
    const SseEventInfo info = Inspect(out_, out_.capacity() - out_.size());
    if (info.is_done) done_ = true;
    if (info.has_usage) usage_ = info.usage;
    if (options_.hook != nullptr) {
      // A hook's stream forwards only what the hook makes of it.
      hook_out_.assign(options_.hook->OnEvent(out_, out_.capacity() - out_.size()));
      if (options_.hook->done()) done_ = true;
      out_.swap(hook_out_);
    }
  } else if (options_.hook != nullptr) {
    out_.clear();
  }
  passthrough_event_ = false;
  return out_;
}

void ReadSseFields(std::string_view raw, SseFields& out) {
  out.event = {};
  out.data = {};
  out.has_data = false;
  out.storage.clear();
  bool single = true;
  size_t pos = 0;
  while (pos < raw.size()) {
    const size_t eol = NextLineEndByte(raw, pos);
    std::string_view line = raw.substr(pos, eol - pos);
    pos = eol + (raw.substr(eol, 2) == "\r\n" ? 2 : 1);
    const size_t colon = line.find(':');
    if (colon == 0) continue;  // a comment
    std::string_view name = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name == "event") {
      out.event = value;
    } else if (name == "data") {
      if (!out.has_data) {
        out.data = value;
        out.has_data = true;
      } else {
        if (single) {
          out.storage.assign(out.data);
          single = false;
        }
        out.storage += '\n';
        out.storage.append(value);
        out.data = out.storage;
      }
    }
  }
}

void AppendSseEvent(std::string& out, std::string_view event, std::string_view data) {
  if (!event.empty()) {
    out += "event: ";
    out += event;
    out += '\n';
  }
  out += "data: ";
  out += data;
  out += "\n\n";
}

}  // namespace llmproxy
