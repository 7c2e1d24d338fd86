#include "dataplane/protocols/request_body.h"

#include <array>
#include <bitset>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace llmproxy {
namespace {

// Bytes that end the fast path inside a JSON string: the closing quote, an escape, or a
// control character (invalid unescaped).
constexpr std::array<bool, 256> MakeStringStops() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t['"'] = true;
  t['\\'] = true;
  return t;
}
constexpr std::array<bool, 256> kStringStops = MakeStringStops();

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A cursor over JSON text. Every method returns false on a grammar error and leaves pos_
// somewhere inside the bad token; callers give up at the first false.
class JsonScanner {
 public:
  explicit JsonScanner(std::string_view text) : text_(text) {}

  size_t pos() const { return pos_; }
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void Advance() { ++pos_; }

  void SkipWs() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return;
      ++pos_;
    }
  }

  bool Expect(char c) {
    SkipWs();
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  // At a '"': validates the string and moves past it. `raw` gets the bytes between the
  // quotes; `escaped` whether any escape occurred (then Decode() gives the value).
  bool ScanString(std::string_view* raw, bool* escaped) {
    if (Peek() != '"') return false;
    const size_t begin = ++pos_;
    bool any_escape = false;
    const size_t n = text_.size();
    const char* const data = text_.data();
    while (true) {
      // Hot loop over prompt text: locals only, so the compiler keeps them in registers.
      size_t i = pos_;
#if defined(__SSE2__)
      // Sixteen bytes at a time (SSE2 is part of x86-64): long message contents are
      // most of a large body, and this loop is most of the cost of peeking at it.
      const __m128i quote = _mm_set1_epi8('"');
      const __m128i backslash = _mm_set1_epi8('\\');
      const __m128i control_max = _mm_set1_epi8(0x1F);
      while (i + 16 <= n) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
        const __m128i stops =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                         _mm_cmpeq_epi8(_mm_max_epu8(v, control_max), control_max));
        const int mask = _mm_movemask_epi8(stops);
        if (mask != 0) {
          i += static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
          break;
        }
        i += 16;
      }
#endif
      // Eight bytes at a time while none is a quote, a backslash or a control character.
      while (i + 8 <= n) {
        uint64_t w;
        std::memcpy(&w, data + i, 8);
        constexpr uint64_t kOnes = 0x0101010101010101ULL;
        constexpr uint64_t kHigh = 0x8080808080808080ULL;
        const uint64_t q = w ^ (kOnes * '"');
        const uint64_t b = w ^ (kOnes * '\\');
        const uint64_t stops = ((q - kOnes) & ~q) | ((b - kOnes) & ~b) | ((w - kOnes * 0x20) & ~w);
        if (stops & kHigh) break;
        i += 8;
      }
      while (i < n && !kStringStops[static_cast<unsigned char>(data[i])]) ++i;
      pos_ = i;
      if (pos_ >= n) return false;
      const char c = text_[pos_];
      if (c == '"') break;
      if (c != '\\') return false;  // control character
      any_escape = true;
      if (++pos_ >= n) return false;
      switch (text_[pos_]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          ++pos_;
          break;
        case 'u':
          if (pos_ + 4 >= n) return false;
          for (size_t i = 1; i <= 4; ++i) {
            if (HexValue(text_[pos_ + i]) < 0) return false;
          }
          pos_ += 5;
          break;
        default:
          return false;
      }
    }
    if (raw) *raw = text_.substr(begin, pos_ - begin);
    if (escaped) *escaped = any_escape;
    ++pos_;  // closing quote
    return true;
  }

  bool ScanNumber() {
    const size_t n = text_.size();
    if (Peek() == '-') ++pos_;
    if (pos_ >= n) return false;
    if (text_[pos_] == '0') {
      ++pos_;
    } else if (text_[pos_] >= '1' && text_[pos_] <= '9') {
      while (pos_ < n && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    } else {
      return false;
    }
    if (pos_ < n && text_[pos_] == '.') {
      ++pos_;
      const size_t digits = pos_;
      while (pos_ < n && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == digits) return false;
    }
    if (pos_ < n && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < n && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      const size_t digits = pos_;
      while (pos_ < n && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == digits) return false;
    }
    return true;
  }

  bool ScanLiteral(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  // Skips exactly one value of any kind (after optional whitespace), nested containers
  // included, iteratively so deep nesting cannot overflow the stack.
  bool SkipValue() {
    std::bitset<kMaxJsonDepth> is_object;
    size_t depth = 0;
    while (true) {
      // Expecting a value.
      SkipWs();
      const char c = Peek();
      if (c == '{' || c == '[') {
        if (depth >= kMaxJsonDepth) return false;
        is_object[depth++] = (c == '{');
        ++pos_;
        SkipWs();
        if (Peek() == (c == '{' ? '}' : ']')) {
          ++pos_;
          --depth;
        } else if (c == '{') {
          if (!ScanMemberKey()) return false;
          continue;
        } else {
          continue;
        }
      } else if (c == '"') {
        if (!ScanString(nullptr, nullptr)) return false;
      } else if (c == 't') {
        if (!ScanLiteral("true")) return false;
      } else if (c == 'f') {
        if (!ScanLiteral("false")) return false;
      } else if (c == 'n') {
        if (!ScanLiteral("null")) return false;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (!ScanNumber()) return false;
      } else {
        return false;
      }
      // After a value: close containers or continue with the next element.
      while (true) {
        if (depth == 0) return true;
        SkipWs();
        const char d = Peek();
        if (d == ',') {
          ++pos_;
          if (is_object[depth - 1]) {
            SkipWs();
            if (!ScanMemberKey()) return false;
          }
          break;  // expect the next value
        }
        if (d == (is_object[depth - 1] ? '}' : ']')) {
          ++pos_;
          --depth;
          continue;
        }
        return false;
      }
    }
  }

  // At a member key: the key string and the ':' after it.
  bool ScanMemberKey() {
    if (!ScanString(nullptr, nullptr)) return false;
    return Expect(':');
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

// Decodes the contents of a validated JSON string (between the quotes).
std::string DecodeJsonString(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    const char e = raw[++i];
    switch (e) {
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        auto hex4 = [&](size_t at) {
          uint32_t v = 0;
          for (size_t k = 0; k < 4; ++k)
            v = (v << 4) | static_cast<uint32_t>(HexValue(raw[at + k]));
          return v;
        };
        uint32_t cp = hex4(i + 1);
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < raw.size() && raw[i + 1] == '\\' &&
            raw[i + 2] == 'u') {
          const uint32_t low = hex4(i + 3);
          if (low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            i += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // lone surrogate
        AppendUtf8(out, cp);
        break;
      }
      default:
        out += e;
        break;  // " \ /
    }
  }
  return out;
}

// Compares a key's raw bytes (escapes possible) with a plain ASCII name.
bool KeyEquals(std::string_view raw, bool escaped, std::string_view name) {
  if (!escaped) return raw == name;
  return DecodeJsonString(raw) == name;
}

// Scans a "stream_options" object value for "include_usage": true (one level; nested
// values skipped). At the '{'.
bool ScanStreamOptions(JsonScanner& s, bool* include_usage) {
  s.Advance();  // '{'
  s.SkipWs();
  if (s.Peek() == '}') {
    s.Advance();
    return true;
  }
  while (true) {
    s.SkipWs();
    std::string_view key;
    bool escaped = false;
    if (!s.ScanString(&key, &escaped) || !s.Expect(':')) return false;
    s.SkipWs();
    if (KeyEquals(key, escaped, "include_usage")) {
      if (s.Peek() == 't') {
        if (!s.ScanLiteral("true")) return false;
        *include_usage = true;
      } else {
        if (!s.SkipValue()) return false;
        *include_usage = false;
      }
    } else if (!s.SkipValue()) {
      return false;
    }
    s.SkipWs();
    if (s.Peek() == ',') {
      s.Advance();
      continue;
    }
    if (s.Peek() == '}') {
      s.Advance();
      return true;
    }
    return false;
  }
}

BodyPeek Fail(BodyPeek peek, std::string_view message) {
  peek.error = message;
  return peek;
}

}  // namespace

BodyPeek PeekRequestBody(std::string_view body) {
  static constexpr std::string_view kBadJson = "request body is not valid JSON";
  BodyPeek peek;
  JsonScanner s(body);
  s.SkipWs();
  if (s.AtEnd()) return Fail(std::move(peek), "request body is empty");
  if (s.Peek() != '{') {
    // Distinguish "valid JSON but not an object" from garbage for a clearer message.
    JsonScanner probe(body);
    if (probe.SkipValue()) {
      probe.SkipWs();
      if (probe.AtEnd()) return Fail(std::move(peek), "request body must be a JSON object");
    }
    return Fail(std::move(peek), kBadJson);
  }
  peek.object_begin = s.pos();
  s.Advance();
  s.SkipWs();
  if (s.Peek() == '}') {
    peek.object_end = s.pos();
    s.Advance();
  } else {
    peek.object_empty = false;
    while (true) {
      s.SkipWs();
      std::string_view key;
      bool escaped = false;
      if (!s.ScanString(&key, &escaped) || !s.Expect(':')) return Fail(std::move(peek), kBadJson);
      s.SkipWs();
      if (KeyEquals(key, escaped, "model")) {
        if (s.Peek() != '"') {
          if (!s.SkipValue()) return Fail(std::move(peek), kBadJson);
          return Fail(std::move(peek), "\"model\" must be a string");
        }
        const size_t begin = s.pos();
        std::string_view raw;
        bool value_escaped = false;
        if (!s.ScanString(&raw, &value_escaped)) return Fail(std::move(peek), kBadJson);
        peek.has_model = true;
        peek.model_begin = begin;
        peek.model_end = s.pos();
        if (value_escaped) {
          peek.model = DecodeJsonString(raw);
        } else {
          peek.model.assign(raw);
        }
      } else if (KeyEquals(key, escaped, "stream")) {
        if (s.ScanLiteral("true")) {
          peek.stream = true;
        } else if (s.ScanLiteral("false") || s.ScanLiteral("null")) {
          peek.stream = false;
        } else {
          if (!s.SkipValue()) return Fail(std::move(peek), kBadJson);
          return Fail(std::move(peek), "\"stream\" must be a boolean");
        }
      } else if (KeyEquals(key, escaped, "stream_options")) {
        peek.has_stream_options = true;
        peek.client_include_usage = false;
        if (s.Peek() == '{') {
          if (!ScanStreamOptions(s, &peek.client_include_usage)) {
            return Fail(std::move(peek), kBadJson);
          }
        } else if (!s.SkipValue()) {
          return Fail(std::move(peek), kBadJson);
        }
      } else if (!s.SkipValue()) {
        return Fail(std::move(peek), kBadJson);
      }
      s.SkipWs();
      if (s.Peek() == ',') {
        s.Advance();
        continue;
      }
      if (s.Peek() == '}') {
        peek.object_end = s.pos();
        s.Advance();
        break;
      }
      return Fail(std::move(peek), kBadJson);
    }
  }
  s.SkipWs();
  if (!s.AtEnd()) return Fail(std::move(peek), "request body has bytes after the JSON object");
  return peek;
}

bool NeedsRewrite(const BodyPeek& peek, const BodyRewrite& rewrite) {
  if (rewrite.model && (!peek.has_model || *rewrite.model != peek.model)) return true;
  return rewrite.add_include_usage && !peek.has_stream_options;
}

std::string RewriteRequestBody(std::string_view body, const BodyPeek& peek,
                               const BodyRewrite& rewrite) {
  const bool replace_model = rewrite.model && peek.has_model && *rewrite.model != peek.model;
  const bool insert_model = rewrite.model && !peek.has_model;
  const bool add_usage = rewrite.add_include_usage && !peek.has_stream_options;
  static constexpr std::string_view kUsageMember = R"("stream_options":{"include_usage":true})";

  std::string out;
  out.reserve(body.size() + (rewrite.model ? rewrite.model->size() + 16 : 0) +
              (add_usage ? kUsageMember.size() + 1 : 0));
  size_t copied = 0;  // body[0, copied) is in out
  if (insert_model) {
    out.append(body.substr(0, peek.object_begin + 1));
    out += "\"model\":";
    AppendJsonString(out, *rewrite.model);
    if (!peek.object_empty) out += ',';
    copied = peek.object_begin + 1;
  }
  if (replace_model) {
    out.append(body.substr(copied, peek.model_begin - copied));
    AppendJsonString(out, *rewrite.model);
    copied = peek.model_end;
  }
  if (add_usage) {
    out.append(body.substr(copied, peek.object_end - copied));
    if (!peek.object_empty || insert_model) out += ',';
    out += kUsageMember;
    copied = peek.object_end;
  }
  out.append(body.substr(copied));
  return out;
}

std::optional<std::string_view> FindTopLevelJsonValue(std::string_view json, std::string_view key) {
  JsonScanner s(json);
  if (!s.Expect('{')) return std::nullopt;
  s.SkipWs();
  if (s.Peek() == '}') return std::nullopt;
  std::optional<std::string_view> found;
  while (true) {
    s.SkipWs();
    std::string_view raw;
    bool escaped = false;
    if (!s.ScanString(&raw, &escaped) || !s.Expect(':')) return found;
    s.SkipWs();
    const size_t begin = s.pos();
    if (!s.SkipValue()) return found;
    if (KeyEquals(raw, escaped, key)) found = json.substr(begin, s.pos() - begin);
    s.SkipWs();
    if (s.Peek() != ',') return found;
    s.Advance();
  }
}

}  // namespace llmproxy
