// JSON string escaping shared by every place that writes JSON by hand (error bodies,
// logs, the request-body rewriter, local endpoints): one implementation, one behaviour.
#pragma once

#include <string>
#include <string_view>

namespace llmproxy {

// Appends `s` escaped for use inside a JSON string (no surrounding quotes): `"`, `\`
// and control characters are escaped; other bytes, UTF-8 included, are copied.
void AppendJsonEscaped(std::string& out, std::string_view s);

// Appends `s` as a quoted JSON string.
inline void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  AppendJsonEscaped(out, s);
  out.push_back('"');
}

}  // namespace llmproxy
