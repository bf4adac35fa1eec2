/* Types shared by the kernel side (bpf/) and user space (src/collectors/).
 * __u32-style types only, as in libbpf-tools. */
#ifndef KVMSCOPE_BPF_KVMSCOPE_H
#define KVMSCOPE_BPF_KVMSCOPE_H

#define NSEC_PER_SEC 1000000000ULL

/* Exit classes of kvmstat / CA. */
enum exit_class {
	EXIT_CLASS_HALT,	/* haltx */
	EXIT_CLASS_IRQ,		/* irqx: external interrupt */
	EXIT_CLASS_IRQW,	/* irqwx: interrupt window */
	EXIT_CLASS_IO,		/* iox */
	EXIT_CLASS_MMIO,	/* mmiox */
	EXIT_CLASS_OTHER,
	EXIT_CLASS__COUNT
};

/* Where an exit was seen: hardware exit tracepoint (VMX/SVM) or this
 * machine's fallback (kvm_pio/kvm_mmio/kvm_vcpu_wakeup/kvm_userspace_exit). */
enum exit_isa {
	EXIT_ISA_FALLBACK = 0,
	EXIT_ISA_VMX = 1,	/* same values as kvm_exit's isa field */
	EXIT_ISA_SVM = 2,
};

/* Fallback reasons: KVM_EXIT_* numbers of the userspace exit, which the
 * fallback path uses as "reason" (KVM_EXIT_IO = 2, KVM_EXIT_HLT = 5,
 * KVM_EXIT_MMIO = 6, KVM_EXIT_INTR = 10, ...). */
#define FALLBACK_REASON_IO   2
#define FALLBACK_REASON_HLT  5
#define FALLBACK_REASON_MMIO 6
#define FALLBACK_REASON_INTR 10

/* Interrupt sources (vm.irqs "source"). */
enum irq_source {
	IRQ_SOURCE_PIC,
	IRQ_SOURCE_IOAPIC,
	IRQ_SOURCE_MSI,
	IRQ_SOURCE_LAPIC,	/* injected by the local APIC (kvm_inj_virq) */
	IRQ_SOURCE_SOFT,	/* software interrupt (INTn) reinjected */
	IRQ_SOURCE__COUNT
};

#endif
