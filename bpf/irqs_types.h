/* vm.irqs: kernel/user shared layout. */
#ifndef KVMSCOPE_BPF_IRQS_TYPES_H
#define KVMSCOPE_BPF_IRQS_TYPES_H

struct irqs_key {
	__u32 sec;		/* TAI second */
	__u32 tgid;
	__u32 tid;		/* delivering vCPU thread (kvm_inj_virq), else 0 */
	__s32 vcpu;		/* destination vCPU when known in the kernel, else -1 */
	__u32 vector;		/* IRQ_VECTOR_UNKNOWN when not known */
	__u16 source;		/* enum irq_source */
	__u16 subsecond;	/* ms bucket lower bound */
};

struct irqs_config {
	__u32 want_thread;
	__u32 want_vector;
	__u32 want_source;
	__u32 want_subsecond;
};

#endif
