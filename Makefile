# Everyday commands. The build itself is CMake (CMakeLists.txt); this file
# only strings the steps together.
#
#   make run      install what is missing, build, start `sockit serve`
#   make check    install what is missing, build (normal + ASan/UBSan), run every test
#   make bench    side-by-side benchmarks against socat, ncat, nc... (QUICK=1: short)
#   make fuzz     run each libFuzzer target FUZZ_SECONDS (default 60)
#   make valgrind unit tests and a server scenario under valgrind
#   make install  PREFIX=/usr/local

SHELL := /bin/bash
PREFIX ?= /usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PY ?= /usr/bin/python3
JOBS ?= $(shell nproc)
WERROR ?= 0
FUZZ_SECONDS ?= 60
CMAKE_FLAGS = -DSK_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF)

.PHONY: all deps build asan run check unit integration bench fuzz valgrind install clean

all: build

deps:
	@scripts/install-deps

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSK_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

run: deps build
	./$(BUILD)/sockit serve

# Every test, against the normal build and again against the ASan+UBSan build.
check: deps build asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)
	SOCKIT_BUILD=$(abspath $(ASAN_BUILD)) $(PY) -m pytest -q -rs -p no:cacheprovider tests/integration
	SOCKIT_BUILD=$(abspath $(BUILD)) $(PY) -m pytest -q -rs -p no:cacheprovider tests/integration

bench: build
	@scripts/install-deps --bench
	$(PY) bench/run.py --build $(BUILD) $(if $(filter 1,$(QUICK)),--quick)

fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DSK_SANITIZE=ON -DSK_FUZZ=ON -DSK_TESTS=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@mkdir -p tests/fuzz/crashes
	@for t in $(FUZZ_BUILD)/fuzz_*; do \
	    name=$$(basename $$t); corpus=tests/fuzz/corpus/$${name#fuzz_}; mkdir -p $$corpus; \
	    echo "== $$name for $(FUZZ_SECONDS)s"; \
	    $$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=tests/fuzz/crashes/ $$corpus \
	        2>&1 | grep -E '^#[0-9]+ +DONE|ERROR|SUMMARY' ; \
	    [ $${PIPESTATUS[0]} -eq 0 ] || { echo "$$name: crash kept in tests/fuzz/crashes/"; exit 1; }; \
	done

valgrind: deps build
	@scripts/valgrind-check $(BUILD)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
