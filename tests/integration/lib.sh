# Shared helpers for integration tests (TAP output). Source it.
# Tests need root, /dev/kvm and BPF: where a facility is truly absent they
# skip loudly with the reason, never silently pass.
set -u
# run directly (not from tests/run-all.sh): use the default build
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KVMSCOPE=${KVMSCOPE:-$_root/build/bin/kvmscope}
VMLOAD=${VMLOAD:-$_root/build/bin/vmload}
BUILD=${BUILD:-$_root/build}
TAP_N=0
TAP_FAILED=0
ok()     { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $*"; }
not_ok() { TAP_N=$((TAP_N + 1)); TAP_FAILED=1; echo "not ok $TAP_N - $*"; }
skip()   { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - # SKIP $*"; }
check()  { local desc=$1; shift; if "$@"; then ok "$desc"; else not_ok "$desc"; fi; }
# expect_eq DESC GOT WANT
expect_eq() { if [ "$2" = "$3" ]; then ok "$1 ($2)"; else not_ok "$1: got '$2', want '$3'"; fi; }
tap_done() { echo "1..$TAP_N"; exit $TAP_FAILED; }

# watch_total FILE KEY: the sum over every second of `watch -j` output FILE
# of decomposition key KEY ("vm,read"), 0 where it never appears
watch_total() { jq -s --arg k "$2" '[.[].value[$k] // 0] | add' "$1"; }

# no_logged_errors FILE...: a failed check for each kvmscope log (stderr) that
# has a level=error line, quoting it
no_logged_errors() {
	local f
	for f in "$@"; do
		grep -q 'level=error' "$f" && not_ok "$(basename "$f"): $(grep level=error "$f" | head -2)"
	done
	return 0
}

# wait_counting FILE...: block until each `watch -j` writing to FILE has
# printed its first second, so that everything done afterwards is counted.
# A fixed sleep is not enough: loading and attaching the BPF programs takes
# seconds on a loaded 2-core CI machine, and counting starts only at the
# next whole second after that.
wait_counting() {
	local f i
	for f in "$@"; do
		for ((i = 0; i < 300; i++)); do
			[ -s "$f" ] && break
			sleep 0.1
		done
		[ -s "$f" ] || { not_ok "watch writing $f printed nothing in 30 s: $(tail -2 "${f%.json}.err" 2>/dev/null)"; tap_done; }
	done
}

require_kvm() {
	if [ "$(id -u)" != 0 ]; then skip "$1: needs root (CI runs as root)"; tap_done; fi
	if [ ! -c /dev/kvm ]; then skip "$1: /dev/kvm is absent on this host"; tap_done; fi
	mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
}

TMPD=$(mktemp -d /tmp/kvmscope-test.XXXXXX)
cleanup_pids=()
cleanup() {
	for p in "${cleanup_pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null || true
	rm -rf "$TMPD"
}
trap cleanup EXIT
