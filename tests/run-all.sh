#!/bin/bash
# Runs every test: cmocka unit binaries, then the integration scripts on real
# KVM guests. Everything speaks TAP; this script tallies it and ends with
#   N passed, N failed, N skipped
# Usage: tests/run-all.sh BUILD_DIR [unit|integration]
set -u
OUT=${1:-build}
WHICH=${2:-all}
cd "$(dirname "$0")/.."
export KVMSCOPE=$PWD/$OUT/bin/kvmscope VMLOAD=$PWD/$OUT/bin/vmload BUILD=$PWD/$OUT
export CMOCKA_MESSAGE_OUTPUT=TAP
# programs the tests compile against the library must match its sanitizers
case "$OUT" in *asan*) export SANITIZE_FLAGS="-fsanitize=address,undefined" ;; esac
# quarantine capped so that memory-growth checks stay meaningful under ASan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:quarantine_size_mb=64}
mkdir -p tests/artifacts
passed=0 failed=0 skipped=0
failed_names=()

tally() {	# $1 = suite name, stdin = its output
	local name=$1 line
	while IFS= read -r line; do
		printf '%s\n' "$line"
		case "$line" in
		"not ok"*) failed=$((failed + 1)); failed_names+=("$name: ${line#not ok }") ;;
		"ok "*"# SKIP"* | "ok "*"# skip"*) skipped=$((skipped + 1)) ;;
		"ok "*) passed=$((passed + 1)) ;;
		esac
	done
}

run_suite() {	# $1 = name, rest = command
	local name=$1; shift
	echo "# ---- $name"
	local log=tests/artifacts/$name.log t0=$SECONDS
	"$@" > "$log" 2>&1 < /dev/null
	local rc=$?
	echo "# $name took $((SECONDS - t0)) s"
	tally "$name" < <(grep -E '^(ok|not ok) ' "$log")
	if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log"; then
		# a crash or an error before any test could report: count it, show the log
		failed=$((failed + 1)); failed_names+=("$name: exited $rc without a TAP failure")
		echo "not ok - $name exited with status $rc"; tail -20 "$log" | sed 's/^/#   /'
	elif [ $rc -ne 0 ]; then
		grep -B2 -A8 '^not ok' "$log" | sed 's/^/#   /' | head -60
	fi
}

if [ "$WHICH" = all ] || [ "$WHICH" = unit ]; then
	for t in "$OUT"/tests/test_*; do
		[ -x "$t" ] || continue
		run_suite "unit-$(basename "$t")" "$t"
	done
fi
if [ "$WHICH" = all ] || [ "$WHICH" = integration ]; then
	for t in tests/integration/*.sh; do
		[ -x "$t" ] || continue
		# the fuzz targets are ASan+UBSan builds of their own: once is enough
		case "$OUT:$t" in *asan*:*/fuzz.sh) echo "# fuzz.sh runs in the plain suite only"; continue ;; esac
		# QEMU and libvirt guests exercise the kernel side and real VMMs, not
		# more of kvmscope's own user-space code than the vmload suites: their
		# minutes are spent once, in the plain run
		case "$OUT:$t" in *asan*:*/qemu_*.sh | *asan*:*/libvirt_*.sh)
			echo "# $(basename "$t") runs in the plain suite only"; continue ;; esac
		# package.sh builds and installs plain .debs of its own; web_ui.sh
		# tests the browser's JavaScript (the agent's routes it uses run
		# sanitized in agent_e2e, ca_conformance and web_dashboards);
		# disk_paths.sh walks the kernel's block paths with the same user
		# space as collect_disk_nic; fleet_slow and fleet_auth repeat
		# fleet.sh's code under other bus conditions, record_nic_samples
		# record_replay's, prometheus the OpenMetrics encoder that
		# test_openmetrics runs sanitized: CI's half hour is spent once on them
		case "$OUT:$t" in *asan*:*/package.sh | *asan*:*/web_ui.sh | *asan*:*/disk_paths.sh | \
			*asan*:*/fleet_slow.sh | *asan*:*/fleet_auth.sh | *asan*:*/record_nic_samples.sh | \
			*asan*:*/prometheus.sh)
			echo "# $(basename "$t") runs in the plain suite only"; continue ;; esac
		run_suite "integration-$(basename "$t" .sh)" "$t"
	done
fi

echo "#"
for n in "${failed_names[@]}"; do echo "# FAILED $n"; done
[ $skipped -gt 0 ] && echo "# WARNING: $skipped test(s) SKIPPED (see the '# SKIP' lines above for why)"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
