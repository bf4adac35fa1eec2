#!/bin/bash
# vm.disk_ops and vm.disk_bytes on real QEMU IDE disks, one QEMU per backend
# and I/O mode: raw image files with aio=threads, io_uring and native, a
# qcow2 image, a loop device (512-byte sectors) buffered and cache=none,
# threads and native, and zram (bio-based, 4 KiB sectors) buffered and
# cache=none. The guest does READS one-sector PIO reads and WRITES one-sector
# writes (checked against QEMU's own ide_sector_read/ide_sector_write).
# kvmscope counts the VMM's operations on the disk's backing. Two truths:
#  - guest: where each guest sector op is one QEMU op (buffered, or
#    O_DIRECT on 512-byte sectors), the guest's counts;
#  - host: QEMU's syscalls on that fd, from strace (ptrace, not BPF):
#    host_disk_ops.py. This is the only truth for qcow2 (metadata writes,
#    flushes; reads of unallocated clusters do no I/O) and for O_DIRECT on
#    4 KiB alignment (a file on this ext4, where QEMU falls back to 4 KiB;
#    zram): each 512-byte write is a 4 KiB read-modify-write. strace cannot
#    see io_uring's SQEs, so the io_uring case has the guest's truth only.
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
# NAME TRUTH DRIVE: TRUTH is guest, host or guest+host
cases=(
	"${T}thr guest+host file=$TMPD/threads.raw,format=raw,aio=threads"
	"${T}uri guest file=$TMPD/uring.raw,format=raw,aio=io_uring"
	"${T}fnn host file=$TMPD/native.raw,format=raw,cache=none,aio=native"
	"${T}qcw host file=$TMPD/q.qcow2,format=qcow2,aio=threads"
	"${T}lwb guest+host file=$LOOP,format=raw,cache=writeback,aio=threads"
	"${T}lnn guest+host file=$LOOP,format=raw,cache=none,aio=threads"
	"${T}lna guest+host file=$LOOP,format=raw,cache=none,aio=native"
)
if [ -n "$ZRAM" ]; then
	cases+=("${T}zwb guest+host file=/dev/zram$ZRAM,format=raw,cache=writeback,aio=threads"
		"${T}znn host file=/dev/zram$ZRAM,format=raw,cache=none,aio=threads")
else
	skip "zram cases: no zram on this kernel (modprobe zram failed, no /sys/class/zram-control)"
fi

"$KVMSCOPE" watch vm.disk_ops -d vm,optype -j -n 300 > "$TMPD/ops.json" 2> "$TMPD/ops.err" &
W1=$!; cleanup_pids+=("$W1")
"$KVMSCOPE" watch vm.disk_bytes -d vm,optype -j -n 300 > "$TMPD/bytes.json" 2> "$TMPD/bytes.err" &
W2=$!; cleanup_pids+=("$W2")
wait_counting "$TMPD/ops.json" "$TMPD/bytes.json"
QEMU_TRACE="ide_sector_read ide_sector_write"
ran=()
for c in "${cases[@]}"; do
	read -r n truth d <<< "$c"
	QEMU_WRAP=()
	[ "$truth" = guest ] || QEMU_WRAP=(strace -f --seccomp-bpf -qq -e signal=none -o "$TMPD/$n.strace"
		-e trace=openat,pread64,pwrite64,preadv,pwritev,preadv2,pwritev2,io_submit,fdatasync,fsync,fallocate)
	# the geometry is given: otherwise QEMU reads sector 0 of its own to guess
	# it while the drive is set up, an op kvmscope counts or not depending
	# on whether it has found the VM's disk yet
	qemu_run "$n" "" -name "$n,debug-threads=on" -kernel "$TMPD/ide.img" -drive "$d,if=none,id=d0" \
		-device ide-hd,drive=d0,bus=ide.0,unit=0,cyls=2,heads=16,secs=63 && ran+=("$c")
done
QEMU_WRAP=()
sleep 2; kill -INT $W1 $W2 2>/dev/null; wait $W1 $W2

for c in "${ran[@]}"; do
	read -r n truth d <<< "$c"
	r=$(grep -c '^ide_sector_read' "$TMPD/$n.trace") w=$(grep -c '^ide_sector_write' "$TMPD/$n.trace")
	expect_eq "truth $n: QEMU ide_sector_read = the guest's reads" "$r" $READS
	expect_eq "truth $n: QEMU ide_sector_write = the guest's writes" "$w" $WRITES
	ops() { watch_total "$TMPD/ops.json" "$n,$1"; }
	bytes() { watch_total "$TMPD/bytes.json" "$n,$1"; }
	case $truth in *guest*)
		expect_eq "$n ($d): vm.disk_ops read = the guest's" "$(ops read)" $READS
		expect_eq "$n: vm.disk_ops write = the guest's" "$(ops write)" $WRITES
		expect_eq "$n: vm.disk_bytes read = the guest's" "$(bytes read)" $((READS * 512))
		expect_eq "$n: vm.disk_bytes write = the guest's" "$(bytes write)" $((WRITES * 512))
		other=$(jq -s --arg p "$n," '[.[].value | to_entries[] | select((.key | startswith($p)) and .key != ($p + "read") and .key != ($p + "write")) | .value] | add // 0' "$TMPD/ops.json")
		expect_eq "$n: no other disk ops" "$other" 0
	esac
	case $truth in *host*)
		path=${d#file=}; path=${path%%,*}
		h=$(python3 "$_root/tests/integration/host_disk_ops.py" "$TMPD/$n.strace" "$path") ||
			{ not_ok "$n: host truth: $h"; continue; }
		for op in read write flush discard; do
			expect_eq "$n ($d): vm.disk_ops $op = QEMU's host ops" "$(ops $op)" "$(jq ".$op[0]" <<< "$h")"
			[ $op = flush ] || expect_eq "$n: vm.disk_bytes $op = QEMU's host bytes" "$(bytes $op)" "$(jq ".$op[1]" <<< "$h")"
		done
		echo "# $n host ops (count, bytes): $h"
	esac
done
no_logged_errors "$TMPD"/ops.err "$TMPD"/bytes.err
tap_done
