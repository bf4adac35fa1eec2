#!/bin/bash
# vm.irqs for interrupts raised by KVM's irqfd worker: an irqfd on an IOAPIC
# pin is injected by irqfd_inject() in a kworker (a GSI cannot be injected
# from the eventfd wake-up), so the raising thread belongs to no VM.
# kvmscope must book each one to the VM of the irqfd's struct kvm, with the
# IOAPIC's vector and destination. tests/integration/irqfd_driver.c checks
# every signal reached the LAPIC, so its count is exact.
# Path covered: the irqchip tracepoints (this host fires no kvm_inj_virq).
. "$(dirname "$0")/lib.sh"
require_kvm "vm.irqs from the irqfd worker"
DRIVER=$TMPD/irqfd_driver
if ! ${CC:-cc} ${SANITIZE_FLAGS:-} -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$_root/vmload" \
	"$_root/tests/integration/irqfd_driver.c" "$_root/vmload/vm.c" -o "$DRIVER" 2> "$TMPD/cc.err"; then
	not_ok "building irqfd_driver: $(head -3 "$TMPD/cc.err")"; tap_done
fi
if ! grep -qw irqfd_inject /proc/kallsyms; then
	skip "irqfd_inject is not in /proc/kallsyms: the irqfd worker cannot be recognised here"; tap_done
fi

N=40
"$KVMSCOPE" watch vm.irqs -d vm,vcpu,vector,source -j -n 5 > "$TMPD/w.json" 2> "$TMPD/w.err" &
cleanup_pids+=($!)
W=$!
wait_counting "$TMPD/w.json"
"$DRIVER" --name irqfd$$ $N > "$TMPD/truth.json" 2> "$TMPD/driver.err"
rc=$?
expect_eq "irqfd_driver exit status $(head -1 "$TMPD/driver.err")" "$rc" 0
wait $W
grep -q level=error "$TMPD/w.err" && not_ok "watch logged errors: $(grep level=error "$TMPD/w.err" | head -2)"

P=$(jq .pid "$TMPD/truth.json")
RAISED=$(jq .raised "$TMPD/truth.json")
expect_eq "every irqfd signal reached the LAPIC" "$RAISED" $N
# the driver's vCPU thread is not named like a VMM's: the VM is pid:<pid>
vm_total() { jq -s --arg v "$1," '[.[].value | to_entries[] | select(.key | startswith($v)) | .value] | add // 0' "$TMPD/w.json"; }
expect_eq "booked to the VM (pid:$P), vCPU 0, vector 0x41, source ioapic" \
	"$(jq -s --arg k "pid:$P,0,0x41,ioapic" '[.[].value[$k] // 0] | add' "$TMPD/w.json")" "$RAISED"
expect_eq "nothing else booked to the VM" "$(vm_total "pid:$P")" "$RAISED"
# the kworkers that ran irqfd_inject: no interrupts of theirs
kw=$(jq -s -r '[.[].value | keys[]] | unique | .[]' "$TMPD/w.json" | cut -d, -f1 | sort -u | sed -n 's/^pid://p' |
	while read -r p; do case "$(cat /proc/$p/comm 2>/dev/null)" in kworker*) echo "$p";; esac; done | wc -l)
expect_eq "no interrupts booked to a kworker" "$kw" 0
tap_done
