/* Names of exit reasons and classes, as users see them in vm.exits. */
#ifndef KVMSCOPE_COLLECTORS_EXIT_REASONS_H
#define KVMSCOPE_COLLECTORS_EXIT_REASONS_H

#include <stddef.h>
#include <stdint.h>

/* VMX: the kernel's VMX_EXIT_REASONS names ("IO_INSTRUCTION"); SVM: the
 * kernel's SVM_EXIT_REASONS names ("io"... as "IOIO"); fallback: the
 * KVM_EXIT_* name of the userspace exit ("IO", "MMIO", "HLT", "INTR").
 * Unknown codes print as "0x<hex>". Writes into buf and returns it. */
const char *exit_reason__name(uint8_t isa, uint32_t reason, char *buf, size_t len);
/* "haltx", "irqx", "irqwx", "iox", "mmiox", "other" */
const char *exit_class__name(uint8_t class);
/* "pic", "ioapic", "msi", "lapic", "soft" */
const char *irq_source__name(uint16_t source);

#endif
