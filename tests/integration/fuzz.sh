#!/bin/bash
# libFuzzer over every target in tests/fuzz/ (engine JSON and predicates,
# discovery's /proc parsers, the agent's form/token/route parsers, heatmap
# parameters). Each target is built with ASan+UBSan, first replays its
# checked-in corpus (tests/fuzz/corpus/TARGET: seeds and past crashes), then
# mutates for FUZZ_SECONDS (default 10). A crash fails the test; the input
# that crashed is kept as tests/artifacts/fuzz-TARGET-crash-*: add it to the
# corpus once fixed, so that it is replayed from then on.
source "$(dirname "$0")/lib.sh"
cd "$_root"
SECS=${FUZZ_SECONDS:-10}
ART=$_root/tests/artifacts
mkdir -p "$ART"

if ! command -v clang >/dev/null; then skip "fuzzing: clang is not installed (make deps)"; tap_done; fi
if ! tests/fuzz/build.sh "$BUILD" >"$TMPD/build.log" 2>&1; then
	not_ok "fuzz targets build (tests/fuzz/build.sh $BUILD)"
	sed 's/^/#   /' "$TMPD/build.log" | tail -30
	tap_done
fi
ok "fuzz targets build into $BUILD/fuzz/"

for src in tests/fuzz/fuzz_*.c; do
	t=$(basename "$src" .c)
	corpus=tests/fuzz/corpus/$t
	work=$TMPD/$t	# new inputs land here: the checked-in corpus stays small
	mkdir -p "$work"
	if [ ! -d "$corpus" ] || [ "$(ls "$corpus" | wc -l)" -lt 10 ]; then
		not_ok "$t: checked-in corpus $corpus has fewer than 10 seeds"
		continue
	fi
	# the corpus alone, once: every past crash must stay fixed
	if "$BUILD/fuzz/$t" -runs=0 -artifact_prefix="$ART/fuzz-$t-" "$corpus" >"$TMPD/$t.replay" 2>&1; then
		ok "$t: replays its $(ls "$corpus" | wc -l) corpus inputs"
	else
		not_ok "$t: a corpus input crashes it (log: tests/artifacts/fuzz-$t.log)"
		cp "$TMPD/$t.replay" "$ART/fuzz-$t.log"
		grep -m5 -E 'ERROR|SUMMARY|runtime error' "$TMPD/$t.replay" | sed 's/^/#   /'
		continue
	fi
	"$BUILD/fuzz/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
		-artifact_prefix="$ART/fuzz-$t-" "$work" "$corpus" >"$TMPD/$t.log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMPD/$t.log")
	if [ $rc -eq 0 ]; then
		ok "$t: no crash in ${SECS}s (${runs:-?} runs)"
	else
		cp "$TMPD/$t.log" "$ART/fuzz-$t.log"
		not_ok "$t: crashed (exit $rc) after ${runs:-?} runs; input kept as $(ls "$ART"/fuzz-"$t"-* 2>/dev/null | grep -v '\.log$' | head -1)"
		grep -m5 -E 'ERROR|SUMMARY|runtime error' "$TMPD/$t.log" | sed 's/^/#   /'
	fi
done
tap_done
