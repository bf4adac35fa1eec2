#!/bin/bash
# vm.nic_packets and vm.nic_bytes on a real QEMU guest whose NIC is an ISA
# NE2000 on a private tap (vhost off: QEMU itself moves every frame through
# the tap fd). The guest (tests/qemu/nic.asm) sends TX frames of SIZE bytes
# and counts the RX frames of RXSIZE bytes the test sends it through the tap
# (vmload --inject). The truth: the guest's own counts, checked against the
# tap's counters (IPv6 is off on the tap and it has no address, so the host
# kernel sends nothing of its own on it) and against QEMU's ne2000 trace
# events (each transmit command). kvmscope must report exactly that, per
# VM, NIC and direction, and `vms -j` must list the tap for the VM.
# The guest starts sending only once kvmscope has sampled the tap (COM1
# byte 'g'), and QEMU stays up until kvmscope has sampled the tap after the
# last frame ('q'): a tap's counters are sampled once a second, and what
# moves before the first sample of a new tap or after the last one of a VM
# that exited is not what this test is about.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "vm.nic_* on QEMU"
require_qemu "vm.nic_* on QEMU"

N=qnic$$ TAP=kqn$$
TX=23 SIZE=314 RX=9 RXSIZE=142
qemu_guest nic.asm "$TMPD/nic.img" -DTX=$TX -DSIZE=$SIZE
ip tuntap add dev "$TAP" mode tap || { not_ok "ip tuntap add $TAP"; tap_done; }
cleanup_tap() { ip link del "$TAP" 2>/dev/null; qemu_cleanup; }
trap cleanup_tap EXIT
# before the link is up: an IPv6 link-local address would send DAD and
# router solicitations as soon as QEMU attaches (the carrier comes up)
sysctl -qw "net.ipv6.conf.$TAP.disable_ipv6=1" || { not_ok "IPv6 off on $TAP"; tap_done; }
ip link set "$TAP" up || { not_ok "ip link set $TAP up"; tap_done; }
stats() { cat "/sys/class/net/$TAP/statistics/$1"; }
declare -A base
for c in rx_packets rx_bytes tx_packets tx_bytes; do base[$c]=$(stats $c); done

# lines_at_least FILE N: wait until FILE has N lines (watch -j: one a second)
lines_at_least() {
	local i
	for ((i = 0; i < 300; i++)); do
		[ "$(wc -l < "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	not_ok "$(basename "$1"): fewer than $2 seconds printed in 30 s"; tap_done
}
# after_two_drains FILE...: each watch has drained two more seconds, so it
# has sampled the taps at least once after now
after_two_drains() {
	local f
	for f in "$@"; do lines_at_least "$f" $(($(wc -l < "$f") + 2)); done
}

P='{"eq": ["vm", "'$N'"]}'
"$KVMSCOPE" watch vm.nic_packets -d vm,nic,direction -P "$P" -j -n 90 > "$TMPD/packets.json" 2> "$TMPD/packets.err" &
W1=$!; cleanup_pids+=("$W1")
"$KVMSCOPE" watch vm.nic_bytes -d vm,nic,direction -P "$P" -j -n 90 > "$TMPD/bytes.json" 2> "$TMPD/bytes.err" &
W2=$!; cleanup_pids+=("$W2")
wait_counting "$TMPD/packets.json" "$TMPD/bytes.json"

mkfifo "$TMPD/ctl"
QEMU_TRACE=ne2000_ioport_write
qemu_run "$N" "" -name "$N" -kernel "$TMPD/nic.img" \
	-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off" \
	-device ne2k_isa,iobase=0x300,irq=9,netdev=n0 \
	-chardev "pipe,id=ctl,path=$TMPD/ctl" -serial chardev:ctl \
	-debugcon "file:$TMPD/$N.con" > "$TMPD/run.tap" &
Q=$!; cleanup_pids+=("$Q")
# the guest's NIC is started and kvmscope's discovery sees the tap
listed=
for ((i = 0; i < 150; i++)); do
	if grep -q '^ready' "$TMPD/$N.con" 2>/dev/null; then
		"$KVMSCOPE" vms -j > "$TMPD/vms.json" 2> "$TMPD/vms.err"
		listed=$(jq -r --arg n "$N" '[.[] | select(.name == $n) | .nics[].ifname] | join(" ")' "$TMPD/vms.json")
		[ -n "$listed" ] && break
	fi
	kill -0 $Q 2>/dev/null || break
	sleep 0.2
done
expect_eq "vms -j: $N's NIC is the tap" "$listed" "$TAP"
expect_eq "vms -j: $N listed once" "$(jq --arg n "$N" '[.[] | select(.name == $n)] | length' "$TMPD/vms.json")" 1
after_two_drains "$TMPD/packets.json" "$TMPD/bytes.json"
# a fifo with no reader (QEMU gone) would block the writer: time it out
ctl() { timeout 10 bash -c 'echo "$1" > "$0"' "$TMPD/ctl" "$1" || not_ok "COM1 '$1' to the guest: QEMU is not reading"; }
ctl g
"$VMLOAD" --inject "tap=$TAP,count=$RX,size=$RXSIZE" > "$TMPD/inject.out" 2>&1 ||
	not_ok "vmload --inject: $(head -2 "$TMPD/inject.out")"
# everything has gone through the tap: QEMU wrote the guest's frames and
# read the injected ones
for ((i = 0; i < 300; i++)); do
	[ $(($(stats rx_packets) - base[rx_packets])) -ge $TX ] &&
		[ $(($(stats tx_packets) - base[tx_packets])) -ge $RX ] && break
	kill -0 $Q 2>/dev/null || break
	sleep 0.1
done
after_two_drains "$TMPD/packets.json" "$TMPD/bytes.json"
ctl q
wait $Q
rq=$?
kill -INT $W1 $W2 2>/dev/null; wait $W1 $W2
declare -A tap
for c in rx_packets rx_bytes tx_packets tx_bytes; do tap[$c]=$(($(stats $c) - base[$c])); done
if [ $rq -ne 0 ]; then not_ok "$(sed 's/^not ok [0-9]* - //' "$TMPD/run.tap")"; tap_done; fi

# the truth, checked on its own: the guest, the tap and QEMU agree
read -r _ gtx gtxb <<< "$(grep '^tx ' "$TMPD/$N.con")"
read -r _ grx grxb <<< "$(grep '^rx ' "$TMPD/$N.con")"
expect_eq "truth: the guest sent its $TX frames" "${gtx:-}" $TX
expect_eq "truth: the guest sent TX*SIZE bytes" "${gtxb:-}" $((TX * SIZE))
expect_eq "truth: the guest received the $RX injected frames" "${grx:-}" $RX
expect_eq "truth: the guest received RX*RXSIZE bytes" "${grxb:-}" $((RX * RXSIZE))
expect_eq "truth: tap rx_packets (host side) = the guest's sent frames" "${tap[rx_packets]}" "$gtx"
expect_eq "truth: tap rx_bytes = the guest's sent bytes" "${tap[rx_bytes]}" "$gtxb"
expect_eq "truth: tap tx_packets = the guest's received frames" "${tap[tx_packets]}" "$grx"
expect_eq "truth: tap tx_bytes = the guest's received bytes" "${tap[tx_bytes]}" "$grxb"
expect_eq "truth: QEMU ne2000_ioport_write of CR with TXP = the guest's sent frames" \
	"$(grep -c 'ne2000_ioport_write .*addr=0x00 val=0x26$' "$TMPD/$N.trace")" "$gtx"

total() { jq -s --arg k "$2" '[.[].value[$k] // 0] | add' "$1"; }
expect_eq "vm.nic_packets $N,$TAP,sent = the guest's sent frames" "$(total "$TMPD/packets.json" "$N,$TAP,sent")" "$gtx"
expect_eq "vm.nic_bytes $N,$TAP,sent = the guest's sent bytes" "$(total "$TMPD/bytes.json" "$N,$TAP,sent")" "$gtxb"
expect_eq "vm.nic_packets $N,$TAP,received = the guest's received frames" \
	"$(total "$TMPD/packets.json" "$N,$TAP,received")" "$grx"
expect_eq "vm.nic_bytes $N,$TAP,received = the guest's received bytes" \
	"$(total "$TMPD/bytes.json" "$N,$TAP,received")" "$grxb"
for m in packets bytes; do
	keys=$(jq -r -s '[.[].value | keys[]] | unique | join(" ")' "$TMPD/$m.json")
	expect_eq "vm.nic_$m: only $N's tap, in both directions" "$keys" "$N,$TAP,received $N,$TAP,sent"
done
for f in "$TMPD"/packets.err "$TMPD"/bytes.err; do
	grep -q 'level=error' "$f" && not_ok "$(basename "$f"): $(grep level=error "$f" | head -2)"
done
tap_done
