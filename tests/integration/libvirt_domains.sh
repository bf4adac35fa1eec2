#!/bin/bash
# kvmscope on libvirt domains: transient kvm domains made with `virsh create`
# on qemu:///system, one per disk driver io mode (threads, native with
# cache=none, io_uring), each booting the IDE guest (tests/qemu/ide.asm:
# READS one-sector reads, then WRITES one-sector writes) straight from its
# <kernel>. Per domain, exactly: `kvmscope vms -j` names it with libvirt's
# name and the domain's UUID; vm.disk_ops and vm.disk_bytes are the guest's
# counts, and its truth is also QEMU's own ide_sector_read/ide_sector_write
# trace events; vm.exits of class iox are the kernel's kvm_pio events of that
# QEMU (a private tracefs instance) and all belong to vCPU 0.
#
# libvirt is started as on a fresh CI machine without systemd (virtlogd -d,
# libvirtd -d, logs under the test's own directory) unless it already runs,
# and only what this test started is stopped. The one change outside the
# test's directory: the system user and group libvirt-qemu are created where
# they are missing (see below); that is idempotent and is left in place.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/qemu_lib.sh"
require_kvm "libvirt domains"
require_qemu "libvirt domains"
for c in virsh libvirtd virtlogd losetup blockdev; do
	command -v $c >/dev/null || { skip "libvirt domains: $c is not installed (make deps)"; tap_done; }
done

LV=qemu:///system
virsh_() { virsh -q -c "$LV" "$@"; }
RUN=/run	# where libvirt's daemons keep their pid files (/var/run links here)

daemon_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# daemon_stop PID: stop a daemon this test started and wait until it is gone
daemon_stop() {
	local i
	kill -TERM "$1" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do [ -d "/proc/$1" ] || return 0; sleep 0.1; done
	echo "# daemon $1 still runs 10 s after SIGTERM" >&2
}

libvirtd_pid='' virtlogd_pid='' LOOP='' domains=()
lv_cleanup() {
	local n others
	for n in "${domains[@]}"; do
		virsh_ destroy "$n" >/dev/null 2>&1
		rm -f "/var/log/libvirt/qemu/$n.log"
	done
	if [ -n "$libvirtd_pid" ]; then
		# another run of this test may have found our daemon and be using it
		others=$(virsh_ list --name 2>/dev/null | grep -v '^$' | tr '\n' ' ')
		if [ -z "$others" ]; then
			daemon_stop "$libvirtd_pid"
		else
			echo "# leaving libvirtd $libvirtd_pid and its virtlogd running: they run domains of others: $others"
			virtlogd_pid=
		fi
	fi
	[ -n "$virtlogd_pid" ] && daemon_stop "$virtlogd_pid"
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
	qemu_cleanup
}
trap lv_cleanup EXIT

lv_fail() { # lv_fail WHAT: libvirt could not be started here; show why
	not_ok "$1: $(cat "$TMPD"/start.err 2>/dev/null; grep -h ' error : ' "$TMPD"/libvirtd.log "$TMPD"/virtlogd.log 2>/dev/null | tail -3)"
	tap_done
}

if ! virsh_ uri >/dev/null 2>&1; then
	# Debian builds libvirt's QEMU driver with user and group libvirt-qemu
	# as its defaults and looks both up before it reads qemu.conf: without
	# them the driver does not start ("Failed to parse user 'libvirt-qemu'").
	# The package that creates them, libvirt-daemon-system, also brings
	# init scripts or units, polkit, iptables/firewalld and a default
	# network, none of which these tests need: create them as its postinst
	# does. Each domain below runs QEMU as root anyway (its <seclabel>), so
	# this user never runs anything.
	getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu || lv_fail "groupadd libvirt-qemu"
	# libvirtd probes QEMU's capabilities as libvirt-qemu, which needs
	# /dev/kvm: without it every probe falls back to TCG, is not cached, and
	# each `virsh create` took 44 s here. udev gives /dev/kvm group kvm and
	# mode 0660 (Debian's qemu rule); a machine without udev has neither:
	# do what the rule does.
	getent group kvm >/dev/null || groupadd --system kvm || lv_fail "groupadd kvm"
	[ "$(stat -c %G /dev/kvm)" = kvm ] || { chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; } ||
		lv_fail "chgrp kvm /dev/kvm"
	id -nG libvirt-qemu 2>/dev/null | grep -qw kvm || usermod -aG kvm libvirt-qemu 2>/dev/null || true
	getent passwd libvirt-qemu >/dev/null ||
		useradd --system --gid libvirt-qemu --groups kvm --home-dir /var/lib/libvirt --no-create-home \
			--shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu 2>"$TMPD/useradd.err" ||
		lv_fail "useradd libvirt-qemu: $(head -c 300 "$TMPD/useradd.err")"
	# The daemons' own logs go here, not to /var/log/libvirt (which a
	# package-less install does not have: they would not start).
	echo "log_outputs=\"3:file:$TMPD/virtlogd.log\"" > "$TMPD/virtlogd.conf"
	echo "log_outputs=\"3:file:$TMPD/libvirtd.log\"" > "$TMPD/libvirtd.conf"
	# `-d` returns 0 once the daemon is up (its pid file taken), else 1:
	# then it failed, or another one got there first (its pid file is
	# locked), which the connection below tells apart
	if ! daemon_alive $RUN/virtlogd.pid; then
		virtlogd -d -f "$TMPD/virtlogd.conf" 2>> "$TMPD/start.err" && virtlogd_pid=$(cat $RUN/virtlogd.pid)
	fi
	if ! daemon_alive $RUN/libvirtd.pid; then
		libvirtd -d -f "$TMPD/libvirtd.conf" 2>> "$TMPD/start.err" && libvirtd_pid=$(cat $RUN/libvirtd.pid)
	fi
	# its first start probes QEMU's capabilities before it listens
	for ((i = 0; i < 300; i++)); do virsh_ uri >/dev/null 2>&1 && break; sleep 0.1; done
	virsh_ uri >/dev/null 2>&1 || lv_fail "virtlogd -d, libvirtd -d, virsh -c $LV: $(virsh_ uri 2>&1 | tail -1)"
fi
ok "libvirt answers on $LV (libvirtd ${libvirtd_pid:-already running}, virtlogd ${virtlogd_pid:-already running})"

READS=24 WRITES=16
qemu_guest ide.asm "$TMPD/ide.img" -DREADS=$READS -DWRITES=$WRITES
truncate -s 1M "$TMPD/thr.raw" "$TMPD/nat.raw" "$TMPD/uri.raw"
# io='native' needs cache='none' (O_DIRECT). A file here sits on a disk with
# 4 KiB physical sectors, and QEMU aligns its O_DIRECT requests on it to
# 4 KiB: each 512-byte guest write becomes a 4 KiB read-modify-write (on
# such a file this guest's 24 reads and 16 writes are 40 reads and 16 writes
# of 4 KiB), and the guest's counts are no longer QEMU's operations. A loop
# device in its default buffered mode has 512-byte logical sectors whatever
# lies below, so QEMU does one 512-byte operation per guest sector on it.
LOOP=$(losetup -f --show --sector-size 512 "$TMPD/nat.raw") || { not_ok "losetup"; tap_done; }
expect_eq "loop device $LOOP has 512-byte logical sectors" "$(blockdev --getss "$LOOP")" 512

T=lv$$
# name|disk type|source|driver attributes|what kvmscope must count it at
cases=(
	"${T}thr|file|$TMPD/thr.raw|io='threads'|syscall"
	"${T}nat|block|$LOOP|cache='none' io='native'|aio"
	"${T}uri|file|$TMPD/uri.raw|io='io_uring'|io_uring"
)
printf '%s\n' ide_sector_read ide_sector_write > "$TMPD/events"

# lv_xml NAME UUID TYPE SOURCE DRIVER_ATTRS: a transient domain booting the
# guest. The IDE geometry is given: otherwise QEMU reads sector 0 of its own
# to guess it while the drive is set up. QEMU runs as root without
# relabelling (static DAC label): the images, the guest and the trace file
# are in the test's 0700 directory. isa-debug-exit and -trace have no
# libvirt element: they go through <qemu:commandline>.
lv_xml() {
	local n=$1 uuid=$2 type=$3 src=$4 attrs=$5 srcattr=file
	[ "$type" = block ] && srcattr=dev
	cat <<-EOF
	<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
	  <name>$n</name>
	  <uuid>$uuid</uuid>
	  <memory unit='MiB'>16</memory>
	  <vcpu>1</vcpu>
	  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$TMPD/ide.img</kernel></os>
	  <on_poweroff>destroy</on_poweroff>
	  <on_crash>destroy</on_crash>
	  <devices>
	    <emulator>$(command -v "$QEMU")</emulator>
	    <disk type='$type' device='disk'>
	      <driver name='qemu' type='raw' $attrs/>
	      <source $srcattr='$src'/>
	      <target dev='hda' bus='ide'/>
	      <geometry cyls='2' heads='16' secs='63'/>
	      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
	    </disk>
	    <controller type='usb' model='none'/>
	    <memballoon model='none'/>
	  </devices>
	  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
	  <qemu:commandline>
	    <qemu:arg value='-device'/><qemu:arg value='isa-debug-exit,iobase=0xf4,iosize=1'/>
	    <qemu:arg value='-trace'/><qemu:arg value='events=$TMPD/events,file=$TMPD/$n.trace'/>
	  </qemu:commandline>
	</domain>
	EOF
}

# wait_drains N FILE...: until each `watch -j` FILE has printed N more
# seconds. kvmscope puts a new VM's disks into its kernel filters at a drain
# at least 0.9 s after the last: after 3 more drains a domain created
# before is watched, so its guest's first operation is counted.
wait_drains() {
	local n=$1 f i want=(); shift
	for f in "$@"; do want+=($(($(wc -l < "$f") + n))); done
	for ((i = 0; i < 100; i++)); do
		local all=1 j=0
		for f in "$@"; do
			[ "$(wc -l < "$f")" -ge "${want[j]}" ] || all=0
			j=$((j + 1))
		done
		[ $all = 1 ] && return 0
		sleep 0.1
	done
	not_ok "watch printed no $n more seconds in 10 s"
}


P=
for c in "${cases[@]}"; do
	n=${c%%|*}; P+="${P:+, }{\"eq\": [\"vm\", \"$n\"]}"
	qemu_tracefs_open "$n" || { not_ok "tracefs instance $n"; tap_done; }
done
P="{\"or\": [$P]}"
W=$TMPD/w; mkdir -p "$W"
for m in ops:vm.disk_ops:vm,optype bytes:vm.disk_bytes:vm,optype exits:vm.exits:vm,vcpu,class; do
	IFS=: read -r f metric dec <<< "$m"
	"$KVMSCOPE" watch "$metric" -d "$dec" -P "$P" -j -n 120 > "$W/$f.json" 2> "$W/$f.err" &
	cleanup_pids+=($!); watches+=($!)
done
wait_counting "$W/ops.json" "$W/bytes.json" "$W/exits.json"

# one domain after the other: two emulated guests at once on two cores crawl
ran=()
for c in "${cases[@]}"; do
	IFS='|' read -r n type src attrs counted <<< "$c"
	uuid=$(cat /proc/sys/kernel/random/uuid)
	echo "$uuid" > "$TMPD/$n.uuid"
	lv_xml "$n" "$uuid" "$type" "$src" "$attrs" > "$TMPD/$n.xml"
	# paused: QEMU and its threads exist, the guest has not run yet
	if ! virsh_ create "$TMPD/$n.xml" --paused > "$TMPD/$n.create" 2>&1; then
		not_ok "virsh create $n: $(tail -2 "$TMPD/$n.create")"; continue
	fi
	domains+=("$n")
	pid=$(cat "$RUN/libvirt/qemu/$n.pid")
	"$KVMSCOPE" vms -j 2> /dev/null | jq --arg n "$n" 'map(select(.name == $n))' > "$TMPD/$n.vms"
	echo "$pid" > "$TMPD/$n.pid"
	qemu_tracefs_follow "$n" "$pid" || { not_ok "tracefs instance $n follows QEMU $pid"; continue; }
	wait_drains 3 "$W/ops.json" "$W/bytes.json" "$W/exits.json"
	virsh_ resume "$n" > /dev/null || { not_ok "virsh resume $n"; continue; }
	# the guest ends QEMU through isa-debug-exit: the transient domain is gone
	for ((i = 0; i < 600; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
	if [ -d "/proc/$pid" ]; then not_ok "domain $n still runs 60 s after its resume"; continue; fi
	qemu_tracefs_save "$n" "$TMPD/$n.kvm"
	ran+=("$c")
done
# vm.exits prints a second once final: up to 3 s (COLLECTOR_FINAL_WAIT_MAX_S) late
sleep 5; kill -INT "${watches[@]}" 2>/dev/null; wait "${watches[@]}"

for c in "${ran[@]}"; do
	IFS='|' read -r n type src attrs counted <<< "$c"
	label="$n ($attrs)"
	uuid=$(cat "$TMPD/$n.uuid") pid=$(cat "$TMPD/$n.pid")
	expect_eq "$label: vms -j lists the domain once by libvirt's name" "$(jq length "$TMPD/$n.vms")" 1
	expect_eq "$label: vms -j pid is libvirt's QEMU" "$(jq -r '.[0].pid' "$TMPD/$n.vms")" "$pid"
	expect_eq "$label: vms -j uuid is the domain's" "$(jq -r '.[0].uuid' "$TMPD/$n.vms")" "$uuid"
	expect_eq "$label: vms -j vCPUs" "$(jq -c '[.[0].vcpus[].index]' "$TMPD/$n.vms")" "[0]"
	expect_eq "$label: vms -j disk, counted at the VMM" \
		"$(jq -r '[.[0].disks[] | "\(.path)=\(.counted_at)"] | join(" ")' "$TMPD/$n.vms")" "$src=vmm"

	# libvirt runs QEMU with -msg timestamp=on: its trace lines start "TID@TIME:"
	r=$(grep -cE '(^|:)ide_sector_read ' "$TMPD/$n.trace") w=$(grep -cE '(^|:)ide_sector_write ' "$TMPD/$n.trace")
	expect_eq "truth $n: QEMU ide_sector_read = the guest's reads" "$r" $READS
	expect_eq "truth $n: QEMU ide_sector_write = the guest's writes" "$w" $WRITES
	expect_eq "$label: vm.disk_ops read" "$(watch_total "$W/ops.json" "$n,read")" $READS
	expect_eq "$label: vm.disk_ops write" "$(watch_total "$W/ops.json" "$n,write")" $WRITES
	expect_eq "$label: vm.disk_bytes read" "$(watch_total "$W/bytes.json" "$n,read")" $((READS * 512))
	expect_eq "$label: vm.disk_bytes write" "$(watch_total "$W/bytes.json" "$n,write")" $((WRITES * 512))
	other=$(jq -s --arg p "$n," '[.[].value | to_entries[] | select((.key | startswith($p)) and .key != ($p + "read") and .key != ($p + "write")) | .value] | add // 0' "$W/ops.json")
	expect_eq "$label: no other disk ops" "$other" 0
	expect_eq "$label: counted at the VMM's own $counted operations" \
		"$(jq -r '.source' "$W/ops.json" | grep -o "\(counting: \|; \)$n=[a-z_+]*" | sed 's/.*=//' | sort -u | tr '\n' ' ')" "$counted "

	pio=$(grep -c ' kvm_pio: ' "$TMPD/$n.kvm")
	# per sector at least: a status read before the command, 6 register
	# writes, a status read for DRQ, the data (rep insw/outsw), and after a
	# write a status read; plus nIEN at the start and isa-debug-exit
	least=$((9 * READS + 10 * WRITES + 2))
	check "truth $n: tracefs kvm_pio ($pio) has at least the guest's $least port accesses" test "$pio" -ge $least
	expect_eq "$label: vm.exits $n,0,iox = tracefs kvm_pio" "$(watch_total "$W/exits.json" "$n,0,iox")" "$pio"
	vcpus=$(jq -r -s --arg p "$n," '[.[].value | keys[] | select(startswith($p)) | split(",")[1]] | unique | join(" ")' "$W/exits.json")
	expect_eq "$label: exits attributed to vCPU 0 only (1 vCPU)" "$vcpus" "0"
done
no_logged_errors "$W"/*.err
tap_done
