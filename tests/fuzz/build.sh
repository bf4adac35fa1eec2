#!/bin/bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.c) into OUT/fuzz/ with
# clang -fsanitize=fuzzer,address,undefined, straight from the sources they
# test so that the code under test is instrumented too.
# Usage: tests/fuzz/build.sh [OUT] [TARGET...]     (OUT defaults to build)
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-build}
shift || true
CLANG=${CLANG:-clang}
FLAGS="-g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -D_GNU_SOURCE -Isrc -I$OUT -I$OUT/bpf -Ibpf"
LIBS="-ljansson -lm"
mkdir -p "$OUT/fuzz"

# the sources each target needs besides itself, and extra libraries
srcs() {
	case $1 in
	fuzz_engine) echo src/engine/metric.c src/engine/predicate.c src/engine/merge.c src/engine/instr.c src/engine/window.c src/common/json_util.c src/common/errmsg.c src/common/utf8.c src/common/grow.c ;;
	fuzz_discovery) echo src/discovery/parse.c ;;
	fuzz_heatmap_params) echo src/render/heatmap.c src/render/ca_math.c src/engine/window.c src/common/errmsg.c src/common/utf8.c src/common/grow.c ;;
	# the agent's parsers (form.c, tokens.c, server.c's route matching and
	# listen-address parsing) instrumented; the rest of the agent comes
	# uninstrumented from libkvmscope.a (make all first)
	fuzz_api) echo src/api/*.c "$OUT/libkvmscope.a" ;;
	*) return 1 ;;
	esac
}
extra_libs() {
	case $1 in
	# libkvmscope's own libraries, as the Makefile has them
	fuzz_api) make -pn all 2>/dev/null | sed -n 's/^LDLIBS *=//p' | head -1 ;;
	esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
for t in "${targets[@]}"; do
	s=$(srcs "$t") || { echo "build.sh: no source list for $t (add it to srcs())" >&2; exit 1; }
	echo "  FUZZ  $OUT/fuzz/$t"
	# shellcheck disable=SC2086
	$CLANG $FLAGS "tests/fuzz/$t.c" $s $LIBS $(extra_libs "$t") -o "$OUT/fuzz/$t"
done
