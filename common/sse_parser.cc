#include "common/sse_parser.h"

#include <cstring>

#include <nlohmann/json.hpp>

#include "common/request_body.h"

namespace llmproxy {
namespace {

// End of the event whose blank line starts at or after `from` in `data`: the index just
// past "\n\n" or "\n\r\n" (covers LF and CRLF streams). npos when not (yet) present.
size_t FindEventEnd(std::string_view data, size_t from) {
  const char* base = data.data();
  const size_t n = data.size();
  size_t i = from;
  while (i < n) {
    const void* hit = std::memchr(base + i, '\n', n - i);
    if (!hit) return std::string_view::npos;
    i = static_cast<size_t>(static_cast<const char*>(hit) - base);
    if (i + 1 < n && base[i + 1] == '\n') return i + 2;
    if (i + 2 < n && base[i + 1] == '\r' && base[i + 2] == '\n') return i + 3;
    ++i;
  }
  return std::string_view::npos;
}

// Where to resume the search after FindEventEnd failed on `data`: the last two bytes may
// begin a blank line completed by the next chunk.
size_t ResumeFrom(size_t size) { return size >= 2 ? size - 2 : 0; }

bool ReadCount(const nlohmann::json& usage, const char* key, uint64_t* out) {
  const auto it = usage.find(key);
  if (it == usage.end()) return true;
  if (it->is_number_unsigned()) {
    *out = it->get<uint64_t>();
    return true;
  }
  if (it->is_number_integer()) {
    const int64_t v = it->get<int64_t>();
    *out = v < 0 ? 0 : static_cast<uint64_t>(v);
    return true;
  }
  return it->is_null();
}

std::optional<TokenUsage> UsageFromJson(const nlohmann::json& usage) {
  if (!usage.is_object()) return std::nullopt;
  if (!usage.contains("prompt_tokens") && !usage.contains("completion_tokens")) {
    return std::nullopt;
  }
  TokenUsage out;
  if (!ReadCount(usage, "prompt_tokens", &out.prompt_tokens) ||
      !ReadCount(usage, "completion_tokens", &out.completion_tokens)) {
    return std::nullopt;
  }
  return out;
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

std::optional<TokenUsage> ExtractUsageFromJson(std::string_view json_body) {
  const std::optional<std::string_view> raw = FindTopLevelJsonValue(json_body, "usage");
  if (!raw || raw->empty() || raw->front() != '{') return std::nullopt;
  const nlohmann::json usage = nlohmann::json::parse(*raw, nullptr, /*allow_exceptions=*/false);
  if (usage.is_discarded()) return std::nullopt;
  return UsageFromJson(usage);
}

SseEventInfo InspectSseEvent(std::string_view event) {
  SseEventInfo info;
  // Collect the data field: "data:" lines joined with '\n' (one optional space after ':').
  std::string data;
  bool single = true;
  std::string_view single_view;
  int data_lines = 0;
  size_t pos = 0;
  while (pos < event.size()) {
    size_t eol = event.find('\n', pos);
    if (eol == std::string_view::npos) eol = event.size();
    std::string_view line = event.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = eol + 1;
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
  const nlohmann::json json = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return info;
  const auto usage_it = json.find("usage");
  if (usage_it == json.end()) return info;
  const std::optional<TokenUsage> usage = UsageFromJson(*usage_it);
  if (!usage) return info;
  info.has_usage = true;
  info.usage = *usage;
  const auto choices = json.find("choices");
  info.usage_only = choices == json.end() || (choices->is_array() && choices->empty());
  return info;
}

SseParser::SseParser(SseParserOptions options) : options_(options) {}

bool SseParser::OnEvent(std::string_view event) {
  ++events_;
  // Cheap pre-checks: most chunks carry neither.
  if (event.find("[DONE]") == std::string_view::npos && !MayCarryUsage(event)) return true;
  const SseEventInfo info = InspectSseEvent(event);
  if (info.is_done) done_ = true;
  if (info.has_usage) usage_ = info.usage;
  return !(options_.drop_usage_only_events && info.usage_only);
}

std::string_view SseParser::Feed(std::string_view chunk) {
  out_.clear();
  if (consumed_ > 0) {
    pending_.erase(0, consumed_);
    consumed_ = 0;
  }
  // Fast path: nothing carried over, so events are views of the chunk itself.
  std::string_view data = chunk;
  size_t scan = 0;
  const bool from_chunk = pending_.empty() && !passthrough_event_;
  if (!from_chunk) {
    pending_.append(chunk);
    data = pending_;
    scan = scan_from_;
  }

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

  if (passthrough_event_) {
    const size_t end = FindEventEnd(data, scan);
    if (end == std::string_view::npos) {
      // Still inside the over-long event: forward all but the last two bytes (they may
      // start its blank line).
      const size_t keep_to = ResumeFrom(data.size());
      keep(0, keep_to);
      consumed_ = keep_to;
      scan_from_ = 0;
      return use_out ? std::string_view(out_) : data.substr(run_begin, run_end - run_begin);
    }
    ++events_;
    keep(0, end);
    pos = end;
    scan = end;
    passthrough_event_ = false;
  }

  while (true) {
    const size_t end = FindEventEnd(data, scan);
    if (end == std::string_view::npos) break;
    if (OnEvent(data.substr(pos, end - pos))) {
      keep(pos, end);
    } else {
      drop();
    }
    pos = end;
    scan = end;
  }

  const size_t tail = data.size() - pos;
  if (tail > options_.max_event_bytes && tail >= 2) {
    // Give up framing this event rather than hold it in memory: forward what we have.
    keep(pos, data.size() - 2);
    passthrough_event_ = true;
    if (from_chunk) {
      pending_.assign(data.substr(data.size() - 2));
    } else {
      consumed_ = data.size() - 2;
    }
    scan_from_ = 0;
  } else if (from_chunk) {
    pending_.assign(data.substr(pos));
    scan_from_ = ResumeFrom(tail);
  } else {
    consumed_ = pos;
    scan_from_ = ResumeFrom(tail);
  }
  if (use_out) return out_;
  return data.substr(run_begin, run_end - run_begin);
}

std::string_view SseParser::Finish() {
  out_.clear();
  if (consumed_ > 0) {
    pending_.erase(0, consumed_);
    consumed_ = 0;
  }
  out_.swap(pending_);
  pending_.clear();
  scan_from_ = 0;
  if (!out_.empty() && !passthrough_event_) {
    // An unterminated last event still counts ("data: [DONE]" without its blank line).
    const SseEventInfo info = InspectSseEvent(out_);
    if (info.is_done) done_ = true;
    if (info.has_usage) usage_ = info.usage;
  }
  passthrough_event_ = false;
  return out_;
}

std::string SseErrorEvent(std::string_view message, std::string_view type, std::string_view code) {
  nlohmann::json body = {{"error",
                          {{"message", std::string(message)},
                           {"type", std::string(type)},
                           {"code", std::string(code)}}}};
  std::string out = "data: ";
  out += body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += "\n\n";
  return out;
}

}  // namespace llmproxy
