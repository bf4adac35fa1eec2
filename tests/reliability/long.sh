#!/bin/bash
# The long reliability run, for `make bench` (after bench/run-all.sh):
# the full load (16 guests, 20 instrumentations, 50 clients, 60 s), then
# every fuzz target for FUZZ_SECONDS each (default 120).
# Usage: tests/reliability/long.sh [BUILD_DIR]      (default build)
# Prints TAP; the load summary goes to tests/artifacts/reliability-load.json.
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-build}
export KVMSCOPE=${KVMSCOPE:-$PWD/$OUT/bin/kvmscope} VMLOAD=${VMLOAD:-$PWD/$OUT/bin/vmload} BUILD=${BUILD:-$PWD/$OUT}
mkdir -p tests/artifacts
rc=0
echo "# ---- load: 16 guests, 20 instrumentations, 50 clients, 60 s"
LOAD_REPORT=tests/artifacts/reliability-load.json tests/reliability/load.sh 16 20 50 60 || rc=1
echo "# ---- fuzzing, ${FUZZ_SECONDS:-120} s per target"
FUZZ_SECONDS=${FUZZ_SECONDS:-120} tests/integration/fuzz.sh || rc=1
exit $rc
