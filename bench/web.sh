#!/bin/bash
# Web UI refresh cost: 10 live charts on the Analytics page (lines, stacked
# areas and heatmaps of exits, interrupts, disk ops, samples and NIC bytes
# of a busy vmload guest), all on screen in headless Chromium, refreshed
# every second. Reports the p50/p90 of one refresh of all 10 (fetch of the
# new final seconds + drawing), and side by side in the same run the same
# page re-downloading every chart's whole 5-minute window each second, as
# the UI did before. Target: p90 <= 150 ms.
# Usage: bench/web.sh [BUILD_DIR]   (env: SECONDS_EACH, default 30)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=web
. "$(dirname "$0")/lib.sh"
SECONDS_EACH=${SECONDS_EACH:-30}
need_root_kvm
need_cmd curl jq node
[ -x /usr/bin/chromium ] || bench_skip "/usr/bin/chromium is absent"
[ -d "$BENCH_ROOT/tests/web/node_modules/playwright-core" ] || bench_skip "tests/web/node_modules/playwright-core is absent (cd tests/web && npm install)"

start_agent none
truncate -s 64M "$TMPD/disk.img"
"$VMLOAD" -name guest=benchweb --vcpus 3 --duration $((SECONDS_EACH * 2 + 90)) \
	--irq vcpu=0,vector=0x30,via=ioapic,period_ms=10,phase_ms=3,count=100000 \
	--mmio vcpu=1,count=10000000,rate=2000 \
	--disk file="$TMPD/disk.img",reads=100000,writes=20000,size=4096,pattern=rand,rate=200,vcpu=2 \
	>"$TMPD/truth.json" 2>"$TMPD/vmload.log" &
bench_pids+=($!)
for spec in \
	'"stat":"exits"' \
	'"stat":"exits","decomposition":["reason"]' \
	'"stat":"exits","decomposition":["reason","latency"]' \
	'"stat":"exits","decomposition":["vcpu","subsecond"]' \
	'"stat":"irqs","decomposition":["vector"]' \
	'"stat":"irqs","decomposition":["vector","subsecond"]' \
	'"stat":"disk_ops","decomposition":["disk","offset"]' \
	'"stat":"disk_ops","decomposition":["optype","latency"]' \
	'"stat":"samples","decomposition":["mmuctx"]' \
	'"stat":"nic_bytes","decomposition":["direction"]'; do
	id=$(create_instr "{\"module\":\"vm\",$spec,\"predicate\":{\"eq\":[\"vm\",\"benchweb\"]}}")
	[ -n "$id" ] && [ "$id" != null ] || die "could not create $spec"
done
say "10 instrumentations of VM benchweb; warming up 20 s"
sleep 20
out=$(cd "$BENCH_ROOT/tests/web" && timeout $((SECONDS_EACH * 2 + 90)) node bench_refresh.mjs "$URL" "$SECONDS_EACH" "$(mktemp -d "$TMPD/chromium.XXXXXX")" 2>&1) ||
	die "browser: $(echo "$out" | tail -3)"
for mode in incremental full; do
	n=$(echo "$out" | awk -v m=$mode '$1 == m' | wc -l)
	charts=$(echo "$out" | awk -v m=$mode '$1 == m {print $2}' | sort -u | tr '\n' ' ')
	p50=$(echo "$out" | awk -v m=$mode '$1 == m {print $3}' | median)
	p90=$(echo "$out" | awk -v m=$mode '$1 == m {print $3}' | percentile 90)
	say "$mode: $n refreshes of ${charts}charts: p50 $p50 ms, p90 $p90 ms"
	eval "p90_$mode=$p90"
done
ratio=$(awk -v a="$p90_full" -v b="$p90_incremental" 'BEGIN {printf "%.1f", a / b}')
result "web: refresh of 10 live charts, p90" "$p90_incremental" "ms" "target <= 150 ms; ${ratio}x faster than re-downloading the window ($p90_full ms)"
