// Notices edits of config.yaml. inotify watches the file's DIRECTORY (and the directory
// its symlink points into), not the file: editors save by writing a temp file and
// renaming it over the original, and a Kubernetes ConfigMap swaps its `..data` symlink,
// and both leave a watch on the old inode dead. Bursts are debounced and a content hash
// drops events that did not change the bytes (touch, chmod, an unrelated file).
// Driven by the caller's poll loop: fd(), OnReadable(), Deadline(), Due().
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "controlplane/core/debouncer.h"

namespace llmproxy {

class ConfigWatcher {
 public:
  using Clock = Debouncer::Clock;

  explicit ConfigWatcher(std::string path,
                         std::chrono::milliseconds quiet = std::chrono::milliseconds(100));
  ~ConfigWatcher();
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  // "" on success, else why inotify could not be set up.
  std::string Start();
  int fd() const { return fd_; }

  // Drains pending inotify events; relevant ones start or extend a burst.
  void OnReadable(Clock::time_point now);
  std::optional<Clock::time_point> Deadline() const { return debouncer_.Deadline(); }
  // True when a burst is over and the file's bytes differ from the last ones seen.
  bool Due(Clock::time_point now);
  // Records the file's current bytes as seen (after a reload from another trigger).
  void MarkSeen();

 private:
  void Rewatch();  // (re)adds watches; the symlink target's directory may have changed
  std::optional<uint64_t> HashFile() const;

  std::string path_;
  std::string base_;
  int fd_ = -1;
  std::set<int> watches_;
  std::string real_base_;
  Debouncer debouncer_;
  std::optional<uint64_t> seen_hash_;
};

// FNV-1a, 64 bit: cheap and good enough to tell one version of a file from the next.
uint64_t ContentHash(std::string_view bytes);

}  // namespace llmproxy
