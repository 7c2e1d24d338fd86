// libFuzzer target: the request-body scanner and the model rewrite (request_body.h) on
// arbitrary bytes. Checks (body_checks.h): offsets point at the tokens they name, a
// rewrite changes only the model value and the members it inserts, the rewritten body
// scans back with the new model, and on documents nlohmann can judge the two parsers
// agree. The input is the body itself, so seeds are real request bodies.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/body_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  llmproxy::fuzz::CheckBody(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
