#!/bin/bash
# pio_in_exits: port IN exits on this host's fallback path (kvm_pio for an IN
# fires only when the read completes, after re-entry). vmload does INs on one
# port and OUTs on another; watch vm.exits by reason and latency must count
# exactly vmload's exits (each booked once), and every one must have a latency.
. "$(dirname "$0")/lib.sh"
require_kvm "pio_in_exits"
VMLOAD=${VMLOAD:-$PWD/build/bin/vmload}
trap cleanup EXIT
NAME=pioin$$
"$KVMSCOPE" watch vm.exits -d reason,latency -P "{\"eq\": [\"vm\", \"$NAME\"]}" -j -n 8 \
	> "$TMPD/w.json" 2> "$TMPD/w.err" &
wp=$!; cleanup_pids+=($wp)
sleep 1.5
"$VMLOAD" --name "$NAME" --vcpus 1 --thread-names=off --delay 300 --linger 300 \
	--pio vcpu=0,count=300,rate=200,dir=in --pio vcpu=0,count=200,rate=200,port=0x3f2 \
	--truth "$TMPD/t.json" 2> "$TMPD/v.err"
expect_eq "vmload completed" "$(jq -r .completed "$TMPD/t.json")" true
wait $wp
want=$(jq '[.vcpus[].io_exits] | add' "$TMPD/t.json")
expect_eq "vmload's truth: 500 port exits" "$want" 500
# every IO exit in a latency bucket: the IO count summed over latency buckets
got=$(jq -s '[.[].value.IO // [] | .[][1]] | add // 0' "$TMPD/w.json")
expect_eq "IO exits with a latency = vmload's IN+OUT exits" "$got" "$want"
tap_done
