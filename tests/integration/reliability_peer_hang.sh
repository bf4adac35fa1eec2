#!/bin/bash
# An aggregator whose peer hangs (accepts connections, never answers): the
# aggregator keeps answering quickly, reports the peer down with the
# timeout, keeps its own data, and does not pile up threads.
. "$(dirname "$0")/lib.sh"
require_kvm "aggregator with a hung peer"
command -v python3 >/dev/null || { skip "python3 is missing (make deps installs it)"; tap_done; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HUNG=$(free_port)
# listen, never accept: connections complete in the kernel, requests never get a byte back
python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $HUNG)); s.listen(128); time.sleep(600)" &
cleanup_pids+=($!)
AGG=$(free_port)
"$KVMSCOPE" agent --listen "127.0.0.1:$AGG" --state-dir none --peers "127.0.0.1:$HUNG" 2> "$TMPD/agg.log" &
APID=$!
cleanup_pids+=($APID)
BASE=http://127.0.0.1:$AGG
for _ in $(seq 50); do curl -s -o /dev/null "$BASE/ca" && break; sleep 0.1; done
check "aggregator serves with a hung peer" curl -sf -o /dev/null "$BASE/ca"

t0=$(date +%s%N)
id=$(curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' \
	-d '{"module": "vm", "stat": "exits", "decomposition": ["vm"], "predicate": {"eq": ["class", "iox"]}}' | jq -r .id)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "creating an instrumentation does not wait for the hung peer (${ms} ms)" test "$ms" -lt 500
threads0=$(awk '/^Threads:/ {print $2}' /proc/$APID/status)

"$VMLOAD" -name guest=hangtest --delay 1500 --linger 2500 --pio vcpu=0,count=2000 > "$TMPD/truth.json" &
VM=$!
cleanup_pids+=($VM)
slow=0
for i in $(seq 12); do
	t0=$(date +%s%N)
	curl -s -o /dev/null "$BASE/ca/instrumentations/$id/value/raw"
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ "$ms" -gt 300 ] && slow=$((slow + 1))
	sleep 0.5
done
wait $VM
expect_eq "raw reads over 6 s answered within 300 ms while the peer hangs" "$slow" 0
state=$(curl -s "$BASE/ca/peers" | jq -r '.[0].state // .peers[0].state')
expect_eq "the hung peer is reported down" "$state" down
why=$(curl -s "$BASE/ca/peers" | jq -r '.[0].last_error // .peers[0].last_error')
check "its last error says why ($why)" test -n "$why" -a "$why" != null
sleep 2
now=$(date +%s)
V=$(curl -s "$BASE/ca/instrumentations/$id/value/raw?start_time=$((now - 12))&duration=1&ndatapoints=10")
got=$(echo "$V" | jq '[.[].value.hangtest // 0] | add')
expect_eq "the aggregator's own host is still counted" "$got" "$(jq '.vcpus[0].io_exits' "$TMPD/truth.json")"
expect_eq "nsources counts only the sources that answer" "$(echo "$V" | jq '.[-1].nsources')" 1
threads1=$(awk '/^Threads:/ {print $2}' /proc/$APID/status)
check "no threads pile up ($threads0 -> $threads1)" test "$threads1" -le "$threads0"
kill -TERM $APID; wait $APID; rc=$?
expect_eq "the aggregator stops cleanly with a hung peer" "$rc" 0
tap_done
