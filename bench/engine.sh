#!/bin/bash
# Drain and engine throughput: bench/engine/engine_bench.c, built here
# against libkvmscope.a.
#   ingest: drained vm.exits records of 100 VMs x 4 vCPUs x 10 reasons x 20
#           latency buckets (80000 records a second) through instr__ingest:
#           records/s on one core (median of ROUNDS), and instructions per
#           record under callgrind (counted inside instr__ingest only:
#           repeatable, unlike time on a shared machine).
#   drain:  collector__drain_percpu_hash over a BPF per-CPU hash of ENTRIES
#           entries shaped like the exits collector's (needs root).
# Usage: bench/engine.sh [BUILD_DIR]   (env: SECONDS_FED, ROUNDS, ENTRIES)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=engine
. "$(dirname "$0")/lib.sh"
SECONDS_FED=${SECONDS_FED:-30}
ROUNDS=${ROUNDS:-3}
ENTRIES=${ENTRIES:-100000}
[ -f "$BUILD/libkvmscope.a" ] || die "no $BUILD/libkvmscope.a: run 'make' first"
need_cmd cc valgrind

BIN=$BUILD/bench/engine_bench
mkdir -p "$BUILD/bench"
cc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$BENCH_ROOT/src" -I"$BUILD" \
	-I"$BUILD/bpf" -I"$BENCH_ROOT/bpf" "$BENCH_ROOT/bench/engine/engine_bench.c" -o "$BIN" \
	"$BUILD/libkvmscope.a" -lbpf -lelf -lz -ljansson -lmicrohttpd -lspng -lpthread -lm ||
	die "engine_bench does not build"

get() { awk -v k="$2" '$1 == k {print $2}' "$1"; }
for decomp in vm,vcpu,reason,latency vm; do
	: >"$TMPD/rates"
	for ((r = 0; r < ROUNDS; r++)); do
		"$BIN" ingest "$SECONDS_FED" "$decomp" >"$TMPD/ingest" || die "engine_bench ingest failed"
		get "$TMPD/ingest" records_per_s >>"$TMPD/rates"
	done
	rate=$(median <"$TMPD/rates")
	result "ingest -d $decomp" "$(fmt %.0f "$rate")" "records/s" "one core, median of $ROUNDS x $(get "$TMPD/ingest" records) records ($(fmt %.0f "$(calc "1e9 / $rate")") ns each)"
	result "memory per slot -d $decomp" "$(get "$TMPD/ingest" bytes_per_slot)" "bytes/slot" "instr stats: $(get "$TMPD/ingest" cells_per_slot) cells a slot, $(get "$TMPD/ingest" bytes_per_cell) bytes per cell"

	valgrind --tool=callgrind --toggle-collect=instr__ingest --callgrind-out-file="$TMPD/cg.out" \
		"$BIN" ingest 2 "$decomp" >"$TMPD/cg.stdout" 2>"$TMPD/cg.err" || die "callgrind run failed: $(tail -3 "$TMPD/cg.err")"
	ir=$(awk '/Collected :/ {print $NF}' "$TMPD/cg.err")
	n=$(get "$TMPD/cg.stdout" records)
	result "instructions per record -d $decomp" "$(fmt %.0f "$(calc "$ir / $n")")" "instr/record" "callgrind, inside instr__ingest, $n records"
done

if [ "$(id -u)" = 0 ]; then
	: >"$TMPD/rates"
	for ((r = 0; r < ROUNDS; r++)); do
		"$BIN" drain "$ENTRIES" >"$TMPD/drain" || die "engine_bench drain failed"
		get "$TMPD/drain" entries_per_s >>"$TMPD/rates"
	done
	rate=$(median <"$TMPD/rates")
	result "drain per-CPU hash ($ENTRIES entries)" "$(fmt %.0f "$rate")" "entries/s" "collector__drain_percpu_hash, $(get "$TMPD/drain" cpus) CPUs, median of $ROUNDS ($(fmt %.0f "$(calc "1e9 / $rate")") ns each)"
else
	say "SKIP drain: needs root (BPF maps)"
	result "drain per-CPU hash" "skipped" "-" "needs root"
fi
