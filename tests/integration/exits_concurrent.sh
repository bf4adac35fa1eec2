#!/bin/bash
# The agent and two `kvmscope watch` processes on one host each load their
# own vm.exits BPF object (its own per-thread state and maps): each must
# count every exit of a vmload guest, including the idle halt the guest
# ends in, which completes only when vmload kicks the vCPU out of it at the
# end of the run (after --linger). vCPU 0's halts (its --hlt ones and that
# idle one) and port writes must equal vmload's truth in all three.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/agent_lib.sh

require_kvm "concurrent vm.exits instances"
if [ ! -x "$VMLOAD" ]; then not_ok "vmload is not built ($VMLOAD): run make"; tap_done; fi

LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir "$TMPD/state"; then
	not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done
fi
VM=exconc-$$
PRED='{"and": [{"eq": ["vm", "'$VM'"]}, {"eq": ["vcpu", "0"]}]}'
ID=$(curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' \
	-d '{"module":"vm","stat":"exits","decomposition":["class"],"predicate":'"$PRED"'}' | jq -r .id)
check "agent instrumentation created (id $ID)" test "${ID:-0}" -ge 1 2>/dev/null
WPIDS=()
for w in 1 2; do
	"$KVMSCOPE" watch vm.exits -d class -P "$PRED" -j > "$TMPD/w$w.json" 2> "$TMPD/w$w.err" &
	WPIDS+=($!)
	cleanup_pids+=($!)
done
wait_counting "$TMPD/w1.json" "$TMPD/w2.json"

T0=$(date +%s)
"$VMLOAD" -name guest=$VM --vcpus 1 --delay 500 --linger 1500 --duration 30 \
	--pio vcpu=0,count=3000 --hlt vcpu=0,count=5 --truth "$TMPD/truth.json" > "$TMPD/vmload.out" 2>&1
expect_eq "vmload exit status" "$?" 0
T1=$(date +%s)
# every process has printed the second of the final kick: final up to 3 s
# (COLLECTOR_FINAL_WAIT_MAX_S) after its end while an exit of any VM on the
# host that began in it is still open
sleep 5
for p in "${WPIDS[@]}"; do kill -INT "$p" 2>/dev/null; wait "$p"; done
truth() { jq --arg f "$1" '.vcpus[] | select(.index == 0) | .[$f]' "$TMPD/truth.json"; }
HALTS=$(( $(truth hlt) + $(truth idle_hlt) ))
IOS=$(truth io_exits)
check "the guest halted ($HALTS, idle: $(truth idle_hlt)) and wrote ports ($IOS)" test "$HALTS" -gt 1 -a "$IOS" -gt 0
curl -s "$BASE/ca/instrumentations/$ID/value/raw?start_time=$T0&duration=1&ndatapoints=$((T1 - T0 + 2))" \
	> "$TMPD/agent.json"
agent_total() { jq --arg k "$1" '[.[].value[$k] // 0] | add' "$TMPD/agent.json"; }
expect_eq "agent: vCPU 0's halts" "$(agent_total haltx)" "$HALTS"
expect_eq "agent: vCPU 0's port writes" "$(agent_total iox)" "$IOS"
for w in 1 2; do
	expect_eq "watch $w: vCPU 0's halts" "$(watch_total "$TMPD/w$w.json" haltx)" "$HALTS"
	expect_eq "watch $w: vCPU 0's port writes" "$(watch_total "$TMPD/w$w.json" iox)" "$IOS"
done
agent_stop
no_logged_errors "$LOG" "$TMPD"/w?.err
tap_done
