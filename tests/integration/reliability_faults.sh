#!/bin/bash
# The agent under faults: a VM SIGKILLed while instrumented, the agent itself
# SIGKILLed and restarted, the exits map full (synthetic entries written into
# the loaded map from user space, then a real guest), tracefs missing, and a
# full disk under the state directory. Exits come from kvm_pio here (the
# fallback path: kvm_exit does not fire on this host).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "agent faults"
command -v unshare >/dev/null || { skip "agent faults: unshare (util-linux) absent"; tap_done; }

post() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1"; }
alive() { kill -0 "$AGENT_PID" 2>/dev/null && [ "$(code GET /ca)" = 200 ]; }
no_crash() { ! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error|Segmentation|Aborted' "$1"; }

# ---- 1. a VM killed mid-instrumentation
STATE=$TMPD/state LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir "$STATE"; then
	not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done
fi
VM=fault-$$
I=$(post '{"module":"vm","stat":"exits","decomposition":["vm"],"persist-data":true}' | jq -r .id)
check "vm.exits by vm instrumented (id $I)" test "$I" -ge 1
T0=$(date +%s)
"$VMLOAD" -name guest=$VM --pio vcpu=0,count=1000000,rate=500 --duration 60 >/dev/null 2>&1 &
VPID=$!
cleanup_pids+=("$VPID")
seen=
for _ in $(seq 40); do
	sleep 0.25
	curl -s "$BASE/ca/vms" | grep -q "\"$VM\"" && { seen=1; break; }
done
check "the agent lists $VM while it runs" test -n "$seen"
sleep 3
kill -9 "$VPID"; wait "$VPID" 2>/dev/null
T1=$(date +%s)
sleep 3
raw() { curl -s "$BASE/ca/instrumentations/$I/value/raw?start_time=$T0&duration=1&ndatapoints=$(( $(date +%s) - T0 - 1 ))"; }
got=$(raw | jq "[.[].value[\"$VM\"] // 0] | add")
check "exits of the killed VM stay readable ($got)" test "${got:-0}" -ge 500
after=$(curl -s "$BASE/ca/instrumentations/$I/value/raw?start_time=$((T1 + 2))&duration=1&ndatapoints=1" | jq "(if type == \"array\" then .[0] else . end).value[\"$VM\"] // 0")
expect_eq "no exits counted for it after the kill" "$after" 0
gone=
for _ in $(seq 20); do
	curl -s "$BASE/ca/vms" | grep -q "\"$VM\"" || { gone=1; break; }
	sleep 0.25
done
check "the agent no longer lists $VM" test -n "$gone"
check "agent alive after the VM's death" alive

# ---- 2. the agent SIGKILLed and restarted
I2=$(post '{"module":"vm","stat":"irqs","decomposition":["subsecond"],"granularity":5}' | jq -r .id)
sleep 2.5	# the drain loop persists within a second of a change
cp "$STATE/state.json" "$TMPD/state.before"
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "state file intact after SIGKILL (valid JSON, both instrumentations)" \
	jqe ".instrumentations | map(.id) | contains([$I, $I2])" "$STATE/state.json"
check "no temporary file left half-written" test ! -e "$STATE/state.json.tmp" -o -s "$STATE/state.json"
agent_start "$LOG" --state-dir "$STATE" || { not_ok "agent restarts"; tap_done; }
check "instrumentations $I and $I2 are back" \
	sh -c "curl -s $BASE/ca/instrumentations | jq -e 'map(.id) | contains([\"$I\", \"$I2\"])' >/dev/null"
expect_eq "instrumentation $I2 keeps its granularity" "$(curl -s "$BASE/ca/instrumentations/$I2" | jq .granularity)" 5
got2=$(raw | jq "[.[].value[\"$VM\"] // 0] | add")
expect_eq "persisted data of the killed VM survives the agent's SIGKILL" "$got2" "$got"
check "the log says state was restored" grep -q 'restored 2 instrumentations' "$LOG"
agent_stop
check "no crash in the agent log so far" no_crash "$LOG"

# ---- 3. tracefs unmounted (private mount namespace: the host keeps it)
LOG3=$TMPD/agent-notrace.log PORT3=$(free_port)
unshare -m --propagation private sh -c "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null;
	exec '$KVMSCOPE' agent --listen 127.0.0.1:$PORT3 --state-dir none" >"$LOG3" 2>&1 &
AP3=$!
cleanup_pids+=("$AP3")
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT3/ca" && break; sleep 0.1; done
c=$(curl -s -o "$TMPD/body" -w '%{http_code}' -X POST "http://127.0.0.1:$PORT3/ca/instrumentations" \
	-H 'Content-Type: application/json' -d '{"module":"vm","stat":"exits","decomposition":["vm"]}')
check "without tracefs, creating an instrumentation is refused ($c)" test "$c" -ge 400
check "the error names tracefs: $(jq -r .message "$TMPD/body")" jqe '.message | test("tracefs")' "$TMPD/body"
expect_eq "GET /ca still works without tracefs" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT3/ca")" 200
check "the host's tracefs is still mounted" mountpoint -q /sys/kernel/tracing
kill -TERM "$AP3"; wait "$AP3"; rc=$?
expect_eq "that agent exits 0 on SIGTERM" "$rc" 0

# ---- 4. the state directory's disk full (64 KiB tmpfs in a private namespace)
LOG4=$TMPD/agent-full.log PORT4=$(free_port) SD=$TMPD/fullstate
mkdir -p "$SD"
unshare -m --propagation private sh -c "mount -t tmpfs -o size=64k,mode=0700 tmpfs '$SD' &&
	echo ready > '$SD/mounted' &&
	exec '$KVMSCOPE' agent --listen 127.0.0.1:$PORT4 --state-dir '$SD'" >"$LOG4" 2>&1 &
AP4=$!
cleanup_pids+=("$AP4")
B4=http://127.0.0.1:$PORT4
for _ in $(seq 50); do curl -s -o /dev/null "$B4/ca" && break; sleep 0.1; done
SDP=/proc/$AP4/root$SD	# the tmpfs as the agent sees it
id1=$(curl -s -X POST "$B4/ca/instrumentations" -H 'Content-Type: application/json' \
	-d '{"module":"vm","stat":"exits","decomposition":["vm"]}' | jq -r .id)
sleep 2.5
check "first state saved on the small disk" jqe ".instrumentations | length == 1" "$SDP/state.json"
cp "$SDP/state.json" "$TMPD/full.before"
# fill the disk, then make the state grow
dd if=/dev/zero of="$SDP/filler" bs=4k count=64 2>/dev/null
# a create answers 201 only once state.json holds it: on a full disk it is
# refused and undone
refused=0
for n in $(seq 12); do
	c=$(curl -s -o "$TMPD/body" -w '%{http_code}' -X POST "$B4/ca/instrumentations" -H 'Content-Type: application/json' \
		-d '{"module":"vm","stat":"exits","decomposition":["reason"],"predicate":{"eq":["vm","'$(head -c 600 /dev/zero | tr '\0' x)$n'"]}}')
	[ "$c" = 500 ] && jqe '.message | test("No space left")' "$TMPD/body" && refused=$((refused + 1))
done
expect_eq "creates that cannot be saved are refused (500, 'No space left')" "$refused" 12
check "the failed write is reported in the log" grep -q 'cannot write.*state.json.*No space left' "$LOG4"
check "the previous state file is intact (identical, loadable)" cmp -s "$SDP/state.json" "$TMPD/full.before"
check "no temporary file left behind" test ! -e "$SDP/state.json.tmp"
expect_eq "the agent keeps serving on a full disk" "$(curl -s -o /dev/null -w '%{http_code}' "$B4/ca/instrumentations")" 200
expect_eq "only the saved instrumentation lives: the refused ones were undone" "$(curl -s "$B4/ca/instrumentations" | jq length)" 1
rm -f "$SDP/filler"
expect_eq "once space is back a create is answered" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$B4/ca/instrumentations" -H 'Content-Type: application/json' -d '{"module":"vm","stat":"exits","decomposition":["vm"]}')" 201
check "... and saved before its answer (2)" jqe ".instrumentations | length == 2" "$SDP/state.json"
kill -TERM "$AP4"; wait "$AP4"; rc=$?
expect_eq "that agent exits 0 on SIGTERM" "$rc" 0
check "no crash in the fault agents' logs" sh -c "! grep -qE 'Sanitizer|runtime error|Segmentation' '$LOG3' '$LOG4'"
# ---- 5. the exits map full: every slot taken by synthetic entries from user
# space, then a real guest's exits have nowhere to go and must be counted
if ! cc -O2 -o "$TMPD/fill_map" "$_root/tests/reliability/fill_map.c" -lbpf 2>"$TMPD/cc.err"; then
	not_ok "fill_map helper builds"; sed 's/^/# /' "$TMPD/cc.err"
else
	# stopped once the guest is done and its seconds are final, not after a
	# fixed count: on a loaded host the guest's 2 s of writes start late
	"$KVMSCOPE" watch vm.exits -d vm -j -n 120 >"$TMPD/watch.out" 2>"$TMPD/watch.err" &
	WP=$!
	cleanup_pids+=("$WP")
	for _ in $(seq 30); do grep -q 'collector exits started' "$TMPD/watch.err" && break; sleep 0.1; done
	n=$("$TMPD/fill_map" "$WP" exits 2>"$TMPD/fill.err")
	check "exits map of the watch filled from user space ($n entries)" test "${n:-0}" -ge 1000
	"$VMLOAD" -name guest=full-$$ --delay 500 --pio vcpu=0,count=1000,rate=500 --truth "$TMPD/full.truth" >/dev/null 2>&1
	sleep 5; kill -INT "$WP"
	wait "$WP"; rc=$?
	expect_eq "watch exits 0 with a full map" "$rc" 0
	drops=$(jq -s '[.[].dropped // 0] | max' "$TMPD/watch.out")
	want=$(jq '[.vcpus[].pio] | add' "$TMPD/full.truth")
	# other guests on a shared host free the entries their seconds held at
	# each drain, so some of the guest's exits may find room: each is then
	# counted, and the rest reported dropped, never neither
	counted=$(jq -s --arg vm "full-$$" '[.[].value[$vm] // 0] | add' "$TMPD/watch.out")
	if [ "${drops:-0}" -gt 0 ] && [ $((${drops:-0} + ${counted:-0})) -ge "${want:-1000}" ]; then
		ok "watch -j prints \"dropped\", rising to $drops; with the $counted counted, every one of $want port writes is accounted for"
	else
		not_ok "watch -j prints \"dropped\": got ${drops:-nothing} dropped and ${counted:-nothing} counted for $want port writes"
		cat "$TMPD/watch.out" "$TMPD/watch.err" "$TMPD/fill.err" | sed 's/^/# /'
	fi
	check "the drop count only rises" jqe -s '[.[].dropped // 0] as $d | [range(1; $d | length) | $d[.] >= $d[. - 1]] | all' "$TMPD/watch.out"
fi
tap_done
