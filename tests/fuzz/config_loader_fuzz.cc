// libFuzzer target: config.yaml loading (config_loader.h) from arbitrary text. The loader
// must never crash or throw, only report; and what it accepts, the shared validator
// accepts too (workers re-check pushed tables with ValidateConfig). ${NAME} references
// expand from a fixed fake environment, so the process environment does not matter.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "common/config/config_loader.h"

namespace {

std::optional<std::string> FakeEnv(std::string_view name) {
  if (name == "OPENAI_API_KEY") return std::string("sk-fuzz");
  if (name == "EMPTY") return std::string();
  if (name == "PORT") return std::string("8080");
  return std::nullopt;
}

void Check(bool cond, const char* what) {
  if (cond) return;
  std::fprintf(stderr, "fuzz invariant failed: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  const llmproxy::LoadResult result = llmproxy::LoadConfigString(yaml, "fuzz.yaml", &FakeEnv);
  const std::vector<std::string> errors = result.FormattedErrors();
  if (result.ok()) {
    Check(errors.empty(), "an accepted config carries no error");
    Check(llmproxy::ValidateConfig(*result.config).empty(),
          "an accepted config passes ValidateConfig");
    Check(!llmproxy::Summarize(*result.config).empty(), "Summarize says something");
  } else {
    Check(!errors.empty(), "a refused config says why");
    for (const std::string& e : errors) Check(!e.empty(), "no empty error line");
  }
  for (const llmproxy::Diagnostic& d : result.diagnostics) {
    Check(d.line >= 0 && d.column >= 0, "positions are not negative");
  }
  return 0;
}
