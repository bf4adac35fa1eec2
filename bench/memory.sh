#!/bin/bash
# Memory: agent RSS with 20 instrumentations of vm.exits at 1 hour retention
# (1 s granularity), every slot filled: 10 by vm and latency (10 VMs x
# BUCKETS buckets), 5 by vm (10 VMs), 5 scalar. Filled through the
# persistence path (create, stop, gen_state.py, restart). Bytes per retained
# slot = (RSS filled - RSS with the same instrumentations empty) / slots.
# Usage: bench/memory.sh [BUILD_DIR]   (env: BUCKETS)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=memory
. "$(dirname "$0")/lib.sh"
BUCKETS=${BUCKETS:-10}
need_root_kvm
need_cmd curl jq python3

mkdir -p "$TMPD/state"
start_agent "$TMPD/state"
rss_none=$(rss_kib "$AGENT")
for ((i = 0; i < 20; i++)); do
	if [ $i -lt 10 ]; then d='["vm", "latency"]'; elif [ $i -lt 15 ]; then d='["vm"]'; else d='[]'; fi
	id=$(create_instr "{\"module\": \"vm\", \"stat\": \"exits\", \"decomposition\": $d,
		\"granularity\": 1, \"retention-time\": 3600, \"persist-data\": true}")
	[ -n "$id" ] && [ "$id" != null ] || die "could not create instrumentation $i"
done
stop_agent

# RSS of the agent with the 20 instrumentations, empty, then filled; both
# after a restart so that the two differ only by the data
start_agent "$TMPD/state"
sleep 2
rss_empty=$(rss_kib "$AGENT")
stop_agent
cells=$(python3 "$BENCH_ROOT/bench/gen_state.py" "$TMPD/state" 10 "$BUCKETS") ||
	die "gen_state.py failed"
say "state: 20 instrumentations x 3600 slots, $cells cells ($(du -m "$TMPD/state/data" | cut -f1) MB of JSON)"
start_agent "$TMPD/state"
sleep 2
n=$(curl -s "$URL/ca/instrumentations/1/value/raw?start_time=$(($(date +%s) - 120))" | jq '.value | length')
[ "$n" = 10 ] || die "instrumentation 1 restored with $n keys in a slot, expected 10"
rss_full=$(rss_kib "$AGENT")
hwm_full=$(awk '/^VmHWM:/ {print $2}' /proc/"$AGENT"/status)
# the persister saves every 10 s: wait for a save of the filled data to end
# (state.json is written last), then read the peak again
mark=$(date +%s)
for ((i = 0; i < 60; i++)); do
	[ "$(stat -c %Y "$TMPD/state/state.json")" -gt "$mark" ] && break
	sleep 1
done
hwm_saved=$(awk '/^VmHWM:/ {print $2}' /proc/"$AGENT"/status)
rss_saved=$(rss_kib "$AGENT")
slots=$((20 * 3600))
delta=$(((rss_full - rss_empty) * 1024))

result "agent RSS, no instrumentations" "$(fmt %.1f "$(calc "$rss_none / 1024")")" "MiB" "fresh agent"
result "agent RSS, 20 instrumentations, empty" "$(fmt %.1f "$(calc "$rss_empty / 1024")")" "MiB" "1 h retention each, no data yet"
result "agent RSS, 20 instrumentations, 1 h filled" "$(fmt %.1f "$(calc "$rss_full / 1024")")" "MiB" "$slots slots, $cells cells"
result "agent peak RSS (VmHWM), filled" "$(fmt %.1f "$(calc "$hwm_full / 1024")")" "MiB" "restore parses one data file at a time"
result "agent peak RSS (VmHWM), after a save" "$(fmt %.1f "$(calc "$hwm_saved / 1024")")" "MiB" "saving streams each file, 64 slots per hold of the lock; RSS then $(fmt %.1f "$(calc "$rss_saved / 1024")") MiB"
result "bytes per retained slot" "$(fmt %.0f "$(calc "$delta / $slots")")" "bytes/slot" "RSS delta / slots (mixed: 10x(10 VMs x $BUCKETS buckets), 5x10 VMs, 5 scalar)"
result "bytes per retained cell" "$(fmt %.1f "$(calc "$delta / $cells")")" "bytes/cell" "RSS delta / cells (includes allocator slack)"
