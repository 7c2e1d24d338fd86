#include "dataplane/upstream/upstream_connection.h"

#include <sys/socket.h>

#include <cerrno>
#include <tuple>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

#include "dataplane/upstream/upstream_error.h"
#include "dataplane/upstream/upstream_pool.h"

namespace llmproxy {
namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

// The process or the system is out of descriptors or socket memory: no backend is to blame.
bool IsOutOfResources(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  const int e = ec.value();
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}
}  // namespace

UpstreamConnection::UpstreamConnection(asio::any_io_executor executor,
                                       asio::ssl::context* tls_context, std::string pool_key)
    : pool_key_(std::move(pool_key)) {
  if (tls_context) {
    tls_ = std::make_unique<TlsStream>(executor, *tls_context);
  } else {
    plain_ = std::make_unique<Socket>(executor);
  }
}

UpstreamConnection::~UpstreamConnection() {
  if (tracked_by_) tracked_by_->Untrack(*this);
}

asio::awaitable<std::error_code> UpstreamConnection::Connect(
    const asio::ip::tcp::resolver::results_type& endpoints, const std::string& host, bool insecure,
    Clock::time_point deadline) {
  Socket& stream = socket();
  ExpiresAt(deadline);
  // Each address in turn. Not asio::async_connect over the range: it reports a socket()
  // that failed (EMFILE) as operation_aborted, which reads as a cancel (the client gone)
  // and would close the client's connection without an answer.
  boost::system::error_code ec = asio::error::host_not_found;
  for (const auto& entry : endpoints) {
    stream.open(entry.endpoint().protocol(), ec);
    if (ec) {
      if (IsOutOfResources(ec)) co_return UpstreamErrc::kLocalResources;
      continue;
    }
    std::tie(ec) = co_await stream.async_connect(entry.endpoint(), kUse);
    if (!ec) break;
    const bool timed_out = timed_out_;
    const bool closed = !stream.is_open();  // the deadline or Cancel closed it
    Close();
    if (timed_out) co_return UpstreamErrc::kConnectTimeout;
    if (closed || ec == asio::error::operation_aborted) co_return UpstreamErrc::kCancelled;
  }
  if (ec) co_return UpstreamErrc::kConnectFailed;
  boost::system::error_code ignored;
  stream.set_option(asio::ip::tcp::no_delay(true), ignored);
  stream.non_blocking(true, ignored);  // plain connections write with WriteAll
  if (tls_) {
    boost::system::error_code addr_ec;
    asio::ip::make_address(host, addr_ec);
    const bool ip_literal = !addr_ec;
    // SNI carries names only (RFC 6066), never IP literals.
    if (!ip_literal) SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());
    if (insecure) {
      tls_->set_verify_mode(asio::ssl::verify_none);
    } else {
      tls_->set_verify_mode(asio::ssl::verify_peer);
      // Checks DNS names (wildcards included) or, for an IP literal, the IP SANs.
      tls_->set_verify_callback(asio::ssl::host_name_verification(host));
    }
    auto [hs_ec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, kUse);
    if (hs_ec) {
      const bool timed_out = timed_out_;
      Close();
      if (timed_out) co_return UpstreamErrc::kConnectTimeout;
      if (hs_ec == asio::error::operation_aborted) co_return UpstreamErrc::kCancelled;
      co_return UpstreamErrc::kTlsFailed;
    }
  }
  ExpiresNever();
  co_return std::error_code{};
}

char* UpstreamConnection::BodyChunk(size_t size) {
  if (body_chunk_size_ < size) {
    body_chunk_.reset(new char[size]);  // uninitialized on purpose: always written first
    body_chunk_size_ = size;
  }
  return body_chunk_.get();
}

void UpstreamConnection::Close() {
  boost::system::error_code ignored;
  socket().close(ignored);
}

bool UpstreamConnection::is_open() { return socket().is_open(); }

bool UpstreamConnection::HasBufferedBytes() {
  if (buffer_.size() != 0) return true;
  if (!tls_) return false;
  SSL* ssl = tls_->native_handle();
  // Decrypted bytes not yet read, or raw records handed to OpenSSL's input BIO.
  return SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0;
}

bool UpstreamConnection::LooksReusable() {
  if (!is_open() || HasBufferedBytes()) return false;
  char byte;
  const ssize_t n = ::recv(socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // Nothing to read is the healthy idle state; EOF or unexpected bytes (an extra
  // response, an error page, a TLS close_notify) mean the connection is done.
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace llmproxy
