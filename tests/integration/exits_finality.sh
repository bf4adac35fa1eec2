#!/bin/bash
# Finality of vm.exits (docs/api.md, "Finality"): an exit is booked in the
# second it began even when it ends after that second was drained, and a
# second is shown as final only once every exit that began in it is booked.
# A vmload guest halts for ~1 s at a time on vCPU 0 (--hlt rate=1: each HLT
# begins right after the wake-up of the one before and spans a second
# boundary) while vCPU 1 makes 1 s MMIO exits (--mmio rate=1: vmload sleeps
# inside the exit). vmload's truth says when each HLT began (halted_ns); the
# agent's HLT count per second, and `kvmscope watch -j`'s, must equal it.
# `kvmscope stat -j` and a recording shown by `kvmscope report -j` must too.
# Before finality, a halt that ended after the drain of its second was
# counted in the next one. Path covered: the fallback one (kvm_vcpu_wakeup,
# kvm_mmio, kvm_fpu), the only one that fires on this machine.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/agent_lib.sh

require_kvm "vm.exits finality"
if [ ! -x "$VMLOAD" ]; then not_ok "vmload is not built ($VMLOAD): run make"; tap_done; fi
# a port of this test's own range, where free (FINALITY_PORT to choose another)
free_port() {
	local p
	for p in ${FINALITY_PORT:-} $(seq 21110 21199); do
		python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$p" \
			2>/dev/null && { echo "$p"; return; }
	done
}

LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir none; then
	not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done
fi
VM=final-$$
PRED0='{"and": [{"eq": ["vm", "'$VM'"]}, {"eq": ["vcpu", "0"]}]}'
PRED1='{"and": [{"eq": ["vm", "'$VM'"]}, {"eq": ["vcpu", "1"]}]}'
mk() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1"; }
mk '{"module":"vm","stat":"exits","decomposition":["reason"],"predicate":'"$PRED0"'}' > "$TMPD/post.json"
ID=$(jq -r .id "$TMPD/post.json")
check "instrumentation created (id $ID)" test "${ID:-0}" -ge 1 2>/dev/null
ID1=$(mk '{"module":"vm","stat":"exits","decomposition":["reason"],"predicate":'"$PRED1"'}' | jq -r .id)
check "POST answer carries no final_until" jqe 'has("final_until") | not' "$TMPD/post.json"
code POST "/ca/instrumentations/$ID/clone" -H 'Content-Type: application/json' -d '{}' > "$TMPD/clone.code"
cp "$TMPD/body" "$TMPD/clone.json"
check "clone (POST) answer carries no final_until ($(cat "$TMPD/clone.code"))" \
	jqe 'has("final_until") | not' "$TMPD/clone.json"
code PUT "/ca/instrumentations/$ID1" -H 'Content-Type: application/json' \
	-d '{"module":"vm","stat":"exits","decomposition":["reason"],"predicate":'"$PRED1"',"retention-time":1200}' > "$TMPD/put.code"
check "PUT answer carries no final_until ($(cat "$TMPD/put.code"))" \
	jqe '."retention-time" == 1200 and (has("final_until") | not)' "$TMPD/body"
CLONE=$(jq -r .id "$TMPD/clone.json")
[ "$CLONE" != null ] && code DELETE "/ca/instrumentations/$CLONE" > /dev/null

"$KVMSCOPE" watch vm.exits -d reason -P "$PRED0" -j > "$TMPD/watch.json" 2> "$TMPD/watch.err" &
WPID=$!
cleanup_pids+=($WPID)
wait_counting "$TMPD/watch.json"

code GET "/ca/instrumentations/$ID" > /dev/null
check "GET instrumentation: final_until, after CA's fields" \
	jqe '(.final_until | type == "number") and (keys_unsorted | last == "final_until")' "$TMPD/body"
code GET "/ca/instrumentations" > /dev/null
check "GET instrumentations: final_until on each" \
	jqe 'length >= 2 and all(.[]; .final_until | type == "number")' "$TMPD/body"

# stat and record too (they end on their own, once their last second is final)
"$KVMSCOPE" stat -j 1 18 > "$TMPD/stat.json" 2> "$TMPD/stat.err" &
SPID=$!
"$KVMSCOPE" record -o "$TMPD/rec.kvr" -m vm.exits -d vcpu,reason --duration 18 \
	> /dev/null 2> "$TMPD/rec.err" &
RPID=$!
cleanup_pids+=($SPID $RPID)
sleep 1.5	# both count from their next whole second

# the guest starts at ~0.3 s into a second: every halt then begins ~0.3 s
# into one, far from the boundary the check depends on
python3 -c 'import time; time.sleep(1.3 - time.time() % 1)'
"$VMLOAD" -name guest=$VM --vcpus 2 --duration 40 --linger 500 \
	--hlt vcpu=0,count=7,rate=1 --mmio vcpu=1,count=7,rate=1 \
	--truth "$TMPD/truth.json" > "$TMPD/vmload.out" 2>&1 &
VPID=$!
cleanup_pids+=($VPID)

# While it runs: final_until never goes back; right after a boundary the
# second just ended is partial, with a delay; with a timeout the same point
# waits until it is final.
python3 - "$BASE" "$ID" "$TMPD" <<'EOF' > "$TMPD/probe.out" 2>&1
import json, sys, time, urllib.request, threading
base, iid, tmpd = sys.argv[1], sys.argv[2], sys.argv[3]
def get(path):
    with urllib.request.urlopen(base + path, timeout=15) as r:
        return json.load(r)
finals, res = [], {}
def poll():
    end = time.time() + 6
    while time.time() < end:
        finals.append(get("/ca/instrumentations/%s" % iid)["final_until"])
        time.sleep(0.2)
th = threading.Thread(target=poll); th.start()
time.sleep(2.5)
# 0.03 s after a boundary: second S has ended, its drain is ~0.15 s away
t = time.time(); time.sleep(1.03 - t % 1); s = int(time.time()) - 1
res["early"] = get("/ca/instrumentations/%s/value/raw?start_time=%d" % (iid, s))
t0 = time.time()
res["waited"] = get("/ca/instrumentations/%s/value/raw?start_time=%d&timeout=6000" % (iid, s))
res["waited_s"] = time.time() - t0
res["second"] = s
# waiting requests hold no server thread: eight of them (the server has
# four threads) and a plain request still answers at once
s2 = int(time.time())
waiters = [threading.Thread(target=get, args=("/ca/instrumentations/%s/value/raw?start_time=%d&timeout=3000" % (iid, s2),)) for _ in range(8)]
for w in waiters: w.start()
time.sleep(0.3)
t0 = time.time(); get("/ca"); res["plain_s"] = time.time() - t0
for w in waiters: w.join()
res["default"] = get("/ca/instrumentations/%s/value/raw" % iid)
th.join()
res["finals"] = finals
json.dump(res, open(tmpd + "/probe.json", "w"))
EOF
wait $VPID
expect_eq "vmload exit status" "$?" 0
sed 's/^/# /' "$TMPD/probe.out"
P=$TMPD/probe.json
if [ ! -s "$P" ]; then not_ok "probe ran"; tap_done; fi

check "final_until never goes back ($(jq -c '.finals | unique' "$P"))" \
	jqe '.finals | length > 10 and (. == sort)' "$P"
check "final_until moves on while the guest runs" jqe '.finals | last > first' "$P"
check "second just ended, asked 30 ms after: partial, delay >= 1 s ($(jq -c '.early | {final_until, partial, delay}' "$P"))" \
	jqe '.early.partial == true and .early.delay >= 1 and .early.final_until <= .second' "$P"
check "with timeout=6000 the same point waits until final ($(jq -c '{waited_s, f: .waited.final_until}' "$P"))" \
	jqe '(.waited | has("partial") | not) and .waited.final_until > .second and .waited_s > 0.1 and .waited_s < 6' "$P"
check "a plain request is answered while 8 wait ($(jq .plain_s "$P") s)" jqe '.plain_s < 1' "$P"
check "default point (no start_time) is final ($(jq -c '.default | {start_time, final_until}' "$P"))" \
	jqe '(.default | has("partial") | not) and .default.start_time + .default.duration <= .default.final_until' "$P"

# Every second the halts began in, final now: the agent's count per second
# is vmload's. The first HLT of the run is woken at once and the next one
# begins right after, in the same second.
HSEC=$(jq -c '[.irqs[] | select(.purpose == "hlt") | .halted_ns[] | (. / 1e9 | floor)]' "$TMPD/truth.json")
FIRST=$(jq '.[0]' <<<"$HSEC")
LAST=$(jq '.[-1]' <<<"$HSEC")
N=$((LAST - FIRST + 1))
for _ in $(seq 60); do
	F=$(curl -s "$BASE/ca/instrumentations/$ID" | jq .final_until)
	[ "$F" -gt "$LAST" ] 2>/dev/null && break
	sleep 0.2
done
check "final_until passes the last halt's second within 12 s ($F > $LAST)" test "$F" -gt "$LAST"
curl -s "$BASE/ca/instrumentations/$ID/value/raw?start_time=$FIRST&ndatapoints=$N" > "$TMPD/raw.json"
GOT=$(jq -c '[.[] | .value.HLT // 0]' "$TMPD/raw.json")
WANT=$(jq -c --argjson f "$FIRST" --argjson n "$N" '. as $s | [range(0; $n) | . + $f | . as $t | [$s[] | select(. == $t)] | length]' <<<"$HSEC")
expect_eq "HLT exits per second (agent) = halts begun in it (vmload truth)" "$GOT" "$WANT"
check "those points are not partial" jqe 'all(.[]; has("partial") | not)' "$TMPD/raw.json"
check "the halts counted are vmload's ($(jq '[.[].value.HLT // 0] | add' "$TMPD/raw.json"))" \
	test "$(jq '[.[].value.HLT // 0] | add' "$TMPD/raw.json")" = "$(jq '.vcpus[0].hlt' "$TMPD/truth.json")"
S=$(jq .second "$P")
if [ "$S" -ge "$FIRST" ] && [ "$S" -le "$LAST" ]; then
	expect_eq "the point waited for = the truth of its second" "$(jq '.waited.value.HLT // 0' "$P")" \
		"$(jq --argjson t "$S" '[.[] | select(. == $t)] | length' <<<"$HSEC")"
else
	not_ok "the point waited for ($S) is outside the halts' seconds $FIRST..$LAST"
fi
# the 1 s MMIO exits of vCPU 1 (vmload sleeps inside each) are all there
curl -s "$BASE/ca/instrumentations/$ID1/value/raw?start_time=$((FIRST - 2))&ndatapoints=$((N + 4))" > "$TMPD/raw1.json"
# (+ 1: the guest's in-kernel LAPIC write at start, as in watch_exits_irqs.sh)
expect_eq "vCPU 1 MMIO exits = vmload's userspace MMIO exits + its LAPIC write" \
	"$(jq '[.[].value.MMIO // 0] | add' "$TMPD/raw1.json")" \
	"$(jq '.vcpus[1].mmio_exits + 1 + .vcpus[1].irqs' "$TMPD/truth.json")"

# watch prints a second once final: its HLT counts are the truth's too
for _ in $(seq 50); do
	[ "$(jq -s 'last.time' "$TMPD/watch.json")" -gt "$LAST" ] 2>/dev/null && break
	sleep 0.2
done
kill -INT $WPID 2>/dev/null; wait $WPID
WGOT=$(jq -s -c --argjson f "$FIRST" --argjson l "$LAST" '[.[] | select(.time >= $f and .time <= $l) | .value.HLT // 0]' "$TMPD/watch.json")
expect_eq "watch -j: HLT per second = the truth's" "$WGOT" "$WANT"

# stat prints an interval once final, with exits in the second they began;
# record closes a second once final, so report shows the same
wait $SPID
expect_eq "stat exit status" "$?" 0
SGOT=$(jq -s -c --argjson f "$FIRST" --argjson l "$LAST" --arg vm "$VM" \
	'[.[] | select(.time >= $f and .time <= $l) | [.vcpus[] | select(.vm == $vm and .vcpu == 0) | .haltx // 0] | add // 0]' \
	"$TMPD/stat.json")
expect_eq "stat -j: vCPU 0 haltx per second = the truth's" "$SGOT" "$WANT"
wait $RPID
expect_eq "record exit status" "$?" 0
"$KVMSCOPE" report "$TMPD/rec.kvr" vm.exits -d reason -P "$PRED0" -j > "$TMPD/report.json" 2> "$TMPD/report.err"
RGOT=$(jq -s -c --argjson f "$FIRST" --argjson l "$LAST" '[.[] | select(.time >= $f and .time <= $l) | .value.HLT // 0]' "$TMPD/report.json")
expect_eq "report -j of the recording: HLT per second = the truth's" "$RGOT" "$WANT"

# bad timeouts: CA's errors
expect_eq "timeout=abc: 400" "$(code GET "/ca/instrumentations/$ID/value/raw?timeout=abc")" 400
check "timeout=abc: says why" grep -q 'param \\"timeout\\" not valid: not a number' "$TMPD/body"
expect_eq "timeout=10001: 400" "$(code GET "/ca/instrumentations/$ID/value/raw?timeout=10001")" 400
check "timeout=10001: says the maximum" grep -q 'value too large (max: 10000)' "$TMPD/body"
expect_eq "timeout=-5: 400" "$(code GET "/ca/instrumentations/$ID/value/raw?timeout=-5")" 400
expect_eq "a point 30 s ahead with timeout=10000: 409" \
	"$(code GET "/ca/instrumentations/$ID/value/raw?start_time=$(( $(date +%s) + 30 ))&timeout=10000")" 409
code GET "/" > /dev/null
check "agent still alive" kill -0 "$AGENT_PID"
agent_stop
no_logged_errors "$LOG"
# (an ASan build, tests/run-all.sh build-asan, reports here)
check "no sanitizer report or crash in the agent's or watch's log" \
	sh -c "! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error|Segmentation' '$LOG' '$TMPD/watch.err' '$TMPD/stat.err' '$TMPD/rec.err' '$TMPD/report.err'"
tap_done
