#!/bin/bash
# The fleet on NATS against the HTTP poller it replaced, in one run:
#   NATS: one nats-server, a `kvmscope agent --aggregate`, and 200 simulated
#         members (bench/fleet/fleet_sim.c: the agent's own wire encoder)
#         each publishing 5 instrumentations' slots and a heartbeat a second;
#   HTTP: kvmscope $BEFORE (the last revision with `--peers`) polling its
#         largest fleet, 64 simulated peers (bench/fleet/http_peers.py)
#         holding the same 5 instrumentations.
# Figures: the aggregator's CPU per agent-second (utime + stime of the
# aggregator process over the measured window / agents / seconds); the
# latency from a slot's drain to the aggregator holding it mergeable (NATS:
# the aggregator's own measurement, drained_us in each message; HTTP: the
# peer's, from the drain to the first answer carrying the slot); the bytes
# per agent per second (NATS: what the server received; HTTP: requests and
# answers). Both aggregators instrument their own host too (a quiet scope).
# Usage: bench/fleet_nats.sh [BUILD_DIR]  (env: AGENTS=200, SECONDS_MEASURED=20,
#        BEFORE=4b7a3fd, BEFORE_BUILD=a built tree of it)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=fleet_nats
. "$(dirname "$0")/lib.sh"
need_root_kvm
need_cmd nats-server python3 curl jq cc git make
AGENTS=${AGENTS:-200}
MEASURE=${SECONDS_MEASURED:-20}
BEFORE=${BEFORE:-4b7a3fd}
PEERS=64
NP=21260 NM=21261 AGG=21262 OLD=21263 PEER0=21300
HZ=$(getconf CLK_TCK)

cc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$BENCH_ROOT/src" \
	"$BENCH_ROOT/bench/fleet/fleet_sim.c" -o "$TMPD/fleet_sim" "$BUILD/libkvmscope.a" \
	-ljansson -lnats -lpthread -lm || die "fleet_sim does not build"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
SPECS=('{"module":"vm","stat":"exits"}'
	'{"module":"vm","stat":"exits","decomposition":["vm"]}'
	'{"module":"vm","stat":"exits","decomposition":["subsecond"]}'
	'{"module":"vm","stat":"exits","decomposition":["vm"],"predicate":{"eq":["class","iox"]}}'
	'{"module":"vm","stat":"exits","predicate":{"eq":["class","iox"]}}')
SHAPES=(scalar map dist map scalar)
create_all() {	# BASE -> ids on stdout, one a line
	local s
	for s in "${SPECS[@]}"; do
		curl -s -X POST "$1/ca/instrumentations" -H 'Content-Type: application/json' -d "$s" | jq -r .id
	done
}

# ---- NATS
nats-server -a 127.0.0.1 -p $NP -m $NM -js -sd "$TMPD/js" >"$TMPD/nats.log" 2>&1 &
bench_pids+=($!)
wait_http "http://127.0.0.1:$NM/healthz" || die "nats-server does not start"
"$KVMSCOPE" agent --listen 127.0.0.1:$AGG --state-dir none --hostname bench-agg --scope-vms quiet-$$ \
	--nats nats://127.0.0.1:$NP --fleet bench --aggregate 2>"$TMPD/agg.log" &
APID=$!
bench_pids+=($APID)
wait_http "http://127.0.0.1:$AGG/ca" || die "the NATS aggregator does not start: $(tail -3 "$TMPD/agg.log")"
for _ in $(seq 50); do
	[ "$(curl -s "http://127.0.0.1:$AGG/ca/peers" | jq -r .bus.bucket_state)" = ready ] && break
	sleep 0.2
done
mapfile -t IDS < <(create_all "http://127.0.0.1:$AGG")
ARGS=()
for i in 0 1 2 3 4; do ARGS+=("${IDS[$i]}:${SHAPES[$i]}"); done
say "NATS: $AGENTS simulated members x ${#IDS[@]} instrumentations (${ARGS[*]}), $MEASURE s measured"
"$TMPD/fleet_sim" nats://127.0.0.1:$NP bench "$AGENTS" $((MEASURE + 8)) "${ARGS[@]}" >"$TMPD/sim.out" &
SIM=$!
bench_pids+=($SIM)
sleep 5
varz() { curl -s "http://127.0.0.1:$NM/varz" | jq -r ".$1"; }
c0=$(cpu_ticks $APID) b0=$(varz in_bytes) m0=$(varz in_msgs)
sleep "$MEASURE"
c1=$(cpu_ticks $APID) b1=$(varz in_bytes) m1=$(varz in_msgs)
NOW=$(date +%s)
curl -s "http://127.0.0.1:$AGG/ca/peers" >"$TMPD/peers.json"
curl -s "http://127.0.0.1:$AGG/ca/instrumentations/${IDS[0]}/value/raw?start_time=$((NOW - 4))&duration=1&ndatapoints=2" >"$TMPD/check.json"
wait $SIM
NATS_CPU_US=$(calc "($c1 - $c0) * 1000000 / $HZ / $AGENTS / $MEASURE")
NATS_P50=$(jq .bus.latency.p50_ms "$TMPD/peers.json") NATS_P99=$(jq .bus.latency.p99_ms "$TMPD/peers.json")
NATS_BW=$(calc "($b1 - $b0) / $AGENTS / $MEASURE")
say "NATS aggregator: $((c1 - c0)) ticks in $MEASURE s, server in: $((m1 - m0)) msgs, $((b1 - b0)) bytes"
say "merged check: $(jq -c '[.[] | {value, nsources, minreporting}]' "$TMPD/check.json") (want $((AGENTS * (AGENTS + 1) / 2)) from $((AGENTS + 1)) sources)"
[ "$(jq '[.[].value] | unique' -c "$TMPD/check.json")" = "[$((AGENTS * (AGENTS + 1) / 2))]" ] ||
	say "WARNING: the merged values are not the simulated sum"
say "hosts refusing or refused: $(jq '[.hosts[] | select(.refused > 0)] | length' "$TMPD/peers.json"), slow consumer events: $(jq .bus.slow_consumer "$TMPD/peers.json")"
NATS_RSS=$(awk '/^VmRSS:/ {print $2}' /proc/$APID/status)
say "NATS aggregator's resident memory: $NATS_RSS kB ($AGENTS hosts x ${#IDS[@]} instrumentations, up to 600 slots each kept)"
kill -TERM $APID; wait $APID 2>/dev/null

# ---- HTTP poller of $BEFORE
before_tree build/bin/kvmscope
python3 "$BENCH_ROOT/bench/fleet/http_peers.py" $PEER0 $PEERS "$TMPD/http.json" &
HP=$!
bench_pids+=($HP)
LIST=$(seq -s, -f "127.0.0.1:%g" $PEER0 $((PEER0 + PEERS - 1)))
sleep 1
"$old_root/build/bin/kvmscope" agent --listen 127.0.0.1:$OLD --state-dir none --hostname bench-old \
	--scope-vms quiet-$$ --peers "$LIST" 2>"$TMPD/old.log" &
OPID=$!
bench_pids+=($OPID)
wait_http "http://127.0.0.1:$OLD/ca" || die "the $BEFORE aggregator does not start: $(tail -3 "$TMPD/old.log")"
create_all "http://127.0.0.1:$OLD" >/dev/null
say "HTTP ($BEFORE): $PEERS simulated peers x ${#SPECS[@]} instrumentations, $MEASURE s measured"
sleep 5
c0=$(cpu_ticks $OPID)
sleep "$MEASURE"
c1=$(cpu_ticks $OPID)
HTTP_UP=$(curl -s "http://127.0.0.1:$OLD/ca/peers" | jq '[.[] | select(.state == "up")] | length')
say "HTTP aggregator's resident memory: $(awk '/^VmRSS:/ {print $2}' /proc/$OPID/status) kB ($PEERS peers)"
kill -TERM $OPID; wait $OPID 2>/dev/null
kill -TERM $HP; wait $HP 2>/dev/null
HTTP_CPU_US=$(calc "($c1 - $c0) * 1000000 / $HZ / $PEERS / $MEASURE")
HTTP_P50=$(jq .p50_ms "$TMPD/http.json") HTTP_P99=$(jq .p99_ms "$TMPD/http.json")
# the whole run's bytes over the whole run's peer-seconds (5 s warm-up included)
HTTP_BW=$(calc "($(jq .bytes_in "$TMPD/http.json") + $(jq .bytes_out "$TMPD/http.json")) / $PEERS / ($MEASURE + 6)")
say "HTTP aggregator: $((c1 - c0)) ticks in $MEASURE s, $HTTP_UP of $PEERS peers up, $(jq .requests "$TMPD/http.json") requests"

result "aggregator CPU per agent-second, NATS ($AGENTS agents)" "$(fmt %.1f "$NATS_CPU_US")" "us" \
	"HTTP poller ($PEERS peers) $(fmt %.1f "$HTTP_CPU_US") us: $(calc "$HTTP_CPU_US / $NATS_CPU_US")x less"
result "drain -> mergeable, p50, NATS" "$(fmt %.1f "$NATS_P50")" "ms" \
	"HTTP poller $(fmt %.1f "$HTTP_P50") ms: $(calc "$HTTP_P50 / $NATS_P50")x sooner"
result "drain -> mergeable, p99, NATS" "$(fmt %.1f "$NATS_P99")" "ms" \
	"HTTP poller $(fmt %.1f "$HTTP_P99") ms: $(calc "$HTTP_P99 / $NATS_P99")x sooner"
result "bytes per agent-second, NATS" "$(fmt %.0f "$NATS_BW")" "B/s" \
	"HTTP poller $(fmt %.0f "$HTTP_BW") B/s: $(calc "$HTTP_BW / $NATS_BW")x less"
