#include "tests/hostile/raw_client_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>

namespace llmproxy::hostile {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One response at `pos`; false when it is incomplete or malformed (pos unchanged).
bool ParseOne(std::string_view data, size_t& pos, bool bodiless, RawReply& out) {
  const size_t head_end = data.find("\r\n\r\n", pos);
  if (head_end == std::string_view::npos) return false;
  std::string_view head = data.substr(pos, head_end - pos);
  out = RawReply{};
  const size_t first_end = head.find("\r\n");
  out.status_line = std::string(head.substr(0, first_end));
  if (out.status_line.size() < 12 || out.status_line.compare(0, 5, "HTTP/") != 0) return false;
  out.status = std::atoi(out.status_line.c_str() + 9);
  if (first_end != std::string_view::npos) {
    std::string_view lines = head.substr(first_end + 2);
    while (!lines.empty()) {
      const size_t end = lines.find("\r\n");
      std::string_view line = lines.substr(0, end);
      lines = end == std::string_view::npos ? std::string_view() : lines.substr(end + 2);
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) return false;
      out.fields.emplace_back(Lower(line.substr(0, colon)),
                              std::string(Trim(line.substr(colon + 1))));
    }
  }
  size_t p = head_end + 4;
  if (bodiless || out.status / 100 == 1 || out.status == 204 || out.status == 304) {
    pos = p;
    return true;
  }
  if (Lower(out.Get("transfer-encoding")) == "chunked") {
    for (;;) {
      const size_t line_end = data.find("\r\n", p);
      if (line_end == std::string_view::npos) return false;
      const size_t size = std::stoul(std::string(data.substr(p, line_end - p)), nullptr, 16);
      if (data.size() < line_end + 2 + size + 2) return false;
      out.body.append(data.substr(line_end + 2, size));
      p = line_end + 2 + size + 2;
      if (size == 0) break;
    }
    pos = p;
    return true;
  }
  if (out.Count("content-length") == 1) {
    const size_t length = std::stoul(out.Get("content-length"));
    if (data.size() < p + length) return false;
    out.body = std::string(data.substr(p, length));
    pos = p + length;
    return true;
  }
  // No framing: the body runs to the close (the caller read until then).
  out.body = std::string(data.substr(p));
  pos = data.size();
  return true;
}

}  // namespace

size_t RawReply::Count(std::string_view lower_name) const {
  size_t n = 0;
  for (const auto& [k, v] : fields) n += k == lower_name ? 1 : 0;
  return n;
}

std::string RawReply::Get(std::string_view lower_name) const {
  for (const auto& [k, v] : fields) {
    if (k == lower_name) return v;
  }
  return "";
}

std::vector<RawReply> SplitResponses(std::string_view data, std::string* rest,
                                     const std::vector<bool>& bodiless) {
  std::vector<RawReply> out;
  size_t pos = 0;
  size_t final_count = 0;  // final (non-1xx) responses so far: what bodiless indexes
  while (pos < data.size()) {
    RawReply r;
    const bool head = final_count < bodiless.size() && bodiless[final_count];
    if (!ParseOne(data, pos, head, r)) break;
    if (r.status / 100 != 1) ++final_count;
    out.push_back(std::move(r));
  }
  if (rest) *rest = std::string(data.substr(pos));
  return out;
}

RawConnection::~RawConnection() { Close(); }

bool RawConnection::Connect(uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

bool RawConnection::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawConnection::SendAndShutdown(std::string_view bytes) {
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
  const bool ok = Send(bytes);
  ShutdownWrite();  // the corked bytes and the FIN go out together
  return ok;
}

void RawConnection::ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

bool RawConnection::ReadOnce(std::chrono::steady_clock::time_point until) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      until - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0) return false;
  char buf[65536];
  const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
  if (n < 0 && errno == EINTR) return true;
  if (n <= 0) {
    closed_ = true;
    reset_ = n < 0;
    return true;
  }
  received_.append(buf, static_cast<size_t>(n));
  return true;
}

bool RawConnection::ReadUntilClosed(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!closed_) {
    if (!ReadOnce(until)) return false;
  }
  return true;
}

void RawConnection::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Exchange RoundTrip(uint16_t port, std::string_view bytes, bool half_close,
                   std::chrono::milliseconds timeout, const std::vector<bool>& bodiless) {
  Exchange ex;
  RawConnection c;
  if (!c.Connect(port)) return ex;
  if (half_close) {
    c.SendAndShutdown(bytes);
  } else {
    c.Send(bytes);
  }
  ex.closed = c.ReadUntilClosed(timeout);
  ex.raw = c.received();
  ex.replies = SplitResponses(ex.raw, &ex.rest, bodiless);
  return ex;
}

std::string Post(std::string_view target, std::string_view body, std::string_view extra) {
  std::string out = "POST ";
  out += target;
  out += " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  out += extra;
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  out += body;
  return out;
}

}  // namespace llmproxy::hostile
