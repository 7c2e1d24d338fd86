// llmproxy-streamload: the benchmark's streaming load generator. Opens N concurrent
// SSE chat-completion streams against one HTTP/1.1 endpoint (the proxy, nginx, or the
// mock directly), checks that every stream arrives whole (all content chunks, in order,
// then [DONE], no error event), and reports time to first token and inter-chunk gaps.
// Asks the upstream for its stream shape with llmproxy-mockllm's x-mock-chunks and
// x-mock-chunk-gap-ms headers, which proxies forward. Prints one JSON object on stdout
// (for bench/bench.py; "stalls" counts the gaps over ten times the pacing) and a readable
// summary on stderr; exits 1 if any stream was damaged, 2 on bad usage.
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTok = asio::as_tuple(asio::use_awaitable);

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string path;       // default by protocol: /v1/chat/completions or /v1/messages
  bool messages = false;  // --protocol messages
  std::string model = "bench-stream";
  int streams = 10;
  int chunks = 50;
  int gap_ms = 20;
  int timeout_s = 120;
  std::vector<std::string> headers;
};

struct StreamResult {
  std::string error;  // empty: whole and in order
  double ttft_ms = -1;
  std::vector<double> gaps_ms;
};

// Splits the SSE body into events as bytes arrive and checks each against the expected
// shape: content chunks "tok0 ", "tok1 ", ... then an optional usage event, then [DONE]
// (chat completions); or, for --protocol messages (Anthropic Messages), the same texts as
// content_block_delta events, ended by message_stop.
class SseChecker {
 public:
  SseChecker(int chunks, bool messages, Clock::time_point sent)
      : chunks_(chunks), messages_(messages), sent_(sent) {}

  void Feed(std::string_view data, Clock::time_point now, StreamResult& r) {
    pending_.append(data);
    size_t pos;
    while ((pos = pending_.find("\n\n")) != std::string::npos) {
      Event(std::string_view(pending_).substr(0, pos), now, r);
      pending_.erase(0, pos + 2);
    }
  }

  // Verdict once the body ended.
  void Finish(StreamResult& r) const {
    if (!r.error.empty()) return;
    if (seen_ != chunks_) {
      r.error = "chunks " + std::to_string(seen_) + "/" + std::to_string(chunks_);
    } else if (!done_) {
      r.error = messages_ ? "no message_stop" : "no [DONE]";
    }
  }

 private:
  void Event(std::string_view ev, Clock::time_point now, StreamResult& r) {
    if (!r.error.empty()) return;
    while (!ev.empty() && (ev.front() == '\r' || ev.front() == '\n')) ev.remove_prefix(1);
    if (ev.empty() || ev.front() == ':') return;  // keep-alive comment
    // The data line; Messages events carry an `event:` line before it.
    const size_t at = ev.substr(0, 5) == "data:" ? 0 : ev.find("\ndata:");
    if (at == std::string_view::npos) return;
    ev.remove_prefix(at == 0 ? 5 : at + 6);
    if (!ev.empty() && ev.front() == ' ') ev.remove_prefix(1);
    if (const size_t eol = ev.find_first_of("\r\n"); eol != std::string_view::npos) {
      ev = ev.substr(0, eol);
    }
    const bool content = messages_ ? ev.find("\"content_block_delta\"") != std::string_view::npos
                                   : ev.find("\"choices\":[]") == std::string_view::npos;
    if (done_) {
      r.error = messages_ ? "event after message_stop" : "data after [DONE]";
    } else if (messages_ ? ev.find("\"message_stop\"") != std::string_view::npos : ev == "[DONE]") {
      done_ = true;
    } else if (ev.find("\"error\"") != std::string_view::npos) {
      r.error = "error event";
    } else if (!content) {
      // usage-only chunk, or a Messages frame event (message_start, content_block_start, ...)
    } else {
      const std::string want = "\"tok" + std::to_string(seen_) + " \"";
      if (ev.find(want) == std::string_view::npos) {
        r.error = "chunk " + std::to_string(seen_) + " missing or out of order";
        return;
      }
      const double ms =
          std::chrono::duration<double, std::milli>(now - (seen_ ? last_ : sent_)).count();
      if (seen_ == 0) {
        r.ttft_ms = ms;
      } else {
        r.gaps_ms.push_back(ms);
      }
      last_ = now;
      ++seen_;
    }
  }

  int chunks_;
  bool messages_;
  Clock::time_point sent_;
  Clock::time_point last_;
  int seen_ = 0;
  bool done_ = false;
  std::string pending_;
};

struct Run {
  Options opt;
  tcp::endpoint ep;
  std::string request;
  std::vector<StreamResult> results;
  std::vector<tcp::socket*> open;  // closed by the deadline
  int finished = 0;
};

asio::awaitable<void> OneStream(Run& run, size_t idx) {
  StreamResult& r = run.results[idx];
  auto ex = co_await asio::this_coro::executor;
  tcp::socket sock(ex);
  run.open[idx] = &sock;
  auto [ec] = co_await sock.async_connect(run.ep, kTok);
  if (ec) {
    r.error = "connect: " + ec.message();
  } else {
    sock.set_option(tcp::no_delay(true), ec);
    const auto sent = Clock::now();
    auto req = asio::buffer(run.request);
    auto [wec, wn] = co_await asio::async_write(sock, req, kTok);
    beast::flat_buffer fb;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    if (wec) {
      r.error = "write: " + wec.message();
    } else {
      auto [hec, hn] = co_await http::async_read_header(sock, fb, parser, kTok);
      if (hec) {
        r.error = "read header: " + hec.message();
      } else if (parser.get().result_int() != 200) {
        r.error = "status " + std::to_string(parser.get().result_int());
      }
    }
    if (r.error.empty()) {
      SseChecker checker(run.opt.chunks, run.opt.messages, sent);
      char buf[16384];
      while (!parser.is_done()) {
        parser.get().body().data = buf;
        parser.get().body().size = sizeof(buf);
        auto [rec, rn] = co_await http::async_read_some(sock, fb, parser, kTok);
        if (rec == http::error::need_buffer) rec = {};
        const size_t got = sizeof(buf) - parser.get().body().size;
        if (got > 0) checker.Feed(std::string_view(buf, got), Clock::now(), r);
        if (rec) {
          if (r.error.empty()) r.error = "body: " + rec.message();
          break;
        }
      }
      checker.Finish(r);
    }
  }
  beast::error_code ignored;
  sock.shutdown(tcp::socket::shutdown_both, ignored);
  sock.close(ignored);
  run.open[idx] = nullptr;
  ++run.finished;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

nlohmann::json Summary(std::vector<double>& v) {
  auto round3 = [](double x) { return static_cast<double>(static_cast<int64_t>(x * 1000)) / 1000; };
  return {{"p50", round3(Percentile(v, 50))},
          {"p90", round3(Percentile(v, 90))},
          {"p99", round3(Percentile(v, 99))},
          {"max", round3(v.empty() ? 0 : *std::max_element(v.begin(), v.end()))},
          {"n", v.size()}};
}

constexpr std::string_view kUsage = R"(usage: llmproxy-streamload --port P [options]
  --host H          target address (default 127.0.0.1)
  --port P          target port (required)
  --protocol P      chat (default) or messages: the request and stream shape (chat
                    completions, or Anthropic Messages with content_block_delta events)
  --path PATH       request path (default /v1/chat/completions, /v1/messages)
  --model M         model in the request body (default bench-stream)
  --streams N       concurrent streams (default 10)
  --chunks C        content chunks per stream, sent as x-mock-chunks (default 50)
  --gap-ms G        gap between chunks, sent as x-mock-chunk-gap-ms (default 20)
  --header 'K: V'   extra request header (repeatable)
  --timeout-s S     give up on unfinished streams after S seconds (default 120)
Prints a JSON summary on stdout; exit 1 when any stream was damaged.
)";

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "llmproxy-streamload: missing value for " << a << "\n" << kUsage;
      return 2;
    }
    std::string v = argv[++i];
    if (a == "--host")
      opt.host = v;
    else if (a == "--port")
      opt.port = static_cast<uint16_t>(std::atoi(v.c_str()));
    else if (a == "--path")
      opt.path = v;
    else if (a == "--protocol") {
      if (v != "chat" && v != "messages") {
        std::cerr << "llmproxy-streamload: --protocol is chat or messages, not " << v << "\n";
        return 2;
      }
      opt.messages = v == "messages";
    } else if (a == "--model")
      opt.model = v;
    else if (a == "--streams")
      opt.streams = std::atoi(v.c_str());
    else if (a == "--chunks")
      opt.chunks = std::atoi(v.c_str());
    else if (a == "--gap-ms")
      opt.gap_ms = std::atoi(v.c_str());
    else if (a == "--timeout-s")
      opt.timeout_s = std::atoi(v.c_str());
    else if (a == "--header")
      opt.headers.push_back(v);
    else {
      std::cerr << "llmproxy-streamload: unknown option " << a << "\n" << kUsage;
      return 2;
    }
  }
  if (opt.port == 0 || opt.streams <= 0 || opt.chunks < 0 || opt.gap_ms < 0 || opt.timeout_s <= 0) {
    std::cerr << kUsage;
    return 2;
  }

  // One socket per stream: lift the soft descriptor limit to the hard one.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  asio::io_context ioc(1);
  Run run;
  run.opt = opt;
  beast::error_code ec;
  run.ep = tcp::endpoint(asio::ip::make_address(opt.host, ec), opt.port);
  if (ec) {
    std::cerr << "llmproxy-streamload: bad --host " << opt.host << "\n";
    return 2;
  }
  if (opt.path.empty()) opt.path = opt.messages ? "/v1/messages" : "/v1/chat/completions";
  nlohmann::json request = {{"model", opt.model},
                            {"stream", true},
                            {"messages", {{{"role", "user"}, {"content", "bench"}}}}};
  if (opt.messages) request["max_tokens"] = 1024;
  const std::string body = request.dump();
  run.request = "POST " + opt.path + " HTTP/1.1\r\nHost: " + opt.host +
                "\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n" +
                "x-mock-chunks: " + std::to_string(opt.chunks) +
                "\r\nx-mock-chunk-gap-ms: " + std::to_string(opt.gap_ms) + "\r\n";
  for (const auto& h : opt.headers) run.request += h + "\r\n";
  run.request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  run.results.resize(static_cast<size_t>(opt.streams));
  run.open.assign(static_cast<size_t>(opt.streams), nullptr);

  const auto start = Clock::now();
  for (size_t i = 0; i < run.results.size(); ++i) {
    asio::co_spawn(ioc, OneStream(run, i), asio::detached);
  }
  // Bounded in time whatever the target does: close what is still open at the deadline.
  asio::steady_timer deadline(ioc, std::chrono::seconds(opt.timeout_s));
  bool timed_out = false;
  deadline.async_wait([&](beast::error_code e) {
    if (e) return;
    timed_out = true;
    for (auto* s : run.open) {
      if (s) s->close(e);
    }
  });
  asio::steady_timer poll(ioc);
  std::function<void(beast::error_code)> check = [&](beast::error_code) {
    if (run.finished == opt.streams) {
      deadline.cancel();
      return;
    }
    poll.expires_after(std::chrono::milliseconds(20));
    poll.async_wait(check);
  };
  check({});
  ioc.run();
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> ttft, gaps;
  std::map<std::string, int> errors;
  int ok = 0;
  // A stall: a gap between two chunks of one stream over ten times the pacing.
  const double stall_ms = 10.0 * std::max(opt.gap_ms, 1);
  int64_t stalls = 0;
  for (auto& r : run.results) {
    if (r.error.empty()) {
      ++ok;
    } else {
      ++errors[timed_out && r.error.rfind("body", 0) == 0 ? "timeout" : r.error];
    }
    if (r.ttft_ms >= 0) ttft.push_back(r.ttft_ms);
    gaps.insert(gaps.end(), r.gaps_ms.begin(), r.gaps_ms.end());
    stalls +=
        std::count_if(r.gaps_ms.begin(), r.gaps_ms.end(), [&](double g) { return g > stall_ms; });
  }
  nlohmann::json out = {{"streams", opt.streams},
                        {"chunks", opt.chunks},
                        {"gap_ms", opt.gap_ms},
                        {"ok", ok},
                        {"damaged", opt.streams - ok},
                        {"stalls", stalls},
                        {"errors", errors},
                        {"wall_s", wall_s},
                        {"ttft_ms", Summary(ttft)},
                        {"gap_ms_observed", Summary(gaps)}};
  std::cout << out.dump() << std::endl;
  std::cerr << "streamload: " << ok << "/" << opt.streams << " streams whole in " << wall_s
            << " s; ttft p50 " << out["ttft_ms"]["p50"] << " ms p99 " << out["ttft_ms"]["p99"]
            << " ms; gap p50 " << out["gap_ms_observed"]["p50"] << " ms p99 "
            << out["gap_ms_observed"]["p99"] << " ms max " << out["gap_ms_observed"]["max"]
            << " ms; " << stalls << " gaps over " << stall_ms << " ms\n";
  for (const auto& [e, n] : errors) std::cerr << "  damaged: " << n << " x " << e << "\n";
  return ok == opt.streams ? 0 : 1;
}
