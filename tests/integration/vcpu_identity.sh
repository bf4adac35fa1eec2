#!/bin/bash
# vcpu_identity: vCPU numbers without thread names. QEMU names its vCPU
# threads only with debug-threads=on, and other VMMs never do; vmload's
# --thread-names=off leaves them unnamed the same way. Exits must still be
# booked per vCPU index (learned in the kernel from struct kvm_vcpu), stat
# must show one row per vCPU, and `vms` must give each vCPU's thread id.
. "$(dirname "$0")/lib.sh"
require_kvm "vcpu_identity"
trap cleanup EXIT
NAME=vcpuid$$

# exits per vCPU and reason: vCPU 0 does 600 OUTs, vCPU 1 does 400 INs
"$KVMSCOPE" watch vm.exits -d vcpu,reason -P "{\"eq\": [\"vm\", \"$NAME\"]}" -j -n 9 \
	> "$TMPD/w.json" 2> "$TMPD/w.err" &
wp=$!; cleanup_pids+=($wp)
sleep 1.5
"$VMLOAD" --name "$NAME" --vcpus 2 --thread-names=off --delay 300 --linger 300 \
	--pio vcpu=0,count=600,rate=200 --pio vcpu=1,count=400,rate=200,dir=in \
	--truth "$TMPD/t.json" 2> "$TMPD/v.err" &
vp=$!; cleanup_pids+=($vp)
sleep 1
"$KVMSCOPE" stat -p "$vp" -j 1 2 > "$TMPD/s.json" 2> "$TMPD/s.err"
wait $vp
wait $wp
expect_eq "vmload completed" "$(jq -r .completed "$TMPD/t.json")" true
sum() { jq -s --arg k "$1" '[.[].value[$k] // 0] | add' "$TMPD/w.json"; }
for v in 0 1; do
	want=$(jq ".vcpus[$v].io_exits" "$TMPD/t.json")
	expect_eq "vCPU $v: IO exits booked to vcpu $v = vmload's" "$(sum "$v,IO")" "$want"
done
unknown=$(jq -s '[.[].value | keys[] | select(startswith("unknown"))] | length' "$TMPD/w.json")
expect_eq "no exit of the unnamed threads is vcpu unknown" "$unknown" 0
expect_eq "stat: one row per vCPU, numbered 0 and 1" \
	"$(jq -s -c '[.[].vcpus[].vcpu] | unique' "$TMPD/s.json")" "[0,1]"

# vms: the thread of each vCPU, from the vCPU fd it is in KVM_RUN on (both
# vCPUs halt in the kernel between interrupts, as an idle guest does)
"$VMLOAD" --name "$NAME" --vcpus 2 --thread-names=off --delay 300 \
	--hlt vcpu=0,count=40,rate=20 --hlt vcpu=1,count=40,rate=20 \
	--truth "$TMPD/t2.json" 2> "$TMPD/v2.err" &
vp=$!; cleanup_pids+=($vp)
sleep 1.2
"$KVMSCOPE" vms -j 2> "$TMPD/vms.err" | jq -c --arg n "$NAME" \
	'[.[] | select(.name == $n) | .vcpus[] | {index, tid}]' > "$TMPD/vms.json"
wait $vp
expect_eq "vms: each unnamed vCPU thread's tid = vmload's" \
	"$(cat "$TMPD/vms.json")" "$(jq -c '[.vcpus[] | {index, tid}]' "$TMPD/t2.json")"
tap_done
