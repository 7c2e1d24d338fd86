# The two commands a newcomer needs: `make run` and `make test`.
# Both install what is missing (Debian packages, via scripts/install-deps.sh) first.
BUILD ?= build
SAN_BUILD ?= build-asan
CONFIG ?= config.yaml
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600

.PHONY: all deps configure build test test-asan run bench bench-smoke fuzz fuzz-smoke fuzz-build \
	format clean help

all: build

help:
	@echo "make run [CONFIG=path]  install deps, build, start the demo (ctl + 2 workers + 2 mock upstreams)"
	@echo "make test               install deps, build, run every test with ctest"
	@echo "make test-asan          the same tests under AddressSanitizer + UBSan (build-asan/)"
	@echo "make bench              Release build + benchmark, writes bench/RESULTS.md"
	@echo "make fuzz [FUZZ_SECONDS=600]  libFuzzer targets (clang, build-fuzz/), each for FUZZ_SECONDS"
	@echo "make fuzz-smoke         the same, 10 s per target on the checked-in corpus (CI)"
	@echo "make format             clang-format every source file"

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# -O0 with line tables only (-g1): sanitizer reports keep function, file and line, and the
# build skips full debug info of every Asio template (CI builds this on 2 cores).
test-asan: deps
	cmake -S . -B $(SAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
	  -DLLMPROXY_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

run: configure
	cmake --build $(BUILD) -j $(JOBS) --target llmproxy-ctl llmproxy-worker llmproxy-mockllm
	@bash scripts/run-demo.sh "$(CONFIG)" "$(BUILD)/bin"

bench: deps
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMPROXY_BUILD_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build build-release -j $(JOBS)
	@bash bench/run.sh build-release/bin

bench-smoke: build
	@bash bench/run.sh $(BUILD)/bin --smoke

# libFuzzer targets (docs/fuzzing.md): a clang build of their own with ASan + UBSan.
# -O1 and line tables only: quick to compile (CI builds it), symbolized stacks. NDEBUG as
# in the shipped build: Boost.Beast's own asserts fire on a client's chunked body
# (tests/fuzz/corpus/request/repro-beast-chunk-trailer-assert, docs/fuzzing.md).
$(FUZZ_BUILD)/build.ninja:
	CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -gline-tables-only -DNDEBUG" -DLLMPROXY_FUZZ=ON $(CMAKE_FLAGS)

fuzz-build: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_BUILD)/bin $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_BUILD)/bin 10

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD) build-release
