#!/bin/bash
# A slow consumer on the fleet's bus: an aggregator whose subscription to the
# hosts' slots lets one message wait (KVMSCOPE_FLEET_SLOTS_PENDING=1, where
# the default is 1 Mi), so that the NATS library drops what arrives in a
# burst, as it does to an aggregator that cannot keep up. Two members with
# real vmload guests publish 16 identical fleet instrumentations each second.
# Checks: the drops happened and are counted in GET /ca/peers; every second
# of every instrumentation is either reported by all sources and then equal
# in all 16 (the same spec on the same guests), or reported missing
# (minreporting < nsources), never wrong; the gaps are asked for again and
# filled (in part: the answers can be dropped too), and an instrumentation
# whose window ends complete equals the guests' port writes.
# Ports 21290-21293.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "fleet slow consumer"
command -v nats-server >/dev/null || { skip "nats-server is not installed (make deps installs it)"; tap_done; }

S=$$
FLEET=fs$S
URL=nats://127.0.0.1:21290
NI=16
nats-server -p 21290 -a 127.0.0.1 -js -sd "$TMPD/js" > "$TMPD/nats.log" 2>&1 &
cleanup_pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/21290) 2>/dev/null && break; sleep 0.1; done

start() {	# PORT HOSTNAME [agent options...]
	local port=$1 host=$2; shift 2
	"$KVMSCOPE" agent --listen 127.0.0.1:$port --state-dir none --hostname "$host" \
		--scope-vms "fleet-$host-$S" --nats "$URL" --fleet "$FLEET" "$@" >>"$TMPD/$host.log" 2>&1 &
	STARTED=$!
	cleanup_pids+=($!)
	for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/ca" && return 0; sleep 0.1; done
	return 1
}
KVMSCOPE_FLEET_SLOTS_PENDING=1 start 21291 fs-agg --aggregate || { not_ok "the aggregator starts"; sed 's/^/# /' "$TMPD/fs-agg.log"; tap_done; }
AGG=$STARTED
start 21292 fs-1 && start 21293 fs-2 || { not_ok "the members start"; tap_done; }
ok "an aggregator with a pending limit of one message and two members answer"
BASE=http://127.0.0.1:21291
for _ in $(seq 50); do
	[ "$(curl -s "$BASE/ca/peers" | jq -r .bus.bucket_state)" = ready ] && break
	sleep 0.2
done
ids=()
for i in $(seq $NI); do
	ids+=("$(curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' \
		-d '{"module":"vm","stat":"exits","predicate":{"eq":["class","iox"]}}' | jq -r .id)")
done
check "$NI fleet instrumentations created (${ids[0]}..${ids[-1]})" test "${#ids[@]}" = $NI -a "${ids[-1]}" -ge 1
held() {
	for _ in $(seq 60); do
		[ "$(curl -s http://127.0.0.1:21292/ca/instrumentations | jq length)" = $NI ] &&
			[ "$(curl -s http://127.0.0.1:21293/ca/instrumentations | jq length)" = $NI ] && return 0
		sleep 0.25
	done
	return 1
}
check "both members hold them" held
sleep 1.2

T0=$(date +%s)
"$VMLOAD" -name guest=fleet-fs-1-$S --delay 1500 --linger 2500 --pio vcpu=0,count=450,rate=150 \
	--truth "$TMPD/t1.json" --duration 30 >/dev/null 2>>"$TMPD/vmload.err" &
p1=$!
"$VMLOAD" -name guest=fleet-fs-2-$S --delay 1500 --linger 2500 --pio vcpu=0,count=300,rate=100 \
	--truth "$TMPD/t2.json" --duration 30 >/dev/null 2>>"$TMPD/vmload.err" &
wait $p1 $!
T1=$(date +%s)
SUM=$(( $(jq '[.vcpus[].pio] | add' "$TMPD/t1.json") + $(jq '[.vcpus[].pio] | add' "$TMPD/t2.json") ))
N=$((T1 - T0 + 1))

# one answer per instrumentation: [[t, value, minreporting, nsources], ...]
snapshot() {
	local id
	for id in "${ids[@]}"; do
		curl -s "$BASE/ca/instrumentations/$id/value/raw?start_time=$T0&duration=1&ndatapoints=$N" |
			jq -c '[.[] | [.start_time, .value, .minreporting, .nsources]]'
	done > "$TMPD/snap.jsonl"
}
# every second complete in all (3 sources: the aggregator and two members)
complete() { jq -se 'all(.[][]; .[2] == 3 and .[3] == 3)' "$TMPD/snap.jsonl" >/dev/null; }
# where sources all reported a second, all 16 agree on it
consistent() {
	jq -se '[.[][] | select(.[2] == .[3]) | [.[0], .[1]]] | group_by(.[0]) | all(map(.[1]) | unique | length == 1)' \
		"$TMPD/snap.jsonl" >/dev/null
}
# (id, second) pairs some source is missing from
missing() { jq -s '[.[][] | select(.[2] < .[3])] | length' "$TMPD/snap.jsonl"; }
sleep 1
snapshot
M0=$(missing)
wrong=0 tries=0
consistent || wrong=1
for tries in $(seq 50); do
	complete && break
	sleep 0.2
	snapshot
	consistent || wrong=$((wrong + 1))
done
M1=$(missing)
sc=$(curl -s "$BASE/ca/peers" | jq -r .bus.slow_consumer)
check "the library dropped slot messages of the slow aggregator, counted in GET /ca/peers (slow_consumer $sc)" \
	test "${sc:-0}" -gt 0
check "the drops left seconds reported missing, not wrong ($M0 of $((NI * N)) instrumentation-seconds lacked a source)" \
	test "$M0" -gt 0
expect_eq "no answer, while the gaps were asked for again, had two complete values for one second" "$wrong" 0
# a range asked for three times without an answer is given up: with one
# waiting message allowed, some answers are dropped too
check "the gaps asked for again were filled, in part or all ($M0 -> $M1 missing)" test "$M1" -lt "$M0"
full=$(jq -s -c --argjson sum "$SUM" '[.[] | select(all(.[]; .[2] == .[3])) | [.[][1]] | add] | [length, all(. == $sum)]' "$TMPD/snap.jsonl")
check "the instrumentations that end complete equal the guests' $SUM port writes ([count, exact]: $full)" \
	jqe '.[0] >= 1 and .[1]' <<<"$full"
rss=$(awk '/VmRSS/ {print $2}' /proc/$AGG/status 2>/dev/null)
check "the aggregator's memory stays bounded (RSS ${rss:-?} kB < 200 MiB)" test "${rss:-999999}" -lt 204800
check "no crash in the agents' logs" sh -c "! grep -qE 'Sanitizer|runtime error|Segmentation' '$TMPD'/fs-*.log"
tap_done
