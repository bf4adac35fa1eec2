#!/bin/bash
# Recordings of the metrics record_replay.sh does not cover: a vmload guest's
# NIC traffic (frames it sends through its tap, frames injected into it) and
# its vCPU samples while it switches CR3 between two page-table roots 80:20.
# `kvmscope report` over the recording must give vmload's truth: every frame
# and byte in each direction, and the roots' 80:20 share.
. "$(dirname "$0")/lib.sh"
require_kvm "recording NIC and samples"

K=6 L=300 J=4			# frames sent by the guest, their size, frames injected
NAME=rns$$
TAP=kvrns$$
REC=$TMPD/rec.kvr
T=$TMPD/truth.json
trap '[ $TAP_FAILED = 0 ] || cp "$TMPD"/*.err "$TMPD"/*.out tests/artifacts/ 2>/dev/null; cleanup' EXIT

"$KVMSCOPE" record -o "$REC" -m vm.nic_bytes,vm.nic_packets,vm.samples --duration 20 \
	> "$TMPD/record.out" 2> "$TMPD/record.err" &
RPID=$!
cleanup_pids+=($RPID)
for _ in $(seq 100); do [ -s "$REC" ] && [ "$(stat -c %s "$REC")" -gt 16 ] && break; sleep 0.1; done
check "the recorder writes its first chunk" test -s "$REC"

# --delay: the collectors see the new tap and vCPU before the guest works;
# --linger: the tap stays for the NIC collector's last sample.
"$VMLOAD" -name guest=$NAME --vcpus 1 --delay 2500 --linger 3000 --duration 30 \
	--nic tap=$TAP,tx=$K,size=$L,rx=$J \
	--cr3 vcpu=0,weights=80:20,unit=25,duration=8 \
	--truth "$T" > "$TMPD/vmload.out" 2> "$TMPD/vmload.err" &
VPID=$!
cleanup_pids+=($VPID)
for _ in $(seq 100); do [ -e /sys/class/net/$TAP ] && break; sleep 0.05; done
sleep 2	# past the NIC collector's baseline sample of the new tap
"$VMLOAD" --inject tap=$TAP,count=$J,size=$L > "$TMPD/inject.out" 2>&1 ||
	not_ok "vmload --inject: $(head -2 "$TMPD/inject.out")"
wait $VPID
expect_eq "vmload exit status" "$?" 0
wait $RPID
expect_eq "record exit status" "$?" 0
expect_eq "vmload completed its workloads" "$(jq -r .completed "$T" 2>/dev/null)" true
no_logged_errors "$TMPD/record.err"

P="{\"eq\": [\"vm\", \"$NAME\"]}"
# rep METRIC FIELDS JQ_KEY: report -j summed over every second, for key JQ_KEY
rep() {
	"$KVMSCOPE" report "$REC" "$1" -d "$2" -P "$P" -j 2> "$TMPD/report.err" |
		jq -s --arg k "$3" '[.[].value[$k] // 0] | add // 0'
}
expect_eq "report: packets the guest sent" "$(rep vm.nic_packets vm,direction "$NAME,sent")" $K
expect_eq "report: bytes the guest sent" "$(rep vm.nic_bytes vm,direction "$NAME,sent")" $((K * L))
expect_eq "report: packets the guest received" "$(rep vm.nic_packets vm,direction "$NAME,received")" $J
expect_eq "report: bytes the guest received" "$(rep vm.nic_bytes vm,direction "$NAME,received")" $((J * L))
expect_eq "report: the tap is named in the recording" \
	"$(rep vm.nic_packets nic "$TAP")" $((K + J))

ROOT_A=$(jq -r '.cr3.roots[0]' "$T")
ROOT_B=$(jq -r '.cr3.roots[1]' "$T")
na=$(rep vm.samples mmuctx "$ROOT_A")
nb=$(rep vm.samples mmuctx "$ROOT_B")
total=$("$KVMSCOPE" report "$REC" vm.samples -P "$P" -j 2>/dev/null | jq -s '[.[].value // 0] | add // 0')
check "samples of $NAME recorded ($total)" test "${total:-0}" -gt 300
if [ $((na + nb)) -lt $((total / 2)) ]; then
	skip "guest CR3 unavailable for most samples on this host (VMX with EPT?): no share check"
else
	share=$(awk -v a="$na" -v b="$nb" 'BEGIN { printf "%.1f", 100 * a / (a + b) }')
	check "report: root $ROOT_A holds $share% of the samples ($na vs $nb), want 80 +- 5" \
		awk -v s="$share" 'BEGIN { exit !(s >= 75 && s <= 85) }'
fi
tap_done
