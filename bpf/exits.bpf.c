// SPDX-License-Identifier: GPL-2.0
/* vm.exits: exits aggregated per (second, VM, vCPU, reason, latency bucket,
 * subsecond bucket) in the kernel; only the parts of the key that active
 * instrumentations need are filled, the rest stay 0 and fold together. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "exits_types.h"
#include "exit_logic.h"
#include "aggregate.h"
#include "engine/bucket.h"

char LICENSE[] SEC("license") = "GPL";

volatile struct exits_config exits_cfg;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct exits_key);
	__type(value, __u64);
} exits SEC(".maps");

static __always_inline void exit_complete(const struct exit_pending *p, __u32 tgid, __u32 tid,
					  __u64 now)
{
	__u64 at = p->tai;
	struct exits_key key = { .tgid = tgid };
	struct llq_params lat = LLQ_LATENCY;
	unsigned long long hi;

	/* rare: its second is final already (shown for good); counting it late
	 * in the second it completes beats losing it or changing a final value */
	if (at / NSEC_PER_SEC < exits_cfg.final_before)
		at = bpf_ktime_get_tai_ns();
	key.sec = at / NSEC_PER_SEC;

	if (exits_cfg.want_thread) {
		key.tid = tid;
		key.vcpu = p->vcpu;
	} else {
		key.vcpu = -1;
	}
	if (exits_cfg.want_reason) {
		key.reason = p->reason;
		key.isa = p->isa;
		key.class = p->class;
	}
	if (exits_cfg.want_latency)
		key.latency = p->latency == EXIT_LATENCY_UNKNOWN
				      ? EXIT_LATENCY_UNKNOWN
				      : llq__bucket(p->latency, lat.base, lat.lo_mag, lat.hi_mag,
						    lat.nsteps, &hi);
	if (exits_cfg.want_subsecond)
		key.subsecond = subsecond__bucket_ms(at % NSEC_PER_SEC);
	aggregate__add(&exits, &key, 1);
}

static __always_inline void hw_exit_extra(struct trace_event_raw_kvm_exit *ctx)
{
}

static __always_inline int exit_wants_latency(void)
{
	return exits_cfg.want_latency;
}
