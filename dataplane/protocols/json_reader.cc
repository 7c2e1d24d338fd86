#include "dataplane/protocols/json_reader.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace llmproxy {
namespace {

namespace od = simdjson::ondemand;
using simdjson::error_code;

static_assert(kJsonPadding == simdjson::SIMDJSON_PADDING);

// Documents up to this size reuse the thread's parser (simdjson keeps ~6 bytes of index and
// string buffer per input byte); larger ones get a parser of their own, freed after use,
// so one 10 MiB body does not pin 60 MiB per thread.
constexpr size_t kKeepParserBytes = 512 * 1024;
// Same idea for the scratch copy of text that comes without padding.
constexpr size_t kKeepScratchBytes = 256 * 1024;

// The text as simdjson wants it: in place when the caller's buffer has the padding, else
// copied once into a padded buffer (the thread's scratch when small).
class PaddedInput {
 public:
  PaddedInput(std::string_view text, size_t readable_after) {
    if (readable_after >= kJsonPadding) {
      data_ = text.data();
      capacity_ = text.size() + readable_after;
    } else {
      thread_local std::string scratch;
      std::string& buffer = text.size() <= kKeepScratchBytes ? scratch : own_;
      buffer.reserve(text.size() + kJsonPadding);
      buffer.assign(text);
      data_ = buffer.data();
      capacity_ = buffer.capacity();
    }
    size_ = text.size();
  }

  simdjson::padded_string_view view() const {
    return simdjson::padded_string_view(data_, size_, capacity_);
  }
  // Offset of a pointer into the text (raw tokens point into this buffer, not the caller's).
  size_t OffsetOf(const char* p) const { return static_cast<size_t>(p - data_); }

 private:
  std::string own_;
  const char* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// The parser for one document: the thread's own, or a one-off for a large document.
class ParserFor {
 public:
  explicit ParserFor(size_t size) {
    thread_local od::parser shared;
    if (size <= kKeepParserBytes) {
      parser_ = &shared;
    } else {
      own_ = std::make_unique<od::parser>();
      parser_ = own_.get();
    }
  }
  od::parser& operator*() { return *parser_; }

 private:
  std::unique_ptr<od::parser> own_;
  od::parser* parser_ = nullptr;
};

#define LLMPROXY_JSON_TRY(expr)             \
  do {                                      \
    if (const error_code e_ = (expr); e_) { \
      return e_;                            \
    }                                       \
  } while (false)

// Calls fn(key, member) for each member of the object `value` (keys unescaped), stopping
// at the first error.
template <typename F>
error_code ForEachMember(od::value value, F&& fn) {
  od::object object;
  LLMPROXY_JSON_TRY(value.get_object().get(object));
  for (auto field : object) {
    std::string_view key;
    LLMPROXY_JSON_TRY(field.unescaped_key().get(key));
    od::value member;
    LLMPROXY_JSON_TRY(field.value().get(member));
    LLMPROXY_JSON_TRY(fn(key, member));
  }
  return simdjson::SUCCESS;
}

// Reads one value completely, so that every byte of it is checked against the grammar
// (On-Demand alone only checks what is read; skipped values are checked for structure
// only). `depth`: containers around the value. Recursion is bounded by kMaxJsonDepth.
error_code Validate(od::value value, size_t depth) {
  od::json_type type;
  LLMPROXY_JSON_TRY(value.type().get(type));
  switch (type) {
    case od::json_type::object: {
      if (depth >= kMaxJsonDepth) return simdjson::DEPTH_ERROR;
      return ForEachMember(
          value, [&](std::string_view, od::value member) { return Validate(member, depth + 1); });
    }
    case od::json_type::array: {
      if (depth >= kMaxJsonDepth) return simdjson::DEPTH_ERROR;
      od::array array;
      LLMPROXY_JSON_TRY(value.get_array().get(array));
      for (auto element : array) {
        od::value item;
        LLMPROXY_JSON_TRY(element.get(item));
        LLMPROXY_JSON_TRY(Validate(item, depth + 1));
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      // Stage 1 already checked UTF-8, control characters and the closing quote; only
      // escapes are left, so a string without a backslash (most prompt text) is not
      // unescaped at all. raw_json_token() spans the string and the whitespace after it.
      // The value must still be consumed: On-Demand's skipping of an unread value checks
      // brackets only, not separators (`["x":"y"}]` would pass).
      const std::string_view token = value.raw_json_token();
      if (std::memchr(token.data(), '\\', token.size()) == nullptr) {
        od::raw_json_string raw;
        return value.get_raw_json_string().get(raw);
      }
      std::string_view s;
      return value.get_string().get(s);
    }
    case od::json_type::number: {
      // get_double checks the number grammar and accepts integers beyond 64 bits (as
      // nlohmann and most JSON parsers do); it rejects only what overflows a double.
      double d;
      return value.get_double().get(d);
    }
    case od::json_type::boolean: {
      bool b;
      return value.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null = false;
      LLMPROXY_JSON_TRY(value.is_null().get(is_null));
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::TAPE_ERROR;
}

// True when `key` equals the lowercase ASCII `name` under simple case folding as Go's
// encoding/json matches keys (ASCII case, plus U+017F LATIN SMALL LETTER LONG S for 's'
// and U+212A KELVIN SIGN for 'k').
bool FoldEquals(std::string_view key, std::string_view name) {
  size_t n = 0;
  for (size_t i = 0; i < key.size(); ++n) {
    if (n >= name.size()) return false;
    char c = key[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (key.substr(i, 2) == "\xC5\xBF") {
      c = 's';
      i += 2;
    } else if (key.substr(i, 3) == "\xE2\x84\xAA") {
      c = 'k';
      i += 3;
    } else {
      ++i;
    }
    if (c != name[n]) return false;
  }
  return n == name.size();
}

constexpr std::string_view kBadJson = "request body is not valid JSON";

// Whether a body that does not start with '{' is still one valid JSON value (for a
// clearer 400). Error path only, so it may copy.
bool IsOneJsonValue(std::string_view body) {
  std::string wrapped;
  wrapped.reserve(body.size() + 2 + kJsonPadding);
  wrapped += '[';
  wrapped += body;
  wrapped += ']';
  const PaddedInput in(wrapped, wrapped.capacity() - wrapped.size());
  ParserFor parser(wrapped.size());
  od::document doc;
  od::array array;
  if ((*parser).iterate(in.view()).get(doc) || doc.get_array().get(array)) return false;
  size_t count = 0;
  for (auto element : array) {
    od::value item;
    if (element.get(item) || Validate(item, 1)) return false;
    ++count;
  }
  const char* rest = nullptr;
  return count == 1 && doc.current_location().get(rest) != simdjson::SUCCESS;
}

BodyPeek Fail(BodyPeek peek, std::string message) {
  peek.error = std::move(message);
  return peek;
}

std::string AmbiguousKey(std::string_view key, std::string_view name) {
  std::string message = "key \"";
  message.append(key);
  message += "\" differs from \"";
  message.append(name);
  message += "\" only in case";
  return message;
}

bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The bytes of a string token: raw_json_token() also covers the whitespace after it.
std::string_view TrimTrailingWs(std::string_view token) {
  while (!token.empty() && IsWs(token.back())) token.remove_suffix(1);
  return token;
}

// "stream_options": whether it is an object holding "include_usage": true (last wins).
error_code ReadStreamOptions(od::value value, bool* include_usage) {
  *include_usage = false;
  od::json_type type;
  LLMPROXY_JSON_TRY(value.type().get(type));
  if (type != od::json_type::object) return Validate(value, 1);
  return ForEachMember(value, [&](std::string_view key, od::value member) -> error_code {
    if (key == "include_usage") {
      od::json_type member_type;
      LLMPROXY_JSON_TRY(member.type().get(member_type));
      *include_usage = false;
      if (member_type == od::json_type::boolean) return member.get_bool().get(*include_usage);
    }
    return Validate(member, 2);
  });
}

struct Count {
  bool present = false;
  bool valid = true;
  uint64_t value = 0;
};

// A token count: overwrites `out` (the last duplicate wins). Malformed JSON is an error;
// well-formed but unusable values only mark the count invalid.
error_code ReadCount(od::value value, Count* out) {
  *out = Count{};
  out->present = true;
  od::json_type type;
  LLMPROXY_JSON_TRY(value.type().get(type));
  if (type == od::json_type::null) return Validate(value, 2);
  if (type != od::json_type::number) {
    out->valid = false;
    return Validate(value, 2);
  }
  double checked;
  LLMPROXY_JSON_TRY(value.get_double().get(checked));  // the grammar
  od::number_type number_type;
  LLMPROXY_JSON_TRY(value.get_number_type().get(number_type));
  if (number_type == od::number_type::floating_point_number) {
    out->valid = false;
  } else if (value.is_negative()) {
    int64_t v = 0;
    out->valid = value.get_int64().get(v) == simdjson::SUCCESS;  // else below -2^63
  } else {
    out->valid = value.get_uint64().get(out->value) == simdjson::SUCCESS;  // else > 2^64-1
  }
  return simdjson::SUCCESS;
}

// "prompt_tokens_details": its "cached_tokens" into `cached` (the last duplicate wins; not
// an object: none). Malformed JSON is an error; anything else only leaves no count.
error_code ReadPromptDetails(od::value value, Count* cached) {
  *cached = Count{};
  od::json_type type;
  LLMPROXY_JSON_TRY(value.type().get(type));
  if (type != od::json_type::object) return Validate(value, 2);
  return ForEachMember(value, [&](std::string_view key, od::value member) {
    if (key == "cached_tokens") return ReadCount(member, cached);
    return Validate(member, 3);
  });
}

// A "usage" value: nullopt in *usage when it is not a usable usage object. The cached
// count is a detail: unusable (a string, a fraction) it reads as 0 and the usage stays.
error_code ReadUsageObject(od::value value, std::optional<TokenUsage>* usage) {
  usage->reset();
  od::json_type type;
  LLMPROXY_JSON_TRY(value.type().get(type));
  if (type != od::json_type::object) return Validate(value, 1);
  Count prompt, completion, cached, cache_hit;
  LLMPROXY_JSON_TRY(ForEachMember(value, [&](std::string_view key, od::value member) {
    if (key == "prompt_tokens") return ReadCount(member, &prompt);
    if (key == "completion_tokens") return ReadCount(member, &completion);
    if (key == "prompt_tokens_details") return ReadPromptDetails(member, &cached);
    if (key == "prompt_cache_hit_tokens") return ReadCount(member, &cache_hit);  // DeepSeek
    return Validate(member, 2);
  }));
  if ((prompt.present || completion.present) && prompt.valid && completion.valid) {
    uint64_t from_cache = cached.valid ? cached.value : 0;
    if (from_cache == 0 && cache_hit.valid) from_cache = cache_hit.value;
    // Part of the prompt tokens: never more than they are.
    *usage = TokenUsage{prompt.value, completion.value, std::min(from_cache, prompt.value)};
  }
  return simdjson::SUCCESS;
}

}  // namespace

BodyPeek ReadRequestJson(std::string_view body, size_t readable_after) {
  BodyPeek peek;
  size_t begin = 0;
  while (begin < body.size() && IsWs(body[begin])) ++begin;
  if (begin == body.size()) return Fail(std::move(peek), "request body is empty");
  if (body[begin] != '{') {
    if (IsOneJsonValue(body)) return Fail(std::move(peek), "request body must be a JSON object");
    return Fail(std::move(peek), std::string(kBadJson));
  }
  size_t end = body.size() - 1;
  while (IsWs(body[end])) --end;

  const PaddedInput in(body, readable_after);
  ParserFor parser(body.size());
  od::document doc;
  od::object object;
  if ((*parser).iterate(in.view()).get(doc) || doc.get_object().get(object)) {
    return Fail(std::move(peek), std::string(kBadJson));
  }
  bool seen_model = false, seen_stream = false;
  for (auto field : object) {
    peek.object_empty = false;
    std::string_view key;
    od::value value;
    if (field.unescaped_key().get(key) || field.value().get(value)) {
      return Fail(std::move(peek), std::string(kBadJson));
    }
    if (key == "model") {
      if (seen_model) return Fail(std::move(peek), "duplicate \"model\" key");
      seen_model = true;
      od::json_type type;
      if (value.type().get(type)) return Fail(std::move(peek), std::string(kBadJson));
      if (type != od::json_type::string) {
        if (Validate(value, 1)) return Fail(std::move(peek), std::string(kBadJson));
        return Fail(std::move(peek), "\"model\" must be a string");
      }
      const std::string_view token = TrimTrailingWs(value.raw_json_token());
      std::string_view decoded;
      if (value.get_string().get(decoded)) return Fail(std::move(peek), std::string(kBadJson));
      peek.has_model = true;
      peek.model.assign(decoded);
      peek.model_begin = in.OffsetOf(token.data());
      peek.model_end = peek.model_begin + token.size();
    } else if (key == "stream") {
      if (seen_stream) return Fail(std::move(peek), "duplicate \"stream\" key");
      seen_stream = true;
      od::json_type type;
      if (value.type().get(type)) return Fail(std::move(peek), std::string(kBadJson));
      if (type == od::json_type::boolean) {
        if (value.get_bool().get(peek.stream)) return Fail(std::move(peek), std::string(kBadJson));
      } else {
        if (Validate(value, 1)) return Fail(std::move(peek), std::string(kBadJson));
        if (type != od::json_type::null)
          return Fail(std::move(peek), "\"stream\" must be a boolean");
      }
    } else if (FoldEquals(key, "model")) {
      return Fail(std::move(peek), AmbiguousKey(key, "model"));
    } else if (FoldEquals(key, "stream")) {
      return Fail(std::move(peek), AmbiguousKey(key, "stream"));
    } else if (key == "max_tokens" || key == "max_completion_tokens" ||
               key == "max_output_tokens") {
      // The completion's cap, for a key's token reservation (docs/limits.md); any other
      // type is the upstream's to reject. Several caps: the largest counts.
      uint64_t cap = 0;
      od::json_type type;
      if (value.type().get(type)) return Fail(std::move(peek), std::string(kBadJson));
      if (type == od::json_type::number && value.get_uint64().get(cap) == simdjson::SUCCESS) {
        peek.max_output_tokens = std::max(peek.max_output_tokens.value_or(0), cap);
      } else if (Validate(value, 1)) {
        return Fail(std::move(peek), std::string(kBadJson));
      }
    } else if (key == "stream_options") {
      peek.has_stream_options = true;
      if (ReadStreamOptions(value, &peek.client_include_usage)) {
        return Fail(std::move(peek), std::string(kBadJson));
      }
    } else if (Validate(value, 1)) {
      return Fail(std::move(peek), std::string(kBadJson));
    }
  }
  const char* rest = nullptr;
  if (doc.current_location().get(rest) == simdjson::SUCCESS) {
    return Fail(std::move(peek), "request body has bytes after the JSON object");
  }
  peek.object_begin = begin;
  peek.object_end = end;
  return peek;
}

std::optional<UsageRead> ReadUsageJson(std::string_view json, size_t readable_after) {
  const PaddedInput in(json, readable_after);
  ParserFor parser(json.size());
  od::document doc;
  od::object object;
  if ((*parser).iterate(in.view()).get(doc) || doc.get_object().get(object)) return std::nullopt;
  std::optional<TokenUsage> usage;
  bool choices_empty = true;  // absent counts as empty
  for (auto field : object) {
    std::string_view key;
    od::value value;
    if (field.unescaped_key().get(key) || field.value().get(value)) return std::nullopt;
    if (key == "usage") {
      if (ReadUsageObject(value, &usage)) return std::nullopt;
    } else if (key == "choices") {
      od::array array;
      bool empty = false;
      choices_empty = !value.get_array().get(array) && !array.is_empty().get(empty) && empty;
    }
  }
  if (!usage) return std::nullopt;
  return UsageRead{*usage, choices_empty};
}

}  // namespace llmproxy
