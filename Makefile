# The two commands a newcomer needs: `make run` and `make test`.
# Both install what is missing (Debian packages, via scripts/install-deps.sh) first.
BUILD ?= build
SAN_BUILD ?= build-asan
CONFIG ?= config.yaml
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test test-asan run bench bench-smoke format clean help

all: build

help:
	@echo "make run [CONFIG=path]  install deps, build, start the demo (ctl + 2 workers + 2 mock upstreams)"
	@echo "make test               install deps, build, run every test with ctest"
	@echo "make test-asan          the same tests under AddressSanitizer + UBSan (build-asan/)"
	@echo "make bench              Release build + benchmark, writes bench/RESULTS.md"
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

test-asan: deps
	cmake -S . -B $(SAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLLMPROXY_SANITIZE=ON $(CMAKE_FLAGS)
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

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(SAN_BUILD) build-release
