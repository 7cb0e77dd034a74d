# The two commands of the README, and the steps they are made of.
#   make demo   install what is missing, build, run the main job
#   make check  install what is missing, build, run every test, the sanitizer
#               build, the source checks and short fuzz runs
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
BUILD   ?= build
ASAN    ?= build-asan
FUZZB   ?= build-fuzz
FUZZ_SECONDS ?= 20
CMAKE_FLAGS ?=

.PHONY: all deps build test asan fuzz checksrc format bench demo check clean

all: build

deps:
	scripts/install-deps

build:
	cmake -S . -B $(BUILD) -DTC_VALGRIND=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	CC=clang cmake -S . -B $(ASAN) -DTC_SANITIZE=ON -DTC_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -LE valgrind

fuzz:
	CC=clang cmake -S . -B $(FUZZB) -DTC_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(FUZZB) -j $(JOBS)
	scripts/run-fuzz $(FUZZB)/fuzz $(FUZZ_SECONDS)

checksrc:
	scripts/checksrc

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

bench: build
	scripts/run-bench $(BUILD)/bench

demo: deps build
	scripts/demo $(BUILD)/src/cli/trustchain

check: deps checksrc test asan fuzz
	@echo "make check: all steps passed"

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZB)
