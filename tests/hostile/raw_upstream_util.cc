#include "raw_upstream_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <utility>

namespace llmproxy::hostile_upstream {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPollMs = 20;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The value of header `lower_name` in a raw head, or "".
std::string HeadValue(const std::string& head, const std::string& lower_name) {
  const std::string lower = Lower(head);
  const std::string key = "\r\n" + lower_name + ":";
  const size_t at = lower.find(key);
  if (at == std::string::npos) return "";
  size_t start = at + key.size();
  const size_t end = head.find("\r\n", start);
  while (start < end && (head[start] == ' ' || head[start] == '\t')) ++start;
  return head.substr(start, end - start);
}

}  // namespace

RawUpstreamAction RawUpstreamAction::Reply(std::string bytes) {
  RawUpstreamAction a;
  a.bytes = std::move(bytes);
  return a;
}

RawUpstreamAction RawUpstreamAction::ReplyThenExtra(std::string bytes, std::string extra,
                                                    std::chrono::milliseconds delay) {
  RawUpstreamAction a;
  a.bytes = std::move(bytes);
  a.extra = std::move(extra);
  a.extra_delay = delay;
  return a;
}

RawUpstreamAction RawUpstreamAction::AnswerEarlyThenClose(std::string bytes) {
  RawUpstreamAction a;
  a.before_body = true;
  a.bytes = std::move(bytes);
  a.close = true;
  return a;
}

RawUpstreamAction RawUpstreamAction::HugeChunked(std::string head, size_t body_bytes) {
  RawUpstreamAction a;
  a.bytes = std::move(head);
  a.chunked_body_bytes = body_bytes;
  return a;
}

RawUpstreamAction RawUpstreamAction::CloseAfterRequest() {
  RawUpstreamAction a;
  a.close = true;
  return a;
}

RawUpstreamAction RawUpstreamAction::ResetAfterHead() {
  RawUpstreamAction a;
  a.before_body = true;
  a.reset = true;
  return a;
}

std::string JsonResponse(int status, const std::string& reason, const std::string& body,
                         const std::string& request_id, bool close) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
  out += "Content-Type: application/json\r\n";
  out += "x-request-id: " + request_id + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  out += body;
  return out;
}

struct RawUpstream::State {
  mutable std::mutex mu;
  std::condition_variable cv;  // wakes waits on stop
  std::atomic<bool> stop{false};
  std::deque<RawUpstreamAction> actions;
  std::vector<RawUpstreamRequest> requests;
  std::vector<RawUpstreamConnection> connections;
  size_t extras_sent = 0;
  std::vector<std::thread> threads;
};

RawUpstream::RawUpstream() : state_(std::make_shared<State>()) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listen_fd_ < 0) throw std::runtime_error("raw upstream: socket failed");
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error("raw upstream: cannot listen on 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

RawUpstream::~RawUpstream() {
  state_->stop = true;
  state_->cv.notify_all();
  if (accept_thread_.joinable()) accept_thread_.join();
  ::close(listen_fd_);
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(state_->mu);
    threads.swap(state_->threads);
  }
  for (std::thread& t : threads) t.join();
}

std::string RawUpstream::BaseUrl() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/v1";
}

void RawUpstream::Push(RawUpstreamAction action) {
  std::lock_guard lock(state_->mu);
  state_->actions.push_back(std::move(action));
}

std::string RawUpstream::DefaultBody(int n) {
  return R"({"id":"up-)" + std::to_string(n) + R"(","object":"chat.completion","choices":[]})";
}

std::vector<RawUpstreamRequest> RawUpstream::Requests() const {
  std::lock_guard lock(state_->mu);
  return state_->requests;
}

size_t RawUpstream::RequestCount() const {
  std::lock_guard lock(state_->mu);
  return state_->requests.size();
}

std::vector<RawUpstreamConnection> RawUpstream::Connections() const {
  std::lock_guard lock(state_->mu);
  return state_->connections;
}

size_t RawUpstream::ExtrasSent() const {
  std::lock_guard lock(state_->mu);
  return state_->extras_sent;
}

bool RawUpstream::WaitFor(const std::function<bool(const RawUpstream&)>& pred,
                          std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  while (!pred(*this)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

void RawUpstream::AcceptLoop() {
  while (!state_->stop) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    std::lock_guard lock(state_->mu);
    state_->connections.emplace_back();
    const int index = static_cast<int>(state_->connections.size());
    state_->threads.emplace_back([this, fd, index] { Serve(fd, index); });
  }
}

void RawUpstream::Serve(int fd, int index) {
  State& st = *state_;
  auto conn = [&]() -> RawUpstreamConnection& { return st.connections[index - 1]; };
  // >0 bytes appended; 0 the peer closed (EOF or reset); -1 stopping.
  auto read_more = [&](std::string& buf) -> int {
    while (!st.stop) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, kPollMs) <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n > 0) {
        buf.append(chunk, static_cast<size_t>(n));
        return 1;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      std::lock_guard lock(st.mu);
      conn().closed_by_peer = true;
      conn().peer_closed_at = Clock::now();
      return 0;
    }
    return -1;
  };
  // False when the peer is gone (or we are stopping).
  auto send_all = [&](std::string_view data) {
    while (!data.empty()) {
      if (st.stop) return false;
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, kPollMs) <= 0) continue;
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  };

  std::string buf;
  for (;;) {
    size_t head_end;
    while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (read_more(buf) <= 0) {
        ::close(fd);
        return;
      }
    }
    RawUpstreamRequest req;
    req.connection = index;
    req.head = buf.substr(0, head_end + 4);
    buf.erase(0, head_end + 4);
    const size_t content_length = static_cast<size_t>(
        std::strtoull(HeadValue(req.head, "content-length").c_str(), nullptr, 10));
    RawUpstreamAction action;
    int number = 0;
    {
      std::lock_guard lock(st.mu);
      number = static_cast<int>(st.requests.size()) + 1;
      if (!st.actions.empty()) {
        action = std::move(st.actions.front());
        st.actions.pop_front();
      } else {
        action = RawUpstreamAction::Reply(
            JsonResponse(200, "OK", DefaultBody(number), "up-" + std::to_string(number)));
      }
    }
    if (!action.before_body) {
      while (buf.size() < content_length) {
        if (read_more(buf) <= 0) {
          ::close(fd);
          return;
        }
      }
    }
    const size_t have = std::min(buf.size(), content_length);
    req.body = buf.substr(0, have);
    req.body_complete = have == content_length;
    buf.erase(0, have);
    {
      std::lock_guard lock(st.mu);
      st.requests.push_back(req);
      ++conn().requests;
    }

    bool alive = send_all(action.bytes);
    if (alive && action.chunked_body_bytes > 0) {
      const std::string piece(action.chunk_bytes, 'x');
      size_t sent = 0;
      while (alive && sent < action.chunked_body_bytes) {
        const size_t n = std::min(action.chunk_bytes, action.chunked_body_bytes - sent);
        char size_line[32];
        std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
        alive = send_all(size_line) && send_all(std::string_view(piece).substr(0, n)) &&
                send_all("\r\n");
        if (alive) sent += n;
      }
      if (alive) alive = send_all("0\r\n\r\n");
      std::lock_guard lock(st.mu);
      conn().body_bytes_sent = sent;
      conn().send_failed = !alive;
    }
    {
      std::lock_guard lock(st.mu);
      conn().last_reply_sent = Clock::now();
    }
    if (alive && !action.extra.empty()) {
      {
        std::unique_lock lock(st.mu);
        st.cv.wait_for(lock, action.extra_delay, [&] { return st.stop.load(); });
      }
      alive = send_all(action.extra);
      std::lock_guard lock(st.mu);
      if (alive) ++st.extras_sent;
    }
    if (action.reset) {
      const linger hard{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    }
    if (!alive || action.close || action.reset) {
      ::close(fd);
      return;
    }
    // Answered before the body: keep the framing by reading the rest of it.
    size_t left = content_length - have;
    while (left > 0) {
      const size_t before = buf.size();
      if (before == 0 && read_more(buf) <= 0) {
        ::close(fd);
        return;
      }
      const size_t take = std::min(left, buf.size());
      buf.erase(0, take);
      left -= take;
    }
  }
}

PoolTunedWorker::PoolTunedWorker(Config config, UpstreamPoolOptions pool) {
  if (std::string error = store_.Apply(std::move(config), 1); !error.empty()) {
    throw std::runtime_error("test config rejected: " + error);
  }
  WorkerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.threads = 1;
  options.pool = std::move(pool);
  worker_ = std::make_unique<Worker>(options, store_, std::vector<RequestObserver*>{&observer_});
  if (std::string error = worker_->Start(); !error.empty()) {
    throw std::runtime_error("worker did not start: " + error);
  }
}

PoolTunedWorker::~PoolTunedWorker() { worker_->Stop(); }

Config OneBackendConfig(const std::string& base_url, int retry) {
  Config c = test::TestConfig({test::MockBackend("b1", base_url, {"m1"})});
  c.retry = retry;
  return c;
}

std::string ClientResponse::Header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

ClientResponse ParseClientResponse(const std::string& raw) {
  ClientResponse r;
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    r.rest = raw;
    return r;
  }
  const std::string head = raw.substr(0, head_end + 2);
  size_t line_end = head.find("\r\n");
  r.status_line = head.substr(0, line_end);
  for (size_t at = line_end + 2; at < head.size();) {
    const size_t end = head.find("\r\n", at);
    const std::string line = head.substr(at, end - at);
    at = end + 2;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    r.headers[Lower(line.substr(0, colon))] = line.substr(v);
  }
  std::string rest = raw.substr(head_end + 4);
  if (Lower(r.Header("transfer-encoding")) == "chunked") {
    for (;;) {
      const size_t size_end = rest.find("\r\n");
      if (size_end == std::string::npos) break;
      const size_t n = std::strtoul(rest.substr(0, size_end).c_str(), nullptr, 16);
      if (rest.size() < size_end + 2 + n + 2) break;
      r.body.append(rest, size_end + 2, n);
      rest.erase(0, size_end + 2 + n + 2);
      if (n == 0) {
        r.complete = true;
        break;
      }
    }
  } else if (!r.Header("content-length").empty()) {
    const size_t n = std::strtoul(r.Header("content-length").c_str(), nullptr, 10);
    r.body = rest.substr(0, n);
    r.complete = rest.size() >= n;
    rest.erase(0, std::min(n, rest.size()));
  } else {
    r.body = rest;
    rest.clear();
    r.complete = true;
  }
  r.rest = rest;
  return r;
}

std::string ExchangeChat(uint16_t port, const std::string& body,
                         std::chrono::milliseconds timeout) {
  return test::RawExchange(
      port, test::RawPost("/v1/chat/completions", body, {{"Connection", "close"}}), timeout);
}

}  // namespace llmproxy::hostile_upstream
