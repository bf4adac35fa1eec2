#include "guest.h"

#include <errno.h>
#include <string.h>

#define GDT_BASE    0x1000u
#define TSS_BASE    0x2000u
#define PML4_BASE   0x80000u	/* one per root */
#define PDPT_BASE   0x88000u	/* shared by all roots */
#define PD_BASE     0x89000u	/* 4 page directories: 0..4 GiB in 2 MiB pages */
#define DATA_BASE   0x90000u
#define IDT_BASE    0x100000u
#define STUB_BASE   0x200000u
#define STUB_STRIDE 0x2000u
#define PROG_BASE   0x400000u
#define PROG_SIZE   0x1000u
#define STACK_BASE  0x600000u
#define LAPIC_EOI   0xfee000b0u
#define LAPIC_SVR   0xfee000f0u

/* A forward-only byte emitter into guest memory; jumps are backward (loops)
 * or patched once the target is known. */
struct emit {
	uint8_t *mem;
	uint32_t pc, end;	/* guest addresses */
	int overflow;
};

static void b(struct emit *e, uint8_t v)
{
	if (e->pc >= e->end) {
		e->overflow = 1;
		return;
	}
	e->mem[e->pc++] = v;
}

static void d32(struct emit *e, uint32_t v)
{
	b(e, v); b(e, v >> 8); b(e, v >> 16); b(e, v >> 24);
}

/* 64-bit mode encodings. 32-bit moves zero-extend into the full register.
 * [abs32] operands use ModRM+SIB (mod 00, rm 100, SIB 0x25): plain mod 00
 * rm 101 would be RIP-relative. abs32 is sign-extended, so it is only used
 * for guest RAM (< 2 GiB); MMIO above goes through a register. */
static void mov_ecx(struct emit *e, uint32_t v) { b(e, 0xb9); d32(e, v); }
static void mov_edx(struct emit *e, uint32_t v) { b(e, 0xba); d32(e, v); }
static void mov_eax(struct emit *e, uint32_t v) { b(e, 0xb8); d32(e, v); }
static void mov_ebx(struct emit *e, uint32_t v) { b(e, 0xbb); d32(e, v); }
static void inc_mem(struct emit *e, uint32_t a) { b(e, 0xff); b(e, 0x04); b(e, 0x25); d32(e, a); }
static void mov_mem_imm(struct emit *e, uint32_t a, uint32_t v)
{
	b(e, 0xc7); b(e, 0x04); b(e, 0x25); d32(e, a); d32(e, v);
}
/* mov al, val; out port, al */
static void out_imm(struct emit *e, uint8_t port, uint8_t val)
{
	b(e, 0xb0); b(e, val);
	b(e, 0xe6); b(e, port);
}
/* cmp dword [abs32], imm32 */
static void cmp_mem_imm(struct emit *e, uint32_t a, uint32_t v)
{
	b(e, 0x81); b(e, 0x3c); b(e, 0x25); d32(e, a); d32(e, v);
}
/* mov dword [rax], imm32 */
static void mov_at_rax_imm(struct emit *e, uint32_t v) { b(e, 0xc7); b(e, 0x00); d32(e, v); }

/* DEC ECX; JNZ top (rel32, so loop bodies of any size work). 0x49 would be a
 * REX prefix here, hence the two-byte DEC. */
static void loop_to(struct emit *e, uint32_t top)
{
	b(e, 0xff); b(e, 0xc9);
	b(e, 0x0f); b(e, 0x85);
	d32(e, top - (e->pc + 4));
}

uint32_t guest__root(int j)
{
	return PML4_BASE + (uint32_t)j * 0x1000u;
}

static void set_gate(uint8_t *idt, int vec, uint32_t handler)
{
	uint8_t *g = idt + vec * 16;

	memset(g, 0, 16);
	g[0] = handler; g[1] = handler >> 8;
	g[2] = 0x08; g[3] = 0x00;		/* code selector */
	g[4] = 0x00; g[5] = 0x8e;		/* present, DPL0, interrupt gate, no IST */
	g[6] = handler >> 16; g[7] = handler >> 24;
}

void guest__build_common(uint8_t *mem, int nr_vcpus)
{
	static const uint64_t gdt[3] = {
		0, 0x00af9a000000ffffull, 0x00cf92000000ffffull,	/* null, code64, data */
	};
	uint64_t *pdpt = (uint64_t *)(mem + PDPT_BASE);
	int j, i, v;

	memcpy(mem + GDT_BASE, gdt, sizeof(gdt));
	/* Every root maps 0..4 GiB identically (2 MiB pages) through the same
	 * lower levels: the CR3 value differs, what the guest sees does not. */
	for (i = 0; i < 4; i++) {
		uint64_t *pd = (uint64_t *)(mem + PD_BASE + i * 0x1000);

		pdpt[i] = (PD_BASE + i * 0x1000) | 0x3;		/* P | RW */
		for (j = 0; j < 512; j++)
			pd[j] = (((uint64_t)i << 30) + ((uint64_t)j << 21)) | 0x83;	/* P | RW | PS */
	}
	for (j = 0; j < GUEST_MAX_ROOTS; j++) {
		uint64_t *pml4 = (uint64_t *)(mem + guest__root(j));

		memset(pml4, 0, 4096);
		pml4[0] = PDPT_BASE | 0x3;
	}
	for (v = 0; v < nr_vcpus; v++) {
		uint8_t *idt = mem + IDT_BASE + v * 0x1000;
		struct emit e = { mem, STUB_BASE + v * STUB_STRIDE, STUB_BASE + (v + 1) * STUB_STRIDE, 0 };
		uint32_t counters = DATA_BASE + v * GUEST_DATA_SIZE;

		memset(mem + counters, 0, GUEST_DATA_SIZE);
		for (i = 0; i < 256; i++) {
			set_gate(idt, i, e.pc);
			if (i < 32) {
				/* An exception means the guest program is wrong: report
				 * the vector to the VMM and stop. */
				mov_edx(&e, GUEST_FAULT_PORT);
				b(&e, 0xb0); b(&e, i);	/* mov al, vector */
				b(&e, 0xee);		/* out dx, al */
				b(&e, 0xeb); b(&e, 0xfe);	/* jmp $ */
			} else {
				/* Count the vector where the VMM can read it, EOI the
				 * LAPIC (PIC lines run in auto-EOI), return. */
				inc_mem(&e, counters + GD_IRQ + i * 4);
				b(&e, 0x50);		/* push rax */
				mov_eax(&e, LAPIC_EOI);
				mov_at_rax_imm(&e, 0);
				b(&e, 0x58);		/* pop rax */
				b(&e, 0x48); b(&e, 0xcf);	/* iretq */
			}
		}
	}
}

int guest__build_program(uint8_t *mem, int vcpu, const struct guest_op *ops, int nr_ops,
			 struct vm_boot *boot)
{
	uint32_t data = DATA_BASE + vcpu * GUEST_DATA_SIZE;
	struct emit e = { mem, PROG_BASE + vcpu * PROG_SIZE, PROG_BASE + (vcpu + 1) * PROG_SIZE, 0 };
	uint32_t top, outer;
	int k, j, pit = -1;

	boot->rip = e.pc;
	boot->rsp = STACK_BASE + (vcpu + 1) * 0x1000;
	boot->cr3 = guest__root(0);
	boot->gdt_base = GDT_BASE;
	boot->gdt_limit = 3 * 8 - 1;
	boot->idt_base = IDT_BASE + vcpu * 0x1000;
	boot->idt_limit = 256 * 16 - 1;
	boot->tss_base = TSS_BASE;

	mov_eax(&e, LAPIC_SVR);
	mov_at_rax_imm(&e, 0x1ff);		/* software-enable the LAPIC */
	b(&e, 0xfb);				/* sti */
	for (k = 0; k < nr_ops; k++) {
		const struct guest_op *op = &ops[k];

		switch (op->kind) {
		case GOP_OUT:
			mov_edx(&e, op->port);
			mov_ecx(&e, op->count);
			top = e.pc;
			b(&e, 0xee);			/* out dx, al */
			loop_to(&e, top);
			break;
		case GOP_IN:
			mov_edx(&e, op->port);
			mov_ecx(&e, op->count);
			top = e.pc;
			b(&e, 0xec);			/* in al, dx */
			loop_to(&e, top);
			break;
		case GOP_MMIO:
			mov_ebx(&e, op->addr);
			mov_ecx(&e, op->count);
			top = e.pc;
			b(&e, 0x89); b(&e, 0x03);	/* mov [rbx], eax */
			loop_to(&e, top);
			break;
		case GOP_HLT:
			/* Counted before the HLT with IF=0, and STI's one-instruction
			 * shadow keeps a wake-up pending until HLT runs: every count
			 * is exactly one HLT, and no wake-up is lost. */
			mov_ecx(&e, op->count);
			top = e.pc;
			b(&e, 0xfa);			/* cli */
			inc_mem(&e, data + GD_HLT);
			b(&e, 0xfb);			/* sti */
			b(&e, 0xf4);			/* hlt */
			loop_to(&e, top);
			break;
		case GOP_CR3:
			outer = e.pc;
			for (j = 0; j < op->nr_roots; j++) {
				mov_eax(&e, guest__root(j));
				b(&e, 0x0f); b(&e, 0x22); b(&e, 0xd8);	/* mov cr3, eax */
				inc_mem(&e, data + GD_CR3_SWITCHES);
				inc_mem(&e, data + GD_ROOT_SWITCHES + j * 4);
				mov_ecx(&e, op->spin[j]);
				top = e.pc;
				loop_to(&e, top);		/* spin */
			}
			/* cmp dword [stop], 0; jz outer */
			b(&e, 0x83); b(&e, 0x3c); b(&e, 0x25); d32(&e, data + GD_STOP); b(&e, 0);
			b(&e, 0x0f); b(&e, 0x84); d32(&e, outer - (e.pc + 4));
			/* back on root 0 so later work runs where it started */
			mov_eax(&e, guest__root(0));
			b(&e, 0x0f); b(&e, 0x22); b(&e, 0xd8);
			break;
		case GOP_PIT:
			/* The guest, not vmload, sets the PIC up, as a BIOS or OS
			 * does: ICW1 (edge, cascade, ICW4), ICW2 = vector base,
			 * ICW3 (slave on IR2), ICW4 (8086, normal EOI), then OCW1
			 * unmasking IRQ0 only. */
			pit = k;
			out_imm(&e, 0x20, 0x11);
			out_imm(&e, 0x21, op->vector);
			out_imm(&e, 0x21, 0x04);
			out_imm(&e, 0x21, 0x01);
			out_imm(&e, 0x21, 0xfe);
			/* channel 0, lobyte/hibyte, mode 2 (rate generator) */
			out_imm(&e, 0x43, 0x34);
			out_imm(&e, 0x40, op->pit_divisor & 0xff);
			out_imm(&e, 0x40, op->pit_divisor >> 8);
			/* wait for count interrupts: cli; cmp; jae out; sti; hlt;
			 * jmp top (STI's shadow keeps the wake-up until HLT) */
			top = e.pc;
			b(&e, 0xfa);
			cmp_mem_imm(&e, data + GD_IRQ + op->vector * 4u, op->count);
			b(&e, 0x73); b(&e, 7);			/* jae +7 */
			b(&e, 0xfb);
			b(&e, 0xf4);
			b(&e, 0xe9); d32(&e, top - (e.pc + 4));
			b(&e, 0xfb);				/* sti: later work takes interrupts */
			break;
		}
	}
	mov_mem_imm(&e, data + GD_DONE, 1);
	top = e.pc;
	b(&e, 0xfa);				/* cli */
	inc_mem(&e, data + GD_IDLE_HLT);
	b(&e, 0xfb);				/* sti */
	b(&e, 0xf4);				/* hlt */
	b(&e, 0xe9); d32(&e, top - (e.pc + 4));	/* jmp top */
	if (pit >= 0) {
		/* IRQ0's handler: count, and EOI the PIC for all but the
		 * count-th. KVM's PIT (reinject mode) raises IRQ0 again only
		 * after an EOI, so it raises exactly count interrupts, and every
		 * one it raised is one this handler took. The count-th also
		 * masks IRQ0 and stops the PIT (mode 5 waits for a gate edge
		 * that never comes: KVM drops the timer): tearing the VM down
		 * turns reinject off, which would let a pending tick raise one
		 * more, never delivered. */
		uint32_t counter = data + GD_IRQ + ops[pit].vector * 4u;

		set_gate(mem + IDT_BASE + vcpu * 0x1000, ops[pit].vector, e.pc);
		b(&e, 0x50);				/* push rax */
		inc_mem(&e, counter);
		cmp_mem_imm(&e, counter, ops[pit].count);
		b(&e, 0x73); b(&e, 7);			/* jae last */
		out_imm(&e, 0x20, 0x20);		/* OCW2: non-specific EOI */
		b(&e, 0x58);				/* pop rax */
		b(&e, 0x48); b(&e, 0xcf);		/* iretq */
		out_imm(&e, 0x21, 0xff);		/* last: mask every line */
		out_imm(&e, 0x43, 0x3a);		/* channel 0, lo/hi, mode 5 */
		out_imm(&e, 0x40, 0);
		out_imm(&e, 0x40, 0);
		b(&e, 0x58);
		b(&e, 0x48); b(&e, 0xcf);
	}
	return e.overflow ? -E2BIG : 0;
}
