/* Interrupts delivered into guests, shared by kvmstat.bpf.c and irqs.bpf.c.
 *
 * Production hosts: kvm:kvm_inj_virq fires in the vCPU thread at injection
 * (vector known, vCPU = the thread). It misses APICv/AVIC-posted interrupts,
 * which kvm_apicv_accept_irq / kvm_apic_accept_irq report.
 * Everywhere: the irqchip side fires in the thread that raised the line or
 * sent the MSI, with the destination APIC id and the vector:
 *   kvm_set_irq(gsi, level)   remembered per thread: only level=1 delivers
 *   kvm_pic_set_irq           chip, pin, imr; vector = PIC base + pin
 *   kvm_ioapic_set_irq        redirection entry: vector, dest, mask
 *   kvm_msi_set_irq           address (dest) and data (vector)
 * That thread is the VMM for KVM_IRQ_LINE / KVM_SIGNAL_MSI, but one of KVM's
 * own kernel workers for the in-kernel PIT (the kvm-pit/<pid> kthread) and
 * for irqfd injection from a workqueue: those are booked to the VM whose
 * struct kvm the worker is running work for (irq__vm_of_current).
 * The counting rules are bpf/irq_rules.h: on a host where kvm_inj_virq
 * fires, irqchip events are not counted, so an interrupt is never counted
 * twice (once raised by kvm-pit, once injected in the vCPU).
 *
 * The including file defines, after including this header:
 *   static __always_inline void irq_delivered(__u32 tgid, __u32 tid, __s32 vcpu,
 *                                             __u32 vector, __u8 source);
 * tgid is the VM's process; vcpu is the destination APIC id (= vCPU index
 * for the VMMs we know) or -1 when the delivering thread is the vCPU itself
 * (tid).
 */
#ifndef KVMSCOPE_BPF_IRQ_LOGIC_H
#define KVMSCOPE_BPF_IRQ_LOGIC_H

#include "kvmscope.h"
#include "irq_rules.h"

#define IRQ_VECTOR_UNKNOWN 0xffffffffu

/* The last kvm_set_irq of a thread: the PIC/IOAPIC events that follow in
 * the same thread belong to it. */
struct irq_line {
	__s32 level;
	__u32 vm_tgid;		/* the VM the line belongs to */
	__u64 kvm;		/* its struct kvm, when the raiser was found acting for one */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);			/* tid */
	__type(value, struct irq_line);
} irq_level SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* tgid */
	__type(value, __u8);
} hw_irq_seen SEC(".maps");

/* PIC vector bases per VM, learned from the kernel's PIC state whenever a
 * tp_btf KVM event with a vcpu pointer fires (see irq__learn_pic). */
struct pic_bases {
	__u8 base[2];
	__u8 known;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* tgid */
	__type(value, struct pic_bases);
} pic_base SEC(".maps");

static __always_inline void irq_delivered(__u32 tgid, __u32 tid, __s32 vcpu, __u32 vector,
					  __u8 source);

/* Set once kvm_inj_virq fired on this host. hw_irqs_host is set by user
 * space before attaching when the host has hardware virtualization
 * (kvm_intel, kvm_amd), so that not even a VM's first interrupt is counted
 * at the irqchip as well as at injection. */
volatile __u32 hw_irqs_any;
volatile __u32 hw_irqs_host;

#define PF_KTHREAD_ 0x00200000	/* task_struct.flags: a kernel thread */

/* irqfd_inject() runs, from a workqueue, the irqfd injections that cannot be
 * done in the eventfd wake-up; weak: without it only that attribution is lost. */
extern const void irqfd_inject __ksym __weak;

static __always_inline int irqchip_ignored(__u32 vm_tgid)
{
	if (hw_irqs_host)
		return 1;
	if (!hw_irqs_any)
		return 0;
	return bpf_map_lookup_elem(&hw_irq_seen, &vm_tgid) != NULL;
}

/* Which VM the current thread acts for. A VMM thread is its VM. A KVM
 * kernel worker is found from what it runs now: the kvm-pit kthread worker's
 * current work is its struct kvm_pit's `expired` (checked: that pit is its
 * kvm's arch.vpit); an irqfd injection's work is kvm_kernel_irqfd.inject
 * (checked: the work function is irqfd_inject). Reads that do not check out
 * leave the thread's own process. */
static __always_inline void irq__vm_of_current(struct irq_line *line)
{
	struct task_struct *task = bpf_get_current_task_btf();
	unsigned long self = (unsigned long)task, data, work;
	struct kthread_worker *kw;
	struct kvm *kvm = NULL;
	struct worker *wq;
	struct kthread *kt;

	line->vm_tgid = bpf_get_current_pid_tgid() >> 32;
	line->kvm = 0;
	/* a trusted BTF pointer: a plain load, no helper call, for every VMM thread */
	if (!(task->flags & PF_KTHREAD_))
		return;
	/* kernels before 5.17 keep a kthread's data elsewhere: their workers'
	 * interrupts stay with the worker rather than failing the object */
	if (!bpf_core_field_exists(struct task_struct, worker_private))
		return;
	kt = (struct kthread *)BPF_CORE_READ(task, worker_private);
	data = (unsigned long)BPF_CORE_READ(kt, data);
	if (!data)
		return;
	/* a kthread_worker (kvm-pit/<pid>) running its PIT's expired work */
	kw = (struct kthread_worker *)data;
	wq = (struct worker *)data;
	if ((unsigned long)BPF_CORE_READ(kw, task) == self) {
		work = (unsigned long)BPF_CORE_READ(kw, current_work);
		if (work) {
			struct kvm_pit *pit = (struct kvm_pit *)(work -
					bpf_core_field_offset(struct kvm_pit, expired));

			kvm = BPF_CORE_READ(pit, kvm);
			if (kvm && (unsigned long)BPF_CORE_READ(kvm, arch.vpit) != (unsigned long)pit)
				kvm = NULL;
		}
	}
	/* a workqueue worker running irqfd_inject */
	if (!kvm && (unsigned long)&irqfd_inject &&
	    (unsigned long)BPF_CORE_READ(wq, task) == self &&
	    (unsigned long)BPF_CORE_READ(wq, current_func) == (unsigned long)&irqfd_inject) {
		work = (unsigned long)BPF_CORE_READ(wq, current_work);
		if (work) {
			struct kvm_kernel_irqfd *irqfd = (struct kvm_kernel_irqfd *)(work -
					bpf_core_field_offset(struct kvm_kernel_irqfd, inject));

			kvm = BPF_CORE_READ(irqfd, kvm);
		}
	}
	if (!kvm)
		return;
	line->kvm = (unsigned long)kvm;
	line->vm_tgid = irq_rules__vm_of(line->vm_tgid, 1, BPF_CORE_READ(kvm, userspace_pid));
}

/* The PIC's vector base for chip: read from the VM's own PIC state when the
 * struct kvm is known (kernel workers), else as last learned from its vCPUs. */
static __always_inline __u32 irq__pic_vector(const struct irq_line *line, __u8 chip, __u8 pin)
{
	struct pic_bases *pb;

	if (chip > 1)
		return IRQ_VECTOR_UNKNOWN;
	if (line->kvm) {
		struct kvm *kvm = (struct kvm *)line->kvm;
		struct kvm_pic *pic = BPF_CORE_READ(kvm, arch.vpic);

		if (pic)
			return irq_rules__pic_vector(chip ? BPF_CORE_READ(pic, pics[1].irq_base)
							  : BPF_CORE_READ(pic, pics[0].irq_base), pin);
	}
	pb = bpf_map_lookup_elem(&pic_base, &line->vm_tgid);
	if (pb && pb->known)
		return irq_rules__pic_vector(pb->base[chip], pin);
	return IRQ_VECTOR_UNKNOWN;
}

/* Raw (tp_btf) programs: the arguments directly, no trace record built. */

SEC("tp_btf/kvm_inj_virq")
int BPF_PROG(tp_kvm_inj_virq, unsigned int vector, bool soft, bool reinjected)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u8 one = 1;

	if (!irq_rules__injection_counts(reinjected))
		return 0;
	if (!hw_irqs_any)
		hw_irqs_any = 1;
	if (!bpf_map_lookup_elem(&hw_irq_seen, &tgid))
		bpf_map_update_elem(&hw_irq_seen, &tgid, &one, BPF_ANY);
	irq_delivered(tgid, (__u32)id, -1, vector, soft ? IRQ_SOURCE_SOFT : IRQ_SOURCE_LAPIC);
	return 0;
}

SEC("tp_btf/kvm_set_irq")
int BPF_PROG(tp_kvm_set_irq, unsigned int gsi, int level, int irq_source_id)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct irq_line line = { .level = level }, *cur;

	irq__vm_of_current(&line);
	/* only this thread reads or writes its entry: overwrite it in place,
	 * cheaper than a hash update */
	cur = bpf_map_lookup_elem(&irq_level, &tid);
	if (cur)
		*cur = line;
	else
		bpf_map_update_elem(&irq_level, &tid, &line, BPF_ANY);
	return 0;
}

SEC("tp_btf/kvm_pic_set_irq")
int BPF_PROG(tp_kvm_pic_set_irq, __u8 chip, __u8 pin, __u8 elcr, __u8 imr, bool coalesced)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct irq_line *line = bpf_map_lookup_elem(&irq_level, &tid);

	pin &= 7;
	if (!line || !irq_rules__chip_counts(irqchip_ignored(line->vm_tgid), line->level,
					     (imr >> pin) & 1, coalesced))
		return 0;
	/* the PIC's INTR output goes to the BSP's LINT0 */
	irq_delivered(line->vm_tgid, tid, 0, irq__pic_vector(line, chip, pin), IRQ_SOURCE_PIC);
	return 0;
}

SEC("tp_btf/kvm_ioapic_set_irq")
int BPF_PROG(tp_kvm_ioapic_set_irq, __u64 e, int pin, bool coalesced)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct irq_line *line = bpf_map_lookup_elem(&irq_level, &tid);

	if (!line || !irq_rules__chip_counts(irqchip_ignored(line->vm_tgid), line->level,
					     (e >> 16) & 1, coalesced))
		return 0;	/* line lowered, entry masked, or already pending */
	irq_delivered(line->vm_tgid, tid, (__s32)(__u8)(e >> 56), (__u8)e, IRQ_SOURCE_IOAPIC);
	return 0;
}

SEC("tp_btf/kvm_msi_set_irq")
int BPF_PROG(tp_kvm_msi_set_irq, __u64 address, __u64 data)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct irq_line line = { .level = 1 };

	/* KVM_SIGNAL_MSI has no kvm_set_irq before it; an irqfd's MSI has */
	irq__vm_of_current(&line);
	if (!irq_rules__chip_counts(irqchip_ignored(line.vm_tgid), 1, 0, 0))
		return 0;
	irq_delivered(line.vm_tgid, tid, (__s32)(__u8)(address >> 12), (__u8)data, IRQ_SOURCE_MSI);
	return 0;
}

/* Learn the VM's PIC vector bases from the kernel's state: the vector of a
 * PIC interrupt is not in any tracepoint. */
static __always_inline void irq__learn_pic(struct kvm_vcpu *vcpu)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct kvm_pic *pic = BPF_CORE_READ(vcpu, kvm, arch.vpic);
	struct pic_bases pb = {};

	if (!pic)
		return;
	pb.base[0] = BPF_CORE_READ(pic, pics[0].irq_base);
	pb.base[1] = BPF_CORE_READ(pic, pics[1].irq_base);
	pb.known = 1;
	bpf_map_update_elem(&pic_base, &tgid, &pb, BPF_ANY);
}

#endif
