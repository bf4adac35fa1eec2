/* kvmscope stat: kernel/user shared layout. */
#ifndef KVMSCOPE_BPF_KVMSTAT_TYPES_H
#define KVMSCOPE_BPF_KVMSTAT_TYPES_H

#include "kvmscope.h"

struct kvmstat_key {
	__u32 sec;		/* TAI second */
	__u32 tgid;
	__u32 tid;		/* 0 for irqchip events keyed by destination vCPU */
	__s32 vcpu;		/* vCPU index when known in the kernel, else -1 */
};

enum kvmstat_counter {
	KVMSTAT_HW_CLASS = 0,				/* + enum exit_class: kvm_exit */
	KVMSTAT_FB_CLASS = KVMSTAT_HW_CLASS + EXIT_CLASS__COUNT,	/* + class: fallback */
	KVMSTAT_HW_EPTV = KVMSTAT_FB_CLASS + EXIT_CLASS__COUNT,
	KVMSTAT_HW_IRQS,	/* kvm_inj_virq */
	KVMSTAT_FB_IRQS,	/* irqchip deliveries */
	KVMSTAT_EMUL,		/* kvm_emulate_insn */
	KVMSTAT_PF,		/* kvm_page_fault */
	KVMSTAT__N
};

struct kvmstat_val {
	__u64 v[KVMSTAT__N];
};

#endif
