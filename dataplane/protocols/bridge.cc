#include "dataplane/protocols/bridge.h"

#include <utility>

namespace llmproxy {

RequestTranslation TranslateRequest(Wire client, Wire upstream, std::string_view body,
                                    const BridgeRequestOptions& options) {
  if (client == Wire::kMessages && upstream == Wire::kChat) {
    return MessagesRequestToChat(body, MessagesToChatOptions{.model = options.model,
                                                             .include_usage = true,
                                                             .reasoning = options.reasoning});
  }
  if (client == Wire::kResponses && upstream == Wire::kChat) {
    return ResponsesRequestToChat(body,
                                  ResponsesToChatOptions{.model = options.model, .include_usage = true});
  }
  if (client == Wire::kChat && upstream == Wire::kMessages) {
    return ChatRequestToMessages(body, ChatToMessagesOptions{.model = options.model});
  }
  if (client == Wire::kResponses && upstream == Wire::kMessages) {
    RequestTranslation chat = ResponsesRequestToChat(
        body, ResponsesToChatOptions{.model = options.model, .include_usage = false});
    if (!chat.error.empty()) return chat;
    RequestTranslation messages =
        ChatRequestToMessages(chat.body, ChatToMessagesOptions{.model = options.model});
    messages.dropped.insert(messages.dropped.begin(), chat.dropped.begin(), chat.dropped.end());
    messages.stream = chat.stream;
    return messages;
  }
  RequestTranslation same;
  same.body.assign(body);
  return same;
}

std::optional<std::string> TranslateAnswer(Wire client, Wire upstream, std::string_view body,
                                           std::string_view model, const ResponsesEcho* echo) {
  std::optional<std::string> chat;
  std::string_view chat_body = body;
  if (upstream == Wire::kMessages && client != Wire::kMessages) {
    chat = MessagesResponseToChat(body, model);
    if (!chat) return std::nullopt;
    chat_body = *chat;
  }
  switch (client) {
    case Wire::kChat:
      if (chat) return chat;
      break;
    case Wire::kMessages:
      if (upstream == Wire::kChat) return ChatResponseToMessages(chat_body, model);
      break;
    case Wire::kResponses:
      if (upstream != Wire::kResponses) {
        static const ResponsesEcho kNoEcho{};
        return ChatResponseToResponses(chat_body, echo ? *echo : kNoEcho, model);
      }
      break;
    case Wire::kPlain:
      break;
  }
  return std::string(body);
}

std::string TranslateErrorAnswer(Wire client, Wire upstream, int status, std::string_view body) {
  if (client == upstream) return std::string(body);
  switch (client) {
    case Wire::kMessages:
      return ErrorBodyToMessages(status, body);
    case Wire::kResponses:
      if (upstream == Wire::kMessages) {
        return ErrorBodyToResponses(status, ErrorBodyToChat(status, body));
      }
      return ErrorBodyToResponses(status, body);
    case Wire::kChat:
      return ErrorBodyToChat(status, body);
    case Wire::kPlain:
      break;
  }
  return std::string(body);
}

std::string ClientErrorBody(Wire client, const ProxyError& error) {
  if (client == Wire::kMessages) return ErrorBodyToMessages(error.status, error.Json());
  return error.Json();
}

StreamBridge::StreamBridge(Wire client, Wire upstream, std::string_view model,
                           const ResponsesEcho* echo, bool include_usage)
    : client_(client), upstream_(upstream) {
  if (upstream == Wire::kMessages) from_messages_.emplace(model, client == Wire::kChat && include_usage);
  if (client == Wire::kMessages && upstream == Wire::kChat) to_messages_.emplace(model);
  if (client == Wire::kResponses && upstream != Wire::kResponses) {
    static const ResponsesEcho kNoEcho{};
    to_responses_.emplace(echo ? *echo : kNoEcho, model);
  }
}

std::string_view StreamBridge::OnEvent(std::string_view event, size_t readable_after) {
  out_.clear();
  if (failed_) return out_;
  if (upstream_ == Wire::kChat) {
    ChatEvent(event, readable_after);
    return out_;
  }
  if (upstream_ == Wire::kMessages) {
    ReadSseFields(event, fields_);
    if (!fields_.has_data) return out_;
    chat_.clear();
    from_messages_->OnEvent(fields_.event, fields_.data, chat_);
    // The translator writes whole events of its own, each ending in one blank line.
    size_t pos = 0;
    while (pos < chat_.size()) {
      size_t end = chat_.find("\n\n", pos);
      end = end == std::string::npos ? chat_.size() : end + 2;
      const std::string_view one = std::string_view(chat_).substr(pos, end - pos);
      if (client_ == Wire::kMessages) {
        if (tracker_ != nullptr) tracker_->Observe(one);
      } else {
        ChatEvent(one, 0);
      }
      pos = end;
    }
    if (client_ == Wire::kMessages) out_.assign(event);  // native: byte for byte
    return out_;
  }
  // A native Responses stream: forwarded as it came, its events watched by name.
  ReadSseFields(event, fields_);
  const std::string_view name = fields_.event;
  if (name.ends_with(".delta") || name == "response.completed" || name == "response.failed" ||
      name == "response.incomplete" || name == "error") {
    native_token_ = true;
  }
  if (name == "response.completed" || name == "response.failed" ||
      name == "response.incomplete") {
    native_done_ = true;
  }
  out_.assign(event);
  return out_;
}

void StreamBridge::ChatEvent(std::string_view event, size_t readable_after) {
  if (tracker_ != nullptr) tracker_->Observe(event, readable_after);
  if (client_ == Wire::kChat) {
    out_.append(event);
    return;
  }
  ReadSseFields(event, fields_);
  if (!fields_.has_data) return;
  if (to_messages_) {
    to_messages_->OnChunk(fields_.data, out_);
  } else if (to_responses_) {
    to_responses_->OnChunk(fields_.data, out_);
  }
}

void StreamBridge::OnUnframed() { ++unframed_; }

bool StreamBridge::done() const {
  if (to_messages_) return to_messages_->done();
  if (to_responses_) return to_responses_->done();
  if (from_messages_) return from_messages_->done();
  return native_done_;
}

bool StreamBridge::first_token() const {
  if (native_token_) return true;
  return tracker_ != nullptr && tracker_->first_token();
}

std::string StreamBridge::Finish() {
  std::string out;
  if (failed_) return out;
  if (from_messages_ && client_ != Wire::kMessages) {
    chat_.clear();
    from_messages_->Finish(chat_);
    size_t pos = 0;
    out_.clear();
    while (pos < chat_.size()) {
      size_t end = chat_.find("\n\n", pos);
      end = end == std::string::npos ? chat_.size() : end + 2;
      ChatEvent(std::string_view(chat_).substr(pos, end - pos), 0);
      pos = end;
    }
    out = std::move(out_);
    out_.clear();
  }
  if (to_messages_) to_messages_->Finish(out);
  if (to_responses_) to_responses_->Finish(out);
  return out;
}

std::string StreamBridge::Fail(const ProxyError& error) {
  std::string out;
  if (failed_) return out;
  failed_ = true;
  switch (client_) {
    case Wire::kMessages:
      if (to_messages_) {
        to_messages_->Fail("api_error", error.message, out);
      } else {
        out = MessagesErrorEvent("api_error", error.message);
      }
      return out;
    case Wire::kResponses:
      if (to_responses_) {
        to_responses_->Fail(error.code.empty() ? "server_error" : error.code, error.message, out);
        return out;
      }
      break;
    case Wire::kChat:
    case Wire::kPlain:
      break;
  }
  return error.SseEvent();
}

std::optional<TokenUsage> StreamBridge::usage() const {
  if (from_messages_) return from_messages_->usage();
  return std::nullopt;
}

}  // namespace llmproxy
