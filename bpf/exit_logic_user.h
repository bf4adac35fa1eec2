/* The parts of the kernel side's exit/irq logic user space needs. */
#ifndef KVMSCOPE_BPF_EXIT_LOGIC_USER_H
#define KVMSCOPE_BPF_EXIT_LOGIC_USER_H

#include <linux/types.h>

#include "kvmscope.h"
#include "exits_types.h"
#include "irqs_types.h"

#define EXIT_LATENCY_UNKNOWN 0xffffffffffffffffULL
#define IRQ_VECTOR_UNKNOWN 0xffffffffu

#endif
