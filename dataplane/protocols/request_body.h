// Reads the top-level "model" and "stream" of an OpenAI request body without building a
// DOM, and rewrites only the bytes of the model value (every other byte of the client's
// body reaches the upstream as it came). The reading is json_reader's (simdjson On-Demand);
// this file is the entry point the pipeline calls and the rewrite. Pure: no I/O. The body
// must be one JSON object (RFC 8259 grammar, valid UTF-8, nesting depth <= kMaxJsonDepth)
// so the proxy can answer 400 for `null`, `[]`, `{"model":5}`, truncated JSON, garbage, or
// an ambiguous model key (`{"model":"a","MODEL":"b"}`, a duplicate "model").
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/log/json_escape.h"           // AppendJsonString, used with these helpers
#include "dataplane/protocols/json_reader.h"  // BodyPeek, kJsonPadding, kMaxJsonDepth

namespace llmproxy {

// Reads `body` (see ReadRequestJson in json_reader.h). Errors (BodyPeek::error): not valid
// JSON / not an object / "model" not a string / "stream" not a boolean or null / nesting
// too deep / trailing bytes after the object / a duplicate "model" or "stream" / a key
// differing from them only in case. This form copies the body into a padded buffer.
BodyPeek PeekRequestBody(std::string_view body);
// The same, without the copy when the caller's buffer holds at least kJsonPadding readable
// bytes after body.end() (`readable_after`; fewer means a copy is made).
BodyPeek PeekRequestBody(std::string_view body, size_t readable_after);

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

}  // namespace llmproxy
