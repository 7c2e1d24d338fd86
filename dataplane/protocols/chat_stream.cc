#include "dataplane/protocols/chat_stream.h"

#include <simdjson.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "common/log/json_escape.h"
#include "dataplane/protocols/json_reader.h"  // kJsonPadding

namespace llmproxy {
namespace {

namespace od = simdjson::ondemand;
using simdjson::error_code;

// As in json_reader.cc: small documents share the thread's parser and scratch buffer, a
// large one gets its own so it does not pin memory per thread.
constexpr size_t kKeepParserBytes = 512 * 1024;
constexpr size_t kKeepScratchBytes = 256 * 1024;

#define LLMPROXY_CHAT_TRY(expr)             \
  do {                                      \
    if (const error_code e_ = (expr); e_) { \
      return e_;                            \
    }                                       \
  } while (false)

// The text as simdjson wants it (in place when the caller's buffer has the padding, else
// one copy) and the parser for it. Offsets of raw tokens are relative to data().
class Reader {
 public:
  Reader(std::string_view text, size_t readable_after) {
    if (readable_after >= kJsonPadding) {
      data_ = text.data();
      capacity_ = text.size() + readable_after;
    } else {
      thread_local std::string scratch;
      std::string& buffer = text.size() <= kKeepScratchBytes ? scratch : own_text_;
      buffer.reserve(text.size() + kJsonPadding);
      buffer.assign(text);
      data_ = buffer.data();
      capacity_ = buffer.capacity();
    }
    size_ = text.size();
    thread_local od::parser shared;
    if (size_ <= kKeepParserBytes) {
      parser_ = &shared;
    } else {
      own_parser_ = std::make_unique<od::parser>();
      parser_ = own_parser_.get();
    }
  }

  error_code Iterate(od::document& doc) {
    return parser_->iterate(simdjson::padded_string_view(data_, size_, capacity_)).get(doc);
  }
  std::string_view text() const { return std::string_view(data_, size_); }
  size_t OffsetOf(const char* p) const { return static_cast<size_t>(p - data_); }

 private:
  std::string own_text_;
  std::unique_ptr<od::parser> own_parser_;
  od::parser* parser_ = nullptr;
  const char* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// Nothing but whitespace after the document's value (as json_reader.cc checks it).
bool AtEnd(od::document& doc) {
  const char* rest = nullptr;
  return doc.current_location().get(rest) != simdjson::SUCCESS;
}

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

struct Range {
  size_t begin = 0;
  size_t end = 0;
};

// The data field of one raw SSE event: "data:" lines (one optional space after the colon)
// joined with '\n'. A line ends at LF, CRLF or a lone CR.
struct EventData {
  int lines = 0;
  std::string_view payload;  // into the event (one line) or into `joined`
  Range first_line;          // event offsets of the first data line (prefix included)
  Range last_line;           // ... and of the last, without its line end
  size_t payload_begin = 0;  // one line: the payload's offsets in the event
  std::string joined;
};

void ExtractData(std::string_view event, EventData* d) {
  size_t pos = 0;
  while (pos < event.size()) {
    size_t eol = pos;
    while (eol < event.size() && event[eol] != '\n' && event[eol] != '\r') ++eol;
    std::string_view line = event.substr(pos, eol - pos);
    const size_t line_begin = pos;
    pos = eol + (event.substr(eol, 2) == "\r\n" ? 2 : 1);
    if (line.substr(0, 5) != "data:") continue;
    line.remove_prefix(5);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    const Range r{line_begin, eol};
    if (d->lines == 0) {
      d->first_line = r;
      d->payload = line;
      d->payload_begin = static_cast<size_t>(line.data() - event.data());
    } else {
      if (d->lines == 1) d->joined.assign(d->payload);
      d->joined += '\n';
      d->joined.append(line);
      d->payload = d->joined;
    }
    d->last_line = r;
    ++d->lines;
  }
}

// Bytes after the payload that may be read: the rest of the event and what the caller
// allows after it, or the joined buffer's spare capacity.
size_t PayloadReadable(std::string_view event, const EventData& d, size_t readable_after) {
  if (d.lines > 1) return d.joined.capacity() - d.joined.size();
  return event.size() - (d.payload_begin + d.payload.size()) + readable_after;
}

// What one chunk's JSON says, for both the tracker and the filter.
struct ChunkScan {
  // In: where choice 0's content goes (nullptr: not wanted), whether to copy the id, and
  // where role members' byte ranges go (nullptr: not wanted).
  std::string* text = nullptr;
  bool want_id = false;
  std::vector<Range>* roles = nullptr;

  std::string id;
  bool has_id = false;
  Range id_token;
  int64_t created = 0;
  bool has_created = false;
  Range created_token;
  size_t choices = 0;
  bool usage = false;
  bool error = false;
  bool token = false;
  bool tool_call = false;
  bool finish = false;
  bool reasoning = false;
  bool other_index = false;
  bool odd = false;    // a field of an unexpected type (content not a string, ...)
  bool extra = false;  // another non-null delta member, or logprobs: keep the event
};

// The token's bytes without the whitespace simdjson counts with it.
Range TokenRange(const Reader& r, std::string_view token) {
  while (!token.empty() && IsJsonSpace(token.back())) token.remove_suffix(1);
  const size_t begin = r.OffsetOf(token.data());
  return Range{begin, begin + token.size()};
}

// The bytes to cut for the member whose key starts at `key_begin` and value ends at
// `value_end`: with the comma after it, or else the one before it.
Range MemberCut(std::string_view text, size_t key_begin, size_t value_end) {
  size_t j = value_end;
  while (j < text.size() && IsJsonSpace(text[j])) ++j;
  if (j < text.size() && text[j] == ',') {
    ++j;
    while (j < text.size() && IsJsonSpace(text[j])) ++j;
    return Range{key_begin, j};
  }
  size_t i = key_begin;
  while (i > 0 && IsJsonSpace(text[i - 1])) --i;
  if (i > 0 && text[i - 1] == ',') return Range{i - 1, value_end};
  return Range{key_begin, value_end};
}

error_code ScanDelta(Reader& r, od::value value, ChunkScan& s, std::string_view* content) {
  od::object delta;
  LLMPROXY_CHAT_TRY(value.get_object().get(delta));
  for (auto field_result : delta) {
    od::field field;
    LLMPROXY_CHAT_TRY(std::move(field_result).get(field));
    const char* key_raw = field.key().raw();
    std::string_view key;
    LLMPROXY_CHAT_TRY(field.unescaped_key().get(key));
    od::value v = field.value();
    od::json_type type;
    LLMPROXY_CHAT_TRY(v.type().get(type));
    if (key == "role") {
      if (s.roles != nullptr && type == od::json_type::string) {
        const Range value_range = TokenRange(r, v.raw_json_token());
        s.roles->push_back(MemberCut(r.text(), r.OffsetOf(key_raw) - 1, value_range.end));
      }
      continue;
    }
    if (type == od::json_type::null) continue;
    const bool reasoning_key = key == "reasoning_content" || key == "reasoning";
    if (key == "content" || key == "refusal" || reasoning_key) {
      if (type != od::json_type::string) {
        s.odd = true;
        s.token = true;
        continue;
      }
      std::string_view text;
      LLMPROXY_CHAT_TRY(v.get_string().get(text));
      if (text.empty()) continue;
      s.token = true;
      if (reasoning_key) s.reasoning = true;
      if (key == "content") *content = text;
    } else if (key == "tool_calls" || key == "function_call") {
      bool empty = false;
      if (type == od::json_type::array) {
        od::array calls;
        LLMPROXY_CHAT_TRY(v.get_array().get(calls));
        LLMPROXY_CHAT_TRY(calls.is_empty().get(empty));
      } else if (type != od::json_type::object) {
        s.odd = true;
      }
      if (!empty) {
        s.tool_call = true;
        s.token = true;
      }
    } else {
      s.extra = true;
    }
  }
  return simdjson::SUCCESS;
}

error_code ScanChoice(Reader& r, od::value value, ChunkScan& s) {
  od::object choice;
  LLMPROXY_CHAT_TRY(value.get_object().get(choice));
  int64_t index = 0;
  std::string_view content;
  for (auto field_result : choice) {
    od::field field;
    LLMPROXY_CHAT_TRY(std::move(field_result).get(field));
    std::string_view key;
    LLMPROXY_CHAT_TRY(field.unescaped_key().get(key));
    od::value v = field.value();
    od::json_type type;
    LLMPROXY_CHAT_TRY(v.type().get(type));
    if (type == od::json_type::null) continue;
    if (key == "index") {
      if (v.get_int64().get(index) != simdjson::SUCCESS) {
        s.odd = true;
        index = -1;
      }
    } else if (key == "delta") {
      if (type == od::json_type::object) {
        LLMPROXY_CHAT_TRY(ScanDelta(r, v, s, &content));
      } else {
        s.odd = true;
      }
    } else if (key == "finish_reason") {
      s.finish = true;
      s.token = true;
    } else if (key == "logprobs") {
      s.extra = true;
    }
  }
  if (index != 0) s.other_index = true;
  // The content view lives in the parser's string buffer until the next document.
  if (index == 0 && s.text != nullptr) s.text->append(content);
  return simdjson::SUCCESS;
}

error_code Scan(Reader& r, ChunkScan& s) {
  od::document doc;
  LLMPROXY_CHAT_TRY(r.Iterate(doc));
  od::object top;
  LLMPROXY_CHAT_TRY(doc.get_object().get(top));
  for (auto field_result : top) {
    od::field field;
    LLMPROXY_CHAT_TRY(std::move(field_result).get(field));
    std::string_view key;
    LLMPROXY_CHAT_TRY(field.unescaped_key().get(key));
    od::value v = field.value();
    od::json_type type;
    LLMPROXY_CHAT_TRY(v.type().get(type));
    if (key == "id") {
      if (type != od::json_type::string) continue;
      s.id_token = TokenRange(r, v.raw_json_token());
      s.has_id = true;
      if (s.want_id) {
        std::string_view id;
        LLMPROXY_CHAT_TRY(v.get_string().get(id));
        s.id.assign(id);
      }
    } else if (key == "created") {
      if (type != od::json_type::number) continue;
      const std::string_view token = v.raw_json_token();
      if (v.get_int64().get(s.created) != simdjson::SUCCESS) continue;
      s.created_token = TokenRange(r, token);
      s.has_created = true;
    } else if (key == "choices") {
      if (type != od::json_type::array) {
        if (type != od::json_type::null) s.odd = true;
        continue;
      }
      od::array choices;
      LLMPROXY_CHAT_TRY(v.get_array().get(choices));
      for (auto element : choices) {
        od::value choice;
        LLMPROXY_CHAT_TRY(element.get(choice));
        ++s.choices;
        LLMPROXY_CHAT_TRY(ScanChoice(r, choice, s));
      }
    } else if (key == "usage") {
      s.usage = s.usage || type == od::json_type::object;
    } else if (key == "error") {
      if (type != od::json_type::null) {
        s.error = true;
        s.token = true;
      }
    }
  }
  if (!AtEnd(doc)) return simdjson::TRAILING_CONTENT;
  return simdjson::SUCCESS;
}

}  // namespace

ChatStreamTracker::ChatStreamTracker(TrackOptions options) : options_(options) {}

void ChatStreamTracker::Observe(std::string_view event, size_t readable_after) {
  if (first_token_ && !options_.text) return;
  ++events_;
  EventData d;
  ExtractData(event, &d);
  if (d.lines == 0) return;  // a comment or a field other than data: not a chunk
  if (d.payload == "[DONE]") {
    done_ = true;
    first_token_ = true;
    return;
  }
  ChunkScan s;
  s.text = options_.text ? &text_ : nullptr;
  s.want_id = !have_id_;
  const size_t text_before = text_.size();
  Reader reader(d.payload, PayloadReadable(event, d, readable_after));
  if (Scan(reader, s) != simdjson::SUCCESS) {
    text_.resize(text_before);  // a chunk that is not JSON adds nothing
    unparsed_ = true;
    return;
  }
  if (s.has_id && !have_id_) {
    id_ = std::move(s.id);
    have_id_ = true;
  }
  if (s.has_created && !have_created_) {
    created_ = s.created;
    have_created_ = true;
  }
  first_token_ = first_token_ || s.token;
  tool_call_ = tool_call_ || s.tool_call;
  finished_ = finished_ || s.finish;
  error_ = error_ || s.error;
  reasoning_ = reasoning_ || s.reasoning;
  other_choice_ = other_choice_ || s.other_index;
  unparsed_ = unparsed_ || s.odd;
}

void ChatStreamTracker::ObserveUnframed() {
  unframed_ = true;
  first_token_ = true;
}

bool ChatStreamTracker::continuable() const {
  return options_.text && !other_choice_ && !unparsed_ && !unframed_ && !tool_call_ && !finished_ &&
         !done_;
}

ContinuationFilter::ContinuationFilter(std::string_view id, int64_t created) {
  if (!id.empty()) AppendJsonString(id_json_, id);
  if (created != 0) created_ = std::to_string(created);
}

ContinuationFilter::Result ContinuationFilter::Filter(std::string_view event,
                                                      size_t readable_after) {
  EventData d;
  ExtractData(event, &d);
  if (d.lines == 0 || d.payload == "[DONE]") return Result{};
  std::vector<Range> roles;
  ChunkScan s;
  s.roles = &roles;
  Reader reader(d.payload, PayloadReadable(event, d, readable_after));
  if (Scan(reader, s) != simdjson::SUCCESS) return Result{};
  if (s.choices > 0 && !s.token && !s.extra && !s.odd && !s.usage && !s.error) {
    ++dropped_;
    return Result{Verdict::kDrop, {}};
  }
  struct Edit {
    Range range;
    std::string_view with;
  };
  std::vector<Edit> edits;
  if (s.has_id && !id_json_.empty()) edits.push_back({s.id_token, id_json_});
  if (s.has_created && !created_.empty()) edits.push_back({s.created_token, created_});
  for (const Range& r : roles) edits.push_back({r, {}});
  if (edits.empty()) return Result{};
  std::sort(edits.begin(), edits.end(),
            [](const Edit& a, const Edit& b) { return a.range.begin < b.range.begin; });

  const std::string_view text = reader.text();
  std::string payload;
  payload.reserve(text.size() + id_json_.size() + created_.size());
  size_t at = 0;
  for (const Edit& e : edits) {
    // Cuts of two adjacent role members share the comma between them: cut the rest.
    if (e.range.end <= at) continue;
    const size_t begin = std::max(e.range.begin, at);
    payload.append(text.substr(at, begin - at));
    payload.append(e.with);
    at = e.range.end;
  }
  payload.append(text.substr(at));

  out_.clear();
  if (d.lines == 1) {
    out_.append(event.substr(0, d.payload_begin));
    out_.append(payload);
    out_.append(event.substr(d.payload_begin + d.payload.size()));
  } else {
    // The joining LFs are JSON whitespace: one line keeps the framing simple and valid.
    std::replace(payload.begin(), payload.end(), '\n', ' ');
    out_.append(event.substr(0, d.first_line.begin));
    out_.append("data: ");
    out_.append(payload);
    out_.append(event.substr(d.last_line.end));
  }
  ++replaced_;
  return Result{Verdict::kReplace, out_};
}

std::optional<std::string> AppendAssistantPrefill(std::string_view body, std::string_view text) {
  Reader reader(body, 0);
  od::document doc;
  if (reader.Iterate(doc) != simdjson::SUCCESS) return std::nullopt;
  od::object top;
  if (doc.get_object().get(top) != simdjson::SUCCESS) return std::nullopt;
  std::optional<size_t> close;  // offset of the messages array's ']'
  bool empty = true;
  for (auto field_result : top) {
    od::field field;
    if (std::move(field_result).get(field) != simdjson::SUCCESS) return std::nullopt;
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS) return std::nullopt;
    if (key != "messages") continue;  // its value is skipped (structure still checked)
    if (close) return std::nullopt;   // two "messages": which one a provider reads is unclear
    od::array messages;
    if (field.value().get_array().get(messages) != simdjson::SUCCESS) return std::nullopt;
    std::string_view raw;
    if (messages.raw_json().get(raw) != simdjson::SUCCESS) return std::nullopt;
    while (!raw.empty() && IsJsonSpace(raw.back())) raw.remove_suffix(1);
    if (raw.size() < 2 || raw.front() != '[' || raw.back() != ']') return std::nullopt;
    close = reader.OffsetOf(raw.data()) + raw.size() - 1;
    const std::string_view inside = raw.substr(1, raw.size() - 2);
    empty = std::all_of(inside.begin(), inside.end(), IsJsonSpace);
  }
  if (!close || !AtEnd(doc)) return std::nullopt;
  std::string out;
  out.reserve(body.size() + text.size() + 48);
  out.append(body.substr(0, *close));
  if (!empty) out.push_back(',');
  out.append(R"({"role":"assistant","content":)");
  AppendJsonString(out, text);
  out.push_back('}');
  out.append(body.substr(*close));
  return out;
}

}  // namespace llmproxy
