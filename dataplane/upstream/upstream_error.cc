#include "dataplane/upstream/upstream_error.h"

#include <string>

namespace llmproxy {
namespace {

class UpstreamCategoryImpl : public std::error_category {
 public:
  const char* name() const noexcept override { return "llmproxy.upstream"; }
  std::string message(int value) const override {
    switch (static_cast<UpstreamErrc>(value)) {
      case UpstreamErrc::kDnsFailed:
        return "upstream host name did not resolve";
      case UpstreamErrc::kConnectFailed:
        return "upstream connection failed";
      case UpstreamErrc::kConnectTimeout:
        return "upstream connect timed out";
      case UpstreamErrc::kTlsFailed:
        return "upstream TLS handshake failed";
      case UpstreamErrc::kWriteFailed:
        return "sending the request upstream failed";
      case UpstreamErrc::kResponseTimeout:
        return "upstream response timed out";
      case UpstreamErrc::kBodyTimeout:
        return "upstream response body timed out";
      case UpstreamErrc::kReadFailed:
        return "upstream connection broke while reading";
      case UpstreamErrc::kBadResponse:
        return "upstream sent an invalid HTTP response";
      case UpstreamErrc::kBodyTooLarge:
        return "upstream response body too large";
      case UpstreamErrc::kCancelled:
        return "upstream request cancelled";
      case UpstreamErrc::kBadUrl:
        return "backend url is invalid";
      case UpstreamErrc::kLocalResources:
        return "the proxy could not open a socket (out of file descriptors or memory)";
    }
    return "unknown upstream error";
  }
};

}  // namespace

const std::error_category& UpstreamCategory() {
  static const UpstreamCategoryImpl category;
  return category;
}

std::error_code make_error_code(UpstreamErrc e) {
  return {static_cast<int>(e), UpstreamCategory()};
}

bool IsConnectError(std::error_code ec) {
  return ec == UpstreamErrc::kDnsFailed || ec == UpstreamErrc::kConnectFailed ||
         ec == UpstreamErrc::kConnectTimeout || ec == UpstreamErrc::kTlsFailed ||
         ec == UpstreamErrc::kBadUrl;
}

bool IsTimeout(std::error_code ec) {
  return ec == UpstreamErrc::kConnectTimeout || ec == UpstreamErrc::kResponseTimeout ||
         ec == UpstreamErrc::kBodyTimeout;
}

}  // namespace llmproxy
