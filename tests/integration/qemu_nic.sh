#!/bin/bash
# vm.nic_packets and vm.nic_bytes on real QEMU guests whose NIC is an ISA
# NE2000 on a tap (vhost off: QEMU itself moves every frame through the tap
# fd). The guest (tests/qemu/nic.asm) sends TX frames of SIZE bytes on each
# 'g' written to its COM1 and counts the frames of RXSIZE bytes the test
# sends it through the tap (vmload --inject), until 'q'. The truth: the
# guest's own counts, checked against the tap's counters (IPv6 is off on the
# tap and it has no address, so the host kernel sends nothing of its own on
# it) and against QEMU's ne2000 trace events (each transmit command).
# kvmscope must report exactly that, per VM, NIC and direction, and `vms -j`
# must list the tap for the VM. Three guests, one after the other:
#   a: a tap made before QEMU starts; the guest starts sending only once
#      kvmscope has sampled the tap, and QEMU stays up until it has sampled
#      it after the last frame
#   b: the same kind of tap, with traffic as soon as the guest is up and up
#      to its exit: sent before kvmscope's first sample of the VM, and after
#      its last one (the tap outlives QEMU)
#   c: a tap QEMU makes itself (gone when it exits), with traffic as soon as
#      the guest is up
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "vm.nic_* on QEMU"
require_qemu "vm.nic_* on QEMU"

TX=23 SIZE=314 RX=9 RXSIZE=142
qemu_guest nic.asm "$TMPD/nic.img" -DTX=$TX -DSIZE=$SIZE
A=qna$$ B=qnb$$ C=qnc$$
declare -A tap_of=([$A]=kqa$$ [$B]=kqb$$ [$C]=kqc$$)
declare -A plan=(
	[$A]="persistent ready drains g inject wait drains list q snap"
	[$B]="persistent ready g inject wait drains list g inject wait q snap"
	[$C]="qemu tapup ready g inject wait snap drains list q"
)
cleanup_taps() {
	local t
	for t in "${tap_of[@]}"; do ip link del "$t" 2>/dev/null; done
	qemu_cleanup
}
trap cleanup_taps EXIT

# tap_up TAP: IPv6 off before the link is up: a link-local address would
# send DAD and router solicitations as soon as QEMU attaches
tap_up() {
	sysctl -qw "net.ipv6.conf.$1.disable_ipv6=1" && ip link set "$1" up
}
stat_of() { cat "/sys/class/net/$1/statistics/$2"; }
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
# ctl NAME BYTE: to the guest's COM1; a fifo with no reader (QEMU gone)
# would block the writer, so it is timed out
# shellcheck disable=SC2016 # expanded by the inner shell
ctl() {
	timeout 10 bash -c 'echo "$1" > "$0"' "$TMPD/$1.ctl" "$2" ||
		not_ok "$1: COM1 '$2' to the guest: QEMU is not reading"
}

P='{"or": [{"eq": ["vm", "'$A'"]}, {"eq": ["vm", "'$B'"]}, {"eq": ["vm", "'$C'"]}]}'
"$KVMSCOPE" watch vm.nic_packets -d vm,nic,direction -P "$P" -j -n 150 > "$TMPD/packets.json" 2> "$TMPD/packets.err" &
W1=$!; cleanup_pids+=("$W1")
"$KVMSCOPE" watch vm.nic_bytes -d vm,nic,direction -P "$P" -j -n 150 > "$TMPD/bytes.json" 2> "$TMPD/bytes.err" &
W2=$!; cleanup_pids+=("$W2")
wait_counting "$TMPD/packets.json" "$TMPD/bytes.json"
WATCHES=("$TMPD/packets.json" "$TMPD/bytes.json")

# what each case's steps leave: frames the guest was asked to send and sent
# to it, the tap's counters (since before QEMU), the NIC vms -j listed
declare -A want_tx want_rx got listed ran
# shellcheck disable=SC2034 # read by qemu_run
QEMU_TRACE=ne2000_ioport_write
for n in $A $B $C; do
	t=${tap_of[$n]}
	want_tx[$n]=0 want_rx[$n]=0
	declare -A base=([rx_packets]=0 [rx_bytes]=0 [tx_packets]=0 [tx_bytes]=0)
	# shellcheck disable=SC2086 # a plan is a list of words
	set -- ${plan[$n]}
	kind=$1; shift
	if [ "$kind" = persistent ]; then
		if ! { ip tuntap add dev "$t" mode tap && tap_up "$t"; }; then not_ok "$n: tap $t"; continue; fi
		for c in "${!base[@]}"; do base[$c]=$(stat_of "$t" "$c"); done
	fi
	mkfifo "$TMPD/$n.ctl"
	qemu_run "$n" "" -name "$n" -kernel "$TMPD/nic.img" \
		-netdev "tap,id=n0,ifname=$t,script=no,downscript=no,vhost=off" \
		-device ne2k_isa,iobase=0x300,irq=9,netdev=n0 \
		-chardev "pipe,id=ctl,path=$TMPD/$n.ctl" -serial chardev:ctl \
		-debugcon "file:$TMPD/$n.con" > "$TMPD/$n.run" &
	q=$!; cleanup_pids+=("$q")
	for step; do
		case $step in
		tapup)	for ((i = 0; i < 150; i++)); do [ -e "/sys/class/net/$t" ] && break; sleep 0.1; done
			tap_up "$t" || not_ok "$n: QEMU's tap $t up";;
		ready)	for ((i = 0; i < 150; i++)); do
				grep -q '^ready' "$TMPD/$n.con" 2>/dev/null && break
				kill -0 $q 2>/dev/null || break
				sleep 0.1
			done
			grep -q '^ready' "$TMPD/$n.con" 2>/dev/null ||
				not_ok "$n: the guest never said ready: $(tail -2 "$TMPD/$n.out")";;
		drains)	after_two_drains "${WATCHES[@]}";;
		g)	ctl "$n" g; want_tx[$n]=$((want_tx[$n] + TX));;
		inject)	"$VMLOAD" --inject "tap=$t,count=$RX,size=$RXSIZE" > "$TMPD/inject.out" 2>&1 ||
				not_ok "$n: vmload --inject: $(head -2 "$TMPD/inject.out")"
			want_rx[$n]=$((want_rx[$n] + RX));;
		wait)	# everything has gone through the tap: QEMU wrote the
			# guest's frames and read the injected ones
			for ((i = 0; i < 300; i++)); do
				[ $(($(stat_of "$t" rx_packets) - base[rx_packets])) -ge "${want_tx[$n]}" ] &&
					[ $(($(stat_of "$t" tx_packets) - base[tx_packets])) -ge "${want_rx[$n]}" ] && break
				kill -0 $q 2>/dev/null || break
				sleep 0.1
			done;;
		list)	"$KVMSCOPE" vms -j > "$TMPD/vms.json" 2> "$TMPD/vms.err"
			listed[$n]=$(jq -r --arg n "$n" '[.[] | select(.name == $n) | .nics[].ifname] | join(" ")' "$TMPD/vms.json");;
		snap)	for c in "${!base[@]}"; do got[$n,$c]=$(($(stat_of "$t" "$c") - base[$c])); done;;
		q)	ctl "$n" q
			if wait $q; then ran[$n]=1; else not_ok "$(sed 's/^not ok [0-9]* - //' "$TMPD/$n.run")"; fi;;
		esac
	done
	unset base
done
kill -INT $W1 $W2 2>/dev/null; wait $W1 $W2
[ -n "${ran[$C]:-}" ] && [ -e "/sys/class/net/${tap_of[$C]}" ] && not_ok "$C: QEMU's own tap outlived it"

for n in $A $B $C; do
	[ -n "${ran[$n]:-}" ] || continue
	t=${tap_of[$n]}
	# the truth, checked on its own: the guest, the tap and QEMU agree
	read -r _ gtx gtxb <<< "$(grep '^tx ' "$TMPD/$n.con")"
	read -r _ grx grxb <<< "$(grep '^rx ' "$TMPD/$n.con")"
	expect_eq "truth $n: the guest sent the ${want_tx[$n]} frames asked" "${gtx:-}" "${want_tx[$n]}"
	expect_eq "truth $n: the guest sent frames*SIZE bytes" "${gtxb:-}" $((want_tx[$n] * SIZE))
	expect_eq "truth $n: the guest received the ${want_rx[$n]} injected frames" "${grx:-}" "${want_rx[$n]}"
	expect_eq "truth $n: the guest received frames*RXSIZE bytes" "${grxb:-}" $((want_rx[$n] * RXSIZE))
	expect_eq "truth $n: $t rx_packets (host side) = the guest's sent frames" "${got[$n,rx_packets]}" "$gtx"
	expect_eq "truth $n: $t rx_bytes = the guest's sent bytes" "${got[$n,rx_bytes]}" "$gtxb"
	expect_eq "truth $n: $t tx_packets = the guest's received frames" "${got[$n,tx_packets]}" "$grx"
	expect_eq "truth $n: $t tx_bytes = the guest's received bytes" "${got[$n,tx_bytes]}" "$grxb"
	expect_eq "truth $n: QEMU ne2000_ioport_write of CR with TXP = the guest's sent frames" \
		"$(grep -c 'ne2000_ioport_write .*addr=0x00 val=0x26$' "$TMPD/$n.trace")" "$gtx"

	expect_eq "$n: vms -j lists its NIC, the tap" "${listed[$n]:-}" "$t"
	expect_eq "$n: vm.nic_packets $n,$t,sent = the guest's sent frames" "$(watch_total "$TMPD/packets.json" "$n,$t,sent")" "$gtx"
	expect_eq "$n: vm.nic_bytes $n,$t,sent = the guest's sent bytes" "$(watch_total "$TMPD/bytes.json" "$n,$t,sent")" "$gtxb"
	expect_eq "$n: vm.nic_packets $n,$t,received = the guest's received frames" \
		"$(watch_total "$TMPD/packets.json" "$n,$t,received")" "$grx"
	expect_eq "$n: vm.nic_bytes $n,$t,received = the guest's received bytes" \
		"$(watch_total "$TMPD/bytes.json" "$n,$t,received")" "$grxb"
	for m in packets bytes; do
		keys=$(jq -r -s --arg p "$n," '[.[].value | keys[] | select(startswith($p))] | unique | join(" ")' "$TMPD/$m.json")
		expect_eq "$n: vm.nic_$m only on its tap, in both directions" "$keys" "$n,$t,received $n,$t,sent"
	done
done
no_logged_errors "$TMPD"/packets.err "$TMPD"/bytes.err
tap_done
