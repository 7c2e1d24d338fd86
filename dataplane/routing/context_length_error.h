// Tells a 400 that says "the prompt does not fit this model's context window" from the
// other 400s (docs/routing.md "Too long for the model"): only the first is worth a larger
// model of the alias; every other 400 (a content-policy refusal, a bad parameter) is the
// user's answer and goes back as it came.
//
// The body is parsed as JSON (at most kMaxContextErrorBytes of it; a longer body is not
// one) and its error object's "code", "type" and "message" (OpenAI's {"error":{...}},
// Anthropic's {"type":"error","error":{...}}, or a bare {"message"} / {"error":"..."} /
// {"detail":"..."}) are matched, case-insensitively, against the providers' wordings:
// code context_length_exceeded (OpenAI, Azure, Groq, DeepSeek), "maximum context length"
// (OpenAI, vLLM, Mistral), "prompt is too long" (Anthropic), "context window",
// "context length", "reduce the length of the messages", "input is too long",
// "too many tokens", "exceeds the maximum number of tokens". Pure; cost bounded by the
// byte limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace llmproxy {

inline constexpr size_t kMaxContextErrorBytes = 8 * 1024;

struct ContextLengthError {
  // The window the message states, when it states one: "maximum context length is 8192
  // tokens", "> 200000 maximum", "context window of 32768", "maximum number of tokens
  // allowed (1048576)".
  std::optional<uint64_t> stated_window;
};

// nullopt unless `body` is such an error.
std::optional<ContextLengthError> ReadContextLengthError(std::string_view body);

}  // namespace llmproxy
