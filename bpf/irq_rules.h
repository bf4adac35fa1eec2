/* vm.irqs: when an irqchip-side or injection event is one interrupt.
 * Pure functions over plain values, used by bpf/irq_logic.h and by the unit
 * tests, so the rules the tests replay are the ones the kernel side runs.
 *
 * What vm.irqs counts: an interrupt the VM's interrupt controller accepted.
 * Production hosts (VMX/SVM) see that at injection (kvm_inj_virq, in the
 * vCPU thread). Elsewhere the irqchip side is the only witness: a raised
 * line (level 1) the PIC or IOAPIC took, unmasked and not coalesced into an
 * interrupt already pending. A lowered line (level 0) is never an interrupt.
 * A host counts through one of the two, never both: once kvm_inj_virq is
 * known to fire (the host has kvm_intel/kvm_amd, or it fired for the VM),
 * that VM's irqchip events are not counted. */
#ifndef KVMSCOPE_BPF_IRQ_RULES_H
#define KVMSCOPE_BPF_IRQ_RULES_H

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* The PIC's output (or a coalesced edge) is one interrupt only when the
 * line went up, the pin is unmasked, and it was not already pending. */
static __always_inline int irq_rules__chip_counts(int hw_injection_seen, int level, int masked,
						  int coalesced)
{
	if (hw_injection_seen)
		return 0;	/* kvm_inj_virq counts this VM's interrupts */
	return level != 0 && !masked && !coalesced;
}

/* kvm_inj_virq: a reinjection is the same interrupt after a failed entry. */
static __always_inline int irq_rules__injection_counts(int reinjected)
{
	return !reinjected;
}

/* PIC vector: the base the guest set with ICW2 (low 3 bits ignored, as the
 * 8259A does) plus the pin. */
static __always_inline unsigned int irq_rules__pic_vector(unsigned char irq_base, unsigned char pin)
{
	return (unsigned int)(irq_base & 0xf8) + (pin & 7);
}

/* The VM a kernel worker acts for: the owner of the struct kvm it was
 * found to act on (kvm->userspace_pid), else the thread's own process (a
 * VMM thread raising a line by ioctl is the VM itself). */
static __always_inline unsigned int irq_rules__vm_of(unsigned int thread_tgid, int kvm_found,
						     int kvm_userspace_pid)
{
	if (kvm_found && kvm_userspace_pid > 0)
		return (unsigned int)kvm_userspace_pid;
	return thread_tgid;
}

#endif
