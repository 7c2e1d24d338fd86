// The proxied request's path through the worker (docs/architecture.md "The request path").
//
//   HttpServer session (dataplane/server) reads the head
//     -> RequestRouter (dataplane/dispatch) matches the route, checks the client key
//     -> ProxyPipeline::Handle: one ProxyRequest on the session's coroutine frame
//        Run                    phases in order; Done() always runs at the end
//          ReadBody             phase 1: body within server.max_body_bytes and a deadline
//          ParseBody            phase 3: model and stream, read without a DOM
//          ResolvePlan          phase 4: ModelPlan (dataplane/routing/model_resolver.h)
//          AttemptLoop          phase 5: AttemptPlanner.Next() picks; per attempt TryBackend
//            TryBackend         Prime then Finish; or TryHedged (hedge_after): two Primes
//                               side by side, the first token wins, the other is cancelled
//              Prime            BuildUpstreamRequest + UpstreamCall::StartRaw (connect,
//                               send, read head; dataplane/upstream/upstream_call.h), then
//                               a whole non-stream answer, or PrimeStream: hold the head
//                               until the first bytes (first token: first_token_timeout)
//              Finish           report; relay (RelayStream) or retry
//            ReportAttempt      the ONE place an attempt's outcome goes: stale-connection
//                               resends, retry policy (ClassifyAttempt) and health
//                               (AttemptPlanner::Report), observers (metrics, access log),
//                               record_.attempts. A stream reports when it ends.
//            SendFinalError     nothing relayed: the last upstream error, or 502/503/504
//          RelayStream          phase 6: events as they arrive, one read and one write at a
//                               time (RelayLeg); ends at [DONE]; a break is continued on a
//                               prefill: true backend (Continue) or ends with one SSE error
//                               event (EndLeg); docs/routing.md "Slow and broken streams"
//          Done                 phase 7: the RequestRecord to every observer
//
// Ownership: the RoutingTable (config, per-backend BackendTarget, health states) is shared
// and immutable, kept by the request for its whole life (table_); the upstream pool is
// per io thread (ThreadState); everything else lives in ProxyRequest. The client watch
// (dataplane/server/http_server.h) calls OnClientGone, which cancels the current call.
#include "dataplane/proxy/proxy_pipeline.h"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/read.hpp>

#include "common/config/config_loader.h"  // FormatDuration
#include "common/config/price.h"
#include "common/log/logging.h"
#include "dataplane/http/cors.h"
#include "dataplane/http/http_head.h"
#include "dataplane/http/peer_error.h"
#include "dataplane/http/socket_write.h"
#include "dataplane/protocols/bridge.h"
#include "dataplane/protocols/chat_stream.h"
#include "dataplane/protocols/error_response.h"
#include "dataplane/protocols/request_body.h"
#include "dataplane/protocols/sse_parser.h"
#include "dataplane/routing/attempt_planner.h"
#include "dataplane/routing/client_auth.h"
#include "dataplane/routing/model_resolver.h"
#include "dataplane/routing/random.h"
#include "dataplane/routing/retry_policy.h"
#include "dataplane/routing/stream_settings.h"
#include "dataplane/upstream/upstream_call.h"

namespace llmproxy {

namespace {

using SteadyClockT = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

constexpr std::string_view kRequestIdHeader = "x-request-id";
constexpr std::chrono::milliseconds kErrorWriteTimeout{10000};
// After [DONE] the client's response is ended at once; the upstream then gets this long to
// finish its body (normally the last chunk is already buffered) so its connection can go
// back to the pool. An upstream that stalls instead is closed.
constexpr std::chrono::milliseconds kAfterDoneGrace{50};

double SecondsBetween(SteadyClockT::time_point a, SteadyClockT::time_point b) {
  return std::chrono::duration_cast<Seconds>(b - a).count();
}

// Client request headers never sent upstream: hop-by-hop ones (RFC 9110 7.6.1), the
// ones the proxy sets itself, credentials of the client, and Accept-Encoding (the
// proxy reads usage out of bodies and relays streams event by event: identity only).
bool DropRequestHeader(const ArenaFields::value_type& f) {
  switch (f.name()) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::proxy_authorization:
    case http::field::proxy_authenticate:
    case http::field::te:
    case http::field::trailer:
    case http::field::transfer_encoding:
    case http::field::upgrade:
    case http::field::host:
    case http::field::cookie:
    case http::field::authorization:
    case http::field::content_length:
    case http::field::accept_encoding:
    case http::field::expect:
      return true;
    default:
      return false;
  }
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && beast::iequals(s.substr(0, prefix.size()), prefix);
}

// Client credentials beside Authorization (Anthropic's and Azure's spellings): the
// backend gets its own key, never the client's.
bool IsClientCredential(std::string_view name) {
  return beast::iequals(name, "x-api-key") || beast::iequals(name, "api-key");
}

ReasoningStyle StyleOf(ReasoningParam param) {
  switch (param) {
    case ReasoningParam::kReasoningEffort:
      return ReasoningStyle::kReasoningEffort;
    case ReasoningParam::kThinking:
      return ReasoningStyle::kThinkingObject;
    case ReasoningParam::kNone:
      break;
  }
  return ReasoningStyle::kNone;
}

constexpr std::string_view kDefaultAnthropicVersion = "2023-06-01";

// Upstream response headers worth giving the client: content type, request ids,
// rate-limit state and OpenAI's processing metadata.
template <class Field>
bool KeepResponseHeader(const Field& f) {
  switch (f.name()) {
    case http::field::content_type:
    case http::field::retry_after:
      return true;
    default:
      break;
  }
  std::string_view name = f.name_string();
  return beast::iequals(name, "x-request-id") || beast::iequals(name, "request-id") ||
         StartsWithNoCase(name, "openai-") || StartsWithNoCase(name, "x-ratelimit-") ||
         StartsWithNoCase(name, "anthropic-ratelimit-");
}

bool IsEventStream(std::string_view content_type) {
  return StartsWithNoCase(content_type, "text/event-stream");
}

// An upstream call that failed before an answer could be relayed, by what happened
// (dataplane/upstream/upstream_error.h): the outcome label and the retry policy row.
AttemptResult ResultOf(std::error_code ec) {
  using Kind = AttemptResult::Kind;
  if (ec == UpstreamErrc::kCancelled) return AttemptResult::Of(Kind::kCancelled);
  if (ec == UpstreamErrc::kLocalResources) return AttemptResult::Of(Kind::kProxyOverloaded);
  if (IsTimeout(ec)) return AttemptResult::Of(Kind::kTimeout);
  if (ec == UpstreamErrc::kTlsFailed) return AttemptResult::Of(Kind::kTlsError);
  if (ec == UpstreamErrc::kBadResponse || ec == UpstreamErrc::kReadFailed) {
    return AttemptResult::Of(Kind::kProtocolError);
  }
  if (ec == UpstreamErrc::kBodyTooLarge) return AttemptResult::Of(Kind::kBodyTooLarge);
  // DNS, TCP connect, the request could not be sent, an invalid url.
  return AttemptResult::Of(Kind::kConnectError);
}

// Where the bytes relayed to the client so far stop, in SSE terms. The parser forwards
// whole events, except an event over its framing limit, which goes out as it comes; a
// stream that breaks inside one must still end with an error event of its own.
class RelayedTail {
 public:
  void Append(std::string_view out) {
    if (out.empty()) return;
    if (out.size() >= tail_.size()) {
      std::memcpy(tail_.data(), out.data() + out.size() - tail_.size(), tail_.size());
      size_ = tail_.size();
      return;
    }
    const size_t keep = std::min(size_, tail_.size() - out.size());
    std::memmove(tail_.data(), tail_.data() + size_ - keep, keep);
    std::memcpy(tail_.data() + keep, out.data(), out.size());
    size_ = keep + out.size();
  }

  // What to send first so that the next bytes start a new event: "" after a blank line
  // (or before any byte), "\n" after a line end, "\n\n" inside a line. A trailing lone
  // CR would join a following LF into one CRLF, so it needs two.
  std::string_view EventCloser() const {
    std::string_view t(tail_.data(), size_);
    if (t.empty()) return "";
    int line_ends = 0;
    const bool lone_cr_last = t.back() == '\r';
    while (line_ends < 2 && !t.empty()) {
      if (t.size() >= 2 && t.substr(t.size() - 2) == "\r\n") {
        t.remove_suffix(2);
      } else if (t.back() == '\n' || t.back() == '\r') {
        t.remove_suffix(1);
      } else {
        break;
      }
      ++line_ends;
    }
    if (line_ends >= 2) return "";
    if (line_ends == 1 && !lone_cr_last) return "\n";
    return "\n\n";
  }

 private:
  std::array<char, 4> tail_{};  // "\r\n\r\n" is the longest event end
  size_t size_ = 0;
};

std::string NewRequestId(uint64_t counter) {
  char buf[40];
  uint64_t r = ThreadLocalRandom().NextU64();
  std::snprintf(buf, sizeof buf, "llmp-%016" PRIx64 "%04" PRIx64, r, counter & 0xffff);
  return buf;
}

}  // namespace

// Per io thread: its upstream pool (created on first use, on that thread). What is sent
// to each backend is computed once per table (RoutingTable::target, BackendTarget).
struct ProxyPipeline::ThreadState {
  std::unique_ptr<UpstreamPool> pool;
  uint64_t request_counter = 0;
};

ProxyPipeline::ProxyPipeline(TableStore& store, std::vector<RequestObserver*> observers,
                             ProxyPipelineOptions options)
    : store_(store), observers_(std::move(observers)), options_(std::move(options)) {
  if (options_.threads == 0) options_.threads = 1;
  for (unsigned i = 0; i < options_.threads; ++i) {
    threads_.push_back(std::make_unique<ThreadState>());
  }
}

ProxyPipeline::~ProxyPipeline() = default;

void ProxyPipeline::ReleaseThread(size_t thread_index, bool clean) {
  if (thread_index >= threads_.size()) return;
  ThreadState& ts = *threads_[thread_index];
  if (clean) {
    ts.pool.reset();
  } else {
    (void)ts.pool.release();  // deliberately leaked at shutdown: see the header
  }
}

bool ProxyPipeline::TakeHedge(double budget) {
  const double allowed = std::ceil(budget * static_cast<double>(requests_.load()));
  uint64_t hedges = hedges_.load(std::memory_order_relaxed);
  while (static_cast<double>(hedges) + 1 <= allowed) {
    if (hedges_.compare_exchange_weak(hedges, hedges + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

ProxyPipeline::ThreadState& ProxyPipeline::StateFor(ClientConnection& conn) {
  ThreadState& ts = *threads_.at(conn.thread_index);
  if (!ts.pool) ts.pool = std::make_unique<UpstreamPool>(conn.socket.get_executor(), options_.pool);
  return ts;
}

// One proxied request: its state lives on the coroutine frame of Handle.
class ProxyRequest {
 public:
  ProxyRequest(ProxyPipeline& pipeline, ClientConnection& conn, RequestParser& parser,
               ProxyRoute route)
      : p_(pipeline),
        conn_(conn),
        parser_(parser),
        route_(route),
        client_wire_(ClientWire(route)),
        ts_(pipeline.StateFor(conn)),
        start_(SteadyClockT::now()) {}

  asio::awaitable<bool> Run();

 private:
  // A worker that listens before its first table (started by the control plane, which
  // pushes the table a moment later): the request waits for it rather than getting 503.
  asio::awaitable<std::shared_ptr<const RoutingTable>> WaitForFirstTable();
  // Phases.
  asio::awaitable<bool> ReadBody();
  bool ParseBody();
  bool ResolvePlan(ModelPlan& plan);
  bool KeyMayUse(const ClientKey* key, ModelPlan& plan) const;
  // The key's limits (docs/limits.md): reserve from the worker's lease, waiting up to
  // lease_wait for a grant when it is short; false when the 429 went out.
  asio::awaitable<bool> Admit(const ClientKey& key);
  LeaseNeed EstimateNeed(const ClientKey& key) const;
  asio::awaitable<void> SendLimited(const ClientKey& key, const AdmitResult& result);
  // The reservation replaced by what the request used (Done).
  void SettleLease();
  // Streams ask the upstream for usage (and hide that chunk): stream_usage: request, or a
  // limited key whose reservation needs the real count.
  bool RequestStreamUsage() const {
    return (table_->config.stream_usage == StreamUsage::kRequest || lease_.active) &&
           peek_.stream && !peek_.has_stream_options;
  }
  asio::awaitable<void> AttemptLoop(ModelPlan plan);
  // Phase 6 for streams; returns how the attempt ended (its status, broken, cancelled).
  // `sse` is null when the answer is not an event stream; `first_out` goes out with the head.
  // `tracker` (full mode) is set when a break may be continued; `step` and `backend` are
  // the attempt's.
  asio::awaitable<AttemptResult> RelayStream(UpstreamCall& call, SseParser* sse,
                                             std::string_view first_out, bool first_done,
                                             std::chrono::milliseconds idle_timeout,
                                             ChatStreamTracker* tracker, size_t step,
                                             size_t backend);
  struct LegEnd {
    enum State { kEnded, kBroken, kClientGone };
    State state = kEnded;
    std::error_code upstream_ec;
    bool done = false;        // the upstream body ended
    bool done_event = false;  // data: [DONE] was relayed
    bool client_ok = true;    // every client write succeeded
  };
  asio::awaitable<LegEnd> RelayLeg(UpstreamCall& call, SseParser* sse, bool done,
                                   std::chrono::milliseconds idle_timeout, bool chunked,
                                   RelayedTail& tail, bool ok);
  asio::awaitable<AttemptResult> EndLeg(UpstreamCall& call, SseParser* sse, const LegEnd& leg,
                                        bool chunked, RelayedTail& tail, AttemptResult answered);
  enum class ContinueEnd { kDone, kClientGone, kFailed };
  asio::awaitable<ContinueEnd> Continue(ChatStreamTracker& tracker, bool chunked, RelayedTail& tail,
                                        size_t step, size_t broken, std::error_code& last_ec);
  // Whether a stream of this request could be continued after a break: a chat stream
  // and some candidate of its plan with `prefill: true`.
  bool MayContinue() const;
  void Done();

  // One attempt of phase 5 (AttemptRun below).
  struct AttemptRun;
  enum class AttemptEnd { kNext, kDone };  // try the next pick, or the response went out
  asio::awaitable<AttemptEnd> TryBackend(AttemptRun& run);
  asio::awaitable<void> Prime(AttemptRun& run, UpstreamCall** slot);
  asio::awaitable<void> PrimeStream(AttemptRun& run, SteadyClockT::time_point deadline);
  asio::awaitable<AttemptEnd> Finish(AttemptRun& run);
  std::optional<Millis> HedgeDelay(const AttemptRun& run) const;
  asio::awaitable<AttemptEnd> TryHedged(AttemptRun& first, Millis delay);
  asio::awaitable<void> PrimeAndSignal(AttemptRun& run, UpstreamCall** slot,
                                       asio::steady_timer& wake, int& running);
  // The attempt ended without an answer to relay (connect error, timeout, bad or cut
  // answer, or the client left).
  AttemptEnd NoAnswer(AttemptRun& run, std::error_code ec, const std::string& what);
  RetryDecision ReportAttempt(AttemptRun& run, const AttemptResult& result);
  asio::awaitable<void> SendFinalError();
  // The event that ends a broken stream, in the client's protocol.
  std::string StreamErrorEvent(const ProxyError& error) {
    return relay_bridge_ != nullptr ? relay_bridge_->Fail(error) : error.SseEvent();
  }
  // count_tokens for a backend that cannot count (docs/protocols.md): an estimate.
  asio::awaitable<void> SendTokenEstimate();

  // Helpers.
  // Serializes the request head into *run.head_buf; returns the body to send: the
  // client's, or a rewritten copy in run.rewritten_body. `prefilled`: the body to send
  // instead of the client's (a continuation's).
  std::string_view BuildUpstreamRequest(AttemptRun& run,
                                        std::optional<std::string_view> prefilled = {});
  // Response head up to (not including) Content-Length / Transfer-Encoding and the blank
  // line: status line, kept upstream headers, request id, x-llmproxy-*, CORS, Connection.
  template <class Fields>
  std::string& StartResponseHead(unsigned status, const Fields* upstream_head);
  // `extra_head`: whole header lines ("Name: value\r\n") added to the response head.
  asio::awaitable<void> SendError(const ProxyError& error, std::string_view extra_head = {});
  template <class Fields>
  asio::awaitable<void> SendUpstreamResponse(unsigned status, const Fields& upstream_head,
                                             std::string_view body);
  // `prefix` (a response head) goes out first, in the same write.
  asio::awaitable<bool> WriteToClient(std::string_view data, bool chunk,
                                      std::string_view prefix = {});
  asio::awaitable<void> Linger();
  void NotifyAttempt(const std::string& backend, AttemptOutcome outcome);

  // Watching the client while upstream work runs: a disconnect cancels the upstream.
  static void OnClientGone(void* self);

  ProxyPipeline& p_;
  ClientConnection& conn_;
  RequestParser& parser_;
  ProxyRoute route_;
  Wire client_wire_;  // the protocol the client speaks (docs/protocols.md)
  ProxyPipeline::ThreadState& ts_;
  SteadyClockT::time_point start_;

  RequestRecord record_;
  std::shared_ptr<const RoutingTable> table_;
  std::string_view body_;               // the request body, in one of the two below
  std::unique_ptr<char[]> body_bytes_;  // a Content-Length body, read straight in
  std::string parsed_body_;             // a chunked body, decoded by the parser
  BodyPeek peek_;
  LeaseTicket lease_;                     // what Admit reserved of the key's limits
  const ClientKey* lease_key_ = nullptr;  // its key (table_ owns it)
  std::optional<ResponsesEcho> echo_;     // a Responses request's settings, for translated answers
  bool logged_dropped_ = false;           // the translation's dropped fields were logged
  StreamBridge* relay_bridge_ = nullptr;  // the relayed stream's translation, if any
  bool keep_alive_ = false;
  bool responded_ = false;  // response bytes went to the client
  bool client_gone_ = false;
  double upstream_wait_ = 0;  // seconds spent waiting on upstreams
  double client_wait_ = 0;    // seconds spent waiting for the client to take stream bytes

  UpstreamCall* current_call_ = nullptr;
  // A hedge race (TryHedged): the second attempt's call and request head.
  UpstreamCall* hedge_call_ = nullptr;
  std::string hedge_head_;
  bool hedging_ = false;                        // a race was started for this request (at most one)
  asio::steady_timer* repeat_timer_ = nullptr;  // the wait before a repeat, while it runs

  // Phase 5's state across attempts.
  AttemptPlanner* planner_ = nullptr;  // AttemptLoop's, while it runs
  uint32_t resends_ = 0;               // free resends of every attempt so far
  // record_.attempts, the one derivation: planned attempts plus free resends.
  void CountAttempts() { record_.attempts = planner_->attempts() + resends_; }
  struct SavedError {  // the last upstream error answer, relayed if last
    unsigned status = 0;
    http::fields head;
    std::string body;
  };
  std::optional<SavedError> last_error_;
  bool last_failure_timeout_ = false;
  std::string last_failure_message_;
};

// One pick of the planner on its way: where it goes, what Prime found, and what
// ReportAttempt needs. Stays where it was made while its call runs (the parser points at
// the tracker, the head buffer at the call).
struct ProxyRequest::AttemptRun {
  AttemptRun(Attempt a, const RoutingTable& table, std::string* head, ProxyRoute route)
      : attempt(std::move(a)),
        backend(table.backend(attempt.backend)),
        target(table.target(attempt.backend)),
        head_buf(head),
        upstream_wire(target.wire(route)),
        served(!target.target(route).empty()) {}

  Attempt attempt;
  const BackendConfig& backend;
  const BackendTarget& target;
  std::string* head_buf;               // the upstream request head is serialized here
  std::string rewritten_body;          // the body sent, when it is not the client's
  Wire upstream_wire;                  // the protocol of the upstream body
  bool served;                         // the backend's protocol serves the route
  std::string rejected;                // the request cannot be translated: the 400's message
  std::optional<double> head_latency;  // seconds to the response head, once it came
  uint32_t resends = 0;                // the call's free resends (stale pooled connection)
  SteadyClockT::time_point start{};    // when the attempt began (after any repeat wait)
  std::optional<UpstreamCall> call;

  // What Prime found (phase 5 up to the point where the answer is known).
  enum class Primed { kPending, kNoAnswer, kRejected, kBody, kStream };
  Primed primed = Primed::kPending;
  std::error_code ec;  // kNoAnswer: why (none: an invalid url)
  std::string what;    // kNoAnswer: the message's middle part
  std::string body;    // kBody: the whole answer
  // kStream: the events relayed first (held until the first token, or the first piece),
  // the parser and tracker the relay goes on with.
  StreamSettings settings;
  std::optional<ChatStreamTracker> tracker;
  std::optional<SseParser> sse;
  std::optional<StreamBridge> bridge;  // the stream is translated or watched (bridge.h)
  bool may_continue = false;
  std::string held;
  std::string_view first_out;
  bool first_done = false;

  // The first token arrived (the bridge's view when there is one).
  bool FirstToken() const {
    if (bridge) return bridge->first_token();
    return tracker && tracker->first_token();
  }

  // An answer the client may get now: a stream that began, or a 2xx body.
  bool Answered() const {
    return primed == Primed::kStream ||
           (primed == Primed::kBody && call && call->status() >= 200 && call->status() < 300);
  }
};

asio::awaitable<bool> ProxyPipeline::Handle(ClientConnection& conn, RequestParser& parser,
                                            ProxyRoute route) {
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  requests_.fetch_add(1, std::memory_order_relaxed);
  ProxyRequest request(*this, conn, parser, route);
  bool keep_alive = co_await request.Run();
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  co_return keep_alive;
}

asio::awaitable<bool> ProxyRequest::Run() {
  record_.method = "POST";
  record_.path = std::string(RoutePath(route_));
  record_.client_address = conn_.remote_address;
  for (RequestObserver* o : p_.observers_) o->OnRequestStart();

  const auto& req = parser_.get();
  keep_alive_ = req.keep_alive() && !conn_.closing;
  if (auto id = req[kRequestIdHeader]; !id.empty() && id.size() <= 200) {
    record_.request_id = std::string(id);
  } else {
    record_.request_id = NewRequestId(++ts_.request_counter);
  }

  table_ = p_.store_.Current();
  if (!table_) table_ = co_await WaitForFirstTable();
  if (!table_) {
    // No table means no body limit either: do not read it, close after answering.
    keep_alive_ = false;
    co_await SendError(NoTableError());
    Done();
    co_return false;
  }

  // Phase 1: the client's key, checked from the head alone, so a keyless client gets its
  // 401 before any body byte is read or buffered (and no 100 Continue); the unread body
  // means the connection closes after the answer.
  const ClientAuth auth = AuthenticateClient(table_->config.auth_keys,
                                             req[http::field::authorization], req["x-api-key"]);
  if (auth.key != nullptr) record_.key_name = auth.key->name;
  if (!auth.ok) {
    const bool body_unread = !parser_.is_done();
    if (body_unread) keep_alive_ = false;
    co_await SendError(InvalidApiKeyError());
    Done();
    // Closing with the body still arriving would reset the connection under the 401.
    if (body_unread && responded_ && !client_gone_) co_await Linger();
    co_return keep_alive_&& responded_;
  }
  if (!co_await ReadBody()) {
    Done();
    co_return false;
  }
  if (!ParseBody()) {
    co_await SendError(BadRequestError("Invalid request body: " + std::string(peek_.error)));
    Done();
    co_return keep_alive_&& responded_;
  }
  ModelPlan plan;
  if (!ResolvePlan(plan)) {
    co_await SendError(ModelNotFoundError(peek_.model));
    Done();
    co_return keep_alive_&& responded_;
  }
  if (!KeyMayUse(auth.key, plan)) {
    co_await SendError(ModelNotAllowedError(auth.key->name, peek_.model));
    Done();
    co_return keep_alive_&& responded_;
  }
  if (auth.key != nullptr && auth.key->limited() && p_.options_.leases != nullptr &&
      !co_await Admit(*auth.key)) {
    Done();
    co_return keep_alive_&& responded_;
  }

  conn_.fin_is_half_close = !keep_alive_;
  StartClientWatch(conn_, &ProxyRequest::OnClientGone, this);
  co_await AttemptLoop(std::move(plan));
  StopClientWatch(conn_);
  Done();
  co_return keep_alive_&& responded_ && !client_gone_ && !conn_.closing;
}

asio::awaitable<std::shared_ptr<const RoutingTable>> ProxyRequest::WaitForFirstTable() {
  constexpr std::chrono::milliseconds kPoll{10};
  const auto until = SteadyClockT::now() + p_.options_.first_table_wait;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (SteadyClockT::now() < until) {
    timer.expires_after(kPoll);
    boost::system::error_code ignored;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    if (auto table = p_.store_.Current()) co_return table;
  }
  co_return nullptr;
}

// Phase 1: read the body within server.max_body_bytes, the worker-wide
// server.max_buffered_bytes (conn_.ReserveBody; the server releases it when the request
// ends) and a deadline.
asio::awaitable<bool> ProxyRequest::ReadBody() {
  const uint64_t limit = table_->config.server.max_body_bytes;
  const uint64_t buffered_limit = table_->config.server.max_buffered_bytes;
  parser_.body_limit(limit);
  boost::system::error_code ec;
  bool over_budget = false;
  // Checked before reading: Beast reserves Content-Length bytes when the body starts.
  const auto length = parser_.content_length();
  if (length && *length > limit) {
    ec = http::error::body_limit;
  } else if (length && !parser_.chunked() && !conn_.ReserveBody(*length, buffered_limit)) {
    over_budget = true;  // refused before a byte of it is read (and before 100 Continue)
  } else if (length && !parser_.chunked()) {
    // The common case: a known length. The body goes straight from the connection's
    // buffer and the socket into its own array (no zero-fill, no second copy); the
    // parser's job ended with the header.
    const size_t size = static_cast<size_t>(*length);
    body_bytes_.reset(new char[size + kJsonPadding]);  // uninitialized; padding for the JSON reader
    const size_t have = std::min(size, conn_.buffer.size());
    std::memcpy(body_bytes_.get(), conn_.buffer.data().data(), have);
    conn_.buffer.consume(have);
    if (have < size) {
      if (beast::iequals(parser_.get()[http::field::expect], "100-continue")) {
        // The client waits for this before sending the body (curl, for a second).
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_.ExpiresAfter(p_.options_.body_read_timeout);
        ec = co_await WriteAll(conn_.socket, asio::buffer(kContinue.data(), kContinue.size()));
      }
      if (!ec) {
        conn_.ExpiresAfter(p_.options_.body_read_timeout);
        co_await asio::async_read(conn_.socket, asio::buffer(body_bytes_.get() + have, size - have),
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      conn_.ExpiresNever();
    }
    if (!ec) {
      body_ = std::string_view(body_bytes_.get(), size);
      record_.bytes_in = size;
      co_return true;
    }
  } else {
    // A chunked body takes its budget as its bytes are parsed, one read at a time, so
    // the cap is passed by at most one read (Beast checks body_limit before it appends,
    // so 413 wins). Beast allows no chunk callback once the body has begun, which it
    // has by now: the parsed body's growth is what is charged.
    uint64_t charged = 0;
    auto charge = [&] {
      const uint64_t have = parser_.get().body().size();
      if (have <= charged) return;
      if (!conn_.ReserveBody(have - charged, buffered_limit)) over_budget = true;
      charged = have;
    };
    ParseBuffered(parser_, conn_.buffer, ec);  // a chunked body, often already here
    charge();
    conn_.ExpiresAfter(p_.options_.body_read_timeout);
    while (!ec && !over_budget && !parser_.is_done()) {
      co_await http::async_read_some(conn_.socket, conn_.buffer, parser_,
                                     asio::redirect_error(asio::use_awaitable, ec));
      charge();
    }
    conn_.ExpiresNever();
  }
  if (over_budget) {
    keep_alive_ = false;
    co_await SendError(BufferedBytesLimitError(buffered_limit));
    co_await Linger();
    co_return false;
  }
  if (ec == http::error::body_limit) {
    keep_alive_ = false;
    co_await SendError(BodyTooLargeError(table_->config.server.max_body_bytes));
    co_await Linger();
    co_return false;
  }
  if (ec) {
    keep_alive_ = false;
    if (conn_.timed_out || ec == http::error::partial_message || IsPeerGone(ec)) {
      client_gone_ = true;
      record_.status = 499;
      record_.error = "client did not send the whole body";
      co_return false;
    }
    co_await SendError(BadRequestError("Malformed request body framing."));
    co_return false;
  }
  parsed_body_ = std::move(parser_.get().body());
  body_ = parsed_body_;
  record_.bytes_in = body_.size();
  co_return true;
}

// Phase 3: model and stream, read without a DOM.
bool ProxyRequest::ParseBody() {
  peek_ =
      PeekRequestBody(body_, body_bytes_ ? kJsonPadding : parsed_body_.capacity() - body_.size());
  if (!peek_.ok()) return false;
  record_.model_requested = peek_.model;
  record_.stream = peek_.stream;
  if (client_wire_ == Wire::kResponses) echo_ = EchoOfResponsesRequest(body_);
  return true;
}

// A key with `models` asks by name for one of them: a served model (or alias) it lists.
// "auto", no model and unknown names (which fall back to backends' default models) would
// reach models it does not list, and so would the last step cross_model_fallback adds: the
// first are refused, the step is dropped.
bool ProxyRequest::KeyMayUse(const ClientKey* key, ModelPlan& plan) const {
  if (key == nullptr || key->models.empty()) return true;
  if (plan.kind != ModelPlan::Kind::kServed && plan.kind != ModelPlan::Kind::kAlias) return false;
  if (!KeyAllowsModel(key, plan.requested)) return false;
  std::erase_if(plan.steps, [](const PlanStep& step) { return step.model.empty(); });
  return !plan.steps.empty();
}

// Key limits (docs/limits.md). The reservation: the prompt estimated generously from the
// body (a token is about 4 bytes of English; JSON syntax and other scripts make it
// fewer, so a third of the bytes rarely falls short), plus the completion's cap. Whatever
// it misses is still counted when the request settles.
LeaseNeed ProxyRequest::EstimateNeed(const ClientKey& key) const {
  const Config& config = table_->config;
  const bool completes = route_ != ProxyRoute::kEmbeddings && route_ != ProxyRoute::kCountTokens;
  const uint64_t prompt = route_ == ProxyRoute::kCountTokens ? 0 : body_.size() / 3 + 1;
  const uint64_t completion =
      completes ? peek_.max_output_tokens.value_or(config.limits.default_max_tokens) : 0;
  LeaseNeed need;
  need.tokens = prompt + completion;
  if (key.budget && key.budget->unit == KeyBudget::Unit::kTokens) {
    need.budget = need.tokens;
  } else if (key.budget) {
    // Priced at the requested model's prices, or at the highest ones when it has none
    // (an alias, auto, a fallback may end on any model).
    ModelPrice price;
    if (auto it = config.prices.find(peek_.model); it != config.prices.end()) {
      price = it->second;
    } else {
      for (const auto& [model, p] : config.prices) {
        price.prompt = std::max(price.prompt, p.prompt);
        price.completion = std::max(price.completion, p.completion);
      }
    }
    need.budget = static_cast<uint64_t>(std::ceil(UsageCostUsd(price, prompt, completion) * 1e6));
  }
  return need;
}

namespace {

// OpenAI's x-ratelimit-reset-* form: "20ms", "42s", "6m0s", "1h2m3s".
std::string ResetText(uint64_t ms) {
  if (ms < 1000) return std::to_string(ms) + "ms";
  uint64_t s = (ms + 999) / 1000;
  std::string out;
  if (s >= 3600) out += std::to_string(s / 3600) + "h";
  if (s >= 60) out += std::to_string(s / 60 % 60) + "m";
  return out + std::to_string(s % 60) + "s";
}

void AppendLimitHeaders(std::string& head, std::string_view what, const LimitView& v) {
  if (v.limit == 0) return;
  const std::string prefix = "x-ratelimit-";
  AppendField(head, prefix + "limit-" + std::string(what), v.limit);
  AppendField(head, prefix + "remaining-" + std::string(what), std::min(v.remaining, v.limit));
  AppendField(head, prefix + "reset-" + std::string(what), ResetText(v.reset_ms));
}

}  // namespace

asio::awaitable<bool> ProxyRequest::Admit(const ClientKey& key) {
  KeyLeases& leases = *p_.options_.leases;
  const LeaseNeed need = EstimateNeed(key);
  const ControlPlaneLoss policy = table_->config.limits.on_control_plane_loss;
  const auto deadline = SteadyClockT::now() + p_.options_.lease_wait;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    const uint64_t generation = leases.generation();
    const AdmitResult r =
        leases.TryAdmit(key, need, policy, LeaseNowMs(), SteadyClockT::now() < deadline);
    if (r.verdict == AdmitResult::Verdict::kAdmit) {
      lease_ = r.ticket;
      lease_key_ = &key;
      if (r.by_loss_policy) {
        record_.loss_admitted = true;
        LogWarn(
            "key limits not held: control plane unreachable, admitted by "
            "limits.on_control_plane_loss: allow",
            {{"key", key.name}, {"request_id", record_.request_id}});
      }
      co_return true;
    }
    if (r.verdict == AdmitResult::Verdict::kDeny) {
      co_await SendLimited(key, r);
      co_return false;
    }
    // kWait: the grant comes back on the control plane's stream; polled, since waiting
    // is the exception (a balance runs out faster than it is refilled).
    while (leases.generation() == generation && SteadyClockT::now() < deadline) {
      timer.expires_after(std::chrono::milliseconds(2));
      boost::system::error_code ignored;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }
}

asio::awaitable<void> ProxyRequest::SendLimited(const ClientKey& key, const AdmitResult& r) {
  record_.limited_by = LimitName(r.denied);
  std::string head;
  const uint64_t retry_s = std::max<uint64_t>(1, (r.retry_after_ms + 999) / 1000);
  AppendField(head, "Retry-After", retry_s);
  AppendLimitHeaders(head, "requests", r.requests);
  AppendLimitHeaders(head, "tokens", r.tokens);
  const std::string name = "'" + key.name + "'";
  const std::string retry = "; retry in " + ResetText(retry_s * 1000) + ".";
  switch (r.denied) {
    case LimitKind::kBudget:
      // The SDKs' own retries cannot help before the period moves on.
      AppendField(head, "x-should-retry", "false");
      co_await SendError(KeyBudgetExceededError(key.name), head);
      co_return;
    case LimitKind::kRequests:
      co_await SendError(KeyRateLimitedError("requests", "Rate limit reached for key " + name +
                                                             ": " + std::to_string(key.rpm) +
                                                             " requests per minute (rpm)" + retry),
                         head);
      co_return;
    case LimitKind::kTokens:
      co_await SendError(
          KeyRateLimitedError("tokens", "Rate limit reached for key " + name + ": " +
                                            std::to_string(key.tpm) +
                                            " tokens per minute (tpm); this request reserves " +
                                            std::to_string(EstimateNeed(key).tokens) +
                                            " (prompt estimate + max_tokens)" + retry),
          head);
      co_return;
    case LimitKind::kParallel:
      co_await SendError(
          KeyRateLimitedError("rate_limit_error",
                              "Too many requests in flight for key " + name + ": at most " +
                                  std::to_string(key.max_parallel) + " (max_parallel)" + retry),
          head);
      co_return;
    case LimitKind::kControlPlane:
      co_await SendError(
          KeyRateLimitedError("rate_limit_error",
                              "The key " + name +
                                  " has limits and the control plane cannot be reached "
                                  "(limits.on_control_plane_loss: deny)" +
                                  retry),
          head);
      co_return;
  }
}

// What the request used replaces what it reserved: the upstream's usage, or, when a 2xx
// answer reported none, the reservation itself (an answer that was not 2xx is not billed).
void ProxyRequest::SettleLease() {
  if (!lease_.active || p_.options_.leases == nullptr) return;
  uint64_t tokens = 0, budget = 0;
  if (record_.prompt_tokens || record_.completion_tokens) {
    tokens = record_.prompt_tokens.value_or(0) + record_.completion_tokens.value_or(0);
    const ClientKey* key = lease_key_;
    if (key != nullptr && key->budget) {
      budget = key->budget->unit == KeyBudget::Unit::kTokens
                   ? tokens
                   : static_cast<uint64_t>(std::ceil(record_.cost_usd.value_or(0) * 1e6));
    }
  } else if (record_.status >= 200 && record_.status < 300) {
    tokens = lease_.tokens;
    budget = lease_.budget;
  }
  p_.options_.leases->Settle(lease_, tokens, budget, LeaseNowMs());
  lease_.active = false;
}

// Phase 4: the model plan (auto, alias, served, unknown).
bool ProxyRequest::ResolvePlan(ModelPlan& plan) {
  plan = ResolveModel(*table_, peek_.model);
  if (plan.rejected()) return false;
  if (plan.unknown_fallback) {
    LogWarn("unknown model, using a backend's default model",
            {{"model", std::string_view(peek_.model).substr(0, 128)},
             {"request_id", record_.request_id}});
  }
  return true;
}

std::string_view ProxyRequest::BuildUpstreamRequest(AttemptRun& run,
                                                    std::optional<std::string_view> prefilled) {
  const auto& client = parser_.get();
  const Attempt& attempt = run.attempt;
  const BackendTarget& b = run.target;
  const BackendConfig& backend = run.backend;
  std::string& head = *run.head_buf;
  head.clear();
  AppendRequestLine(head, "POST", b.target(route_));
  if (!b.headers_set_host) AppendField(head, "Host", b.host_header);
  bool has_request_id = b.headers_set_request_id;
  bool has_content_type = b.headers_set_content_type;
  // Anthropic's headers (anthropic-version, anthropic-beta) are for an Anthropic backend only.
  const bool anthropic = b.api == BackendApi::kAnthropic;
  bool has_anthropic_version = false;
  for (const auto& f : client) {
    if (DropRequestHeader(f)) continue;
    std::string_view name = f.name_string();
    if (IsClientCredential(name)) continue;
    if (StartsWithNoCase(name, "anthropic-")) {
      if (!anthropic) continue;
      if (beast::iequals(name, "anthropic-version")) has_anthropic_version = true;
    }
    // A backend's configured header replaces the client's of the same name.
    const bool overridden =
        !backend.headers.empty() &&
        std::any_of(backend.headers.begin(), backend.headers.end(),
                    [&](const auto& h) { return beast::iequals(name, h.first); });
    if (overridden) continue;
    if (f.name() == http::field::content_type) has_content_type = true;
    if (beast::iequals(name, kRequestIdHeader)) has_request_id = true;
    AppendField(head, name, f.value());
  }
  if (!has_request_id) AppendField(head, kRequestIdHeader, record_.request_id);
  for (const auto& [name, value] : backend.headers) {
    if (beast::iequals(name, "anthropic-version")) has_anthropic_version = true;
    AppendField(head, name, value);
  }
  AppendField(head, b.auth_name, b.auth_value);
  if (anthropic && !has_anthropic_version) {
    AppendField(head, "anthropic-version", kDefaultAnthropicVersion);
  }
  if (!has_content_type) AppendField(head, "Content-Type", "application/json");

  std::string_view body = prefilled.value_or(body_);
  if (client_wire_ != run.upstream_wire && client_wire_ != Wire::kPlain &&
      run.upstream_wire != Wire::kPlain) {
    // Another protocol (docs/protocols.md): the body is rebuilt in the upstream's.
    RequestTranslation t = TranslateRequest(
        client_wire_, run.upstream_wire, body,
        BridgeRequestOptions{.model = attempt.model, .reasoning = StyleOf(b.reasoning)});
    if (!t.error.empty()) {
      run.rejected = std::move(t.error);
      head.clear();
      return {};
    }
    if (!t.dropped.empty() && !logged_dropped_) {
      logged_dropped_ = true;
      std::string names;
      for (const std::string& d : t.dropped) {
        if (!names.empty()) names += ", ";
        names += d;
      }
      LogDebug("request fields not translated, dropped",
               {{"fields", names}, {"backend", backend.name}, {"request_id", record_.request_id}});
    }
    run.rewritten_body = std::move(t.body);
    body = run.rewritten_body;
    AppendField(head, "Content-Length", static_cast<uint64_t>(body.size()));
    head += "\r\n";
    return body;
  }

  BodyRewrite rewrite;
  if (attempt.rewrite_model) rewrite.model = attempt.model;
  // stream_options is chat's (and legacy completions'): never added to a native Messages
  // or Responses body.
  const bool chat_like = client_wire_ == Wire::kChat || route_ == ProxyRoute::kCompletions;
  if (chat_like && RequestStreamUsage()) rewrite.add_include_usage = true;
  body = body_;
  if (prefilled) {
    // A continuation: the prefilled body was built from the client's, read it again for
    // the offsets of its model value.
    const BodyPeek peek = PeekRequestBody(*prefilled);
    body = *prefilled;
    if (peek.ok() && NeedsRewrite(peek, rewrite)) {
      run.rewritten_body = RewriteRequestBody(*prefilled, peek, rewrite);
      body = run.rewritten_body;
    }
  } else if (NeedsRewrite(peek_, rewrite)) {
    run.rewritten_body = RewriteRequestBody(body_, peek_, rewrite);
    body = run.rewritten_body;
  }
  AppendField(head, "Content-Length", static_cast<uint64_t>(body.size()));
  head += "\r\n";
  return body;
}

bool ProxyRequest::MayContinue() const {
  if (route_ != ProxyRoute::kChatCompletions || !peek_.stream) return false;
  for (const PlanStep& step : planner_->plan().steps) {
    for (size_t b : step.candidates->backends) {
      if (table_->backend(b).prefill) return true;
    }
  }
  return false;
}

void ProxyRequest::NotifyAttempt(const std::string& backend, AttemptOutcome outcome) {
  for (RequestObserver* o : p_.observers_) o->OnAttempt(backend, outcome);
}

// Every attempt's outcome, once, breaks included: the resends its call made on stale pooled
// connections (each an attempt that reached no backend: connect_error, no health effect),
// then the retry policy's decision applied to health and the planner, the observers, and
// the attempt count the client and the record see.
RetryDecision ProxyRequest::ReportAttempt(AttemptRun& run, const AttemptResult& result) {
  for (uint32_t i = 0; i < run.resends; ++i) {
    NotifyAttempt(run.backend.name, AttemptOutcome::kConnectError);
  }
  run.resends = 0;
  RetryDecision d = ClassifyAttempt(result, std::chrono::system_clock::now());
  planner_->Report(run.attempt, d, run.head_latency);
  NotifyAttempt(run.backend.name, d.outcome);
  CountAttempts();
  return d;
}

// Phase 5: pick, connect, send, read head, classify; then relay (phase 6) or retry.
asio::awaitable<void> ProxyRequest::AttemptLoop(ModelPlan plan) {
  AttemptPlanner planner(table_, std::move(plan), ThreadLocalRandom(), SteadyClock());
  planner.SetDeadline(start_ + table_->config.timeout);
  planner_ = &planner;
  while (std::optional<Attempt> attempt = planner.Next()) {
    AttemptRun run(std::move(*attempt), *table_, &conn_.upstream_scratch, route_);
    CountAttempts();
    if (run.attempt.wait.count() > 0) {
      // A repeat on a tried backend: its backoff or Retry-After first. A client that
      // leaves meanwhile ends it (OnClientGone).
      asio::steady_timer timer(co_await asio::this_coro::executor, run.attempt.wait);
      repeat_timer_ = &timer;
      boost::system::error_code ignored;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      repeat_timer_ = nullptr;
      if (client_gone_) {
        planner_ = nullptr;
        co_return;
      }
    }
    record_.backend = run.backend.name;
    if (route_ == ProxyRoute::kCountTokens && run.backend.api != BackendApi::kAnthropic) {
      co_await SendTokenEstimate();
      planner_ = nullptr;
      co_return;
    }
    if (run.target.url && !run.served) {
      // This backend's protocol has no such endpoint (an Anthropic backend for
      // /v1/embeddings): another candidate may have; the backend did nothing wrong.
      RetryDecision skip;
      skip.action = RetryAction::kRetry;
      skip.health = HealthEffect::kNeutral;
      skip.outcome = AttemptOutcome::kClientError;
      planner.Report(run.attempt, skip, std::nullopt);
      last_failure_timeout_ = false;
      last_failure_message_ = "backend '" + run.backend.name +
                              "' (api: " + std::string(ToString(run.backend.api)) +
                              ") does not serve " + std::string(RoutePath(route_));
      last_error_.reset();
      continue;
    }
    record_.backend = run.backend.name;
    record_.model_resolved = run.attempt.model;
    const AttemptEnd end = co_await TryBackend(run);
    current_call_ = nullptr;
    if (end == AttemptEnd::kDone) {
      planner_ = nullptr;
      co_return;
    }
  }
  CountAttempts();
  co_await SendFinalError();
  planner_ = nullptr;
}

asio::awaitable<ProxyRequest::AttemptEnd> ProxyRequest::TryBackend(AttemptRun& run) {
  if (const std::optional<Millis> delay = HedgeDelay(run)) {
    co_return co_await TryHedged(run, *delay);
  }
  co_await Prime(run, &current_call_);
  co_return co_await Finish(run);
}

// Phase 5 up to the answer: connect, send, read the head; then a non-stream answer (or an
// error answer) whole, or a stream up to its first bytes (first token: StreamSettings).
// Reports nothing: Finish does, so that a hedge race can decide first. `slot` is where
// OnClientGone finds the call while it runs.
asio::awaitable<void> ProxyRequest::Prime(AttemptRun& run, UpstreamCall** slot) {
  const Config& config = table_->config;
  const BackendConfig& backend = run.backend;
  run.start = SteadyClockT::now();
  if (!run.target.url) {
    run.primed = AttemptRun::Primed::kNoAnswer;
    co_return;
  }
  const std::chrono::milliseconds timeout = backend.timeout.value_or(config.timeout);
  const std::string_view upstream_body = BuildUpstreamRequest(run);
  if (!run.rejected.empty()) {
    run.primed = AttemptRun::Primed::kRejected;
    co_return;
  }
  UpstreamCall& call = run.call.emplace(*ts_.pool);
  *slot = &call;
  std::error_code ec = co_await call.StartRaw(
      *run.target.url, *run.head_buf, upstream_body,
      UpstreamCallOptions{.connect_timeout = config.connect_timeout,
                          .response_timeout = timeout,
                          .tls_insecure_skip_verify = backend.tls_insecure_skip_verify});
  run.resends = call.resends();
  resends_ += run.resends;
  CountAttempts();  // before any head goes out: x-llmproxy-attempts counts the resends
  const auto head_time = SteadyClockT::now();
  upstream_wait_ += SecondsBetween(run.start, head_time);
  if (ec || client_gone_) {
    run.primed = AttemptRun::Primed::kNoAnswer;
    run.ec = ec;
    run.what = ": ";
    co_return;
  }
  run.head_latency = SecondsBetween(run.start, head_time);

  const unsigned status = call.status();
  const bool success = status >= 200 && status < 300;
  const bool event_stream = IsEventStream(call.head()[http::field::content_type]);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(head_time - run.start);
  const auto remaining = std::max(timeout - elapsed, std::chrono::milliseconds(1));
  if (success && (event_stream || peek_.stream)) {
    co_await PrimeStream(run, head_time + remaining);
    co_return;
  }
  // Not a stream (or an error answer): read it whole.
  const auto body_start = SteadyClockT::now();
  ec = co_await call.ReadAll(run.body, config.server.max_response_bytes, remaining);
  upstream_wait_ += SecondsBetween(body_start, SteadyClockT::now());
  if (ec || client_gone_) {
    run.primed = AttemptRun::Primed::kNoAnswer;
    run.ec = ec;
    run.what = ": ";
    co_return;
  }
  run.primed = AttemptRun::Primed::kBody;
}

// A stream: hold the head until the first body bytes (failing before them is still
// invisible to the client, so another backend may take over). With a first_token_timeout
// (docs/routing.md "Slow and broken streams") the hold lasts until the first token: the
// events before it (an empty role chunk, comments) are kept back, and a candidate with no
// token by the deadline is abandoned (its connection closed) for the next one.
asio::awaitable<void> ProxyRequest::PrimeStream(AttemptRun& run,
                                                SteadyClockT::time_point deadline) {
  UpstreamCall& call = *run.call;
  run.settings = StreamSettingsFor(table_->config, planner_->plan().alias, run.backend);
  const bool sse = IsEventStream(call.head()[http::field::content_type]);
  SseParserOptions sse_options;
  sse_options.drop_usage_only_events = RequestStreamUsage();
  const bool wait_for_token = sse && (run.settings.first_token_timeout.count() > 0 || hedging_);
  // A translated stream goes through the bridge; so does a native Messages or Responses
  // one that is watched for its first token, or a native Messages one whose usage a
  // limited key's reservation settles with (forwarded byte for byte).
  const bool translated = client_wire_ != run.upstream_wire && client_wire_ != Wire::kPlain &&
                          run.upstream_wire != Wire::kPlain;
  const bool watched_native =
      (wait_for_token || (lease_.active && run.upstream_wire == Wire::kMessages)) &&
      client_wire_ == run.upstream_wire && run.upstream_wire != Wire::kChat &&
      run.upstream_wire != Wire::kPlain;
  run.may_continue = sse && !translated && MayContinue();
  if (sse && (translated || watched_native)) {
    run.bridge.emplace(client_wire_, run.upstream_wire, run.attempt.model,
                       echo_ ? &*echo_ : nullptr, peek_.client_include_usage);
    if (wait_for_token) {
      run.tracker.emplace(TrackOptions{.text = false});
      run.bridge->SetTracker(&*run.tracker);
    }
    sse_options.drop_usage_only_events = false;  // the client's encoder reads the usage chunk
    sse_options.hook = &*run.bridge;
    // A translated event must be seen whole: the framing limit is the answer limit.
    sse_options.max_event_bytes =
        std::max<uint64_t>(sse_options.max_event_bytes, table_->config.server.max_response_bytes);
  } else if (wait_for_token || run.may_continue) {
    // Full mode (every event read, the text kept) only when a break could be continued.
    run.tracker.emplace(TrackOptions{.text = run.may_continue});
    sse_options.tracker = &*run.tracker;
  }
  SseParser& sse_parser = run.sse.emplace(sse_options);
  const bool token_deadline_on = run.settings.first_token_timeout.count() > 0;
  const auto token_deadline = run.start + run.settings.first_token_timeout;

  const auto wait_start = SteadyClockT::now();
  bool got_bytes = false;
  bool token_timed_out = false;
  std::error_code first_ec;
  while (true) {
    SteadyClockT::time_point until = deadline;
    if (token_deadline_on && (got_bytes || token_deadline < until)) until = token_deadline;
    if (wait_for_token && got_bytes && !token_deadline_on) until = SteadyClockT::time_point::max();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClockT::now());
    if (until == SteadyClockT::time_point::max()) left = run.settings.stream_idle_timeout;
    if (left.count() <= 0) {
      first_ec = UpstreamErrc::kBodyTimeout;
      token_timed_out = token_deadline_on && until == token_deadline;
      break;
    }
    UpstreamBodyPiece piece = co_await call.ReadBody(left);
    if (piece.ec) {
      first_ec = piece.ec;
      token_timed_out = token_deadline_on && IsTimeout(piece.ec) && until == token_deadline;
      break;
    }
    run.first_done = piece.done;
    if (!piece.data.empty()) got_bytes = true;
    if (!wait_for_token) {
      if (!got_bytes && !run.first_done) continue;
      run.first_out = sse ? sse_parser.Feed(piece.data) : piece.data;
      break;
    }
    run.held += sse_parser.Feed(piece.data);
    if (run.FirstToken() || run.first_done) {
      run.first_out = run.held;
      break;
    }
  }
  upstream_wait_ += SecondsBetween(wait_start, SteadyClockT::now());
  if (first_ec || client_gone_) {
    run.primed = AttemptRun::Primed::kNoAnswer;
    run.ec = first_ec;
    run.what = token_timed_out ? " sent no first token within " +
                                     FormatDuration(run.settings.first_token_timeout) + ": "
                               : " sent no stream data: ";
    co_return;
  }
  if (!sse) run.sse.reset();
  run.primed = AttemptRun::Primed::kStream;
}

// Phase 5 after Prime: report the attempt, then relay its answer (streams: phase 6) or
// move on to the next pick.
asio::awaitable<ProxyRequest::AttemptEnd> ProxyRequest::Finish(AttemptRun& run) {
  switch (run.primed) {
    case AttemptRun::Primed::kPending:
    case AttemptRun::Primed::kNoAnswer:
      if (!run.target.url) {
        LogError("backend url does not parse",
                 {{"backend", run.backend.name}, {"error", run.target.url_error}});
        ReportAttempt(run, AttemptResult::Of(AttemptResult::Kind::kConnectError));
        last_failure_timeout_ = false;
        last_failure_message_ = "backend '" + run.backend.name + "' has an invalid url";
        co_return AttemptEnd::kNext;
      }
      co_return NoAnswer(run, run.ec, run.what);
    case AttemptRun::Primed::kRejected:
      // The request cannot be said in this backend's protocol: the client's mistake (a
      // Responses previous_response_id, an unsupported tool type), the same on any backend.
      co_await SendError(BadRequestError(run.rejected));
      co_return AttemptEnd::kDone;
    case AttemptRun::Primed::kStream: {
      UpstreamCall& call = *run.call;
      relay_bridge_ = run.bridge ? &*run.bridge : nullptr;
      record_.backend = run.backend.name;
      record_.model_resolved = run.attempt.model;
      record_.ttft_seconds = SecondsBetween(start_, SteadyClockT::now());
      // Time to the first token (to the first bytes when tokens are not tracked): what
      // hedge_after: auto reads.
      if (run.attempt.state) {
        run.attempt.state->RecordFirstToken(SecondsBetween(run.start, SteadyClockT::now()));
      }
      const AttemptResult end = co_await RelayStream(
          call, run.sse ? &*run.sse : nullptr, run.first_out, run.first_done,
          run.settings.stream_idle_timeout, run.may_continue ? &*run.tracker : nullptr,
          run.attempt.step, run.attempt.backend);
      current_call_ = nullptr;
      relay_bridge_ = nullptr;
      ReportAttempt(run, end);
      co_return AttemptEnd::kDone;
    }
    case AttemptRun::Primed::kBody:
      break;
  }
  // A whole answer: relay it, or retry.
  UpstreamCall& call = *run.call;
  const unsigned status = call.status();
  // The body too: a 400 saying the context window was exceeded may go to a larger model.
  const RetryDecision d =
      ReportAttempt(run, AttemptResult::Response(static_cast<int>(status),
                                                 call.head()[http::field::retry_after], run.body));
  const bool translated = client_wire_ != run.upstream_wire && client_wire_ != Wire::kPlain &&
                          run.upstream_wire != Wire::kPlain;
  const bool success = status >= 200 && status < 300;
  if (d.retryable()) {
    SavedError saved{status, {}, std::move(run.body)};
    for (const auto& f : call.head()) {
      if (KeepResponseHeader(f)) saved.head.insert(f.name_string(), f.value());
    }
    if (translated) {
      // Relayed later, if last: already in the client's protocol.
      saved.body = TranslateErrorAnswer(client_wire_, run.upstream_wire, static_cast<int>(status),
                                        saved.body);
      saved.head.set(http::field::content_type, "application/json");
    }
    last_error_ = std::move(saved);
    co_return AttemptEnd::kNext;
  }
  if (success) {
    // A chat body's usage; an Anthropic one's from its chat translation (below when the
    // answer is translated, here when it goes to a Messages client as it came).
    std::optional<std::string> as_chat;
    if (!translated && run.upstream_wire == Wire::kMessages) {
      as_chat = MessagesResponseToChat(run.body, run.attempt.model);
    }
    if (auto usage = ExtractUsageFromJson(as_chat ? *as_chat : run.body)) {
      record_.prompt_tokens = usage->prompt_tokens;
      record_.completion_tokens = usage->completion_tokens;
      record_.cached_prompt_tokens = usage->cached_prompt_tokens;
    }
  }
  record_.backend = run.backend.name;
  record_.model_resolved = run.attempt.model;
  call.Release();  // back to the pool before the client write (the head stays readable)
  if (!translated) {
    co_await SendUpstreamResponse(status, call.head(), run.body);
    co_return AttemptEnd::kDone;
  }
  // Another protocol's answer (docs/protocols.md): the client gets it in its own.
  http::fields head;
  for (const auto& f : call.head()) {
    if (KeepResponseHeader(f)) head.insert(f.name_string(), f.value());
  }
  head.set(http::field::content_type, "application/json");
  std::string body;
  if (success) {
    std::optional<std::string> answer = TranslateAnswer(
        client_wire_, run.upstream_wire, run.body, run.attempt.model, echo_ ? &*echo_ : nullptr);
    if (!answer) {
      record_.error = "upstream answer not valid in its protocol";
      co_await SendError(AllBackendsFailedError("backend '" + run.backend.name +
                                                "' sent an answer that could not be translated."));
      co_return AttemptEnd::kDone;
    }
    if (run.upstream_wire == Wire::kMessages) {
      std::optional<std::string> chat;
      if (client_wire_ != Wire::kChat) chat = MessagesResponseToChat(run.body, run.attempt.model);
      if (auto usage = ExtractUsageFromJson(chat ? *chat : *answer)) {
        record_.prompt_tokens = usage->prompt_tokens;
        record_.completion_tokens = usage->completion_tokens;
        record_.cached_prompt_tokens = usage->cached_prompt_tokens;
      }
    }
    body = std::move(*answer);
  } else {
    body =
        TranslateErrorAnswer(client_wire_, run.upstream_wire, static_cast<int>(status), run.body);
  }
  co_await SendUpstreamResponse(status, head, body);
  co_return AttemptEnd::kDone;
}

ProxyRequest::AttemptEnd ProxyRequest::NoAnswer(AttemptRun& run, std::error_code ec,
                                                const std::string& what) {
  const AttemptResult result =
      client_gone_ ? AttemptResult::Of(AttemptResult::Kind::kCancelled) : ResultOf(ec);
  ReportAttempt(run, result);
  if (result.kind == AttemptResult::Kind::kCancelled) {
    client_gone_ = true;
    return AttemptEnd::kDone;
  }
  if (result.kind == AttemptResult::Kind::kProxyOverloaded) {
    static LogThrottle throttle(std::chrono::seconds(1));
    if (uint64_t skipped = 0; throttle.Allow(skipped)) {
      LogWarn(
          "out of file descriptors: requests get 503 until connections close; raise the "
          "worker's hard open files limit (LimitNOFILE, ulimit -Hn)",
          {{"backend", run.backend.name}, {"suppressed", skipped}});
    }
  }
  last_failure_timeout_ = result.kind == AttemptResult::Kind::kTimeout;
  last_failure_message_ = "backend '" + run.backend.name + "'" + what + ec.message();
  last_error_.reset();  // the most recent failure is the one reported
  return AttemptEnd::kNext;
}

// Hedging (docs/routing.md "Hedging"): for the first attempt of a stream whose alias sets
// hedge_after; `auto` is the backend's recent p95 time to first token (none until it has
// enough samples).
std::optional<Millis> ProxyRequest::HedgeDelay(const AttemptRun& run) const {
  const ModelAlias* alias = planner_->plan().alias;
  if (alias == nullptr || !peek_.stream || planner_->attempts() != 1 || hedging_) {
    return std::nullopt;
  }
  switch (alias->hedge_after.kind) {
    case HedgeAfter::Kind::kOff:
      return std::nullopt;
    case HedgeAfter::Kind::kFixed:
      return alias->hedge_after.delay;
    case HedgeAfter::Kind::kAuto:
      return run.attempt.state ? run.attempt.state->FirstTokenP95() : std::nullopt;
  }
  return std::nullopt;
}

// Runs Prime and wakes the race's waiter when it is done.
asio::awaitable<void> ProxyRequest::PrimeAndSignal(AttemptRun& run, UpstreamCall** slot,
                                                   asio::steady_timer& wake, int& running) {
  co_await Prime(run, slot);
  --running;
  wake.cancel();
}

// Waits on `wake` until `done()` or, when set, `until` passed; true when done() holds.
template <class Done>
asio::awaitable<bool> WaitFor(asio::steady_timer& wake, Done done,
                              std::optional<SteadyClockT::time_point> until) {
  while (!done()) {
    wake.expires_at(until.value_or(SteadyClockT::time_point::max()));
    boost::system::error_code ec;
    co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && until) co_return done();  // the time passed
  }
  co_return true;
}

// One hedge ("The Tail at Scale"): the first attempt runs alone for `delay`; if it has no
// first token by then, a second attempt starts on another candidate (within hedge_budget)
// and the first of the two to produce a token is relayed. The other is cancelled at once:
// its connection is closed, so the provider stops generating. An attempt that fails while
// the other runs is reported as usual and the other is waited for.
asio::awaitable<ProxyRequest::AttemptEnd> ProxyRequest::TryHedged(AttemptRun& first, Millis delay) {
  hedging_ = true;
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer wake(executor);
  int running = 1;
  asio::co_spawn(executor, PrimeAndSignal(first, &current_call_, wake, running), asio::detached);
  auto all_done = [&] { return running == 0; };
  auto first_done = [&] { return first.primed != AttemptRun::Primed::kPending; };
  co_await WaitFor(wake, first_done, SteadyClockT::now() + delay);

  std::optional<AttemptRun> second;
  if (!first_done() && !client_gone_ && p_.TakeHedge(table_->config.hedge_budget)) {
    if (std::optional<Attempt> next = planner_->NextUntried()) {
      second.emplace(std::move(*next), *table_, &hedge_head_, route_);
      CountAttempts();
      record_.hedged = true;
      for (RequestObserver* o : p_.observers_) o->OnHedge(second->backend.name, false);
      ++running;
      asio::co_spawn(executor, PrimeAndSignal(*second, &hedge_call_, wake, running),
                     asio::detached);
    } else {
      p_.ReturnHedge();
    }
  }
  if (!second) {
    hedging_ = false;  // none started: later attempts need not wait for tokens
    co_await WaitFor(wake, all_done, std::nullopt);
    hedge_call_ = nullptr;
    co_return co_await Finish(first);
  }
  auto any_done = [&] { return first_done() || second->primed != AttemptRun::Primed::kPending; };
  co_await WaitFor(wake, any_done, std::nullopt);
  AttemptRun* a = first_done() ? &first : &*second;
  AttemptRun* b = a == &first ? &*second : &first;
  UpstreamCall** b_slot = b == &first ? &current_call_ : &hedge_call_;
  if (!a->Answered() && !client_gone_) {
    // The earlier one failed: report it, keep waiting for the other. A non-retryable
    // answer (a 4xx) is relayed as it came, which ends the race too.
    if (co_await Finish(*a) == AttemptEnd::kDone) {
      if (*b_slot != nullptr) (*b_slot)->Cancel();
      co_await WaitFor(wake, all_done, std::nullopt);
      ReportAttempt(*b, AttemptResult::Of(AttemptResult::Kind::kCancelled));
      hedge_call_ = nullptr;
      co_return AttemptEnd::kDone;
    }
    co_await WaitFor(wake, all_done, std::nullopt);
    std::swap(a, b);
  } else if (b->primed == AttemptRun::Primed::kPending) {
    // The winner has its token: the loser is cut now, its report says cancelled.
    if (*b_slot != nullptr) (*b_slot)->Cancel();
    co_await WaitFor(wake, all_done, std::nullopt);
    ReportAttempt(*b, AttemptResult::Of(AttemptResult::Kind::kCancelled));
  } else {
    co_await WaitFor(wake, all_done, std::nullopt);
    if (b->Answered()) {
      b->call->Cancel();
      ReportAttempt(*b, AttemptResult::Of(AttemptResult::Kind::kCancelled));
    } else {
      (void)co_await Finish(*b);  // its own failure, reported; the winner goes on
    }
  }
  if (a == &*second) {
    record_.hedge_won = a->Answered();
    if (a->Answered()) {
      for (RequestObserver* o : p_.observers_) o->OnHedge(a->backend.name, true);
    }
    // The relay and any continuation use current_call_ from here on.
    current_call_ = hedge_call_;
  }
  hedge_call_ = nullptr;
  co_return co_await Finish(*a);
}

asio::awaitable<void> ProxyRequest::SendTokenEstimate() {
  const std::optional<uint64_t> tokens = EstimateMessagesInputTokens(body_);
  if (!tokens) {
    co_await SendError(BadRequestError("The body is not a Messages request."));
    co_return;
  }
  const std::string body = "{\"input_tokens\":" + std::to_string(*tokens) + "}";
  record_.status = 200;
  record_.bytes_out = body.size();
  std::string& head = StartResponseHead<http::fields>(200, nullptr);
  AppendField(head, "Content-Type", "application/json");
  // Not the provider's count: a client that needs exact numbers can tell.
  AppendField(head, "x-llmproxy-token-estimate", "bytes/4");
  AppendField(head, "Content-Length", static_cast<uint64_t>(body.size()));
  head += "\r\n";
  bool ok = co_await WriteRaw(conn_, head, body, kErrorWriteTimeout);
  responded_ = true;
  if (!ok) {
    client_gone_ = true;
    keep_alive_ = false;
  }
}

// Attempts ran out (or none could be made) without a response relayed.
asio::awaitable<void> ProxyRequest::SendFinalError() {
  if (planner_->attempts() == 0) {
    co_await SendError(NoHealthyBackendError(peek_.model));
  } else if (planner_->last_outcome() == AttemptOutcome::kProxyOverloaded) {
    // A socket could not be opened (the planner stopped there): 503, not a backend's 502.
    std::string head;
    AppendField(head, "Retry-After", uint64_t{1});
    co_await SendError(ProxyOverloadedError(), head);
  } else if (last_error_) {
    co_await SendUpstreamResponse(last_error_->status, last_error_->head, last_error_->body);
  } else if (last_failure_timeout_) {
    co_await SendError(
        UpstreamTimeoutError("No backend answered in time (last: " + last_failure_message_ + ")."));
  } else {
    co_await SendError(
        AllBackendsFailedError("All backends failed (last: " + last_failure_message_ + ")."));
  }
}

// Phase 6 for streams: headers now, then every upstream piece as it arrives. One read
// and one write at a time: no upstream read while the client write is pending. The
// stream ends well at its end or at `data: [DONE]` (what follows, or a stall, is ignored).
// A stream that breaks is continued on a `prefill: true` candidate when it can be
// (Continue); otherwise it ends broken with one SSE error event of its own and no [DONE].
asio::awaitable<AttemptResult> ProxyRequest::RelayStream(UpstreamCall& call, SseParser* sse,
                                                         std::string_view first_out,
                                                         bool first_done,
                                                         std::chrono::milliseconds idle_timeout,
                                                         ChatStreamTracker* tracker, size_t step,
                                                         size_t backend) {
  const auto& req = parser_.get();
  const bool chunked = req.version() >= 11;
  if (!chunked) keep_alive_ = false;
  RelayedTail tail;
  const AttemptResult answered = AttemptResult::Response(static_cast<int>(call.status()));

  record_.status = static_cast<int>(call.status());
  std::string& head = StartResponseHead(call.status(), &call.head());
  AppendField(head, "Cache-Control", "no-cache");
  if (chunked) head += "Transfer-Encoding: chunked\r\n";
  head += "\r\n";

  // The head and the first piece leave in one write: one syscall less before the first
  // token reaches the client.
  tail.Append(first_out);
  bool ok = co_await WriteToClient(first_out, chunked && !first_out.empty(), head);
  responded_ = true;

  LegEnd leg = co_await RelayLeg(call, sse, first_done, idle_timeout, chunked, tail, ok);
  if (leg.state == LegEnd::kBroken && !conn_.drain_cut && tracker != nullptr) {
    // The broken attempt is reported as such (its backend failed); the rescue is separate.
    const ContinueEnd rescued =
        co_await Continue(*tracker, chunked, tail, step, backend, leg.upstream_ec);
    if (rescued != ContinueEnd::kFailed)
      co_return AttemptResult::Of(AttemptResult::Kind::kBrokenStream);
  }
  co_return co_await EndLeg(call, sse, leg, chunked, tail, answered);
}

// Relays one upstream leg (the first answer, or a continuation) until it ends: well,
// broken, or with the client gone.
asio::awaitable<ProxyRequest::LegEnd> ProxyRequest::RelayLeg(UpstreamCall& call, SseParser* sse,
                                                             bool done,
                                                             std::chrono::milliseconds idle_timeout,
                                                             bool chunked, RelayedTail& tail,
                                                             bool ok) {
  bool done_event = sse && sse->done();
  std::error_code upstream_ec;
  while (ok && !done && !done_event) {
    auto read_start = SteadyClockT::now();
    UpstreamBodyPiece next = co_await call.ReadBody(idle_timeout);
    upstream_wait_ += SecondsBetween(read_start, SteadyClockT::now());
    if (next.ec) {
      upstream_ec = next.ec;
      break;
    }
    done = next.done;
    std::string_view out = sse ? sse->Feed(next.data) : next.data;
    done_event = sse && sse->done();
    tail.Append(out);
    if (!out.empty()) ok = co_await WriteToClient(out, chunked);
  }
  std::optional<TokenUsage> usage = sse ? sse->usage() : std::nullopt;
  if (relay_bridge_ != nullptr && relay_bridge_->usage()) usage = relay_bridge_->usage();
  if (usage) {
    // A continued stream's legs are billed separately: their usage adds up.
    record_.prompt_tokens = record_.prompt_tokens.value_or(0) + usage->prompt_tokens;
    record_.completion_tokens = record_.completion_tokens.value_or(0) + usage->completion_tokens;
    record_.cached_prompt_tokens =
        record_.cached_prompt_tokens.value_or(0) + usage->cached_prompt_tokens;
  }
  LegEnd leg;
  leg.client_ok = ok;
  leg.upstream_ec = upstream_ec;
  leg.done = done;
  leg.done_event = done_event;
  if (!ok || client_gone_ || upstream_ec == UpstreamErrc::kCancelled) {
    leg.state = LegEnd::kClientGone;
  } else if (upstream_ec) {
    leg.state = LegEnd::kBroken;
  } else {
    leg.state = LegEnd::kEnded;
  }
  co_return leg;
}

// The end of a leg that was not continued: the terminating bytes (the drain deadline's or
// the break's error event, or the held-back rest and the last chunk) and its result.
asio::awaitable<AttemptResult> ProxyRequest::EndLeg(UpstreamCall& call, SseParser* sse,
                                                    const LegEnd& leg, bool chunked,
                                                    RelayedTail& tail, AttemptResult answered) {
  if (leg.client_ok && leg.upstream_ec && conn_.drain_cut) {
    // The worker's drain deadline cancelled the call (HttpServer::CutInFlight): the client
    // is still there and gets the error event; the backend did nothing wrong.
    keep_alive_ = false;
    record_.error = "stream cut by the drain deadline";
    std::string event(tail.EventCloser());
    event += StreamErrorEvent(StreamBrokenError("The stream was cut: the proxy is shutting down."));
    if (co_await WriteToClient(event, chunked) && chunked) co_await WriteToClient({}, true);
    co_return AttemptResult::Of(AttemptResult::Kind::kCancelled);
  }
  if (leg.state == LegEnd::kClientGone) {
    // The client went away (or stopped reading): cut the upstream at once.
    client_gone_ = true;
    keep_alive_ = false;
    call.Cancel();
    if (record_.error.empty()) record_.error = "client went away during the stream";
    co_return AttemptResult::Of(AttemptResult::Kind::kCancelled);
  }
  if (leg.state == LegEnd::kBroken) {
    // Bytes already went out: no retry. End with one error event, no [DONE]; the
    // partial event relayed last (an event over the framing limit) is ended first.
    keep_alive_ = false;
    std::string event(tail.EventCloser());
    event += StreamErrorEvent(
        StreamBrokenError("The upstream stream broke: " + leg.upstream_ec.message()));
    record_.error = "upstream stream broke";
    if (co_await WriteToClient(event, chunked) && chunked) co_await WriteToClient({}, true);
    co_return AttemptResult::Of(AttemptResult::Kind::kBrokenStream);
  }
  // After [DONE] nothing more is relayed (a held-back partial event included).
  bool ok = true;
  std::string rest(sse && !leg.done_event ? sse->Finish() : std::string_view());
  // A translated stream whose upstream ended without its end event is closed in the
  // client's protocol (message_stop, response.completed).
  if (relay_bridge_ != nullptr && !relay_bridge_->done()) rest += relay_bridge_->Finish();
  if (!rest.empty()) ok = co_await WriteToClient(rest, chunked);
  if (ok && chunked) ok = co_await WriteToClient({}, true);
  if (!ok) {
    keep_alive_ = false;
    client_gone_ = true;
  }
  if (leg.done_event && !leg.done) {
    // The client has its whole response; give the upstream a moment to end its body so
    // the connection can be reused (otherwise the call closes it).
    UpstreamBodyPiece after = co_await call.ReadBody(kAfterDoneGrace);
    if (!after.ec && !after.done) call.Cancel();
  }
  co_return answered;
}

// Mid-stream continuation (docs/routing.md "Slow and broken streams"): the stream broke
// after bytes went out, with text only so far. The same request goes to a `prefill: true`
// candidate with that text as an assistant prefill, and its new tokens are relayed in the
// original stream's framing (ContinuationFilter: same id, no second role chunk). A
// continuation that cannot start (no candidate, a refused prefill, no stream) tries the
// next candidate; one that breaks again may itself be continued. kFailed: the caller ends
// the stream with the error event, never with a fallback's own rejection.
asio::awaitable<ProxyRequest::ContinueEnd> ProxyRequest::Continue(ChatStreamTracker& tracker,
                                                                  bool chunked, RelayedTail& tail,
                                                                  size_t step, size_t broken,
                                                                  std::error_code& last_ec) {
  std::vector<bool> refused(table_->backend_count(), false);
  // A text prefill cannot carry reasoning: a continuation would stream it again, so a
  // stream that reasoned is not continued (docs/routing.md "Slow and broken streams").
  while (tracker.continuable() && !tracker.reasoning() && !client_gone_) {
    std::optional<Attempt> attempt = planner_->NextContinuation(step, broken, refused);
    if (!attempt) break;
    std::optional<std::string> prefilled = AppendAssistantPrefill(body_, tracker.text());
    if (!prefilled) break;
    const size_t index = attempt->backend;
    AttemptRun run(std::move(*attempt), *table_, &conn_.upstream_scratch, route_);
    CountAttempts();
    broken = index;
    step = run.attempt.step;
    if (!run.target.url) {
      refused[index] = true;
      ReportAttempt(run, AttemptResult::Of(AttemptResult::Kind::kConnectError));
      continue;
    }
    if (run.upstream_wire != Wire::kChat) {
      // A continuation is relayed with chat's rewrite (ContinuationFilter): chat backends only.
      refused[index] = true;
      continue;
    }
    const Config& config = table_->config;
    const StreamSettings settings = StreamSettingsFor(config, planner_->plan().alias, run.backend);
    run.start = SteadyClockT::now();
    UpstreamCall call(*ts_.pool);
    current_call_ = &call;
    const std::string_view upstream_body = BuildUpstreamRequest(run, *prefilled);
    std::error_code ec = co_await call.StartRaw(
        *run.target.url, conn_.upstream_scratch, upstream_body,
        UpstreamCallOptions{.connect_timeout = config.connect_timeout,
                            .response_timeout = run.backend.timeout.value_or(config.timeout),
                            .tls_insecure_skip_verify = run.backend.tls_insecure_skip_verify});
    run.resends = call.resends();
    resends_ += run.resends;
    upstream_wait_ += SecondsBetween(run.start, SteadyClockT::now());
    if (ec || client_gone_) {
      current_call_ = nullptr;
      ReportAttempt(
          run, client_gone_ ? AttemptResult::Of(AttemptResult::Kind::kCancelled) : ResultOf(ec));
      last_ec = ec;
      if (client_gone_) co_return ContinueEnd::kClientGone;
      refused[index] = true;
      continue;
    }
    run.head_latency = SecondsBetween(run.start, SteadyClockT::now());
    const unsigned status = call.status();
    if (status < 200 || status >= 300 || !IsEventStream(call.head()[http::field::content_type])) {
      // A refused prefill (or any answer that is not a stream): not for the client, and
      // that backend is not asked again for this request.
      refused[index] = true;
      std::string ignored;
      (void)co_await call.ReadAll(ignored, 64 * 1024, std::chrono::milliseconds(1000));
      current_call_ = nullptr;
      ReportAttempt(run, AttemptResult::Response(static_cast<int>(status),
                                                 call.head()[http::field::retry_after]));
      LogWarn("stream continuation refused", {{"backend", run.backend.name},
                                              {"status", std::to_string(status)},
                                              {"request_id", record_.request_id}});
      continue;
    }
    ContinuationFilter filter(tracker.id(), tracker.created());
    SseParserOptions options;
    options.drop_usage_only_events = RequestStreamUsage();
    options.tracker = &tracker;
    options.continuation = &filter;
    SseParser sse(options);
    ++record_.continued;
    record_.backend = run.backend.name;
    record_.model_resolved = run.attempt.model;
    const LegEnd leg =
        co_await RelayLeg(call, &sse, false, settings.stream_idle_timeout, chunked, tail, true);
    if (leg.state == LegEnd::kBroken) {
      current_call_ = nullptr;
      ReportAttempt(run, AttemptResult::Of(AttemptResult::Kind::kBrokenStream));
      last_ec = leg.upstream_ec;
      continue;  // continued again when it still can be
    }
    const AttemptResult end = co_await EndLeg(call, &sse, leg, chunked, tail,
                                              AttemptResult::Response(static_cast<int>(status)));
    current_call_ = nullptr;
    ReportAttempt(run, end);
    for (RequestObserver* o : p_.observers_) o->OnContinuation(run.backend.name, true);
    co_return leg.state == LegEnd::kClientGone ? ContinueEnd::kClientGone : ContinueEnd::kDone;
  }
  if (record_.continued > 0 || tracker.continuable()) {
    for (RequestObserver* o : p_.observers_) o->OnContinuation(record_.backend, false);
  }
  co_return ContinueEnd::kFailed;
}

// One piece to the client; an empty piece with `chunk` is the terminating chunk.
asio::awaitable<bool> ProxyRequest::WriteToClient(std::string_view data, bool chunk,
                                                  std::string_view prefix) {
  boost::system::error_code ec;
  auto write_start = SteadyClockT::now();
  conn_.ExpiresAfter(table_->config.stream_idle_timeout);
  char size_line[24];
  std::array<asio::const_buffer, 4> pieces;
  size_t count = 0;
  if (!prefix.empty()) pieces[count++] = asio::buffer(prefix.data(), prefix.size());
  if (!chunk) {
    if (!data.empty()) pieces[count++] = asio::buffer(data.data(), data.size());
  } else if (data.empty()) {
    pieces[count++] = asio::buffer("0\r\n\r\n", 5);
  } else {
    int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
    pieces[count++] = asio::buffer(size_line, static_cast<size_t>(n));
    pieces[count++] = asio::buffer(data.data(), data.size());
    pieces[count++] = asio::buffer("\r\n", 2);
  }
  ec = co_await WriteAll(conn_.socket, std::span<const asio::const_buffer>(pieces.data(), count));
  conn_.ExpiresNever();
  client_wait_ += SecondsBetween(write_start, SteadyClockT::now());
  if (!ec) {
    record_.bytes_out += data.size();
  } else if (!IsPeerGone(ec) && record_.error.empty()) {
    // Not a client that left: our write deadline (a client that stopped reading) or a
    // local error; the access log says which.
    record_.error = "client write failed: " + ec.message();
  }
  co_return !ec;
}

template <class Fields>
std::string& ProxyRequest::StartResponseHead(unsigned status, const Fields* upstream_head) {
  const unsigned version = parser_.get().version();
  std::string& head = conn_.head_scratch;
  head.clear();
  AppendStatusLine(head, version, status);
  bool has_request_id = false;
  if (upstream_head) {
    for (const auto& f : *upstream_head) {
      if (!KeepResponseHeader(f)) continue;
      if (beast::iequals(f.name_string(), kRequestIdHeader)) has_request_id = true;
      AppendField(head, f.name_string(), f.value());
    }
  }
  if (!has_request_id) AppendField(head, kRequestIdHeader, record_.request_id);
  AppendField(head, "x-llmproxy-backend", record_.backend.empty() ? "none" : record_.backend);
  AppendField(head, "x-llmproxy-attempts", static_cast<uint64_t>(record_.attempts));
  head += CorsFieldBlock();
  AppendConnection(head, version, keep_alive_);
  return head;
}

template <class Fields>
asio::awaitable<void> ProxyRequest::SendUpstreamResponse(unsigned status,
                                                         const Fields& upstream_head,
                                                         std::string_view body) {
  record_.status = static_cast<int>(status);
  record_.bytes_out = body.size();
  std::string& head = StartResponseHead(status, &upstream_head);
  AppendField(head, "Content-Length", static_cast<uint64_t>(body.size()));
  head += "\r\n";
  bool ok = co_await WriteRaw(conn_, head, body, table_->config.stream_idle_timeout);
  responded_ = true;
  if (!ok) {
    client_gone_ = true;
    keep_alive_ = false;
  }
}

asio::awaitable<void> ProxyRequest::SendError(const ProxyError& error,
                                              std::string_view extra_head) {
  record_.status = error.status;
  record_.error = error.message;
  const std::string body = ClientErrorBody(client_wire_, error);
  record_.bytes_out = body.size();
  std::string& head = StartResponseHead<http::fields>(static_cast<unsigned>(error.status), nullptr);
  head += extra_head;
  AppendField(head, "Content-Type", "application/json");
  AppendField(head, "Content-Length", static_cast<uint64_t>(body.size()));
  head += "\r\n";
  bool ok = co_await WriteRaw(conn_, head, body, kErrorWriteTimeout);
  responded_ = true;
  if (!ok) {
    client_gone_ = true;
    keep_alive_ = false;
  }
}

asio::awaitable<void> ProxyRequest::Linger() { co_await LingeringClose(conn_); }

// The client closed or reset its connection while we wait on the upstream: tokens cost
// money, so the upstream request is cancelled at once.
void ProxyRequest::OnClientGone(void* self) {
  auto* request = static_cast<ProxyRequest*>(self);
  request->client_gone_ = true;
  if (request->current_call_ != nullptr) request->current_call_->Cancel();
  if (request->hedge_call_ != nullptr) request->hedge_call_->Cancel();
  if (request->repeat_timer_ != nullptr) request->repeat_timer_->cancel();
}

// Phase 7: the record goes to every observer, whatever happened.
void ProxyRequest::Done() {
  auto end = SteadyClockT::now();
  if (client_gone_ && !responded_ && record_.status == 0) {
    record_.status = 499;  // nginx's "client closed request"
    if (record_.error.empty()) record_.error = "client went away";
  }
  record_.duration_seconds = SecondsBetween(start_, end);
  record_.overhead_seconds =
      std::max(0.0, record_.duration_seconds - upstream_wait_ - client_wait_);
  if (table_ && (record_.prompt_tokens || record_.completion_tokens)) {
    if (auto price = table_->config.prices.find(record_.model_resolved);
        price != table_->config.prices.end()) {
      record_.cost_usd = UsageCostUsd(price->second, record_.prompt_tokens.value_or(0),
                                      record_.completion_tokens.value_or(0),
                                      record_.cached_prompt_tokens.value_or(0));
    }
  }
  SettleLease();
  for (RequestObserver* o : p_.observers_) o->OnRequestDone(record_);
}

}  // namespace llmproxy
