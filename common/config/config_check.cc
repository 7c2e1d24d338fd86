#include "common/config/config_check.h"

#include "common/config/config_loader.h"

namespace llmproxy {

int RunConfigCheck(const std::string& path, std::ostream& out, std::ostream& err) {
  const LoadResult result = LoadConfigFile(path);
  std::size_t errors = 0;
  for (const Diagnostic& d : result.diagnostics) {
    err << d.Format() << '\n';
    if (d.severity == Diagnostic::Severity::kError) ++errors;
  }
  if (!result.ok()) {
    err << "config check failed: " << errors << (errors == 1 ? " error" : " errors") << '\n';
    err.flush();
    return 1;
  }
  out << Summarize(*result.config) << '\n';
  out.flush();
  return 0;
}

}  // namespace llmproxy
