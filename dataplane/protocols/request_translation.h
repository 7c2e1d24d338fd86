// What a protocol translator makes of a client request body for an upstream of another
// protocol (responses_translate.h, and the Anthropic Messages translator): the upstream
// body, or the reason the client gets a 400. Pure data.
#pragma once

#include <string>
#include <vector>

namespace llmproxy {

struct RequestTranslation {
  std::string body;   // the upstream body (one JSON object)
  std::string error;  // non-empty: the client gets 400 invalid_request_error with this message
  // fields not translated (distinct names, at most ~16) for one debug log line
  std::vector<std::string> dropped;
  bool stream = false;  // the client asked for a stream
};

}  // namespace llmproxy
