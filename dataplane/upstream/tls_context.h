// The OpenSSL client contexts the upstream pool connects with: one that verifies the
// peer (system CA store + optional extra CA file, TLS >= 1.2) and one that does not
// (per-backend tls_insecure_skip_verify). Hostname checking and SNI are per connection
// (upstream_connection.cc). Built once per pool; SSL_CTX is read-only afterwards.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace llmproxy {

struct TlsOptions {
  // Also trusted besides the system store (PEM). UpstreamPool fills it from the
  // environment variable LLMPROXY_EXTRA_CA_FILE when empty (docs/upstream.md).
  std::string extra_ca_file;
  // Trust the system CA store (/etc/ssl/certs via OpenSSL's default paths).
  bool use_system_store = true;
};

class TlsContext {
 public:
  explicit TlsContext(TlsOptions options = {});

  boost::asio::ssl::context& Get(bool insecure_skip_verify) {
    return insecure_skip_verify ? insecure_ : verified_;
  }

  // Non-empty when a CA source could not be loaded (the context still works with what
  // did load; log it once).
  const std::string& load_error() const { return load_error_; }

 private:
  boost::asio::ssl::context verified_;
  boost::asio::ssl::context insecure_;
  std::string load_error_;
};

}  // namespace llmproxy
