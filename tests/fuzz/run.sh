#!/usr/bin/env bash
# Runs each libFuzzer target for a set time (docs/fuzzing.md):
#   tests/fuzz/run.sh <bin dir> <seconds per target> [target...]
# Starts from the checked-in seeds (tests/fuzz/corpus/<target>, read-only) plus what past
# runs found (<build>/fuzz-work/corpus/<target>, where new inputs go). A finding stops
# that target, is saved under <build>/fuzz-work/artifacts/ and fails the run.
set -euo pipefail
bin=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
work=$(cd "$(dirname "$bin")" && pwd)/fuzz-work
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request request_body sse_parser chat_stream config_loader
  anthropic_translate responses_translate lease_authority)
declare -A dict=([request]=http [request_body]=json [sse_parser]=sse [chat_stream]=chat
  [config_loader]=yaml [anthropic_translate]=json [responses_translate]=responses
  [lease_authority]=json)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Each libFuzzer process uses one core: run FUZZ_JOBS of them at once (default: one per
# core), each for the full time. The reports are printed in target order at the end.
jobs=${FUZZ_JOBS:-$(nproc)}

# One target; its report goes to $work/<target>.report, its exit status is the result.
fuzz_one() {
  local t=$1 log="$work/$1.log" report="$work/$1.report" start runs cov
  start=$(date +%s)
  if "$bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
      -dict="$here/dict/${dict[$t]}.dict" -artifact_prefix="$work/artifacts/$t-" \
      -print_final_stats=1 "$work/corpus/$t" "$here/corpus/$t" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz: $t ok, ${runs:-?} runs in $(( $(date +%s) - start ))s, ${cov:-cov: ?}" >"$report"
    return 0
  fi
  {
    echo "fuzz: $t FAILED (log: $log, reproducer in $work/artifacts/):"
    grep -v '^#[0-9]' "$log" | tail -60 || true
  } >"$report"
  return 1
}

declare -A pid_of=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts"
  rm -f "$work/$t.report"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  fuzz_one "$t" &
  pid_of[$t]=$!
done
status=0
for t in "${targets[@]}"; do
  if wait "${pid_of[$t]}"; then
    cat "$work/$t.report"
  else
    status=1
    cat "$work/$t.report" >&2 || echo "fuzz: $t FAILED (no report)" >&2
  fi
done
exit $status
