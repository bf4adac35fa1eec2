#!/bin/bash
# kvmscope watch on real guests: vm.exits and vm.irqs against vmload's truth,
# predicates, subsecond offsets, and nothing attached before/after.
. "$(dirname "$0")/lib.sh"
require_kvm "kvmscope watch vm.exits/vm.irqs"

# BPF programs and links held by the given processes (their fds)
progs_of() {
	local n=0 p
	for p in "$@"; do
		n=$((n + $(ls -l "/proc/$p/fd" 2>/dev/null | grep -cE 'anon_inode:bpf-prog|anon_inode:bpf_link' || true)))
	done
	echo $n
}

W=$TMPD/w
mkdir -p "$W"
watch() {	# watch NAME SECONDS ARGS...
	local name=$1 secs=$2; shift 2
	"$KVMSCOPE" watch "$@" -j -n "$secs" > "$W/$name.json" 2> "$W/$name.err" &
	cleanup_pids+=($!)
}
watch exits_class 8 vm.exits -d vm,vcpu,class
watch exits_reason_lat 8 vm.exits -d reason,latency -P '{"or": [{"eq": ["vm", "wa"]}, {"eq": ["vm", "wb"]}]}'
watch exits_pred_a 8 vm.exits -P '{"eq": ["vm", "wa"]}'
watch exits_pred_and 8 vm.exits -d vcpu -P '{"and": [{"eq": ["vm", "wa"]}, {"eq": ["class", "iox"]}]}'
watch exits_pred_or 8 vm.exits -d vm -P '{"or": [{"eq": ["vm", "wa"]}, {"eq": ["vm", "wb"]}]}'
watch exits_pred_lat 8 vm.exits -d class -P '{"and": [{"eq": ["class", "iox"]}, {"ge": ["latency", 1000]}, {"ne": ["vm", "nosuchvm"]}, {"or": [{"eq": ["vm", "wa"]}, {"eq": ["vm", "wb"]}]}]}'
watch irqs_sub 12 vm.irqs -d vm,vcpu,vector,source,subsecond
sleep 2
n=$(progs_of "${cleanup_pids[@]}")
check "watch processes hold BPF programs while instrumenting ($n)" test "$n" -gt 0

"$VMLOAD" -name guest=wa --vcpus 2 --delay 800 --linger 2500 \
	--pio vcpu=0,count=12000 --pio vcpu=1,count=3000 --mmio vcpu=1,count=200 --hlt vcpu=0,count=5 \
	> "$TMPD/wa.json" &
A=$!
"$VMLOAD" -name guest=wb --delay 800 --linger 2500 --pio vcpu=0,count=4000 \
	--irq vcpu=0,vector=0x31,via=ioapic,period_ms=1000,phase_ms=250,count=8 \
	--irq vcpu=0,vector=0x2b,via=pic,period_ms=1000,phase_ms=600,count=3 \
	> "$TMPD/wb.json" &
B=$!
wait $A $B
wait 2>/dev/null
no_logged_errors "$W"/*.err


truth() { jq --argjson v "$2" --arg f "$3" '.vcpus[] | select(.index == $v) | .[$f]' "$1"; }

expect_eq "exits wa,0,iox = pio" "$(watch_total "$W/exits_class.json" wa,0,iox)" "$(truth "$TMPD/wa.json" 0 io_exits)"
expect_eq "exits wa,1,iox = pio" "$(watch_total "$W/exits_class.json" wa,1,iox)" "$(truth "$TMPD/wa.json" 1 io_exits)"
expect_eq "exits wb,0,iox = pio" "$(watch_total "$W/exits_class.json" wb,0,iox)" "$(truth "$TMPD/wb.json" 0 io_exits)"
want=$(( $(truth "$TMPD/wa.json" 1 mmio_exits) + 1 + $(truth "$TMPD/wa.json" 1 irqs) ))
expect_eq "exits wa,1,mmiox = MMIO + in-kernel LAPIC writes" "$(watch_total "$W/exits_class.json" wa,1,mmiox)" "$want"
want=$(( $(truth "$TMPD/wa.json" 0 hlt) + $(truth "$TMPD/wa.json" 0 idle_hlt) ))
expect_eq "exits wa,0,haltx = guest HLTs" "$(watch_total "$W/exits_class.json" wa,0,haltx)" "$want"

# reason x latency: IO exits all have a latency (they go to the VMM), > 0
io_lat=$(jq -s '[.[].value.IO // [] | .[] | .[1]] | add' "$W/exits_reason_lat.json")
want=$(( $(jq '[.vcpus[].io_exits] | add' "$TMPD/wa.json") + $(jq '[.vcpus[].io_exits] | add' "$TMPD/wb.json") ))
expect_eq "latency distribution of IO exits counts every IO exit" "$io_lat" "$want"
lo=$(jq -s '[.[].value.IO // [] | .[] | .[0][0]] | min' "$W/exits_reason_lat.json")
check "IO exit latencies are > 0 (lowest bucket starts at $lo ns)" test "$lo" -gt 0

# predicates
all_a=$(jq -s '[.[].value] | add' "$W/exits_pred_a.json")
want_a=$(jq -s '[.[].value | to_entries[] | select(.key | startswith("wa,")) | .value] | add' "$W/exits_class.json")
expect_eq 'eq vm "wa": exactly wa'"'"'s exits' "$all_a" "$want_a"
and0=$(watch_total "$W/exits_pred_and.json" 0); and1=$(watch_total "$W/exits_pred_and.json" 1)
expect_eq "and(vm=wa, class=iox) vCPU 0" "$and0" "$(truth "$TMPD/wa.json" 0 io_exits)"
expect_eq "and(vm=wa, class=iox) vCPU 1" "$and1" "$(truth "$TMPD/wa.json" 1 io_exits)"
or_keys=$(jq -r -s '[.[].value | keys[]] | unique | join(",")' "$W/exits_pred_or.json")
expect_eq "or(vm=wa, vm=wb) keys" "$or_keys" "wa,wb"
lat_io=$(watch_total "$W/exits_pred_lat.json" iox)
check "numeric predicate latency >= 1000 ns keeps IO exits ($lat_io of $want)" test "$lat_io" -gt 0 -a "$lat_io" -le "$want"

# irqs: vector, source, vCPU as programmed, subsecond in [250, 260)
key="wb,0,0x31,ioapic"
n_irq=$(jq -s --arg k "$key" '[.[].value[$k] // [] | .[] | .[1]] | add // 0' "$W/irqs_sub.json")
want=$(jq '[.irqs[] | select(.vector == "0x31") | .count] | add' "$TMPD/wb.json")
expect_eq "irqs $key count = vmload's" "$n_irq" "$want"
in250=$(jq -s --arg k "$key" '[.[].value[$k] // [] | .[] | select(.[0][0] == 250) | .[1]] | add // 0' "$W/irqs_sub.json")
check "irqs at +250 ms: $in250 of $n_irq in [250,260) (>= 95%)" test $((in250 * 100)) -ge $((n_irq * 95))
# and exactly where vmload says it raised each one
got=$(jq -s -c --arg k "$key" '[.[].value[$k] // [] | .[] | [.[0][0], .[1]]] | group_by(.[0]) | map([.[0][0], (map(.[1]) | add)])' "$W/irqs_sub.json")
want=$(jq -c '[.irqs[] | select(.vector == "0x31") | .subsecond_ms[] | . - . % 10] | group_by(.) | map([.[0], length])' "$TMPD/wb.json")
expect_eq "irqs subsecond buckets = vmload's send times" "$got" "$want"
# the hlt wake-ups of wa are MSIs to vCPU 0
msi=$(jq -s '[.[].value | to_entries[] | select(.key | startswith("wa,0,0x40,msi")) | .value[] | .[1]] | add // 0' "$W/irqs_sub.json")
expect_eq "wa's HLT wake-ups: MSI vector 0x40 to vCPU 0" "$msi" "$(truth "$TMPD/wa.json" 0 irqs)"

# PIC interrupts: the vector is the PIC's base (read from the kernel's PIC
# state) plus the pin; no tracepoint carries it
n_pic=$(jq -s '[.[].value["wb,0,0x2b,pic"] // [] | .[] | .[1]] | add // 0' "$W/irqs_sub.json")
expect_eq "PIC interrupts: vector 0x2b, source pic, vCPU 0" "$n_pic" 3

# JSON lines have the documented shape
n=$(jq -s '[.[] | select((.time | type) == "number" and has("value"))] | length' "$W/exits_class.json")
expect_eq "8 lines of {time, value}" "$n" 8
expect_eq "no BPF programs left by the finished watch processes" "$(progs_of "${cleanup_pids[@]}")" 0

# errors: precise, exit 2, nothing attached
"$KVMSCOPE" watch vm.nope -n 1 2> "$W/e1"; rc=$?
expect_eq "unknown metric: exit 2" "$rc" 2
check "unknown metric named" grep -q "unknown metric 'vm.nope'" "$W/e1"
"$KVMSCOPE" watch vm.exits -d bogus -n 1 2> "$W/e2"; rc=$?
expect_eq "unknown field: exit 2" "$rc" 2
check "unknown field named ($(head -1 "$W/e2"))" grep -q bogus "$W/e2"
"$KVMSCOPE" watch vm.exits -P '{"lt": ["vm", 3]}' -n 1 2> "$W/e3"; rc=$?
expect_eq "discrete field in lt: exit 2" "$rc" 2
check "lt on a discrete field explained ($(head -1 "$W/e3"))" grep -q 'vm' "$W/e3"
"$KVMSCOPE" watch vm.exits -P '{"eq": ["vm"' -n 1 2> "$W/e4"; rc=$?
expect_eq "broken predicate JSON: exit 2" "$rc" 2
"$KVMSCOPE" watch --list > "$W/list.txt"
check "--list shows every metric" grep -q '^vm\.' "$W/list.txt"
expect_eq "--list metrics" "$(grep -c '^vm\.' "$W/list.txt")" 7
tap_done
