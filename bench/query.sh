#!/bin/bash
# Query latency: an agent holding a 1-hour, 1-second instrumentation of
# vm.exits decomposed by vm and latency, every slot filled with 10 VMs x
# BUCKETS latency buckets (synthetic, through the persistence path: create,
# stop, fill data/<id>.json with gen_state.py, restart); the agent saves
# it again every 10 s meanwhile, as it would in production. Then heatmap image,
# heatmap details and raw value requests: median and p99 over REQS
# sequential requests (curl), and under 50 concurrent clients (wrk).
# The heatmaps cover the last 10 minutes; one more row times the whole hour.
# Usage: bench/query.sh [BUILD_DIR]   (env: REQS, BUCKETS, WRK_SECONDS)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=query
. "$(dirname "$0")/lib.sh"
REQS=${REQS:-200}
BUCKETS=${BUCKETS:-20}
WRK_SECONDS=${WRK_SECONDS:-10}
need_root_kvm
need_cmd curl jq wrk python3

mkdir -p "$TMPD/state"
start_agent "$TMPD/state"
id=$(create_instr '{"module": "vm", "stat": "exits", "decomposition": ["vm", "latency"],
	"granularity": 1, "retention-time": 3600, "persist-data": true}')
[ -n "$id" ] && [ "$id" != null ] || die "could not create the instrumentation"
stop_agent
cells=$(python3 "$BENCH_ROOT/bench/gen_state.py" "$TMPD/state" 10 "$BUCKETS") ||
	die "gen_state.py failed"
say "state: 1 instrumentation, 3600 slots x 10 VMs x $BUCKETS latency buckets = $cells cells ($(du -m "$TMPD/state/data" | cut -f1) MB of JSON)"
start_agent "$TMPD/state"
I=$URL/ca/instrumentations/$id
nkeys=$(curl -s "$I/value/raw?start_time=$(($(date +%s) - 120))" | jq '.value | length')
[ "$nkeys" = 10 ] || die "restored instrumentation has $nkeys keys in a slot, expected 10"

# the heatmaps: the last 10 minutes (what the web UI shows), 100 y-buckets;
# heatmap_image_1h: the whole hour retained
HM="width=600&height=300&nbuckets=100&duration=600"
declare -A Q=(
	[heatmap_image]="$I/value/heatmap/image?$HM"
	[heatmap_details]="$I/value/heatmap/details?$HM&x=300&y=150"
	[raw_value]="$I/value/raw"
	[heatmap_image_1h]="$I/value/heatmap/image?width=600&height=300&nbuckets=100&duration=3600"
)
declare -A N=([heatmap_image]=$REQS [heatmap_details]=$REQS [raw_value]=$REQS [heatmap_image_1h]=$((REQS / 10)))
for q in heatmap_image heatmap_details raw_value heatmap_image_1h; do
	code=$(curl -s -o "$TMPD/$q.out" -w '%{http_code}' "${Q[$q]}")
	[ "$code" = 200 ] || die "$q: HTTP $code: $(head -c 300 "$TMPD/$q.out")"
done
jq -e '.image | length > 1000' "$TMPD/heatmap_image.out" >/dev/null || die "heatmap image is empty"
jq -e '.present | length == 10' "$TMPD/heatmap_image.out" >/dev/null ||
	die "heatmap shows $(jq '.present | length' "$TMPD/heatmap_image.out") keys, expected 10"
say "heatmap image: $(jq -r '.image | length' "$TMPD/heatmap_image.out") base64 bytes, 10 keys present"

ms() { awk '{printf "%.3f\n", $1 * 1000}'; }
for q in raw_value heatmap_details heatmap_image heatmap_image_1h; do
	for ((i = 0; i < N[$q]; i++)); do
		curl -s -o /dev/null -w '%{time_total}\n' "${Q[$q]}"
	done | ms >"$TMPD/$q.seq"
	result "$q, sequential, median" "$(median <"$TMPD/$q.seq")" "ms" "${N[$q]} requests, curl time_total"
	result "$q, sequential, p99" "$(percentile 99 <"$TMPD/$q.seq")" "ms" "${N[$q]} requests"
done

# wrk prints latencies with units: turn them into ms
wrk_ms() { # FILE PERCENT
	awk -v p="$2%" '$1 == p {v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
		f = u == "us" ? 0.001 : u == "s" ? 1000 : u == "m" ? 60000 : 1; printf "%.3f", v * f}' "$1"
}
# Wait until requests queued by the last wrk run are served before timing
# the next one.
agent_idle() {
	local i
	for ((i = 0; i < 120; i++)); do
		t=$(curl -s -o /dev/null -m 5 -w '%{time_total}' "${Q[raw_value]}")
		awk -v t="$t" 'BEGIN {exit !(t > 0 && t < 0.05)}' && return
		sleep 0.5
	done
	die "agent still busy 60 s after wrk"
}
for q in raw_value heatmap_details heatmap_image; do
	agent_idle
	wrk -t 2 -c 50 -d "$WRK_SECONDS"s --timeout 30s --latency "${Q[$q]}" >"$TMPD/$q.wrk" 2>&1 || die "wrk failed: $(cat "$TMPD/$q.wrk")"
	errs=$(awk '/Non-2xx|Socket errors/' "$TMPD/$q.wrk")
	rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMPD/$q.wrk")
	result "$q, 50 clients, median" "$(wrk_ms "$TMPD/$q.wrk" 50)" "ms" "wrk -t2 -c50 -d${WRK_SECONDS}s: $rps req/s${errs:+, $errs}"
	result "$q, 50 clients, p99" "$(wrk_ms "$TMPD/$q.wrk" 99)" "ms" "wrk"
done
