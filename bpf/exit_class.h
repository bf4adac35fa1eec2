/* Exit reason -> class, for VMX, SVM and the fallback source. Pure
 * functions: included by the BPF programs and by user space (tests). */
#ifndef KVMSCOPE_BPF_EXIT_CLASS_H
#define KVMSCOPE_BPF_EXIT_CLASS_H

#include "kvmscope.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Exit reason -> class, for VMX (Intel SDM appendix C) and SVM (AMD APM
 * vol. 2 appendix C). info1 is SVM's exit_info_1 (the #NPF error code). */
static __always_inline __u8 exit__class(__u8 isa, __u32 reason, __u64 info1)
{
	if (isa == EXIT_ISA_VMX) {
		switch (reason & 0xffff) {
		case 12: return EXIT_CLASS_HALT;	/* HLT */
		case 1:  return EXIT_CLASS_IRQ;		/* EXTERNAL_INTERRUPT */
		case 7:  return EXIT_CLASS_IRQW;	/* INTERRUPT_WINDOW */
		case 30: return EXIT_CLASS_IO;		/* IO_INSTRUCTION */
		case 49: return EXIT_CLASS_MMIO;	/* EPT_MISCONFIG: KVM's MMIO SPTEs */
		default: return EXIT_CLASS_OTHER;
		}
	}
	if (isa == EXIT_ISA_SVM) {
		switch (reason) {
		case 0x078: return EXIT_CLASS_HALT;	/* HLT */
		case 0x060: return EXIT_CLASS_IRQ;	/* INTR */
		case 0x064: return EXIT_CLASS_IRQW;	/* VINTR */
		case 0x07b: return EXIT_CLASS_IO;	/* IOIO */
		case 0x400:				/* NPF: MMIO when the RSVD bit is set */
			return (info1 & 0x8) ? EXIT_CLASS_MMIO : EXIT_CLASS_OTHER;
		default: return EXIT_CLASS_OTHER;
		}
	}
	switch (reason) {
	case FALLBACK_REASON_IO:   return EXIT_CLASS_IO;
	case FALLBACK_REASON_MMIO: return EXIT_CLASS_MMIO;
	case FALLBACK_REASON_HLT:  return EXIT_CLASS_HALT;
	default:                   return EXIT_CLASS_OTHER;
	}
}

/* Is this exit an EPT violation / NPT fault that is not MMIO? */
static __always_inline int exit__is_eptv(__u8 isa, __u32 reason, __u64 info1)
{
	if (isa == EXIT_ISA_VMX)
		return (reason & 0xffff) == 48;
	if (isa == EXIT_ISA_SVM)
		return reason == 0x400 && !(info1 & 0x8);
	return 0;
}

#endif
