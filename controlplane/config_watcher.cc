#include "controlplane/config_watcher.h"

#include <limits.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/log/logging.h"

namespace llmproxy {
namespace {

constexpr uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                           IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

std::string DirOf(const std::string& path) {
  std::filesystem::path p = std::filesystem::absolute(path).lexically_normal();
  return p.parent_path().string();
}

}  // namespace

uint64_t ContentHash(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

ConfigWatcher::ConfigWatcher(std::string path, std::chrono::milliseconds quiet)
    : path_(std::move(path)),
      base_(std::filesystem::path(path_).filename().string()),
      debouncer_(quiet, quiet * 5) {}

ConfigWatcher::~ConfigWatcher() {
  if (fd_ >= 0) ::close(fd_);
}

std::string ConfigWatcher::Start() {
  fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) return std::string("inotify_init1: ") + std::strerror(errno);
  int wd = ::inotify_add_watch(fd_, DirOf(path_).c_str(), kMask);
  if (wd < 0) return "inotify_add_watch " + DirOf(path_) + ": " + std::strerror(errno);
  watches_.insert(wd);
  Rewatch();
  MarkSeen();
  return "";
}

void ConfigWatcher::Rewatch() {
  std::error_code ec;
  std::filesystem::path real = std::filesystem::canonical(path_, ec);
  if (ec) return;  // mid-swap: the next event retries
  real_base_ = real.filename().string();
  int wd = ::inotify_add_watch(fd_, real.parent_path().c_str(), kMask);
  if (wd >= 0) watches_.insert(wd);
}

void ConfigWatcher::OnReadable(Clock::time_point now) {
  alignas(struct inotify_event) char buf[16 * 1024];
  bool relevant = false;
  while (true) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      if (ev->mask & IN_IGNORED) watches_.erase(ev->wd);
      std::string_view name = ev->len > 0 ? std::string_view(ev->name) : std::string_view();
      // Our file, a ConfigMap's `..data`/`..2026_...` entries, the symlink target, the
      // directory itself, or lost events: anything else in the directory is not ours.
      if ((ev->mask & IN_Q_OVERFLOW) || name.empty() || name == base_ || name == real_base_ ||
          name.starts_with("..")) {
        relevant = true;
      }
    }
  }
  if (relevant) debouncer_.Event(now);
}

bool ConfigWatcher::Due(Clock::time_point now) {
  if (!debouncer_.Fire(now)) return false;
  Rewatch();
  std::optional<uint64_t> h = HashFile();
  if (!h) {
    LogWarn("config file is missing or unreadable; waiting for it", {{"path", path_}});
    return false;
  }
  if (seen_hash_ && *seen_hash_ == *h) return false;
  seen_hash_ = h;
  return true;
}

void ConfigWatcher::MarkSeen() {
  if (auto h = HashFile()) seen_hash_ = h;
}

std::optional<uint64_t> ConfigWatcher::HashFile() const {
  std::ifstream in(path_, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return ContentHash(bytes.str());
}

}  // namespace llmproxy
