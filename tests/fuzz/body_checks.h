// Invariants of the request-body scanner and the model rewrite (request_body.h), shared by
// the body fuzzer and the request fuzzer: CheckBody aborts (a fuzzer finding) when the
// scanner's offsets are inconsistent, when a rewrite touches a byte outside the model
// value or the inserted members, or when the scanner and nlohmann's parser disagree on a
// document both can judge.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/log/json_escape.h"
#include "dataplane/protocols/request_body.h"
#include "dataplane/protocols/sse_parser.h"

namespace llmproxy::fuzz {

[[noreturn]] inline void Fail(const char* what, std::string_view body) {
  std::fprintf(stderr, "fuzz invariant failed: %s\nbody (%zu bytes): %.*s\n", what, body.size(),
               static_cast<int>(body.size() < 512 ? body.size() : 512), body.data());
  std::abort();
}

#define FUZZ_CHECK(cond, body)                        \
  do {                                                \
    if (!(cond)) ::llmproxy::fuzz::Fail(#cond, body); \
  } while (0)

// Valid UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
inline bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + len >= s.size()) return false;
    for (size_t k = 1; k <= len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return false;
    }
    i += len + 1;
  }
  return true;
}

// A "\uD800".."\uDFFF" escape: nlohmann rejects lone surrogates, the scanner decodes them
// to U+FFFD, so such documents are left out of the comparison.
inline bool HasSurrogateEscape(std::string_view s) {
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (s[i] == '\\' && s[i + 1] == 'u' && (s[i + 2] == 'd' || s[i + 2] == 'D')) return true;
  }
  return false;
}

// A number nlohmann refuses as out of range although RFC 8259 allows it (its parser wants
// a finite double): an exponent of three or more digits, or a very long digit run.
inline bool HasHugeNumber(std::string_view s) {
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool digit = s[i] >= '0' && s[i] <= '9';
    run = digit || (run > 0 && s[i] == '.') ? run + 1 : 0;
    if (run > 200) return true;
    if ((s[i] == 'e' || s[i] == 'E') && i > 0) {
      size_t j = i + 1;
      if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
      size_t digits = 0;
      while (j + digits < s.size() && s[j + digits] >= '0' && s[j + digits] <= '9') ++digits;
      if (digits >= 3) return true;
    }
  }
  return false;
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// What nlohmann's parser says about `body`, for the differential check.
struct Reference {
  bool object = false;     // valid JSON, and an object
  size_t max_depth = 0;    // deepest container nesting (the top object is 1)
  bool plain_keys = true;  // top-level keys unique, none a case variant of model/stream
  nlohmann::json doc;
};

inline Reference ParseReference(std::string_view body) {
  Reference ref;
  std::vector<std::string> keys;
  size_t depth = 0;
  auto callback = [&](int d, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start || event == E::array_start) {
      depth = static_cast<size_t>(d) + 1;
      if (depth > ref.max_depth) ref.max_depth = depth;
    }
    if (event == E::key && d == 1) {
      const std::string& k = parsed.get_ref<const std::string&>();
      for (const std::string& seen : keys) {
        if (seen == k) ref.plain_keys = false;
      }
      for (std::string_view name : {"model", "stream"}) {
        if (k != name && EqualsIgnoreCase(k, name)) ref.plain_keys = false;
      }
      keys.push_back(k);
    }
    return true;
  };
  ref.doc = nlohmann::json::parse(body.begin(), body.end(), callback, /*allow_exceptions=*/false);
  ref.object = !ref.doc.is_discarded() && ref.doc.is_object();
  return ref;
}

// The body an edit list gives: the spec of RewriteRequestBody, written independently.
struct Edit {
  size_t at;     // offset in the original body
  size_t erase;  // bytes of the original removed there
  std::string insert;
};

inline std::string Apply(std::string_view body, const std::vector<Edit>& edits) {
  std::string out;
  size_t copied = 0;
  for (const Edit& e : edits) {
    out.append(body.substr(copied, e.at - copied));
    out += e.insert;
    copied = e.at + e.erase;
  }
  out.append(body.substr(copied));
  return out;
}

inline void CheckRewrite(std::string_view body, const BodyPeek& peek, const BodyRewrite& rewrite) {
  const std::string out = RewriteRequestBody(body, peek, rewrite);
  if (!NeedsRewrite(peek, rewrite)) {
    FUZZ_CHECK(out == body, body);
    return;
  }
  std::vector<Edit> edits;
  std::string model_json;
  if (rewrite.model) AppendJsonString(model_json, *rewrite.model);
  if (rewrite.model && !peek.has_model) {
    edits.push_back(
        {peek.object_begin + 1, 0, "\"model\":" + model_json + (peek.object_empty ? "" : ",")});
  } else if (rewrite.model && *rewrite.model != peek.model) {
    edits.push_back({peek.model_begin, peek.model_end - peek.model_begin, model_json});
  }
  const bool add_usage = rewrite.add_include_usage && !peek.has_stream_options;
  if (add_usage) {
    const bool comma = !peek.object_empty || (rewrite.model && !peek.has_model);
    edits.push_back({peek.object_end, 0,
                     std::string(comma ? "," : "") + R"("stream_options":{"include_usage":true})"});
  }
  FUZZ_CHECK(out == Apply(body, edits), body);

  // The upstream gets a body the scanner itself accepts, with the new facts.
  const BodyPeek again = PeekRequestBody(out);
  FUZZ_CHECK(again.ok(), out);
  if (rewrite.model) {
    FUZZ_CHECK(again.has_model && again.model == *rewrite.model, out);
  } else {
    FUZZ_CHECK(again.has_model == peek.has_model && again.model == peek.model, out);
  }
  FUZZ_CHECK(again.stream == peek.stream, out);
  if (add_usage) FUZZ_CHECK(again.has_stream_options && again.client_include_usage, out);
}

// Every check on one body.
inline void CheckBody(std::string_view body) {
  const BodyPeek peek = PeekRequestBody(body);
  // The usage reader on the same bytes must not crash.
  (void)ExtractUsageFromJson(body);

  if (peek.ok()) {
    FUZZ_CHECK(peek.object_begin < peek.object_end && peek.object_end < body.size(), body);
    FUZZ_CHECK(body[peek.object_begin] == '{' && body[peek.object_end] == '}', body);
    if (peek.has_model) {
      FUZZ_CHECK(peek.object_begin < peek.model_begin && peek.model_begin + 2 <= peek.model_end &&
                     peek.model_end <= peek.object_end,
                 body);
      FUZZ_CHECK(body[peek.model_begin] == '"' && body[peek.model_end - 1] == '"', body);
    } else {
      FUZZ_CHECK(peek.model.empty(), body);
    }
    if (peek.object_empty) {
      for (size_t i = peek.object_begin + 1; i < peek.object_end; ++i) {
        FUZZ_CHECK(body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r', body);
      }
    }
    // The pipeline's rewrites: a routed model (plain, and one that needs escaping), the
    // client's own model (no change), and none; each with and without the usage member.
    static const std::string kEscaped = "m\"\\/\b\x01\x7f\xc3\xa9\n";
    const std::string same = peek.model;
    for (bool usage : {false, true}) {
      for (const std::string* model :
           {static_cast<const std::string*>(nullptr), &kEscaped, &same}) {
        BodyRewrite rewrite;
        if (model) rewrite.model = std::string_view(*model);
        rewrite.add_include_usage = usage;
        CheckRewrite(body, peek, rewrite);
      }
      BodyRewrite routed;
      routed.model = std::string_view("gpt-4o-mini");
      routed.add_include_usage = usage;
      CheckRewrite(body, peek, routed);
    }
  } else {
    FUZZ_CHECK(!peek.error.empty(), body);
  }

  // Differential: on documents nlohmann can judge the same way (valid UTF-8, no
  // lone-surrogate escapes, no NUL byte: nlohmann's lexer takes it for the end of input,
  // no number beyond a double), the two parsers agree.
  if (!IsUtf8(body) || HasSurrogateEscape(body) || body.find('\0') != std::string_view::npos ||
      HasHugeNumber(body)) {
    return;
  }
  const Reference ref = ParseReference(body);
  if (peek.ok()) {
    FUZZ_CHECK(ref.object, body);
    const auto model = ref.doc.find("model");
    FUZZ_CHECK(peek.has_model == (model != ref.doc.end()), body);
    if (ref.plain_keys) {
      if (peek.has_model) FUZZ_CHECK(model->is_string() && *model == peek.model, body);
      const auto stream = ref.doc.find("stream");
      FUZZ_CHECK(peek.stream == (stream != ref.doc.end() && *stream == true), body);
      FUZZ_CHECK(peek.has_stream_options == ref.doc.contains("stream_options"), body);
      // The completion cap: the largest of the three keys that holds an unsigned integer
      // (signed numbers are left out: "-0" is a matter of taste between the parsers).
      std::optional<uint64_t> cap;
      bool judged = true;
      for (const char* key : {"max_tokens", "max_completion_tokens", "max_output_tokens"}) {
        const auto v = ref.doc.find(key);
        if (v == ref.doc.end()) continue;
        if (v->is_number_unsigned()) cap = std::max(cap.value_or(0), v->get<uint64_t>());
        if (v->is_number_integer() && !v->is_number_unsigned()) judged = false;
      }
      if (judged) FUZZ_CHECK(peek.max_output_tokens == cap, body);
    }
  } else if (ref.object && ref.plain_keys && ref.max_depth <= kMaxJsonDepth) {
    // Valid by RFC 8259 and unambiguous: only the documented field-type rules may refuse.
    const auto model = ref.doc.find("model");
    const auto stream = ref.doc.find("stream");
    const bool bad_model = model != ref.doc.end() && !model->is_string();
    const bool bad_stream = stream != ref.doc.end() && !stream->is_boolean() && !stream->is_null();
    FUZZ_CHECK(bad_model || bad_stream, body);
  }
}

}  // namespace llmproxy::fuzz
