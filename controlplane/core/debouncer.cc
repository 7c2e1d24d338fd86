#include "controlplane/core/debouncer.h"

#include <algorithm>

namespace llmproxy {

Debouncer::Debouncer(std::chrono::milliseconds quiet, std::chrono::milliseconds max_delay)
    : quiet_(quiet), max_delay_(std::max(max_delay, quiet)) {}

void Debouncer::Event(Clock::time_point now) {
  if (!first_) first_ = now;
  last_ = now;
}

std::optional<Debouncer::Clock::time_point> Debouncer::Deadline() const {
  if (!first_) return std::nullopt;
  return std::min(last_ + quiet_, *first_ + max_delay_);
}

bool Debouncer::Fire(Clock::time_point now) {
  auto deadline = Deadline();
  if (!deadline || now < *deadline) return false;
  first_.reset();
  return true;
}

}  // namespace llmproxy
