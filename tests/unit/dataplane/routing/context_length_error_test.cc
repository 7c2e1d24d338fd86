// Which 400s say "too long for this model" (docs/routing.md "Too long for the model"), in
// the providers' own words, and which window they state; every other 400 is not one.
#include "dataplane/routing/context_length_error.h"

#include <gtest/gtest.h>

#include <string>

namespace llmproxy {
namespace {

std::optional<uint64_t> Window(std::string_view body) {
  auto e = ReadContextLengthError(body);
  EXPECT_TRUE(e) << body;
  return e ? e->stated_window : std::nullopt;
}

TEST(ContextLengthError, TheProvidersWordingsAreRecognised) {
  // OpenAI (and DeepSeek, vLLM: the same message).
  EXPECT_EQ(Window(R"({"error":{"message":"This model's maximum context length is 8192 tokens. )"
                   R"(However, your messages resulted in 9000 tokens. Please reduce the length )"
                   R"(of the messages.","type":"invalid_request_error","param":"messages",)"
                   R"("code":"context_length_exceeded"}})"),
            8192u);
  // Anthropic.
  EXPECT_EQ(Window(R"({"type":"error","error":{"type":"invalid_request_error",)"
                   R"("message":"prompt is too long: 203524 tokens > 200000 maximum"}})"),
            200000u);
  // Mistral.
  EXPECT_EQ(Window(R"({"object":"error","message":"Prompt contains 40000 tokens and 0 draft )"
                   R"(tokens, too large for model with 32768 maximum context length",)"
                   R"("type":"invalid_request_message_error","code":"3051"})"),
            32768u);
  // Gemini's OpenAI-compatible endpoint (a list around the object is not read: bare).
  EXPECT_EQ(
      Window(R"({"error":{"code":400,"message":"The input token count (1200000) exceeds )"
             R"(the maximum number of tokens allowed (1,048,576).","status":"INVALID_ARGUMENT"}})"),
      1048576u);
  // Only the code, no number; a bare string error; upper case.
  EXPECT_EQ(Window(R"({"error":{"message":"Bad request","code":"context_length_exceeded"}})"),
            std::nullopt);
  EXPECT_EQ(Window(R"({"error":"Input is too long for requested model."})"), std::nullopt);
  EXPECT_EQ(Window(R"({"detail":"CONTEXT WINDOW OF 4,096 TOKENS EXCEEDED"})"), 4096u);
  EXPECT_EQ(
      Window(R"({"error":{"message":"Please reduce the length of the messages or )"
             R"(completion.","type":"invalid_request_error","code":"context_length_exceeded"}})"),
      std::nullopt);
}

TEST(ContextLengthError, OtherClientErrorsAreNotOne) {
  for (
      std::string_view body : {
          R"({"error":{"message":"Your request was rejected as a result of our safety )"
          R"(system.","type":"invalid_request_error","code":"content_policy_violation"}})",
          R"({"error":{"message":"Invalid value for 'temperature': 3.","type":)"
          R"("invalid_request_error","param":"temperature","code":"invalid_value"}})",
          R"({"error":{"message":"max_tokens is too large: 10000.","type":"invalid_request_error"}})",
          // The words outside the error object's code/type/message do not count.
          R"({"error":{"message":"bad request"},"hint":"maximum context length"})",
          R"({"messages":["context_length_exceeded"]})",
          "context_length_exceeded",                         // not JSON
          R"({"error":{"message":"maximum context length)",  // cut
          "",
          "[1,2,3]",
      }) {
    EXPECT_FALSE(ReadContextLengthError(body)) << body;
  }
}

TEST(ContextLengthError, OnlyTheFirstFewKiBAreLookedAt) {
  std::string body = R"({"error":{"code":"context_length_exceeded","message":")";
  body.append(kMaxContextErrorBytes, 'x');
  body += R"("}})";
  EXPECT_FALSE(ReadContextLengthError(body)) << "a body over the limit is not parsed";
  // Deep nesting within the limit is bounded too (no crash).
  std::string deep(kMaxContextErrorBytes / 2, '[');
  EXPECT_FALSE(ReadContextLengthError(deep));
}

}  // namespace
}  // namespace llmproxy
