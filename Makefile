# kvmscope — build in the libbpf-tools way:
#   bpf/NAME.bpf.c -> build/bpf/NAME.bpf.o -> build/bpf/NAME.skel.h -> bin/kvmscope
# Everything generated lands under $(OUT) (default build/); binaries in $(OUT)/bin.
#
# Sources are picked up by folder (wildcards), so adding a file to a subsystem
# folder needs no Makefile edit:
#   src/<subsystem>/*.c  -> libkvmscope.a (everything but the CLI)
#   src/cli/*.c          -> bin/kvmscope
#   vmload/*.c           -> bin/vmload
#   tests/unit/test_*.c  -> one cmocka binary each, linked with libkvmscope.a

OUT        ?= build
CC         ?= cc
CLANG      ?= clang
BPFTOOL    ?= bpftool
ARCH       := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

WARN       := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS     ?= -O2 -g
CFLAGS     += -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc -I$(OUT) -I$(OUT)/bpf -Ibpf
LDLIBS     += -lbpf -lelf -lz -lzstd -ljansson -lmicrohttpd -lspng -lcurl -lpthread -lm
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -I$(OUT)/bpf -Ibpf -Isrc \
              -Wall -Werror -Wno-unused-function

ifeq ($(SANITIZE),1)
OUT        := build-asan
CFLAGS     += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS    += -fsanitize=address,undefined
endif

BPF_SRCS   := $(wildcard bpf/*.bpf.c)
BPF_OBJS   := $(patsubst bpf/%.bpf.c,$(OUT)/bpf/%.bpf.o,$(BPF_SRCS))
SKELS      := $(patsubst bpf/%.bpf.c,$(OUT)/bpf/%.skel.h,$(BPF_SRCS))
LIB_SRCS   := $(filter-out src/cli/%,$(wildcard src/*/*.c))
LIB_OBJS   := $(patsubst %.c,$(OUT)/%.o,$(LIB_SRCS))
CLI_SRCS   := $(wildcard src/cli/*.c)
CLI_OBJS   := $(patsubst %.c,$(OUT)/%.o,$(CLI_SRCS))
VMLOAD_SRCS:= $(wildcard vmload/*.c)
VMLOAD_OBJS:= $(patsubst %.c,$(OUT)/%.o,$(VMLOAD_SRCS))
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps demo test test-unit test-integration test-asan clean tracefs bench
.DEFAULT_GOAL := all

QEMU_GUESTS:= $(patsubst tests/qemu/%.asm,$(OUT)/qemu/%.img,$(wildcard tests/qemu/*.asm))

all: $(OUT)/bin/kvmscope $(OUT)/bin/vmload $(UNIT_BINS) $(QEMU_GUESTS)

# tiny QEMU guests with their default parameters; the tests assemble their own
# variants with -D (see tests/qemu/*.asm)
$(OUT)/qemu/%.img: tests/qemu/%.asm
	@mkdir -p $(@D)
	nasm -Itests/qemu/ -f bin -o $@ $<

$(OUT)/bpf/vmlinux.h:
	@mkdir -p $(@D)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(OUT)/bpf/%.bpf.o: bpf/%.bpf.c $(OUT)/bpf/vmlinux.h $(wildcard bpf/*.h)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUT)/bpf/%.skel.h: $(OUT)/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@.tmp && mv $@.tmp $@

# Every C object may include any skeleton: generate them all first.
$(OUT)/%.o: %.c $(SKELS) $(wildcard src/*/*.h) $(wildcard bpf/*.h) $(wildcard vmload/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(OUT)/libkvmscope.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(OUT)/bin/kvmscope: $(CLI_OBJS) $(OUT)/libkvmscope.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(OUT)/libkvmscope.a $(LDLIBS)

$(OUT)/bin/vmload: $(VMLOAD_OBJS) $(OUT)/libkvmscope.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(VMLOAD_OBJS) $(OUT)/libkvmscope.a $(LDLIBS) -luring

$(OUT)/tests/%: $(OUT)/tests/unit/%.o $(OUT)/libkvmscope.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(OUT)/libkvmscope.a $(LDLIBS) -lcmocka

# ---- set-up on a fresh Debian 12 machine (as root) ----------------------------
DEB_PKGS := make clang llvm gcc libbpf-dev bpftool libelf-dev zlib1g-dev \
            libmicrohttpd-dev libjansson-dev libspng-dev libpng-dev libcmocka-dev \
            iproute2 util-linux jq curl bpftrace python3 chromium libcurl4-openssl-dev prometheus wrk \
            linux-perf valgrind hyperfine strace \
            qemu-system-x86 qemu-utils nasm seabios liburing-dev libzstd-dev \
            libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "kvmscope: 'make deps' installs Debian packages and must run as root" >&2; exit 1; fi
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# the browser test drives Debian's chromium with playwright-core (no browser download)
	@if ! command -v npm >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; fi
	@[ -d tests/web/node_modules/playwright-core ] || \
		(cd tests/web && npm install --no-audit --no-fund --silent)

tracefs:
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

# ---- the README's two commands -----------------------------------------------
demo: deps tracefs
	$(MAKE) all
	tests/demo.sh $(OUT)

test: deps tracefs
	$(MAKE) all
	tests/run-all.sh $(OUT)

test-asan: deps tracefs
	$(MAKE) SANITIZE=1 all
	tests/run-all.sh build-asan

test-unit: all
	tests/run-all.sh $(OUT) unit

bench: deps tracefs
	$(MAKE) all
	bench/run-all.sh $(OUT)
	tests/reliability/long.sh $(OUT)

clean:
	rm -rf build build-asan

# keep objects (skeleton headers, .bpf.o) between runs
.SECONDARY:
