#include "tests/mockllm/mock_llm.h"

#include "tests/mockllm/mock_answers.h"

#include <openssl/evp.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

namespace llmproxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

constexpr auto kAsTuple = asio::as_tuple(use_awaitable);
constexpr size_t kHeaderLimit = 64 * 1024;
// Bytes a client may send while its reply is still being written (pipelining) before
// the mock stops reading them; a proxy never gets near this.
constexpr size_t kPipelineLimit = 1 << 20;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

std::optional<int> ParseInt(std::string_view s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// A JSON string literal of `s` (tool results echo client text, which may need escapes).
std::string JsonString(std::string_view s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool ParseFlag(std::string_view s) { return s == "1" || IEquals(s, "true") || IEquals(s, "yes"); }

std::string ErrorJson(std::string_view message, std::string_view type, std::string_view code) {
  nlohmann::json j = {{"error", {{"message", message}, {"type", type}, {"code", code}}}};
  return j.dump();
}

std::string StatusErrorJson(int status) {
  std::string_view type = status == 429   ? "rate_limit_error"
                          : status == 401 ? "authentication_error"
                          : status >= 500 ? "server_error"
                                          : "invalid_request_error";
  return ErrorJson("mock scripted failure (status " + std::to_string(status) + ")", type,
                   "mock_status_" + std::to_string(status));
}

enum class Route {
  kChat,
  kCompletions,
  kEmbeddings,
  kModels,
  kMessages,     // Anthropic Messages
  kCountTokens,  // Anthropic .../messages/count_tokens
  kResponses,    // OpenAI Responses
  kStats,
  kUnknown
};

bool IsAnthropic(Route r) { return r == Route::kMessages || r == Route::kCountTokens; }

Route RouteOf(std::string_view path) {
  if (path == "/mock/stats") return Route::kStats;
  if (EndsWith(path, "/messages/count_tokens")) return Route::kCountTokens;
  if (EndsWith(path, "/messages")) return Route::kMessages;
  if (EndsWith(path, "/responses")) return Route::kResponses;
  if (EndsWith(path, "/chat/completions")) return Route::kChat;
  if (EndsWith(path, "/completions")) return Route::kCompletions;
  if (EndsWith(path, "/embeddings")) return Route::kEmbeddings;
  if (EndsWith(path, "/models")) return Route::kModels;
  return Route::kUnknown;
}

// What the parsed body asked for.
struct ApiCall {
  std::string model;
  bool stream = false;
  bool include_usage = false;
  int prompt_tokens = 1;
  bool last_is_assistant = false;        // the last `messages` entry has role "assistant"
  std::optional<std::string> prefill{};  // ... and this string content
  MockTurn turn{};                       // a tool to call, or a tool result to answer
};

// The answer's content pieces: "tok0 " ... "tok{n-1} ", or, continuing a prefill that is a
// prefix of that text, only what comes after it (the first piece may be a token's tail).
std::vector<std::string> AnswerPieces(int n, const std::optional<std::string>& prefill) {
  std::vector<std::string> pieces;
  pieces.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) pieces.push_back("tok" + std::to_string(i) + " ");
  if (!prefill) return pieces;
  std::string_view p = *prefill;
  size_t i = 0;
  while (i < pieces.size() && p.size() >= pieces[i].size() &&
         p.substr(0, pieces[i].size()) == pieces[i]) {
    p.remove_prefix(pieces[i].size());
    ++i;
  }
  if (!p.empty() && (i == pieces.size() || pieces[i].compare(0, p.size(), p) != 0 ||
                     p.size() >= pieces[i].size())) {
    return pieces;  // not a prefix of our answer: answer in full
  }
  pieces.erase(pieces.begin(), pieces.begin() + static_cast<std::ptrdiff_t>(i));
  if (!p.empty()) pieces.front().erase(0, p.size());
  // Nothing left still ends the answer: one empty piece carries finish_reason.
  if (pieces.empty()) pieces.emplace_back();
  return pieces;
}

}  // namespace

void MockFault::MergeFrom(const MockFault& over) {
  if (over.status) status = over.status;
  if (over.retry_after_s) retry_after_s = over.retry_after_s;
  if (over.delay_ms) delay_ms = over.delay_ms;
  if (over.first_chunk_delay_ms) first_chunk_delay_ms = over.first_chunk_delay_ms;
  if (over.first_token_delay_ms) first_token_delay_ms = over.first_token_delay_ms;
  if (over.chunks) chunks = over.chunks;
  if (over.chunk_gap_ms) chunk_gap_ms = over.chunk_gap_ms;
  if (over.die_after_chunks) die_after_chunks = over.die_after_chunks;
  if (over.partial_event_bytes) partial_event_bytes = over.partial_event_bytes;
  if (over.after_done) after_done = over.after_done;
  if (over.stall_after_chunks) stall_after_chunks = over.stall_after_chunks;
  hang = hang || over.hang;
  close = close || over.close;
  garbage = garbage || over.garbage;
  if (over.body) body = over.body;
  if (over.unavailable_for_ms) unavailable_for_ms = over.unavailable_for_ms;
  context_length_exceeded = context_length_exceeded || over.context_length_exceeded;
  reject_prefill = reject_prefill || over.reject_prefill;
  tool_call = tool_call || over.tool_call;
  no_tools = no_tools || over.no_tools;
}

bool MockFault::empty() const {
  return !status && !retry_after_s && !delay_ms && !first_chunk_delay_ms && !first_token_delay_ms &&
         !chunks && !chunk_gap_ms && !die_after_chunks && !partial_event_bytes && !after_done &&
         !stall_after_chunks && !hang && !close && !garbage && !body && !unavailable_for_ms &&
         !context_length_exceeded && !reject_prefill && !tool_call && !no_tools;
}

std::string ReceivedRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return "";
}

bool ReceivedRequest::HasHeader(std::string_view name) const {
  for (const auto& h : headers) {
    if (IEquals(h.first, name)) return true;
  }
  return false;
}

struct MockLlm::Impl {
  explicit Impl(const MockLlmOptions& o) : opts(o) {}

  MockLlmOptions opts;
  std::unique_ptr<asio::io_context> ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<ssl::context> tls;
  std::vector<std::thread> threads;
  std::once_flag stop_once;
  time_t created = time(nullptr);
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::vector<ReceivedRequest> records;
  std::vector<MockCancellation> cancellations;
  size_t requests_since_clear = 0;
  MockFault default_fault;
  std::deque<std::pair<MockFault, int>> queued;

  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> cancelled{0};
  std::atomic<uint64_t> in_flight{0};
  std::atomic<uint64_t> connections{0};

  // Records the request and decides its fault, under one lock so the queue is consumed
  // in arrival order.
  MockFault Admit(uint64_t n, const http::request<http::string_body>& req) {
    MockFault fault;
    // One time for the record and the outage check, so a test can tell from received_at
    // alone which requests got the unavailable_for_ms 503.
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mu);
      ++requests_since_clear;
      if (!queued.empty()) {
        fault = queued.front().first;
        if (--queued.front().second <= 0) queued.pop_front();
      } else {
        fault = default_fault;
      }
      if (opts.record_requests) {
        ReceivedRequest r;
        r.seq = n;
        r.method = std::string(req.method_string());
        r.target = std::string(req.target());
        for (const auto& f : req) r.headers.emplace_back(f.name_string(), f.value());
        r.body = req.body();
        r.body_sha256 = Sha256Hex(req.body());
        r.received_at = now;
        records.push_back(std::move(r));
      }
    }
    cv.notify_all();
    fault.MergeFrom(HeaderFault(req));
    if (fault.unavailable_for_ms && !fault.status &&
        now - started < std::chrono::milliseconds(*fault.unavailable_for_ms)) {
      fault.status = 503;
    }
    return fault;
  }

  static MockFault HeaderFault(const http::request<http::string_body>& req) {
    MockFault f;
    for (const auto& field : req) {
      std::string_view name = field.name_string();
      if (name.size() < 7 || !IEquals(name.substr(0, 7), "x-mock-")) continue;
      std::string_view key = name.substr(7);
      std::string_view v = field.value();
      if (IEquals(key, "status"))
        f.status = ParseInt(v);
      else if (IEquals(key, "retry-after"))
        f.retry_after_s = ParseInt(v);
      else if (IEquals(key, "delay-ms"))
        f.delay_ms = ParseInt(v);
      else if (IEquals(key, "first-chunk-delay-ms"))
        f.first_chunk_delay_ms = ParseInt(v);
      else if (IEquals(key, "first-token-delay-ms"))
        f.first_token_delay_ms = ParseInt(v);
      else if (IEquals(key, "stall-after-chunks"))
        f.stall_after_chunks = ParseInt(v);
      else if (IEquals(key, "context-length-exceeded"))
        f.context_length_exceeded = ParseFlag(v);
      else if (IEquals(key, "reject-prefill"))
        f.reject_prefill = ParseFlag(v);
      else if (IEquals(key, "tool-call"))
        f.tool_call = ParseFlag(v);
      else if (IEquals(key, "no-tools"))
        f.no_tools = ParseFlag(v);
      else if (IEquals(key, "chunks"))
        f.chunks = ParseInt(v);
      else if (IEquals(key, "chunk-gap-ms"))
        f.chunk_gap_ms = ParseInt(v);
      else if (IEquals(key, "die-after-chunks"))
        f.die_after_chunks = ParseInt(v);
      else if (IEquals(key, "partial-event-bytes"))
        f.partial_event_bytes = ParseInt(v);
      else if (IEquals(key, "after-done"))
        f.after_done = std::string(v);
      else if (IEquals(key, "hang"))
        f.hang = ParseFlag(v);
      else if (IEquals(key, "close"))
        f.close = ParseFlag(v);
      else if (IEquals(key, "garbage"))
        f.garbage = ParseFlag(v);
      else if (IEquals(key, "body"))
        f.body = std::string(v);
      else if (IEquals(key, "unavailable-for-ms"))
        f.unavailable_for_ms = ParseInt(v);
    }
    return f;
  }

  void RecordCancellation(uint64_t n, bool stream, int chunks_sent,
                          std::chrono::steady_clock::time_point seen_at) {
    cancelled.fetch_add(1);
    {
      std::lock_guard lock(mu);
      cancellations.push_back(MockCancellation{n, stream, chunks_sent, seen_at});
    }
    cv.notify_all();
  }

  std::string StatsJson() const {
    nlohmann::json j = {{"name", opts.name},
                        {"requests", seq.load()},
                        {"cancelled", cancelled.load()},
                        {"in_flight", in_flight.load()},
                        {"connections", connections.load()}};
    return j.dump();
  }

  awaitable<void> AcceptLoop();
  template <class Stream>
  awaitable<void> Session(Stream stream);
};

namespace {

// Per-reply shared state between the responder and the watcher that notices a client
// hanging up. Both run on the connection's strand, so no locking.
struct ReplyState {
  explicit ReplyState(const asio::any_io_executor& ex) : sleep(ex), watch_done(ex) {
    watch_done.expires_at(asio::steady_timer::time_point::max());
  }
  asio::steady_timer sleep;       // delays and gaps; cancelled when the client leaves
  asio::steady_timer watch_done;  // cancelled when the watcher returns
  bool done = false;              // the reply was written in full (or we closed on purpose)
  bool client_closed = false;
  bool watch_finished = false;
  bool stream = false;  // an SSE reply has started
  int chunks_sent = 0;
};

template <class Stream>
auto& Lowest(Stream& s) {
  return beast::get_lowest_layer(s);
}

class Responder {
 public:
  Responder(MockLlm::Impl& impl, uint64_t seq, const http::request<http::string_body>& req,
            const MockFault& fault, ReplyState& st)
      : impl_(impl), seq_(seq), req_(req), fault_(fault), st_(st) {}

  // Writes the reply; returns whether the connection may be reused.
  template <class Stream>
  awaitable<bool> Run(Stream& stream, Route route) {
    if (fault_.delay_ms && !co_await Sleep(*fault_.delay_ms)) co_return false;
    if (fault_.hang) {
      co_await Sleep(24 * 3600 * 1000);
      co_return false;
    }
    // GCC 12 destroys non-trivial temporaries inside a co_await expression twice, so the
    // reply is built into locals first and only lvalues cross the co_await.
    http::status status = http::status::ok;
    std::string body;
    ApiCall call;
    if (!Plan(route, &status, &body, &call)) {
      if (route == Route::kMessages || route == Route::kResponses) {
        co_return co_await WriteEvents(stream);
      }
      co_return co_await WriteStream(stream, route, call);
    }
    co_return co_await WritePlain(stream, status, body);
  }

 private:
  // Decides the reply. Returns false for a stream (then `call` and `pieces_` are set),
  // true for a plain reply in `status` and `body`.
  bool Plan(Route route, http::status* status, std::string* body, ApiCall* call) {
    if (route == Route::kStats) {
      *body = impl_.StatsJson();
      return true;
    }
    if (fault_.status && *fault_.status != 200) {
      *status = static_cast<http::status>(*fault_.status);
      *body = fault_.body          ? *fault_.body
              : IsAnthropic(route) ? AnthropicStatusErrorJson(*fault_.status)
                                   : StatusErrorJson(*fault_.status);
      return true;
    }
    if (fault_.body) {
      *body = *fault_.body;
      return true;
    }
    const bool post = req_.method() == http::verb::post;
    const bool get = req_.method() == http::verb::get;
    if (route == Route::kUnknown) {
      *status = http::status::not_found;
      *body = ErrorJson("unknown route", "invalid_request_error", "not_found");
      return true;
    }
    if (route == Route::kModels ? !get : !post) {
      *status = http::status::method_not_allowed;
      *body = ErrorJson("method not allowed", "invalid_request_error", "method_not_allowed");
      return true;
    }
    if (route == Route::kModels) {
      *body = Models();
      return true;
    }
    if (IsAnthropic(route) && AnthropicHeaderError(status, body)) return true;
    std::string error;
    *call = ParseCall(route, &error);
    if (!error.empty()) {
      *status = http::status::bad_request;
      *body = IsAnthropic(route) ? AnthropicErrorJson("invalid_request_error", error)
                                 : ErrorJson(error, "invalid_request_error", "invalid_request");
      return true;
    }
    if (route == Route::kCountTokens) {
      *body = nlohmann::json{{"input_tokens", call->prompt_tokens}}.dump();
      return true;
    }
    if (route == Route::kEmbeddings) {
      *body = Embedding(*call);
      return true;
    }
    if (fault_.context_length_exceeded) {
      *status = http::status::bad_request;
      *body = route == Route::kMessages ? kAnthropicPromptTooLongBody : kContextLengthExceededBody;
      return true;
    }
    if (route == Route::kChat && fault_.reject_prefill && call->last_is_assistant) {
      *status = http::status::bad_request;
      *body = kPrefillRejectedBody;
      return true;
    }
    const int chunks = std::max(0, fault_.chunks.value_or(impl_.opts.chunks));
    if (fault_.no_tools) call->turn.tool_name.reset();
    if (call->turn.tool_result) {
      pieces_ = ToolResultPieces(*call->turn.tool_result);
    } else if (call->turn.tool_name) {
      pieces_ = ToolArgumentPieces(chunks);
    } else {
      pieces_ = AnswerPieces(chunks, route == Route::kChat ? call->prefill : std::nullopt);
    }
    if (route == Route::kMessages || route == Route::kResponses) {
      MockAnswer a;
      a.model = call->model;
      a.id = impl_.opts.name + "_" + std::to_string(seq_);
      a.input_tokens = call->prompt_tokens;
      a.pieces = pieces_;
      a.tool_name = call->turn.tool_name;
      a.thinking = call->turn.thinking;
      a.created = impl_.created;
      if (!call->stream) {
        *body = route == Route::kMessages ? AnthropicMessageJson(a) : ResponsesJson(a);
        return true;
      }
      events_ = route == Route::kMessages ? AnthropicEvents(a) : ResponsesEvents(a);
      return false;
    }
    if (!call->stream) {
      *body = Completion(route, *call);
      return true;
    }
    return false;
  }

  // What the Anthropic API answers a request without its version header or key (checked
  // before the body, as there). Both x-api-key and Authorization count as a key.
  bool AnthropicHeaderError(http::status* status, std::string* body) const {
    if (req_.find("anthropic-version") == req_.end()) {
      *status = http::status::bad_request;
      *body = AnthropicErrorJson("invalid_request_error", "anthropic-version: header is required");
      return true;
    }
    if (req_.find("x-api-key") == req_.end() &&
        req_.find(http::field::authorization) == req_.end()) {
      *status = http::status::unauthorized;
      *body = AnthropicErrorJson("authentication_error", "x-api-key header is required");
      return true;
    }
    return false;
  }

  // False when the client left during the wait.
  awaitable<bool> Sleep(int ms) {
    if (st_.client_closed) co_return false;
    if (ms > 0) {
      st_.sleep.expires_after(std::chrono::milliseconds(ms));
      co_await st_.sleep.async_wait(kAsTuple);
    }
    co_return !st_.client_closed;
  }

  template <class Body>
  void Decorate(http::response<Body>& res) {
    res.set(http::field::server, "llmproxy-mockllm");
    res.set("x-mock-name", impl_.opts.name);
    res.set("x-request-id", "mock-" + impl_.opts.name + "-" + std::to_string(seq_));
    res.set("x-ratelimit-remaining-requests", "99");
    if (fault_.retry_after_s)
      res.set(http::field::retry_after, std::to_string(*fault_.retry_after_s));
    res.keep_alive(req_.keep_alive());
  }

  template <class Stream>
  awaitable<bool> WritePlain(Stream& stream, http::status status, std::string& body) {
    http::response<http::string_body> res{status, 11};
    Decorate(res);
    res.set(http::field::content_type, "application/json");
    res.body() = std::move(body);
    res.prepare_payload();
    if (fault_.die_after_chunks) {
      // Promise the whole body, send half, hang up: a reply broken mid-body.
      http::response_serializer<http::string_body> sr{res};
      auto [ec, n] = co_await http::async_write_header(stream, sr, kAsTuple);
      if (ec) co_return Broken();
      auto half = asio::buffer(res.body().data(), res.body().size() / 2);
      std::tie(ec, n) = co_await asio::async_write(stream, half, kAsTuple);
      if (ec) co_return Broken();
      st_.done = true;
      Lowest(stream).socket().shutdown(tcp::socket::shutdown_both, ec);
      co_return false;
    }
    auto [ec, n] = co_await http::async_write(stream, res, kAsTuple);
    if (ec) co_return Broken();
    st_.done = true;
    co_return res.keep_alive();
  }

  template <class Stream>
  awaitable<bool> WriteStream(Stream& stream, Route route, const ApiCall& call) {
    http::response<http::empty_body> res{http::status::ok, 11};
    Decorate(res);
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    auto [ec, n] = co_await http::async_write_header(stream, sr, kAsTuple);
    if (ec) co_return Broken();
    st_.stream = true;

    const int gap = fault_.chunk_gap_ms.value_or(impl_.opts.chunk_gap_ms);
    const int chunks = static_cast<int>(pieces_.size());
    const std::string head = R"({"id":")" + ResponseId(route) + R"(","object":")" +
                             (route == Route::kChat ? "chat.completion.chunk" : "text_completion") +
                             R"(","created":)" + std::to_string(impl_.created) + R"(,"model":)" +
                             nlohmann::json(call.model).dump();
    std::string event;
    int first_wait = fault_.first_chunk_delay_ms.value_or(0);
    bool role_sent = false;
    if (route == Route::kChat && fault_.first_token_delay_ms) {
      // What a slow provider sends at once: the role, no token yet.
      if (!co_await Sleep(first_wait)) co_return false;
      event = "data: " + head +
              R"(,"choices":[{"index":0,"delta":{"role":"assistant","content":""},)"
              R"("finish_reason":null}]})"
              "\n\n";
      std::tie(ec, n) = co_await WriteChunk(stream, event);
      if (ec) co_return Broken();
      role_sent = true;
      first_wait = 0;
    }
    first_wait += fault_.first_token_delay_ms.value_or(0);
    for (int i = 0; i < chunks; ++i) {
      if (fault_.die_after_chunks && i >= *fault_.die_after_chunks) {
        if (fault_.partial_event_bytes) {
          // In HTTP chunks of 16 KiB, as a provider streaming a large event would.
          const std::string partial =
              "data: " + std::string(static_cast<size_t>(*fault_.partial_event_bytes), 'x');
          for (size_t at = 0; at < partial.size(); at += 16384) {
            std::tie(ec, n) = co_await WriteChunk(stream, partial.substr(at, 16384));
            if (ec) co_return Broken();
          }
        }
        co_return Die(stream);
      }
      if (fault_.stall_after_chunks && i >= *fault_.stall_after_chunks) co_return co_await Stall();
      const int wait = i == 0 ? first_wait : gap;
      if (!co_await Sleep(wait)) co_return false;
      const bool last = i + 1 == chunks;
      const std::string& token = pieces_[static_cast<size_t>(i)];
      event = "data: " + head;
      if (route == Route::kChat && (fault_.tool_call || call.turn.tool_name)) {
        // The answer as the arguments of one function call, streamed as OpenAI does.
        event += R"(,"choices":[{"index":0,"delta":{)";
        if (i == 0 && !role_sent) event += R"("role":"assistant","content":null,)";
        event += R"("tool_calls":[{"index":0,)";
        if (i == 0 && call.turn.tool_name) {
          event += R"("id":")" + ToolCallId() + R"(","type":"function","function":{"name":)" +
                   JsonString(*call.turn.tool_name) + ",";
        } else if (i == 0) {
          event += R"("id":"call_0","type":"function","function":{"name":"f",)";
        } else {
          event += R"("function":{)";
        }
        event += R"("arguments":)" + JsonString(token) + R"(}}]},"finish_reason":)";
      } else if (route == Route::kChat) {
        event += R"(,"choices":[{"index":0,"delta":{)";
        if (i == 0 && !role_sent) event += R"("role":"assistant",)";
        event += R"("content":)" + JsonString(token) + R"(},"finish_reason":)";
      } else {
        event += R"(,"choices":[{"index":0,"text":)" + JsonString(token) + R"(,"finish_reason":)";
      }
      if (!last)
        event += R"(null}]})";
      else if (call.turn.tool_name)
        event += R"("tool_calls"}]})";
      else
        event += R"("stop"}]})";
      event += "\n\n";
      std::tie(ec, n) = co_await WriteChunk(stream, event);
      if (ec) co_return Broken();
      st_.chunks_sent = i + 1;
    }
    if (fault_.die_after_chunks && *fault_.die_after_chunks <= chunks) co_return Die(stream);
    if (fault_.stall_after_chunks && *fault_.stall_after_chunks <= chunks) {
      co_return co_await Stall();
    }
    if (call.include_usage) {
      event = "data: " + head + R"(,"choices":[],"usage":)" + Usage(call, chunks) + "}\n\n";
      std::tie(ec, n) = co_await WriteChunk(stream, event);
      if (ec) co_return Broken();
    }
    // The last data event and the terminating zero-size chunk go out in one write.
    event = "data: [DONE]\n\n";
    if (fault_.after_done) {
      // [DONE] as a chunk of its own, then no terminating chunk.
      std::tie(ec, n) = co_await WriteChunk(stream, event);
      if (ec) co_return Broken();
      if (*fault_.after_done == "close") co_return Die(stream);
      st_.done = true;  // the proxy closing this stalled reply is not a cancellation
      co_await Sleep(24 * 3600 * 1000);
      co_return false;
    }
    std::tie(ec, n) = co_await WriteChunk(stream, event, /*last=*/true);
    if (ec) co_return Broken();
    st_.done = true;
    co_return res.keep_alive();
  }

  // A Messages or Responses stream: events_ in order, with the chat stream's faults. The
  // content events (token deltas) are the chunks the faults count: first-token-delay waits
  // before the first of them (what comes before it goes out at once), chunk-gap before
  // each later one, and die/stall-after-chunks N break the stream right before content
  // event N+1, or right after the last one when there are no more than N.
  template <class Stream>
  awaitable<bool> WriteEvents(Stream& stream) {
    http::response<http::empty_body> res{http::status::ok, 11};
    Decorate(res);
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    auto [ec, n] = co_await http::async_write_header(stream, sr, kAsTuple);
    if (ec) co_return Broken();
    st_.stream = true;

    const int gap = fault_.chunk_gap_ms.value_or(impl_.opts.chunk_gap_ms);
    std::vector<size_t> content_at;  // indexes of the content events
    for (size_t k = 0; k < events_.size(); ++k) {
      if (events_[k].content) content_at.push_back(k);
    }
    auto break_at = [&](const std::optional<int>& after) -> size_t {
      if (!after) return events_.size();
      const size_t c = static_cast<size_t>(std::max(0, *after));
      if (c < content_at.size()) return content_at[c];
      return content_at.empty() ? events_.size() - 1 : content_at.back() + 1;
    };
    const size_t die_at = break_at(fault_.die_after_chunks);
    const size_t stall_at = break_at(fault_.stall_after_chunks);
    if (!co_await Sleep(fault_.first_chunk_delay_ms.value_or(0))) co_return false;
    int sent = 0;
    for (size_t k = 0; k < events_.size(); ++k) {
      if (k == die_at) {
        if (fault_.partial_event_bytes) {
          const std::string partial =
              "event: " + std::string(static_cast<size_t>(*fault_.partial_event_bytes), 'x');
          for (size_t at = 0; at < partial.size(); at += 16384) {
            std::tie(ec, n) = co_await WriteChunk(stream, partial.substr(at, 16384));
            if (ec) co_return Broken();
          }
        }
        co_return Die(stream);
      }
      if (k == stall_at) co_return co_await Stall();
      const MockEvent& e = events_[k];
      if (e.content) {
        const int wait = sent == 0 ? fault_.first_token_delay_ms.value_or(0) : gap;
        if (!co_await Sleep(wait)) co_return false;
      }
      const bool last = k + 1 == events_.size();
      std::tie(ec, n) = co_await WriteChunk(stream, e.bytes, last && !fault_.after_done);
      if (ec) co_return Broken();
      if (e.content) st_.chunks_sent = ++sent;
    }
    if (fault_.after_done) {
      // The final event went out as a chunk of its own; no terminating chunk.
      if (*fault_.after_done == "close") co_return Die(stream);
      st_.done = true;
      co_await Sleep(24 * 3600 * 1000);
      co_return false;
    }
    st_.done = true;
    co_return res.keep_alive();
  }

  // One HTTP chunk (optionally followed by the terminating chunk) as a single write. Not a
  // coroutine itself: it hands back async_write's awaitable, so no frame per chunk.
  template <class Stream>
  auto WriteChunk(Stream& stream, const std::string& data, bool last = false) {
    frame_.clear();
    char size[20];
    auto [p, ec] = std::to_chars(size, size + sizeof(size), data.size(), 16);
    (void)ec;
    frame_.append(size, p);
    frame_ += "\r\n";
    frame_ += data;
    frame_ += last ? "\r\n0\r\n\r\n" : "\r\n";
    return asio::async_write(stream, asio::buffer(frame_), kAsTuple);
  }

  // Silent with the connection open until the client leaves; the watcher records that
  // as a cancellation (the reply is not done) and wakes the sleep.
  awaitable<bool> Stall() {
    co_await Sleep(24 * 3600 * 1000);
    co_return false;
  }

  // The tool call of a chat answer to a request with tools.
  std::string ToolCallId() const { return "call_" + impl_.opts.name + "_" + std::to_string(seq_); }

  // One id per response, unique across mocks (names differ) and requests.
  std::string ResponseId(Route route) const {
    return (route == Route::kChat ? "chatcmpl-" : "cmpl-") + impl_.opts.name + "-" +
           std::to_string(seq_);
  }

  // A write failed: the client is gone (the watcher usually noticed first).
  bool Broken() {
    if (!st_.client_closed && !st_.done) {
      st_.client_closed = true;
      impl_.RecordCancellation(seq_, st_.stream, st_.chunks_sent, std::chrono::steady_clock::now());
    }
    return false;
  }

  template <class Stream>
  bool Die(Stream& stream) {
    st_.done = true;  // our own hang-up is not a client cancellation
    beast::error_code ec;
    Lowest(stream).socket().shutdown(tcp::socket::shutdown_both, ec);
    return false;
  }

  ApiCall ParseCall(Route route, std::string* error) const {
    ApiCall call;
    call.prompt_tokens = std::max<int>(1, static_cast<int>(req_.body().size() / 4));
    auto j = nlohmann::json::parse(req_.body(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      *error = "request body is not valid JSON";
      return call;
    }
    if (!j.is_object()) {
      *error = "request body must be a JSON object";
      return call;
    }
    auto m = j.find("model");
    if (m == j.end() || m->is_null()) {
      call.model = "mock-default";
    } else if (m->is_string()) {
      call.model = m->get<std::string>();
    } else {
      *error = "model must be a string";
      return call;
    }
    auto s = j.find("stream");
    call.stream = s != j.end() && s->is_boolean() && s->get<bool>();
    auto msgs = j.find("messages");
    if (msgs != j.end() && msgs->is_array() && !msgs->empty() && msgs->back().is_object()) {
      const auto& last = msgs->back();
      auto role = last.find("role");
      call.last_is_assistant = role != last.end() && *role == "assistant";
      auto content = last.find("content");
      if (call.last_is_assistant && content != last.end() && content->is_string()) {
        call.prefill = content->get<std::string>();
      }
    }
    auto so = j.find("stream_options");
    if (so != j.end() && so->is_object()) {
      auto iu = so->find("include_usage");
      call.include_usage = iu != so->end() && iu->is_boolean() && iu->get<bool>();
    }
    if (route == Route::kMessages) {
      auto mt = j.find("max_tokens");
      if (mt == j.end()) {
        *error = "max_tokens: Field required";
        return call;
      }
      if (!mt->is_number_integer()) {
        *error = "max_tokens: Input should be a valid integer";
        return call;
      }
      call.turn = ReadMessagesTurn(j);
    } else if (route == Route::kResponses) {
      call.turn = ReadResponsesTurn(j);
    } else if (route == Route::kChat) {
      call.turn = ReadChatTurn(j);
    }
    return call;
  }

  std::string Usage(const ApiCall& call, int completion) const {
    return R"({"prompt_tokens":)" + std::to_string(call.prompt_tokens) +
           R"(,"completion_tokens":)" + std::to_string(completion) + R"(,"total_tokens":)" +
           std::to_string(call.prompt_tokens + completion) + "}";
  }

  std::string Completion(Route route, const ApiCall& call) const {
    std::string text;
    for (const auto& p : pieces_) text += p;
    const int chunks = static_cast<int>(pieces_.size());
    nlohmann::json j;
    if (route == Route::kChat && call.turn.tool_name) {
      nlohmann::json tool_call = {
          {"id", ToolCallId()},
          {"type", "function"},
          {"function", {{"name", *call.turn.tool_name}, {"arguments", text}}}};
      j = {{"id", ResponseId(route)},
           {"object", "chat.completion"},
           {"created", impl_.created},
           {"model", call.model},
           {"choices",
            {{{"index", 0},
              {"message",
               {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", {tool_call}}}},
              {"finish_reason", "tool_calls"}}}}};
    } else if (route == Route::kChat) {
      j = {{"id", ResponseId(route)},
           {"object", "chat.completion"},
           {"created", impl_.created},
           {"model", call.model},
           {"choices",
            {{{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}}},
              {"finish_reason", "stop"}}}}};
    } else {
      j = {{"id", ResponseId(route)},
           {"object", "text_completion"},
           {"created", impl_.created},
           {"model", call.model},
           {"choices",
            {{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", "stop"}}}}};
    }
    j["usage"] = nlohmann::json::parse(Usage(call, chunks));
    return j.dump();
  }

  std::string Embedding(const ApiCall& call) const {
    nlohmann::json j = {
        {"object", "list"},
        {"data", {{{"object", "embedding"}, {"index", 0}, {"embedding", {0.1, 0.2, 0.3, 0.4}}}}},
        {"model", call.model},
        {"usage", {{"prompt_tokens", call.prompt_tokens}, {"total_tokens", call.prompt_tokens}}}};
    return j.dump();
  }

  std::string Models() const {
    nlohmann::json data = nlohmann::json::array();
    for (const auto& m : impl_.opts.models) {
      data.push_back({{"id", m},
                      {"object", "model"},
                      {"created", impl_.created},
                      {"owned_by", impl_.opts.name}});
    }
    return nlohmann::json{{"object", "list"}, {"data", data}}.dump();
  }

  MockLlm::Impl& impl_;
  uint64_t seq_;
  const http::request<http::string_body>& req_;
  MockFault fault_;
  ReplyState& st_;
  std::string frame_;
  std::vector<std::string> pieces_;  // the answer's content, one per stream chunk
  std::vector<MockEvent> events_;    // Messages and Responses streams, in order
};

// Reads from the client while its reply is being written. HTTP clients send nothing
// then, so a read completing with an error means the client hung up: record when, and
// wake the responder out of any sleep. Bytes that do arrive (a pipelined request) stay
// in `buf` for the next parse.
template <class Stream>
awaitable<void> Watch(Stream& stream, beast::flat_buffer& buf, std::shared_ptr<ReplyState> st,
                      MockLlm::Impl& impl, uint64_t seq) {
  while (!st->done && buf.size() < kPipelineLimit) {
    auto [ec, n] = co_await stream.async_read_some(buf.prepare(4096), kAsTuple);
    if (ec) {
      if (ec != asio::error::operation_aborted && !st->done && !st->client_closed) {
        st->client_closed = true;
        impl.RecordCancellation(seq, st->stream, st->chunks_sent, std::chrono::steady_clock::now());
        st->sleep.cancel();
      }
      co_return;
    }
    buf.commit(n);
  }
}

}  // namespace

template <class Stream>
awaitable<void> MockLlm::Impl::Session(Stream stream) {
  connections.fetch_add(1);
  beast::error_code ec;
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    Lowest(stream).expires_after(std::chrono::seconds(10));
    std::tie(ec) = co_await stream.async_handshake(ssl::stream_base::server, kAsTuple);
    if (ec) co_return;
  }
  beast::flat_buffer buf;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(opts.max_body_bytes);
    Lowest(stream).expires_after(opts.idle_timeout);
    auto [rec, n] = co_await http::async_read(stream, buf, parser, kAsTuple);
    if (rec) break;
    Lowest(stream).expires_never();
    http::request<http::string_body> req = parser.release();
    const std::string_view target = req.target();
    const Route route = RouteOf(target.substr(0, target.find('?')));

    uint64_t n_req = 0;
    MockFault fault;
    if (route != Route::kStats) {
      n_req = seq.fetch_add(1) + 1;
      fault = Admit(n_req, req);
      if (opts.log_requests) {
        std::string line = "mockllm " + opts.name + " #" + std::to_string(n_req) + " " +
                           std::string(req.method_string()) + " " + std::string(target) + " " +
                           std::to_string(req.body().size()) + "B\n";
        (void)!write(2, line.data(), line.size());
      }
    }
    if (fault.close) break;
    if (fault.garbage) {
      static constexpr std::string_view kGarbage = "\x01\x02this is not HTTP\xff\xfe\r\n\r\n";
      auto garbage = asio::buffer(kGarbage);
      co_await asio::async_write(stream, garbage, kAsTuple);
      break;
    }

    if (route != Route::kStats) in_flight.fetch_add(1);
    auto st = std::make_shared<ReplyState>(stream.get_executor());
    asio::co_spawn(stream.get_executor(), Watch(stream, buf, st, *this, n_req),
                   [st](std::exception_ptr) {
                     st->watch_finished = true;
                     st->watch_done.cancel();
                   });
    Responder responder(*this, n_req, req, fault, *st);
    const bool keep = co_await responder.Run(stream, route);
    st->done = true;
    // Stop the watcher's read (the only operation left on the socket) and wait for it
    // to return before the buffer is parsed again.
    if (!st->watch_finished) {
      Lowest(stream).socket().cancel(ec);
      co_await st->watch_done.async_wait(kAsTuple);
    }
    if (route != Route::kStats) in_flight.fetch_sub(1);
    if (!keep || st->client_closed) break;
  }
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    // close_notify, so TLS clients see a clean end rather than a truncation.
    if (Lowest(stream).socket().is_open()) {
      Lowest(stream).expires_after(std::chrono::seconds(1));
      std::tie(ec) = co_await stream.async_shutdown(kAsTuple);
    }
  }
  Lowest(stream).socket().shutdown(tcp::socket::shutdown_both, ec);
}

awaitable<void> MockLlm::Impl::AcceptLoop() {
  for (;;) {
    auto strand = asio::make_strand(*ioc);
    auto [ec, sock] = co_await acceptor->async_accept(strand, kAsTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      continue;  // e.g. EMFILE under a benchmark: keep serving the connections we have
    }
    sock.set_option(tcp::no_delay(true), ec);
    auto ex = sock.get_executor();
    if (tls) {
      asio::co_spawn(
          ex,
          Session(beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(sock)), *tls)),
          asio::detached);
    } else {
      asio::co_spawn(ex, Session(beast::tcp_stream(std::move(sock))), asio::detached);
    }
  }
}

MockLlm::MockLlm(MockLlmOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {
  Impl& im = *impl_;
  const int threads = std::max(1, options_.threads);
  im.ioc = std::make_unique<asio::io_context>(threads);
  if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty()) {
    im.tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    beast::error_code ec;
    im.tls->use_certificate_chain_file(options_.tls_cert_file, ec);
    if (!ec) im.tls->use_private_key_file(options_.tls_key_file, ssl::context::pem, ec);
    if (ec) throw std::runtime_error("mockllm: cannot load TLS certificate/key: " + ec.message());
  }
  beast::error_code ec;
  auto addr = asio::ip::make_address(options_.host, ec);
  if (ec) throw std::runtime_error("mockllm: bad host " + options_.host);
  tcp::endpoint ep(addr, options_.port);
  im.acceptor = std::make_unique<tcp::acceptor>(*im.ioc);
  im.acceptor->open(ep.protocol(), ec);
  if (!ec) im.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor->bind(ep, ec);
  if (!ec) im.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("mockllm: cannot listen on " + options_.host + ":" +
                             std::to_string(options_.port) + ": " + ec.message());
  }
  port_ = im.acceptor->local_endpoint().port();
  im.started = std::chrono::steady_clock::now();
  asio::co_spawn(asio::make_strand(*im.ioc), im.AcceptLoop(), asio::detached);
  for (int i = 0; i < threads; ++i) im.threads.emplace_back([&im] { im.ioc->run(); });
}

MockLlm::~MockLlm() { Stop(); }

void MockLlm::Stop() {
  Impl& im = *impl_;
  std::call_once(im.stop_once, [&im] {
    im.ioc->stop();
    for (auto& t : im.threads) t.join();
    im.threads.clear();
    // With no thread running, closing here is safe; destroying the io_context then
    // destroys every suspended session coroutine and closes its socket.
    beast::error_code ec;
    im.acceptor->close(ec);
    im.acceptor.reset();
    im.ioc.reset();
    im.in_flight = 0;
  });
}

bool MockLlm::tls() const { return impl_->tls != nullptr; }

std::string MockLlm::BaseUrl() const {
  std::string host = options_.host == "0.0.0.0" ? "127.0.0.1" : options_.host;
  return std::string(tls() ? "https" : "http") + "://" + host + ":" + std::to_string(port_) + "/v1";
}

std::chrono::steady_clock::time_point MockLlm::started_at() const { return impl_->started; }

void MockLlm::SetDefaultFault(MockFault fault) {
  std::lock_guard lock(impl_->mu);
  impl_->default_fault = std::move(fault);
}

void MockLlm::PushFault(MockFault fault, int count) {
  if (count <= 0) return;
  std::lock_guard lock(impl_->mu);
  impl_->queued.emplace_back(std::move(fault), count);
}

void MockLlm::ClearFaults() {
  std::lock_guard lock(impl_->mu);
  impl_->default_fault = MockFault{};
  impl_->queued.clear();
}

std::vector<ReceivedRequest> MockLlm::Requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->records;
}

size_t MockLlm::RequestCount() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests_since_clear;
}

void MockLlm::ClearRequests() {
  std::lock_guard lock(impl_->mu);
  impl_->records.clear();
  impl_->cancellations.clear();
  impl_->requests_since_clear = 0;
}

std::vector<MockCancellation> MockLlm::Cancellations() const {
  std::lock_guard lock(impl_->mu);
  return impl_->cancellations;
}

size_t MockLlm::CancelledCount() const {
  std::lock_guard lock(impl_->mu);
  return impl_->cancellations.size();
}

MockStats MockLlm::Stats() const {
  return MockStats{impl_->seq.load(), impl_->cancelled.load(), impl_->in_flight.load(),
                   impl_->connections.load()};
}

bool MockLlm::WaitForRequests(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->requests_since_clear >= n; });
}

bool MockLlm::WaitForCancellations(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->cancellations.size() >= n; });
}

}  // namespace llmproxy
