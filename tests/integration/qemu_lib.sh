# Shared harness for the QEMU suites: tiny nasm guests from tests/qemu, QEMU
# with -enable-kvm, and two truths that cannot be wrong: QEMU's own -trace
# events and a private tracefs instance that records the KVM events of this
# QEMU's threads only (set_event_pid + event-fork), whoever else runs guests.
# Source it after lib.sh.
QEMU=${QEMU:-qemu-system-x86_64}
QEMU_SRC=$_root/tests/qemu

require_qemu() {
	command -v "$QEMU" >/dev/null || { skip "$1: $QEMU is not installed (make deps)"; tap_done; }
	command -v nasm >/dev/null || { skip "$1: nasm is not installed (make deps)"; tap_done; }
}

# qemu_guest SRC OUT DEFINES...: assemble a guest with its parameters
qemu_guest() {
	local src=$1 out=$2; shift 2
	nasm -I"$QEMU_SRC/" "$@" -f bin -o "$out" "$QEMU_SRC/$src" || { not_ok "nasm $src $*"; tap_done; }
}

# qemu_tracefs_open NAME: a private instance recording KVM events of the
# processes written to its set_event_pid and their threads
qemu_tracefs_open() {
	local d=/sys/kernel/tracing/instances/$1
	mkdir "$d" || return 1
	# off until qemu_run has named its pid: an empty set_event_pid means everyone
	echo 0 > "$d/tracing_on"
	echo 1 > "$d/options/event-fork"
	echo 16384 > "$d/buffer_size_kb"
	for e in kvm_pio kvm_userspace_exit kvm_mmio kvm_pic_set_irq kvm_set_irq kvm_vcpu_wakeup; do
		echo 1 > "$d/events/kvm/$e/enable"
	done
	qemu_instances+=("$d")
}
qemu_instances=()
QEMU_WRAP=()

# qemu_run NAME TRACEFS ARGS...: (TRACEFS may be "": no instance) run QEMU in the foreground until the guest
# stops it (isa-debug-exit) or 60 s pass; its pid in $TMPD/NAME.pid, its
# -trace events (QEMU_TRACE, default kvm_run_exit) in $TMPD/NAME.trace. The shell writes its own pid into the
# tracefs instance and then execs QEMU, so every QEMU thread is recorded.
# QEMU_WRAP (an array, default empty): a command QEMU runs under, e.g. strace.
qemu_run() {
	local name=$1 inst=$2; shift 2
	local dir=/sys/kernel/tracing/instances/$inst
	printf '%s\n' ${QEMU_TRACE:-kvm_run_exit} > "$TMPD/$name.events"
	[ -n "$inst" ] || dir=
	timeout 60 bash -c '[ -z "$0" ] || { echo $$ > "$0/set_event_pid" && echo 1 > "$0/tracing_on"; } && exec "$@"' \
		"$dir" \
		"${QEMU_WRAP[@]}" "$QEMU" -enable-kvm -display none -nic none -m 16 \
		-device isa-debug-exit,iobase=0xf4,iosize=1 \
		-pidfile "$TMPD/$name.pid" -trace "events=$TMPD/$name.events,file=$TMPD/$name.trace" "$@" \
		> "$TMPD/$name.out" 2>&1
	local rc=$?
	[ -z "$dir" ] || echo 0 > "$dir/tracing_on"
	# isa-debug-exit with 0 exits with status 1: the guest finished its work
	[ $rc -eq 1 ] || { not_ok "QEMU $name: exit status $rc, not the guest's 1: $(tail -3 "$TMPD/$name.out")"; return 1; }
	[ -z "$dir" ] && return 0
	cat "$dir/trace" > "$TMPD/$name.kvm"
	echo > "$dir/trace"
}

# qemu_bg NAME ARGS...: a QEMU that stays up (discovery checks); pid in $REPLY
qemu_bg() {
	local name=$1; shift
	"$QEMU" -enable-kvm -display none -nic none -m 16 \
		-pidfile "$TMPD/$name.pid" "$@" > "$TMPD/$name.out" 2>&1 &
	REPLY=$!
	cleanup_pids+=("$REPLY")
}

qemu_cleanup() {
	local d
	for d in "${qemu_instances[@]}"; do
		echo 0 > "$d/tracing_on" 2>/dev/null
		rmdir "$d" 2>/dev/null
	done
	cleanup
}
trap qemu_cleanup EXIT

# qemu_tracefs_follow NAME PID: start recording into instance NAME (from
# qemu_tracefs_open) the KVM events of every thread PID has now, and of those
# they start: for a QEMU that another program started (libvirt) and that has
# not run its guest yet (created paused)
qemu_tracefs_follow() {
	local d=/sys/kernel/tracing/instances/$1 t tids=
	for t in /proc/"$2"/task/*; do tids+="${t##*/} "; done
	[ -n "$tids" ] && echo "$tids" > "$d/set_event_pid" && echo 1 > "$d/tracing_on"
}

# qemu_tracefs_save NAME FILE: stop instance NAME and move its records to FILE
qemu_tracefs_save() {
	local d=/sys/kernel/tracing/instances/$1
	echo 0 > "$d/tracing_on" && cat "$d/trace" > "$2" && echo > "$d/trace"
}

