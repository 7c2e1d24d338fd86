// The stream deadlines and hedging that apply to one candidate of one request
// (docs/routing.md "Slow and broken streams"): a backend's own setting, else the alias's
// (when the client asked for an alias), else the top-level one. Pure.
#pragma once

#include "common/config/config.h"

namespace llmproxy {

struct StreamSettings {
  Millis first_token_timeout{0};  // 0 = off
  Millis stream_idle_timeout{0};
};

// `alias` may be null (the request did not name an alias).
StreamSettings StreamSettingsFor(const Config& config, const ModelAlias* alias,
                                 const BackendConfig& backend);

}  // namespace llmproxy
