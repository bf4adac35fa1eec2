/* Guest code builders: the tiny 32-bit paged guest that vmload runs.
 *
 * The guest runs in 64-bit long mode: this host's KVM (PVM) keeps CR0.PG
 * only with EFER.LME, so 32-bit paging is not an option; long mode works on
 * VMX/SVM hosts as well.
 * Guest physical layout (0..4 GiB identity mapped, 2 MiB pages, every root):
 *   0x001000  GDT (null, code64 0x08, data 0x10); 0x2000 TSS
 *   0x080000  PML4s, one per CR3 root (GUEST_MAX_ROOTS); then PDPT and PDs
 *   0x090000  per-vCPU counters (GUEST_DATA_SIZE each), written by the guest
 *   0x100000  per-vCPU IDT (256 gates)
 *   0x200000  per-vCPU interrupt stubs
 *   0x400000  per-vCPU program
 *   0x600000  per-vCPU stacks
 * Anything above RAM (MMIO target, IOAPIC, LAPIC) is mapped too, so guest
 * writes there exit to KVM's in-kernel devices or to vmload. */
#ifndef VMLOAD_GUEST_H
#define VMLOAD_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "vm.h"

#define GUEST_MEM_SIZE   (8u << 20)
#define GUEST_MAX_ROOTS  8
#define GUEST_FAULT_PORT 0x5ff	/* exception stubs report "OUT vector" here */

/* Counters the guest keeps per vCPU, at guest__data(mem, vcpu) + offset. */
#define GD_HLT           0x000	/* HLTs executed by --hlt loops */
#define GD_IDLE_HLT      0x004	/* HLTs executed while idle */
#define GD_STOP          0x008	/* set by the VMM: leave the CR3 loop */
#define GD_DONE          0x00c	/* set by the guest: program finished */
#define GD_CR3_SWITCHES  0x010
#define GD_ROOT_SWITCHES 0x020	/* uint32_t[GUEST_MAX_ROOTS] */
#define GD_IRQ           0x400	/* uint32_t[256], one per vector */
#define GUEST_DATA_SIZE  0x800

enum guest_op_kind {
	GOP_OUT,	/* count x OUT dx, al */
	GOP_IN,		/* count x IN al, dx */
	GOP_MMIO,	/* count x MOV [rbx=addr], eax */
	GOP_HLT,	/* count x (CLI; INC hlt; STI; HLT) */
	GOP_CR3,	/* switch roots round-robin with weighted spins until stopped */
	GOP_PIT,	/* program PIC (ICW2 = vector) and PIT, take count timer interrupts */
};

struct guest_op {
	enum guest_op_kind kind;
	uint32_t count;
	uint16_t port;
	uint32_t addr;
	int nr_roots;
	uint32_t spin[GUEST_MAX_ROOTS];	/* spin iterations after switching to root j */
	uint8_t vector;			/* pit: the PIC's vector base (IRQ0) */
	uint16_t pit_divisor;		/* pit: channel 0 reload value */
};

/* GDT, page directories and per-vCPU IDTs/stubs for nr_vcpus. */
void guest__build_common(uint8_t *mem, int nr_vcpus);
/* Writes vCPU vcpu's program (the ops in order, then an idle HLT loop) and
 * fills *boot. Returns 0 or -E2BIG if the program does not fit. */
int guest__build_program(uint8_t *mem, int vcpu, const struct guest_op *ops, int nr_ops,
			 struct vm_boot *boot);
uint32_t guest__root(int j);

static inline volatile uint32_t *guest__counter(uint8_t *mem, int vcpu, uint32_t off)
{
	return (volatile uint32_t *)(mem + 0x90000 + (size_t)vcpu * GUEST_DATA_SIZE + off);
}

#endif
