#!/usr/bin/env bash
# Codex (`codex exec`) against an OpenAI Responses endpoint: prints the final answer and
# exits 0 when the CLI completed the prompt with one. Isolated: a fresh CODEX_HOME whose
# config.toml defines one model provider (wire_api "responses") at BASE_URL, turns web
# search off (a hosted tool a chat backend cannot run: the gateway refuses it, see
# docs/protocols.md) and analytics off, and a fresh working directory.
#   codex.sh BASE_URL KEY [PROMPT]     (BASE_URL with /v1; env MODEL, default gpt-e2e)
# Against llmproxy-mockllm the first answer calls the first function tool (exec_command)
# with {"q":...}; Codex reports the bad arguments as a function_call_output and the mock's
# second answer "tool said: failed to parse function arguments: ..." is what this prints.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
base="${1:?usage: codex.sh BASE_URL KEY [PROMPT]}"
key="${2:?usage: codex.sh BASE_URL KEY [PROMPT]}"
prompt="${3:-Say hi}"
bin="$here/node_modules/.bin/codex"
[ -x "$bin" ] || { echo "codex.sh: $bin missing (npm ci --prefix $here)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/codex" "$tmp/work"
cat > "$tmp/codex/config.toml" <<TOML
model = "${MODEL:-gpt-e2e}"
model_provider = "llmproxy"
web_search = "disabled"

[model_providers.llmproxy]
name = "llmproxy"
base_url = "$base"
env_key = "LLMPROXY_KEY"
wire_api = "responses"

[analytics]
enabled = false
TOML
out="$(cd "$tmp/work" && env -i PATH="$PATH" HOME="$tmp/work" CODEX_HOME="$tmp/codex" \
  LLMPROXY_KEY="$key" timeout "${CLI_TIMEOUT:-120}" "$bin" exec --skip-git-repo-check \
  --output-last-message "$tmp/last" "$prompt" < /dev/null > "$tmp/stdout" 2> "$tmp/stderr")" || {
  rc=$?
  echo "codex.sh: codex exited $rc" >&2
  cat "$tmp/stderr" "$tmp/stdout" >&2
  exit 1
}
answer="$(cat "$tmp/last" 2>/dev/null || true)"
if [ -z "${answer//[[:space:]]/}" ]; then
  echo "codex.sh: no final answer" >&2
  cat "$tmp/stderr" "$tmp/stdout" >&2
  exit 1
fi
printf '%s\n' "$answer"
