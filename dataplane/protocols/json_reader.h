// The one reader of JSON text on the data plane's hot path: request bodies (model, stream,
// stream_options), upstream response bodies and SSE event data (usage). Built on simdjson's
// On-Demand API: fields are read in place, no DOM is built, and the model value's raw byte
// range is reported so the rewrite can replace exactly those bytes. Pure: no I/O. The only
// translation units that include simdjson are json_reader.cc and chat_stream.cc (stream
// chunks, same padding rules), and anthropic_translate.cc, which reads whole bodies and
// events with simdjson's DOM (it needs every field, not a few). nlohmann stays for config,
// the control plane and building JSON.
//
// simdjson reads up to kJsonPadding bytes past the end of the text. Callers that own a
// buffer with that much slack after the text say so (`readable_after`); otherwise the text
// is copied into a padded scratch buffer first (one memcpy, no allocation once warm).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmproxy {

// Bytes after the text simdjson may read (SIMDJSON_PADDING; checked in json_reader.cc).
inline constexpr size_t kJsonPadding = 64;
// Deepest nesting accepted (the top-level object counts as 1).
inline constexpr size_t kMaxJsonDepth = 256;

struct TokenUsage {
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  // Of prompt_tokens, those read from the provider's prompt cache (OpenAI
  // prompt_tokens_details.cached_tokens, Anthropic cache_read_input_tokens).
  uint64_t cached_prompt_tokens = 0;
  bool operator==(const TokenUsage&) const = default;
};

// What the proxy reads from a request body (see PeekRequestBody in request_body.h).
struct BodyPeek {
  // Empty when the body is acceptable; else a short message for a 400 error. Body bytes
  // appear in it only for an ambiguous key, which is then a case spelling of "model" or
  // "stream" (so short, and valid UTF-8).
  std::string error;

  bool has_model = false;  // top-level "model" present (as a string)
  std::string model;       // decoded value (escapes like \u00e9 resolved); "" if absent
  bool stream = false;     // top-level "stream": true (false when absent or null)

  // Top-level "stream_options" is present (any value), and whether it is an object
  // holding "include_usage": true (the client itself asked for the usage chunk, so the
  // proxy must not hide it).
  bool has_stream_options = false;
  bool client_include_usage = false;

  // The largest of top-level "max_tokens", "max_completion_tokens", "max_output_tokens"
  // given as a non-negative integer (the completion's cap); nullopt when none is.
  std::optional<uint64_t> max_output_tokens;

  // Byte offsets into the body: the model value token including its quotes
  // [model_begin, model_end) when has_model; the '{' and the closing '}' of the top-level
  // object; whether the object has no members.
  size_t model_begin = 0;
  size_t model_end = 0;
  size_t object_begin = 0;
  size_t object_end = 0;
  bool object_empty = true;

  bool ok() const { return error.empty(); }
};

// Reads a request body: it must be one JSON object (RFC 8259, valid UTF-8, nesting depth
// <= kMaxJsonDepth, nothing but whitespace after it) whose "model" is a string and
// "stream" a boolean or null. A top-level key that is "model" or "stream" after JSON
// unescaping may appear once; a key that differs from them only in case (ASCII, or the
// Unicode folds ſ and K that Go's encoding/json applies) is an error, since
// case-insensitive upstreams would read it as the model. `readable_after`: bytes after
// body.end() that may be read (padding).
BodyPeek ReadRequestJson(std::string_view body, size_t readable_after);

// The top-level "usage" of a response body or a stream chunk's JSON.
struct UsageRead {
  TokenUsage usage;
  bool usage_only = false;  // "choices" absent or an empty array: the include_usage chunk
};

// nullopt when `json` is not an object or its last top-level "usage" is not an object with
// usable counts: "prompt_tokens" / "completion_tokens" each a JSON integer (negative reads
// as 0) or null/absent (0), at least one present; a fraction, an exponent, another type,
// an integer outside uint64 (or below -2^63), or malformed JSON inside usage makes the
// whole usage unusable. Duplicate keys: the last one wins.
// cached_prompt_tokens is "prompt_tokens_details": {"cached_tokens": N} (OpenAI), else
// DeepSeek's "prompt_cache_hit_tokens"; both count among prompt_tokens, so the count is cut
// to prompt_tokens. An unusable one (another type, a fraction, negative, out of range, a
// details value that is not an object) reads as 0 and never spoils the usage.
std::optional<UsageRead> ReadUsageJson(std::string_view json, size_t readable_after);

}  // namespace llmproxy
