// `${NAME}` expansion of config values from the environment, so keys stay out of files.
// A value may be a whole `${NAME}` or contain several inside other text; `$` not followed
// by `{` is literal. Errors name the variable but never echo the value around it (it may
// hold a secret).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/config/config_loader.h"

namespace llmproxy {

struct ExpandResult {
  std::string value;
  std::vector<std::string> errors;  // e.g. "environment variable 'DEEPSEEK_API_KEY' is not set"
  bool expanded = false;            // true when at least one ${NAME} was substituted

  bool ok() const { return errors.empty(); }
};

ExpandResult ExpandEnv(std::string_view text, const EnvLookup& env);

}  // namespace llmproxy
