// Loads config.yaml into a validated Config. One loader for both processes.
// Every problem is reported (not just the first), each with file:line:column, so an
// operator fixes a file in one pass; warnings do not make the load fail.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.h"

namespace llmproxy {

struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string message;

  // "file:line:column: message" for errors, "file:line:column: warning: message".
  std::string Format() const;
};

struct LoadResult {
  std::optional<Config> config;  // set only when there is no error
  std::vector<Diagnostic> diagnostics;

  bool ok() const { return config.has_value(); }
  std::vector<std::string> FormattedErrors() const;  // errors only, formatted
};

// Looks up an environment variable (injected so tests need not touch the process env).
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup ProcessEnv();

LoadResult LoadConfigFile(const std::string& path, const EnvLookup& env = ProcessEnv());
LoadResult LoadConfigString(std::string_view yaml, const std::string& filename,
                            const EnvLookup& env = ProcessEnv());

// Semantic checks shared by the loader and by workers receiving a pushed table
// (no positions: those belong to the loader). Empty when valid.
std::vector<std::string> ValidateConfig(const Config& config);

// One line for `llmproxy-ctl --check` and logs; never contains a key.
std::string Summarize(const Config& config);

// "180s", "500ms", "1m30s", "2h", "30d" -> milliseconds; nullopt when malformed.
std::optional<Millis> ParseDuration(std::string_view s);
std::string FormatDuration(Millis d);
// "10MiB", "512KiB", "1MB", "1048576" -> bytes; nullopt when malformed.
std::optional<uint64_t> ParseByteSize(std::string_view s);

}  // namespace llmproxy
