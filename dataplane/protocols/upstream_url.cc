#include "dataplane/protocols/upstream_url.h"

#include <charconv>

namespace llmproxy {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::optional<UpstreamUrl> Fail(std::string* error, const char* message) {
  if (error) *error = message;
  return std::nullopt;
}

bool ValidHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

}  // namespace

std::string UpstreamUrl::HostHeader() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string out;
  out.reserve(host.size() + 8);
  if (ipv6) out += '[';
  out += host;
  if (ipv6) out += ']';
  if (port != (tls ? 443 : 80)) {
    out += ':';
    out += std::to_string(port);
  }
  return out;
}

std::string UpstreamUrl::Origin() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string out = tls ? "https://" : "http://";
  if (ipv6) out += '[';
  out += host;
  if (ipv6) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

std::string UpstreamUrl::Target(std::string_view endpoint_suffix) const {
  std::string out;
  out.reserve(base_path.size() + endpoint_suffix.size());
  out += base_path;
  out += endpoint_suffix;
  if (out.empty()) out.push_back('/');  // push_back: GCC 12 -O3 flags -Wrestrict on = "/"
  return out;
}

std::optional<UpstreamUrl> ParseUpstreamUrl(std::string_view url, std::string* error) {
  UpstreamUrl out;
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return Fail(error, "url must start with http:// or https://");
  const std::string_view scheme = url.substr(0, scheme_end);
  if (IEquals(scheme, "https")) {
    out.tls = true;
  } else if (!IEquals(scheme, "http")) {
    return Fail(error, "url scheme must be http or https");
  }
  std::string_view rest = url.substr(scheme_end + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return Fail(error, "url must not contain a query or fragment");
  }
  const size_t path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path =
      path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) {
    return Fail(error, "url must not contain user info");
  }
  std::string_view host;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return Fail(error, "url has an unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Fail(error, "url has bytes after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) return Fail(error, "url has an empty port");
    }
    for (char c : host) {
      if (!(ValidHostChar(c) || c == ':')) return Fail(error, "url has an invalid IPv6 address");
    }
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return Fail(error, "url has an empty port");
    }
    for (char c : host) {
      if (!ValidHostChar(c)) return Fail(error, "url has an invalid host name");
    }
  }
  if (host.empty()) return Fail(error, "url has no host");
  out.host.assign(host);
  for (char& c : out.host) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (port_text.empty()) {
    out.port = out.tls ? 443 : 80;
  } else {
    unsigned value = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      return Fail(error, "url has an invalid port");
    }
    out.port = static_cast<uint16_t>(value);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  for (char c : path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Fail(error, "url path must not contain spaces or control characters");
    }
  }
  out.base_path.assign(path);
  return out;
}

}  // namespace llmproxy
