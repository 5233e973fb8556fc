# Thin wrapper around Meson. The two set-up commands of the README:
#   make run    install the missing build/run packages (scripts/deps), build, start the sandbox server
#   make check  also install the test packages (scripts/deps --test), build, then every test
#               (last line: N passed, N failed)
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps deps-test build run check unit integration asan fuzz bench clean

all: build

deps:
	@sh scripts/deps

deps-test:
	@sh scripts/deps --test

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	sh scripts/run-demo $(BUILD)/src/smtpgate

# Every test: unit + integration, the same under ASan + UBSan, unit tests under
# valgrind, and a short run of every fuzz target (tests/check; SG_CHECK_PHASES).
check: deps-test build
	sh tests/check $(BUILD)

# Fuzzing (clang + libFuzzer, ASan+UBSan): every target FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
build-fuzz/build.ninja:
	CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=disabled \
		-Db_sanitize=address,undefined -Db_lundef=false

fuzz: build-fuzz/build.ninja
	ninja -C build-fuzz
	sh tests/fuzz/run $(FUZZ_SECONDS) build-fuzz

# The whole project and its unit tests under ASan + UBSan (gcc).
build-asan/build.ninja:
	meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false $(MESON_OPTS)

asan: build-asan/build.ninja
	ninja -C build-asan
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
		meson test -C build-asan --suite unit --print-errorlogs

# smtpgate vs Postfix vs Haraka on loopback (bench/run-bench; BENCH_ROUNDS, BENCH_SECONDS, ...).
bench/haraka/node_modules/Haraka/package.json: bench/haraka/package.json
	cd bench/haraka && npm install --no-audit --no-fund

bench: build bench/haraka/node_modules/Haraka/package.json
	python3 bench/run-bench $(BUILD)

clean:
	rm -rf $(BUILD) build-*
