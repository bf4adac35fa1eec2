#!/bin/bash
# vm.disk_ops and vm.disk_bytes on real QEMU IDE disks, one QEMU per backend:
# raw image files with aio=threads and aio=io_uring, and a loop device with
# cache=writeback (the page cache's readahead must not be what is counted).
# The guest does READS one-sector PIO reads and WRITES one-sector writes; the
# truth is the guest's counts, checked against QEMU's own
# ide_sector_read/ide_sector_write trace events.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "vm.disk_ops on QEMU"
require_qemu "vm.disk_ops on QEMU"
command -v qemu-img >/dev/null || { skip "vm.disk_ops on QEMU: qemu-img is not installed (make deps)"; tap_done; }

READS=24 WRITES=16
qemu_guest ide.asm "$TMPD/ide.img" -DREADS=$READS -DWRITES=$WRITES
truncate -s 1M "$TMPD/threads.raw" "$TMPD/native.raw" "$TMPD/uring.raw" "$TMPD/loop.raw"
qemu-img create -q -f qcow2 "$TMPD/q.qcow2" 1M
LOOP=$(losetup -f --show "$TMPD/loop.raw") || { not_ok "losetup"; tap_done; }
ZRAM=
modprobe zram 2>/dev/null  # built in on some kernels: then modprobe fails and zram is there
if [ -e /sys/class/zram-control/hot_add ]; then
	z=$(cat /sys/class/zram-control/hot_add) && echo 1M > /sys/block/zram$z/disksize && ZRAM=$z
fi
cleanup_disks() {
	losetup -d "$LOOP" 2>/dev/null
	[ -n "$ZRAM" ] && { echo 1 > /sys/block/zram$ZRAM/reset; echo $ZRAM > /sys/class/zram-control/hot_remove; } 2>/dev/null
	qemu_cleanup
}
trap cleanup_disks EXIT

T=qk$$
# vm.disk_ops counts the VMM's own operations on the disk's backing. Here each
# guest sector operation is exactly one QEMU operation, so the guest's counts
# are the truth. Where QEMU does other operations than the guest asked for,
# the guest's counts are not the truth and these cases are not here: a qcow2
# image (metadata writes; reads of unallocated clusters do no I/O) and
# O_DIRECT on a 4 KiB-sector backing (a file on this ext4, zram: each
# 512-byte write is a 4 KiB read-modify-write). Their truth must come from
# QEMU's host-side events (file_paio_submit, luring_co_submit).
cases=(
	"${T}thr file=$TMPD/threads.raw,format=raw,aio=threads"
	"${T}uri file=$TMPD/uring.raw,format=raw,aio=io_uring"
	"${T}lwb file=$LOOP,format=raw,cache=writeback,aio=threads"
)

"$KVMSCOPE" watch vm.disk_ops -d vm,optype -j -n 120 > "$TMPD/ops.json" 2> "$TMPD/ops.err" &
W1=$!; cleanup_pids+=("$W1")
"$KVMSCOPE" watch vm.disk_bytes -d vm,optype -j -n 120 > "$TMPD/bytes.json" 2> "$TMPD/bytes.err" &
W2=$!; cleanup_pids+=("$W2")
wait_counting "$TMPD/ops.json" "$TMPD/bytes.json"
QEMU_TRACE="ide_sector_read ide_sector_write"
ran=()
for c in "${cases[@]}"; do
	n=${c%% *} d=${c#* }
	# the geometry is given: otherwise QEMU reads sector 0 of its own to guess
	# it while the drive is set up, an op kvmscope counts or not depending
	# on whether it has found the VM's disk yet
	qemu_run "$n" "" -name "$n,debug-threads=on" -kernel "$TMPD/ide.img" -drive "$d,if=none,id=d0" \
		-device ide-hd,drive=d0,bus=ide.0,unit=0,cyls=2,heads=16,secs=63 && ran+=("$c")
done
sleep 2; kill -INT $W1 $W2 2>/dev/null; wait $W1 $W2

total() { jq -s --arg k "$2" '[.[].value[$k] // 0] | add' "$1"; }
for c in "${ran[@]}"; do
	n=${c%% *} d=${c#* }
	r=$(grep -c '^ide_sector_read' "$TMPD/$n.trace") w=$(grep -c '^ide_sector_write' "$TMPD/$n.trace")
	expect_eq "truth $n: QEMU ide_sector_read = the guest's reads" "$r" $READS
	expect_eq "truth $n: QEMU ide_sector_write = the guest's writes" "$w" $WRITES
	expect_eq "$n ($d): vm.disk_ops read" "$(total "$TMPD/ops.json" "$n,read")" $READS
	expect_eq "$n ($d): vm.disk_ops write" "$(total "$TMPD/ops.json" "$n,write")" $WRITES
	expect_eq "$n: vm.disk_bytes read" "$(total "$TMPD/bytes.json" "$n,read")" $((READS * 512))
	expect_eq "$n: vm.disk_bytes write" "$(total "$TMPD/bytes.json" "$n,write")" $((WRITES * 512))
	other=$(jq -s --arg p "$n," '[.[].value | to_entries[] | select((.key | startswith($p)) and .key != ($p + "read") and .key != ($p + "write")) | .value] | add // 0' "$TMPD/ops.json")
	expect_eq "$n: no other disk ops" "$other" 0
done
for f in "$TMPD"/ops.err "$TMPD"/bytes.err; do
	grep -q 'level=error' "$f" && not_ok "$(basename "$f"): $(grep level=error "$f" | head -2)"
done
tap_done
