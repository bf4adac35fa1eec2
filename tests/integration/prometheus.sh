#!/bin/bash
# GET /metrics end to end: the agent with --metrics, a real Prometheus server
# scraping it every second on loopback while vmload guests run, PromQL over
# its HTTP API against vmload's truth (port writes, disk ops on a loop
# device), promtool on the text format, tokens and the series bound.
# Exits come from kvm_pio here (no kvm_exit on this host): the fallback path.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "prometheus export"
for b in promtool prometheus curl jq; do
	command -v $b >/dev/null || { skip "prometheus export: $b absent (make deps installs it)"; tap_done; }
done

# bad command lines: precise errors, exit 2
out=$("$KVMSCOPE" agent --metrics --metrics-max-series 0 2>&1); rc=$?
check "--metrics-max-series 0 refused with a message (rc $rc)" \
	test $rc = 2 -a -n "$(echo "$out" | grep -- '--metrics-max-series wants an integer')"
out=$("$KVMSCOPE" agent --metrics-keep 60 2>&1); rc=$?
check "--metrics-keep without --metrics refused (rc $rc)" \
	test $rc = 2 -a -n "$(echo "$out" | grep -- 'need --metrics')"

# without --metrics: /metrics says how to turn it on, nothing is attached
LOG=$TMPD/agent.log
agent_start "$LOG" --state-dir none || { not_ok "agent starts"; tap_done; }
expect_eq "without --metrics: 404" "$(code GET /metrics)" 404
check "the 404 says to use --metrics" grep -q -- '--metrics' "$TMPD/body"
check "without --metrics no collector started" bash -c "! grep -q 'collector .* started' '$LOG'"
agent_stop

agent_start "$LOG" --state-dir none --metrics || { not_ok "agent --metrics starts"; cat "$LOG" | sed 's/^/# /'; tap_done; }
ok "agent --metrics answers on $BASE"
CT=$(curl -s -o "$TMPD/om.txt" -w '%{content_type}' "$BASE/metrics")
expect_eq "OpenMetrics content type" "$CT" "application/openmetrics-text; version=1.0.0; charset=utf-8"
expect_eq "OpenMetrics ends with # EOF" "$(tail -1 "$TMPD/om.txt")" "# EOF"

# Prometheus on loopback, scraping the agent every second
PPORT=$(free_port)
mkdir -p "$TMPD/tsdb"
cat > "$TMPD/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: kvmscope
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:$PORT']
EOF
promtool check config "$TMPD/prometheus.yml" > "$TMPD/promtool-config.out" 2>&1 ||
	not_ok "promtool check config: $(tail -2 "$TMPD/promtool-config.out")"
prometheus --config.file="$TMPD/prometheus.yml" --storage.tsdb.path="$TMPD/tsdb" \
	--web.listen-address=127.0.0.1:$PPORT > "$TMPD/prometheus.log" 2>&1 &
cleanup_pids+=($!)
PROM=http://127.0.0.1:$PPORT
for _ in $(seq 100); do curl -sf "$PROM/-/ready" >/dev/null && break; sleep 0.2; done
if ! curl -sf "$PROM/-/ready" >/dev/null; then
	not_ok "prometheus ready: $(tail -3 "$TMPD/prometheus.log")"; tap_done
fi
ok "prometheus listens on $PROM"
# q PROMQL: the first result's value ("" if none)
q() { curl -s "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // ""'; }
# target discovery reaches the scrape loop only after a few seconds: start the
# guests once a scrape has landed, so that the counters' growth is seen
for _ in $(seq 60); do [ "$(q 'up{job="kvmscope"}')" = 1 ] && break; sleep 0.5; done
expect_eq "first scrape landed (up)" "$(q 'up{job="kvmscope"}')" 1

VM=prom-$$ VMD=promdisk-$$
NPIO=3000 N=6 M=4 S=8192
truncate -s 16M "$TMPD/loop.img"
if ! LOOP=$(losetup -f --show "$TMPD/loop.img" 2>"$TMPD/losetup.err"); then
	LOOP=""; skip "no loop device: $(cat "$TMPD/losetup.err")"
fi
trap 'cleanup; [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null' EXIT
# --delay lets discovery and the disk collector see the guests (and the loop
# device) first; --linger keeps the names known for the last drained second
"$VMLOAD" -name guest=$VM --delay 1500 --linger 1500 --pio vcpu=0,count=$NPIO,rate=1000 \
	--truth "$TMPD/truth.json" --duration 30 >/dev/null 2>"$TMPD/vmload.err" &
P1=$!
if [ -n "$LOOP" ]; then
	"$VMLOAD" -name guest=$VMD --delay 2500 --linger 1500 --duration 30 \
		--disk file=$LOOP,reads=$N,writes=$M,size=$S,offset=0,pattern=seq \
		--truth "$TMPD/truthd.json" >/dev/null 2>"$TMPD/vmloadd.err" &
	P2=$!
fi
wait $P1
[ -n "$LOOP" ] && wait $P2
check "vmload completed" test "$(jq -r .completed "$TMPD/truth.json")" = true
TRUTH_PIO=$(jq '[.vcpus[].pio] | add' "$TMPD/truth.json")

# the final counter once a scrape after the last drain has landed: up to 2 s
# (drain) + 1 s (scrape interval); wait a little longer on a busy machine
GOT=""
for _ in $(seq 20); do
	GOT=$(q "sum(kvmscope_vm_exits_total{vm=\"$VM\",class=\"iox\"})")
	[ "$GOT" = "$TRUTH_PIO" ] && break
	sleep 0.5
done
expect_eq "Prometheus: kvmscope_vm_exits_total{class=iox} equals vmload's port writes" "$GOT" "$TRUTH_PIO"
INC=$(q "sum(increase(kvmscope_vm_exits_total{vm=\"$VM\",class=\"iox\"}[1m]))")
check "increase(...[1m]) of iox exits is positive ($INC)" \
	awk -v v="$INC" 'BEGIN { exit !(v > 0) }'
H=$(q "sum(kvmscope_vm_exit_latency_seconds_count{vm=\"$VM\",class=\"iox\"})")
expect_eq "exit latency histogram counts every port write" "$H" "$TRUTH_PIO"
P99=$(q "histogram_quantile(0.99, sum by (le) (rate(kvmscope_vm_exit_latency_seconds_bucket{vm=\"$VM\",class=\"iox\"}[1m])))")
check "histogram_quantile p99 of iox exit latency is within 1 us .. 1 s ($P99 s)" \
	awk -v v="$P99" 'BEGIN { exit !(v + 0 >= 1e-6 && v + 0 <= 1) }'
INF=$(q "sum(kvmscope_vm_exit_latency_seconds_bucket{vm=\"$VM\",class=\"iox\",le=\"+Inf\"})")
expect_eq "le=+Inf bucket equals _count" "$INF" "$H"

if [ -n "$LOOP" ]; then
	for _ in $(seq 20); do
		R=$(q "sum(kvmscope_vm_disk_ops_total{vm=\"$VMD\",optype=\"read\"})")
		W=$(q "sum(kvmscope_vm_disk_ops_total{vm=\"$VMD\",optype=\"write\"})")
		[ "$R" = "$N" ] && [ "$W" = "$M" ] && break
		sleep 0.5
	done
	expect_eq "Prometheus: disk reads on the loop device" "$R" "$N"
	expect_eq "Prometheus: disk writes on the loop device" "$W" "$M"
	expect_eq "disk bytes" "$(q "sum(kvmscope_vm_disk_bytes_total{vm=\"$VMD\"})")" $(((N + M) * S))
	expect_eq "request size histogram: all $S-byte requests at or below le=10000" \
		"$(q "sum(kvmscope_vm_disk_request_size_bytes_bucket{vm=\"$VMD\",le=\"10000\"})")" $((N + M))
	expect_eq "request size histogram: none at or below le=5000" \
		"$(q "sum(kvmscope_vm_disk_request_size_bytes_bucket{vm=\"$VMD\",le=\"5000\"})")" 0
	expect_eq "disk latency histogram counts every op" \
		"$(q "sum(kvmscope_vm_disk_latency_seconds_count{vm=\"$VMD\"})")" $((N + M))
fi

T=$(curl -s "$PROM/api/v1/targets" | jq -c '.data.activeTargets[0] | [.health, .lastError]')
expect_eq "Prometheus parsed every scrape (target health, last error)" "$T" '["up",""]'
expect_eq "up == 1" "$(q 'up{job="kvmscope"}')" 1
check "self-metrics scraped: kernel drops, series, scrape duration" \
	test -n "$(q 'kvmscope_kernel_events_dropped_total{metric="vm.exits"}')" \
	-a -n "$(q 'kvmscope_metrics_series')" -a -n "$(q 'kvmscope_metrics_scrape_duration_seconds')"

# promtool lints the 0.0.4 text format (it has no OpenMetrics parser)
CT=$(curl -s -H 'Accept: text/plain;version=0.0.4' -o "$TMPD/prom.txt" -w '%{content_type}' "$BASE/metrics")
expect_eq "text format on Accept: text/plain" "$CT" "text/plain; version=0.0.4; charset=utf-8"
check "the text format holds our VM's series" grep -q "vm=\"$VM\"" "$TMPD/prom.txt"
if promtool check metrics < "$TMPD/prom.txt" > "$TMPD/promtool.out" 2>&1; then
	ok "promtool check metrics: clean"
else
	not_ok "promtool check metrics: $(head -5 "$TMPD/promtool.out" | tr '\n' ' ')"
fi
agent_stop

# tokens, and the series bound
OP=op-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
TA=ta-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s operator\n%s tenant %s\n' "$OP" "$TA" "$VM" > "$TMPD/tokens"
agent_start "$LOG" --state-dir none --token-file "$TMPD/tokens" --metrics --metrics-max-series 30 ||
	{ not_ok "agent starts with tokens and a series bound"; tap_done; }
expect_eq "no token: 401" "$(code GET /metrics)" 401
expect_eq "tenant token: 403" "$(code GET /metrics -H "Authorization: Bearer $TA")" 403
expect_eq "operator token: 200" "$(code GET /metrics -H "Authorization: Bearer $OP")" 200
"$VMLOAD" -name guest=$VM --delay 1500 --linger 1500 --pio vcpu=0,count=50 --mmio vcpu=0,count=50 \
	--duration 20 >/dev/null 2>&1
sleep 3
code GET /metrics -H "Authorization: Bearer $OP" >/dev/null
SER=$(awk '$1 == "kvmscope_metrics_series" { print $2 }' "$TMPD/body")
REF=$(awk '$1 == "kvmscope_metrics_series_refused_total" { print $2 }' "$TMPD/body")
check "series stay within --metrics-max-series 30 ($SER)" test "${SER:-99}" -le 30
check "refused series are counted ($REF)" test "${REF:-0}" -gt 0
agent_stop
tap_done
