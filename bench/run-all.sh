#!/bin/bash
# Runs every benchmark (make bench), then prints one summary table and
# writes it to bench/results/latest.md.
# Usage: bench/run-all.sh [BUILD_DIR] [NAME...]   (NAME: engine scale idle
# probe_overhead query memory heatmap heavy fleet_nats web; default all)
BUILD=${1:-build}
shift
BENCH_NAME=run-all
. "$(dirname "$0")/lib.sh"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(engine scale idle probe_overhead query memory heatmap heavy fleet_nats web)
OUTDIR=$BENCH_ROOT/bench/results
mkdir -p "$OUTDIR"
export BENCH_RESULTS=$TMPD/results.tsv
: >"$BENCH_RESULTS"

failed=()
start=$(date +%s)
for n in "${names[@]}"; do
	[ -x "$BENCH_ROOT/bench/$n.sh" ] || die "no benchmark '$n' (bench/$n.sh)"
	echo "== $n"
	echo "@$n" >>"$BENCH_RESULTS"
	t0=$(date +%s)
	if ! "$BENCH_ROOT/bench/$n.sh" "$BUILD"; then
		failed+=("$n")
		printf '%s\tFAILED\t-\tsee its output above\n' "$n" >>"$BENCH_RESULTS"
	fi
	echo "   ($n: $(($(date +%s) - t0)) s)"
done

{
	echo "Run: \`make bench\` ($(basename "$0") $BUILD ${names[*]}), $(date -u '+%Y-%m-%d %H:%M UTC'),"
	echo "commit $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), kernel $(uname -r), $(nproc) CPUs, $(($(date +%s) - start)) s in all."
	echo
	echo "| benchmark | metric | value | unit | comparison |"
	echo "|---|---|---:|---|---|"
	awk -F'\t' '/^@/ {b = substr($0, 2); next}
		{printf "| %s | %s | %s | %s | %s |\n", b, $1, $2, $3, $4; b = ""}' "$BENCH_RESULTS"
} >"$OUTDIR/latest.md"
echo
cat "$OUTDIR/latest.md"
if [ ${#failed[@]} -gt 0 ]; then
	echo "bench: failed: ${failed[*]}" >&2
	exit 1
fi
