#include "dataplane/http/http_head.h"

#include <charconv>

#include <boost/beast/http/status.hpp>

#include "dataplane/http/cors.h"

namespace llmproxy {

namespace http = boost::beast::http;

void AppendStatusLine(std::string& out, unsigned version, unsigned status) {
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  char digits[8];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
  (void)ec;
  out.append(digits, end);
  out.push_back(' ');
  std::string_view reason = http::obsolete_reason(static_cast<http::status>(status));
  out += reason;
  out += "\r\n";
}

void AppendRequestLine(std::string& out, std::string_view method, std::string_view target) {
  out += method;
  out.push_back(' ');
  out += target;
  out += " HTTP/1.1\r\n";
}

void AppendField(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

void AppendField(std::string& out, std::string_view name, uint64_t value) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  (void)ec;
  AppendField(out, name, std::string_view(digits, static_cast<size_t>(end - digits)));
}

void AppendConnection(std::string& out, unsigned version, bool keep_alive) {
  if (version >= 11 && !keep_alive) out += "Connection: close\r\n";
  if (version < 11 && keep_alive) out += "Connection: keep-alive\r\n";
}

std::string_view CorsFieldBlock() {
  // Built once from the same function the Beast paths use, so the two cannot drift.
  static const std::string block = [] {
    http::fields fields;
    AddCorsHeaders(fields);
    std::string out;
    AppendFields(out, fields);
    return out;
  }();
  return block;
}

}  // namespace llmproxy
