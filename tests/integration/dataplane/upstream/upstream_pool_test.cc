// The upstream client against MockLlm over HTTPS and HTTP: certificate verification with a
// throwaway CA made at test time (trusted CA succeeds, wrong CA and wrong hostname fail
// closed, skip-verify works), keep-alive reuse, the stale-connection retry, streaming body
// pieces, limits, timeouts and cancellation reaching the upstream.
#include <gtest/gtest.h>

#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

#include "dataplane/protocols/sse_parser.h"
#include "dataplane/upstream/upstream_call.h"
#include "dataplane/protocols/upstream_url.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

// ---- Throwaway PKI (OpenSSL API) ----

struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertDeleter {
  void operator()(X509* c) const { X509_free(c); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyDeleter>;
using CertPtr = std::unique_ptr<X509, CertDeleter>;

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// Issues a certificate for `key`; self-signed when issuer is null (a CA).
CertPtr Issue(EVP_PKEY* key, const char* common_name, X509* issuer, EVP_PKEY* issuer_key,
              const char* san) {
  static long serial = 1;
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer ? issuer : cert.get();
  if (!issuer) {
    AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExt(cert.get(), signer, NID_basic_constraints, "CA:FALSE");
    AddExt(cert.get(), signer, NID_ext_key_usage, "serverAuth");
    AddExt(cert.get(), signer, NID_subject_alt_name, san);
  }
  X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256());
  return cert;
}

std::string ToPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

std::string ToPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

// Files for one test run: a trusted CA, an unrelated CA, and two server certificates
// issued by the trusted CA (one for localhost/127.0.0.1, one for another name).
class TestPki {
 public:
  TestPki() {
    dir_ = std::filesystem::temp_directory_path() /
           ("llmproxy-tls-" + std::to_string(::getpid()) + "-" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(dir_);
    KeyPtr ca_key(EVP_EC_gen("P-256"));
    CertPtr ca = Issue(ca_key.get(), "llmproxy test CA", nullptr, nullptr, nullptr);
    KeyPtr other_key(EVP_EC_gen("P-256"));
    CertPtr other = Issue(other_key.get(), "unrelated CA", nullptr, nullptr, nullptr);
    KeyPtr server_key(EVP_EC_gen("P-256"));
    CertPtr server =
        Issue(server_key.get(), "localhost", ca.get(), ca_key.get(), "DNS:localhost,IP:127.0.0.1");
    CertPtr wrong_name =
        Issue(server_key.get(), "wrong.example", ca.get(), ca_key.get(), "DNS:wrong.example");
    Write("ca.pem", ToPem(ca.get()));
    Write("other-ca.pem", ToPem(other.get()));
    Write("server.pem", ToPem(server.get()));
    Write("wrong-name.pem", ToPem(wrong_name.get()));
    Write("server.key", ToPem(server_key.get()));
  }
  ~TestPki() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Path(const char* name) const { return (dir_ / name).string(); }

 private:
  void Write(const char* name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::filesystem::path dir_;
};

// ---- Client side helpers ----

struct FetchResult {
  std::error_code ec;
  unsigned status = 0;
  std::string body;
  std::string content_type;
  bool reused = false;
  uint32_t resends = 0;
};

// A request serialized the way the pipeline hands it to StartRaw: request line, every
// header (Host and Content-Length included) and the blank line, then the body.
struct RawRequest {
  std::string head;
  std::string body;
};

RawRequest ChatRequest(const UpstreamUrl& url, std::string body,
                       const std::vector<std::pair<std::string, std::string>>& headers = {},
                       std::string_view endpoint = "/chat/completions") {
  RawRequest req;
  req.head = "POST " + url.Target(endpoint) + " HTTP/1.1\r\nHost: " + url.HostHeader() +
             "\r\nContent-Type: application/json\r\nAuthorization: Bearer test-key\r\n";
  for (const auto& [name, value] : headers) req.head += name + ": " + value + "\r\n";
  req.head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  req.body = std::move(body);
  return req;
}

// Parameters by value: the coroutine outlives the caller's temporaries.
asio::awaitable<FetchResult> Fetch(UpstreamPool& pool, std::string url_text,
                                   UpstreamCallOptions options = {},
                                   std::string body = R"({"model":"mock-small","messages":[]})") {
  FetchResult out;
  const std::optional<UpstreamUrl> url = ParseUpstreamUrl(url_text);
  if (!url) {
    out.ec = UpstreamErrc::kBadUrl;
    co_return out;
  }
  UpstreamCall call(pool);
  const RawRequest req = ChatRequest(*url, std::move(body));
  out.ec = co_await call.StartRaw(*url, req.head, req.body, options);
  out.resends = call.resends();
  out.reused = call.reused_connection();
  if (out.ec) co_return out;
  out.status = call.status();
  out.content_type = std::string(call.head()[http::field::content_type]);
  out.ec = co_await call.ReadAll(out.body, 1 << 20, 5s);
  co_return out;
}

// Runs a client coroutine to completion on a fresh io_context (with a generous cap).
class ClientLoop {
 public:
  explicit ClientLoop(UpstreamPoolOptions options = {})
      : pool_(std::make_unique<UpstreamPool>(ioc_.get_executor(), std::move(options))) {}
  ~ClientLoop() { pool_.reset(); }

  UpstreamPool& pool() { return *pool_; }
  asio::io_context& ioc() { return ioc_; }

  template <class T>
  T Run(std::function<asio::awaitable<T>()> body) {
    T result{};
    bool finished = false;
    asio::co_spawn(
        ioc_,
        [&]() -> asio::awaitable<void> {
          result = co_await body();
          finished = true;
          ioc_.stop();  // idle pooled connections keep the pool's sweep timer armed
        },
        asio::detached);
    ioc_.restart();
    ioc_.run_for(30s);
    EXPECT_TRUE(finished) << "client coroutine did not finish";
    return result;
  }

 private:
  asio::io_context ioc_;
  std::unique_ptr<UpstreamPool> pool_;
};

UpstreamPoolOptions WithCa(const std::string& ca_file, bool system_store = true) {
  UpstreamPoolOptions options;
  options.tls.extra_ca_file = ca_file;
  options.tls.use_system_store = system_store;
  return options;
}

MockLlmOptions TlsMock(const TestPki& pki, const char* cert = "server.pem") {
  MockLlmOptions options;
  options.name = "tls";
  options.tls_cert_file = pki.Path(cert);
  options.tls_key_file = pki.Path("server.key");
  return options;
}

std::string HttpsUrl(const char* host, uint16_t port) {
  return std::string("https://") + host + ":" + std::to_string(port) + "/v1";
}

class TlsUpstreamTest : public ::testing::Test {
 protected:
  TestPki pki_;
};

// ---- Verification ----

TEST_F(TlsUpstreamTest, VerifiedConnectionWithTheTestCaSucceeds) {
  MockLlm mock(TlsMock(pki_));
  ClientLoop client(WithCa(pki_.Path("ca.pem")));
  for (const char* host : {"localhost", "127.0.0.1"}) {
    const FetchResult r =
        client.Run<FetchResult>([&] { return Fetch(client.pool(), HttpsUrl(host, mock.port())); });
    ASSERT_FALSE(r.ec) << host << ": " << r.ec.message();
    EXPECT_EQ(r.status, 200u) << host;
    EXPECT_NE(r.body.find("\"model\":\"mock-small\""), std::string::npos) << r.body;
  }
  const std::vector<ReceivedRequest> requests = mock.Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].target, "/v1/chat/completions");
  EXPECT_EQ(requests[0].Header("Host"), "localhost:" + std::to_string(mock.port()));
  EXPECT_EQ(requests[0].body, R"({"model":"mock-small","messages":[]})");
  EXPECT_EQ(requests[1].Header("Host"), "127.0.0.1:" + std::to_string(mock.port()));
}

TEST_F(TlsUpstreamTest, CaFromEnvironmentVariableIsTrusted) {
  MockLlm mock(TlsMock(pki_));
  ::setenv("LLMPROXY_EXTRA_CA_FILE", pki_.Path("ca.pem").c_str(), 1);
  ClientLoop client;  // no extra_ca_file option: the environment supplies it
  ::unsetenv("LLMPROXY_EXTRA_CA_FILE");
  const FetchResult r = client.Run<FetchResult>(
      [&] { return Fetch(client.pool(), HttpsUrl("localhost", mock.port())); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 200u);
}

TEST_F(TlsUpstreamTest, WrongCaFailsClosed) {
  MockLlm mock(TlsMock(pki_));
  ClientLoop client(WithCa(pki_.Path("other-ca.pem")));
  const FetchResult r = client.Run<FetchResult>(
      [&] { return Fetch(client.pool(), HttpsUrl("localhost", mock.port())); });
  EXPECT_EQ(r.ec, UpstreamErrc::kTlsFailed) << r.ec.message();
  EXPECT_TRUE(IsConnectError(r.ec));
  EXPECT_EQ(r.status, 0u);
  EXPECT_EQ(mock.RequestCount(), 0u);  // no request left the proxy
}

TEST_F(TlsUpstreamTest, SystemStoreAloneDoesNotTrustTheTestCa) {
  MockLlm mock(TlsMock(pki_));
  ClientLoop client;  // defaults: verification on, system CAs only
  const FetchResult r = client.Run<FetchResult>(
      [&] { return Fetch(client.pool(), HttpsUrl("127.0.0.1", mock.port())); });
  EXPECT_EQ(r.ec, UpstreamErrc::kTlsFailed) << r.ec.message();
  EXPECT_EQ(mock.RequestCount(), 0u);
}

TEST_F(TlsUpstreamTest, HostnameMismatchFails) {
  MockLlm mock(TlsMock(pki_, "wrong-name.pem"));  // trusted CA, but for wrong.example
  ClientLoop client(WithCa(pki_.Path("ca.pem")));
  for (const char* host : {"localhost", "127.0.0.1"}) {
    const FetchResult r =
        client.Run<FetchResult>([&] { return Fetch(client.pool(), HttpsUrl(host, mock.port())); });
    EXPECT_EQ(r.ec, UpstreamErrc::kTlsFailed) << host << ": " << r.ec.message();
  }
  EXPECT_EQ(mock.RequestCount(), 0u);
}

TEST_F(TlsUpstreamTest, SkipVerifyAcceptsAnyCertificate) {
  MockLlm mock(TlsMock(pki_, "wrong-name.pem"));
  ClientLoop client(WithCa(pki_.Path("other-ca.pem")));
  UpstreamCallOptions options;
  options.tls_insecure_skip_verify = true;
  const FetchResult r = client.Run<FetchResult>(
      [&] { return Fetch(client.pool(), HttpsUrl("localhost", mock.port()), options); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 200u);
  // The insecure connection is pooled apart: a verified call still fails closed.
  const FetchResult verified = client.Run<FetchResult>(
      [&] { return Fetch(client.pool(), HttpsUrl("localhost", mock.port())); });
  EXPECT_EQ(verified.ec, UpstreamErrc::kTlsFailed);
}

TEST_F(TlsUpstreamTest, PlainHttpToTlsServerIsAnError) {
  MockLlm mock(TlsMock(pki_));
  ClientLoop client;
  UpstreamCallOptions options;
  options.response_timeout = 5s;
  const FetchResult r = client.Run<FetchResult>([&] {
    return Fetch(client.pool(), "http://127.0.0.1:" + std::to_string(mock.port()), options);
  });
  EXPECT_TRUE(r.ec) << "a TLS server cannot answer plain HTTP";
}

// ---- Pool behaviour ----

TEST_F(TlsUpstreamTest, KeepAliveReusesOneTlsConnection) {
  MockLlm mock(TlsMock(pki_));
  ClientLoop client(WithCa(pki_.Path("ca.pem")));
  const std::string url = HttpsUrl("localhost", mock.port());
  for (int i = 0; i < 5; ++i) {
    const FetchResult r = client.Run<FetchResult>([&] { return Fetch(client.pool(), url); });
    ASSERT_FALSE(r.ec) << r.ec.message();
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.reused, i > 0);
  }
  EXPECT_EQ(mock.Stats().connections, 1u);
  EXPECT_EQ(client.pool().connects_started(), 1u);
  EXPECT_EQ(client.pool().reuses(), 4u);
  EXPECT_EQ(client.pool().idle_count(), 1u);
}

TEST(UpstreamPoolTest, PooledConnectionThatTookTheRequestAndClosedIsNotResent) {
  MockLlm mock;
  ClientLoop client;
  const std::string url = mock.BaseUrl();
  FetchResult r = client.Run<FetchResult>([&] { return Fetch(client.pool(), url); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  // The next request on that pooled connection is read whole and the connection closed
  // without a reply: the upstream may have acted on it, so sending it again here would be
  // a silent duplicate. It is a failed attempt for the pipeline's retry rules.
  MockFault close;
  close.close = true;
  mock.PushFault(close);
  r = client.Run<FetchResult>([&] { return Fetch(client.pool(), url); });
  EXPECT_EQ(r.ec, UpstreamErrc::kReadFailed) << r.ec.message();
  EXPECT_EQ(r.resends, 0u);
  EXPECT_TRUE(r.reused);
  EXPECT_EQ(mock.Stats().connections, 1u);
  EXPECT_EQ(mock.RequestCount(), 2u);
  EXPECT_EQ(client.pool().idle_count(), 0u);
}

TEST(UpstreamPoolTest, FreshConnectionClosedWithoutReplyIsNotRetried) {
  MockLlm mock;
  ClientLoop client;
  MockFault close;
  close.close = true;
  mock.PushFault(close);
  const FetchResult r =
      client.Run<FetchResult>([&] { return Fetch(client.pool(), mock.BaseUrl()); });
  EXPECT_EQ(r.ec, UpstreamErrc::kReadFailed) << r.ec.message();
  EXPECT_EQ(r.resends, 0u);
  EXPECT_EQ(mock.RequestCount(), 1u);
}

TEST(UpstreamPoolTest, PeerClosedIdleConnectionIsNotReused) {
  MockLlmOptions options;
  options.idle_timeout = 50ms;  // the mock closes idle keep-alive connections quickly
  MockLlm mock(options);
  ClientLoop client;
  FetchResult r = client.Run<FetchResult>([&] { return Fetch(client.pool(), mock.BaseUrl()); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  // Poll with growing gaps: each reuse restarts the mock's idle clock, so once a gap
  // exceeds its idle timeout the pooled connection is closed under us.
  auto gap = 10ms;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(gap);
    gap *= 2;
    r = client.Run<FetchResult>([&] { return Fetch(client.pool(), mock.BaseUrl()); });
    ASSERT_FALSE(r.ec) << r.ec.message();
    if (!r.reused) break;
  }
  EXPECT_FALSE(r.reused);
  EXPECT_EQ(r.resends, 0u);  // discarded before use, not through a resend
}

TEST(UpstreamPoolTest, ConnectionClosedByThePeerWithinASecondIsNotReused) {
  // Every idle connection is peeked before reuse, however briefly it idled: one closed by
  // the server half a second ago is dropped, not written to and then resent.
  MockLlmOptions options;
  options.idle_timeout = 50ms;
  MockLlm mock(options);
  ClientLoop client;
  FetchResult r = client.Run<FetchResult>([&] { return Fetch(client.pool(), mock.BaseUrl()); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  // Ten times the mock's idle timeout: it has closed the pooled connection by then (the
  // mock exposes no count of open connections to wait on).
  std::this_thread::sleep_for(500ms);
  r = client.Run<FetchResult>([&] { return Fetch(client.pool(), mock.BaseUrl()); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_FALSE(r.reused);
  EXPECT_EQ(r.resends, 0u);
  EXPECT_EQ(mock.Stats().connections, 2u);
  EXPECT_EQ(mock.RequestCount(), 2u);
}

TEST(UpstreamPoolTest, IdleConnectionsAreClosedByTheSweepWithoutAnotherRequest) {
  MockLlm mock;
  UpstreamPoolOptions options;
  options.idle_expiry = 100ms;
  ClientLoop client(options);
  const FetchResult r =
      client.Run<FetchResult>([&] { return Fetch(client.pool(), mock.BaseUrl()); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  ASSERT_EQ(client.pool().idle_count(), 1u);
  // No request follows: only the sweep can close it. Once nothing is idle or in use the
  // sweep stops, so the loop runs out of work instead of waking forever.
  const auto start = std::chrono::steady_clock::now();
  client.ioc().restart();
  client.ioc().run_for(5s);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(client.pool().idle_count(), 0u);
  EXPECT_GE(waited, 50ms);
  EXPECT_LT(waited, 2s);
}

TEST(UpstreamPoolTest, IdleConnectionsAreCappedPerOrigin) {
  MockLlm a;
  UpstreamPoolOptions options;
  options.max_idle_per_origin = 2;
  ClientLoop client(options);
  // Four concurrent calls need four connections; only two stay idle afterwards.
  const int ok = client.Run<int>([&]() -> asio::awaitable<int> {
    int done = 0;
    int succeeded = 0;
    for (int i = 0; i < 4; ++i) {
      asio::co_spawn(
          client.ioc(),
          [&]() -> asio::awaitable<void> {
            UpstreamCall call(client.pool());
            const UpstreamUrl url = *ParseUpstreamUrl(a.BaseUrl());
            const RawRequest req =
                ChatRequest(url, R"({"model":"m"})", {{"x-mock-delay-ms", "100"}});
            std::error_code ec = co_await call.StartRaw(url, req.head, req.body, {});
            std::string body;
            if (!ec) ec = co_await call.ReadAll(body, 1 << 20, 5s);
            if (!ec) ++succeeded;
            ++done;
          },
          asio::detached);
    }
    asio::steady_timer timer(client.ioc());
    while (done < 4) {
      timer.expires_after(5ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
    co_return succeeded;
  });
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(a.Stats().connections, 4u);
  EXPECT_EQ(client.pool().idle_count(), 2u);
}

// ---- Body reading ----

TEST_F(TlsUpstreamTest, StreamArrivesPieceByPieceInOrder) {
  MockLlm mock(TlsMock(pki_));
  ClientLoop client(WithCa(pki_.Path("ca.pem")));
  struct StreamResult {
    std::error_code ec;
    std::string content_type;
    std::string body;
    int pieces = 0;
    bool done = false;
    std::optional<TokenUsage> usage;
  };
  const StreamResult r = client.Run<StreamResult>([&]() -> asio::awaitable<StreamResult> {
    StreamResult out;
    const UpstreamUrl url = *ParseUpstreamUrl(HttpsUrl("localhost", mock.port()));
    UpstreamCall call(client.pool());
    const RawRequest req = ChatRequest(
        url, R"({"model":"mock-small","stream":true,"stream_options":{"include_usage":true}})",
        {{"x-mock-chunks", "50"}, {"x-mock-chunk-gap-ms", "1"}});
    out.ec = co_await call.StartRaw(url, req.head, req.body, {});
    if (out.ec) co_return out;
    out.content_type = std::string(call.head()[http::field::content_type]);
    SseParser sse;
    while (true) {
      const UpstreamBodyPiece piece = co_await call.ReadBody(5s);
      if (piece.ec) {
        out.ec = piece.ec;
        break;
      }
      if (!piece.data.empty()) ++out.pieces;
      out.body.append(sse.Feed(piece.data));
      if (piece.done) break;
    }
    out.body.append(sse.Finish());
    out.done = sse.done();
    out.usage = sse.usage();
    co_return out;
  });
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_NE(r.content_type.find("text/event-stream"), std::string::npos);
  EXPECT_GT(r.pieces, 1);
  EXPECT_TRUE(r.done);
  EXPECT_TRUE(r.usage.has_value());
  size_t at = 0;
  for (int i = 0; i < 50; ++i) {
    const std::string token = "tok" + std::to_string(i) + " ";
    const size_t found = r.body.find(token, at);
    ASSERT_NE(found, std::string::npos) << token;
    at = found + token.size();
  }
  EXPECT_EQ(client.pool().idle_count(), 1u);  // read to the end: back in the pool
}

TEST(UpstreamPoolTest, ReadAllEnforcesItsLimit) {
  MockLlm mock;
  ClientLoop client;
  const std::error_code ec = client.Run<std::error_code>([&]() -> asio::awaitable<std::error_code> {
    const UpstreamUrl url = *ParseUpstreamUrl(mock.BaseUrl());
    UpstreamCall call(client.pool());
    const RawRequest req = ChatRequest(url, "{}", {{"x-mock-body", std::string(5000, 'x')}});
    std::error_code e = co_await call.StartRaw(url, req.head, req.body, {});
    if (e) co_return e;
    std::string body;
    co_return co_await call.ReadAll(body, 1000, 5s);
  });
  EXPECT_EQ(ec, UpstreamErrc::kBodyTooLarge);
  EXPECT_EQ(client.pool().idle_count(), 0u);  // half-read connection is not pooled
}

TEST(UpstreamPoolTest, ReadAllOfAChunkedBodyAndItsLimit) {
  MockLlm mock;
  ClientLoop client;
  auto read_stream = [&](size_t limit) {
    return client.Run<FetchResult>([&, limit]() -> asio::awaitable<FetchResult> {
      FetchResult out;
      const UpstreamUrl url = *ParseUpstreamUrl(mock.BaseUrl());
      UpstreamCall call(client.pool());
      const RawRequest req = ChatRequest(url, R"({"stream":true})", {{"x-mock-chunks", "20"}});
      out.ec = co_await call.StartRaw(url, req.head, req.body, {});
      if (out.ec) co_return out;
      out.status = call.status();
      out.content_type = std::string(call.head()[http::field::transfer_encoding]);
      out.ec = co_await call.ReadAll(out.body, limit, 5s);
      co_return out;
    });
  };
  const FetchResult whole = read_stream(1 << 20);
  ASSERT_FALSE(whole.ec) << whole.ec.message();
  EXPECT_EQ(whole.content_type, "chunked");
  EXPECT_NE(whole.body.find("tok19 "), std::string::npos);
  EXPECT_EQ(whole.body.substr(whole.body.size() - 14), "data: [DONE]\n\n");
  EXPECT_EQ(client.pool().idle_count(), 1u);
  const FetchResult limited = read_stream(100);
  EXPECT_EQ(limited.ec, UpstreamErrc::kBodyTooLarge);
  EXPECT_LE(limited.body.size(), 100u);
  EXPECT_EQ(client.pool().idle_count(), 0u);  // the reused connection was not finished
}

// ---- Errors, timeouts, cancellation ----

TEST(UpstreamPoolTest, ConnectRefusedIsAConnectError) {
  uint16_t port = 0;
  {
    asio::io_context ioc;
    asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    port = acceptor.local_endpoint().port();
  }  // closed: nothing listens there now
  ClientLoop client;
  const FetchResult r = client.Run<FetchResult>(
      [&] { return Fetch(client.pool(), "http://127.0.0.1:" + std::to_string(port) + "/v1"); });
  EXPECT_EQ(r.ec, UpstreamErrc::kConnectFailed) << r.ec.message();
  EXPECT_TRUE(IsConnectError(r.ec));
}

TEST(UpstreamPoolTest, UnknownHostIsADnsError) {
  ClientLoop client;
  const FetchResult r = client.Run<FetchResult>(
      [&] { return Fetch(client.pool(), "http://no-such-host.invalid:9/v1"); });
  EXPECT_TRUE(r.ec == UpstreamErrc::kDnsFailed || r.ec == UpstreamErrc::kConnectTimeout)
      << r.ec.message();
  EXPECT_TRUE(IsConnectError(r.ec));
}

TEST(UpstreamPoolTest, ResponseTimeoutWhenTheUpstreamHangs) {
  MockLlm mock;
  MockFault hang;
  hang.hang = true;
  mock.PushFault(hang);
  ClientLoop client;
  UpstreamCallOptions options;
  options.response_timeout = 200ms;
  const auto start = std::chrono::steady_clock::now();
  const FetchResult r =
      client.Run<FetchResult>([&] { return Fetch(client.pool(), mock.BaseUrl(), options); });
  EXPECT_EQ(r.ec, UpstreamErrc::kResponseTimeout) << r.ec.message();
  EXPECT_TRUE(IsTimeout(r.ec));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(UpstreamPoolTest, BodyIdleTimeout) {
  MockLlm mock;
  ClientLoop client;
  const std::error_code ec = client.Run<std::error_code>([&]() -> asio::awaitable<std::error_code> {
    const UpstreamUrl url = *ParseUpstreamUrl(mock.BaseUrl());
    UpstreamCall call(client.pool());
    const RawRequest req =
        ChatRequest(url, R"({"stream":true})", {{"x-mock-first-chunk-delay-ms", "3000"}});
    std::error_code e = co_await call.StartRaw(url, req.head, req.body, {});
    if (e) co_return e;
    UpstreamBodyPiece piece = co_await call.ReadBody(100ms);
    co_return piece.ec;
  });
  EXPECT_EQ(ec, UpstreamErrc::kBodyTimeout) << ec.message();
}

TEST_F(TlsUpstreamTest, CancelClosesTheUpstreamConnectionAtOnce) {
  MockLlm mock(TlsMock(pki_));
  MockFault hang;
  hang.hang = true;
  mock.PushFault(hang);
  ClientLoop client(WithCa(pki_.Path("ca.pem")));
  const std::error_code ec = client.Run<std::error_code>([&]() -> asio::awaitable<std::error_code> {
    const UpstreamUrl url = *ParseUpstreamUrl(HttpsUrl("localhost", mock.port()));
    UpstreamCall call(client.pool());
    // The "client went away" watcher: cancel once the upstream has the request.
    asio::co_spawn(
        client.ioc(),
        [&]() -> asio::awaitable<void> {
          asio::steady_timer timer(client.ioc());
          while (mock.RequestCount() == 0) {
            timer.expires_after(2ms);
            co_await timer.async_wait(asio::use_awaitable);
          }
          call.Cancel();
        },
        asio::detached);
    const RawRequest req = ChatRequest(url, "{}");
    co_return co_await call.StartRaw(url, req.head, req.body, {});
  });
  EXPECT_EQ(ec, UpstreamErrc::kCancelled) << ec.message();
  EXPECT_TRUE(mock.WaitForCancellations(1, 5s)) << "the upstream did not see the close";
  EXPECT_EQ(client.pool().idle_count(), 0u);
}

TEST(UpstreamPoolTest, CancelDuringConnectAndBeforeStart) {
  ClientLoop client;
  const std::error_code ec = client.Run<std::error_code>([&]() -> asio::awaitable<std::error_code> {
    UpstreamCall call(client.pool());
    call.Cancel();
    const UpstreamUrl url = *ParseUpstreamUrl("http://127.0.0.1:9/v1");
    const RawRequest req = ChatRequest(url, "{}");
    co_return co_await call.StartRaw(url, req.head, req.body, {});
  });
  EXPECT_EQ(ec, UpstreamErrc::kCancelled);
}

}  // namespace
}  // namespace llmproxy
