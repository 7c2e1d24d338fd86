#include "tests/e2e/e2e_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace llmproxy::e2e {

std::string BinDir() { return LLMPROXY_BIN_DIR; }

namespace {

bool CanBind(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(port);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

// Ports are drawn at random below Linux's ephemeral range (32768+): a port the kernel
// handed out for bind(0) could be handed out again to another test running in parallel
// (or used as a client's source port), and base+1 of such a port is anybody's.
uint16_t FreePortRange(int count) {
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  std::uniform_int_distribution<int> dist(20000, 32000 - count);
  for (int tries = 0; tries < 1000; ++tries) {
    const int base = dist(rng);
    bool ok = true;
    for (int i = 0; i < count && ok; ++i) ok = CanBind(static_cast<uint16_t>(base + i));
    if (ok) return static_cast<uint16_t>(base);
  }
  throw std::runtime_error("no free port range");
}

uint16_t FreePort() { return FreePortRange(1); }

bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "llmproxy-e2e-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFileAtomic(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp-write";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
  }
  std::filesystem::rename(tmp, path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Process::Process(std::vector<std::string> argv, std::string log_path,
                 std::vector<std::string> extra_env)
    : log_path_(std::move(log_path)) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  for (auto& e : extra_env) env_strings.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error(std::string("spawn failed: ") + std::strerror(rc));
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }
}

bool Process::running() {
  if (exited_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

int Process::Wait(std::chrono::milliseconds timeout) {
  if (!WaitUntil([&] { return !running(); }, timeout, std::chrono::milliseconds(10))) return -1;
  return status_;
}

std::string Process::Log() const { return ReadFile(log_path_); }

int RunCommand(const std::vector<std::string>& argv, std::string* out,
               std::chrono::milliseconds timeout) {
  char tmpl[] = "/tmp/llmproxy-e2e-cmd-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ::close(fd);
  int code = -1;
  {
    Process p(argv, tmpl);
    int status = p.Wait(timeout);
    if (status != -1 && WIFEXITED(status)) code = WEXITSTATUS(status);
  }
  if (out) *out = ReadFile(tmpl);
  ::unlink(tmpl);
  return code;
}

namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string Dechunk(const std::string& raw) {
  std::string out;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t eol = raw.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t n = std::strtoul(raw.substr(pos, eol - pos).c_str(), nullptr, 16);
    if (n == 0) break;
    out.append(raw, eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  return out;
}

}  // namespace

HttpResponse HttpRequest(uint16_t port, const std::string& method, const std::string& target,
                         const std::string& body,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         std::chrono::milliseconds timeout) {
  return HttpRequestTo("127.0.0.1", port, method, target, body, headers, timeout);
}

HttpResponse HttpRequestTo(const std::string& host, uint16_t port, const std::string& method,
                           const std::string& target, const std::string& body,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::chrono::milliseconds timeout) {
  HttpResponse resp;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return resp;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return resp;
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return resp;
  }
  std::string req =
      method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return resp;
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[16384];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) return resp;
  std::istringstream head(raw.substr(0, head_end));
  std::string line;
  std::getline(head, line);
  resp.status = std::atoi(line.substr(line.find(' ') + 1).c_str());
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    resp.headers[Lower(line.substr(0, colon))] = value;
  }
  std::string rest = raw.substr(head_end + 4);
  auto te = resp.headers.find("transfer-encoding");
  resp.body = (te != resp.headers.end() && Lower(te->second).find("chunked") != std::string::npos)
                  ? Dechunk(rest)
                  : rest;
  return resp;
}

bool ProcessAlive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

bool PortOpen(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace llmproxy::e2e
