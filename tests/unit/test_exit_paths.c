/* Exit classification (Intel and AMD tables), reason names, and the VMX/SVM
 * path of the vm.exits collector.
 *
 * kvm:kvm_exit never fires on the machines CI runs on (a paravirtual KVM),
 * so the VMX/SVM path is covered with SYNTHETIC records: the test writes the
 * aggregation entries that bpf/exits.bpf.c produces for kvm_exit events
 * (isa 1 = VMX, 2 = SVM) into the real, loaded BPF map and drains them
 * through the real collector. This covers the user-space half; the kernel
 * half's classification is exit__class() itself, tested directly below.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collectors/collector.h"
#include "collectors/exit_reasons.h"
#include "exit_class.h"
#include "exit_logic_user.h"
#include "exits.skel.h"

static void test_vmx_classes(void **state)
{
	(void)state;
	assert_int_equal(exit__class(EXIT_ISA_VMX, 12, 0), EXIT_CLASS_HALT);
	assert_int_equal(exit__class(EXIT_ISA_VMX, 1, 0), EXIT_CLASS_IRQ);
	assert_int_equal(exit__class(EXIT_ISA_VMX, 7, 0), EXIT_CLASS_IRQW);
	assert_int_equal(exit__class(EXIT_ISA_VMX, 30, 0), EXIT_CLASS_IO);
	assert_int_equal(exit__class(EXIT_ISA_VMX, 49, 0), EXIT_CLASS_MMIO);
	assert_int_equal(exit__class(EXIT_ISA_VMX, 48, 0), EXIT_CLASS_OTHER);
	assert_int_equal(exit__class(EXIT_ISA_VMX, 10, 0), EXIT_CLASS_OTHER);	/* CPUID */
	/* the upper bits (e.g. bit 31, VM-entry failure) do not change the basic reason */
	assert_int_equal(exit__class(EXIT_ISA_VMX, 0x80000000u | 30, 0), EXIT_CLASS_IO);
	assert_true(exit__is_eptv(EXIT_ISA_VMX, 48, 0));
	assert_false(exit__is_eptv(EXIT_ISA_VMX, 49, 0));
}

static void test_svm_classes(void **state)
{
	(void)state;
	assert_int_equal(exit__class(EXIT_ISA_SVM, 0x078, 0), EXIT_CLASS_HALT);
	assert_int_equal(exit__class(EXIT_ISA_SVM, 0x060, 0), EXIT_CLASS_IRQ);
	assert_int_equal(exit__class(EXIT_ISA_SVM, 0x064, 0), EXIT_CLASS_IRQW);
	assert_int_equal(exit__class(EXIT_ISA_SVM, 0x07b, 0), EXIT_CLASS_IO);
	/* #NPF with the RSVD bit is KVM's MMIO; without it, a nested page fault */
	assert_int_equal(exit__class(EXIT_ISA_SVM, 0x400, 0x8 | 0x1), EXIT_CLASS_MMIO);
	assert_int_equal(exit__class(EXIT_ISA_SVM, 0x400, 0x1), EXIT_CLASS_OTHER);
	assert_true(exit__is_eptv(EXIT_ISA_SVM, 0x400, 0x4));
	assert_false(exit__is_eptv(EXIT_ISA_SVM, 0x400, 0x8));
	assert_int_equal(exit__class(EXIT_ISA_SVM, 0x072, 0), EXIT_CLASS_OTHER);	/* cpuid */
}

static void test_fallback_classes(void **state)
{
	(void)state;
	assert_int_equal(exit__class(EXIT_ISA_FALLBACK, FALLBACK_REASON_IO, 0), EXIT_CLASS_IO);
	assert_int_equal(exit__class(EXIT_ISA_FALLBACK, FALLBACK_REASON_MMIO, 0), EXIT_CLASS_MMIO);
	assert_int_equal(exit__class(EXIT_ISA_FALLBACK, FALLBACK_REASON_HLT, 0), EXIT_CLASS_HALT);
	assert_int_equal(exit__class(EXIT_ISA_FALLBACK, FALLBACK_REASON_INTR, 0), EXIT_CLASS_OTHER);
}

static void test_reason_names(void **state)
{
	char buf[48];

	(void)state;
	assert_string_equal(exit_reason__name(EXIT_ISA_VMX, 30, buf, sizeof(buf)), "IO_INSTRUCTION");
	assert_string_equal(exit_reason__name(EXIT_ISA_VMX, 48, buf, sizeof(buf)), "EPT_VIOLATION");
	assert_string_equal(exit_reason__name(EXIT_ISA_VMX, 12, buf, sizeof(buf)), "HLT");
	assert_string_equal(exit_reason__name(EXIT_ISA_VMX, 65, buf, sizeof(buf)), "0x41");
	assert_string_equal(exit_reason__name(EXIT_ISA_SVM, 0x07b, buf, sizeof(buf)), "io");
	assert_string_equal(exit_reason__name(EXIT_ISA_SVM, 0x400, buf, sizeof(buf)), "npf");
	assert_string_equal(exit_reason__name(EXIT_ISA_SVM, 0x999, buf, sizeof(buf)), "0x999");
	assert_string_equal(exit_reason__name(EXIT_ISA_FALLBACK, 2, buf, sizeof(buf)), "IO");
	assert_string_equal(exit_reason__name(EXIT_ISA_FALLBACK, 10, buf, sizeof(buf)), "INTR");
	assert_string_equal(exit_class__name(EXIT_CLASS_MMIO), "mmiox");
	assert_string_equal(exit_class__name(200), "other");
}

/* ---- synthetic VMX/SVM records through the real collector --------------- */

struct seen {
	int n;
	uint64_t total;
	uint64_t io_vmx, mmio_svm, halt_vmx;
	int vcpu3, latency_absent, latency_ok;
};

static int collect(const struct record *rec, void *ctx)
{
	struct seen *s = ctx;

	assert_int_equal(rec->metric, METRIC_VM_EXITS);
	/* the programs are attached for real: exits of guests running on the
	 * host at the same time are drained too; only the synthetic pids count */
	if (strcmp(rec->str[F_VM], "pid:999999") && strcmp(rec->str[F_VM], "pid:999998"))
		return 0;
	s->n++;
	s->total += rec->value;
	if (!strcmp(rec->str[F_EXITS_REASON], "IO_INSTRUCTION") &&
	    !strcmp(rec->str[F_EXITS_CLASS], "iox"))
		s->io_vmx += rec->value;
	if (!strcmp(rec->str[F_EXITS_REASON], "npf") && !strcmp(rec->str[F_EXITS_CLASS], "mmiox"))
		s->mmio_svm += rec->value;
	if (!strcmp(rec->str[F_EXITS_REASON], "HLT"))
		s->halt_vmx += rec->value;
	if (!strcmp(rec->str[F_EXITS_VCPU], "3"))
		s->vcpu3 = 1;
	if (rec->num_absent & (1u << F_EXITS_LATENCY))
		s->latency_absent++;
	else if (rec->num[F_EXITS_LATENCY] == 1000)
		s->latency_ok++;
	return 0;
}

static void put(int fd, const struct exits_key *k, uint64_t count)
{
	int ncpus = libbpf_num_possible_cpus();
	uint64_t vals[ncpus];

	memset(vals, 0, sizeof(vals));
	vals[0] = count;
	assert_int_equal(bpf_map_update_elem(fd, k, vals, BPF_ANY), 0);
}

static void test_synthetic_vmx_records(void **state)
{
	struct collector c = { .ops = &collector_exits_ops };
	uint64_t fields[METRIC__COUNT] = { 0 };
	struct vmcache *vms;
	struct seen seen = { 0 };
	int fd;

	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: loading BPF programs needs root (CI runs as root)\n");
		skip();
	}
	fields[METRIC_VM_EXITS] = FIELD_BIT(F_VM) | FIELD_BIT(F_EXITS_VCPU) |
				  FIELD_BIT(F_EXITS_REASON) | FIELD_BIT(F_EXITS_LATENCY);
	assert_int_equal(c.ops->start(&c, fields), 0);
	vms = vmcache__new("/proc");
	assert_non_null(vms);
	struct collector_env env = { vms, "testhost", collector__tai_offset() };
	uint32_t sec = (uint32_t)(time(NULL) + env.tai_offset - 5);
	struct exits_bpf *skel = *(struct exits_bpf **)c.priv;	/* first member of the backend */

	fd = bpf_map__fd(skel->maps.exits);
	/* what kvm_exit(isa=VMX, reason=30 IO_INSTRUCTION, vcpu_id=3) + kvm_entry 1 µs later leave */
	put(fd, &(struct exits_key){ .sec = sec, .tgid = 999999, .tid = 1, .vcpu = 3, .reason = 30,
				     .isa = EXIT_ISA_VMX, .class = EXIT_CLASS_IO, .latency = 1000 }, 41);
	put(fd, &(struct exits_key){ .sec = sec, .tgid = 999999, .tid = 1, .vcpu = 3, .reason = 12,
				     .isa = EXIT_ISA_VMX, .class = EXIT_CLASS_HALT, .latency = 1000 }, 2);
	/* SVM #NPF with RSVD: MMIO */
	put(fd, &(struct exits_key){ .sec = sec, .tgid = 999998, .tid = 2, .vcpu = 0, .reason = 0x400,
				     .isa = EXIT_ISA_SVM, .class = EXIT_CLASS_MMIO,
				     .latency = EXIT_LATENCY_UNKNOWN }, 7);
	/* a second that is not over yet must stay in the map */
	put(fd, &(struct exits_key){ .sec = sec + 100, .tgid = 999999, .tid = 1, .vcpu = 3,
				     .reason = 30, .isa = EXIT_ISA_VMX, .class = EXIT_CLASS_IO }, 5);
	assert_true(c.ops->drain(&c, time(NULL) - 1, &env, collect, &seen) >= 3);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.total, 41 + 2 + 7);
	assert_int_equal(seen.io_vmx, 41);
	assert_int_equal(seen.halt_vmx, 2);
	assert_int_equal(seen.mmio_svm, 7);
	assert_true(seen.vcpu3);
	assert_int_equal(seen.latency_absent, 1);
	assert_int_equal(seen.latency_ok, 2);
	/* the future second is still there, and drained once it is over */
	memset(&seen, 0, sizeof(seen));
	assert_true(c.ops->drain(&c, time(NULL) + 200, &env, collect, &seen) >= 1);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.io_vmx, 5);
	c.ops->stop(&c);
	vmcache__free(vms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vmx_classes),
		cmocka_unit_test(test_svm_classes),
		cmocka_unit_test(test_fallback_classes),
		cmocka_unit_test(test_reason_names),
		cmocka_unit_test(test_synthetic_vmx_records),
	};

	return cmocka_run_group_tests_name("exit_paths", tests, NULL, NULL);
}
