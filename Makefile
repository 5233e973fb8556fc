# Thin wrapper around Meson. The two set-up commands of the README:
#   make run    install the missing build/run packages (scripts/deps), build, start the sandbox server
#   make check  also install the test packages (scripts/deps --test), build, then every test
#               (last line: N passed, N failed)
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps deps-test build run check unit integration asan fuzz bench bench-haraka clean

all: build

deps:
	@sh scripts/deps

deps-test:
	@sh scripts/deps --test

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX) $(MESON_OPTS)

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

# smtpgate vs Postfix, smtp-sink and bench/tls_floor on loopback (bench/run-bench;
# BENCH_ROUNDS, BENCH_SECONDS, ...; Haraka too with make bench-haraka).
bench/haraka/node_modules/Haraka/package.json: bench/haraka/package.json
	cd bench/haraka && npm install --no-audit --no-fund

bench: build
	python3 bench/run-bench $(BUILD)
	python3 bench/relay-bench $(BUILD)   # relay end to end vs Postfix, queue memory (issue 13)

# the same with Haraka (npm install into bench/haraka/node_modules first)
bench-haraka: build bench/haraka/node_modules/Haraka/package.json
	python3 bench/run-bench $(BUILD)

# Install the binary, the man pages, /etc/smtpgate/smtpgate.conf (never overwritten; the example
# is smtpgate.conf.example), the systemd unit, sysusers.d and tmpfiles.d entries (docs/operations.md).
# PREFIX (default /usr/local) applies to the build dir's first configuration; DESTDIR works.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
install: deps $(BUILD)/build.ninja
	meson configure $(BUILD) -Dsysconfdir=$(SYSCONFDIR)
	ninja -C $(BUILD)
	meson install -C $(BUILD) --no-rebuild
	@echo "then: systemd-sysusers; systemd-tmpfiles --create; systemctl daemon-reload;"
	@echo "      systemctl enable --now smtpgate   (see docs/operations.md)"

# The Debian package, built from a copy of the tracked (and new, not ignored) files in
# build-deb/ so the checkout stays clean: build-deb/smtpgate_VERSION_ARCH.deb
package:
	rm -rf build-deb
	mkdir -p build-deb/src
	git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C build-deb/src
	cd build-deb/src && dpkg-buildpackage -us -uc -b
	@ls -l build-deb/*.deb

clean:
	rm -rf $(BUILD) build-*
