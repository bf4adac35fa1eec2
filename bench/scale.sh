#!/bin/bash
# Scale: NVMS vmload VMs at once (default 32, tiny workloads: VM i makes
# 100 + 7*i port writes at 50/s). Measures discovery refresh cost
# (`kvmscope vms -j`, hyperfine) with all of them up, and attribution:
# `kvmscope watch vm.exits -d vm,reason -j` totals per VM against each
# vmload's own count of its port-write exits (reason IO; the guest's other
# exits, its final halt and an in-kernel MMIO at start, vmload does not
# count: they are reported apart).
# Usage: bench/scale.sh [BUILD_DIR]   (env: NVMS)
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=scale
. "$(dirname "$0")/lib.sh"
NVMS=${NVMS:-32}
need_root_kvm
need_cmd jq hyperfine

"$KVMSCOPE" watch vm.exits -d vm,reason -j >"$TMPD/watch" 2>"$TMPD/watch.err" &
W=$!
bench_pids+=("$W")
wait_progs "$W" 7 || die "kvmscope watch did not attach: $(cat "$TMPD/watch.err")"
sleep 1.1

vm_pids=()
for ((i = 0; i < NVMS; i++)); do
	n=$((100 + 7 * i))
	# --delay: discovery sees every VM before its first exit; --linger: the
	# names still resolve when the last second is drained
	"$VMLOAD" -name guest=bench-scale-$i --delay 4000 --linger 4000 --duration 60 \
		--pio vcpu=0,count=$n,rate=50 --truth "$TMPD/truth.$i" >/dev/null 2>&1 &
	vm_pids+=($!)
	bench_pids+=($!)
done
sleep 2
listed=$("$KVMSCOPE" vms -j 2>/dev/null | jq '[.[] | select(.name | startswith("bench-scale-"))] | length')
say "$NVMS vmload VMs started, kvmscope vms lists $listed of them"
[ "$listed" = "$NVMS" ] || die "kvmscope vms lists $listed of the $NVMS VMs"
hyperfine -N -w 2 -r 20 --export-json "$TMPD/hf.json" "$KVMSCOPE vms -j" >"$TMPD/hf.out" 2>&1 ||
	die "hyperfine failed: $(tail -3 "$TMPD/hf.out")"
vms_ms=$(jq '.results[0].median * 1000' "$TMPD/hf.json")
vms_sys=$(jq '(.results[0].user + .results[0].system) * 1000' "$TMPD/hf.json")
nproc_all=$(ls /proc | grep -c '^[0-9]')

failed=0
for p in "${vm_pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" = 0 ] || die "$failed vmload runs failed"
sleep 2.5	# the last second drained
kill -INT "$W"
wait "$W" 2>/dev/null

# per-VM totals seen by kvmscope vs the truth (port-write exits)
jq -s '[.[].value | to_entries[]] | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries' \
	"$TMPD/watch" >"$TMPD/seen.json"
exact=0 worst=0 lines= other=0
for ((i = 0; i < NVMS; i++)); do
	want=$(jq '[.vcpus[].io_exits] | add' "$TMPD/truth.$i")
	got=$(jq --arg k "bench-scale-$i,IO" '.[$k] // 0' "$TMPD/seen.json")
	o=$(jq --arg k "bench-scale-$i," '[to_entries[] | select((.key | startswith($k)) and (.key | endswith(",IO") | not)) | .value] | add // 0' "$TMPD/seen.json")
	other=$((other + o))
	d=$((got - want))
	[ "$d" = 0 ] && exact=$((exact + 1))
	[ "${d#-}" -gt "$worst" ] && worst=${d#-}
	lines+="bench-scale-$i want=$want got=$got (+$o other); "
done
unattributed=$(jq '[to_entries[] | select(.key | startswith("bench-scale-") | not) | .value] | add // 0' "$TMPD/seen.json")
say "per VM: ${lines% }"

result "scale: VMs at once" "$NVMS" "VMs" "all listed by kvmscope vms"
result "discovery refresh (kvmscope vms -j)" "$(fmt %.1f "$vms_ms")" "ms" "hyperfine median of 20, $NVMS VMs among $nproc_all processes; $(fmt %.1f "$vms_sys") ms CPU"
result "attribution: VMs exact" "$exact/$NVMS" "VMs" "watch -d vm,reason: NAME,IO == vmload's port-write count; largest difference $worst"
result "attribution: other exits of bench VMs" "$other" "exits" "HLT and MMIO, $(fmt %.2f "$(calc "$other / $NVMS")") per VM (vmload does not count them)"
result "exits not attributed to a bench VM" "$unattributed" "exits" "other VMs on this shared host"
[ "$exact" = "$NVMS" ] || { echo "bench: attribution wrong for $((NVMS - exact)) VMs" >&2; exit 1; }
