#!/bin/bash
# VM identities operators use besides the name: QEMU's -uuid (libvirt,
# OpenStack) and Proxmox's VMID, as discrete fields of every metric, in
# decompositions and predicates, on real vmload guests against their truth.
. "$(dirname "$0")/lib.sh"
require_kvm "uuid/vmid fields"

UUID=0f8fad5b-d9cb-469f-a165-70867728950e
W=$TMPD/w
mkdir -p "$W"
watch() {	# watch NAME SECONDS ARGS...
	local name=$1 secs=$2; shift 2
	"$KVMSCOPE" watch "$@" -j -n "$secs" > "$W/$name.json" 2> "$W/$name.err" &
	cleanup_pids+=($!)
}
# only this test's guests, whatever else runs on the host
OURS='{"or": [{"eq": ["vm", "idvm"]}, {"eq": ["vm", "plainvm"]}]}'
watch by_uuid 7 vm.exits -d uuid,vmid -P "$OURS"
watch by_vm 7 vm.exits -d vm -P "$OURS"
watch by_vmid_pred 7 vm.exits -d vm -P '{"eq": ["vmid", "105"]}'
watch by_uuid_pred 7 vm.exits -P "{\"eq\": [\"uuid\", \"$UUID\"]}"
sleep 2
# one guest as libvirt/Proxmox start them (uppercase UUID: reported lowercase),
# one with neither
"$VMLOAD" -name guest=idvm -uuid "${UUID^^}" -id 105 --delay 800 --linger 2000 \
	--pio vcpu=0,count=3000 > "$TMPD/a.json" &
A=$!
"$VMLOAD" -name guest=plainvm --delay 800 --linger 2000 --pio vcpu=0,count=1000 \
	> "$TMPD/b.json" &
B=$!
sleep 1.5
"$KVMSCOPE" vms -j > "$TMPD/vms.json"
expect_eq "vms -j: uuid of idvm" "$(jq -r '.[] | select(.name == "idvm") | .uuid' "$TMPD/vms.json")" "$UUID"
expect_eq "vms -j: vmid of idvm" "$(jq -r '.[] | select(.name == "idvm") | .vmid' "$TMPD/vms.json")" 105
expect_eq "vms -j: a VM without them has null" \
	"$(jq -c '.[] | select(.name == "plainvm") | [.uuid, .vmid]' "$TMPD/vms.json")" "[null,null]"
wait $A $B
wait 2>/dev/null

io_a=$(jq '[.vcpus[].io_exits] | add' "$TMPD/a.json")
io_b=$(jq '[.vcpus[].io_exits] | add' "$TMPD/b.json")
# every exit of idvm is an I/O exit of its pio workload, the rest its start-up
all_a=$(jq -s '[.[].value["'"$UUID"',105"] // 0] | add' "$W/by_uuid.json")
check "decomposed by uuid,vmid: idvm's key holds its $io_a I/O exits ($all_a)" test "$all_a" -ge "$io_a"
expect_eq "decomposed by uuid,vmid: idvm's key = its vm key in the same seconds" "$all_a" \
	"$(watch_total "$W/by_vm.json" idvm)"
unk=$(watch_total "$W/by_uuid.json" "unknown,unknown")
check "decomposed by uuid,vmid: plainvm's exits are under unknown,unknown ($unk >= $io_b)" test "$unk" -ge "$io_b"
expect_eq "decomposed by uuid,vmid: unknown,unknown = plainvm's vm key" "$unk" \
	"$(watch_total "$W/by_vm.json" plainvm)"
keys=$(jq -s -r '[.[].value | keys[]] | unique | join(" ")' "$W/by_uuid.json")
expect_eq "decomposed by uuid,vmid: only these two keys" "$keys" "$UUID,105 unknown,unknown"
expect_eq "predicate vmid=105 keeps idvm only" \
	"$(jq -s -r '[.[].value | keys[]] | unique | join(" ")' "$W/by_vmid_pred.json")" idvm
expect_eq "predicate vmid=105: the same count as its uuid key" "$(watch_total "$W/by_vmid_pred.json" idvm)" "$all_a"
expect_eq "predicate uuid=$UUID: the same count" "$(jq -s '[.[].value] | add' "$W/by_uuid_pred.json")" "$all_a"
"$KVMSCOPE" watch vm.exits -d uuidx -n 1 -j > /dev/null 2> "$TMPD/bad.err"
check "an unknown field is refused by name" grep -q 'uuidx' "$TMPD/bad.err"
tap_done
