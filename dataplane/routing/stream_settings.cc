#include "dataplane/routing/stream_settings.h"

namespace llmproxy {

StreamSettings StreamSettingsFor(const Config& config, const ModelAlias* alias,
                                 const BackendConfig& backend) {
  StreamSettings s{config.first_token_timeout, config.stream_idle_timeout};
  if (alias != nullptr) {
    s.first_token_timeout = alias->first_token_timeout.value_or(s.first_token_timeout);
    s.stream_idle_timeout = alias->stream_idle_timeout.value_or(s.stream_idle_timeout);
  }
  s.first_token_timeout = backend.first_token_timeout.value_or(s.first_token_timeout);
  s.stream_idle_timeout = backend.stream_idle_timeout.value_or(s.stream_idle_timeout);
  return s;
}

}  // namespace llmproxy
