#!/bin/bash
# Heatmap query costs without HTTP: bench/heatmap/heatmap_bench.c, built here
# against libkvmscope.a, and, side by side in the same run, against the
# kvmscope of BEFORE (a git revision whose renderer read CA JSON slots,
# default 2eab8f5; built from `git archive` in a temporary folder, or taken
# from BEFORE_BUILD, a tree built with `make build/libkvmscope.a`).
# One hour of 1-second slots, 10 VMs x 18 latency buckets each; images
# 600x300, 100 buckets, decompose_all, rank colouring. Reports the median
# (ROUNDS runs) of each request and the longest hold of the agent's lock,
# before and now, their ratio, and a tight C loop's time for the same
# image as the floor. Says whether both builds answer the same pixels,
# details, average and percentile, byte for byte: since the renderer follows
# CA's own arithmetic (ranks with duplicates, the rest layer, CA's pixel
# layout; checked against CA's output in tests/unit/test_ca_conformance.c)
# they differ from 2eab8f5's, and the timings compare the same requests.
# Usage: bench/heatmap.sh [BUILD_DIR]   (env: ROUNDS, BEFORE, BEFORE_BUILD)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=heatmap
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-21}
BEFORE=${BEFORE:-2eab8f5}
[ -f "$BUILD/libkvmscope.a" ] || die "no $BUILD/libkvmscope.a: run 'make' first"
need_cmd cc make git
LIBS="-lbpf -lelf -lz -lzstd -ljansson -lmicrohttpd -lspng -lnats -lcurl -lpthread -lm"

bench_cc() { # SRC_ROOT BUILD_DIR OUT [FLAGS]
	cc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE ${4:-} -I"$1/src" -I"$2" -I"$2/bpf" \
		-I"$1/bpf" "$BENCH_ROOT/bench/heatmap/heatmap_bench.c" -o "$3" "$2/libkvmscope.a" $LIBS
}
NOW_BIN=$TMPD/heatmap_bench
bench_cc "$BENCH_ROOT" "$BUILD" "$NOW_BIN" || die "heatmap_bench does not build"

before_tree build/libkvmscope.a
OLD_BIN=$TMPD/heatmap_bench_before
bench_cc "$old_root" "$old_root/build" "$OLD_BIN" -DHEATMAP_JSON_INPUT ||
	die "heatmap_bench does not build against $BEFORE"

"$NOW_BIN" dump "$TMPD/now.dump" && "$OLD_BIN" dump "$TMPD/before.dump" || die "dump failed"
if cmp -s "$TMPD/now.dump" "$TMPD/before.dump"; then
	say "same pixels, details, average and percentile as $BEFORE ($(wc -c <"$TMPD/now.dump") bytes compared)"
else
	say "answers differ from $BEFORE's (CA's arithmetic and layout now; $(cmp "$TMPD/now.dump" "$TMPD/before.dump" | head -1)): timings of the same requests"
fi

# alternate the two so that both see the same machine load
"$OLD_BIN" "$ROUNDS" >"$TMPD/before.out" || die "heatmap_bench ($BEFORE) failed"
"$NOW_BIN" "$ROUNDS" >"$TMPD/now.out" || die "heatmap_bench failed"
get() { awk -v k="$2" '$1 == k {print $'"${3:-2}"'}' "$1"; }
floor=$(get "$TMPD/now.out" floor_10m)
for op in image_10m image_1h details average percentile refresh; do
	b=$(get "$TMPD/before.out" "$op") n=$(get "$TMPD/now.out" "$op")
	extra=""
	[ "$op" = image_10m ] && extra=", floor (tight C loop, same image) $floor ms: $(calc "$n / $floor")x the floor"
	result "$op, median" "$n" "ms" "before ($BEFORE) $b ms: $(calc "$b / $n")x faster$extra"
	b=$(get "$TMPD/before.out" "lock_$op" 3) n=$(get "$TMPD/now.out" "lock_$op" 3)
	result "$op, longest lock hold" "$n" "ms" "before $b ms (max of the runs)"
done
result "PNG of the 10-min image, encoding" "$(get "$TMPD/now.out" png)" "ms" "with libspng's adaptive filtering (before) $(get "$TMPD/now.out" png_filtered) ms"
result "PNG of the 10-min image, size" "$(get "$TMPD/now.out" png_bytes)" "bytes" "with adaptive filtering $(get "$TMPD/now.out" png_filtered_bytes) bytes"
