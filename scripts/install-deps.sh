#!/usr/bin/env bash
# Installs, with apt-get only, everything LLMProxy needs to build, test, run the
# demo and run the benchmark on Debian bookworm. Idempotent: packages already
# present are skipped, and nothing is fetched when all are there.
set -euo pipefail

PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config make git ca-certificates lld
  libboost1.81-dev libssl-dev openssl
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev nlohmann-json3-dev prometheus-cpp-dev libsimdjson-dev libsqlite3-dev
  libgtest-dev libgmock-dev googletest
  curl python3 procps
)
# Tools for the benchmark and the metrics checks (issue 5/6): wrk, nginx, promtool.
EXTRA=(wrk nginx-light prometheus)
# libFuzzer and its sanitizer runtimes for `make fuzz` / `make fuzz-smoke` (docs/fuzzing.md).
EXTRA+=(clang libclang-rt-14-dev)

want=("${PACKAGES[@]}")
if [ "${LLMPROXY_DEPS_MINIMAL:-0}" != "1" ]; then
  want+=("${EXTRA[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The npm packages of the protocol end-to-end tests (tests/e2e/npm: the Anthropic and
# OpenAI SDKs, Claude Code, Codex), installed from the committed lock when node_modules is
# missing or older than the lock. Without npm the e2e tests that need them skip.
npm_deps() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/npm"
  [ -f "$dir/package-lock.json" ] || return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: npm not found; skipping $dir (its e2e tests will skip)"
    return 0
  fi
  if [ -d "$dir/node_modules" ] && [ "$dir/node_modules" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  echo "install-deps: npm ci in $dir"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
  touch "$dir/node_modules"
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  npm_deps
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# nginx-light's package starts a system nginx on :80; the benchmark runs its own.
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
npm_deps
echo "install-deps: done"
