// llmproxy-mockllm: the MockLlm fake upstream as a process, for the demo (`make run`),
// the benchmark and manual poking with curl. Runs until SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>

#include "tests/mockllm/mock_llm.h"

namespace {

constexpr std::string_view kUsage = R"(usage: llmproxy-mockllm [--port P] [--name N] [options]

A fake LLM upstream: POST /v1/chat/completions, /v1/completions, /v1/embeddings,
/v1/responses (OpenAI Responses), /v1/messages and /v1/messages/count_tokens (Anthropic
Messages; needs anthropic-version and x-api-key or Authorization), all also without /v1;
GET /v1/models, GET /mock/stats. Replies echo the model they were asked for;
"stream": true gives SSE chunks and [DONE] (Responses and Messages: their event streams).
A request with tools whose last turn is a user message calls the first tool with
{"q":"tok0 ..."}; one ending with a tool result answers "tool said: <result>".

options:
  --port P            port to listen on (default 0: any free port, printed on stderr)
  --host H            address to bind (default 127.0.0.1)
  --name N            name sent back in x-mock-name (default "mock")
  --threads T         I/O threads (default 1)
  --models a,b        models listed by GET /v1/models (default mock-small,mock-large)
  --chunks N          content chunks per stream (default 5)
  --chunk-gap-ms MS   gap between stream chunks (default 0)
  --delay-ms MS       wait before every reply's headers (a slow backend)
  --status CODE       answer every request with this error status (a broken backend)
  --tls-cert FILE     serve HTTPS with this PEM certificate chain (needs --tls-key)
  --tls-key FILE      PEM private key for --tls-cert
  --verbose           one stderr line per request
  --help              this text

Per-request faults, as request headers: x-mock-status, x-mock-retry-after,
x-mock-delay-ms, x-mock-first-chunk-delay-ms, x-mock-first-token-delay-ms,
x-mock-chunks, x-mock-chunk-gap-ms, x-mock-die-after-chunks, x-mock-partial-event-bytes,
x-mock-stall-after-chunks, x-mock-after-done: close|stall, x-mock-hang: 1,
x-mock-close: 1, x-mock-garbage: 1, x-mock-body, x-mock-unavailable-for-ms,
x-mock-context-length-exceeded: 1, x-mock-reject-prefill: 1, x-mock-tool-call: 1,
x-mock-no-tools: 1
(see docs/mockllm.md).
A chat request ending with an assistant message is continued: the reply holds only the
part of "tok0 tok1 ..." after that prefill.
)";

bool ParseNumber(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

int UsageError(const std::string& msg) {
  std::cerr << "llmproxy-mockllm: " << msg << "\n(see llmproxy-mockllm --help)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  llmproxy::MockLlmOptions opts;
  opts.record_requests = false;  // nobody can read them from outside; keep memory flat
  llmproxy::MockFault fault;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--verbose") {
      opts.log_requests = true;
      continue;
    }
    if (i + 1 >= argc) return UsageError("missing value for " + std::string(a));
    const char* v = argv[++i];
    long n = 0;
    if (a == "--port") {
      if (!ParseNumber(v, 0, 65535, &n)) return UsageError("bad --port " + std::string(v));
      opts.port = static_cast<uint16_t>(n);
    } else if (a == "--host") {
      opts.host = v;
    } else if (a == "--name") {
      opts.name = v;
    } else if (a == "--threads") {
      if (!ParseNumber(v, 1, 256, &n)) return UsageError("bad --threads " + std::string(v));
      opts.threads = static_cast<int>(n);
    } else if (a == "--models") {
      opts.models.clear();
      std::stringstream ss(v);
      for (std::string m; std::getline(ss, m, ',');) {
        if (!m.empty()) opts.models.push_back(m);
      }
    } else if (a == "--chunks") {
      if (!ParseNumber(v, 0, 1000000, &n)) return UsageError("bad --chunks " + std::string(v));
      opts.chunks = static_cast<int>(n);
    } else if (a == "--chunk-gap-ms") {
      if (!ParseNumber(v, 0, 3600000, &n)) return UsageError("bad --chunk-gap-ms");
      opts.chunk_gap_ms = static_cast<int>(n);
    } else if (a == "--delay-ms") {
      if (!ParseNumber(v, 0, 3600000, &n)) return UsageError("bad --delay-ms");
      fault.delay_ms = static_cast<int>(n);
    } else if (a == "--status") {
      if (!ParseNumber(v, 100, 599, &n)) return UsageError("bad --status");
      fault.status = static_cast<int>(n);
    } else if (a == "--tls-cert") {
      opts.tls_cert_file = v;
    } else if (a == "--tls-key") {
      opts.tls_key_file = v;
    } else {
      return UsageError("unknown option " + std::string(a));
    }
  }
  if (opts.tls_cert_file.empty() != opts.tls_key_file.empty()) {
    return UsageError("--tls-cert and --tls-key go together");
  }

  // Block the stop signals before the server threads exist so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    llmproxy::MockLlm mock(opts);
    if (!fault.empty()) mock.SetDefaultFault(fault);
    std::cerr << "llmproxy-mockllm " << mock.name() << " listening on " << mock.BaseUrl()
              << " port=" << mock.port() << std::endl;
    int sig = 0;
    sigwait(&stop_signals, &sig);
    mock.Stop();
    auto stats = mock.Stats();
    std::cerr << "llmproxy-mockllm " << mock.name() << " stopped: requests=" << stats.requests
              << " cancelled=" << stats.cancelled << std::endl;
  } catch (const std::exception& e) {
    std::cerr << e.what() << std::endl;
    return 1;
  }
  return 0;
}
