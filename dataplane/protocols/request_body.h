// Reads the top-level "model" and "stream" of an OpenAI request body without building a
// DOM, and rewrites only the bytes of the model value (every other byte of the client's
// body reaches the upstream as it came). One pass over the body; the only allocation is
// the decoded model string (usually none: small-string) and the rewritten output.
// Pure: no I/O. Also validates the body is one JSON object (RFC 8259 grammar, nesting
// depth <= kMaxJsonDepth) so the proxy can answer 400 for `null`, `[]`, `{"model":5}`,
// truncated JSON or garbage.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/log/json_escape.h"  // AppendJsonString, used with these helpers

namespace llmproxy {

inline constexpr size_t kMaxJsonDepth = 256;

struct BodyPeek {
  // Empty when the body is acceptable; else a short message for a 400 error (a static
  // string: never contains body bytes).
  std::string_view error;

  bool has_model = false;  // top-level "model" present (as a string)
  std::string model;       // decoded value (escapes like \u00e9 resolved); "" if absent
  bool stream = false;     // top-level "stream": true (false when absent or null)

  // Top-level "stream_options" is present (any value), and whether it is an object
  // holding "include_usage": true (the client itself asked for the usage chunk, so the
  // proxy must not hide it).
  bool has_stream_options = false;
  bool client_include_usage = false;

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

// Scans `body`. Duplicate top-level keys: the last one wins (like most JSON parsers).
// Errors (BodyPeek::error): not valid JSON / not an object / "model" not a string /
// "stream" not a boolean or null / nesting too deep / trailing bytes after the object.
BodyPeek PeekRequestBody(std::string_view body);

struct BodyRewrite {
  // Replace the model value with this string (JSON-escaped on output). When the body has
  // no "model", a member "model":"<value>" is inserted as the first member.
  std::optional<std::string_view> model;
  // Append "stream_options":{"include_usage":true} as the last member. Ignored when the
  // body already has a "stream_options" (check peek.has_stream_options first).
  bool add_include_usage = false;
};

// True when RewriteRequestBody would change anything (so the pipeline can forward the
// original buffer untouched, without a copy, when it returns false).
bool NeedsRewrite(const BodyPeek& peek, const BodyRewrite& rewrite);

// Builds the upstream body: `body` with only the described changes. `peek` must come from
// PeekRequestBody(body) and be ok(). Output bytes outside the model value equal the input.
std::string RewriteRequestBody(std::string_view body, const BodyPeek& peek,
                               const BodyRewrite& rewrite);

// The raw bytes of the value of top-level member `key` of a JSON object text, without
// validating the rest of the document strictly (used on upstream responses to find
// "usage" cheaply). nullopt when absent or when `json` is not an object.
std::optional<std::string_view> FindTopLevelJsonValue(std::string_view json, std::string_view key);

}  // namespace llmproxy
