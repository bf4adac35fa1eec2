/* Interrupts delivered into guests, shared by kvmstat.bpf.c and irqs.bpf.c.
 *
 * Production hosts: kvm:kvm_inj_virq fires in the vCPU thread at injection
 * (vector known, vCPU = the thread). It misses APICv/AVIC-posted interrupts,
 * which kvm_apicv_accept_irq / kvm_apic_accept_irq report.
 * Everywhere: the irqchip side fires in the thread that raised the line or
 * sent the MSI (the VMM), with the destination APIC id and the vector:
 *   kvm_set_irq(gsi, level)   remembered per thread: only level=1 delivers
 *   kvm_pic_set_irq           chip, pin, imr; vector = PIC base + pin
 *   kvm_ioapic_set_irq        redirection entry: vector, dest, mask
 *   kvm_msi_set_irq           address (dest) and data (vector)
 * Once kvm_inj_virq fired for a process, its irqchip events are ignored, so
 * an interrupt is never counted twice.
 *
 * The including file defines, after including this header:
 *   static __always_inline void irq_delivered(__u32 tgid, __u32 tid, __s32 vcpu,
 *                                             __u32 vector, __u8 source);
 * vcpu is the destination APIC id (= vCPU index for the VMMs we know) or -1
 * when the delivering thread is the vCPU itself (tid).
 */
#ifndef KVMSCOPE_BPF_IRQ_LOGIC_H
#define KVMSCOPE_BPF_IRQ_LOGIC_H

#include "kvmscope.h"

#define IRQ_VECTOR_UNKNOWN 0xffffffffu

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);			/* tid */
	__type(value, __s32);			/* last kvm_set_irq level */
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

/* Set once kvm_inj_virq fired on this host (see hw_exits_any). */
volatile __u32 hw_irqs_any;

static __always_inline int irqchip_ignored(__u32 tgid)
{
	if (!hw_irqs_any)
		return 0;
	return bpf_map_lookup_elem(&hw_irq_seen, &tgid) != NULL;
}

static __always_inline int line_raised(__u32 tid)
{
	__s32 *level = bpf_map_lookup_elem(&irq_level, &tid);

	return level && *level;
}

/* Raw (tp_btf) programs: the arguments directly, no trace record built. */

SEC("tp_btf/kvm_inj_virq")
int BPF_PROG(tp_kvm_inj_virq, unsigned int vector, bool soft, bool reinjected)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u8 one = 1;

	if (reinjected)
		return 0;	/* the same interrupt again after a failed entry */
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
	__s32 lv = level;

	bpf_map_update_elem(&irq_level, &tid, &lv, BPF_ANY);
	return 0;
}

SEC("tp_btf/kvm_pic_set_irq")
int BPF_PROG(tp_kvm_pic_set_irq, __u8 chip, __u8 pin, __u8 elcr, __u8 imr, bool coalesced)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id, vector = IRQ_VECTOR_UNKNOWN;
	struct pic_bases *pb;

	pin &= 7;
	if (irqchip_ignored(tgid) || !line_raised(tid) || (imr >> pin) & 1)
		return 0;
	pb = bpf_map_lookup_elem(&pic_base, &tgid);
	if (pb && pb->known && chip < 2)
		vector = (chip ? pb->base[1] : pb->base[0]) + pin;
	/* the PIC's INTR output goes to the BSP's LINT0 */
	irq_delivered(tgid, tid, 0, vector, IRQ_SOURCE_PIC);
	return 0;
}

SEC("tp_btf/kvm_ioapic_set_irq")
int BPF_PROG(tp_kvm_ioapic_set_irq, __u64 e, int pin, bool coalesced)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;

	if (irqchip_ignored(tgid) || !line_raised(tid) || (e >> 16) & 1)
		return 0;	/* line lowered, or entry masked */
	irq_delivered(tgid, tid, (__s32)(__u8)(e >> 56), (__u8)e, IRQ_SOURCE_IOAPIC);
	return 0;
}

SEC("tp_btf/kvm_msi_set_irq")
int BPF_PROG(tp_kvm_msi_set_irq, __u64 address, __u64 data)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;

	if (irqchip_ignored(tgid))
		return 0;
	irq_delivered(tgid, (__u32)id, (__s32)(__u8)(address >> 12), (__u8)data, IRQ_SOURCE_MSI);
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
