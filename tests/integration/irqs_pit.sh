#!/bin/bash
# vm.irqs for interrupts KVM's own kernel workers raise: two vmload guests
# with KVM's in-kernel PIT at different rates, at the same time. The PIT's
# IRQ0 is raised by the kvm-pit/<pid> kthread, not by the VMM: kvmscope must
# book each one to the VM whose struct kvm it belongs to, with the vector the
# guest programmed into its PIC (ICW2), source pic, vCPU 0.
# What is counted: interrupts the PIC accepted (raised, unmasked, not
# coalesced). vmload's guest EOIs every PIT interrupt but the last and then
# stops the PIT, and KVM's PIT (reinject mode) raises again only after an
# EOI, so raised = accepted = received by the guest's handler: the truth
# ("pit.received", counted by the guest itself) is exact.
# Path covered: the irqchip tracepoints (this host fires no kvm_inj_virq);
# the VMX/SVM injection path is covered with synthetic events in
# tests/unit/test_irq_rules.c.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "vm.irqs from the in-kernel PIT"

A=pita-$$ B=pitb-$$
NA=120 NB=300
W=$TMPD/w
mkdir -p "$W"
"$KVMSCOPE" watch vm.irqs -d vm,vector,source -j -n 9 > "$W/vec.json" 2> "$W/vec.err" &
cleanup_pids+=($!)
WV=$!
"$KVMSCOPE" watch vm.irqs -d vm,vcpu -j -n 9 > "$W/vcpu.json" 2> "$W/vcpu.err" &
cleanup_pids+=($!)
WC=$!
# kvmscope stat counts interrupts per vCPU through the same kernel-side logic
"$KVMSCOPE" stat -j 1 9 > "$W/stat.json" 2> "$W/stat.err" &
cleanup_pids+=($!)
WS=$!
API=0
if agent_start "$TMPD/agent.log"; then
	API=1
	post() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1"; }
	I_API=$(post '{"module":"vm","stat":"irqs","decomposition":["vm","vector"],"predicate":{"or":[{"eq":["vm","'$A'"]},{"eq":["vm","'$B'"]}]}}' | jq -r .id)
fi
sleep 2
T0=$(date +%s)
# different rates, vectors and lengths, overlapping in time
"$VMLOAD" -name guest=$A --delay 300 --linger 1500 --pit hz=100,count=$NA,vector=0x48 \
	--truth "$TMPD/a.json" --duration 20 2> "$TMPD/a.err" &
VA=$!
"$VMLOAD" -name guest=$B --delay 300 --linger 1500 --pit hz=250,count=$NB \
	--truth "$TMPD/b.json" --duration 20 2> "$TMPD/b.err" &
VB=$!
cleanup_pids+=($VA $VB)
# the kvm-pit kthreads, while the VMs are alive
sleep 1
PITS=$(ps -eo pid=,comm= | awk -v a="kvm-pit/$VA" -v b="kvm-pit/$VB" '$2 == a || $2 == b {print $1}' | sort -n | tr '\n' ' ')
wait $VA; RA=$?
wait $VB; RB=$?
T1=$(date +%s)
wait $WV $WC $WS
no_logged_errors "$W"/*.err

expect_eq "vmload $A exit status" "$RA" 0
expect_eq "vmload $B exit status" "$RB" 0
check "kvm-pit kthreads exist for both VMs (pids: $PITS)" test "$(echo $PITS | wc -w)" = 2
RECV_A=$(jq .pit.received "$TMPD/a.json"); RECV_B=$(jq .pit.received "$TMPD/b.json")
expect_eq "$A's guest took every PIT interrupt it asked for" "$RECV_A" $NA
expect_eq "$B's guest took every PIT interrupt it asked for" "$RECV_B" $NB
expect_eq "$A's guest programmed the vector it was given" "$(jq -r .pit.vector "$TMPD/a.json")" 0x48
expect_eq "$B's guest used the default vector base" "$(jq -r .pit.vector "$TMPD/b.json")" 0x20

# every key of a VM, whatever its vector or source
vm_total() { jq -s --arg v "$2," '[.[].value | to_entries[] | select(.key | startswith($v)) | .value] | add // 0' "$1"; }
expect_eq "$A: PIT interrupts booked to $A, vector 0x48, source pic = the guest's count" \
	"$(watch_total "$W/vec.json" "$A,0x48,pic")" "$RECV_A"
expect_eq "$B: PIT interrupts booked to $B, vector 0x20, source pic = the guest's count" \
	"$(watch_total "$W/vec.json" "$B,0x20,pic")" "$RECV_B"
expect_eq "$A has no other interrupts (no other vector, no unknown)" "$(vm_total "$W/vec.json" "$A")" "$RECV_A"
expect_eq "$B has no other interrupts (no other vector, no unknown)" "$(vm_total "$W/vec.json" "$B")" "$RECV_B"
expect_eq "$A's PIT interrupts go to vCPU 0" "$(watch_total "$W/vcpu.json" "$A,0")" "$RECV_A"
expect_eq "$B's PIT interrupts go to vCPU 0" "$(watch_total "$W/vcpu.json" "$B,0")" "$RECV_B"
stat_irqs() { jq -s --arg vm "$1" '[.[].vcpus[] | select(.vm == $vm and .vcpu == 0) | .irqs // 0] | add // 0' "$W/stat.json"; }
expect_eq "kvmscope stat: $A vCPU 0 irqs = the guest's count" "$(stat_irqs "$A")" "$RECV_A"
expect_eq "kvmscope stat: $B vCPU 0 irqs = the guest's count" "$(stat_irqs "$B")" "$RECV_B"
stray=0
for p in $PITS; do
	n=$(jq -s --arg v "pid:$p," '[.[].value | to_entries[] | select(.key | startswith($v)) | .value] | add // 0' "$W/vec.json")
	stray=$((stray + n))
	n=$(jq -s --arg vm "pid:$p" '[.[].vcpus[] | select(.vm == $vm) | .irqs // 0] | add // 0' "$W/stat.json")
	stray=$((stray + n))
done
expect_eq "nothing booked to the kvm-pit threads themselves" "$stray" 0
# both VMs ran at once: each had interrupts in a second where the other had too
both=$(jq -s --arg a "$A,0x48,pic" --arg b "$B,0x20,pic" '[.[] | select((.value[$a] // 0) > 0 and (.value[$b] // 0) > 0)] | length' "$W/vec.json")
check "the two PITs ran at the same time ($both seconds with both)" test "$both" -ge 1
# rates: each ran about 1.2 s, so its busiest second shows its rate: at
# most ~100 for the 100 Hz PIT, at least 300/3 = 100 for the 250 Hz one
peak() { jq -s --arg k "$2" '[.[].value[$k] // 0] | max' "$1"; }
pa=$(peak "$W/vec.json" "$A,0x48,pic"); pb=$(peak "$W/vec.json" "$B,0x20,pic")
check "busiest second: $B (250 Hz) $pb > $A (100 Hz) $pa" test "$pb" -gt "$pa"

if [ "$API" = 1 ]; then
	sleep 2
	DUR=$((T1 - T0 + 3))
	curl -s "$BASE/ca/instrumentations/$I_API/value/raw?start_time=$T0&duration=1&ndatapoints=$DUR" > "$TMPD/api.json"
	expect_eq "API: $A,0x48 = the guest's count" "$(jq --arg k "$A,0x48" '[.[].value[$k] // 0] | add' "$TMPD/api.json")" "$RECV_A"
	expect_eq "API: $B,0x20 = the guest's count" "$(jq --arg k "$B,0x20" '[.[].value[$k] // 0] | add' "$TMPD/api.json")" "$RECV_B"
	agent_stop
else
	not_ok "agent starts (API check)"; sed 's/^/# /' "$TMPD/agent.log"
fi

# bad --pit specs: exit 2 and a message naming the problem, no VM started
bad() {	# bad DESC GREP ARGS...
	local desc=$1 pat=$2; shift 2
	"$VMLOAD" "$@" --duration 2 > /dev/null 2> "$TMPD/bad.err"; local rc=$?
	if [ "$rc" = 2 ] && grep -q -- "$pat" "$TMPD/bad.err"; then ok "$desc"
	else not_ok "$desc: exit $rc, $(head -1 "$TMPD/bad.err")"; fi
}
bad "--pit hz below the 16-bit divisor's range" "hz must be" --pit hz=5,count=3
bad "--pit vector not a multiple of 8" "multiple of 8" --pit hz=100,count=3,vector=0x21
bad "--pit vector in the exception range" "multiple of 8" --pit hz=100,count=3,vector=0x08
bad "--pit without count" "missing key 'count'" --pit hz=100
bad "--pit takes no vcpu" "unknown key 'vcpu'" --pit hz=100,count=3,vcpu=1
bad "two --pit" "one PIT" --pit hz=100,count=3 --pit hz=50,count=3
bad "--pit with --irq via=pic" "owns the PIC" --pit hz=100,count=3 \
	--irq vcpu=0,vector=0x31,via=pic,period_ms=100,phase_ms=0,count=1
bad "--pit with --irq via=ioapic on pin 2" "owns the PIC" --pit hz=100,count=3 \
	--irq vcpu=0,vector=0x31,via=ioapic,period_ms=100,phase_ms=0,count=1,line=2
tap_done
