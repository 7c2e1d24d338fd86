#include "dataplane/routing/retry_policy.h"

#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>

#include "dataplane/routing/context_length_error.h"

namespace llmproxy {
namespace {

// Far enough for any real Retry-After; keeps arithmetic away from overflow. The
// health tracker caps the cooldown at max_cooldown anyway.
constexpr int64_t kMaxDelaySeconds = 365LL * 24 * 3600;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A tiny left-to-right reader for the three HTTP-date forms.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  bool Literal(std::string_view lit) {
    if (s_.substr(0, lit.size()) != lit) return false;
    s_.remove_prefix(lit.size());
    return true;
  }
  // Exactly `min`..`max` digits.
  bool Number(int min, int max, int& out) {
    int n = 0;
    out = 0;
    while (n < max && n < static_cast<int>(s_.size()) &&
           std::isdigit(static_cast<unsigned char>(s_[n]))) {
      out = out * 10 + (s_[n] - '0');
      ++n;
    }
    if (n < min) return false;
    s_.remove_prefix(n);
    return true;
  }
  // Letters up to a non-letter.
  std::string_view Word() {
    size_t n = 0;
    while (n < s_.size() && std::isalpha(static_cast<unsigned char>(s_[n]))) ++n;
    std::string_view word = s_.substr(0, n);
    s_.remove_prefix(n);
    return word;
  }
  bool Done() const { return s_.empty(); }

 private:
  std::string_view s_;
};

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> kShortDays = {"Mon", "Tue", "Wed", "Thu",
                                                        "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kLongDays = {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};

template <size_t N>
bool OneOf(std::string_view word, const std::array<std::string_view, N>& words) {
  for (std::string_view w : words) {
    if (w == word) return true;
  }
  return false;
}

bool Month(Reader& r, int& month) {
  std::string_view word = r.Word();
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (kMonths[i] == word) {
      month = static_cast<int>(i) + 1;
      return true;
    }
  }
  return false;
}

bool Time(Reader& r, int& h, int& m, int& s) {
  return r.Number(2, 2, h) && r.Literal(":") && r.Number(2, 2, m) && r.Literal(":") &&
         r.Number(2, 2, s);
}

struct DateParts {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
};

// "Sun, 06 Nov 1994 08:49:37 GMT"
bool ImfFixdate(std::string_view s, DateParts& d) {
  Reader r(s);
  return OneOf(r.Word(), kShortDays) && r.Literal(", ") && r.Number(2, 2, d.day) &&
         r.Literal(" ") && Month(r, d.month) && r.Literal(" ") && r.Number(4, 4, d.year) &&
         r.Literal(" ") && Time(r, d.hour, d.minute, d.second) && r.Literal(" GMT") && r.Done();
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
bool Rfc850(std::string_view s, DateParts& d) {
  Reader r(s);
  if (!(OneOf(r.Word(), kLongDays) && r.Literal(", ") && r.Number(2, 2, d.day) && r.Literal("-") &&
        Month(r, d.month) && r.Literal("-") && r.Number(2, 2, d.year) && r.Literal(" ") &&
        Time(r, d.hour, d.minute, d.second) && r.Literal(" GMT") && r.Done())) {
    return false;
  }
  d.year += d.year < 70 ? 2000 : 1900;
  return true;
}

// "Sun Nov  6 08:49:37 1994"
bool Asctime(std::string_view s, DateParts& d) {
  Reader r(s);
  if (!(OneOf(r.Word(), kShortDays) && r.Literal(" ") && Month(r, d.month) && r.Literal(" "))) {
    return false;
  }
  r.Literal(" ");  // single-digit days are space-padded
  return r.Number(1, 2, d.day) && r.Literal(" ") && Time(r, d.hour, d.minute, d.second) &&
         r.Literal(" ") && r.Number(4, 4, d.year) && r.Done();
}

std::optional<WallTime> ParseHttpDate(std::string_view s) {
  DateParts d;
  if (!ImfFixdate(s, d) && !Rfc850(s, d) && !Asctime(s, d)) return std::nullopt;
  using namespace std::chrono;
  const year_month_day ymd{year(d.year), month(static_cast<unsigned>(d.month)),
                           day(static_cast<unsigned>(d.day))};
  if (!ymd.ok() || d.hour > 23 || d.minute > 59 || d.second > 60) return std::nullopt;
  return time_point_cast<WallTime::duration>(sys_days(ymd) + hours(d.hour) + minutes(d.minute) +
                                             seconds(d.second));
}

RetryDecision Decide(RetryAction action, HealthEffect health, AttemptOutcome outcome,
                     HealthScope scope = HealthScope::kModel) {
  return {action, health, std::nullopt, outcome, scope, std::nullopt};
}

// Transport failures: the provider origin's.
RetryDecision Transport(AttemptOutcome outcome) {
  return Decide(RetryAction::kRetry, HealthEffect::kFailure, outcome, HealthScope::kOrigin);
}

}  // namespace

std::optional<Millis> ParseRetryAfter(std::string_view value, WallTime now) {
  value = Trim(value);
  if (value.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(value.front()))) {
    int64_t seconds = 0;
    for (char c : value) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
      seconds = std::min<int64_t>(seconds * 10 + (c - '0'), kMaxDelaySeconds);
    }
    return std::chrono::duration_cast<Millis>(std::chrono::seconds(seconds));
  }
  std::optional<WallTime> when = ParseHttpDate(value);
  if (!when) return std::nullopt;
  if (*when <= now) return Millis(0);
  auto delay = std::chrono::duration_cast<Millis>(*when - now);
  return std::min<Millis>(delay, std::chrono::seconds(kMaxDelaySeconds));
}

RetryDecision ClassifyAttempt(const AttemptResult& result, WallTime now) {
  using K = AttemptResult::Kind;
  switch (result.kind) {
    case K::kConnectError:
      return Transport(AttemptOutcome::kConnectError);
    case K::kTlsError:
      return Transport(AttemptOutcome::kTlsError);
    case K::kTimeout:
      return Transport(AttemptOutcome::kTimeout);
    case K::kProtocolError:
      return Transport(AttemptOutcome::kProtocolError);
    case K::kBodyTooLarge:
      return Decide(RetryAction::kGiveUp, HealthEffect::kNeutral, AttemptOutcome::kBodyTooLarge);
    case K::kBrokenStream:
      return Decide(RetryAction::kGiveUp, HealthEffect::kFailure, AttemptOutcome::kBrokenStream);
    case K::kProxyOverloaded:
      // Another backend needs a socket too; and none of them is to blame.
      return Decide(RetryAction::kGiveUp, HealthEffect::kNeutral, AttemptOutcome::kProxyOverloaded);
    case K::kCancelled:
      return Decide(RetryAction::kGiveUp, HealthEffect::kNeutral, AttemptOutcome::kCancelled);
    case K::kResponse:
      break;
  }
  const int status = result.status;
  if (status >= 200 && status < 300) {
    return Decide(RetryAction::kSuccess, HealthEffect::kSuccess, AttemptOutcome::kSuccess);
  }
  if (status == 429) {
    RetryDecision d =
        Decide(RetryAction::kRetry, HealthEffect::kFailure, AttemptOutcome::kRateLimited);
    if (auto delay = ParseRetryAfter(result.retry_after, now)) {
      d.health = HealthEffect::kCooldown;
      d.cooldown = *delay;
    }
    return d;
  }
  if (status == 401 || status == 403) {
    return Decide(RetryAction::kRetryAndEject, HealthEffect::kEject, AttemptOutcome::kAuthError,
                  HealthScope::kAccount);
  }
  if (status == 400) {
    if (std::optional<ContextLengthError> e = ReadContextLengthError(result.body)) {
      RetryDecision d = Decide(RetryAction::kRetry, HealthEffect::kSuccess,
                               AttemptOutcome::kContextLengthExceeded);
      d.context_window = e->stated_window;
      return d;
    }
  }
  if (status >= 500 && status < 600) {
    return Decide(RetryAction::kRetry, HealthEffect::kFailure, AttemptOutcome::kServerError);
  }
  if (status < 100 || status >= 600) {
    // Not HTTP: the upstream is broken, like a 5xx.
    return Decide(RetryAction::kRetry, HealthEffect::kFailure, AttemptOutcome::kServerError);
  }
  return Decide(RetryAction::kPassThrough, HealthEffect::kSuccess, AttemptOutcome::kClientError);
}

}  // namespace llmproxy
