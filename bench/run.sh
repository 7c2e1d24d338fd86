#!/usr/bin/env bash
# bench/run.sh BIN_DIR [--smoke] [bench.py options]
#   make bench        -> bench/run.sh build-release/bin          (full run, writes bench/RESULTS.md)
#   make bench-smoke  -> bench/run.sh build/bin --smoke          (a few seconds; non-zero exit if broken)
# Everything runs on 127.0.0.1 with its own temporary nginx prefix; see docs/bench.md.
set -euo pipefail
if [[ $# -lt 1 || $1 == -* ]]; then
  echo "usage: $0 BIN_DIR [--smoke] [--scenarios 1,...,9] [--no-worker] [--no-pin] [--out FILE]" >&2
  exit 2
fi
exec python3 "$(dirname "${BASH_SOURCE[0]}")/bench.py" "$@"
