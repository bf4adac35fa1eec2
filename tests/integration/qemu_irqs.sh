#!/bin/bash
# vm.irqs on real QEMU guests: PIT interrupts through the in-kernel 8259 PIC,
# raised by KVM's kvm-pit kernel thread (a thread of no VM: kvmscope must
# book them to the VM whose PIT it is). The guest (tests/qemu/pit.asm) sets
# the PIC's vector base itself, takes exactly COUNT timer interrupts at HZ
# and only then stops QEMU, so a QEMU that exits on its own is the proof that
# the guest took every one. Two guests one after the other: different
# vectors and rates, with and without debug-threads. The guest halts until
# each interrupt: vm.exits' halts are checked against the kernel's own
# kvm_vcpu_wakeup events of that QEMU (a private tracefs instance).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "vm.irqs on QEMU"
require_qemu "vm.irqs on QEMU"

A=qia$$ B=qib$$
VEC_A=0x30 HZ_A=100 COUNT_A=150
VEC_B=0x48 HZ_B=250 COUNT_B=300
qemu_guest pit.asm "$TMPD/a.img" -DVECTOR=$VEC_A -DHZ=$HZ_A -DCOUNT=$COUNT_A
qemu_guest pit.asm "$TMPD/b.img" -DVECTOR=$VEC_B -DHZ=$HZ_B -DCOUNT=$COUNT_B
qemu_tracefs_open "$A" && qemu_tracefs_open "$B" || { not_ok "tracefs instances"; tap_done; }

P='{"or": [{"eq": ["vm", "'$A'"]}, {"eq": ["vm", "'$B'"]}]}'
"$KVMSCOPE" watch vm.irqs -d vm,vector,source -P "$P" -j -n 90 > "$TMPD/vec.json" 2> "$TMPD/vec.err" &
W1=$!; cleanup_pids+=("$W1")
"$KVMSCOPE" watch vm.irqs -d vm,vcpu -j -n 90 > "$TMPD/vcpu.json" 2> "$TMPD/vcpu.err" &
W2=$!; cleanup_pids+=("$W2")
"$KVMSCOPE" watch vm.exits -d vm,class -P "$P" -j -n 90 > "$TMPD/exits.json" 2> "$TMPD/exits.err" &
W3=$!; cleanup_pids+=("$W3")
wait_counting "$TMPD/vec.json" "$TMPD/vcpu.json" "$TMPD/exits.json"
qemu_run "$A" "$A" -name "$A,debug-threads=on" -kernel "$TMPD/a.img"; ra=$?
qemu_run "$B" "$B" -name "$B" -kernel "$TMPD/b.img"; rb=$?
# vm.exits prints a second once final: up to 3 s (COLLECTOR_FINAL_WAIT_MAX_S) late
sleep 5; kill -INT $W1 $W2 $W3 2>/dev/null; wait $W1 $W2 $W3
check "$A's guest took its $COUNT_A PIT interrupts and stopped QEMU" test $ra -eq 0
check "$B's guest took its $COUNT_B PIT interrupts and stopped QEMU" test $rb -eq 0

for v in A B; do
	n=${!v} vec=VEC_$v hz=HZ_$v cnt=COUNT_$v
	vec=${!vec} hz=${!hz} cnt=${!cnt}
	expect_eq "$n: vm.irqs $n,$vec,pic = the guest's count" "$(watch_total "$TMPD/vec.json" "$n,$vec,pic")" "$cnt"
	# SeaBIOS takes a few interrupts of its own (its PIT at vector 0x08)
	# before the guest runs; nothing else of the guest's vector
	keys=$(jq -r -s --arg p "$n,$vec," '[.[].value | keys[] | select(startswith($p))] | unique | join(" ")' "$TMPD/vec.json")
	expect_eq "$n: the guest's vector comes from the PIC only" "$keys" "$n,$vec,pic"
	peak=$(jq -s --arg k "$n,$vec,pic" '[.[].value[$k] // 0] | max' "$TMPD/vec.json")
	check "$n: the busiest second ($peak) is at most the PIT's rate ($hz Hz) + 1" test "$peak" -le $((hz + 1))
	vk=$(jq -r -s --arg p "$n," '[.[].value | keys[] | select(startswith($p))] | unique | join(" ")' "$TMPD/vcpu.json")
	expect_eq "$n: interrupts booked to vCPU 0 only" "$vk" "$n,0"
	wk=$(grep -c ' kvm_vcpu_wakeup: ' "$TMPD/$n.kvm")
	# not one per interrupt: a tick already pending when the guest halts
	# ends the halt without a wake-up
	check "truth $n: the kernel's tracefs has halts of this guest ($wk)" test "$wk" -gt 0
	expect_eq "$n: vm.exits $n,haltx = tracefs kvm_vcpu_wakeup" "$(watch_total "$TMPD/exits.json" "$n,haltx")" "$wk"
done
# the kvm-pit threads that raised them have no interrupts of their own
stray=$(jq -s -r '[.[].value | keys[]] | unique | .[]' "$TMPD/vcpu.json" | cut -d, -f1 | sed -n 's/^pid://p' |
	while read -r p; do case "$(cat /proc/$p/comm 2>/dev/null)" in kvm-pit*) echo "$p";; esac; done | wc -l)
expect_eq "nothing booked to a kvm-pit thread" "$stray" 0
no_logged_errors "$TMPD"/vec.err "$TMPD"/vcpu.err "$TMPD"/exits.err
tap_done
