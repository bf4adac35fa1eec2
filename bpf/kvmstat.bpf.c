// SPDX-License-Identifier: GPL-2.0
/* kvmscope stat: per-vCPU counters in the kernel, drained once per interval. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "kvmstat_types.h"
#include "exit_logic.h"
#include "irq_logic.h"
#include "aggregate.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct kvmstat_key);
	__type(value, struct kvmstat_val);
} counters SEC(".maps");

static __always_inline __u32 tai_sec(void)
{
	return bpf_ktime_get_tai_ns() / 1000000000ULL;
}

/* TAI second before which user space shows every second for good: an exit
 * that began earlier and ends only now is booked in the second it ends;
 * one whose start second is still open, in its start second (see
 * exits_types.h's final_before and src/collectors/kvmstat.c). */
volatile __u32 kvmstat_final_before;

static __always_inline void bump_at(__u32 sec, __u32 tgid, __u32 tid, __s32 vcpu, int idx)
{
	struct kvmstat_key key = { .sec = sec, .tgid = tgid, .tid = tid, .vcpu = vcpu };
	struct kvmstat_val *val = bpf_map_lookup_elem(&counters, &key);

	if (idx < 0 || idx >= KVMSTAT__N)
		return;
	if (!val) {
		struct kvmstat_val zero = {};

		if (bpf_map_update_elem(&counters, &key, &zero, BPF_NOEXIST) == -E2BIG_) {
			count_drop();
			return;
		}
		val = bpf_map_lookup_elem(&counters, &key);
		if (!val)
			return;
	}
	val->v[idx]++;
}

static __always_inline void bump(__u32 tgid, __u32 tid, __s32 vcpu, int idx)
{
	bump_at(tai_sec(), tgid, tid, vcpu, idx);
}

static __always_inline void exit_complete(const struct exit_pending *p, __u32 tgid, __u32 tid,
					  __u64 now)
{
	int base = p->isa == EXIT_ISA_FALLBACK ? KVMSTAT_FB_CLASS : KVMSTAT_HW_CLASS;
	__u32 sec = p->tai / 1000000000ULL;

	/* counted in the second it began, as vm.exits books it */
	if (sec < kvmstat_final_before)
		sec = tai_sec();
	bump_at(sec, tgid, tid, p->vcpu,
		base + (p->class < EXIT_CLASS__COUNT ? p->class : EXIT_CLASS_OTHER));
}

static __always_inline void hw_exit_extra(struct trace_event_raw_kvm_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (exit__is_eptv(ctx->isa, ctx->exit_reason, ctx->info1))
		bump(id >> 32, (__u32)id, ctx->vcpu_id, KVMSTAT_HW_EPTV);
}

static __always_inline int exit_wants_latency(void)
{
	return 0;	/* kvmstat counts exits; it has no latency column */
}

static __always_inline void irq_delivered(__u32 tgid, __u32 tid, __s32 vcpu, __u32 vector,
					  __u8 source)
{
	/* irqchip events run in the VMM's thread: key them by destination vCPU */
	if (vcpu >= 0)
		tid = 0;
	bump(tgid, tid, vcpu,
	     source == IRQ_SOURCE_LAPIC || source == IRQ_SOURCE_SOFT ? KVMSTAT_HW_IRQS
								     : KVMSTAT_FB_IRQS);
}

SEC("tp_btf/kvm_emulate_insn")
int BPF_PROG(btf_kvm_emulate_insn, struct kvm_vcpu *vcpu, __u8 failed)
{
	__u64 id = bpf_get_current_pid_tgid();

	bump(id >> 32, (__u32)id, BPF_CORE_READ(vcpu, vcpu_idx), KVMSTAT_EMUL);
	return 0;
}

SEC("tracepoint/kvm/kvm_page_fault")
int tp_kvm_page_fault(struct trace_event_raw_kvm_page_fault *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	bump(id >> 32, (__u32)id, ctx->vcpu_id, KVMSTAT_PF);
	return 1;	/* keep the event for other tracers (perf) */
}
