// SPDX-License-Identifier: GPL-2.0
/* vm.irqs: interrupts delivered into guests, aggregated per (second, VM,
 * vCPU, vector, source, subsecond bucket) in the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "irqs_types.h"
#include "irq_logic.h"
#include "aggregate.h"
#include "engine/bucket.h"

char LICENSE[] SEC("license") = "GPL";

volatile struct irqs_config irqs_cfg;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct irqs_key);
	__type(value, __u64);
} irqs SEC(".maps");

static __always_inline void irq_delivered(__u32 tgid, __u32 tid, __s32 vcpu, __u32 vector,
					  __u8 source)
{
	__u64 tai = bpf_ktime_get_tai_ns();
	struct irqs_key key = {
		.sec = tai / NSEC_PER_SEC,
		.tgid = tgid,
		.vcpu = -1,
	};

	if (irqs_cfg.want_thread) {
		/* the irqchip runs in the VMM's thread: the destination is the vCPU */
		key.tid = vcpu >= 0 ? 0 : tid;
		key.vcpu = vcpu;
	}
	if (irqs_cfg.want_vector)
		key.vector = vector;
	if (irqs_cfg.want_source)
		key.source = source;
	if (irqs_cfg.want_subsecond)
		key.subsecond = subsecond__bucket_ms(tai % NSEC_PER_SEC);
	aggregate__add(&irqs, &key, 1);
}

/* The PIC's vector base lives in the kernel's PIC state; learn it from a
 * tracepoint that carries the vCPU (and so the VM). */
SEC("tp_btf/kvm_emulate_insn")
int BPF_PROG(irqs_learn_pic, struct kvm_vcpu *vcpu, __u8 failed)
{
	irq__learn_pic(vcpu);
	return 0;
}
