#!/bin/bash
# Probe overhead per VM exit: kvmscope vs bpftrace vs perf record.
#
# An exit-heavy vmload guest (COUNT tight port writes, each a userspace I/O
# exit) runs, interleaved over ROUNDS rounds:
#   none      no tracing
#   kvmscope  `kvmscope watch vm.exits -d vcpu,reason,latency -j`
#   bpftrace  the equivalent bpftrace script (below)
#   perf      `perf record -e kvm:kvm_pio -e kvm:kvm_fpu` (every event to a file)
#   side      kvmscope, bpftrace and the floor (bench/floor/exit_floor.bpf.c:
#             empty programs on exactly kvmscope's hooks) attached together with
#             kernel.bpf_stats_enabled=1: run_time_ns / exits per tool, per
#             program, in the same run (a whole-run timing hides tens of ns
#             behind a ~5-10 us exit; the per-program figures do not).
# Usage: bench/probe_overhead.sh [BUILD_DIR]   (env: COUNT, ROUNDS; SIDE_ONLY=1
# runs only the side-by-side per-program measurement, for quick comparisons)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=probe_overhead
. "$(dirname "$0")/lib.sh"
COUNT=${COUNT:-200000}
ROUNDS=${ROUNDS:-3}
need_root_kvm
need_cmd bpftrace bpftool perf jq

# The same aggregation kvmscope does for -d vcpu,reason,latency on this
# host's exit source: per thread, exit reason (I/O: the port write is the
# exit), latency from kvm_pio to KVM_RUN re-entry (kvm_fpu load) as an
# in-kernel histogram, drained and cleared each second. Differences, said
# plainly: bpftrace's hist() is log2 (kvmscope: log-linear, 100 steps per
# decade), its key has no second (kvmscope keys by TAI second so draining
# never races the writer), and it watches only port I/O, where kvmscope also
# runs kvm_userspace_exit per exit to catch every other reason.
cat >"$TMPD/exits.bt" <<'BT'
tracepoint:kvm:kvm_pio { @start[tid] = nsecs; }
tracepoint:kvm:kvm_fpu /args->load && @start[tid]/ {
	@lat[pid, tid, "io"] = hist(nsecs - @start[tid]);
	delete(@start[tid]);
}
interval:s:1 { print(@lat); clear(@lat); }
BT
# The floor every tracer pays here: the same two tracepoints enabled with a
# BPF program that does nothing. What is above it is the tracer's own work.
printf 'tracepoint:kvm:kvm_pio, tracepoint:kvm:kvm_fpu { }\n' >"$TMPD/empty.bt"

# The floor of kvmscope's own hooks: empty programs of the same types on the
# same tracepoints (tp_btf, which bpftrace 0.17 cannot attach), held by a
# small libbpf loader; kvmscope / floor is what kvmscope's work costs.
clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -I"$BUILD/bpf" \
	-c "$BENCH_ROOT/bench/floor/exit_floor.bpf.c" -o "$TMPD/exit_floor.bpf.o" ||
	die "cannot build bench/floor/exit_floor.bpf.c (run make first: it needs $BUILD/bpf/vmlinux.h)"
cc -std=gnu11 -Wall -Wextra -Werror -O2 "$BENCH_ROOT/bench/floor/bpf_attach_all.c" \
	-o "$TMPD/bpf_attach_all" -lbpf || die "cannot build bench/floor/bpf_attach_all.c"

guest() { # guest TRUTH_FILE [prefix command...]
	local truth=$1
	shift
	"$@" "$VMLOAD" --pio vcpu=0,count="$COUNT" --duration 120 --truth "$truth" >/dev/null 2>&1 ||
		die "vmload failed (truth: $(cat "$truth" 2>/dev/null))"
	truth_rate "$truth"
}

# perf record, system-wide (as an operator runs it on a host); it must have
# written every event, or the run does not count
# A classic-tracepoint BPF program that returns 0 (kvmscope's and
# bpftrace's do) drops the event for every perf user of that tracepoint:
# perf record then sees nothing. Wait for other tracers to go first.
foreign_tp_progs() {
	bpftool perf -j 2>/dev/null | jq -r '.[] | select(.tracepoint == "kvm_pio" or .tracepoint == "kvm_fpu") | .pid' | sort -u
}
perf_guest() {
	local try rate samples i who
	for ((i = 0; i < 60; i++)); do
		who=$(foreign_tp_progs)
		[ -z "$who" ] && break
		sleep 1
	done
	if [ -n "$who" ]; then
		PERF_BLOCKED="BPF programs of pid $(echo $who) on kvm:kvm_pio/kvm_fpu suppress perf's samples"
		echo "# perf record not run: $PERF_BLOCKED" >&2
		return 1
	fi
	for try in 1 2 3; do
		rate=$(guest "$TMPD/t" perf record -q -a -e kvm:kvm_pio -e kvm:kvm_fpu -o "$TMPD/perf.data" --)
		samples=$(perf report -i "$TMPD/perf.data" --stats 2>/dev/null |
			awk '/^ *SAMPLE events:/ {print $3; exit}')
		if [ "${samples:-0}" -ge $((3 * COUNT)) ]; then
			echo "$rate"
			return
		fi
		echo "# perf record wrote ${samples:-0} samples, expected >= $((3 * COUNT)): again" >&2
	done
	PERF_BLOCKED="perf record wrote ${samples:-0} of $((3 * COUNT)) samples"
	return 1
}

start_kvmscope() {
	"$KVMSCOPE" watch vm.exits -d vcpu,reason,latency -j >"$1" 2>"$1.err" &
	KS_PID=$!
	bench_pids+=("$KS_PID")
	wait_progs "$KS_PID" 7 || die "kvmscope watch did not attach: $(cat "$1.err")"
	sleep 1.1	# counting starts at the next whole second
}
start_bpftrace() { # OUT [SCRIPT]
	bpftrace "${2:-$TMPD/exits.bt}" >"$1" 2>&1 &
	BT_PID=$!
	bench_pids+=("$BT_PID")
	wait_progs "$BT_PID" 2 || die "bpftrace did not attach: $(cat "$1")"
}
stop() { kill -INT "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# events kvmscope counted, from its JSON lines ({"key": [[[lo,hi],n],...]})
kvmscope_total() {
	jq -s '[.[].value | to_entries[] | .value[] | .[1]] | add // 0' "$1"
}

: >"$TMPD/empty"; : >"$TMPD/none"; : >"$TMPD/kvmscope"; : >"$TMPD/bpftrace"; : >"$TMPD/perf"
say "guest: vmload --pio vcpu=0,count=$COUNT, $ROUNDS rounds"
SIDE_ONLY=${SIDE_ONLY:-0}
[ "$SIDE_ONLY" = 1 ] && ROUNDS=0
for ((r = 1; r <= ROUNDS; r++)); do
	guest "$TMPD/t" >>"$TMPD/none"

	start_kvmscope "$TMPD/ks.$r"
	guest "$TMPD/t" >>"$TMPD/kvmscope"
	sleep 2.2	# let the last seconds drain
	stop "$KS_PID"
	seen=$(kvmscope_total "$TMPD/ks.$r")
	# other guests on a shared host may add exits, never remove them
	[ "$seen" -ge "$COUNT" ] || die "kvmscope counted $seen exits, the guest made $COUNT"

	start_bpftrace "$TMPD/bt.$r"
	guest "$TMPD/t" >>"$TMPD/bpftrace"
	stop "$BT_PID"

	start_bpftrace "$TMPD/empty.$r" "$TMPD/empty.bt"
	guest "$TMPD/t" >>"$TMPD/empty"
	stop "$BT_PID"

	PERF_BLOCKED=
	perf_guest >>"$TMPD/perf" || echo nan >>"$TMPD/perf"
	printf '# round %d: exits/s none %.0f, kvmscope %.0f, bpftrace %.0f, empty BPF %.0f, perf record %.0f (kvmscope counted %d)\n' \
		"$r" "$(tail -1 "$TMPD/none")" "$(tail -1 "$TMPD/kvmscope")" "$(tail -1 "$TMPD/bpftrace")" \
		"$(tail -1 "$TMPD/empty")" "$(tail -1 "$TMPD/perf")" "$seen"
done
perf_mb=$(du -m "$TMPD/perf.data" 2>/dev/null | cut -f1)

# Side by side, one run: both tools attached, per-program kernel time.
start_kvmscope "$TMPD/ks.side"
start_bpftrace "$TMPD/bt.side"
"$TMPD/bpf_attach_all" "$TMPD/exit_floor.bpf.o" >"$TMPD/floor.out" 2>&1 &
FL_PID=$!
bench_pids+=("$FL_PID")
wait_progs "$FL_PID" 8 || die "the floor programs did not attach: $(cat "$TMPD/floor.out")"
mapfile -t ks_ids < <(prog_ids_of "$KS_PID")
mapfile -t bt_ids < <(prog_ids_of "$BT_PID")
mapfile -t fl_ids < <(prog_ids_of "$FL_PID")
bpf_stats_on
prog_stats "${ks_ids[@]}" "${bt_ids[@]}" "${fl_ids[@]}" >"$TMPD/before"
guest "$TMPD/t" >/dev/null
prog_stats "${ks_ids[@]}" "${bt_ids[@]}" "${fl_ids[@]}" >"$TMPD/after"
bpf_stats_off
stop "$KS_PID"
stop "$BT_PID"
stop "$FL_PID"
exits=$(jq '[.vcpus[].io_exits] | add' "$TMPD/t")

# per program: events and ns during the guest run (delta of the counters)
join <(sort "$TMPD/before") <(sort "$TMPD/after") |
	awk '{print $1, $2, $6 - $3, $7 - $4}' >"$TMPD/delta"
tool_of() { # ID -> kvmscope | floor | bpftrace
	local i
	for i in "${ks_ids[@]}"; do [ "$i" = "$1" ] && { echo kvmscope; return; }; done
	for i in "${fl_ids[@]}"; do [ "$i" = "$1" ] && { echo floor; return; }; done
	echo bpftrace
}
while read -r id name cnt ns; do
	[ "$cnt" -gt 0 ] || continue
	printf '%s %s %s %s %s\n' "$(tool_of "$id")" "$id" "$name" "$cnt" "$ns"
done <"$TMPD/delta" >"$TMPD/fired"
say "programs that fired during the side-by-side run ($exits guest exits):"
awk '{printf "#   %-9s %-24s %9d runs %12d ns  %7.1f ns/run\n", $1, $3, $4, $5, $5 / $4}' "$TMPD/fired"
# per exit: all of a tool's kernel time over the exits its kvm_pio program
# saw (other guests on the host add to both alike)
per_exit() {
	awk -v t="$1" '$1 == t {ns += $5; if ($3 ~ /kvm_pio$/) pio = $4}
		END {printf "%.1f", pio ? ns / pio : 0}' "$TMPD/fired"
}
per_run() { awk -v t="$1" '$1 == t {ns += $5; n += $4} END {printf "%.1f", n ? ns / n : 0}' "$TMPD/fired"; }
ks_ns=$(per_exit kvmscope)
bt_ns=$(per_exit bpftrace)
fl_ns=$(per_exit floor)

if [ "$SIDE_ONLY" = 1 ]; then
	result "added ns/exit, kvmscope (BPF run time)" "$ks_ns" "ns/exit" "$(per_run kvmscope) ns per program run"
	result "added ns/exit, bpftrace (BPF run time)" "$bt_ns" "ns/exit" "$(per_run bpftrace) ns per program run"
	result "added ns/exit, empty programs on kvmscope's hooks (BPF run time)" "$fl_ns" "ns/exit" "$(per_run floor) ns per program run: the floor"
	result "kvmscope / floor, ns per exit" "$(fmt %.2f "$(calc "$ks_ns / $fl_ns")")" "ratio" "same run; 1 would be free"
	result "kvmscope / bpftrace, ns per exit" "$(fmt %.2f "$(calc "$ks_ns / $bt_ns")")" "ratio" "same run, <= 1 means kvmscope is cheaper"
	exit 0
fi
none=$(median <"$TMPD/none")
ks_rate=$(median <"$TMPD/kvmscope")
bt_rate=$(median <"$TMPD/bpftrace")
perf_rate=$(grep -v nan "$TMPD/perf" | median)
perf_runs=$(grep -vc nan "$TMPD/perf")
empty_rate=$(median <"$TMPD/empty")
added() { calc "(1e9 / $1 - 1e9 / $none)"; }
perf_ns=nan
[ "$perf_runs" -gt 0 ] && perf_ns=$(added "$perf_rate")

result "exits/s, no tracing" "$(fmt %.0f "$none")" "exits/s" "median of $ROUNDS runs of $COUNT port writes"
result "exits/s, kvmscope watch" "$(fmt %.0f "$ks_rate")" "exits/s" "$(fmt %.1f "$(calc "100 * $ks_rate / $none")")% of untraced"
result "exits/s, bpftrace" "$(fmt %.0f "$bt_rate")" "exits/s" "$(fmt %.1f "$(calc "100 * $bt_rate / $none")")% of untraced"
result "exits/s, empty BPF on kvm_pio+kvm_fpu" "$(fmt %.0f "$empty_rate")" "exits/s" "$(fmt %.1f "$(calc "100 * $empty_rate / $none")")% of untraced: the tracepoints' own floor"
if [ "$perf_runs" -gt 0 ]; then
	result "exits/s, perf record" "$(fmt %.0f "$perf_rate")" "exits/s" "$(fmt %.1f "$(calc "100 * $perf_rate / $none")")% of untraced, median of $perf_runs ($((3 * COUNT)) events, ${perf_mb} MB perf.data)"
else
	result "exits/s, perf record" "n/a" "exits/s" "not measurable: $PERF_BLOCKED"
fi
result "added ns/exit, kvmscope (BPF run time)" "$ks_ns" "ns/exit" "$(per_run kvmscope) ns per program run"
result "added ns/exit, bpftrace (BPF run time)" "$bt_ns" "ns/exit" "$(per_run bpftrace) ns per program run"
result "added ns/exit, empty programs on kvmscope's hooks (BPF run time)" "$fl_ns" "ns/exit" "$(per_run floor) ns per program run: the floor"
result "kvmscope / floor, ns per exit" "$(fmt %.2f "$(calc "$ks_ns / $fl_ns")")" "ratio" "same run; 1 would be free"
result "added ns/exit, kvmscope (whole run)" "$(fmt %.0f "$(added "$ks_rate")")" "ns/exit" "from the exits/s slowdown (noisy)"
result "added ns/exit, bpftrace (whole run)" "$(fmt %.0f "$(added "$bt_rate")")" "ns/exit" "from the exits/s slowdown (noisy)"
result "added ns/exit, empty BPF (whole run)" "$(fmt %.0f "$(added "$empty_rate")")" "ns/exit" "tracepoint floor, from the slowdown (noisy)"
[ "$perf_runs" -gt 0 ] && result "added ns/exit, perf record (whole run)" "$(fmt %.0f "$perf_ns")" "ns/exit" "from the exits/s slowdown"
result "kvmscope / bpftrace, ns per exit" "$(fmt %.2f "$(calc "$ks_ns / $bt_ns")")" "ratio" "same run, <= 1 means kvmscope is cheaper"
[ "$perf_runs" -gt 0 ] && result "kvmscope / perf record, ns per exit" "$(fmt %.3f "$(calc "$ks_ns / $perf_ns")")" "ratio" "perf: whole-run slowdown"
[ "$perf_runs" -gt 0 ] && result "kvmscope / perf record, whole run" "$(fmt %.2f "$(calc "$(added "$ks_rate") / $perf_ns")")" "ratio" "both from exits/s slowdowns (noisy)"
exit 0
