#!/bin/bash
# kvmscope vms -j on real QEMU processes: name (-name NAME and -name
# guest=NAME), pid, vCPUs (index and thread), disks (raw and qcow2 images on
# IDE), taps, uuid from -uuid and vmid from -pidfile .../qemu-server/N.pid.
# The truth is what the test gave QEMU and what /proc shows of its threads
# and fds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "vms on QEMU"
require_qemu "vms on QEMU"
command -v qemu-img >/dev/null || { skip "vms on QEMU: qemu-img is not installed (make deps)"; tap_done; }

A=qda$$ B=qdb$$ TAP=kqt$$ VMID=$((900000 + $$ % 90000))
UUID=$(cat /proc/sys/kernel/random/uuid)
qemu_guest idle.asm "$TMPD/idle.img"
truncate -s 1M "$TMPD/a.raw"
qemu-img create -q -f qcow2 "$TMPD/b.qcow2" 1M
ip tuntap add dev "$TAP" mode tap || { not_ok "ip tuntap add $TAP"; tap_done; }
cleanup_tap() { ip link del "$TAP" 2>/dev/null; qemu_cleanup; }
trap cleanup_tap EXIT
mkdir -p "$TMPD/qemu-server"

qemu_bg "$A" -name "$A,debug-threads=on" -smp 2 -uuid "$UUID" -kernel "$TMPD/idle.img" \
	-drive "file=$TMPD/a.raw,format=raw,if=ide" \
	-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device ne2k_isa,netdev=n0
PA=$REPLY
qemu_bg "$B" -name "guest=$B" -smp 3 -kernel "$TMPD/idle.img" \
	-drive "file=$TMPD/b.qcow2,format=qcow2,if=ide" -pidfile "$TMPD/qemu-server/$VMID.pid"
PB=$REPLY
# up once every vCPU fd is open
for i in $(seq 100); do
	na=$(ls -l /proc/$PA/fd 2>/dev/null | grep -c 'kvm-vcpu:')
	nb=$(ls -l /proc/$PB/fd 2>/dev/null | grep -c 'kvm-vcpu:')
	[ "$na" = 2 ] && [ "$nb" = 3 ] && break
	sleep 0.2
done
"$KVMSCOPE" vms -j > "$TMPD/vms.json" 2> "$TMPD/vms.err"
check "vms -j exits 0 and prints a JSON array" jq -e 'type == "array"' "$TMPD/vms.json"

# vcpu_truth PID: "index" per vCPU fd, sorted
vcpu_truth() { ls -l /proc/$1/fd | sed -n 's/.*kvm-vcpu:\([0-9]*\).*/\1/p' | sort -n | tr '\n' ' '; }
for v in A B; do
	n=${!v}; p=PA; [ $v = B ] && p=PB; pid=${!p}
	jq ".[] | select(.pid == $pid)" "$TMPD/vms.json" > "$TMPD/$v.json"
	expect_eq "$n: listed once by pid" "$(jq -s length "$TMPD/$v.json")" 1
	expect_eq "$n: name" "$(jq -r .name "$TMPD/$v.json")" "$n"
	expect_eq "$n: vCPU indexes = the process's kvm-vcpu fds" \
		"$(jq -r '.vcpus[].index' "$TMPD/$v.json" | sort -n | tr '\n' ' ')" "$(vcpu_truth $pid)"
done
# with debug-threads=on the vCPU threads are named "CPU N/KVM": the tids are known
want=$(for t in /proc/$PA/task/*; do c=$(cat $t/comm); case $c in "CPU "*/KVM) echo "${c#CPU }" | sed "s|/KVM|:${t##*/}|";; esac; done | sort -n | tr '\n' ' ')
expect_eq "$A: vCPU index:tid = the CPU N/KVM threads" \
	"$(jq -r '.vcpus[] | "\(.index):\(.tid)"' "$TMPD/A.json" | sort -n | tr '\n' ' ')" "$want"
expect_eq "$A: uuid from -uuid" "$(jq -r .uuid "$TMPD/A.json")" "$UUID"
expect_eq "$A: no vmid (no qemu-server pidfile)" "$(jq -r .vmid "$TMPD/A.json")" null
expect_eq "$B: vmid from -pidfile .../qemu-server/$VMID.pid" "$(jq -r .vmid "$TMPD/B.json")" "$VMID"
expect_eq "$B: no uuid (no -uuid)" "$(jq -r .uuid "$TMPD/B.json")" null
ino=$(stat -c %i "$TMPD/a.raw")
expect_eq "$A: raw IDE disk: path, file, inode" \
	"$(jq -r --arg p "$TMPD/a.raw" '.disks[] | select(.path == $p) | "\(.type) \(.ino)"' "$TMPD/A.json")" "file $ino"
ino=$(stat -c %i "$TMPD/b.qcow2")
expect_eq "$B: qcow2 IDE disk: path, file, inode" \
	"$(jq -r --arg p "$TMPD/b.qcow2" '.disks[] | select(.path == $p) | "\(.type) \(.ino)"' "$TMPD/B.json")" "file $ino"
expect_eq "$A: disks = the one image" "$(jq '.disks | length' "$TMPD/A.json")" 1
expect_eq "$B: disks = the one image" "$(jq '.disks | length' "$TMPD/B.json")" 1
expect_eq "$A: tap $TAP" "$(jq -r '[.nics[].ifname] | join(" ")' "$TMPD/A.json")" "$TAP"
expect_eq "$B: no NIC (-nic none)" "$(jq '.nics | length' "$TMPD/B.json")" 0
tap_done
