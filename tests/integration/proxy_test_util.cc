#include "tests/integration/proxy_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

namespace llmproxy::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

template <class Fields>
std::map<std::string, std::string> HeaderMap(const Fields& fields) {
  std::map<std::string, std::string> out;
  for (const auto& f : fields) out[Lower(f.name_string())] = std::string(f.value());
  return out;
}

http::request<http::string_body> MakeRequest(const std::string& method, const std::string& target,
                                             const std::string& body, const Headers& headers) {
  http::request<http::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == "POST") req.prepare_payload();
  return req;
}

// Runs `io` until `done` or the timeout; returns whether it finished.
bool RunFor(asio::io_context& io, const bool& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(left);
  }
  return true;
}

}  // namespace

std::string HttpResult::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

HttpResult HttpCall(uint16_t port, const std::string& method, const std::string& target,
                    const std::string& body, const Headers& headers,
                    std::chrono::milliseconds timeout) {
  HttpResult result;
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  auto req = MakeRequest(method, target, body, headers);
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  parser.header_limit(1 << 20);
  bool done = false;
  boost::system::error_code final_ec;

  stream.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), [&](boost::system::error_code ec) {
        if (ec) {
          final_ec = ec;
          done = true;
          return;
        }
        http::async_write(stream, req, [&](boost::system::error_code ec2, size_t) {
          // A server may answer (413) before it read the whole body.
          (void)ec2;
          http::async_read(stream, buffer, parser, [&](boost::system::error_code ec3, size_t) {
            final_ec = ec3;
            done = true;
          });
        });
      });
  if (!RunFor(io, done, timeout)) {
    result.error = "timeout";
    return result;
  }
  if (parser.is_header_done()) {
    result.status = static_cast<int>(parser.get().result_int());
    result.headers = HeaderMap(parser.get());
    result.body = parser.get().body();
  }
  if (final_ec) result.error = final_ec.message();
  return result;
}

std::vector<HttpResult> HttpCallsOnOneConnection(
    uint16_t port, const std::vector<std::pair<std::string, std::string>>& target_and_body,
    std::chrono::milliseconds timeout) {
  std::vector<HttpResult> out;
  if (target_and_body.empty()) return out;
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  bool done = false;
  boost::system::error_code ec;
  stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                       [&](boost::system::error_code e) {
                         ec = e;
                         done = true;
                       });
  if (!RunFor(io, done, timeout) || ec) return out;
  for (const auto& [target, body] : target_and_body) {
    HttpResult result;
    auto req = MakeRequest(body.empty() ? "GET" : "POST", target, body,
                           {{"Content-Type", "application/json"}});
    done = false;
    http::async_write(stream, req, [&](boost::system::error_code e, size_t) {
      ec = e;
      done = true;
    });
    if (!RunFor(io, done, timeout) || ec) break;
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    done = false;
    http::async_read(stream, buffer, parser, [&](boost::system::error_code e, size_t) {
      ec = e;
      done = true;
    });
    if (!RunFor(io, done, timeout) || ec) break;
    result.status = static_cast<int>(parser.get().result_int());
    result.headers = HeaderMap(parser.get());
    result.body = parser.get().body();
    out.push_back(std::move(result));
  }
  return out;
}

std::string RawExchange(uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout) {
  asio::io_context io;
  tcp::socket socket(io);
  std::string received;
  bool done = false;
  char buf[16384];
  std::function<void()> read_more = [&] {
    socket.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, size_t n) {
      received.append(buf, n);
      if (ec) {
        done = true;
        return;
      }
      read_more();
    });
  };
  socket.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), [&](boost::system::error_code ec) {
        if (ec) {
          done = true;
          return;
        }
        read_more();
        asio::async_write(socket, asio::buffer(bytes), [](boost::system::error_code, size_t) {});
      });
  RunFor(io, done, timeout);
  return received;
}

struct StreamingResponse::Impl {
  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  char chunk[16384];
};

bool StreamingResponse::Open(uint16_t port, const std::string& target, const std::string& body,
                             const Headers& headers, std::chrono::milliseconds timeout) {
  impl_ = std::make_shared<Impl>();
  impl_->parser.body_limit(boost::none);
  Headers h = headers;
  h.emplace_back("Content-Type", "application/json");
  auto req = MakeRequest("POST", target, body, h);
  bool done = false;
  boost::system::error_code ec;
  impl_->stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                              [&](boost::system::error_code e) {
                                ec = e;
                                done = true;
                              });
  if (!RunFor(impl_->io, done, timeout) || ec) return false;
  done = false;
  http::async_write(impl_->stream, req, [&](boost::system::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!RunFor(impl_->io, done, timeout) || ec) return false;
  done = false;
  http::async_read_header(impl_->stream, impl_->buffer, impl_->parser,
                          [&](boost::system::error_code e, size_t) {
                            ec = e;
                            done = true;
                          });
  if (!RunFor(impl_->io, done, timeout) || ec) return false;
  status_ = static_cast<int>(impl_->parser.get().result_int());
  headers_ = HeaderMap(impl_->parser.get());
  if (impl_->parser.is_done()) ended_ = true;
  return true;
}

std::string StreamingResponse::Header(const std::string& lower_name) const {
  auto it = headers_.find(lower_name);
  return it == headers_.end() ? "" : it->second;
}

bool StreamingResponse::ReadUntil(const std::function<bool(const std::string&)>& pred,
                                  std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred(body_)) {
    if (ended_ || !impl_) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    auto& p = impl_->parser;
    p.get().body().data = impl_->chunk;
    p.get().body().size = sizeof impl_->chunk;
    bool done = false;
    boost::system::error_code ec;
    http::async_read_some(impl_->stream, impl_->buffer, p,
                          [&](boost::system::error_code e, size_t) {
                            ec = e;
                            done = true;
                          });
    if (!RunFor(impl_->io, done, left)) return pred(body_);
    if (ec == http::error::need_buffer) ec = {};
    body_.append(impl_->chunk, sizeof impl_->chunk - p.get().body().size);
    if (ec) {
      ended_ = true;
      return pred(body_);
    }
    if (p.is_done()) ended_ = true;
  }
  return true;
}

bool StreamingResponse::ReadToEnd(std::chrono::milliseconds timeout) {
  ReadUntil([](const std::string&) { return false; }, timeout);
  return ended_ && impl_ && impl_->parser.is_done();
}

void StreamingResponse::Close() {
  if (!impl_) return;
  boost::system::error_code ec;
  impl_->stream.socket().close(ec);
}

StreamingResponse::~StreamingResponse() { Close(); }

RawClient::~RawClient() { Close(); }

bool RawClient::Connect(uint16_t port) {
  Close();
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

bool RawClient::Send(const std::string& bytes) {
  std::string_view data = bytes;
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawClient::ReadSome(std::string& out, std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char buf[16384];
  ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
  if (n <= 0) return false;
  out.append(buf, static_cast<size_t>(n));
  return true;
}

void RawClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string RawPost(const std::string& target, const std::string& body, const Headers& headers) {
  std::string out = "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  out += "Content-Type: application/json\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  out += body;
  return out;
}

uint16_t UnusedPort() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

struct RecordingObserver::State {
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::vector<RequestRecord> records;
  std::vector<std::pair<std::string, AttemptOutcome>> attempts;
  int started = 0;
};

std::shared_ptr<RecordingObserver::State> RecordingObserver::MakeState() {
  return std::make_shared<State>();
}

void RecordingObserver::OnRequestStart() {
  std::lock_guard lock(state_->mu);
  ++state_->started;
}

void RecordingObserver::OnAttempt(std::string_view backend, AttemptOutcome outcome) {
  std::lock_guard lock(state_->mu);
  state_->attempts.emplace_back(std::string(backend), outcome);
}

void RecordingObserver::OnRequestDone(const RequestRecord& record) {
  {
    std::lock_guard lock(state_->mu);
    state_->records.push_back(record);
  }
  state_->cv.notify_all();
}

std::vector<RequestRecord> RecordingObserver::Records() const {
  std::lock_guard lock(state_->mu);
  return state_->records;
}

std::vector<std::pair<std::string, AttemptOutcome>> RecordingObserver::Attempts() const {
  std::lock_guard lock(state_->mu);
  return state_->attempts;
}

bool RecordingObserver::WaitForRecords(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->records.size() >= n; });
}

BackendConfig MockBackend(const std::string& name, const std::string& base_url,
                          std::vector<std::string> models, const std::string& api_key) {
  BackendConfig b;
  b.name = name;
  b.url = base_url;
  b.api_key = api_key.empty() ? "key-" + name : api_key;
  b.models = std::move(models);
  b.default_model = b.models.empty() ? "" : b.models.front();
  return b;
}

Config TestConfig(std::vector<BackendConfig> backends) {
  Config c;
  c.server.host = "127.0.0.1";
  c.server.port = 8080;  // unused: TestWorker listens on port 0
  c.timeout = std::chrono::seconds(5);
  c.stream_idle_timeout = std::chrono::seconds(5);
  c.connect_timeout = std::chrono::seconds(2);
  c.retry = 3;
  c.mode = BalanceMode::kRoundRobin;
  c.backends = std::move(backends);
  return c;
}

TestWorker::TestWorker(std::optional<Config> config, unsigned threads,
                       std::vector<RequestObserver*> observers, KeyLeases* leases) {
  if (config) {
    std::string error = Apply(std::move(*config));
    if (!error.empty()) throw std::runtime_error("test config rejected: " + error);
  }
  WorkerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.threads = threads;
  // Short, so tests of the no-table 503 do not wait the production 3 s.
  options.first_table_wait = std::chrono::milliseconds(500);
  options.leases = leases;
  worker_ = std::make_unique<Worker>(options, store_, std::move(observers));
  if (std::string error = worker_->Start(); !error.empty()) {
    throw std::runtime_error("worker did not start: " + error);
  }
}

TestWorker::~TestWorker() { worker_->Stop(); }

std::string TestWorker::Apply(Config config) { return store_.Apply(std::move(config), ++version_); }

bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

}  // namespace llmproxy::test
