// Error codes of the upstream client, classified once by where they happened so the
// pipeline can map them to an AttemptOutcome and a retry decision without inspecting
// Asio/OpenSSL codes. The client never throws: every operation returns one of these
// (as std::error_code, category "llmproxy.upstream") or success.
#pragma once

#include <system_error>

namespace llmproxy {

enum class UpstreamErrc {
  kDnsFailed = 1,    // name did not resolve (or resolve timed out)
  kConnectFailed,    // TCP connect refused/unreachable on every address
  kConnectTimeout,   // DNS + TCP + TLS did not finish within connect_timeout
  kTlsFailed,        // TLS handshake failed: certificate not trusted, hostname mismatch, ...
  kWriteFailed,      // sending the request failed
  kResponseTimeout,  // no complete response head within the response timeout
  kBodyTimeout,      // a body read saw no byte within the idle timeout
  kReadFailed,       // connection reset/closed while reading head or body
  kBadResponse,      // not HTTP/1.x, header too large, bad chunking, ...
  kBodyTooLarge,     // ReadAll's limit exceeded
  kCancelled,        // Cancel() was called (client went away)
  kBadUrl,           // backend url did not parse
  kLocalResources,   // this process could not open a socket: EMFILE, ENFILE, ENOBUFS, ENOMEM
};

const std::error_category& UpstreamCategory();
std::error_code make_error_code(UpstreamErrc e);

// DNS, TCP connect, connect timeout, TLS: nothing reached the backend.
bool IsConnectError(std::error_code ec);
// kConnectTimeout, kResponseTimeout, kBodyTimeout.
bool IsTimeout(std::error_code ec);

}  // namespace llmproxy

template <>
struct std::is_error_code_enum<llmproxy::UpstreamErrc> : std::true_type {};
