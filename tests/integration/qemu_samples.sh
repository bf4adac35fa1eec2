#!/bin/bash
# vm.samples on a real QEMU guest that only computes for a few seconds, with
# and without debug-threads=on: samples are taken and attributed to the VM
# and to its one vCPU (index 0).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "vm.samples on QEMU"
require_qemu "vm.samples on QEMU"

A=qsa$$ B=qsb$$
qemu_guest spin.asm "$TMPD/spin.img" -DLOOPS=1000000
"$KVMSCOPE" watch vm.samples -d vm,vcpu -j -n 60 > "$TMPD/s.json" 2> "$TMPD/s.err" &
W=$!; cleanup_pids+=("$W")
wait_counting "$TMPD/s.json"
s=$(date +%s.%N)
qemu_run "$A" "" -name "$A,debug-threads=on" -kernel "$TMPD/spin.img"
qemu_run "$B" "" -name "$B" -kernel "$TMPD/spin.img"
el=$(echo "$(date +%s.%N) - $s" | bc)
sleep 2; kill -INT $W 2>/dev/null; wait $W
for n in $A $B; do
	got=$(jq -s --arg k "$n,0" '[.[].value[$k] // 0] | add' "$TMPD/s.json")
	check "$n: vm.samples on vCPU 0 > 0 (got $got in ${el}s of two guests)" test "$got" -gt 0
	keys=$(jq -r -s --arg p "$n," '[.[].value | keys[] | select(startswith($p))] | unique | join(" ")' "$TMPD/s.json")
	expect_eq "$n: samples attributed to vCPU 0 only" "$keys" "$n,0"
done
grep -q 'level=error' "$TMPD/s.err" && not_ok "watch: $(grep level=error "$TMPD/s.err" | head -2)"
tap_done
