/* vmload's KVM layer: one VM with an in-kernel irqchip (PIC + IOAPIC + LAPIC),
 * flat guest RAM at GPA 0, and N vCPUs started directly in 64-bit long mode
 * (so CR3 is meaningful from the first instruction). */
#ifndef VMLOAD_VM_H
#define VMLOAD_VM_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#define VM_MAX_VCPUS 64

struct vm_vcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
};

struct vm {
	int kvm_fd;
	int vm_fd;
	uint8_t *mem;		/* guest RAM, GPA 0 .. mem_size */
	size_t mem_size;
	int nr_vcpus;
	struct kvm_cpuid2 *cpuid;	/* what KVM supports, given to every vCPU */
	struct vm_vcpu vcpus[VM_MAX_VCPUS];
};

/* Where a vCPU starts: everything the guest builder decided. */
struct vm_boot {
	uint32_t rip, rsp, cr3;
	uint32_t gdt_base, gdt_limit;
	uint32_t idt_base, idt_limit;
	uint32_t tss_base;
};

/* Opens /dev/kvm, creates the VM, its irqchip, RAM and nr_vcpus vCPUs.
 * On success the caller owns everything inside *vm and releases it with
 * vm__close(). On failure nothing is left open; errmsg (size errlen) says
 * what failed in words an operator can act on. */
int vm__open(struct vm *vm, int nr_vcpus, size_t mem_size, char *errmsg, size_t errlen);
void vm__close(struct vm *vm);

/* Sets a vCPU's registers so it starts at boot->rip in paged protected mode;
 * application processors are made runnable (no INIT/SIPI dance). */
int vm__vcpu_boot(struct vm *vm, int index, const struct vm_boot *boot);

/* KVM's in-kernel PIT (KVM_CREATE_PIT2), in reinject mode: after a raise
 * it raises IRQ0 again only once the guest EOIs it. */
int vm__create_pit(struct vm *vm);
/* PIC master: vectors base..base+7, lines in unmask_lines unmasked, auto-EOI
 * so the guest handler needs no PIC EOI. The slave stays fully masked. */
int vm__pic_program(struct vm *vm, uint8_t base, uint8_t unmask_lines);
/* IOAPIC redirection entry: edge, fixed, physical destination dest_apic. */
int vm__ioapic_route(struct vm *vm, int line, uint8_t vector, uint8_t dest_apic);
/* An edge on a GSI (KVM_IRQ_LINE 1 then 0). Returns >0 when delivered, 0 when
 * masked or coalesced, negative errno on failure. */
int vm__irq_pulse(struct vm *vm, int line);
/* KVM_SIGNAL_MSI, fixed delivery to one APIC ID. Same returns as above. */
int vm__signal_msi(struct vm *vm, uint8_t dest_apic, uint8_t vector);

#endif
