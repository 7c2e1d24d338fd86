#include "dataplane/protocols/sse_parser.h"

#include <charconv>
#include <cstring>
#include <system_error>

#include <nlohmann/json.hpp>

#include "dataplane/protocols/request_body.h"

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

// The DOM-free reading of a usage object, for the non-streamed response path (one per
// request, so no nlohmann::json allocation per request). Same results as
// UsageFromJson(nlohmann::json::parse(text)): the last of duplicate keys wins; a count is
// a JSON integer (negative clamps to 0) or null/absent (0); a fraction, an exponent, a
// string, a bool, an array or an object makes the whole usage unusable (nullopt), and so
// does an integer outside uint64 (above 2^64-1, or below -2^63: nlohmann turns those into
// doubles). One difference: lone surrogate escapes inside usage are not rejected.
class UsageScanner {
 public:
  explicit UsageScanner(std::string_view text) : t_(text) {}

  std::optional<TokenUsage> Scan() {
    if (!Eat('{')) return std::nullopt;
    Count prompt, completion;
    SkipWs();
    if (Peek() == '}') return std::nullopt;  // neither key present
    while (true) {
      SkipWs();
      std::string_view raw;
      bool escaped = false;
      if (!String(&raw, &escaped) || !Eat(':')) return std::nullopt;
      SkipWs();
      Count* target = nullptr;
      if (KeyIs(raw, escaped, "prompt_tokens")) {
        target = &prompt;
      } else if (KeyIs(raw, escaped, "completion_tokens")) {
        target = &completion;
      }
      if (target) {
        if (!ReadCount(target)) return std::nullopt;
      } else if (!SkipValue()) {
        return std::nullopt;
      }
      SkipWs();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() != '}') return std::nullopt;
      ++pos_;
      break;
    }
    if (!prompt.present && !completion.present) return std::nullopt;
    if (!prompt.valid || !completion.valid) return std::nullopt;
    return TokenUsage{prompt.value, completion.value};
  }

 private:
  struct Count {
    bool present = false;
    bool valid = true;
    uint64_t value = 0;
  };

  char Peek() const { return pos_ < t_.size() ? t_[pos_] : '\0'; }

  void SkipWs() {
    while (pos_ < t_.size() &&
           (t_[pos_] == ' ' || t_[pos_] == '\n' || t_[pos_] == '\r' || t_[pos_] == '\t')) {
      ++pos_;
    }
  }

  bool Eat(char c) {
    SkipWs();
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  static bool IsHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }

  // At a '"': moves past the string; `raw` is the bytes between the quotes.
  bool String(std::string_view* raw, bool* escaped) {
    if (Peek() != '"') return false;
    const size_t begin = ++pos_;
    bool any_escape = false;
    while (true) {
      if (pos_ >= t_.size()) return false;
      const unsigned char c = static_cast<unsigned char>(t_[pos_]);
      if (c == '"') break;
      if (c < 0x20) return false;
      if (c != '\\') {
        ++pos_;
        continue;
      }
      any_escape = true;
      if (++pos_ >= t_.size()) return false;
      const char e = t_[pos_];
      if (e == 'u') {
        if (pos_ + 4 >= t_.size()) return false;
        for (size_t k = 1; k <= 4; ++k) {
          if (!IsHex(t_[pos_ + k])) return false;
        }
        pos_ += 5;
      } else if (e != '\0' && std::strchr("\"\\/bfnrt", e) != nullptr) {
        ++pos_;
      } else {
        return false;
      }
    }
    if (raw) *raw = t_.substr(begin, pos_ - begin);
    if (escaped) *escaped = any_escape;
    ++pos_;
    return true;
  }

  // Compares a key (escapes possible) with an ASCII name. Escaped keys are decoded only
  // as far as ASCII goes: a non-ASCII \u escape can never equal our names anyway.
  static bool KeyIs(std::string_view raw, bool escaped, std::string_view name) {
    if (!escaped) return raw == name;
    size_t n = 0;
    for (size_t i = 0; i < raw.size(); ++i, ++n) {
      char c = raw[i];
      if (c == '\\') {
        const char e = raw[++i];
        if (e == 'u') {
          unsigned v = 0;
          for (size_t k = 1; k <= 4; ++k) {
            const char h = raw[i + k];
            v = v * 16 + static_cast<unsigned>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
          }
          i += 4;
          if (v >= 0x80) return false;
          c = static_cast<char>(v);
        } else {
          static constexpr std::string_view kFrom = "bfnrt", kTo = "\b\f\n\r\t";
          const size_t at = kFrom.find(e);
          c = at == std::string_view::npos ? e : kTo[at];
        }
      }
      if (n >= name.size() || name[n] != c) return false;
    }
    return n == name.size();
  }

  // A JSON number token at pos_; `integer` tells whether it has no fraction or exponent.
  bool Number(bool* integer) {
    const size_t n = t_.size();
    auto digit = [&](size_t i) { return i < n && t_[i] >= '0' && t_[i] <= '9'; };
    if (Peek() == '-') ++pos_;
    if (!digit(pos_)) return false;
    if (t_[pos_] == '0') {
      ++pos_;
    } else {
      while (digit(pos_)) ++pos_;
    }
    *integer = true;
    if (Peek() == '.') {
      *integer = false;
      if (!digit(++pos_)) return false;
      while (digit(pos_)) ++pos_;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      *integer = false;
      ++pos_;
      if (Peek() == '+' || Peek() == '-') ++pos_;
      if (!digit(pos_)) return false;
      while (digit(pos_)) ++pos_;
    }
    return true;
  }

  bool Literal(std::string_view word) {
    if (t_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  // The value of a count key: overwrites `out` (the last duplicate wins).
  bool ReadCount(Count* out) {
    *out = Count{};
    out->present = true;
    const char c = Peek();
    if (c == 'n') return Literal("null");
    if (c != '-' && !(c >= '0' && c <= '9')) {
      out->valid = false;
      return SkipValue();
    }
    const size_t begin = pos_;
    bool integer = false;
    if (!Number(&integer)) return false;
    if (!integer) {
      out->valid = false;
      return true;
    }
    std::string_view digits = t_.substr(begin, pos_ - begin);
    const bool negative = digits.front() == '-';
    if (negative) digits.remove_prefix(1);
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || end != digits.data() + digits.size()) {
      out->valid = false;  // beyond uint64
      return true;
    }
    if (negative) {
      // nlohmann keeps -2^63..-1 as an integer (clamped to 0 here); below is a double.
      if (v > (uint64_t{1} << 63)) out->valid = false;
      return true;
    }
    out->value = v;
    return true;
  }

  // Skips one value of any kind, containers iteratively (bounded depth, no recursion).
  bool SkipValue() {
    std::string stack;  // '{' or '[' per open container; usually empty or tiny
    while (true) {
      SkipWs();
      const char c = Peek();
      if (c == '{' || c == '[') {
        if (stack.size() >= kMaxJsonDepth) return false;
        stack.push_back(c);
        ++pos_;
        SkipWs();
        if (Peek() == (c == '{' ? '}' : ']')) {
          ++pos_;
          stack.pop_back();
        } else {
          if (c == '{' && (!String(nullptr, nullptr) || !Eat(':'))) return false;
          continue;
        }
      } else if (c == '"') {
        if (!String(nullptr, nullptr)) return false;
      } else if (c == 't' || c == 'f' || c == 'n') {
        if (!Literal(c == 't' ? "true" : c == 'f' ? "false" : "null")) return false;
      } else {
        bool integer = false;
        if (!Number(&integer)) return false;
      }
      // After a value: close containers or go on to the next element.
      while (true) {
        if (stack.empty()) return true;
        SkipWs();
        const char d = Peek();
        if (d == ',') {
          ++pos_;
          if (stack.back() == '{') {
            SkipWs();
            if (!String(nullptr, nullptr) || !Eat(':')) return false;
          }
          break;
        }
        if (d != (stack.back() == '{' ? '}' : ']')) return false;
        ++pos_;
        stack.pop_back();
      }
    }
  }

  std::string_view t_;
  size_t pos_ = 0;
};

std::optional<TokenUsage> UsageFromObjectText(std::string_view text) {
  return UsageScanner(text).Scan();
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
  // FindTopLevelJsonValue only hands back a value its validating scanner accepted, so the
  // object scan below runs over well-formed JSON; it still rejects anything odd itself.
  const std::optional<std::string_view> raw = FindTopLevelJsonValue(json_body, "usage");
  if (!raw || raw->empty() || raw->front() != '{') return std::nullopt;
  return UsageFromObjectText(*raw);
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

}  // namespace llmproxy
