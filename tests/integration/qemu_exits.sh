#!/bin/bash
# vm.exits on real QEMU guests against the truth of the kernel (a private
# tracefs instance recording kvm_pio of this QEMU's threads only) and of QEMU
# (-trace kvm_run_exit): per VM, vCPU, class and reason, for a QEMU with
# `-name x,debug-threads=on` (vCPU threads named "CPU 0/KVM") and one without
# (every QEMU thread is named qemu-system-x86), with known OUT and IN counts;
# and a guest whose last exit before a 1.5 s loop is handled in the kernel
# (nothing marks its end until the next exit, long after its second was
# drained): it must be counted, in a later second, not lost.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "vm.exits on QEMU"
require_qemu "vm.exits on QEMU"

A=qea$$ B=qeb$$ C=qec$$
OUTS_A=3000 INS_A=1200 OUTS_B=800 INS_B=2500
qemu_guest pio.asm "$TMPD/a.img" -DPORT=0xe0 -DOUTS=$OUTS_A -DINS=$INS_A
qemu_guest pio.asm "$TMPD/b.img" -DPORT=0xe0 -DOUTS=$OUTS_B -DINS=$INS_B
qemu_guest spin.asm "$TMPD/c.img" -DLOOPS=500000 -DKERNEL_OUT
qemu_tracefs_open "$A" && qemu_tracefs_open "$B" && qemu_tracefs_open "$C" || { not_ok "tracefs instances"; tap_done; }

W=$TMPD/w; mkdir -p "$W"
P='{"or": [{"eq": ["vm", "'$A'"]}, {"eq": ["vm", "'$B'"]}, {"eq": ["vm", "'$C'"]}]}'
"$KVMSCOPE" watch vm.exits -d vm,vcpu,class -P "$P" -j -n 60 > "$W/class.json" 2> "$W/class.err" &
W1=$!; cleanup_pids+=("$W1")
"$KVMSCOPE" watch vm.exits -d vm,reason -P "$P" -j -n 60 > "$W/reason.json" 2> "$W/reason.err" &
W2=$!; cleanup_pids+=("$W2")
# kvmstat's view: the same kernel-side exit logic, per vCPU, JSON per second
"$KVMSCOPE" stat -j 1 90 > "$W/stat.json" 2> "$W/stat.err" &
W3=$!; cleanup_pids+=("$W3")
wait_counting "$W/class.json" "$W/reason.json" "$W/stat.json"
# one after the other: two emulated guests at once on two cores crawl
qemu_run "$A" "$A" -name "$A,debug-threads=on" -kernel "$TMPD/a.img"; ra=$?
qemu_run "$B" "$B" -name "$B" -kernel "$TMPD/b.img"; rb=$?
qemu_run "$C" "$C" -name "$C" -kernel "$TMPD/c.img"; rc=$?
# the watches end on their own: stop them early once both guests are done
# a second is printed once final: up to COLLECTOR_FINAL_WAIT_MAX_S (3 s) after its
# end while an exit of any VM on the host began in it and is still open
sleep 5; kill -INT $W1 $W2 $W3 2>/dev/null; wait $W1 $W2 $W3
[ $ra -eq 0 ] && [ $rb -eq 0 ] && [ $rc -eq 0 ] || tap_done

# the truth side, checked on its own: the guest's port accesses are all there
for v in A B; do
	n=${!v}; o=OUTS_$v; i=INS_$v
	expect_eq "truth $v: tracefs kvm_pio writes to 0xe0 = the guest's OUTs" \
		"$(grep -c 'pio_write at 0xe0 ' "$TMPD/$n.kvm")" "${!o}"
	expect_eq "truth $v: tracefs kvm_pio reads of 0xe0 = the guest's INs" \
		"$(grep -c 'pio_read at 0xe0 ' "$TMPD/$n.kvm")" "${!i}"
	uio=$(grep -c 'reason 2$' "$TMPD/$n.trace")
	check "truth $v: QEMU's kvm_run_exit KVM_EXIT_IO ($uio) covers the guest's $((${!o} + ${!i})) accesses" \
		test "$uio" -ge $((${!o} + ${!i}))
done

expect_eq "truth C: tracefs kvm_pio has the guest's one write to the PIC's 0x21" \
	"$(grep -c 'pio_write at 0x21 size 1 count 1 val 0xff' "$TMPD/$C.kvm")" 1

for v in A B C; do
	n=${!v}
	pio=$(grep -c ' kvm_pio: ' "$TMPD/$n.kvm")
	case $v in A) label="$n (debug-threads=on)";; B) label="$n (no debug-threads)";;
	C) label="$n (in-kernel exit open across a drain)";; esac
	expect_eq "$label: vm,vcpu,class $n,0,iox = tracefs kvm_pio" "$(watch_total "$W/class.json" "$n,0,iox")" "$pio"
	expect_eq "$label: vm,reason $n,IO = tracefs kvm_pio" "$(watch_total "$W/reason.json" "$n,IO")" "$pio"
	keys=$(jq -r -s --arg p "$n," '[.[].value | keys[] | select(startswith($p))] | unique | map(split(",")[1]) | unique | join(" ")' "$W/class.json")
	expect_eq "$label: exits attributed to vCPU 0 only (1 vCPU)" "$keys" "0"
	expect_eq "$label: kvmscope stat -j vCPU 0 iox = tracefs kvm_pio" \
		"$(jq -s --arg vm "$n" '[.[].vcpus[] | select(.vm == $vm and .vcpu == 0) | .iox // 0] | add // 0' "$W/stat.json")" "$pio"
	expect_eq "$label: kvmscope stat -j has no other vCPU" \
		"$(jq -s -r --arg vm "$n" '[.[].vcpus[] | select(.vm == $vm) | .vcpu] | unique | join(" ")' "$W/stat.json")" "0"
done
no_logged_errors "$W"/*.err
tap_done
