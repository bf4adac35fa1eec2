#!/bin/bash
# The agent under the heaviest heatmaps the API allows: 6 clients asking in a
# loop for 4096x4096 images of 1000 buckets, decompose_all, over a busy
# guest's vm.exits by vm+latency, while a probe asks GET /ca every 0.25 s.
# Reports the agent's peak and final RSS and the probe's latency, for this
# build and for an earlier revision, alternated in one run so that both see
# the same machine.
# Usage: bench/heavy.sh [BUILD_DIR]   BEFORE=REV (default 7c51b6d) or
# BEFORE_BUILD=DIR (a tree with DIR/build/bin/kvmscope already built);
# SECONDS_EACH=20 ROUNDS=2
BUILD=${1:-build}
BENCH_NAME=heavy
. "$(dirname "$0")/lib.sh"
need_root_kvm
need_cmd curl jq git make
BEFORE=${BEFORE:-7c51b6d}
SECONDS_EACH=${SECONDS_EACH:-20}
ROUNDS=${ROUNDS:-2}
[ -x "$KVMSCOPE" ] || die "no $KVMSCOPE: run 'make' first"

before_tree build/bin/kvmscope
OLD=$old_root/build/bin/kvmscope

"$VMLOAD" -name guest=heavy-$$ --pio vcpu=0,count=100000000,rate=3000 --duration 100000 >/dev/null 2>&1 &
bench_pids+=("$!")

# one_run BINARY LABEL: prints "peak_kib final_kib p50_ms p99_ms max_ms slow_n codes"
one_run() {
	local bin=$1 label=$2 sd=$TMPD/state-$2-$RANDOM peak=0 r i id big end
	KVMSCOPE=$bin start_agent "$sd"
	id=$(create_instr '{"module":"vm","stat":"exits","decomposition":["vm","latency"]}')
	sleep 8
	big="$URL/ca/instrumentations/$id/value/heatmap/image?width=4096&height=4096&nbuckets=1000&decompose_all=true&duration=600"
	end=$(($(date +%s) + SECONDS_EACH))
	: >"$TMPD/codes" >"$TMPD/probe"
	for i in 1 2 3 4 5 6; do
		( while [ "$(date +%s)" -lt "$end" ]; do
			curl -s -o /dev/null -m 60 -w '%{http_code}\n' "$big" >>"$TMPD/codes"
		done ) &
	done
	while [ "$(date +%s)" -lt "$end" ]; do
		curl -s -o /dev/null -m 10 -w '%{time_total}\n' "$URL/ca" >>"$TMPD/probe"
		r=$(rss_kib "$AGENT"); [ "${r:-0}" -gt "$peak" ] && peak=$r
		sleep 0.25
	done
	wait $(jobs -p | grep -v "^$AGENT\$" | grep -v "^${bench_pids[0]}\$") 2>/dev/null
	sleep 2
	r=$(rss_kib "$AGENT")
	echo "$peak $r $(awk '{print $1 * 1000}' "$TMPD/probe" | median) \
$(awk '{print $1 * 1000}' "$TMPD/probe" | percentile 99) $(awk '{print $1 * 1000}' "$TMPD/probe" | sort -g | tail -1) \
$(awk '$1 >= 1' "$TMPD/probe" | wc -l)/$(wc -l <"$TMPD/probe") $(sort "$TMPD/codes" | uniq -c | awk '{printf "%s:%s,", $2, $1}')"
	stop_agent
}

for ((k = 0; k < ROUNDS; k++)); do
	one_run "$OLD" before >>"$TMPD/before.out"
	say "before ($BEFORE): $(tail -1 "$TMPD/before.out")"
	one_run "$KVMSCOPE" now >>"$TMPD/now.out"
	say "now: $(tail -1 "$TMPD/now.out")"
done
col() { awk -v c="$2" '{print $c}' "$1" | sort -g | tail -1; }
for what in "peak RSS:1:MiB" "RSS after the load:2:MiB" "GET /ca p50:3:ms" "GET /ca p99:4:ms" "GET /ca max:5:ms"; do
	IFS=: read -r name c unit <<<"$what"
	n=$(col "$TMPD/now.out" "$c") b=$(col "$TMPD/before.out" "$c")
	if [ "$unit" = MiB ]; then n=$(calc "$n / 1024"); b=$(calc "$b / 1024"); fi
	result "6 clients of maximal heatmaps: $name (worst of $ROUNDS)" "$(fmt %.1f "$n")" "$unit" "before ($BEFORE) $(fmt %.1f "$b") $unit"
done
result "6 clients of maximal heatmaps: GET /ca answers >= 1 s" "$(awk '{print $6}' "$TMPD/now.out" | paste -sd' ')" "-" \
	"before: $(awk '{print $6}' "$TMPD/before.out" | paste -sd' '); heatmap answers now: $(awk '{print $7}' "$TMPD/now.out" | paste -sd' ')"
