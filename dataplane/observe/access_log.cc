#include "dataplane/observe/access_log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>

#include "common/log/json_escape.h"

namespace llmproxy {
namespace {

// Client-supplied strings are cut here so one request cannot write a huge log
// line.
constexpr size_t kMaxClientString = 256;
constexpr size_t kMaxErrorString = 512;

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not
// valid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return len;
}

// Appends the contents of a JSON string (without quotes): escapes quotes,
// backslashes and control bytes, replaces invalid UTF-8 with U+FFFD so every
// line parses, and stops before `limit` input bytes without splitting a
// character.
void AppendSanitizedJson(std::string& out, std::string_view s, size_t limit) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = Utf8SequenceLength(s, i);
    if (i + std::max<size_t>(len, 1) > limit) break;
    if (len == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (len > 1) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    // One ASCII byte: the shared escaper's rules, so logs and error bodies agree.
    AppendJsonEscaped(out, s.substr(i++, 1));
  }
}

// Builds one record field by field in either format.
class LineWriter {
 public:
  LineWriter(std::string& out, LogFormat format, std::chrono::system_clock::time_point now)
      : json_(format == LogFormat::kJson), out_(out) {
    if (json_) {
      out_ += "{\"ts\":\"";
      AppendLogTimestamp(out_, now);
      out_ += "\",\"level\":\"info\",\"msg\":\"access\"";
    } else {
      AppendLogTimestamp(out_, now);
      out_ += " info access";
    }
  }

  void String(std::string_view key, std::string_view value, size_t limit = kMaxClientString) {
    Key(key);
    if (json_) {
      out_.push_back('"');
      AppendSanitizedJson(out_, value, limit);
      out_.push_back('"');
    } else if (value.empty()) {
      out_.push_back('-');
    } else if (PlainText(value) && value.size() <= limit) {
      out_ += value;
    } else {
      out_.push_back('"');
      AppendSanitizedJson(out_, value, limit);
      out_.push_back('"');
    }
  }

  void Uint(std::string_view key, uint64_t value) {
    Key(key);
    char buf[24];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    out_.append(buf, ec == std::errc() ? end : buf);
  }

  void Seconds(std::string_view key, double value) {
    Key(key);
    if (!std::isfinite(value)) {
      out_ += json_ ? "null" : "-";
      return;
    }
    // printf's %g style with 7 significant digits ("0.000183", "3.5", "1e-07": valid JSON
    // numbers, within 1e-6 relative) without printf's locale and format parsing.
    char buf[32];
    const auto [end, ec] =
        std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general, 7);
    out_.append(buf, ec == std::errc() ? end : buf);
  }

  // `value` written by `write` (Uint, Seconds), or null (JSON) / "-" (text) when absent.
  template <class T>
  void Optional(std::string_view key, const std::optional<T>& value,
                void (LineWriter::*write)(std::string_view, T)) {
    if (value) {
      (this->*write)(key, *value);
    } else {
      Null(key);
    }
  }

  void Bool(std::string_view key, bool value) {
    Key(key);
    out_ += value ? "true" : "false";
  }

  void Finish() { out_ += json_ ? "}\n" : "\n"; }

 private:
  static bool PlainText(std::string_view s) {
    for (unsigned char c : s) {
      if (c <= ' ' || c == '"' || c == '=' || c >= 0x7f) return false;
    }
    return true;
  }

  void Key(std::string_view key) {
    if (json_) {
      out_ += ",\"";
      out_ += key;
      out_ += "\":";
    } else {
      out_.push_back(' ');
      out_ += key;
      out_.push_back('=');
    }
  }

  void Null(std::string_view key) {
    Key(key);
    out_ += json_ ? "null" : "-";
  }

  bool json_;
  std::string& out_;
};

}  // namespace

void AppendAccessLogLine(std::string& out, const RequestRecord& r, LogFormat format,
                         std::chrono::system_clock::time_point now) {
  LineWriter w(out, format, now);
  w.String("request_id", r.request_id);
  w.String("method", r.method);
  w.String("path", r.path);
  w.Uint("status", static_cast<uint64_t>(r.status < 0 ? 0 : r.status));
  w.String("model_requested", r.model_requested);
  w.String("model_resolved", r.model_resolved);
  w.String("backend", r.backend);
  w.Uint("attempts", r.attempts);
  if (r.continued > 0) w.Uint("continued", r.continued);
  if (r.hedged) w.Bool("hedge_won", r.hedge_won);
  w.Bool("stream", r.stream);
  w.Optional("ttft_seconds", r.ttft_seconds, &LineWriter::Seconds);
  w.Seconds("duration_seconds", r.duration_seconds);
  w.Seconds("overhead_seconds", r.overhead_seconds);
  w.Optional("prompt_tokens", r.prompt_tokens, &LineWriter::Uint);
  w.Optional("completion_tokens", r.completion_tokens, &LineWriter::Uint);
  w.Uint("bytes_in", r.bytes_in);
  w.Uint("bytes_out", r.bytes_out);
  w.String("client", r.client_address);
  if (!r.key_name.empty()) w.String("key", r.key_name);
  if (!r.error.empty()) w.String("error", r.error, kMaxErrorString);
  w.Finish();
}

std::string FormatAccessLogLine(const RequestRecord& r, LogFormat format,
                                std::chrono::system_clock::time_point now) {
  std::string out;
  out.reserve(512);
  AppendAccessLogLine(out, r, format, now);
  return out;
}

namespace {
std::atomic<uint64_t> g_next_log_id{1};
}  // namespace

AccessLog::AccessLog() : AccessLog(AccessLogBufferOptions{}) {}

AccessLog::AccessLog(AccessLogBufferOptions options)
    : format_(options.format), options_(options), id_(g_next_log_id.fetch_add(1)) {
  flusher_ = std::thread([this] { FlusherLoop(); });
}

AccessLog::AccessLog(Sink sink, std::optional<LogFormat> format)
    : sink_(std::move(sink)), format_(format), id_(g_next_log_id.fetch_add(1)) {}

AccessLog::~AccessLog() {
  if (flusher_.joinable()) {
    {
      std::lock_guard lock(stop_mu_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    flusher_.join();
  }
  Flush();
}

void AccessLog::OnRequestDone(const RequestRecord& record) {
  if (!LogEnabled(LogLevel::kInfo)) return;
  const LogFormat format = format_.value_or(CurrentLogFormat());
  const auto now = std::chrono::system_clock::now();
  if (sink_) {
    sink_(FormatAccessLogLine(record, format, now));
    return;
  }
  Slot& slot = ThisThreadSlot();
  const auto steady_now = std::chrono::steady_clock::now();
  std::lock_guard lock(slot.mu);
  if (slot.buffer.empty()) {
    slot.oldest = steady_now;
    // Room for a full buffer plus the line that crosses the mark: one allocation per
    // thread for the life of the log.
    if (slot.buffer.capacity() < options_.buffer_bytes + 4096) {
      slot.buffer.reserve(options_.buffer_bytes + 4096);
    }
  }
  AppendAccessLogLine(slot.buffer, record, format, now);
  if (slot.buffer.size() >= options_.buffer_bytes || steady_now - slot.oldest >= options_.max_age) {
    WriteOut(slot);
  }
}

void AccessLog::Flush() { FlushOlderThan(std::chrono::steady_clock::duration::zero()); }

AccessLog::Slot& AccessLog::ThisThreadSlot() {
  // One entry per thread: a worker has one AccessLog, so after a thread's first line this
  // is a compare and a pointer, no lock. The id (never reused, unlike an address) keeps a
  // thread from touching a slot of a destroyed log.
  struct Cache {
    uint64_t log_id = 0;
    Slot* slot = nullptr;
  };
  thread_local Cache cache;
  if (cache.log_id == id_) return *cache.slot;
  const std::thread::id me = std::this_thread::get_id();
  std::lock_guard lock(slots_mu_);
  Slot* slot = nullptr;
  for (const auto& s : slots_) {
    if (s->owner == me) {
      slot = s.get();
      break;
    }
  }
  if (!slot) {
    slots_.push_back(std::make_unique<Slot>());
    slot = slots_.back().get();
    slot->owner = me;
  }
  cache = Cache{id_, slot};
  return *slot;
}

void AccessLog::WriteOut(Slot& slot) {
  std::string_view data = slot.buffer;
  std::lock_guard lock(write_mu_);
  while (!data.empty()) {
    const ssize_t n = ::write(options_.fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // stderr gone or full (non-blocking): drop rather than grow without bound
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  slot.buffer.clear();
}

void AccessLog::FlushOlderThan(std::chrono::steady_clock::duration age) {
  const auto now = std::chrono::steady_clock::now();
  // slots_mu_ is held throughout so slots_ cannot change; lock order is always
  // slots_mu_ -> Slot::mu -> write_mu_ (the request path never holds slots_mu_ and a slot).
  std::lock_guard slots_lock(slots_mu_);
  for (const auto& slot : slots_) {
    std::lock_guard lock(slot->mu);
    if (!slot->buffer.empty() && now - slot->oldest >= age) WriteOut(*slot);
  }
}

void AccessLog::FlusherLoop() {
  std::unique_lock lock(stop_mu_);
  while (!stop_) {
    if (stop_cv_.wait_for(lock, options_.flush_interval, [this] { return stop_; })) break;
    lock.unlock();
    FlushOlderThan(options_.max_age);
    lock.lock();
  }
}

}  // namespace llmproxy
