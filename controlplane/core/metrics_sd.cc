#include "controlplane/core/metrics_sd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

namespace llmproxy {

std::string MetricsSdHost(const std::string& server_host) {
  std::string host = server_host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0" || host == "::") return "127.0.0.1";
  if (host.find(':') != std::string::npos) return "[" + host + "]";
  return host;
}

std::string RenderMetricsSd(const std::string& host, const std::vector<MetricsSdWorker>& workers) {
  // ordered_json keeps "targets" before "labels", as Prometheus' own examples write it.
  nlohmann::ordered_json groups = nlohmann::ordered_json::array();
  for (const MetricsSdWorker& w : workers) {
    if (w.metrics_port == 0) continue;
    nlohmann::ordered_json group;
    group["targets"] = nlohmann::ordered_json::array({host + ":" + std::to_string(w.metrics_port)});
    group["labels"] = {{"worker", w.id}};
    groups.push_back(std::move(group));
  }
  // Worker ids come from the ctl, but replace rather than throw on invalid UTF-8.
  return groups.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string WriteMetricsSdFile(const std::string& path, const std::string& content) {
  // The temp file sits next to the target so rename() stays within one file system.
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "open " + tmp + ": " + std::strerror(errno);
  auto fail = [&](const char* what) {
    std::string err = std::string(what) + " " + tmp + ": " + std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return err;
  };
  // Prometheus may run as another user: readable by all regardless of the umask.
  if (::fchmod(fd, 0644) != 0) return fail("chmod");
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    std::string err = "close " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return err;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = "rename " + tmp + " to " + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return err;
  }
  return "";
}

}  // namespace llmproxy
