# Thin wrapper around Meson. The two set-up commands of the README:
#   make run    install missing Debian packages, build, start the sandbox server
#   make check  the same set-up, then every test (last line: N passed, N failed)
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps build run check unit integration asan fuzz bench clean

all: build

deps:
	@sh scripts/deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	sh scripts/run-demo $(BUILD)/src/smtpgate

check: build
	sh tests/run $(BUILD)

clean:
	rm -rf $(BUILD) build-*
