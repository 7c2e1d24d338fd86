#include "dataplane/upstream/tls_context.h"

#include <openssl/ssl.h>

namespace llmproxy {
namespace ssl = boost::asio::ssl;

namespace {

void Harden(ssl::context& ctx) {
  // TLS 1.2+ only; compression off (CRIME).
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::no_compression);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
}

}  // namespace

TlsContext::TlsContext(TlsOptions options)
    : verified_(ssl::context::tls_client), insecure_(ssl::context::tls_client) {
  Harden(verified_);
  Harden(insecure_);
  verified_.set_verify_mode(ssl::verify_peer);
  insecure_.set_verify_mode(ssl::verify_none);

  boost::system::error_code ec;
  if (options.use_system_store) {
    verified_.set_default_verify_paths(ec);
    if (ec) load_error_ = "cannot load the system CA store: " + ec.message();
  }
  const std::string& extra = options.extra_ca_file;
  if (!extra.empty()) {
    verified_.load_verify_file(extra, ec);
    if (ec) {
      if (!load_error_.empty()) load_error_ += "; ";
      load_error_ += "cannot load CA file " + extra + ": " + ec.message();
    }
  }
}

}  // namespace llmproxy
