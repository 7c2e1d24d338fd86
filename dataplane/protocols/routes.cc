#include "dataplane/protocols/routes.h"

namespace llmproxy {

std::string_view RoutePath(ProxyRoute route) {
  switch (route) {
    case ProxyRoute::kChatCompletions:
      return "/v1/chat/completions";
    case ProxyRoute::kCompletions:
      return "/v1/completions";
    case ProxyRoute::kEmbeddings:
      return "/v1/embeddings";
  }
  return "";
}

}  // namespace llmproxy
