#!/bin/bash
# kvmscope vms: finds real KVM VMs (a VM fd held by any process) with their
# name, vCPU threads, loop-backed disk and tap.
#
# Two VMMs are used: a minimal one built here from C (KVM_CREATE_VM, vCPU
# threads named like QEMU's, a disk and a tap held open, QEMU-style -name),
# so that discovery is tested whatever state vmload is in, and vmload itself
# when it has been built.
. "$(dirname "$0")/lib.sh"
require_kvm "kvmscope vms"

for tool in jq losetup cc setpriv; do
	if ! command -v $tool >/dev/null; then skip "kvmscope vms: '$tool' is not installed"; tap_done; fi
done
if [ ! -x "$KVMSCOPE" ]; then not_ok "kvmscope binary missing at $KVMSCOPE"; tap_done; fi

cat > "$TMPD/fakevmm.c" <<'EOF'
/* A VMM that does nothing: a VM, vCPU threads, a disk and a tap held open.
 * usage: fakevmm [--vcpus N] [--disk file=PATH] [--nic tap=NAME]
 *                [--lifetime-ms MS] [anything else, ignored] */
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

static void *vcpu_thread(void *arg)
{
	char name[16];

	snprintf(name, sizeof(name), "CPU %ld/KVM", (long)arg);
	prctl(PR_SET_NAME, name);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	long nvcpus = 1, lifetime_ms = 0;
	const char *disk = NULL, *tap = NULL;
	int kvm, vm;

	for (int i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "--vcpus"))
			nvcpus = atol(argv[++i]);
		else if (!strcmp(argv[i], "--disk") && !strncmp(argv[i + 1], "file=", 5))
			disk = argv[++i] + 5;
		else if (!strcmp(argv[i], "--nic") && !strncmp(argv[i + 1], "tap=", 4))
			tap = argv[++i] + 4;
		else if (!strcmp(argv[i], "--lifetime-ms"))
			lifetime_ms = atol(argv[++i]);
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) { perror("/dev/kvm"); return 1; }
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) { perror("KVM_CREATE_VM"); return 1; }
	for (long i = 0; i < nvcpus; i++) {
		pthread_t t;

		if (ioctl(vm, KVM_CREATE_VCPU, i) < 0) { perror("KVM_CREATE_VCPU"); return 1; }
		pthread_create(&t, NULL, vcpu_thread, (void *)i);
	}
	if (disk && open(disk, O_RDWR) < 0) { perror(disk); return 1; }
	if (tap) {
		struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
		int fd = open("/dev/net/tun", O_RDWR);

		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
		if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); return 1; }
	}
	usleep(20000);	/* let the vCPU threads name themselves */
	printf("ready\n");
	fflush(stdout);
	if (lifetime_ms) {
		usleep(lifetime_ms * 1000);
		return 0;
	}
	for (;;)
		pause();
}
EOF
if ! cc -O2 -pthread -o "$TMPD/fakevmm" "$TMPD/fakevmm.c" 2> "$TMPD/cc.err"; then
	not_ok "build the test VMM: $(head -3 "$TMPD/cc.err")"; tap_done
fi

# A loop device and a tap that are ours alone
truncate -s 8M "$TMPD/disk.img"
LOOP=$(losetup -f --show "$TMPD/disk.img") || { not_ok "losetup failed"; tap_done; }
cleanup_loop() { losetup -d "$LOOP" 2>/dev/null; cleanup; }
trap cleanup_loop EXIT
LOOPDEV=$(printf '%d:%d' "0x$(stat -c %t "$LOOP")" "0x$(stat -c %T "$LOOP")")
TAP=ksv$$
truncate -s 1M "$TMPD/extra.img"
EXTRA_INO=$(stat -c %i "$TMPD/extra.img")

wait_ready() {	# $1 = output file of a VMM; 5 s at most
	for _ in $(seq 50); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

# tids of the threads named "CPU n/KVM", as "n:tid" lines sorted by n
vcpu_threads() {
	for t in /proc/$1/task/*; do
		c=$(cat "$t/comm" 2>/dev/null) || continue
		case "$c" in "CPU "*/KVM) n=${c#CPU }; echo "${n%/KVM}:${t##*/}";; esac
	done | sort -n
}

# check_vm LABEL PID NAME NVCPUS TAP [EXTRA]: assertions on one VM in $TMPD/vms.json
check_vm() {
	local label=$1 pid=$2 name=$3 nvcpus=$4 tap=$5 extra=${6:-}
	local vm="$TMPD/vm-$pid.json"
	jq ".[] | select(.pid == $pid)" "$TMPD/vms.json" > "$vm"
	if [ ! -s "$vm" ]; then not_ok "$label: pid $pid not listed by kvmscope vms -j"; return; fi
	ok "$label: pid $pid listed"
	expect_eq "$label: name" "$(jq -r .name "$vm")" "$name"
	expect_eq "$label: comm" "$(jq -r .comm "$vm")" "$(cat /proc/$pid/comm)"
	expect_eq "$label: vCPU count" "$(jq '.vcpus | length' "$vm")" "$nvcpus"
	expect_eq "$label: vCPU index:tid pairs match /proc/$pid/task" \
		"$(jq -r '.vcpus[] | "\(.index):\(.tid)"' "$vm" | sort -n | tr '\n' ' ')" \
		"$(vcpu_threads "$pid" | tr '\n' ' ')"
	expect_eq "$label: loop disk $LOOP is a block disk" \
		"$(jq -r --arg p "$LOOP" '.disks[] | select(.path == $p) | "\(.type) \(.dev) \(.ino)"' "$vm")" \
		"block $LOOPDEV 0"
	expect_eq "$label: tap $tap listed once" \
		"$(jq --arg t "$tap" '[.nics[] | select(.ifname == $t)] | length' "$vm")" 1
	if [ -n "$extra" ]; then
		expect_eq "$label: -drive file= image from the command line (fd -1, its inode)" \
			"$(jq -r --arg p "$extra" '.disks[] | select(.path == $p) | "\(.type) \(.fd) \(.ino)"' "$vm")" \
			"file -1 $EXTRA_INO"
	fi
}

# ---- the minimal VMM ---------------------------------------------------------
"$TMPD/fakevmm" -name guest=int-helper,debug-threads=on --vcpus 3 --disk "file=$LOOP" \
	--nic "tap=$TAP" -drive "file=$TMPD/extra.img,if=virtio" -netdev "tap,id=n0,ifname=$TAP" \
	-uuid 5D3F1C2A-0B4E-4C6D-8E9F-A1B2C3D4E5F6 -pidfile "$TMPD/run/qemu-server/104.pid" \
	> "$TMPD/fake.out" 2>&1 &
FPID=$!
cleanup_pids+=("$FPID")
if ! wait_ready "$TMPD/fake.out"; then
	not_ok "test VMM did not start: $(head -3 "$TMPD/fake.out")"; tap_done
fi

"$KVMSCOPE" vms -j > "$TMPD/vms.json" 2> "$TMPD/vms.err"
expect_eq "vms -j exits 0" "$?" 0
if jq -e 'type == "array"' "$TMPD/vms.json" > /dev/null; then ok "vms -j is a JSON array"
else not_ok "vms -j is not a JSON array: $(head -c 200 "$TMPD/vms.json") $(head -3 "$TMPD/vms.err")"; fi
check_vm "test VMM" "$FPID" int-helper 3 "$TAP" "$TMPD/extra.img"
expect_eq "-uuid: reported lowercase as uuid" \
	"$(jq -r ".[] | select(.pid == $FPID) | .uuid" "$TMPD/vms.json")" "5d3f1c2a-0b4e-4c6d-8e9f-a1b2c3d4e5f6"
expect_eq "Proxmox layout (-pidfile .../qemu-server/104.pid): vmid" \
	"$(jq -r ".[] | select(.pid == $FPID) | .vmid" "$TMPD/vms.json")" "104"

"$KVMSCOPE" vms > "$TMPD/vms.txt" 2> "$TMPD/vms.err"
expect_eq "vms (table) exits 0" "$?" 0
expect_eq "table header" "$(head -1 "$TMPD/vms.txt" | tr -s ' ' | sed 's/^ //')" "PID NAME VCPUS DISKS NICS VMID UUID"
row=$(awk -v p="$FPID" '$1 == p' "$TMPD/vms.txt")
expect_eq "table row: pid, name, vCPU count" "$(echo "$row" | awk '{print $1, $2, $3}')" "$FPID int-helper 3"
check "table row lists $LOOP and $TAP" bash -c "[[ '$row' == *'$LOOP'* && '$row' == *'$TAP'* ]]"
expect_eq "table row ends with VMID and UUID" "$(echo "$row" | awk '{print $(NF-1), $NF}')" \
	"104 5d3f1c2a-0b4e-4c6d-8e9f-a1b2c3d4e5f6"

# ---- processes that come and go while we scan ----------------------------------
( for _ in $(seq 30); do
	"$TMPD/fakevmm" --vcpus 2 --lifetime-ms 40 > /dev/null 2>&1 &
	sleep 0.03
  done; wait ) &
churn=$!
bad=0
for i in $(seq 30); do
	"$KVMSCOPE" vms -j > "$TMPD/churn.json" 2> "$TMPD/churn.err" || bad=$((bad + 1))
	jq -e 'type == "array"' "$TMPD/churn.json" > /dev/null 2>&1 || bad=$((bad + 1))
done
wait $churn
expect_eq "30 scans while VMs start and exit: all exit 0 with valid JSON" "$bad" 0

# ---- no VMs, bad input, not root --------------------------------------------------
mkdir -p "$TMPD/emptyproc"
expect_eq "no VMs: -j prints []" "$("$KVMSCOPE" vms -j -P "$TMPD/emptyproc" | jq -c .)" "[]"
expect_eq "no VMs: the table is its header" "$("$KVMSCOPE" vms -P "$TMPD/emptyproc" | wc -l)" 1
"$KVMSCOPE" vms --frobnicate > /dev/null 2> "$TMPD/bad.err"
expect_eq "unknown option: exit 2" "$?" 2
check "unknown option named in the error" grep -q -- "--frobnicate" "$TMPD/bad.err"
"$KVMSCOPE" vms -P /nonexistent-proc > /dev/null 2> "$TMPD/bad.err"
expect_eq "unreadable proc root: exit 1" "$?" 1
check "unreadable proc root named in the error" grep -q "/nonexistent-proc" "$TMPD/bad.err"
"$KVMSCOPE" vms --help > "$TMPD/help.txt"
expect_eq "--help exits 0" "$?" 0
check "--help documents -j" grep -q -- "--json" "$TMPD/help.txt"

# As nobody: a copy of the binary nobody can run; root's VM must be hidden,
# with the note on stderr, and the command must still succeed.
mkdir -p "$TMPD/pub" && cp "$KVMSCOPE" "$TMPD/pub/kvmscope" && chmod 755 "$TMPD" "$TMPD/pub" "$TMPD/pub/kvmscope"
setpriv --reuid=65534 --regid=65534 --clear-groups "$TMPD/pub/kvmscope" vms -j \
	> "$TMPD/nobody.json" 2> "$TMPD/nobody.err"
expect_eq "not root: exit 0" "$?" 0
expect_eq "not root: root's VM is not listed" "$(jq "[.[] | select(.pid == $FPID)] | length" "$TMPD/nobody.json")" 0
check "not root: a note says VMs may be hidden" grep -q "may be hidden" "$TMPD/nobody.err"

# ---- vmload -------------------------------------------------------------------------
if [ -x "$VMLOAD" ] && "$VMLOAD" --help 2>&1 | grep -q -- "--vcpus"; then
	TAP2=ksw$$
	"$VMLOAD" -name guest=int-vmload --vcpus 2 --delay 15000 --duration 30 \
		--disk "file=$LOOP,reads=1,writes=0,size=4096" --nic "tap=$TAP2,tx=1,size=60" \
		> "$TMPD/vmload.out" 2>&1 &
	VPID=$!
	cleanup_pids+=("$VPID")
	found=0
	for _ in $(seq 50); do
		"$KVMSCOPE" vms -j > "$TMPD/vms.json" 2>/dev/null
		if [ "$(jq "[.[] | select(.pid == $VPID and (.vcpus | length) == 2 and ([.vcpus[].tid] | all(. > 0)) and (.nics | length) == 1)] | length" "$TMPD/vms.json")" = 1 ]; then
			found=1; break
		fi
		sleep 0.1
	done
	if [ $found = 1 ]; then
		check_vm "vmload" "$VPID" int-vmload 2 "$TAP2"
	else
		not_ok "vmload (pid $VPID) not found with 2 vCPUs and a NIC within 5 s: $(head -3 "$TMPD/vmload.out")"
	fi
else
	skip "vmload: $VMLOAD is not built (or has no --vcpus); covered by the test VMM above"
fi

tap_done
