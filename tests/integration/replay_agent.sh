#!/bin/bash
# agent --replay: the CA API over a recording gives, for the recorded
# seconds, what a live agent gave. A vmload guest is recorded (kvmscope
# record) while a live agent instruments it; then an agent replaying the
# recording is asked the same instrumentations and must answer value/raw
# exactly as the live one did in every second both saw:
#  - vm.exits by vm,class: counts, exact;
#  - vm.irqs by vm,subsecond: the live agent and the recorder each time the
#    interrupt with their own BPF program, a few ns apart; the guest's
#    interrupts come at +250 ms, far from any 10 ms bucket's edge, so the
#    buckets are compared exactly too. (Latency buckets are not compared
#    here: an exit near a bucket edge can land one bucket apart for two
#    processes; record_replay.sh compares those against the recorder's own
#    drain.)
# Plus: value/raw without start_time is the recording's last second, a
# heatmap image is a PNG, /ca/vms lists the recorded guest, the recording is
# left untouched, and a foreign file or a state dir is refused.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/agent_lib.sh
. tests/integration/record_lib.sh
require_kvm "kvmscope agent --replay"

A=rpa$$
UUID=7b2e1d4f-2c3e-4d6f-9081-123456789abc
W=$TMPD/w
mkdir -p "$W"
REC=$TMPD/rec.kvr
ours="{\"eq\": [\"vm\", \"$A\"]}"
SPECS=("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"class\"], \"predicate\": $ours}"
       "{\"metric\": \"vm.irqs\", \"decomposition\": [\"vm\", \"subsecond\"], \"predicate\": $ours}")
post() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1" | jq -r .id; }

agent_start "$W/live.log" --state-dir none || { not_ok "live agent did not start: $(tail -3 "$W/live.log")"; tap_done; }
LIVE=$BASE LIVE_PID=$AGENT_PID
LIVE_IDS=()
for s in "${SPECS[@]}"; do LIVE_IDS+=("$(post "$s")"); done
check "live instrumentations created (${LIVE_IDS[*]})" test "${LIVE_IDS[0]}" != null -a "${LIVE_IDS[1]}" != null
"$KVMSCOPE" record -o "$REC" -m vm.exits,vm.irqs --duration 12 -j > "$W/record.json" 2> "$W/record.err" &
RPID=$!
cleanup_pids+=($RPID)
for _ in $(seq 100); do [ -s "$REC" ] && [ "$(stat -c %s "$REC")" -gt 16 ] && break; sleep 0.1; done
record_guest_exits $A $UUID "$TMPD/a.json"
wait $GUEST_PID; expect_eq "vmload $A exit status" "$?" 0
wait $RPID; expect_eq "record exit status" "$?" 0
sleep 1.5	# the live agent's drain of the last recorded second
"$KVMSCOPE" report "$REC" --info -j > "$W/info.json"
FIRST=$(jq .first "$W/info.json") LAST=$(jq .last "$W/info.json")
N=$((LAST - FIRST + 1))
expect_eq "recorded 12 seconds" "$N" 12
raw() {	# raw BASE ID: value/raw of the recorded seconds, one {start_time, value} a line
	curl -s "$1/ca/instrumentations/$2/value/raw?start_time=$FIRST&duration=1&ndatapoints=$N" |
		jq -c -S '.[] | {start_time, value}'
}
for i in 0 1; do raw "$LIVE" "${LIVE_IDS[$i]}" > "$W/live.$i"; done
agent_stop
no_logged_errors "$W/live.log"
sha_before=$(sha256sum < "$REC")

# the replay
agent_start "$W/replay.log" --replay "$REC" ||
	{ not_ok "replaying agent did not start: $(tail -3 "$W/replay.log")"; tap_done; }
check "the agent says it replays ($(grep -o 'replaying[^"]*' "$W/replay.log" | head -1))" grep -q "replaying $REC" "$W/replay.log"
desc=("vm.exits by vm,class" "vm.irqs by vm,subsecond")
for i in 0 1; do
	id=$(post "${SPECS[$i]}")
	raw "$BASE" "$id" > "$W/replay.$i"
	# the seconds the live instrumentation saw whole: from its first second on
	f=$(jq -s '[.[] | select(.value != {})][0].start_time // empty' "$W/live.$i")
	n=$(grep -c . "$W/replay.$i")
	events=$(jq -s '[.[].value[] | if type == "array" then [.[][1]] | add else . end] | add // 0' "$W/replay.$i")
	if [ "$n" = "$N" ] && cmp -s "$W/live.$i" "$W/replay.$i"; then
		ok "replay = live for ${desc[$i]}: all $N seconds, $events events"
	else
		not_ok "replay differs from live for ${desc[$i]} (first live second $f): $(diff "$W/live.$i" "$W/replay.$i" | head -4 | cut -c1-400)"
	fi
	IDS[$i]=$id
done
# the truth, not only the live agent's word
io0=$(jq -s --arg k "$A,iox" '[.[].value[$k] // 0] | add' "$W/replay.0")
check "replayed iox exits ($io0) >= vmload's port writes $(jq '[.vcpus[].io_exits] | add' "$TMPD/a.json")" \
	test "$io0" -ge "$(jq '[.vcpus[].io_exits] | add' "$TMPD/a.json")"
at250=$(jq -s --arg k "$A" '[.[].value[$k] // [] | .[] | select(.[0][0] == 250) | .[1]] | add // 0' "$W/replay.1")
expect_eq "replayed interrupts at +250 ms" "$at250" 5

# now is the recording's end
expect_eq "value/raw without start_time: the last recorded second" \
	"$(curl -s "$BASE/ca/instrumentations/${IDS[0]}/value/raw" | jq .start_time)" "$LAST"
# the web UI's series requests: the default data point, then the N seconds
# that end with it
ui_last=$(curl -s "$BASE/ca/instrumentations/${IDS[0]}/value/raw?duration=1" | jq .start_time)
curl -s "$BASE/ca/instrumentations/${IDS[0]}/value/raw?start_time=$((ui_last + 1 - N))&duration=1&ndatapoints=$N" |
	jq -c -S '.[] | {start_time, value}' > "$W/ui.0"
check "value/raw of the $N seconds up to the default data point = the recorded seconds" cmp -s "$W/ui.0" "$W/replay.0"
expect_eq "retention-time covers the recording (600 s at least)" \
	"$(curl -s "$BASE/ca/instrumentations/${IDS[0]}" | jq '."retention-time"')" 600
c=$(code GET "/ca/instrumentations/${IDS[1]}/value/heatmap/image?width=200&height=100")
expect_eq "heatmap image: status" "$c" 200
jq -r .image "$TMPD/body" | base64 -d 2>/dev/null | head -c 8 | od -An -tx1 | tr -d ' \n' > "$W/magic"
expect_eq "heatmap image: a PNG" "$(cat "$W/magic")" 89504e470d0a1a0a
expect_eq "heatmap ends at the recording's end" "$(jq '.start_time + .duration' "$TMPD/body")" $((LAST + 1))
check "heatmap present: the guest" jqe --arg k "$A" '.present | index($k)' "$TMPD/body"
expect_eq "/ca/vms: the recorded guest's uuid" \
	"$(curl -s "$BASE/ca/vms" | jq -r --arg n $A '.[] | select(.name == $n) | .uuid')" $UUID
c=$(code POST /ca/instrumentations -H 'Content-Type: application/json' -d '{"metric": "vm.samples"}')
expect_eq "a metric not recorded: 422" "$c" 422
check "a metric not recorded: said ($(jq -r .message "$TMPD/body" | head -c 100))" grep -q "has no vm.samples" "$TMPD/body"
agent_stop
expect_eq "replay agent exit status" "$?" 0
no_logged_errors "$W/replay.log"
expect_eq "the recording is untouched" "$(sha256sum < "$REC")" "$sha_before"

# refusals
cp "$W/info.json" "$TMPD/foreign.kvr"
"$KVMSCOPE" agent --listen 127.0.0.1:$(free_port) --replay "$TMPD/foreign.kvr" > "$W/foreign.log" 2>&1
rc=$?
check "foreign file: non-zero exit ($rc)" test "$rc" -ne 0
check "foreign file: said ($(head -c 120 "$W/foreign.log"))" grep -q "not a kvmscope recording" "$W/foreign.log"
"$KVMSCOPE" agent --listen 127.0.0.1:$(free_port) --replay "$REC" --state-dir "$TMPD/st" > "$W/state.log" 2>&1
expect_eq "--replay with --state-dir: exit status" "$?" 2
check "--replay with --state-dir: nothing written" test ! -e "$TMPD/st"
tap_done
