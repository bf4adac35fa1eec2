#!/bin/bash
# The fleet view: three peer agents, each in its own network namespace behind
# a bridge (10.77.0.0/24), and an aggregator in the root namespace with
# --peers. Each agent runs its own vmload guest; all share this kernel, so
# each agent is held to its own guests with --scope-vms and tells its records
# apart with --hostname. Checks: merged values equal the sum of the four
# hosts' truths (port writes = vm.exits class iox, kvm_pio path: no kvm_exit
# here), decomposition by hostname gives each host's share, a killed peer
# lowers nsources/minreporting while the others' data continues, a restarted
# peer gets the instrumentation again and is counted again, DELETE reaches
# the peers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "fleet"
command -v ip >/dev/null || { skip "fleet: iproute2 absent"; tap_done; }

S=$$
NSS=(kvf$S-1 kvf$S-2 kvf$S-3)
BR=kvfb$S
if ! ip netns add "${NSS[0]}" 2>"$TMPD/netns.err"; then
	skip "fleet: cannot create network namespaces: $(cat "$TMPD/netns.err")"; tap_done
fi
fleet_cleanup() {
	cleanup
	for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	ip link del "$BR" 2>/dev/null
}
trap fleet_cleanup EXIT
# FLEET_KEEP=1: keep the agents' logs and answers in /tmp/fleet-kept
[ -n "${FLEET_KEEP:-}" ] && trap "cp -r \"\$TMPD\" /tmp/fleet-kept; fleet_cleanup" EXIT

ip link add "$BR" type bridge && ip addr add 10.77.0.1/24 dev "$BR" && ip link set "$BR" up ||
	{ not_ok "bridge $BR"; tap_done; }
for i in 1 2 3; do
	ns=${NSS[$((i - 1))]}
	[ "$i" = 1 ] || ip netns add "$ns"
	ip link add kfv$S$i type veth peer name kfp$S$i netns "$ns" &&
		ip link set kfv$S$i master "$BR" && ip link set kfv$S$i up &&
		ip -n "$ns" link set lo up &&
		ip -n "$ns" addr add 10.77.0.1$i/24 dev kfp$S$i && ip -n "$ns" link set kfp$S$i up ||
		{ not_ok "namespace $ns wired"; tap_done; }
done
ok "three namespaces on bridge $BR (10.77.0.11-13)"

OP=op-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s operator\n' "$OP" > "$TMPD/tokens"
AUTH=(-H "Authorization: Bearer $OP")
PEER_PIDS=()
start_peer() {	# $1 = 1..3
	local i=$1 ns=${NSS[$(($1 - 1))]}
	# ip netns exec mounts a fresh /sys for the namespace: tracefs is not on it
	ip netns exec "$ns" sh -c 'mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; exec "$@"' sh \
		"$KVMSCOPE" agent --listen 10.77.0.1$i:7134 --token-file "$TMPD/tokens" \
		--state-dir none --hostname fh-$i --scope-vms fleet-$i-$S >>"$TMPD/peer$i.log" 2>&1 &
	PEER_PIDS[$i]=$!
	cleanup_pids+=("$!")
	for _ in $(seq 50); do
		[ "$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" http://10.77.0.1$i:7134/ca)" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}
for i in 1 2 3; do
	start_peer $i || { not_ok "peer $i starts"; sed 's/^/# /' "$TMPD/peer$i.log"; tap_done; }
done
ok "three peer agents answer on their namespaces' addresses"
printf '%s\n' "$OP" > "$TMPD/peer-token"
AGG_ARGS=(--state-dir "$TMPD/aggstate" --token-file "$TMPD/tokens" --peer-token-file "$TMPD/peer-token"
	--hostname fh-agg --scope-vms fleet-agg-$S --peers 10.77.0.11:7134,10.77.0.12:7134,10.77.0.13:7134)
if ! agent_start "$TMPD/agg.log" "${AGG_ARGS[@]}"; then
	not_ok "aggregator starts"; sed 's/^/# /' "$TMPD/agg.log"; tap_done
fi
ok "aggregator answers on $BASE"

expect_eq "bad --peers is refused with a reason" \
	"$("$KVMSCOPE" agent --listen 127.0.0.1:1 --peers 10.77.0.11 2>&1 | head -1)" \
	"kvmscope agent: --peers: '10.77.0.11' is not HOST:PORT"
expect_eq "bad --scope-vms is refused with a reason" \
	"$("$KVMSCOPE" agent --listen 127.0.0.1:1 --scope-vms a,,b 2>&1 | head -1)" \
	"kvmscope agent: --scope-vms: empty or overlong VM name in 'a,,b'"

post() { curl -s "${AUTH[@]}" -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1" | jq -r .id; }
IOX='"predicate":{"eq":["class","iox"]}'
I_TOT=$(post '{"module":"vm","stat":"exits",'"$IOX"'}')
I_HOST=$(post '{"module":"vm","stat":"exits","decomposition":["hostname"],'"$IOX"'}')
I_SUB=$(post '{"module":"vm","stat":"exits","decomposition":["subsecond"],'"$IOX"'}')
check "instrumentations created on the aggregator ($I_TOT $I_HOST $I_SUB)" test "$I_TOT" -ge 1 -a "$I_HOST" -ge 1 -a "$I_SUB" -ge 1

# peers_mapped N [PEER SINCE]: N peers up and holding every instrumentation;
# peer number PEER (1..3) reporting from SINCE (unix second) or later
peers_mapped() {
	local p=${2:-1} since=${3:-0} id n
	for _ in $(seq 60); do
		n=0
		for id in "$I_TOT" "$I_HOST" "$I_SUB"; do
			curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$id" > "$TMPD/instr.json"
			n=$((n + $(jq "[.peers[] | select(.state == \"up\" and .id != null)] | length" "$TMPD/instr.json")))
			jqe ".peers[$((p - 1))].since >= $since" "$TMPD/instr.json" || n=-100
		done
		[ "$n" = $(($1 * 3)) ] && return 0
		sleep 0.25
	done
	return 1
}
check "every peer got the instrumentation" peers_mapped 3
check "a peer holds it with its forced VM scope" \
	jqe '.predicate | tostring | contains("fleet-1-'$S'")' <(ip netns exec "${NSS[0]}" curl -s "${AUTH[@]}" \
	http://10.77.0.11:7134/ca/instrumentations/$(jq -r '.peers[0].id' "$TMPD/instr.json"))
check "the aggregator's own copy carries its scope, not the peers'" \
	jqe '.predicate | tostring | (contains("fleet-agg-'$S'") and (contains("fleet-1-") | not))' "$TMPD/instr.json"
sleep 1.2

# run_guests TAG HOST:COUNT ...: one guest per host, each inside its namespace
run_guests() {
	local tag=$1 h n ns pids=(); shift
	for hc in "$@"; do
		h=${hc%%:*} n=${hc##*:}
		ns=(); [ "$h" = agg ] || ns=(ip netns exec "${NSS[$((h - 1))]}")
		"${ns[@]}" "$VMLOAD" -name guest=fleet-$h-$S --delay 1500 --linger 2500 --pio vcpu=0,count=$n \
			--truth "$TMPD/truth-$tag-$h.json" --duration 20 >/dev/null 2>>"$TMPD/vmload.err" &
		pids+=($!)
	done
	wait "${pids[@]}"
}
truth() { jq '[.vcpus[].pio] | add' "$TMPD/truth-$1-$2.json"; }
raw() {	# ID T0 T1
	curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$1/value/raw?start_time=$2&duration=1&ndatapoints=$(($3 - $2 + 1))"
}

# ---- all four hosts up
T0=$(date +%s)
run_guests a 1:300 2:500 3:700 agg:100
T1=$(date +%s)
sleep 3
for h in 1 2 3 agg; do
	[ "$(jq -r .completed "$TMPD/truth-a-$h.json" 2>/dev/null)" = true ] || not_ok "guest of host $h completed"
done
SUM=0; for h in 1 2 3 agg; do SUM=$((SUM + $(truth a $h))); done
raw "$I_TOT" "$T0" "$T1" > "$TMPD/tot.json"
expect_eq "merged total equals the sum of the four hosts' port writes" "$(jq '[.[].value] | add' "$TMPD/tot.json")" "$SUM"
expect_eq "nsources: the aggregator and its three peers" "$(jq '[.[].nsources] | unique | .[]' "$TMPD/tot.json")" 4
expect_eq "minreporting: every source reported every second" "$(jq '[.[].minreporting] | min' "$TMPD/tot.json")" 4
raw "$I_HOST" "$T0" "$T1" > "$TMPD/host.json"
for h in 1 2 3 agg; do
	expect_eq "decomposition by hostname: fh-$h's share is its guest's" \
		"$(jq "[.[].value[\"fh-$h\"] // 0] | add" "$TMPD/host.json")" "$(truth a $h)"
done
expect_eq "no other hostname appears" "$(jq -c '[.[].value | keys[]] | unique' "$TMPD/host.json")" '["fh-1","fh-2","fh-3","fh-agg"]'
raw "$I_SUB" "$T0" "$T1" > "$TMPD/sub.json"
expect_eq "merged subsecond distributions hold every port write" "$(jq '[.[].value[][1]] | add' "$TMPD/sub.json")" "$SUM"
HQ="start_time=$T0&duration=$((T1 - T0 + 1))&width=$((T1 - T0 + 1))&height=100&nbuckets=100&ymax=1000"
# CA's form: one average per data point of a second
curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$I_SUB/value/heatmap/average?start_time=$T0&duration=1&ndatapoints=$((T1 - T0 + 1))&nbuckets=100&ymax=1000" > "$TMPD/avg.json"
expect_eq "heatmap (average) is drawn from the merged values: as many seconds with data" \
	"$(jq '[.[] | select(.average != null)] | length' "$TMPD/avg.json")" \
	"$(jq '[.[] | select(.value != [])] | length' "$TMPD/sub.json")"
check "heatmap image renders on the aggregator" jqe '.image | length > 100' \
	<(curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$I_SUB/value/heatmap/image?$HQ")

# ---- peer 2 dies mid-run
kill -KILL "${PEER_PIDS[2]}"; wait "${PEER_PIDS[2]}" 2>/dev/null
peer2_down() {
	for _ in $(seq 40); do
		curl -s "${AUTH[@]}" "$BASE/ca/peers" > "$TMPD/peers.json"
		[ "$(jq -r '.[1].state' "$TMPD/peers.json")" = down ] && return 0
		sleep 0.25
	done
	return 1
}
check "GET /ca/peers reports peer 2 down" peer2_down
check "... with its address, last error and last success" \
	jqe '.[1] | .address == "10.77.0.12:7134" and (.last_error | length > 0) and (.last_success > 0) and (.down_since > 0)' "$TMPD/peers.json"
check "... and the others up" jqe '[.[0].state, .[2].state] == ["up", "up"]' "$TMPD/peers.json"
curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$I_HOST" > "$TMPD/instr.json"
check "GET /ca/instrumentations/:id names the down peer" jqe '.nsources == 3 and .peers[1].state == "down" and (.peers[1].last_error | length > 0)' "$TMPD/instr.json"
sleep 1
T0=$(date +%s)
run_guests b 1:400 3:200 agg:50
T1=$(date +%s)
sleep 3
raw "$I_TOT" "$T0" "$T1" > "$TMPD/tot.json"
expect_eq "peer down: nsources drops to 3" "$(jq '[.[].nsources] | unique | .[]' "$TMPD/tot.json")" 3
expect_eq "peer down: minreporting drops to 3" "$(jq '[.[].minreporting] | max' "$TMPD/tot.json")" 3
expect_eq "peer down: the others' data continues (total)" "$(jq '[.[].value] | add' "$TMPD/tot.json")" \
	"$(( $(truth b 1) + $(truth b 3) + $(truth b agg) ))"
raw "$I_HOST" "$T0" "$T1" > "$TMPD/host.json"
expect_eq "peer down: fh-1's share continues" "$(jq '[.[].value["fh-1"] // 0] | add' "$TMPD/host.json")" "$(truth b 1)"
expect_eq "peer down: fh-3's share continues" "$(jq '[.[].value["fh-3"] // 0] | add' "$TMPD/host.json")" "$(truth b 3)"

# ---- peer 2 comes back (empty: no state dir) and is reconciled
RESTART=$(date +%s)
start_peer 2 || not_ok "peer 2 restarts"
check "the restarted peer gets the instrumentations again" peers_mapped 3 2 "$RESTART"
check "... reporting from after its restart" jqe ".peers[1].since > $RESTART" "$TMPD/instr.json"
sleep 1.5
T0=$(date +%s)
run_guests c 1:100 2:600 agg:30
T1=$(date +%s)
sleep 3
raw "$I_TOT" "$T0" "$T1" > "$TMPD/tot.json"
expect_eq "peer back: nsources is 4 again" "$(jq '[.[].nsources] | unique | .[]' "$TMPD/tot.json")" 4
expect_eq "peer back: minreporting is 4 again" "$(jq '[.[].minreporting] | min' "$TMPD/tot.json")" 4
raw "$I_HOST" "$T0" "$T1" > "$TMPD/host.json"
expect_eq "peer back: fh-2's share is counted again" "$(jq '[.[].value["fh-2"] // 0] | add' "$TMPD/host.json")" "$(truth c 2)"
expect_eq "peer back: merged total" "$(jq '[.[].value] | add' "$TMPD/tot.json")" \
	"$(( $(truth c 1) + $(truth c 2) + $(truth c agg) ))"
check "GET /ca/peers: all up again" jqe 'map(.state) == ["up","up","up"]' <(curl -s "${AUTH[@]}" "$BASE/ca/peers")

# ---- the aggregator restarts: it takes its peers' ids back, no second copy
peer_ids() {
	for id in "$I_TOT" "$I_HOST" "$I_SUB"; do
		curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$id" | jq -c '[.peers[].id]'
	done | tr -d '\n'
}
on_peers() {
	local n=0 i
	for i in 1 2 3; do
		n=$((n + $(ip netns exec "${NSS[$((i - 1))]}" curl -s "${AUTH[@]}" http://10.77.0.1$i:7134/ca/instrumentations | jq length)))
	done
	echo "$n"
}
IDS_BEFORE=$(peer_ids)
agent_stop
check "the aggregator saved its peers' ids" \
	jqe '[.instrumentations[].peers | length] == [3, 3, 3]' "$TMPD/aggstate/state.json"
agent_start "$TMPD/agg.log" "${AGG_ARGS[@]}" || not_ok "aggregator restarts"
check "after the restart every peer is mapped again" peers_mapped 3
expect_eq "... to the same instrumentations there" "$(peer_ids)" "$IDS_BEFORE"
expect_eq "... and no peer holds a second copy (3 x 3)" "$(on_peers)" 9
check "the log says each was verified" test "$(grep -c 'is still .* on peer' "$TMPD/agg.log")" -eq 9
T0=$(date +%s)
run_guests d 1:70 2:80 3:90 agg:10
T1=$(date +%s)
sleep 3
raw "$I_TOT" "$T0" "$T1" > "$TMPD/tot.json"
expect_eq "after the restart: merged total" "$(jq '[.[].value] | add' "$TMPD/tot.json")" \
	"$(( $(truth d 1) + $(truth d 2) + $(truth d 3) + $(truth d agg) ))"

# ---- DELETE reaches the peers
for id in "$I_TOT" "$I_HOST" "$I_SUB"; do
	expect_eq "DELETE $id on the aggregator" "$(code DELETE "/ca/instrumentations/$id" "${AUTH[@]}")" 204
done
peers_empty() {
	for _ in $(seq 40); do
		local n=0
		for i in 1 2 3; do
			n=$((n + $(ip netns exec "${NSS[$((i - 1))]}" curl -s "${AUTH[@]}" http://10.77.0.1$i:7134/ca/instrumentations | jq length)))
		done
		[ "$n" = 0 ] && return 0
		sleep 0.25
	done
	return 1
}
check "deleted on every peer too" peers_empty
tap_done
