// Turns a burst of file-system events into one reload. Editors and Kubernetes touch a
// config directory several times per save (write temp, fsync, rename, chmod; or the
// ConfigMap `..data` symlink swap), so the control plane waits until the directory has
// been quiet for `quiet`, but never longer than `max_delay` after the first event of a
// burst, so a file rewritten continuously still gets picked up. Pure: the caller passes
// the time.
#pragma once

#include <chrono>
#include <optional>

namespace llmproxy {

class Debouncer {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Debouncer(std::chrono::milliseconds quiet = std::chrono::milliseconds(100),
                     std::chrono::milliseconds max_delay = std::chrono::milliseconds(500));

  void Event(Clock::time_point now);
  // When the pending burst is due, or nullopt when nothing is pending.
  std::optional<Clock::time_point> Deadline() const;
  // True once per burst, when its deadline has passed; then nothing is pending.
  bool Fire(Clock::time_point now);
  bool pending() const { return first_.has_value(); }

 private:
  std::chrono::milliseconds quiet_;
  std::chrono::milliseconds max_delay_;
  std::optional<Clock::time_point> first_;
  Clock::time_point last_{};
};

}  // namespace llmproxy
