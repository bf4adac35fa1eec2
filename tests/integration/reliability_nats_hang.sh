#!/bin/bash
# An aggregator whose NATS server hangs (SIGSTOP: connections stay open, no
# byte comes back): the aggregator keeps answering quickly, refuses a new
# fleet instrumentation within the bucket's timeout (503, not a hang, and
# reads go on meanwhile), reports the bus down, keeps its own host's data,
# does not pile up threads, reconnects when the server wakes, and stops
# cleanly while it hangs. Ports 21250-21252.
. "$(dirname "$0")/lib.sh"
require_kvm "aggregator with a hung NATS server"
command -v nats-server >/dev/null || { skip "nats-server is not installed (make deps installs it)"; tap_done; }

jqe() { jq -e "$@" >/dev/null; }
NP=21250 AGG=21251
nats-server -p $NP -a 127.0.0.1 -js -sd "$TMPD/js" > "$TMPD/nats.log" 2>&1 &
NPID=$!
cleanup_pids+=($NPID)
# a stopped server never gets the TERM: wake it first
trap 'kill -CONT $NPID 2>/dev/null; cleanup' EXIT
"$KVMSCOPE" agent --listen "127.0.0.1:$AGG" --state-dir none --hostname hang-agg --nats nats://127.0.0.1:$NP \
	--fleet hang$$ --aggregate 2> "$TMPD/agg.log" &
APID=$!
cleanup_pids+=($APID)
BASE=http://127.0.0.1:$AGG
bus() { curl -s "$BASE/ca/peers" | jq -r "$1"; }
for _ in $(seq 100); do [ "$(bus .bus.bucket_state 2>/dev/null)" = ready ] && break; sleep 0.1; done
expect_eq "aggregator bound its bucket" "$(bus .bus.bucket_state)" ready
SPEC='{"module": "vm", "stat": "exits", "decomposition": ["vm"], "predicate": {"eq": ["class", "iox"]}}'
create() { curl -s -o "$TMPD/create.json" -w '%{http_code}' -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$SPEC"; }
expect_eq "an instrumentation is created while the bus answers" "$(create)" 201
id=$(jq -r .id "$TMPD/create.json")

kill -STOP $NPID
t0=$(date +%s%N)
create > "$TMPD/code" &
CPID=$!
# a read that waited for the creation (or for the bus) would take its 1 s;
# 700 ms leaves room for a loaded 2-core host without hiding that
LIMIT_MS=700
slow=0
for _ in 1 2 3 4; do
	t1=$(date +%s%N)
	curl -s -o /dev/null "$BASE/ca/instrumentations/$id/value/raw"
	[ $(( ($(date +%s%N) - t1) / 1000000 )) -gt $LIMIT_MS ] && slow=$((slow + 1))
	sleep 0.2
done
wait $CPID
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_eq "a creation while the bus hangs is refused as unavailable" "$(cat "$TMPD/code")" 503
check "... within the bucket's timeout (${ms} ms)" test "$ms" -lt 3500
check "... with the reason ($(jq -r .message "$TMPD/create.json"))" jqe '.message | contains("cannot put the instrumentation in the fleet")' "$TMPD/create.json"
expect_eq "reads meanwhile answered within $LIMIT_MS ms" "$slow" 0
threads0=$(awk '/^Threads:/ {print $2}' /proc/$APID/status)

"$VMLOAD" -name guest=hangtest --delay 1500 --linger 2500 --pio vcpu=0,count=2000 > "$TMPD/truth.json" &
VM=$!
cleanup_pids+=($VM)
slow=0
for i in $(seq 12); do
	t0=$(date +%s%N)
	curl -s -o /dev/null "$BASE/ca/instrumentations/$id/value/raw"
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ "$ms" -gt $LIMIT_MS ] && slow=$((slow + 1))
	sleep 0.5
done
wait $VM
expect_eq "raw reads over 6 s answered within $LIMIT_MS ms while the bus hangs" "$slow" 0
state=$(bus .bus.status)
check "the hung bus is reported ($state, not connected)" test "$state" != connected
why=$(bus .bus.last_error)
check "its last error says why ($why)" test -n "$why" -a "$why" != null
sleep 2
now=$(date +%s)
V=$(curl -s "$BASE/ca/instrumentations/$id/value/raw?start_time=$((now - 12))&duration=1&ndatapoints=10")
expect_eq "the aggregator's own host is still counted" "$(echo "$V" | jq '[.[].value.hangtest // 0] | add')" \
	"$(jq '[.vcpus[].pio] | add' "$TMPD/truth.json")"
expect_eq "nsources counts only the sources alive (itself)" "$(echo "$V" | jq '.[-1].nsources')" 1
threads1=$(awk '/^Threads:/ {print $2}' /proc/$APID/status)
check "no threads pile up ($threads0 -> $threads1)" test "$threads1" -le "$threads0"

kill -CONT $NPID
back() { for _ in $(seq 100); do [ "$(bus .bus.status)" = connected ] && return 0; sleep 0.1; done; return 1; }
check "the aggregator reconnects when the server wakes" back
expect_eq "... and creates again" "$(create)" 201

kill -STOP $NPID
sleep 0.5
t0=$(date +%s)
kill -TERM $APID; wait $APID; rc=$?
expect_eq "the aggregator stops cleanly with a hung bus" "$rc" 0
[ "$rc" = 0 ] || tail -20 "$TMPD/agg.log" | sed 's/^/# /'
check "... promptly ($(( $(date +%s) - t0 )) s)" test $(( $(date +%s) - t0 )) -le 5
kill -CONT $NPID
no_logged_errors "$TMPD/agg.log"
tap_done
