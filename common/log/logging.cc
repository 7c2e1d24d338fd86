#include "common/log/logging.h"

#include "common/log/json_escape.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace llmproxy {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// Text values are quoted only when they would be ambiguous on the line.
void AppendTextValue(std::string& out, std::string_view s) {
  bool plain = !s.empty();
  for (unsigned char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c >= 0x7f) {
      plain = false;
      break;
    }
  }
  if (plain) {
    out += s;
  } else {
    AppendJsonString(out, s);
  }
}

void AppendValue(std::string& out, const LogValue& v, bool json) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          if (json) {
            AppendJsonString(out, x);
          } else {
            AppendTextValue(out, x);
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          out += x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.6g", x);
          out += buf;
        } else {
          out += std::to_string(x);
        }
      },
      v);
}

}  // namespace

void AppendLogTimestamp(std::string& out, std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::system_clock::to_time_t(t);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  out += buf;
}

std::optional<LogLevel> ParseLogLevel(std::string_view s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warn" || s == "warning") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return std::nullopt;
}

std::optional<LogFormat> ParseLogFormat(std::string_view s) {
  if (s == "text") return LogFormat::kText;
  if (s == "json") return LogFormat::kJson;
  return std::nullopt;
}

void InitLogging(LogFormat format, LogLevel level) {
  g_format.store(static_cast<int>(format), std::memory_order_relaxed);
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogFormat CurrentLogFormat() {
  return static_cast<LogFormat>(g_format.load(std::memory_order_relaxed));
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string FormatLogRecord(LogFormat format, LogLevel level, std::string_view msg,
                            std::initializer_list<LogField> fields) {
  std::string out;
  out.reserve(128 + msg.size());
  if (format == LogFormat::kJson) {
    out += "{\"ts\":\"";
    AppendLogTimestamp(out, std::chrono::system_clock::now());
    out += "\",\"level\":\"";
    out += LevelName(level);
    out += "\",\"msg\":";
    AppendJsonString(out, msg);
    for (const auto& f : fields) {
      out.push_back(',');
      AppendJsonString(out, f.key);
      out.push_back(':');
      AppendValue(out, f.value, true);
    }
    out += "}\n";
  } else {
    AppendLogTimestamp(out, std::chrono::system_clock::now());
    out.push_back(' ');
    out += LevelName(level);
    out.push_back(' ');
    out += msg;
    for (const auto& f : fields) {
      out.push_back(' ');
      out += f.key;
      out.push_back('=');
      AppendValue(out, f.value, false);
    }
    out.push_back('\n');
  }
  return out;
}

void WriteLogLine(std::string_view line) {
  while (!line.empty()) {
    ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    line.remove_prefix(static_cast<size_t>(n));
  }
}

void Log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  WriteLogLine(FormatLogRecord(CurrentLogFormat(), level, msg, fields));
}

bool LogThrottle::Allow(uint64_t& skipped, std::chrono::steady_clock::time_point now) {
  const int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  int64_t next = next_ns_.load(std::memory_order_relaxed);
  const int64_t period_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(period_).count();
  // One caller wins the slot; the others count themselves as skipped.
  if (now_ns < next ||
      !next_ns_.compare_exchange_strong(next, now_ns + period_ns, std::memory_order_relaxed)) {
    skipped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  skipped = skipped_.exchange(0, std::memory_order_relaxed);
  return true;
}

}  // namespace llmproxy
