// Time as the routing core sees it. Routing code never reads a clock itself: callers
// pass `now` (or a Clock) so tests can drive cooldowns with a fake time source.
#pragma once

#include <chrono>
#include <functional>

namespace llmproxy {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;  // only for HTTP-date Retry-After

// A source of steady time. Production: SteadyClock(); tests: a lambda over a variable.
using Clock = std::function<SteadyTime()>;

// The real monotonic clock, for the data plane's production wiring.
inline Clock SteadyClock() {
  return [] { return std::chrono::steady_clock::now(); };
}

}  // namespace llmproxy
