// Between the client's protocol and the upstream's (docs/protocols.md): the request body,
// a whole answer, an error answer and a stream, each translated through chat completions
// as the pivot. Anthropic Messages <-> chat is anthropic_translate.h, Responses -> chat is
// responses_translate.h; this file picks and chains them for one (client, upstream) pair,
// e.g. a Responses client on an Anthropic backend: Responses -> chat -> Messages for the
// request, Messages -> chat -> Responses for the answer. Pure: no I/O.
//
// StreamBridge is the stream relay's SseParser hook (sse_parser.h): each complete upstream
// event goes out at once as the client's events, never buffered. It also gives the rescues
// of docs/routing.md "Slow and broken streams" a chat view of any upstream: the first-token
// tracker observes the chat events an Anthropic stream translates to, and a native stream
// (client and upstream in the same protocol) is forwarded byte for byte while it is watched.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "dataplane/protocols/anthropic_translate.h"
#include "dataplane/protocols/chat_stream.h"
#include "dataplane/protocols/error_response.h"
#include "dataplane/protocols/json_reader.h"
#include "dataplane/protocols/responses_translate.h"
#include "dataplane/protocols/routes.h"
#include "dataplane/protocols/sse_parser.h"

namespace llmproxy {

struct BridgeRequestOptions {
  std::string_view model;  // the upstream model name
  ReasoningStyle reasoning = ReasoningStyle::kNone;
};

// The client's body in the upstream's protocol (client != upstream, both not kPlain).
RequestTranslation TranslateRequest(Wire client, Wire upstream, std::string_view body,
                                    const BridgeRequestOptions& options);

// A whole 2xx upstream answer in the client's protocol; nullopt when it is not a usable
// answer of the upstream's protocol. `echo`: the Responses request's echo (client
// kResponses only). `model`: reported when the upstream's answer names none.
std::optional<std::string> TranslateAnswer(Wire client, Wire upstream, std::string_view body,
                                           std::string_view model, const ResponsesEcho* echo);

// An upstream error answer (status >= 400, any body) in the client's protocol.
std::string TranslateErrorAnswer(Wire client, Wire upstream, int status, std::string_view body);

// One of the proxy's own errors (error_response.h) in the client's protocol: the body, and
// the event that ends a stream that broke.
std::string ClientErrorBody(Wire client, const ProxyError& error);

class StreamBridge final : public SseEventHook {
 public:
  // `include_usage`: a chat client asked for the usage chunk (stream_options). `echo`:
  // client kResponses only, kept by the caller for the bridge's life.
  StreamBridge(Wire client, Wire upstream, std::string_view model, const ResponsesEcho* echo,
               bool include_usage);

  // The first-token tracker (chat_stream.h), observing the chat view of every event.
  void SetTracker(ChatStreamTracker* tracker) { tracker_ = tracker; }

  std::string_view OnEvent(std::string_view event, size_t readable_after) override;
  void OnUnframed() override;
  bool done() const override;

  // A real token arrived (the tracker's rule, or for a native Responses stream any
  // output delta, its completion or an error).
  bool first_token() const;
  // The upstream ended without its end event: the client's closing events (may be empty).
  std::string Finish();
  // The stream broke: the client's error event (none was sent before).
  std::string Fail(const ProxyError& error);
  // Usage read from an Anthropic upstream's events (a chat upstream's is SseParser's).
  std::optional<TokenUsage> usage() const;
  uint64_t unframed() const { return unframed_; }

 private:
  // One chat event (raw SSE bytes): to the tracker, then to the client's encoder.
  void ChatEvent(std::string_view event, size_t readable_after);

  Wire client_;
  Wire upstream_;
  ChatStreamTracker* tracker_ = nullptr;
  std::optional<MessagesStreamToChat> from_messages_;  // upstream kMessages
  std::optional<ChatStreamToMessages> to_messages_;    // client kMessages, upstream kChat
  std::optional<ChatStreamToResponses> to_responses_;  // client kResponses, upstream not native
  std::string out_;
  std::string chat_;  // an Anthropic event's chat events
  SseFields fields_;
  bool native_token_ = false;
  bool native_done_ = false;
  bool failed_ = false;
  uint64_t unframed_ = 0;
};

}  // namespace llmproxy
