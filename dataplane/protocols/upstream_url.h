// A backend's base URL, parsed once, and the original program's rule for building the
// upstream path: url + "/chat/completions" (likewise "/completions", "/embeddings"; the
// suffixes are in dataplane/protocols/routes.h), so both "https://api.deepseek.com" and
// "https://api.poe.com/v1" work. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmproxy {

struct UpstreamUrl {
  bool tls = false;       // https
  std::string host;       // lower-cased; IPv6 literals without brackets ("::1")
  uint16_t port = 0;      // explicit port, else 80 (http) / 443 (https)
  std::string base_path;  // "" or "/v1": never ends with '/'; query/fragment rejected

  // "host" when the port is the scheme's default, else "host:port" ("[::1]:8443" for IPv6):
  // the value of the Host header.
  std::string HostHeader() const;
  // Identity of a connection pool bucket: "https://host:port".
  std::string Origin() const;
  // The request target for an endpoint suffix such as "/chat/completions":
  // base_path + suffix ("/v1" + "/chat/completions"; "" + "/chat/completions").
  std::string Target(std::string_view endpoint_suffix) const;

  bool operator==(const UpstreamUrl&) const = default;
};

// Parses "http[s]://host[:port][/base/path][/]". The scheme is case-insensitive; a trailing
// '/' is stripped (repeatedly), so "https://api.poe.com/v1/" == "https://api.poe.com/v1".
// Rejects other schemes, userinfo ("user@host"), an empty host, a bad/zero port, '?' and
// '#'. On failure returns nullopt and, when `error` is given, a one-line reason.
std::optional<UpstreamUrl> ParseUpstreamUrl(std::string_view url, std::string* error = nullptr);

}  // namespace llmproxy
