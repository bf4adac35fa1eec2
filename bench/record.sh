#!/bin/bash
# Recording cost: a busy vmload guest (2 vCPUs issuing port writes as fast as
# they can, MMIO writes, a 10 Hz IOAPIC interrupt, 200 disk ops/s on an
# image file) for DUR seconds (default 10), REPS times (default 2), with:
#   none          the guest alone: its port writes per second are the baseline
#   kvmscope      `kvmscope record` of every metric (host-wide, every field)
#   perf kvm:*    `perf record -e 'kvm:*' -p <guest>`: every KVM tracepoint
#                 event of the guest, which is what perf needs to answer the
#                 same questions after the fact
#   perf kvm stat `perf kvm stat record -p <guest>`: the tracepoints of its
#                 exit and I/O reports (kvm_exit/kvm_entry, which never fire
#                 on this machine, kvm_pio, kvm_mmio, kvm_userspace_exit...)
# For each: the guest's slowdown (port writes/s against none), the file's
# size per second, and for kvmscope the recorder's CPU and the bytes per
# second of the busy VM (its share of the records times the file size: the
# recording is host-wide and other VMs may be running).
# RECORD_METRICS: -m for kvmscope record (default: every metric).
# Usage: bench/record.sh [BUILD_DIR]
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=record
. "$(dirname "$0")/lib.sh"
DUR=${DUR:-10}
REPS=${REPS:-2}
need_root_kvm
need_cmd jq
HAVE_PERF=1
if ! command -v perf >/dev/null || ! perf record -e 'kvm:kvm_pio' -a -o "$TMPD/probe.data" -- true \
	>/dev/null 2>&1; then
	HAVE_PERF=0
	say "perf cannot record kvm tracepoints here: the perf columns are skipped"
fi
IMG=$TMPD/disk.img
truncate -s 64M "$IMG"
tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat 2>/dev/null || echo 0; }

# guest NAME: starts the busy guest (after a 1.5 s delay that lets a tracer
# attach); its pid in GUEST, its truth in $TMPD/NAME.json
guest() {
	"$VMLOAD" -name guest="$1" --vcpus 2 --delay 1500 --duration "$DUR" \
		--pio vcpu=0,count=100000000 --pio vcpu=1,count=100000000 \
		--mmio vcpu=1,count=100000000,rate=2000 \
		--irq vcpu=0,vector=0x31,via=ioapic,period_ms=100,phase_ms=37,count=100000 \
		--disk file="$IMG",reads=100000,writes=100000,size=4096,rate=200,pattern=rand \
		> "$TMPD/$1.json" 2> "$TMPD/$1.err" &
	GUEST=$!
	bench_pids+=("$GUEST")
}
pio_rate() { jq --argjson d "$DUR" '[.vcpus[].pio] | add / $d' "$TMPD/$1.json"; }

declare -A rate size
for ((rep = 1; rep <= REPS; rep++)); do
	# none
	name=bnone$$_$rep
	guest "$name"; wait "$GUEST"
	rate[none]+="$(pio_rate "$name") "

	# kvmscope record
	name=bkvs$$_$rep
	"$KVMSCOPE" record -o "$TMPD/$name.kvr" ${RECORD_METRICS:+-m "$RECORD_METRICS"} --duration $((DUR + 3)) -j > "$TMPD/$name.sum" 2> "$TMPD/$name.rerr" &
	REC=$!
	bench_pids+=("$REC")
	for _ in $(seq 100); do [ "$(stat -c %s "$TMPD/$name.kvr" 2>/dev/null || echo 0)" -gt 16 ] && break; sleep 0.1; done
	guest "$name"
	sleep 1.5
	c0=$(cpu_ticks "$REC")
	wait "$GUEST"
	c1=$(cpu_ticks "$REC")
	wait "$REC" || die "kvmscope record failed: $(tail -2 "$TMPD/$name.rerr")"
	rate[kvmscope]+="$(pio_rate "$name") "
	secs=$(jq .seconds "$TMPD/$name.sum")
	bytes=$(jq .bytes "$TMPD/$name.sum")
	size[kvmscope]+="$(calc "$bytes / $secs") "
	cpu_all+="$(calc "($c1 - $c0) * 1000 / $tick / ($DUR - 1.5)") "
	# the busy VM's share of the records, times the file's size
	"$KVMSCOPE" report "$TMPD/$name.kvr" --info -j > "$TMPD/$name.info"
	nvms=$(jq '[.vm_tables[].vms[].name] | unique | length' "$TMPD/$name.info")
	recs=$(jq .records "$TMPD/$name.info")
	share=$(jq --arg n "$name" '.records_by_vm[$n] // 0' "$TMPD/$name.info")
	per_vm_all+="$(calc "$bytes / $secs * $share / ($recs > 0 ? $recs : 1)") "
	say "rep $rep kvmscope: $secs s, $bytes bytes, $recs records ($share of the busy VM), $nvms VMs seen"

	if [ $HAVE_PERF = 1 ]; then
		for kind in tp stat; do
			name=bperf${kind}$$_$rep
			guest "$name"
			sleep 0.3
			if [ $kind = tp ]; then
				perf record -q -e 'kvm:*' -p "$GUEST" -o "$TMPD/$name.data" > "$TMPD/$name.perr" 2>&1 &
			else
				perf kvm stat record -q -p "$GUEST" -o "$TMPD/$name.data" > "$TMPD/$name.perr" 2>&1 &
			fi
			PERF=$!
			bench_pids+=("$PERF")
			wait "$GUEST"
			sleep 0.5
			kill -INT "$PERF" 2>/dev/null; wait "$PERF"
			rate[perf_$kind]+="$(pio_rate "$name") "
			size[perf_$kind]+="$(calc "$(stat -c %s "$TMPD/$name.data" 2>/dev/null || echo 0) / $DUR") "
			rm -f "$TMPD/$name.data"
		done
	fi
done

med() { tr ' ' '\n' | grep . | median; }
base=$(echo "${rate[none]}" | med)
say "port writes/s per run: none ${rate[none]}| kvmscope ${rate[kvmscope]}| perf kvm:* ${rate[perf_tp]:-}| perf kvm stat ${rate[perf_stat]:-}"
result "guest alone: port writes" "$(fmt %.0f "$base")" "/s" "median of $REPS runs of ${DUR}s, 2 vCPUs"
kr=$(echo "${rate[kvmscope]}" | med)
result "kvmscope record: guest slowdown" "$(fmt %.1f "$(calc "100 * (1 - $kr / $base)")")" "%" "port writes/s $(fmt %.0f "$kr") vs $(fmt %.0f "$base")"
result "kvmscope record: file, whole host" "$(fmt %.0f "$(echo "${size[kvmscope]}" | med)")" "B/s" "${RECORD_METRICS:-every metric}, every field, $nvms VMs seen in the last run"
result "kvmscope record: file, the busy VM" "$(fmt %.0f "$(echo "$per_vm_all" | med)")" "B/s" "its share of the records times the file size"
result "kvmscope record: recorder CPU" "$(fmt %.2f "$(echo "$cpu_all" | med)")" "ms/s" "utime+stime while the guest ran (% of a core: /10)"
if [ $HAVE_PERF = 1 ]; then
	pr=$(echo "${rate[perf_tp]}" | med)
	result "perf record -e kvm:*: guest slowdown" "$(fmt %.1f "$(calc "100 * (1 - $pr / $base)")")" "%" "port writes/s $(fmt %.0f "$pr")"
	result "perf record -e kvm:*: file" "$(fmt %.0f "$(echo "${size[perf_tp]}" | med)")" "B/s" "the busy guest only (-p)"
	ps=$(echo "${rate[perf_stat]}" | med)
	result "perf kvm stat record: guest slowdown" "$(fmt %.1f "$(calc "100 * (1 - $ps / $base)")")" "%" "port writes/s $(fmt %.0f "$ps")"
	result "perf kvm stat record: file" "$(fmt %.0f "$(echo "${size[perf_stat]}" | med)")" "B/s" "the busy guest only (-p)"
fi
