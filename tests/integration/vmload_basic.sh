#!/bin/bash
# vmload_basic: vmload's truth JSON says exactly what was asked, it looks like
# a QEMU VM from outside (thread names, -name in argv, held fds), and the
# kernel's own kvm tracepoints count the same exits (each pio is a real exit).
# Covers the path this host takes (kvm_pio/kvm_mmio fire; kvm_exit does not).
. "$(dirname "$0")/lib.sh"
require_kvm "vmload_basic"
VMLOAD=${VMLOAD:-$PWD/build/bin/vmload}
if [ ! -x "$VMLOAD" ]; then not_ok "vmload binary missing at $VMLOAD (run make)"; tap_done; fi

LOOP=""
TAP=vmlb$$
cleanup_local() { [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null; cleanup; }
trap cleanup_local EXIT

wait_file() {	# wait_file PATH SECONDS
	local i
	for ((i = 0; i < $2 * 20; i++)); do [ -s "$1" ] && return 0; sleep 0.05; done
	return 1
}
j() { jq -r "$1" "$2"; }

# ---- 1. pio on two vCPUs, mmio, hlt; name, thread names, cmdline -------------
T=$TMPD/t1.json
"$VMLOAD" -name guest=vmlb-one --vcpus 2 --delay 400 --linger 1500 \
	--pio vcpu=0,count=20000 --pio vcpu=1,count=5000 \
	--mmio vcpu=1,count=3000 --hlt vcpu=0,count=400 --truth "$T" 2> "$TMPD/t1.err" &
pid=$!; cleanup_pids+=($pid)
sleep 0.2
names=$(cat /proc/$pid/task/*/comm 2>/dev/null | sort | tr '\n' ',')
case "$names" in *"CPU 0/KVM,CPU 1/KVM,"*) ok "vCPU threads are named like QEMU's ($names)" ;;
	*) not_ok "vCPU thread names: got '$names', want CPU 0/KVM and CPU 1/KVM" ;; esac
cmd=$(tr '\0' ' ' < /proc/$pid/cmdline)
case "$cmd" in *"-name guest=vmlb-one "*) ok "cmdline carries -name guest=vmlb-one" ;;
	*) not_ok "cmdline lacks -name guest=vmlb-one: $cmd" ;; esac
nvcpufd=$(ls -l /proc/$pid/fd 2>/dev/null | grep -c 'anon_inode:kvm-vcpu')
expect_eq "process holds one kvm-vcpu fd per vCPU" "$nvcpufd" 2
if wait_file "$T" 10; then ok "truth written"; else not_ok "no truth file after 10 s: $(cat "$TMPD/t1.err")"; fi
kill -0 $pid 2>/dev/null && ok "process lingers after writing the truth" || not_ok "process gone before --linger ended"
wait $pid; rc=$?
expect_eq "exit status" "$rc" 0
expect_eq "truth pid" "$(j .pid "$T")" "$pid"
expect_eq "truth name" "$(j .name "$T")" vmlb-one
expect_eq "completed" "$(j .completed "$T")" true
expect_eq "vCPU 0 pio" "$(j '.vcpus[0].pio' "$T")" 20000
expect_eq "vCPU 1 pio" "$(j '.vcpus[1].pio' "$T")" 5000
expect_eq "vCPU 1 mmio" "$(j '.vcpus[1].mmio' "$T")" 3000
expect_eq "vCPU 0 mmio" "$(j '.vcpus[0].mmio' "$T")" 0
expect_eq "vCPU 0 hlt (guest-counted)" "$(j '.vcpus[0].hlt' "$T")" 400
expect_eq "hlt wake-ups delivered" "$(j '[.irqs[] | select(.purpose=="hlt")][0].count' "$T")" 400
expect_eq "vCPU 0 irqs seen by the guest" "$(j '.vcpus[0].irq_vectors["0x40"]' "$T")" 400
expect_eq "vCPU 1 has no hlt" "$(j '.vcpus[1].hlt' "$T")" 0
tids=$(j '[.vcpus[].tid] | map(tostring) | join(",")' "$T")
[ "$(j '.vcpus[0].tid' "$T")" != "$(j '.vcpus[1].tid' "$T")" ] && ok "distinct vCPU tids ($tids)" || not_ok "vCPU tids not distinct: $tids"

# ---- 2. the kernel's tracepoints count the same exits, per vCPU thread -------
T=$TMPD/t2.json
if bpftrace --version >/dev/null 2>&1; then
	out=$(timeout 60 bpftrace -e '
tracepoint:kvm:kvm_pio /pid == cpid && args->port == 0x3f0/ { @pio[tid] = count(); }
tracepoint:kvm:kvm_mmio /pid == cpid && args->type == 2 && args->gpa == 0xd0000000/ { @mmio[tid] = count(); }' \
		-c "$VMLOAD --vcpus 2 --pio vcpu=0,count=20000 --pio vcpu=1,count=5000 --mmio vcpu=1,count=3000 --truth $T" 2>&1)
	if [ -s "$T" ]; then
		for v in 0 1; do
			tid=$(j ".vcpus[$v].tid" "$T")
			got=$(echo "$out" | awk -v t="$tid" -F'[][]' '/^@pio\[/ && $2 == t { split($0, a, ": "); print a[2] }')
			expect_eq "kvm:kvm_pio events of vCPU $v (tid $tid) = truth pio" "${got:-0}" "$(j ".vcpus[$v].pio" "$T")"
		done
		tid=$(j '.vcpus[1].tid' "$T")
		got=$(echo "$out" | awk -v t="$tid" -F'[][]' '/^@mmio\[/ && $2 == t { split($0, a, ": "); print a[2] }')
		expect_eq "kvm:kvm_mmio writes of vCPU 1 = truth mmio" "${got:-0}" "$(j '.vcpus[1].mmio' "$T")"
	else
		not_ok "bpftrace run produced no truth: $out"
	fi
else
	skip "bpftrace is not installed: tracepoint cross-check not run"
fi

# ---- 3. interrupts at a wall-clock phase, via pic, ioapic and msi ------------
T=$TMPD/t3.json
start=$(date +%s%N)
"$VMLOAD" --name vmlb-irq --vcpus 2 \
	--irq vcpu=0,vector=0x31,via=pic,period_ms=200,phase_ms=50,count=4 \
	--irq vcpu=1,vector=0x52,via=ioapic,period_ms=200,phase_ms=100,count=4 \
	--irq vcpu=1,vector=0x63,via=msi,period_ms=200,phase_ms=150,count=4 --truth "$T" 2> "$TMPD/t3.err"
expect_eq "irq run exit status" "$?" 0
for i in 0 1 2; do
	via=$(j ".irqs[$i].via" "$T"); vec=$(j ".irqs[$i].vector" "$T"); v=$(j ".irqs[$i].vcpu" "$T")
	expect_eq "irq $vec via $via delivered" "$(j ".irqs[$i].count" "$T")" 4
	expect_eq "irq $vec via $via handled by the guest on vCPU $v" "$(j ".vcpus[$v].irq_vectors[\"$vec\"]" "$T")" 4
	phase=$(j ".irqs[$i].phase_ms" "$T")
	# delivery time within 20 ms after the requested phase of each 200 ms period
	bad=$(j "[.irqs[$i].subsecond_ms[] | select(((. - $phase + 1000) % 200) >= 20)] | length" "$T")
	expect_eq "irq $vec via $via lands at phase $phase ms (subsecond: $(j ".irqs[$i].subsecond_ms | map(tostring) | join(\",\")" "$T"))" "$bad" 0
done
expect_eq "name given by --name" "$(j .name "$T")" vmlb-irq

# ---- 4. CR3 switching between two roots -----------------------------------------
T=$TMPD/t4.json
"$VMLOAD" --cr3 vcpu=0,weights=4:1,unit=500,duration=1 --truth "$T" 2> "$TMPD/t4.err"
expect_eq "cr3 run exit status" "$?" 0
expect_eq "cr3 roots" "$(j '.cr3.roots | length' "$T")" 2
[ "$(j '.cr3.roots[0]' "$T")" != "$(j '.cr3.roots[1]' "$T")" ] && ok "cr3 roots differ ($(j '.cr3.roots | join(",")' "$T"))" || not_ok "cr3 roots are equal"
expect_eq "cr3 weights" "$(j '.cr3.weights | map(tostring) | join(":")' "$T")" 4:1
expect_eq "cr3 spin iterations" "$(j '.cr3.spin_iterations | map(tostring) | join(":")' "$T")" 2000:500
sw=$(j '.cr3.switches' "$T")
[ "$sw" -gt 10 ] && ok "cr3 switched $sw times in 1 s" || not_ok "cr3 switched only $sw times"
expect_eq "switches = sum over roots" "$(j '.cr3.root_switches | add' "$T")" "$sw"
expect_eq "vCPU 0 cr3_switches = cr3.switches" "$(j '.vcpus[0].cr3_switches' "$T")" "$sw"

# ---- 5. disk on a loop device --------------------------------------------------
T=$TMPD/t5.json
truncate -s 8M "$TMPD/disk.img"
if LOOP=$(losetup -f --show "$TMPD/disk.img" 2>/dev/null); then
	"$VMLOAD" --linger 800 --disk file=$LOOP,reads=40,writes=20,size=4096,offset=65536 \
		--disk file=$LOOP,reads=10,writes=0,size=512,pattern=rand,span=1048576,offset=2097152 \
		--truth "$T" 2> "$TMPD/t5.err" &
	pid=$!; cleanup_pids+=($pid)
	wait_file "$T" 10
	ls -l /proc/$pid/fd 2>/dev/null | grep -q " -> $LOOP\$" && ok "disk fd held open ($LOOP)" || not_ok "vmload does not hold $LOOP open"
	wait $pid
	expect_eq "disk run exit status" "$?" 0
	expect_eq "disk path" "$(j .disk.path "$T")" "$LOOP"
	expect_eq "disk reads" "$(j .disk.reads "$T")" 40
	expect_eq "disk writes" "$(j .disk.writes "$T")" 20
	expect_eq "disk read bytes" "$(j .disk.read_bytes "$T")" $((40 * 4096))
	expect_eq "disk write bytes" "$(j .disk.write_bytes "$T")" $((20 * 4096))
	expect_eq "disk min offset" "$(j .disk.min_offset "$T")" 65536
	expect_eq "disk max offset" "$(j .disk.max_offset "$T")" $((65536 + 39 * 4096))
	expect_eq "written data is on the device (op 19 stamp at its offset)" \
		"$(dd if=$LOOP bs=4096 skip=$((65536 / 4096 + 19)) count=1 iflag=direct 2>/dev/null | od -An -tu8 -N8 | tr -d ' ')" 19
	expect_eq "rand disk reads" "$(j '.disks[1].reads' "$T")" 10
	bad=$(j '[.disks[1].read_offsets[] | select(. < 2097152 or . >= 3145728 or (. % 512) != 0)] | length' "$T")
	expect_eq "rand offsets are 512-aligned inside [2 MiB, 3 MiB)" "$bad" 0
else
	skip "losetup failed: no loop devices on this host, disk workload not run"
fi

# ---- 6. NIC on a tap -----------------------------------------------------------
T=$TMPD/t6.json
"$VMLOAD" --linger 800 --duration 10 --nic tap=$TAP,tx=20,size=200,rx=5 --truth "$T" 2> "$TMPD/t6.err" &
pid=$!; cleanup_pids+=($pid)
for ((i = 0; i < 100; i++)); do [ -e /sys/class/net/$TAP ] && break; sleep 0.05; done
"$VMLOAD" --inject tap=$TAP,count=5,size=100 > "$TMPD/inject.out" 2>&1 || not_ok "inject: $(cat "$TMPD/inject.out")"
wait_file "$T" 10
host_rx=$(cat /sys/class/net/$TAP/statistics/rx_packets 2>/dev/null)
host_tx=$(cat /sys/class/net/$TAP/statistics/tx_packets 2>/dev/null)
wait $pid
expect_eq "nic run exit status" "$?" 0
expect_eq "nic tap" "$(j .nic.tap "$T")" "$TAP"
expect_eq "nic tx packets" "$(j .nic.tx_packets "$T")" 20
expect_eq "nic tx bytes" "$(j .nic.tx_bytes "$T")" 4000
expect_eq "nic rx packets" "$(j .nic.rx_packets "$T")" 5
expect_eq "nic rx bytes" "$(j .nic.rx_bytes "$T")" 500
expect_eq "host sees guest tx on the tap's rx counter" "$host_rx" "$(j .nic.tx_packets "$T")"
expect_eq "host tap tx counter = guest rx" "$host_tx" "$(j .nic.rx_packets "$T")"

# ---- 7. rate, duration cap, errors ----------------------------------------------
T=$TMPD/t7.json
t0=$(date +%s%N)
"$VMLOAD" --pio vcpu=0,count=50,rate=200 --truth "$T" 2>/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "rated pio count" "$(j '.vcpus[0].pio' "$T")" 50
[ $ms -ge 240 ] && ok "50 pio at 200/s took $ms ms (>= 240: op 49 is due at 245 ms)" || not_ok "50 pio at 200/s took only $ms ms"
"$VMLOAD" --pio vcpu=0,count=100000000 --duration 0.3 --truth "$T" 2>/dev/null
expect_eq "duration cap: completed" "$(j .completed "$T")" false
p=$(j '.vcpus[0].pio' "$T")
[ "$p" -gt 0 ] && [ "$p" -lt 100000000 ] && ok "duration cap: partial pio reported ($p)" || not_ok "duration cap: pio $p"

err=$("$VMLOAD" --pio vcpu=0 2>&1); rc=$?
expect_eq "missing key exits 2" "$rc" 2
case "$err" in *"--pio"*"missing key 'count'"*"vcpu=V,count=N"*) ok "missing key named: $err" ;; *) not_ok "missing key message: $err" ;; esac
err=$("$VMLOAD" --irq vcpu=0,vector=0x31,via=pic,period_ms=10,count=1,bogus=3 2>&1)
case "$err" in *"unknown key 'bogus'"*) ok "unknown key named" ;; *) not_ok "unknown key message: $err" ;; esac
err=$("$VMLOAD" --vcpus 1 --pio vcpu=3,count=1 2>&1)
case "$err" in *"vcpu=3"*"--vcpus is 1"*) ok "out-of-range vCPU named" ;; *) not_ok "vcpu range message: $err" ;; esac
err=$("$VMLOAD" --frobnicate 2>&1)
case "$err" in *"unknown option '--frobnicate'"*) ok "unknown option named" ;; *) not_ok "unknown option message: $err" ;; esac
err=$(unshare -m sh -c "mount -t tmpfs none /dev && $VMLOAD --pio vcpu=0,count=1" 2>&1)
case "$err" in *"/dev/kvm does not exist"*) ok "no /dev/kvm explained" ;; *) not_ok "no /dev/kvm message: $err" ;; esac
help=$("$VMLOAD" --help)
missing=""
for o in --vcpus -name --duration --delay --linger --truth --inject --pio --mmio --hlt --irq --cr3 --disk --nic; do
	grep -q -- "$o " <<< "$help" || missing="$missing $o"
done
expect_eq "--help documents every option" "${missing:-none}" none

tap_done
