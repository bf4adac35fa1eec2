#!/bin/bash
# The fleet on NATS: a nats-server cluster of three (processes with JetStream,
# private dirs), an aggregator, three member agents and later a second
# aggregator, all with distinct --hostname and each held to its own vmload
# guest with --scope-vms (they share this kernel). Checks: the bucket hands
# every member the fleet's instrumentations, with the member's own scope;
# merged values equal the sum of the guests' truths exactly (port writes =
# vm.exits class iox); a second aggregator joining later gets the earlier
# slots (backfill) and answers the same; a killed NATS node, a killed member
# and a killed aggregator leave values exact or reported missing
# (minreporting < nsources), never wrong; a returning member picks up the
# current set; DELETE on any aggregator reaches every member.
# Ports: FLEET_PORT_BASE (default 21200) .. +40.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "fleet"
command -v nats-server >/dev/null || { skip "fleet: nats-server is not installed (make deps installs it)"; tap_done; }

S=$$
PB=${FLEET_PORT_BASE:-21200}
FLEET=kvf$S
OP=op-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
TEN=ten-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s operator\n%s tenant fleet-1-%s\n' "$OP" "$TEN" "$S" > "$TMPD/tokens"
chmod 600 "$TMPD/tokens"
AUTH=(-H "Authorization: Bearer $OP")
# FLEET_KEEP=1: keep the logs and answers in /tmp/fleet-kept
[ -n "${FLEET_KEEP:-}" ] && trap "wake_nats; cleanup_pids_only; cp -r \"\$TMPD\" /tmp/fleet-kept; cleanup" EXIT
# stops the processes first (their last words, sanitizer reports included,
# reach the logs), keeping the files
cleanup_pids_only() { local p; for p in "${cleanup_pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }

# ---- the NATS cluster: client PB+1..3, routes PB+11..13, monitor PB+21..23
NATS_PIDS=()
start_nats() {	# $1 = 1..3
	local i=$1 routes="" j
	for j in 1 2 3; do [ "$j" = "$i" ] || routes="$routes${routes:+,}nats://127.0.0.1:$((PB + 10 + j))"; done
	mkdir -p "$TMPD/nats$i"
	cat > "$TMPD/nats$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:$((PB + i))
http: 127.0.0.1:$((PB + 20 + i))
jetstream { store_dir: "$TMPD/nats$i", max_memory_store: 64MB, max_file_store: 256MB }
cluster { name: $FLEET, listen: 127.0.0.1:$((PB + 10 + i)), routes: [$routes] }
EOF
	nats-server -c "$TMPD/nats$i.conf" >>"$TMPD/nats$i.log" 2>&1 &
	NATS_PIDS[$i]=$!
	cleanup_pids+=("$!")
}
for i in 1 2 3; do start_nats $i; done
# a stopped node never gets the TERM of the cleanup: wake them first
wake_nats() { local p; for p in "${NATS_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; done; }
[ -n "${FLEET_KEEP:-}" ] || trap 'wake_nats; cleanup' EXIT
nats_ready() {
	local i
	for _ in $(seq 100); do
		for i in 1 2 3; do
			[ "$(curl -s "http://127.0.0.1:$((PB + 20 + i))/healthz?js-enabled-only=true" | jq -r .status 2>/dev/null)" = ok ] || continue 2
		done
		# a JetStream meta leader: the cluster can hold a replicated bucket
		curl -s "http://127.0.0.1:$((PB + 21))/jsz" | jq -e '.meta_cluster.leader != null' >/dev/null && return 0
		sleep 0.2
	done
	return 1
}
check "a 3-node nats-server cluster with JetStream is up" nats_ready || { sed 's/^/# /' "$TMPD"/nats*.log | tail -20; tap_done; }
URLS=nats://127.0.0.1:$((PB + 1)),nats://127.0.0.1:$((PB + 2)),nats://127.0.0.1:$((PB + 3))

# ---- options refused with a reason
expect_eq "--peers is gone, pointing to --nats (exit 2)" \
	"$("$KVMSCOPE" agent --listen 127.0.0.1:1 --peers 10.0.0.1:7134 2>&1 | head -1; echo "rc=${PIPESTATUS[0]}")" \
	"kvmscope agent: --peers is gone: a fleet runs on NATS now (--nats URL --fleet NAME, --aggregate on the aggregators; see docs/fleet.md)
rc=2"
printf 'token %s\n' "$OP" > "$TMPD/nats-auth"; chmod 644 "$TMPD/nats-auth"
check "an auth file others may read is refused" \
	grep -q "readable or writable by others (mode 644): chmod 600 it" <("$KVMSCOPE" agent --listen 127.0.0.1:1 --state-dir none \
	--nats "$URLS" --fleet "$FLEET" --nats-auth-file "$TMPD/nats-auth" 2>&1)
check "a NATS server off this host needs an auth file" \
	grep -q "a server off this host needs --nats-auth-file" <("$KVMSCOPE" agent --listen 127.0.0.1:1 --state-dir none \
	--nats nats://10.0.0.1:4222 --fleet "$FLEET" 2>&1)
check "a host name a subject cannot carry is refused" \
	grep -q "hostname 'a~b': in a fleet it goes into NATS subjects" <("$KVMSCOPE" agent --listen 127.0.0.1:1 --state-dir none \
	--nats "$URLS" --fleet "$FLEET" --hostname 'a~b' 2>&1)
check "--fleet must be a subject token" \
	grep -q "fleet 'a.b': want" <("$KVMSCOPE" agent --listen 127.0.0.1:1 --state-dir none --nats "$URLS" --fleet a.b 2>&1)

# ---- agents: members fh-1..3 (ports PB+31..33), aggregators fh-agg, fh-agg2
MEMBER_PIDS=()
# member 3 is given only NATS node 3 (it learns the others from it)
start_member() {	# $1 = 1..3
	local i=$1 urls=$URLS
	[ "$i" = 3 ] && urls=nats://127.0.0.1:$((PB + 3))
	"$KVMSCOPE" agent --listen 127.0.0.1:$((PB + 30 + i)) --token-file "$TMPD/tokens" --state-dir none \
		--hostname fh-$i --scope-vms fleet-$i-$S --nats "$urls" --fleet "$FLEET" >>"$TMPD/member$i.log" 2>&1 &
	MEMBER_PIDS[$i]=$!
	cleanup_pids+=("$!")
	for _ in $(seq 50); do
		curl -s -o /dev/null "${AUTH[@]}" "http://127.0.0.1:$((PB + 30 + i))/ca" && return 0
		sleep 0.1
	done
	return 1
}
member_list() { curl -s "${AUTH[@]}" "http://127.0.0.1:$((PB + 30 + $1))/ca/instrumentations"; }
AGG_PIDS=() AGG_BASE=()
start_agg() {	# $1 = 1|2, $2 = hostname
	local i=$1
	AGG_BASE[$i]=http://127.0.0.1:$((PB + 35 + i))
	"$KVMSCOPE" agent --listen 127.0.0.1:$((PB + 35 + i)) --token-file "$TMPD/tokens" --state-dir none \
		--hostname "$2" --scope-vms "fleet-$2-$S" --nats "$URLS" --fleet "$FLEET" --aggregate \
		>>"$TMPD/agg$i.log" 2>&1 &
	AGG_PIDS[$i]=$!
	cleanup_pids+=("$!")
	for _ in $(seq 50); do
		curl -s -o /dev/null "${AUTH[@]}" "${AGG_BASE[$i]}/ca" && return 0
		sleep 0.1
	done
	return 1
}
start_agg 1 fh-agg || { not_ok "aggregator starts"; sed 's/^/# /' "$TMPD/agg1.log"; tap_done; }
for i in 1 2 3; do
	start_member $i || { not_ok "member $i starts"; sed 's/^/# /' "$TMPD/member$i.log"; tap_done; }
done
ok "an aggregator and three members answer"
BASE=${AGG_BASE[1]}

post() { curl -s "${AUTH[@]}" -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1" | jq -r .id; }
IOX='"predicate":{"eq":["class","iox"]}'
bucket_ready() {
	for _ in $(seq 50); do
		[ "$(curl -s "${AUTH[@]}" "$BASE/ca/peers" | jq -r .bus.bucket_state)" = ready ] && return 0
		sleep 0.2
	done
	return 1
}
check "the aggregator bound the fleet's bucket" bucket_ready
I_TOT=$(post '{"module":"vm","stat":"exits",'"$IOX"'}')
I_HOST=$(post '{"module":"vm","stat":"exits","decomposition":["hostname"],'"$IOX"'}')
I_SUB=$(post '{"module":"vm","stat":"exits","decomposition":["subsecond"],'"$IOX"'}')
check "instrumentations created on the aggregator ($I_TOT $I_HOST $I_SUB)" test "$I_TOT" -ge 1 -a "$I_HOST" -ge 1 -a "$I_SUB" -ge 1

# members_hold N M...: each listed member holds N instrumentations
members_hold() {
	local n=$1 i; shift
	for _ in $(seq 60); do
		for i in "$@"; do
			[ "$(member_list "$i" | jq length)" = "$n" ] || { sleep 0.25; continue 2; }
		done
		return 0
	done
	return 1
}
check "every member got the fleet's instrumentations from the bucket" members_hold 3 1 2 3
check "a member holds them with its own forced VM scope" \
	jqe 'all(.[]; .predicate | tostring | contains("fleet-1-'$S'"))' <(member_list 1)
check "the aggregator's own copy carries its scope, not the members'" \
	jqe '.predicate | tostring | (contains("fleet-fh-agg-'$S'") and (contains("fleet-1-") | not))' \
	<(curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$I_TOT")
# a tenant's instrumentation: each host scopes it to the tenant's VMs itself
I_TEN=$(curl -s -H "Authorization: Bearer $TEN" -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' \
	-d '{"module":"vm","stat":"exits"}' | jq -r .id)
if [ "$I_TEN" -ge 1 ] 2>/dev/null; then
	check "a tenant's instrumentation reaches every member" members_hold 4 1 2 3
	check "... owned by the tenant there" jqe 'map(select(.owner == "tenant:fleet-1-'$S'")) | length == 1' <(member_list 2)
	check "... scoped there to the tenant's VMs and to the member's own" \
		jqe 'map(select(.owner == "tenant:fleet-1-'$S'"))[0].predicate | tostring | (contains("fleet-1-'$S'") and contains("fleet-2-'$S'"))' <(member_list 2)
	expect_eq "the tenant deletes it" "$(code DELETE "/ca/instrumentations/$I_TEN" -H "Authorization: Bearer $TEN")" 204
	check "... and it is gone from every member" members_hold 3 1 2 3
else
	not_ok "a tenant creates an instrumentation on the aggregator: $I_TEN"
fi
hosts_alive() {	# BASE N: N hosts alive in GET /ca/peers
	for _ in $(seq 50); do
		curl -s "${AUTH[@]}" "$1/ca/peers" > "$TMPD/peers.json"
		[ "$(jq '[.hosts[] | select(.alive)] | length' "$TMPD/peers.json")" = "$2" ] && return 0
		sleep 0.2
	done
	return 1
}
check "GET /ca/peers: the bus connected and three hosts alive" hosts_alive "$BASE" 3
check "... with the bus's status" jqe '.bus.status == "connected" and .bus.fleet == "'$FLEET'" and (.bus.connected_url | startswith("nats://127.0.0.1:"))' "$TMPD/peers.json"
sleep 1.2

# run_guests TAG HOST:COUNT ...: one guest per host (guest names match the
# agents' --scope-vms)
run_guests() {
	local tag=$1 h n pids=(); shift
	for hc in "$@"; do
		h=${hc%%:*} n=${hc##*:}
		"$VMLOAD" -name guest=fleet-$h-$S --delay 1500 --linger 2500 --pio vcpu=0,count=$n \
			--truth "$TMPD/truth-$tag-$h.json" --duration 20 >/dev/null 2>>"$TMPD/vmload.err" &
		pids+=($!)
	done
	wait "${pids[@]}"
}
truth() { jq '[.vcpus[].pio] | add' "$TMPD/truth-$1-$2.json"; }
sum_truths() { local tag=$1 s=0 h; shift; for h in "$@"; do s=$((s + $(truth "$tag" "$h"))); done; echo $s; }
raw() {	# BASE ID T0 T1
	curl -s "${AUTH[@]}" "$1/ca/instrumentations/$2/value/raw?start_time=$3&duration=1&ndatapoints=$(($4 - $3 + 1))"
}
# settled BASE ID T0 T1 NS [TRIES]: waits (TRIES x 0.2 s, default 10 s) until every second of
# [T0, T1] is reported by NS sources, leaving the answer in $TMPD/tot.json.
# Meanwhile every answer is checked: a second that all sources reported
# can only hold exact data, so the total over the window may fall short
# only where sources are missing. Fails if a source stays missing.
settled() {
	for _ in $(seq "${6:-50}"); do
		raw "$1" "$2" "$3" "$4" > "$TMPD/tot.json"
		jqe --argjson ns "$5" 'all(.[]; .nsources == $ns and .minreporting == $ns)' "$TMPD/tot.json" && return 0
		sleep 0.2
	done
	return 1
}

# ---- four hosts (three members and the aggregator)
T0=$(date +%s)
run_guests a 1:300 2:500 3:700 fh-agg:100
T1=$(date +%s)
sleep 2
for h in 1 2 3 fh-agg; do
	[ "$(jq -r .completed "$TMPD/truth-a-$h.json" 2>/dev/null)" = true ] || not_ok "guest of host $h completed"
done
SUM_A=$(sum_truths a 1 2 3 fh-agg)
check "every second reported by the four sources (nsources = minreporting = 4)" settled "$BASE" "$I_TOT" "$T0" "$T1" 4
expect_eq "merged total equals the sum of the four guests' port writes" "$(jq '[.[].value] | add' "$TMPD/tot.json")" "$SUM_A"
raw "$BASE" "$I_HOST" "$T0" "$T1" > "$TMPD/host.json"
for h in 1 2 3 fh-agg; do
	name=$h; [[ $h == fh-* ]] || name=fh-$h
	expect_eq "decomposition by hostname: $name's share is its guest's" \
		"$(jq --arg n "$name" '[.[].value[$n] // 0] | add' "$TMPD/host.json")" "$(truth a "$h")"
done
expect_eq "no other hostname appears" "$(jq -c '[.[].value | keys[]] | unique' "$TMPD/host.json")" '["fh-1","fh-2","fh-3","fh-agg"]'
raw "$BASE" "$I_SUB" "$T0" "$T1" > "$TMPD/sub.json"
expect_eq "merged subsecond distributions hold every port write" "$(jq '[.[].value[][1]] | add' "$TMPD/sub.json")" "$SUM_A"
check "heatmap image renders from the merged values" jqe '.image | length > 100' \
	<(curl -s "${AUTH[@]}" "$BASE/ca/instrumentations/$I_SUB/value/heatmap/image?start_time=$T0&duration=$((T1 - T0 + 1))&width=$((T1 - T0 + 1))&height=50&nbuckets=50&ymax=1000")
check "end-to-end latency drain -> mergeable is measured" jqe '.bus.latency.p50_ms > 0' <(curl -s "${AUTH[@]}" "$BASE/ca/peers")

# ---- a second aggregator joins: same ids, the earlier slots backfilled
start_agg 2 fh-agg2 || not_ok "second aggregator starts"
B2=${AGG_BASE[2]}
b2_has() {
	for _ in $(seq 50); do
		[ "$(curl -s "${AUTH[@]}" "$B2/ca/instrumentations" | jq -c '[.[].id] | sort')" = "$(jq -nc --arg a "$I_TOT" --arg b "$I_HOST" --arg c "$I_SUB" '[$a,$b,$c] | sort')" ] && return 0
		sleep 0.2
	done
	return 1
}
check "the second aggregator serves the fleet's instrumentations under the same ids" b2_has
# it was not there for window a: itself not among the reporting, the four
# others backfilled from what each kept
backfilled() {
	for _ in $(seq 60); do
		raw "$B2" "$I_TOT" "$T0" "$T1" > "$TMPD/tot2.json"
		jqe 'all(.[]; .minreporting == 4)' "$TMPD/tot2.json" && return 0
		sleep 0.25
	done
	return 1
}
check "second aggregator: window a backfilled from the four hosts (minreporting 4)" backfilled
expect_eq "second aggregator: window a's total is the same exact sum" "$(jq '[.[].value] | add' "$TMPD/tot2.json")" "$SUM_A"
check "second aggregator: it says it did not report those seconds itself (nsources 5 > minreporting 4)" \
	jqe 'all(.[]; .nsources == 5)' "$TMPD/tot2.json"

# ---- a NATS node dies mid-run
# (the second aggregator's copies report from the second after they were
# made: the window starts after that)
sleep 1.2
kill -KILL "${NATS_PIDS[1]}"; wait "${NATS_PIDS[1]}" 2>/dev/null
T0=$(date +%s)
run_guests b 1:400 2:250 3:200 fh-agg:50 fh-agg2:60
T1=$(date +%s)
sleep 2
SUM_B=$(sum_truths b 1 2 3 fh-agg fh-agg2)
for agg in 1 2; do
	if settled "${AGG_BASE[$agg]}" "$I_TOT" "$T0" "$T1" 5; then
		ok "NATS node 1 killed: aggregator $agg has every second from the five sources"
		expect_eq "NATS node 1 killed: aggregator $agg's total is exact" "$(jq '[.[].value] | add' "$TMPD/tot.json")" "$SUM_B"
	else
		not_ok "NATS node 1 killed: aggregator $agg still misses sources: $(jq -c '[.[].minreporting]' "$TMPD/tot.json")"
		curl -s "${AUTH[@]}" "${AGG_BASE[$agg]}/ca/instrumentations/$I_TOT" | jq -c '.hosts[]' | sed 's/^/# /'
		curl -s "${AUTH[@]}" "${AGG_BASE[$agg]}/ca/instrumentations/$I_HOST/value/raw?start_time=$T0&duration=1&ndatapoints=3" | jq -c '.[] | [.start_time, .value, .minreporting]' | sed 's/^/# /'
		echo "# T0=$T0 T1=$T1"
		check "... and what it has is no more than the truth" \
			test "$(jq '[.[].value] | add' "$TMPD/tot.json")" -le "$SUM_B"
	fi
done
check "the fleet's clients moved to the live nodes" jqe '.bus.status == "connected" and (.bus.connected_url | endswith(":'$((PB + 1))'") | not)' \
	<(curl -s "${AUTH[@]}" "$BASE/ca/peers")

# ---- a member dies
kill -KILL "${MEMBER_PIDS[2]}"; wait "${MEMBER_PIDS[2]}" 2>/dev/null
fh2_gone() {
	for _ in $(seq 40); do
		curl -s "${AUTH[@]}" "$BASE/ca/peers" > "$TMPD/peers.json"
		jqe '.hosts[] | select(.host == "fh-2") | .alive == false' "$TMPD/peers.json" && return 0
		sleep 0.25
	done
	return 1
}
check "GET /ca/peers reports fh-2 not alive, with its last heartbeat" fh2_gone
check "... and the others alive" jqe '[.hosts[] | select(.alive) | .host] | sort == ["fh-1","fh-3","fh-agg2"]' "$TMPD/peers.json"
T0=$(date +%s)
run_guests c 1:100 3:600 fh-agg:30 fh-agg2:20
T1=$(date +%s)
sleep 2
check "member down: nsources = minreporting = 4 (the four left)" settled "$BASE" "$I_TOT" "$T0" "$T1" 4
expect_eq "member down: the others' data continues exactly" "$(jq '[.[].value] | add' "$TMPD/tot.json")" "$(sum_truths c 1 3 fh-agg fh-agg2)"

# ---- the member returns (no state dir): the bucket gives it the set again
start_member 2 || not_ok "member 2 restarts"
check "the returning member picks up the current set from the bucket" members_hold 3 2
# its copies report from the second after they were made: start after it
sleep 1.2

# ---- NATS node 3 hangs (SIGSTOP) while guests run: its clients (member 3
# was given only node 3, and learnt the others from it) move to node 2 once
# its pings go unanswered; what was lost on the way is asked for: exact
# again once the node wakes.
kill -STOP "${NATS_PIDS[3]}"
T0=$(date +%s)
run_guests e 1:55 2:65 3:75 fh-agg:45 fh-agg2:35
T1=$(date +%s)
kill -CONT "${NATS_PIDS[3]}"
SUM_E=$(sum_truths e 1 2 3 fh-agg fh-agg2)
for agg in 1 2; do
	if settled "${AGG_BASE[$agg]}" "$I_TOT" "$T0" "$T1" 5 100; then
		ok "node 3 back: aggregator $agg has every second from the five sources, fh-3's included"
		expect_eq "node 3 back: aggregator $agg's total is exact" "$(jq '[.[].value] | add' "$TMPD/tot.json")" "$SUM_E"
	else
		not_ok "node 3 back: aggregator $agg still misses sources: $(jq -c '[.[].minreporting]' "$TMPD/tot.json")"
		curl -s "${AUTH[@]}" "${AGG_BASE[$agg]}/ca/instrumentations/$I_TOT" | jq -c '.hosts[]' | sed 's/^/# /'
		echo "# T0=$T0 T1=$T1"
		check "... and what it has is no more than the truth" \
			test "$(jq '[.[].value] | add' "$TMPD/tot.json")" -le "$SUM_E"
	fi
done

# ---- an aggregator dies: the other answers alone
kill -KILL "${AGG_PIDS[1]}"; wait "${AGG_PIDS[1]}" 2>/dev/null
sleep 1.5
T0=$(date +%s)
run_guests d 1:70 2:80 3:90 fh-agg2:10
T1=$(date +%s)
sleep 2
check "aggregator 1 killed: aggregator 2 has every second (itself and three members)" settled "$B2" "$I_TOT" "$T0" "$T1" 4
expect_eq "aggregator 1 killed: aggregator 2's total is exact" "$(jq '[.[].value] | add' "$TMPD/tot.json")" "$(sum_truths d 1 2 3 fh-agg2)"
raw "$B2" "$I_HOST" "$T0" "$T1" > "$TMPD/host.json"
expect_eq "aggregator 1 killed: the returned fh-2's share is counted" "$(jq '[.[].value["fh-2"] // 0] | add' "$TMPD/host.json")" "$(truth d 2)"

# ---- DELETE on the surviving aggregator reaches every member
BASE=$B2
for id in "$I_TOT" "$I_HOST" "$I_SUB"; do
	expect_eq "DELETE $id on aggregator 2" "$(code DELETE "/ca/instrumentations/$id" "${AUTH[@]}")" 204
done
check "deleted on every member too" members_hold 0 1 2 3
no_logged_errors "$TMPD"/member*.log "$TMPD"/agg*.log
tap_done
