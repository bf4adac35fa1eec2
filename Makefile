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
LDLIBS     += -lbpf -lelf -lz -lzstd -ljansson -lmicrohttpd -lspng -lnats -lpthread -lm
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
# What the build and `make test` use, each for a reason:
#   build:    make gcc clang bpftool libbpf-dev libelf-dev zlib1g-dev
#             libmicrohttpd-dev libjansson-dev libspng-dev
#             libnats-dev (the fleet's NATS client, src/fleet)
#             liburing-dev (vmload) libzstd-dev (recordings) nasm (tests/qemu guests) scdoc (man pages)
#   sanitizers and fuzzing: llvm (llvm-symbolizer for ASan/UBSan reports),
#             libclang-rt-dev (clang's libFuzzer and sanitizer runtimes)
#   tests:    nats-server (tests/integration/fleet.sh runs its own cluster),
#             libcmocka-dev, iproute2 (ip tuntap/netns), util-linux (losetup,
#             setpriv), jq, curl, python3, bpftrace, strace, wrk, chromium
#             (web UI), prometheus (promtool), qemu-system-x86 seabios
#             qemu-utils (qemu-img), libvirt-daemon libvirt-daemon-driver-qemu
#             libvirt-clients (virsh), debhelper lintian (the package test)
# Recommends are left out: nothing here uses them.
DEB_PKGS := make clang llvm gcc libbpf-dev bpftool libelf-dev zlib1g-dev \
            libmicrohttpd-dev libjansson-dev libspng-dev libcmocka-dev \
            iproute2 util-linux jq curl bpftrace python3 chromium prometheus wrk \
            libnats-dev nats-server \
            strace libclang-rt-dev scdoc debhelper lintian \
            qemu-system-x86 qemu-utils nasm seabios liburing-dev libzstd-dev \
            libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
# only `make bench` needs these (perf record, callgrind, hyperfine; libcurl
# builds the revision before the NATS fleet, whose HTTP poller
# bench/fleet_nats.sh compares with)
BENCH_PKGS := linux-perf valgrind hyperfine libcurl4-openssl-dev
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "kvmscope: 'make deps' installs Debian packages and must run as root" >&2; exit 1; fi
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && $(APT_INSTALL) $$missing; \
	fi
	@# the browser test drives Debian's chromium with playwright-core (no browser download)
	@if ! command -v npm >/dev/null; then \
		apt-get update -qq && $(APT_INSTALL) nodejs npm; fi
	@# (npm ls fails when a package of tests/web/package.json is missing)
	@(cd tests/web && npm ls --silent >/dev/null 2>&1) || \
		(cd tests/web && npm install --no-audit --no-fund --silent)

deps-bench: deps
	@missing=""; for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && $(APT_INSTALL) $$missing; \
	fi

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

bench: deps-bench tracefs
	$(MAKE) all
	bench/run-all.sh $(OUT)
	tests/reliability/long.sh $(OUT)

clean:
	rm -rf build build-asan

# keep objects (skeleton headers, .bpf.o) between runs
.SECONDARY:

# ---- man pages, install, Debian packages -------------------------------------
# man/NAME.SECTION.scd -> $(OUT)/man/NAME.SECTION (scdoc)
MAN_SRCS   := $(wildcard man/*.scd)
MAN_PAGES  := $(patsubst man/%.scd,$(OUT)/man/%,$(MAN_SRCS))

PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
SYSCONFDIR ?= /etc
STATEDIR   ?= /var/lib/kvmscope
# Debian 12's systemdsystemunitdir (pkg-config systemd)
UNITDIR    ?= /lib/systemd/system
BASHCOMPDIR?= $(DATADIR)/bash-completion/completions
# the Debian package creates the state directory in its postinst instead
INSTALL_STATEDIR ?= 1
# the agent looks for its web UI in /usr/share/kvmscope/web by itself
WEBDIR_OPT := $(if $(filter /usr/share,$(DATADIR)),, --web-dir $(DATADIR)/kvmscope/web)

.PHONY: deps-bench man programs install install-kvmscope install-vmload deb

man: $(MAN_PAGES)

$(OUT)/man/%: man/%.scd
	@mkdir -p $(@D)
	scdoc < $< > $@.tmp && mv $@.tmp $@

programs: $(OUT)/bin/kvmscope $(OUT)/bin/vmload

install: install-kvmscope install-vmload

install-kvmscope: $(OUT)/bin/kvmscope $(filter $(OUT)/man/kvmscope%,$(MAN_PAGES))
	install -D -m 0755 $(OUT)/bin/kvmscope $(DESTDIR)$(BINDIR)/kvmscope
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DATADIR)/kvmscope
	install -m 0644 $(filter $(OUT)/man/kvmscope%.8,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man8/
	rm -rf $(DESTDIR)$(DATADIR)/kvmscope/web
	cp -R web $(DESTDIR)$(DATADIR)/kvmscope/web
	find $(DESTDIR)$(DATADIR)/kvmscope/web -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
	install -D -m 0644 completion/kvmscope $(DESTDIR)$(BASHCOMPDIR)/kvmscope
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/bin/kvmscope agent|$(BINDIR)/kvmscope agent|' \
	    -e 's|/etc/kvmscope/|$(SYSCONFDIR)/kvmscope/|g' \
	    -e 's|/var/lib/kvmscope|$(STATEDIR)|g' \
	    -e '/^ExecStart=/s|$$|$(WEBDIR_OPT)|' \
	    systemd/kvmscope-agent.service > $(DESTDIR)$(UNITDIR)/kvmscope-agent.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kvmscope-agent.service
	@# an operator's edited agent.conf stays
	[ -e $(DESTDIR)$(SYSCONFDIR)/kvmscope/agent.conf ] || \
		install -D -m 0644 systemd/agent.conf $(DESTDIR)$(SYSCONFDIR)/kvmscope/agent.conf
	[ "$(INSTALL_STATEDIR)" != 1 ] || install -d -m 0700 $(DESTDIR)$(STATEDIR)

install-vmload: $(OUT)/bin/vmload $(OUT)/man/vmload.1
	install -D -m 0755 $(OUT)/bin/vmload $(DESTDIR)$(BINDIR)/vmload
	install -D -m 0644 $(OUT)/man/vmload.1 $(DESTDIR)$(MANDIR)/man1/vmload.1
	install -D -m 0644 completion/vmload $(DESTDIR)$(BASHCOMPDIR)/vmload

# `make deb`: the packages of this working tree (tracked and untracked files,
# not ignored ones) in $(OUT)/deb/. They are built in a copy under
# $(OUT)/deb/tree that keeps its own build output between runs (files are
# copied with their times, and dpkg-buildpackage -nc does not clean), so a
# second `make deb` only rebuilds what changed. A fresh checkout builds with
# plain `dpkg-buildpackage -us -uc -b`.
DEB_TREE := $(OUT)/deb/tree
deb:
	@command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null || \
		{ echo "kvmscope: make deb needs dpkg-dev and debhelper (make deps)" >&2; exit 1; }
	@mkdir -p $(DEB_TREE)
	@set -e; files=$$(git ls-files --cached --others --exclude-standard | grep -v '^tests/fuzz/corpus/'); \
	for f in $$files; do [ -e "$$f" ] && echo "$$f"; done > $(OUT)/deb/files; \
	xargs -a $(OUT)/deb/files cp --parents -p -t $(DEB_TREE); \
	(cd $(DEB_TREE) && find bpf src vmload man web systemd completion debian docs -type f \
		-not -path 'debian/out/*' -not -path 'debian/.debhelper/*' -not -path 'debian/kvmscope/*' \
		-not -path 'debian/vmload/*' -not -path 'debian/tmp/*' -not -name '*.substvars' \
		-not -name 'files' -not -name 'debhelper-build-stamp' 2>/dev/null | sort) > $(OUT)/deb/present; \
	sort $(OUT)/deb/files | comm -23 $(OUT)/deb/present - | sed 's|^|$(DEB_TREE)/|' | xargs -r rm -f
	@# dh skips the build steps after its stamp: drop it so make decides
	rm -f $(DEB_TREE)/debian/debhelper-build-stamp
	cd $(DEB_TREE) && dpkg-buildpackage -us -uc -b -nc
	@ls -1 $(OUT)/deb/*.deb
