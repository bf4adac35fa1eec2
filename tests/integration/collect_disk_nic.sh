#!/bin/bash
# vm.disk_ops, vm.disk_bytes, vm.nic_bytes and vm.nic_packets end to end on a
# vmload guest with two disks and a tap:
#   disk 0: a loop device   -> the VMM's pread/pwrite on its fd (it holds it open)
#   disk 1: an image file   -> the VMM's pread/pwrite syscall path
# N reads and M writes of S bytes at known offsets on each, K frames of L bytes
# sent by the guest and J injected to it. The collectors are driven by
# tests/integration/disknic_driver.c (start, drain each second, stop) and the
# sums over all seconds must match exactly.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
BUILD=${BUILD:-$PWD/build}
VMLOAD=${VMLOAD:-$BUILD/bin/vmload}

require_kvm "disk/nic collectors"
if [ ! -x "$VMLOAD" ]; then not_ok "vmload is not built ($VMLOAD): run make"; tap_done; fi
if [ ! -f "$BUILD/libkvmscope.a" ]; then not_ok "$BUILD/libkvmscope.a is not built: run make"; tap_done; fi
DRIVER=$TMPD/disknic_driver
if ! ${CC:-cc} ${SANITIZE_FLAGS:-} -std=gnu11 -D_GNU_SOURCE -Isrc -I"$BUILD" -I"$BUILD/bpf" -Ibpf \
	tests/integration/disknic_driver.c "$BUILD/libkvmscope.a" \
	-lbpf -lelf -lz -ljansson -lmicrohttpd -lspng -lpthread -lm -o "$DRIVER" 2> "$TMPD/cc.err"; then
	not_ok "building disknic_driver: $(head -3 "$TMPD/cc.err")"; tap_done
fi

N=6 M=4 S=8192 O=491520	# disk: reads, writes, size, first offset (the ops span two offset buckets)
K=5 L=200 J=3			# nic: frames sent by the guest, their size, frames received
NAME=disknic$$
TAP=kvsdn$$
IMG=$TMPD/image.raw
truncate -s 16M "$TMPD/loop.img" "$IMG"
if ! LOOP=$(losetup -f --show "$TMPD/loop.img" 2>"$TMPD/losetup.err"); then
	skip "no loop device: $(cat "$TMPD/losetup.err")"; tap_done
fi
keep_logs() {	# what vmload, the driver and the records said, for a failed run
	local f
	for f in "$TMPD"/*.out "$TMPD"/*.err "$TMPD"/truth.json "$TMPD"/rec.jsonl; do
		[ -f "$f" ] && cp "$f" "tests/artifacts/collect_disk_nic.$(basename "$f")"
	done
}
trap 'keep_logs; cleanup; losetup -d "$LOOP" 2>/dev/null' EXIT

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

"$DRIVER" 14 > "$TMPD/rec.jsonl" 2> "$TMPD/driver.err" &
DPID=$!
cleanup_pids+=("$DPID")
for _ in $(seq 100); do grep -q ready "$TMPD/driver.err" && break; kill -0 $DPID 2>/dev/null || break; sleep 0.1; done
if ! grep -q ready "$TMPD/driver.err"; then
	not_ok "collectors did not start: $(head -3 "$TMPD/driver.err")"; tap_done
fi

# --delay lets the collectors see the new disks and tap (they rescan once a
# second) before the guest moves a byte; --linger keeps the tap for the last
# samples after the workload.
"$VMLOAD" -name guest=$NAME --vcpus 1 --delay 2500 --linger 2500 --duration 20 \
	--disk file=$LOOP,reads=$N,writes=$M,size=$S,offset=$O,pattern=seq \
	--disk file=$IMG,reads=$N,writes=$M,size=$S,offset=$O,pattern=seq \
	--nic tap=$TAP,tx=$K,size=$L,rx=$J \
	--truth "$TMPD/truth.json" > "$TMPD/vmload.out" 2>&1 &
VPID=$!
cleanup_pids+=("$VPID")
for _ in $(seq 100); do [ -e /sys/class/net/$TAP ] && break; sleep 0.05; done
sleep 2	# past the NIC collector's baseline sample of the new tap
"$VMLOAD" --inject tap=$TAP,count=$J,size=$L > "$TMPD/inject.out" 2>&1 ||
	not_ok "vmload --inject: $(head -2 "$TMPD/inject.out")"
wait $VPID
expect_eq "vmload exit status" "$?" 0
wait $DPID
expect_eq "driver exit status" "$?" 0
if [ -s "$TMPD/truth.json" ]; then
	expect_eq "vmload completed its workloads" "$(jq -r .completed "$TMPD/truth.json")" true
fi

R=$TMPD/rec.jsonl
# sum VALUE over records matching a jq filter
total() { jq -s "map(select(.vm == \"$NAME\" and ($1)) | .value) | add // 0" "$R"; }

for disk in "$LOOP" "$IMG"; do
	d="(.disk == \"$disk\")"
	path=$([ "$disk" = "$LOOP" ] && echo block || echo syscall)
	expect_eq "$path: reads on $disk" "$(total ".metric == \"vm.disk_ops\" and $d and .optype == \"read\"")" $N
	expect_eq "$path: writes on $disk" "$(total ".metric == \"vm.disk_ops\" and $d and .optype == \"write\"")" $M
	expect_eq "$path: no other ops on $disk" "$(total ".metric == \"vm.disk_ops\" and $d")" $((N + M))
	expect_eq "$path: all ops succeeded (errno 0)" \
		"$(total ".metric == \"vm.disk_ops\" and $d and .errno == \"0\"")" $((N + M))
	expect_eq "$path: bytes = (N+M)*S" "$(total ".metric == \"vm.disk_bytes\" and $d")" $(((N + M) * S))
	expect_eq "$path: read bytes" "$(total ".metric == \"vm.disk_bytes\" and $d and .optype == \"read\"")" $((N * S))
	ops="map(select(.metric == \"vm.disk_ops\" and .vm == \"$NAME\" and $d))"
	expect_eq "$path: every size in the bucket of $S" \
		"$(jq -s "$ops | map(.size) | unique | map(tostring) | join(\",\")" -r "$R")" "$(llq $S 0 9)"
	maxn=$((N > M ? N : M))
	expect_eq "$path: lowest offset bucket holds $O" "$(jq -s "$ops | map(.offset) | min" "$R")" "$(llq $O 3 13)"
	expect_eq "$path: highest offset bucket holds the last op" \
		"$(jq -s "$ops | map(.offset) | max" "$R")" "$(llq $((O + (maxn - 1) * S)) 3 13)"
	lat=$(jq -s "$ops | map(.latency) | min // 0" "$R")
	check "$path: latency > 0 (smallest bucket $lat ns)" [ "$lat" -gt 0 ]
	sub=$(jq -s "$ops | map(.subsecond) | max // -1" "$R")
	check "$path: subsecond within the second ($sub ms)" [ "$sub" -ge 0 -a "$sub" -lt 1000 ]
done

n="(.nic == \"$TAP\")"
expect_eq "nic: packets sent by the guest" "$(total ".metric == \"vm.nic_packets\" and $n and .direction == \"sent\"")" $K
expect_eq "nic: bytes sent by the guest" "$(total ".metric == \"vm.nic_bytes\" and $n and .direction == \"sent\"")" $((K * L))
expect_eq "nic: packets received by the guest" \
	"$(total ".metric == \"vm.nic_packets\" and $n and .direction == \"received\"")" $J
expect_eq "nic: bytes received by the guest" \
	"$(total ".metric == \"vm.nic_bytes\" and $n and .direction == \"received\"")" $((J * L))
expect_eq "no events dropped in the kernel" "$(jq -s 'map(select(has("drops"))) | .[0].drops' "$R")" 0
tap_done
