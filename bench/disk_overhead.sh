#!/bin/bash
# The disk collector's own kernel time per guest disk operation, on each I/O
# path a VMM uses, side by side in one run.
#
# One `kvmscope watch vm.disk_ops -d optype,latency -j` stays attached with
# kernel.bpf_stats_enabled=1 while vmload guests do COUNT 4 KiB operations
# (half writes, half reads) on an image file, one guest per mode:
#   sync      pread/pwrite, O_DIRECT         (source: syscall)
#   aio       io_submit PREADV/PWRITEV       (source: aio)
#   uring     io_uring READV/WRITEV          (source: io_uring)
#   uring-wq  the same in iou-wrk workers    (source: io_uring)
#   buffered  pread/pwrite without O_DIRECT  (source: syscall)
# then the same on a loop device (O_DIRECT). For each mode: run_time_ns and
# run_cnt of every disk program (bpftool), summed, divided by the guest's
# operations. The programs also run for other processes' events on the same
# tracepoints (every pread on the host, every bio): that is counted too, as
# it is part of what the collector costs; the per-program lines show it.
# Usage: bench/disk_overhead.sh [BUILD_DIR]   (env: COUNT)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=disk_overhead
. "$(dirname "$0")/lib.sh"
COUNT=${COUNT:-20000}
need_root_kvm
need_cmd bpftool jq losetup

IMG=$TMPD/disk.img
truncate -s 64M "$IMG" "$TMPD/loop.img"
LOOP=$(losetup -f --show "$TMPD/loop.img") || bench_skip "no loop device"
trap 'losetup -d "$LOOP" 2>/dev/null; bench_cleanup' EXIT

"$KVMSCOPE" watch vm.disk_ops -d optype,latency -j >"$TMPD/watch.out" 2>"$TMPD/watch.err" &
KS_PID=$!
bench_pids+=("$KS_PID")
wait_progs "$KS_PID" 20 || die "kvmscope watch did not attach: $(cat "$TMPD/watch.err")"
mapfile -t ks_ids < <(prog_ids_of "$KS_PID")
bpf_stats_on

say "disk collector: ${#ks_ids[@]} BPF programs; $COUNT ops of 4 KiB per mode"
printf '# %-22s %10s %12s %10s  %s\n' "mode" "guest ops" "BPF ns" "ns/op" "programs that ran (events, ns/event)"
for target in file loop; do
	dev=$([ $target = file ] && echo "$IMG" || echo "$LOOP")
	for mode in sync,direct aio,direct uring,direct uring-wq,direct sync,buffered; do
		IFS=, read -r io cache <<<"$mode"
		[ $target = loop ] && [ "$cache" = buffered ] && continue
		prog_stats "${ks_ids[@]}" >"$TMPD/before"
		# --delay: the collector rescans for new VMs' fds once a second
		"$VMLOAD" -name guest=diskbench$$ --vcpus 1 --delay 1500 --duration 300 \
			--disk "file=$dev,reads=$((COUNT / 2)),writes=$((COUNT / 2)),size=4096,pattern=rand,span=33554432,io=$io,cache=$cache" \
			--truth "$TMPD/truth.json" >"$TMPD/vmload.out" 2>&1 ||
			die "vmload ($mode on $target) failed: $(tail -3 "$TMPD/vmload.out")"
		sleep 1.2	# the last second drained
		prog_stats "${ks_ids[@]}" >"$TMPD/after"
		ops=$(jq '.disks[0].reads + .disks[0].writes' "$TMPD/truth.json")
		read -r ns detail < <(awk 'NR == FNR { cnt[$1] = $3; t0[$1] = $4; next }
			{ n = $3 - cnt[$1]; t = $4 - t0[$1]; if (n > 0) { sum += t; d = d sprintf(" %s %d %.0f;", $2, n, t / n) } }
			END { printf "%d%s\n", sum, d }' "$TMPD/before" "$TMPD/after")
		per=$(calc "$ns / $ops")
		printf '# %-22s %10d %12d %10.1f  %s\n' "$io,$cache on $target" "$ops" "$ns" "$per" "$detail"
		result "disk BPF time per op, $io,$cache, $target" "$(fmt '%.0f' "$per")" "ns/op" "$ops guest ops"
	done
done
bpf_stats_off
kill "$KS_PID" 2>/dev/null
wait "$KS_PID" 2>/dev/null
