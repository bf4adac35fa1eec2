#!/bin/bash
# collector__bpf_bring_up: a program that reads a field this kernel lacks is
# left out and the rest of the object still loads and attaches. The real
# kvmstat object is brought up with a guard naming a member struct kvm_vcpu
# does not have (as an older or newer kernel would lack one it reads): that
# program must be off and detached, every other one loaded and attached. A
# guard naming a real member must leave everything on; a guard set that
# turns off every program must fail with a message, not load an empty
# object.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

require_kvm "collector BPF lifecycle"
if [ ! -f "$BUILD/libkvmscope.a" ]; then not_ok "$BUILD/libkvmscope.a is not built: run make"; tap_done; fi
cat > "$TMPD/guards.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "collectors/collector.h"
#include "kvmstat.skel.h"

/* prints "<rc> <programs loaded> <programs attached> <target autoload> <msg>" */
static void try(const struct collector_guard *guards)
{
	const struct collector_bpf life = { .what = "guards test", .guards = guards };
	struct kvmstat_bpf *skel = NULL;
	struct bpf_program *prog;
	int rc, loaded = 0, attached = 0;
	char msg[256] = "";

	rc = collector__bpf_start(kvmstat_bpf, &skel, &life, NULL, msg, sizeof(msg));
	if (!rc) {
		bpf_object__for_each_program(prog, skel->obj)
			loaded += bpf_program__fd(prog) >= 0;
		for (int i = 0; i < skel->skeleton->prog_cnt; i++)
			attached += *skel->skeleton->progs[i].link != NULL;
	}
	printf("%d %d %d %d %s\n", rc, loaded, attached,
	       skel ? bpf_program__autoload(skel->progs.btf_kvm_emulate_insn) : -1, msg);
	if (skel)
		collector__bpf_stop(kvmstat_bpf, &skel);
}

int main(void)
{
	static const struct collector_guard missing[] = {
		{ "btf_kvm_emulate_insn", "kvm_vcpu", "no_such_member_anywhere" }, { NULL, NULL, NULL } };
	static const struct collector_guard present[] = {
		{ "btf_kvm_emulate_insn", "kvm_vcpu", "vcpu_idx" }, { NULL, NULL, NULL } };
	static struct collector_guard all[64];
	struct kvmstat_bpf *probe = kvmstat_bpf__open();
	struct bpf_program *prog;
	size_t n = 0;

	collector__quiet_libbpf();
	try(NULL);
	try(present);
	try(missing);
	bpf_object__for_each_program(prog, probe->obj)
		if (n < 63)
			all[n++] = (struct collector_guard){ bpf_program__name(prog), "no_such_struct", NULL };
	try(all);
	kvmstat_bpf__destroy(probe);
	return 0;
}
EOF
if ! ${CC:-cc} ${SANITIZE_FLAGS:-} -std=gnu11 -D_GNU_SOURCE -Isrc -I"$BUILD" -I"$BUILD/bpf" -Ibpf "$TMPD/guards.c" \
	"$BUILD/libkvmscope.a" -lbpf -lelf -lz -ljansson -lpthread -lm -o "$TMPD/guards" 2> "$TMPD/cc.err"; then
	not_ok "building the guards driver: $(head -3 "$TMPD/cc.err")"; tap_done
fi
"$TMPD/guards" > "$TMPD/out" 2> "$TMPD/err"
expect_eq "driver exit status" "$?" 0
mapfile -t L < "$TMPD/out"
read -r rc0 loaded0 attached0 auto0 _ <<< "${L[0]:-x}"
read -r rc1 loaded1 attached1 auto1 _ <<< "${L[1]:-x}"
read -r rc2 loaded2 attached2 auto2 _ <<< "${L[2]:-x}"
read -r rc3 _ _ _ msg3 <<< "${L[3]:-x}"
expect_eq "no guards: the object loads" "$rc0" 0
check "no guards: every program loaded and attached ($loaded0 loaded, $attached0 attached)" \
	test "${loaded0:-0}" -ge 2 -a "${attached0:-0}" = "${loaded0:-x}"
expect_eq "a guard on a real member changes nothing" "$rc1 $loaded1 $attached1 $auto1" "0 $loaded0 $attached0 1"
expect_eq "a guard on a missing member: the object still loads" "$rc2" 0
expect_eq "that program is off" "$auto2" 0
expect_eq "every other program loaded and attached" "$loaded2 $attached2" "$((loaded0 - 1)) $((attached0 - 1))"
expect_eq "no program left: the start fails (-ENOENT)" "$rc3" "-2"
check "and says why ($msg3)" grep -q "none of the hooks" <<< "$msg3"
tap_done
