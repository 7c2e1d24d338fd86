// Process logging on stderr: one line a record, text for terminals or one JSON
// object a line (--log-format json). Thread-safe; a record is written with one
// write(2) so lines from several threads never interleave.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace llmproxy {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat { kText, kJson };

std::optional<LogLevel> ParseLogLevel(std::string_view s);    // debug|info|warn|error
std::optional<LogFormat> ParseLogFormat(std::string_view s);  // text|json

void InitLogging(LogFormat format, LogLevel level);
LogFormat CurrentLogFormat();
bool LogEnabled(LogLevel level);

using LogValue = std::variant<std::string_view, int64_t, uint64_t, double, bool>;
struct LogField {
  std::string_view key;
  LogValue value;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  template <typename T>
  requires std::is_integral_v<T> LogField(std::string_view k, T v)
      : key(k), value(std::is_signed_v<T> ? LogValue(int64_t(v)) : LogValue(uint64_t(v))) {}
};

// Writes one record: {"ts":..., "level":..., "msg":..., fields...} or
// "2026-12-01T04:00:00.123Z INFO msg key=value ...".
void Log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});

inline void LogDebug(std::string_view m, std::initializer_list<LogField> f = {}) {
  if (LogEnabled(LogLevel::kDebug)) Log(LogLevel::kDebug, m, f);
}
inline void LogInfo(std::string_view m, std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kInfo, m, f);
}
inline void LogWarn(std::string_view m, std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kWarn, m, f);
}
inline void LogError(std::string_view m, std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kError, m, f);
}

// Formats a record without writing it (access logs and tests use this).
std::string FormatLogRecord(LogFormat format, LogLevel level, std::string_view msg,
                            std::initializer_list<LogField> fields);

// Appends t as "2026-12-01T04:00:00.123Z" (UTC, milliseconds), the logs' time format.
void AppendLogTimestamp(std::string& out, std::chrono::system_clock::time_point t);

// Writes an already formatted line (must end in '\n') to stderr in one write.
void WriteLogLine(std::string_view line);

// For a warning that can repeat as fast as the event loop spins (an accept failing while
// the process is out of descriptors): one line per `period` at most, and that line says
// how many were left out before it. Thread-safe.
class LogThrottle {
 public:
  explicit LogThrottle(std::chrono::steady_clock::duration period) : period_(period) {}
  // True when a line may be written now; then `skipped` is how many were not since the
  // last one. `now` is for tests.
  bool Allow(uint64_t& skipped,
             std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

 private:
  const std::chrono::steady_clock::duration period_;
  std::atomic<int64_t> next_ns_{std::numeric_limits<int64_t>::min()};
  std::atomic<uint64_t> skipped_{0};
};

}  // namespace llmproxy
