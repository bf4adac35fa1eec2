/* vm.irqs counting rules (bpf/irq_rules.h), replayed on SYNTHETIC event
 * sequences, and the collector's naming of what the kernel side booked.
 *
 * kvm:kvm_inj_virq never fires on the machines CI runs on (a paravirtual
 * KVM), so the VMX/SVM path -- the in-kernel PIT's kthread raises IRQ0, the
 * vCPU injects it -- is covered here with synthetic events: a model of the
 * BPF programs' glue (per-thread line state, per-VM "injection seen", the
 * host flag) that calls the very rule functions bpf/irq_logic.h runs, in the
 * order the tracepoints fire. The irqchip-only path is also covered for real
 * by tests/integration/irqs_pit.sh. */
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
#include "exit_logic_user.h"
#include "irq_rules.h"
#include "irqs.skel.h"

/* ---- a model of bpf/irq_logic.h's programs over the rules ------------- */

#define MAX_THREADS 8
#define MAX_VMS     4

struct model {
	int hw_host;			/* user space saw kvm_intel/kvm_amd */
	int hw_any;
	int hw_seen[MAX_VMS];		/* kvm_inj_virq fired for the VM */
	struct { int level; unsigned vm; } line[MAX_THREADS];
	int counted[MAX_VMS];		/* interrupts booked per VM */
	unsigned vector[MAX_VMS];	/* last vector booked */
};

static int ignored(const struct model *m, unsigned vm)
{
	return m->hw_host || (m->hw_any && m->hw_seen[vm]);
}

/* kvm_set_irq in thread tid: a VMM thread (own_vm) or a kernel worker found
 * acting for a struct kvm owned by kvm_pid (0: none found) */
static void ev_set_irq(struct model *m, int tid, unsigned own_vm, int kvm_pid, int level)
{
	m->line[tid].level = level;
	m->line[tid].vm = irq_rules__vm_of(own_vm, kvm_pid != 0, kvm_pid);
}

static void ev_pic(struct model *m, int tid, unsigned char base, int pin, int imr, int coalesced)
{
	unsigned vm = m->line[tid].vm;

	if (!irq_rules__chip_counts(ignored(m, vm), m->line[tid].level, (imr >> pin) & 1, coalesced))
		return;
	m->counted[vm]++;
	m->vector[vm] = irq_rules__pic_vector(base, pin);
}

static void ev_inj_virq(struct model *m, unsigned vm, unsigned vector, int reinjected)
{
	if (!irq_rules__injection_counts(reinjected))
		return;
	m->hw_any = 1;
	m->hw_seen[vm] = 1;
	m->counted[vm]++;
	m->vector[vm] = vector;
}

enum { VM_A = 1, VM_B = 2, KVM_PIT_OWNER_PID = VM_A, PIT_TID = 5, VMM_TID = 1 };

/* One PIT tick as kvm-pit/<pid> runs it (pit_do_work): raise, lower. */
static void pit_tick(struct model *m, int imr, int coalesced)
{
	ev_set_irq(m, PIT_TID, 77 /* the kthread's own pid */, KVM_PIT_OWNER_PID, 1);
	ev_pic(m, PIT_TID, 0x20, 0, imr, coalesced);
	ev_set_irq(m, PIT_TID, 77, KVM_PIT_OWNER_PID, 0);
	ev_pic(m, PIT_TID, 0x20, 0, imr, 0);
}

static void test_synthetic_pit_irqchip_only_host(void **state)
{
	struct model m = { 0 };

	(void)state;
	for (int i = 0; i < 10; i++)
		pit_tick(&m, 0xfe, 0);
	assert_int_equal(m.counted[VM_A], 10);	/* raised, lowered: one each */
	assert_int_equal(m.vector[VM_A], 0x20);
	assert_int_equal(m.counted[0], 0);	/* nothing left on the kthread (pid 77 -> no VM slot) */
	/* a lowered line alone is no interrupt, but stays the VM's line */
	ev_set_irq(&m, PIT_TID, 77, KVM_PIT_OWNER_PID, 0);
	ev_pic(&m, PIT_TID, 0x20, 0, 0xfe, 0);
	assert_int_equal(m.counted[VM_A], 10);
	assert_int_equal(m.line[PIT_TID].vm, VM_A);
	/* masked and coalesced raises are not interrupts */
	pit_tick(&m, 0xff, 0);
	pit_tick(&m, 0xfe, 1);
	assert_int_equal(m.counted[VM_A], 10);
}

/* VMX/SVM: the PIT raises in its kthread, then the vCPU injects. With the
 * host flag set before attaching, even the VM's first interrupt is counted
 * once. */
static void test_synthetic_vmx_pit_counted_once(void **state)
{
	struct model m = { .hw_host = 1 };

	(void)state;
	for (int i = 0; i < 25; i++) {
		pit_tick(&m, 0xfe, 0);
		ev_inj_virq(&m, VM_A, 0x20, 0);
	}
	assert_int_equal(m.counted[VM_A], 25);
	/* a reinjection after a failed VM entry is the same interrupt */
	pit_tick(&m, 0xfe, 0);
	ev_inj_virq(&m, VM_A, 0x20, 0);
	ev_inj_virq(&m, VM_A, 0x20, 1);
	assert_int_equal(m.counted[VM_A], 26);
}

/* Without the host flag, the per-VM rule: from the VM's first injection on,
 * its irqchip events (including the kvm-pit kthread's, booked to the VM, not
 * the kthread) are not counted; another VM is not affected until it, too,
 * has been seen injecting. */
static void test_synthetic_vmx_per_vm_rule(void **state)
{
	struct model m = { 0 };

	(void)state;
	ev_inj_virq(&m, VM_A, 0x30, 0);		/* VM A injects once */
	for (int i = 0; i < 5; i++) {
		pit_tick(&m, 0xfe, 0);		/* booked to A by its struct kvm */
		ev_inj_virq(&m, VM_A, 0x20, 0);
	}
	assert_int_equal(m.counted[VM_A], 1 + 5);
	/* VM B raises by ioctl from its VMM thread, on an irqchip-only path */
	ev_set_irq(&m, VMM_TID, VM_B, 0, 1);
	ev_pic(&m, VMM_TID, 0x28, 3, 0x00, 0);
	assert_int_equal(m.counted[VM_B], 1);
	assert_int_equal(m.vector[VM_B], 0x2b);
}

static void test_pic_vector_and_owner(void **state)
{
	(void)state;
	assert_int_equal(irq_rules__pic_vector(0x08, 0), 0x08);	/* BIOS default IRQ0 */
	assert_int_equal(irq_rules__pic_vector(0x20, 0), 0x20);
	assert_int_equal(irq_rules__pic_vector(0x4f, 2), 0x4a);	/* ICW2's low bits ignored */
	assert_int_equal(irq_rules__vm_of(77, 1, 1234), 1234);
	assert_int_equal(irq_rules__vm_of(77, 0, 1234), 77);
	assert_int_equal(irq_rules__vm_of(77, 1, 0), 77);		/* no owner recorded */
}

/* ---- the collector names what the kernel booked (SYNTHETIC entries) ---- */

struct seen {
	int n;
	uint64_t pic08;
};

static int collect(const struct record *rec, void *ctx)
{
	struct seen *s = ctx;

	assert_int_equal(rec->metric, METRIC_VM_IRQS);
	/* real guests on this host may be drained too; only the synthetic pid counts */
	if (strcmp(rec->str[F_VM], "pid:999996"))
		return 0;
	s->n++;
	if (!strcmp(rec->str[F_IRQS_VECTOR], "0x08") && !strcmp(rec->str[F_IRQS_SOURCE], "pic") &&
	    !strcmp(rec->str[F_IRQS_VCPU], "0"))
		s->pic08 += rec->value;
	return 0;
}

static void test_synthetic_entries_through_collector(void **state)
{
	struct collector c = { .ops = &collector_irqs_ops };
	uint64_t fields[METRIC__COUNT] = { 0 };
	struct vmcache *vms;
	struct seen seen = { 0 };
	int ncpus = libbpf_num_possible_cpus();
	uint64_t vals[ncpus];

	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: loading BPF programs needs root (CI runs as root)\n");
		skip();
	}
	fields[METRIC_VM_IRQS] = FIELD_BIT(F_VM) | FIELD_BIT(F_IRQS_VCPU) | FIELD_BIT(F_IRQS_VECTOR) |
				 FIELD_BIT(F_IRQS_SOURCE);
	assert_int_equal(c.ops->start(&c, fields), 0);
	vms = vmcache__new("/proc");
	assert_non_null(vms);
	struct collector_env env = { vms, "testhost", collector__tai_offset() };
	struct irqs_bpf *skel = *(struct irqs_bpf **)c.priv;	/* first member of the backend */
	/* what a kvm-pit kthread's IRQ0 raise leaves once booked to its VM */
	struct irqs_key k = { .sec = (uint32_t)(time(NULL) + env.tai_offset - 5), .tgid = 999996,
			      .vcpu = 0, .vector = 0x08, .source = IRQ_SOURCE_PIC };

	memset(vals, 0, sizeof(vals));
	vals[0] = 17;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.irqs), &k, vals, BPF_ANY), 0);
	assert_true(c.ops->drain(&c, time(NULL) - 1, &env, collect, &seen) >= 1);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.pic08, 17);
	c.ops->stop(&c);
	vmcache__free(vms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_synthetic_pit_irqchip_only_host),
		cmocka_unit_test(test_synthetic_vmx_pit_counted_once),
		cmocka_unit_test(test_synthetic_vmx_per_vm_rule),
		cmocka_unit_test(test_pic_vector_and_owner),
		cmocka_unit_test(test_synthetic_entries_through_collector),
	};

	return cmocka_run_group_tests_name("irq_rules", tests, NULL, NULL);
}
