// What one proxied request did, filled in by the proxy pipeline as it runs and handed
// to the observers (metrics, access log) once at the end. Every string that becomes a
// metric label is a configuration name (backend, model) or a fixed word, never raw
// client input.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dataplane/routing/attempt_outcome.h"

namespace llmproxy {

struct RequestRecord {
  std::string request_id;
  std::string method;
  std::string path;  // the route ("/v1/chat/completions"), or "other" for unknown paths
  int status = 0;
  std::string model_requested;  // as the client sent it (logs only, never a label)
  std::string model_resolved;   // a configured model name, or empty
  std::string backend;          // configured backend name of the last attempt, or empty
  uint32_t attempts = 0;
  uint32_t continued = 0;  // streams continued on another candidate after a break
  bool hedged = false;     // a hedge attempt was started
  bool hedge_won = false;  // and its first token came first
  bool stream = false;
  std::optional<double> ttft_seconds;  // streams: first upstream chunk relayed
  double duration_seconds = 0;
  double overhead_seconds = 0;                // duration minus time waiting on upstreams
  std::optional<uint64_t> prompt_tokens;      // from `usage`
  std::optional<uint64_t> completion_tokens;  // from `usage`
  std::optional<uint64_t> cached_prompt_tokens;  // of prompt_tokens, from `usage`
  uint64_t bytes_in = 0;                      // request body
  uint64_t bytes_out = 0;                     // response body
  std::string client_address;
  std::string key_name;  // the client key's configured name (auth.keys), or empty
  // The key limit that refused the request with 429 ("requests", "tokens", "parallel",
  // "budget", "control_plane"; docs/limits.md), or empty.
  std::string_view limited_by;
  bool loss_admitted = false;      // admitted by limits.on_control_plane_loss: allow
  std::optional<double> cost_usd;  // the usage priced by `prices:` (a priced model, usage known)
  std::string error;     // the proxy's own error message when it made the response
};

// Hooks the pipeline calls; implemented by metrics and the access log. Must be cheap
// and thread-safe: they run on the request's io thread.
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void OnRequestStart() {}
  virtual void OnAttempt(std::string_view /*backend*/, AttemptOutcome /*outcome*/) {}
  virtual void OnRequestDone(const RequestRecord& /*record*/) {}
  // An active health probe of an ejected backend ended (dataplane/proxy/prober.h); called
  // on the prober's thread.
  virtual void OnProbe(std::string_view /*backend*/, bool /*success*/) {}
  // A broken stream's rescue ended (docs/routing.md "Slow and broken streams"): continued
  // to its end on `backend`, or not (`backend` is then the last one that served it).
  virtual void OnContinuation(std::string_view /*backend*/, bool /*success*/) {}
  // A hedge attempt on `backend` started (won false), or its first token won (won true).
  virtual void OnHedge(std::string_view /*backend*/, bool /*won*/) {}
};

}  // namespace llmproxy
