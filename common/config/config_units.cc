// Durations ("180s", "1m30s", "500ms", "30d") and byte sizes ("10MiB", "1MB") of config
// values, declared in config_loader.h. Go's time.ParseDuration spelling, since the original
// program was written in Go, plus days ("d", 24h) for budget periods.
#include <charconv>
#include <cstdint>
#include <limits>

#include "common/config/config_loader.h"

namespace llmproxy {
namespace {

// Ten years: anything longer is a typo, and the bound keeps the arithmetic from overflowing.
constexpr int64_t kMaxDurationMs = int64_t{10} * 365 * 24 * 3600 * 1000;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<Millis> ParseDuration(std::string_view s) {
  if (s == "0") return Millis(0);
  if (s.empty()) return std::nullopt;
  int64_t total = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    // Integer part.
    const std::size_t start = i;
    int64_t whole = 0;
    while (i < s.size() && IsDigit(s[i])) {
      whole = whole * 10 + (s[i] - '0');
      if (whole > kMaxDurationMs) return std::nullopt;
      ++i;
    }
    // Optional fraction, kept to 9 digits (nanoseconds) for the integer arithmetic.
    int64_t frac = 0;
    int64_t frac_scale = 1;
    bool has_frac_digits = false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && IsDigit(s[i])) {
        if (frac_scale < 1'000'000'000) {
          frac = frac * 10 + (s[i] - '0');
          frac_scale *= 10;
        }
        has_frac_digits = true;
        ++i;
      }
      if (!has_frac_digits) return std::nullopt;
    }
    if (i == start || (i == start + 1 && s[start] == '.')) return std::nullopt;
    // Unit.
    const std::size_t unit_start = i;
    while (i < s.size() && !IsDigit(s[i]) && s[i] != '.') ++i;
    const std::string_view unit = s.substr(unit_start, i - unit_start);
    int64_t unit_ms;
    if (unit == "ms") {
      unit_ms = 1;
    } else if (unit == "s") {
      unit_ms = 1000;
    } else if (unit == "m") {
      unit_ms = 60'000;
    } else if (unit == "h") {
      unit_ms = 3'600'000;
    } else if (unit == "d") {
      unit_ms = 86'400'000;
    } else {
      return std::nullopt;
    }
    if (whole > kMaxDurationMs / unit_ms) return std::nullopt;
    total += whole * unit_ms + frac * unit_ms / frac_scale;
    if (total > kMaxDurationMs) return std::nullopt;
  }
  return Millis(total);
}

// Whole seconds as "180s" (how people write timeouts), anything finer as "1500ms";
// both parse back with ParseDuration.
std::string FormatDuration(Millis d) {
  const int64_t ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::optional<uint64_t> ParseByteSize(std::string_view s) {
  uint64_t number = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
  if (ec != std::errc() || ptr == s.data()) return std::nullopt;
  std::string_view unit = s.substr(static_cast<std::size_t>(ptr - s.data()));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  uint64_t scale;
  if (unit.empty() || unit == "B") {
    scale = 1;
  } else if (unit == "KB" || unit == "kB") {
    scale = 1000;
  } else if (unit == "MB") {
    scale = 1000 * 1000;
  } else if (unit == "GB") {
    scale = 1000 * 1000 * 1000;
  } else if (unit == "KiB") {
    scale = 1024;
  } else if (unit == "MiB") {
    scale = 1024 * 1024;
  } else if (unit == "GiB") {
    scale = 1024 * 1024 * 1024;
  } else {
    return std::nullopt;
  }
  if (number > std::numeric_limits<uint64_t>::max() / scale) return std::nullopt;
  return number * scale;
}

}  // namespace llmproxy
