#!/bin/bash
# A new decomposition of vm.disk_ops while another instrumentation of it is
# counting must not cost that one a single operation. Instrumentation A
# (vm.disk_ops of one vmload guest, no decomposition) counts a guest doing
# N reads + M writes at R operations per second; a quarter of the way
# through, in the middle of a second, instrumentation B asks for optype and latency, which
# the kernel side has to start filling in its keys. A's total must equal
# vmload's truth exactly (a collector that reloads its BPF object for B
# loses the undrained second), and in every whole second after B exists,
# A's value must equal the sum of B's.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/agent_lib.sh

require_kvm "disk reconfigure"
if [ ! -x "$VMLOAD" ]; then not_ok "vmload is not built ($VMLOAD): run make"; tap_done; fi

LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir "$TMPD/state"; then
	not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done
fi
VM=diskrc-$$
N=40 M=40 R=16 S=4096
post() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1"; }
A=$(post '{"module":"vm","stat":"disk_ops","predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
check "instrumentation A created (id $A)" test "${A:-0}" -ge 1 2>/dev/null

IMG=$TMPD/image.raw
truncate -s 16M "$IMG"
T0=$(date +%s)
# --delay: the collector rescans disks once a second; the guest starts after
"$VMLOAD" -name guest=$VM --vcpus 1 --delay 2500 --duration 30 \
	--disk file=$IMG,reads=$N,writes=$M,size=$S,pattern=seq,rate=$R \
	--truth "$TMPD/truth.json" > "$TMPD/vmload.out" 2>&1 &
VPID=$!
cleanup_pids+=("$VPID")
# a quarter of the way through the workload, in the middle of a second:
# operations of the current (undrained) second are in the kernel's map now.
# vmload issues its writes first and its reads after them, so B's whole
# seconds must start before the writes end (half-way, B saw reads only)
sleep $(python3 -c "import math, time; t = time.time(); w = math.floor(max(t, $T0 + 2.5 + ($N + $M) / $R / 4)) + 0.5; print(max(0, (w if w >= t else w + 1) - t))")
B=$(post '{"module":"vm","stat":"disk_ops","decomposition":["optype","latency"],"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
TB=$(date +%s)
check "instrumentation B created mid-run (id $B, second $TB)" test "${B:-0}" -ge 1 2>/dev/null
wait $VPID
expect_eq "vmload exit status" "$?" 0
expect_eq "vmload completed its workload" "$(jq -r .completed "$TMPD/truth.json")" true
T1=$(date +%s)
sleep 2.5	# the last second drained

WANT=$(jq '[(.disks // [.disk])[] | (.reads + .writes)] | add' "$TMPD/truth.json")
expect_eq "vmload's truth is N+M operations" "$WANT" $((N + M))
DUR=$((T1 - T0 + 2))
raw() { curl -s "$BASE/ca/instrumentations/$1/value/raw?start_time=$T0&duration=1&ndatapoints=$DUR"; }
raw "$A" > "$TMPD/a.json"
raw "$B" > "$TMPD/b.json"
expect_eq "A counted every operation across B's creation" \
	"$(jq '[.[].value // 0] | add' "$TMPD/a.json")" "$WANT"
# A's per-second values from B's first whole second on, and B's sums
PER_A=$(jq -c --argjson tb "$TB" '[.[] | select(.start_time > $tb) | [.start_time, (.value // 0)]]' "$TMPD/a.json")
PER_B=$(jq -c --argjson tb "$TB" '[.[] | select(.start_time > $tb) |
	[.start_time, ([(.value // {}) | to_entries[] | .value[] | .[1]] | add // 0)]]' "$TMPD/b.json")
expect_eq "A's value equals the sum of B's in every second after B exists" "$PER_A" "$PER_B"
check "B decomposes by optype (reads and writes seen: $(jq -c '[.[].value // {} | keys[]] | unique' "$TMPD/b.json"))" \
	jqe '[.[].value // {} | keys[]] | unique == ["read","write"]' "$TMPD/b.json"
check "operations counted in seconds after B exists (${PER_A:0:60}...)" \
	jqe 'map(.[1]) | add > 0' <<<"$PER_A"
agent_stop
no_logged_errors "$LOG"
tap_done
