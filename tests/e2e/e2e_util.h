// Helpers for end-to-end tests: real processes, free ports, temp dirs, a tiny blocking
// HTTP client, and wait-until with a deadline (no fixed sleeps).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace llmproxy::e2e {

std::string BinDir();  // LLMPROXY_BIN_DIR
uint16_t FreePort();   // a port nobody listens on right now (127.0.0.1)
// The first of `count` consecutive free ports (supervised workers use metrics_port + i).
uint16_t FreePortRange(int count);

// Polls `cond` every `poll` until it holds (true) or `timeout` passes (false).
bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll = std::chrono::milliseconds(20));

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes by temp file + rename, as editors do (the watcher must see it).
void WriteFileAtomic(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

// A child process; stdout and stderr go to `log_path`. The destructor SIGKILLs it if it
// still runs.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path,
          std::vector<std::string> extra_env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits for exit; returns the wait status, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::string log_path_;
};

// Runs a command to completion (up to `timeout`); returns its exit code (-1 on timeout
// or signal) and stdout in `out`.
int RunCommand(const std::vector<std::string>& argv, std::string* out,
               std::chrono::milliseconds timeout = std::chrono::seconds(20));

struct HttpResponse {
  int status = 0;                              // 0: no response (connect failed, timeout)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // de-chunked
};
HttpResponse HttpRequest(uint16_t port, const std::string& method, const std::string& target,
                         const std::string& body = "",
                         const std::vector<std::pair<std::string, std::string>>& headers = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
// The same, to `host` (an IPv4 address; HttpRequest uses 127.0.0.1), e.g. a worker in
// another network namespace reached over a veth.
HttpResponse HttpRequestTo(const std::string& host, uint16_t port, const std::string& method,
                           const std::string& target, const std::string& body = "",
                           const std::vector<std::pair<std::string, std::string>>& headers = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

bool ProcessAlive(pid_t pid);
// True when something accepts TCP connections on 127.0.0.1:port.
bool PortOpen(uint16_t port);

}  // namespace llmproxy::e2e
