// The proxied endpoints a client can call.
#pragma once

#include <string_view>

namespace llmproxy {

// The three proxied OpenAI endpoints (their upstream suffix is the route minus "/v1").
enum class ProxyRoute { kChatCompletions, kCompletions, kEmbeddings };
std::string_view RoutePath(ProxyRoute route);  // "/v1/chat/completions", ...

}  // namespace llmproxy
