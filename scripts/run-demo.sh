#!/usr/bin/env bash
# run-demo.sh CONFIG BIN_DIR -- what `make run` does.
#
# With the repository's own config.yaml it first starts the two fake upstreams that file
# points at (llmproxy-mockllm "mock-a" on 18101 and "mock-b" on 18102); with any other
# CONFIG it starts no mocks (your backends are real). Then it runs the control plane with
# two supervised workers in the foreground (`llmproxy-ctl -c CONFIG --workers 2`), or a
# single standalone `llmproxy-worker -c CONFIG` when this build has no llmproxy-ctl yet.
# Ctrl-C stops everything, mocks included.
set -euo pipefail

usage() { echo "usage: $0 CONFIG BIN_DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
CONFIG=$1
BIN=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "run-demo: $*" >&2; exit 1; }
[[ -f $CONFIG ]] || die "config file '$CONFIG' not found"
[[ -x $BIN/llmproxy-worker ]] || die "'$BIN/llmproxy-worker' is missing: build first (make build)"
CONFIG=$(realpath "$CONFIG")

# True when something already accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The public port from the config's server: block (8080 when not set).
PORT=$(awk '/^server:/{s=1;next} /^[^ #]/{s=0} s&&/^[ \t]+port:/{gsub(/[^0-9]/,"",$2);print $2;exit}' "$CONFIG")
PORT=${PORT:-8080}

MOCK_PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${MOCK_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${MOCK_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_mock() {  # name port models
  local name=$1 port=$2 models=$3
  if port_busy "$port"; then
    die "port $port (for mock upstream '$name') is already in use; stop what listens there" \
        "(ss -ltnp 'sport = :$port' shows it) or run with your own CONFIG=..."
  fi
  "$BIN/llmproxy-mockllm" --port "$port" --name "$name" --models "$models" --chunk-gap-ms 50 &
  MOCK_PIDS+=($!)
  for _ in $(seq 100); do
    port_busy "$port" && return 0
    kill -0 "${MOCK_PIDS[-1]}" 2>/dev/null || die "mock upstream '$name' failed to start"
    sleep 0.05
  done
  die "mock upstream '$name' did not start listening on $port"
}

if [[ $CONFIG == "$(realpath "$ROOT/config.yaml")" ]]; then
  [[ -x $BIN/llmproxy-mockllm ]] || die "'$BIN/llmproxy-mockllm' is missing: build first"
  start_mock mock-a 18101 mock-small,mock-large
  start_mock mock-b 18102 mock-small
fi

if port_busy "$PORT"; then
  die "port $PORT (server.port in $CONFIG) is already in use; stop what listens there or change server.port"
fi

cat <<EOF

LLMProxy demo: serving $CONFIG on http://localhost:$PORT  (Ctrl-C stops everything)
Try, in another terminal:

  curl -s localhost:$PORT/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}'

  curl -sN localhost:$PORT/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"mock-small","stream":true,"messages":[{"role":"user","content":"Hello"}]}'

  curl -s localhost:$PORT/v1/models ; curl -s localhost:$PORT/health

EOF

# Not exec: the EXIT trap must still stop the mocks when the proxy ends.
if [[ -x $BIN/llmproxy-ctl ]] && "$BIN/llmproxy-ctl" --help 2>&1 | grep -q -- '--workers'; then
  "$BIN/llmproxy-ctl" -c "$CONFIG" --workers 2
else
  echo "run-demo: llmproxy-ctl with --workers not built; running one standalone worker" >&2
  "$BIN/llmproxy-worker" -c "$CONFIG"
fi
