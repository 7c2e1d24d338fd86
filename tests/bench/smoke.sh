#!/usr/bin/env bash
# ctest's bench.smoke: bench/run.sh --smoke, whose exit 77 means nginx or wrk is missing.
# In CI (CI set: install-deps provides both) that is a failure; elsewhere a skip that says
# so, since a newcomer's `make test` need not have the benchmark tools.
set -uo pipefail
bin=$1
bash "$(dirname "${BASH_SOURCE[0]}")/../../bench/run.sh" "$bin" --smoke
rc=$?
if [ "$rc" -eq 77 ]; then
  if [ -n "${CI:-}" ]; then
    echo "bench.smoke: FAILED: nginx or wrk missing and CI=$CI (scripts/install-deps.sh installs them)" >&2
    exit 1
  fi
  echo "bench.smoke: SKIPPED: nginx or wrk missing (scripts/install-deps.sh installs them)" >&2
fi
exit "$rc"
