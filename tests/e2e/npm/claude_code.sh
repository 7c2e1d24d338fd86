#!/usr/bin/env bash
# Claude Code (`claude -p`) against an Anthropic Messages endpoint: prints the answer and
# exits 0 when the CLI completed the prompt with one. Isolated: a fresh HOME and working
# directory, no telemetry, no auto-update, no other traffic.
#   claude_code.sh BASE_URL KEY [PROMPT]     (BASE_URL without /v1; env MODEL picks --model)
# Against llmproxy-mockllm the first answer calls the first tool (Agent) with {"q":...};
# Claude Code rejects the input and sends the error back as a tool_result, and the mock's
# second answer "tool said: <tool_use_error>..." is what this prints.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
base="${1:?usage: claude_code.sh BASE_URL KEY [PROMPT]}"
key="${2:?usage: claude_code.sh BASE_URL KEY [PROMPT]}"
prompt="${3:-Say hi}"
bin="$here/node_modules/.bin/claude"
[ -x "$bin" ] || { echo "claude_code.sh: $bin missing (npm ci --prefix $here)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/work"
args=(-p "$prompt")
[ -n "${MODEL:-}" ] && args+=(--model "$MODEL")
out="$(cd "$tmp/work" && env -i PATH="$PATH" HOME="$tmp/home" \
  ANTHROPIC_BASE_URL="$base" ANTHROPIC_API_KEY="$key" \
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 \
  ${ANTHROPIC_CUSTOM_HEADERS:+ANTHROPIC_CUSTOM_HEADERS="$ANTHROPIC_CUSTOM_HEADERS"} \
  timeout "${CLI_TIMEOUT:-120}" "$bin" "${args[@]}" < /dev/null 2> "$tmp/stderr")" || {
  rc=$?
  echo "claude_code.sh: claude exited $rc" >&2
  cat "$tmp/stderr" >&2
  printf '%s\n' "$out" >&2
  exit 1
}
if [ -z "${out//[[:space:]]/}" ]; then
  echo "claude_code.sh: empty answer" >&2
  cat "$tmp/stderr" >&2
  exit 1
fi
printf '%s\n' "$out"
