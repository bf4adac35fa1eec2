#!/bin/bash
# kvmscope stat on real KVM guests: the summed per-vCPU counts equal what
# vmload says it did, exactly, per vCPU and per VM, with two VMs at once.
# Exit source on this machine: the fallback (kvm_exit does not fire here);
# the VMX/SVM path is covered with synthetic records in tests/unit/test_exit_paths.c.
. "$(dirname "$0")/lib.sh"
require_kvm "kvmscope stat"

"$KVMSCOPE" stat -j 1 14 > "$TMPD/stat.json" 2> "$TMPD/stat.err" &
STAT=$!
cleanup_pids+=($STAT)
sleep 1.5
# two VMs at once, different work per vCPU
"$VMLOAD" -name guest=stat-a --vcpus 2 --delay 1200 --linger 2500 \
	--pio vcpu=0,count=20000 --pio vcpu=1,count=5000 --hlt vcpu=0,count=10 \
	--mmio vcpu=1,count=300 > "$TMPD/a.json" &
A=$!
"$VMLOAD" -name guest=stat-b --vcpus 1 --delay 1200 --linger 2500 \
	--pio vcpu=0,count=7000 --irq vcpu=0,vector=0x33,via=ioapic,period_ms=200,phase_ms=50,count=10 \
	> "$TMPD/b.json" &
B=$!
wait $A $B
wait $STAT
check "stat exited cleanly" test -s "$TMPD/stat.json"
grep -q level=error "$TMPD/stat.err" && not_ok "stat logged errors: $(cat "$TMPD/stat.err")"

sum() {	# sum VM VCPU FIELD
	jq -s --arg vm "$1" --argjson v "$2" --arg f "$3" \
		'[.[].vcpus[] | select(.vm == $vm and .vcpu == $v) | .[$f] // 0] | add // 0' "$TMPD/stat.json"
}
truth() {	# truth FILE VCPU FIELD
	jq --argjson v "$2" --arg f "$3" '.vcpus[] | select(.index == $v) | .[$f]' "$1"
}

expect_eq "stat-a vCPU 0 iox = vmload's port writes" "$(sum stat-a 0 iox)" "$(truth "$TMPD/a.json" 0 io_exits)"
expect_eq "stat-a vCPU 1 iox = vmload's port writes" "$(sum stat-a 1 iox)" "$(truth "$TMPD/a.json" 1 io_exits)"
expect_eq "stat-b vCPU 0 iox = vmload's port writes" "$(sum stat-b 0 iox)" "$(truth "$TMPD/b.json" 0 io_exits)"
# halts: the guest's own HLTs plus its final idle HLT
for v in 0 1; do
	want=$(( $(truth "$TMPD/a.json" $v hlt) + $(truth "$TMPD/a.json" $v idle_hlt) ))
	expect_eq "stat-a vCPU $v haltx = guest HLTs" "$(sum stat-a $v haltx)" "$want"
done
# MMIO: vmload's userspace MMIO exits, plus the in-kernel LAPIC writes the
# guest makes (one to enable it, one EOI per interrupt: vmload/guest.c)
for v in 0 1; do
	want=$(( $(truth "$TMPD/a.json" $v mmio_exits) + 1 + $(truth "$TMPD/a.json" $v irqs) ))
	expect_eq "stat-a vCPU $v mmiox = userspace MMIO + LAPIC writes" "$(sum stat-a $v mmiox)" "$want"
done
expect_eq "stat-a vCPU 0 irqs = interrupts the guest took" "$(sum stat-a 0 irqs)" "$(truth "$TMPD/a.json" 0 irqs)"
expect_eq "stat-b vCPU 0 irqs = interrupts the guest took" "$(sum stat-b 0 irqs)" "$(truth "$TMPD/b.json" 0 irqs)"
# exits = the sum of the classes
for vm in stat-a stat-b; do
	got=$(jq -s --arg vm $vm '[.[].vcpus[] | select(.vm == $vm) | .exits] | add' "$TMPD/stat.json")
	parts=$(jq -s --arg vm $vm '[.[].vcpus[] | select(.vm == $vm) | .haltx + .iox + .mmiox] | add' "$TMPD/stat.json")
	check "$vm exits ($got) >= haltx+iox+mmiox ($parts)" test "$got" -ge "$parts"
done
# never mixed: each line's rows name the right pid for the VM
pa=$(jq .pid "$TMPD/a.json"); pb=$(jq .pid "$TMPD/b.json")
bad=$(jq -s --argjson pa "$pa" --argjson pb "$pb" \
	'[.[].vcpus[] | select((.vm == "stat-a" and .pid != $pa) or (.vm == "stat-b" and .pid != $pb))] | length' "$TMPD/stat.json")
expect_eq "rows attributed to the right VM process" "$bad" 0
# columns this host cannot derive are null, never a made-up 0
src=$(jq -r -s '[.[].source] | unique | join(",")' "$TMPD/stat.json")
if [ "$src" = fallback ]; then
	n=$(jq -s '[.[].vcpus[] | select(.irqx != null or .irqwx != null or .eptv != null)] | length' "$TMPD/stat.json")
	expect_eq "fallback source: irqx/irqwx/eptv are null" "$n" 0
else
	ok "source is $src (hardware exits): irqx/irqwx/eptv derivable"
fi
# every line has the documented keys
n=$(jq -s '[.[] | select(has("time") and has("interval") and has("source") and has("vcpus"))] | length' "$TMPD/stat.json")
expect_eq "14 JSON lines with time/interval/source/vcpus" "$n" 14

# text mode: header, '-' for underivable columns, VM name
"$KVMSCOPE" stat 1 2 > "$TMPD/stat.txt" 2>&1 &
sleep 0.5
"$VMLOAD" -name guest=stat-text --pio vcpu=0,count=3000 --delay 1000 --linger 2000 > /dev/null
wait
check "text: header line" grep -q 'pid vcpu |  exits :  haltx' "$TMPD/stat.txt"
check "text: source line" grep -q '^# source:' "$TMPD/stat.txt"
check "text: the VM's row with its name" grep -q 'stat-text' "$TMPD/stat.txt"

# errors: bad arguments are usage errors (exit 2) with a message
"$KVMSCOPE" stat -p abc > /dev/null 2> "$TMPD/e1"; rc=$?
expect_eq "stat -p abc exits 2" "$rc" 2
check "stat -p abc names the problem" grep -q "wants a process id" "$TMPD/e1"
"$KVMSCOPE" stat 0 > /dev/null 2> "$TMPD/e2"; rc=$?
expect_eq "stat 0 exits 2" "$rc" 2
# nothing stays attached after stat exits: tp_kvm_page_fault is stat's own
# program (other kvmscope commands may run on the host at the same time)
left=$(bpftool prog show 2>/dev/null | grep -c 'name tp_kvm_page_fau' || true)
expect_eq "no kvmscope stat programs left attached" "$left" 0
tap_done
