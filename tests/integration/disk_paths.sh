#!/bin/bash
# vm.disk_ops / vm.disk_bytes on every way a VMM does disk I/O, against
# vmload's truth. For each I/O mode of vmload's --disk (io=sync, aio, uring,
# uring-wq: forced into iou-wrk workers; cache=direct or buffered), one
# vmload guest with three disks:
#   an image file on ext4, a loop device (blk-mq), a zram device (bio-based)
# and N reads + M writes of S bytes at known offsets on each. kvmscope must
# count the VMM's operations exactly once, whatever lies below (page cache
# readahead, the loop worker, bios): ops per optype and bytes equal the
# truth, every op lands in the size bucket of S and the offset histogram
# equals the one of the truth's offsets; the source the collector names for
# each disk is the mode's (syscall, aio, io_uring). Then the same devices
# named by a VM that never opens them (a kernel back end): counted at their
# requests (loop: rq) or bios (zram: bio).
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
BUILD=${BUILD:-$PWD/build}
VMLOAD=${VMLOAD:-$BUILD/bin/vmload}

require_kvm "disk I/O paths"
if [ ! -x "$VMLOAD" ]; then not_ok "vmload is not built ($VMLOAD): run make"; tap_done; fi
if [ ! -f "$BUILD/libkvmscope.a" ]; then not_ok "$BUILD/libkvmscope.a is not built: run make"; tap_done; fi
DRIVER=$TMPD/disknic_driver
if ! ${CC:-cc} ${SANITIZE_FLAGS:-} -std=gnu11 -D_GNU_SOURCE -Isrc -I"$BUILD" -I"$BUILD/bpf" -Ibpf \
	tests/integration/disknic_driver.c "$BUILD/libkvmscope.a" \
	-lbpf -lelf -lz -ljansson -lmicrohttpd -lspng -lpthread -lm -o "$DRIVER" 2> "$TMPD/cc.err"; then
	not_ok "building disknic_driver: $(head -3 "$TMPD/cc.err")"; tap_done
fi

# io cache source-the-collector-names
MODES="sync,direct,syscall aio,direct,aio uring,direct,io_uring uring-wq,direct,io_uring
sync,buffered,syscall aio,buffered,aio uring,buffered,io_uring"
N=7 M=5 S=4096 O=1028096	# reads, writes, size, first offset (the ops span two offset buckets)
TAG=dp$$

IMG=$TMPD/image.raw
truncate -s 16M "$TMPD/loop.img" "$IMG"
if ! LOOP=$(losetup -f --show "$TMPD/loop.img" 2>"$TMPD/losetup.err"); then
	skip "no loop device: $(cat "$TMPD/losetup.err")"; tap_done
fi
ZRAM_ID=
[ -e /sys/class/zram-control/hot_add ] || modprobe zram 2>/dev/null
if [ -e /sys/class/zram-control/hot_add ] && ZRAM_ID=$(cat /sys/class/zram-control/hot_add 2>/dev/null) &&
	echo 64M > /sys/block/zram$ZRAM_ID/disksize; then
	ZRAM=/dev/zram$ZRAM_ID
else
	not_ok "zram: no device could be added (zram module or /sys/class/zram-control missing)"
	ZRAM=
fi
keep_logs() {
	local f
	mkdir -p tests/artifacts
	for f in "$TMPD"/*.out "$TMPD"/*.err "$TMPD"/truth.*.json "$TMPD"/rec.jsonl; do
		[ -f "$f" ] && cp "$f" "tests/artifacts/disk_paths.$(basename "$f")"
	done
}
release_devices() {
	losetup -d "$LOOP" 2>/dev/null
	[ -n "$ZRAM_ID" ] && echo "$ZRAM_ID" > /sys/class/zram-control/hot_remove 2>/dev/null
}
trap 'keep_logs; cleanup; release_devices' EXIT

# llquantize lower bound, as engine/bucket.h computes it (base 10, 20 steps)
llq() {	# VALUE LO_MAG HI_MAG
	local v=$1 pow=1 m
	for ((m = 0; m < $2; m++)); do pow=$((pow * 10)); done
	((v < pow)) && { echo 0; return; }
	for ((m = $2; m < $3; m++)); do
		if ((v < pow * 10)); then
			local step=$((pow * 10 / 20)); ((step < 1)) && step=1
			echo $((pow + (v - pow) / step * step)); return
		fi
		pow=$((pow * 10))
	done
	echo $pow
}

nmodes=$(echo $MODES | wc -w)
"$DRIVER" $((nmodes * 5 + 10)) > "$TMPD/rec.jsonl" 2> "$TMPD/driver.err" &
DPID=$!
cleanup_pids+=("$DPID")
for _ in $(seq 100); do grep -q ready "$TMPD/driver.err" && break; kill -0 $DPID 2>/dev/null || break; sleep 0.1; done
if ! grep -q ready "$TMPD/driver.err"; then
	not_ok "collectors did not start: $(head -3 "$TMPD/driver.err")"; tap_done
fi

# one guest per mode, one after the other on the same three backing stores;
# --delay lets the collector see the new VM's fds (it rescans once a second)
for mode in $MODES; do
	IFS=, read -r io cache _ <<< "$mode"
	disks=()
	for d in "$IMG" "$LOOP" $ZRAM; do
		disks+=(--disk "file=$d,reads=$N,writes=$M,size=$S,offset=$O,pattern=seq,io=$io,cache=$cache")
	done
	"$VMLOAD" -name guest=$TAG-$io-$cache --vcpus 1 --delay 2200 --linger 1500 --duration 20 \
		"${disks[@]}" --truth "$TMPD/truth.$io-$cache.json" > "$TMPD/vmload.$io-$cache.out" 2>&1
	expect_eq "$io,$cache: vmload exit status" "$?" 0
done
# A kernel back end: the VM names block devices it never opens (vhost-scsi,
# LIO and the like do the I/O in the kernel). The stand-in is a process that
# holds a real kvm-vm fd, names the loop and zram devices on its command line
# and opens neither; dd does the real I/O, one 4 KiB bio / request each.
# kvmscope counts such a device at its requests (loop: rq) or, where it has
# none, at its bios (zram: bio).
BK=$TAG-backend
python3 -c 'import fcntl, os, sys, time
kvm = os.open("/dev/kvm", os.O_RDWR)
vm = fcntl.ioctl(kvm, 0xAE01, 0)	# KVM_CREATE_VM: the fd makes this a VM
time.sleep(float(sys.argv[1]))' 5 --name $BK --disk path=$LOOP ${ZRAM:+--disk path=$ZRAM} &
BPID=$!
cleanup_pids+=("$BPID")
sleep 2.2	# the collector's rescan
for d in "$LOOP" $ZRAM; do
	dd if=/dev/zero of="$d" bs=$S count=$M seek=$((O / S)) oflag=direct conv=notrunc status=none
	dd if="$d" of=/dev/null bs=$S count=$N skip=$((O / S)) iflag=direct status=none
done
wait $BPID
wait $DPID
expect_eq "driver exit status" "$?" 0

R=$TMPD/rec.jsonl
total() {	# VM FILTER: sum of values over the VM's records matching FILTER
	jq -s "map(select(.vm == \"$1\" and ($2)) | .value) | add // 0" "$R"
}
# the collector's last source line: "counting: VM:DISK=SRC[+SRC]; ... | how"
SOURCES=$(jq -r 'select(has("source_disk")) | .source_disk | sub(" [|] .*"; "")' "$R")
for mode in $MODES; do
	IFS=, read -r io cache src <<< "$mode"
	vm=$TAG-$io-$cache
	T=$TMPD/truth.$io-$cache.json
	[ -s "$T" ] || { not_ok "$io,$cache: no truth written"; continue; }
	i=0
	for d in "$IMG" "$LOOP" $ZRAM; do
		kind=$([ "$d" = "$IMG" ] && echo file || { [ "$d" = "$LOOP" ] && echo loop || echo zram; })
		what="$io,$cache on $kind"
		sel="(.disk == \"$d\")"
		tr=".disks[$i]"
		expect_eq "$what: truth says $N reads and $M writes" \
			"$(jq -r "$tr | \"\(.reads) \(.writes) \(.errors)\"" "$T")" "$N $M 0"
		expect_eq "$what: reads" \
			"$(total "$vm" ".metric == \"vm.disk_ops\" and $sel and .optype == \"read\"")" \
			"$(jq "$tr.reads" "$T")"
		expect_eq "$what: writes" \
			"$(total "$vm" ".metric == \"vm.disk_ops\" and $sel and .optype == \"write\"")" \
			"$(jq "$tr.writes" "$T")"
		expect_eq "$what: no other ops, all errno 0" \
			"$(total "$vm" ".metric == \"vm.disk_ops\" and $sel and .errno == \"0\"")/$(total "$vm" ".metric == \"vm.disk_ops\" and $sel")" \
			"$((N + M))/$((N + M))"
		expect_eq "$what: read bytes" \
			"$(total "$vm" ".metric == \"vm.disk_bytes\" and $sel and .optype == \"read\"")" \
			"$(jq "$tr.read_bytes" "$T")"
		expect_eq "$what: write bytes" \
			"$(total "$vm" ".metric == \"vm.disk_bytes\" and $sel and .optype == \"write\"")" \
			"$(jq "$tr.write_bytes" "$T")"
		ops="map(select(.metric == \"vm.disk_ops\" and .vm == \"$vm\" and $sel))"
		expect_eq "$what: sizes: all in the bucket of $S" \
			"$(jq -s -c "$ops | group_by(.size) | map([.[0].size, (map(.value) | add)])" "$R")" \
			"[[$(llq $S 0 9),$((N + M))]]"
		want=$(for off in $(jq -r "$tr | (.read_offsets + .write_offsets)[]" "$T"); do llq "$off" 3 13; done |
			sort -n | uniq -c | awk '{ if (NR > 1) printf ","; printf "[%s,%s]", $2, $1 }')
		expect_eq "$what: offset histogram = the truth's offsets, bucketed" \
			"$(jq -s -c "$ops | group_by(.offset) | map([.[0].offset, (map(.value) | add)])" "$R")" "[$want]"
		lat=$(jq -s "$ops | map(.latency) | min // 0" "$R")
		check "$what: latency > 0 (smallest bucket $lat ns)" [ "$lat" -gt 0 ]
		expect_eq "$what: counted by" \
			"$(echo "$SOURCES" | sed 's/; /\n/g' | sed -n "s|^\(counting: \)\?$vm:$d=||p")" "$src"
		i=$((i + 1))
	done
done
for d in "$LOOP" $ZRAM; do
	src=$([ "$d" = "$LOOP" ] && echo rq || echo bio)
	sel="(.disk == \"$d\")"
	what="kernel back end on $d"
	expect_eq "$what: reads/writes" \
		"$(total "$BK" ".metric == \"vm.disk_ops\" and $sel and .optype == \"read\"")/$(total "$BK" ".metric == \"vm.disk_ops\" and $sel and .optype == \"write\"")" "$N/$M"
	expect_eq "$what: no other ops" "$(total "$BK" ".metric == \"vm.disk_ops\" and $sel")" $((N + M))
	expect_eq "$what: bytes" "$(total "$BK" ".metric == \"vm.disk_bytes\" and $sel")" $(((N + M) * S))
	ops="map(select(.metric == \"vm.disk_ops\" and .vm == \"$BK\" and $sel))"
	expect_eq "$what: lowest offset bucket holds $O" "$(jq -s "$ops | map(.offset) | min" "$R")" "$(llq $O 3 13)"
	expect_eq "$what: counted by" \
		"$(echo "$SOURCES" | sed 's/; /\n/g' | sed -n "s|^\(counting: \)\?$BK:$d=||p")" "$src"
done
expect_eq "no events dropped in the kernel" "$(jq -s 'map(select(has("drops"))) | .[0].drops' "$R")" 0
tap_done
