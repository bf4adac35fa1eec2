#include <stdio.h>

#include <linux/types.h>

#include "collectors/exit_reasons.h"
#include "kvmscope.h"

/* Intel SDM vol. 3, appendix C (names as the kernel's VMX_EXIT_REASONS). */
static const char *const vmx_names[] = {
	[0] = "EXCEPTION_NMI", [1] = "EXTERNAL_INTERRUPT", [2] = "TRIPLE_FAULT",
	[3] = "INIT_SIGNAL", [4] = "SIPI_SIGNAL", [7] = "INTERRUPT_WINDOW",
	[8] = "NMI_WINDOW", [9] = "TASK_SWITCH", [10] = "CPUID", [12] = "HLT",
	[13] = "INVD", [14] = "INVLPG", [15] = "RDPMC", [16] = "RDTSC", [18] = "VMCALL",
	[19] = "VMCLEAR", [20] = "VMLAUNCH", [21] = "VMPTRLD", [22] = "VMPTRST",
	[23] = "VMREAD", [24] = "VMRESUME", [25] = "VMWRITE", [26] = "VMOFF", [27] = "VMON",
	[28] = "CR_ACCESS", [29] = "DR_ACCESS", [30] = "IO_INSTRUCTION", [31] = "MSR_READ",
	[32] = "MSR_WRITE", [33] = "INVALID_STATE", [34] = "MSR_LOAD_FAIL",
	[36] = "MWAIT_INSTRUCTION", [37] = "MONITOR_TRAP_FLAG", [39] = "MONITOR_INSTRUCTION",
	[40] = "PAUSE_INSTRUCTION", [41] = "MCE_DURING_VMENTRY", [43] = "TPR_BELOW_THRESHOLD",
	[44] = "APIC_ACCESS", [45] = "EOI_INDUCED", [46] = "GDTR_IDTR", [47] = "LDTR_TR",
	[48] = "EPT_VIOLATION", [49] = "EPT_MISCONFIG", [50] = "INVEPT", [51] = "RDTSCP",
	[52] = "PREEMPTION_TIMER", [53] = "INVVPID", [54] = "WBINVD", [55] = "XSETBV",
	[56] = "APIC_WRITE", [57] = "RDRAND", [58] = "INVPCID", [59] = "VMFUNC",
	[60] = "ENCLS", [61] = "RDSEED", [62] = "PML_FULL", [63] = "XSAVES", [64] = "XRSTORS",
	[67] = "UMWAIT", [68] = "TPAUSE", [74] = "BUS_LOCK", [75] = "NOTIFY",
};

struct code_name {
	uint32_t code;
	const char *name;
};

/* AMD APM vol. 2, appendix C (names as the kernel's SVM_EXIT_REASONS). */
static const struct code_name svm_names[] = {
	{ 0x000, "read_cr0" }, { 0x003, "read_cr3" }, { 0x004, "read_cr4" }, { 0x008, "read_cr8" },
	{ 0x010, "write_cr0" }, { 0x013, "write_cr3" }, { 0x014, "write_cr4" },
	{ 0x018, "write_cr8" }, { 0x040, "excp_de" }, { 0x041, "excp_db" }, { 0x043, "excp_bp" },
	{ 0x046, "excp_ud" }, { 0x047, "excp_nm" }, { 0x04e, "excp_pf" }, { 0x052, "excp_mc" },
	{ 0x060, "interrupt" }, { 0x061, "nmi" }, { 0x062, "smi" }, { 0x063, "init" },
	{ 0x064, "vintr" }, { 0x065, "cr0_sel_write" }, { 0x06e, "rdtsc" }, { 0x06f, "rdpmc" },
	{ 0x070, "pushf" }, { 0x071, "popf" }, { 0x072, "cpuid" }, { 0x073, "rsm" },
	{ 0x074, "iret" }, { 0x075, "swint" }, { 0x076, "invd" }, { 0x077, "pause" },
	{ 0x078, "hlt" }, { 0x079, "invlpg" }, { 0x07a, "invlpga" }, { 0x07b, "io" },
	{ 0x07c, "msr" }, { 0x07d, "task_switch" }, { 0x07e, "ferr_freeze" },
	{ 0x07f, "shutdown" }, { 0x080, "vmrun" }, { 0x081, "hypercall" }, { 0x082, "vmload" },
	{ 0x083, "vmsave" }, { 0x084, "stgi" }, { 0x085, "clgi" }, { 0x086, "skinit" },
	{ 0x087, "rdtscp" }, { 0x088, "icebp" }, { 0x089, "wbinvd" }, { 0x08a, "monitor" },
	{ 0x08b, "mwait" }, { 0x08c, "mwait_cond" }, { 0x08d, "xsetbv" }, { 0x08e, "rdpru" },
	{ 0x08f, "efer_write_trap" }, { 0x400, "npf" }, { 0x401, "avic_incomplete_ipi" },
	{ 0x402, "avic_unaccelerated_access" }, { 0x403, "vmgexit" },
};

/* KVM_EXIT_* of include/uapi/linux/kvm.h: the fallback source's reasons. */
static const char *const kvm_exit_names[] = {
	[0] = "UNKNOWN", [1] = "EXCEPTION", [2] = "IO", [3] = "HYPERCALL", [4] = "DEBUG",
	[5] = "HLT", [6] = "MMIO", [7] = "IRQ_WINDOW_OPEN", [8] = "SHUTDOWN",
	[9] = "FAIL_ENTRY", [10] = "INTR", [11] = "SET_TPR", [12] = "TPR_ACCESS",
	[17] = "NMI", [18] = "INTERNAL_ERROR", [19] = "OSI", [23] = "WATCHDOG",
	[24] = "SYSTEM_EVENT", [27] = "IOAPIC_EOI", [28] = "HYPERV", [29] = "ARM_NISV",
	[30] = "X86_RDMSR", [31] = "X86_WRMSR", [32] = "DIRTY_RING_FULL", [33] = "AP_RESET_HOLD",
	[34] = "X86_BUS_LOCK", [35] = "XEN", [36] = "RISCV_SBI", [37] = "RISCV_CSR",
	[38] = "NOTIFY", [39] = "LOONGARCH_IOCSR", [40] = "MEMORY_FAULT",
};

const char *exit_reason__name(uint8_t isa, uint32_t reason, char *buf, size_t len)
{
	const char *name = NULL;

	if (isa == EXIT_ISA_VMX) {
		uint32_t basic = reason & 0xffff;

		if (basic < sizeof(vmx_names) / sizeof(vmx_names[0]))
			name = vmx_names[basic];
	} else if (isa == EXIT_ISA_SVM) {
		for (size_t i = 0; i < sizeof(svm_names) / sizeof(svm_names[0]); i++)
			if (svm_names[i].code == reason)
				name = svm_names[i].name;
	} else if (reason < sizeof(kvm_exit_names) / sizeof(kvm_exit_names[0])) {
		name = kvm_exit_names[reason];
	}
	if (name)
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "0x%x", reason);
	return buf;
}

const char *exit_class__name(uint8_t class)
{
	static const char *const names[EXIT_CLASS__COUNT] = {
		[EXIT_CLASS_HALT] = "haltx", [EXIT_CLASS_IRQ] = "irqx", [EXIT_CLASS_IRQW] = "irqwx",
		[EXIT_CLASS_IO] = "iox", [EXIT_CLASS_MMIO] = "mmiox", [EXIT_CLASS_OTHER] = "other",
	};

	return class < EXIT_CLASS__COUNT ? names[class] : "other";
}

const char *irq_source__name(uint16_t source)
{
	static const char *const names[IRQ_SOURCE__COUNT] = {
		[IRQ_SOURCE_PIC] = "pic", [IRQ_SOURCE_IOAPIC] = "ioapic", [IRQ_SOURCE_MSI] = "msi",
		[IRQ_SOURCE_LAPIC] = "lapic", [IRQ_SOURCE_SOFT] = "soft",
	};

	return source < IRQ_SOURCE__COUNT ? names[source] : "unknown";
}
