/* Deriving VM exits in the kernel, shared by kvmstat.bpf.c and exits.bpf.c.
 *
 * Two sources, chosen per VM by what actually fires:
 *  - hardware: kvm:kvm_exit / kvm:kvm_entry (VMX and SVM hosts). The exit is
 *    complete at the next kvm_entry of the same thread; latency = entry - exit.
 *  - fallback (hosts where kvm_exit never fires, e.g. paravirtual KVM): exits
 *    are derived from kvm_pio, kvm_mmio, kvm_vcpu_wakeup (in-kernel halts)
 *    and kvm_userspace_exit (other reasons). Latency is measured where the
 *    re-entry is observable: a userspace exit completes at the next
 *    kvm_fpu(load) of the thread, i.e. when KVM_RUN is re-entered; a halt's
 *    latency is kvm_vcpu_wakeup's own duration. Exits completed inside the
 *    kernel are counted with latency unknown (EXIT_LATENCY_UNKNOWN).
 * Once kvm_exit fired for a process, the fallback handlers ignore it, so no
 * exit is counted twice.
 *
 * The including file defines, after including this header:
 *   static __always_inline void exit_complete(const struct exit_pending *p,
 *                                             __u32 tgid, __u32 tid, __u64 now);
 *   static __always_inline void hw_exit_extra(struct trace_event_raw_kvm_exit *ctx);
 */
#ifndef KVMSCOPE_BPF_EXIT_LOGIC_H
#define KVMSCOPE_BPF_EXIT_LOGIC_H

#include "kvmscope.h"
#include "exit_class.h"

#define EXIT_LATENCY_UNKNOWN 0xffffffffffffffffULL

struct exit_pending {
	__u64 ts;		/* exit time (ns, monotonic) */
	__u64 tai;		/* exit time (ns, TAI: wall clock for seconds and subsecond) */
	__u64 latency;		/* filled at completion; EXIT_LATENCY_UNKNOWN if none */
	__u32 reason;
	__s32 vcpu;		/* from kvm_exit's vcpu_id; -1 on the fallback path */
	__u8 isa;		/* enum exit_isa */
	__u8 class;		/* enum exit_class */
	__u8 active;
	__u8 mmio_read_pending;	/* fallback: unsatisfied MMIO read went to userspace */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);			/* tid */
	__type(value, struct exit_pending);
} exit_pending SEC(".maps");

static __always_inline void exit_complete(const struct exit_pending *p, __u32 tgid, __u32 tid,
					  __u64 now);
static __always_inline void hw_exit_extra(struct trace_event_raw_kvm_exit *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* tgid */
	__type(value, __u8);
} hw_exit_seen SEC(".maps");

static __always_inline int fallback_ignored(__u32 tgid)
{
	return bpf_map_lookup_elem(&hw_exit_seen, &tgid) != NULL;
}

/* Close the thread's pending exit (if any) with `latency`. */
static __always_inline void exit__finish(struct exit_pending *p, __u32 tgid, __u32 tid,
					 __u64 now, __u64 latency)
{
	if (!p->active)
		return;
	p->latency = latency;
	p->active = 0;
	exit_complete(p, tgid, tid, now);
}

static __always_inline struct exit_pending *pending_of(__u32 tid)
{
	struct exit_pending *p = bpf_map_lookup_elem(&exit_pending, &tid);

	if (!p) {
		struct exit_pending zero = {};

		bpf_map_update_elem(&exit_pending, &tid, &zero, BPF_NOEXIST);
		p = bpf_map_lookup_elem(&exit_pending, &tid);
	}
	return p;
}

/* A new exit on the thread: an exit still pending was completed inside the
 * kernel (no re-entry observed), so it closes with latency unknown. */
static __always_inline void exit__begin(__u8 isa, __u32 reason, __u8 class, __s32 vcpu,
					__u64 now, __u64 tai)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct exit_pending *p = pending_of(tid);

	if (!p)
		return;
	exit__finish(p, tgid, tid, now, EXIT_LATENCY_UNKNOWN);
	p->ts = now;
	p->tai = tai;
	p->isa = isa;
	p->reason = reason;
	p->class = class;
	p->vcpu = vcpu;
	p->active = 1;
}

/* The thread re-entered the guest (kvm_entry, or KVM_RUN re-entered). */
static __always_inline void exit__reentry(void)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct exit_pending *p = bpf_map_lookup_elem(&exit_pending, &tid);

	if (p && p->active)
		exit__finish(p, tgid, tid, now, now - p->ts);
}

/* ---- hardware path ---------------------------------------------------- */

SEC("tracepoint/kvm/kvm_exit")
int tp_kvm_exit(struct trace_event_raw_kvm_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1, isa = ctx->isa;
	__u32 reason = ctx->exit_reason;

	if (!bpf_map_lookup_elem(&hw_exit_seen, &tgid))
		bpf_map_update_elem(&hw_exit_seen, &tgid, &one, BPF_ANY);
	exit__begin(isa, reason, exit__class(isa, reason, ctx->info1), ctx->vcpu_id,
		    bpf_ktime_get_ns(), bpf_ktime_get_tai_ns());
	hw_exit_extra(ctx);
	return 0;
}

SEC("tracepoint/kvm/kvm_entry")
int tp_kvm_entry(void *ctx)
{
	exit__reentry();
	return 0;
}

/* ---- fallback path ---------------------------------------------------- */

SEC("tracepoint/kvm/kvm_pio")
int tp_kvm_pio(void *ctx)
{
	if (fallback_ignored(bpf_get_current_pid_tgid() >> 32))
		return 0;
	exit__begin(EXIT_ISA_FALLBACK, FALLBACK_REASON_IO, EXIT_CLASS_IO, -1, bpf_ktime_get_ns(),
		    bpf_ktime_get_tai_ns());
	return 0;
}

/* kvm_mmio fires at the exit (write, or unsatisfied read that goes to the
 * VMM) and again when an unsatisfied read completes (type read): only the
 * first is an exit. A read satisfied in the kernel fires once, as read. */
SEC("tracepoint/kvm/kvm_mmio")
int tp_kvm_mmio(struct trace_event_raw_kvm_mmio *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct exit_pending *p;
	__u32 type = ctx->type;

	if (fallback_ignored(id >> 32))
		return 0;
	if (type == 1) {		/* KVM_TRACE_MMIO_READ */
		p = bpf_map_lookup_elem(&exit_pending, &tid);
		if (p && p->mmio_read_pending) {
			p->mmio_read_pending = 0;
			return 0;
		}
	}
	exit__begin(EXIT_ISA_FALLBACK, FALLBACK_REASON_MMIO, EXIT_CLASS_MMIO, -1,
		    bpf_ktime_get_ns(), bpf_ktime_get_tai_ns());
	if (type == 0) {		/* KVM_TRACE_MMIO_UNSATISFIED_READ */
		p = bpf_map_lookup_elem(&exit_pending, &tid);
		if (p)
			p->mmio_read_pending = 1;
	}
	return 0;
}

/* An in-kernel halt: the event comes at wake-up and carries the halt time. */
SEC("tracepoint/kvm/kvm_vcpu_wakeup")
int tp_kvm_vcpu_wakeup(struct trace_event_raw_kvm_vcpu_wakeup *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns(), ns = ctx->ns;
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct exit_pending *p;

	if (fallback_ignored(tgid))
		return 0;
	exit__begin(EXIT_ISA_FALLBACK, FALLBACK_REASON_HLT, EXIT_CLASS_HALT, -1, now - ns,
		    bpf_ktime_get_tai_ns() - ns);
	p = bpf_map_lookup_elem(&exit_pending, &tid);
	if (p)
		exit__finish(p, tgid, tid, now, ns);
	return 0;
}

/* Return from KVM_RUN to the VMM. IO, MMIO and HLT were counted by their
 * own events; every other reason (and a signal, errno -EINTR) is an exit of
 * its own. */
SEC("tracepoint/kvm/kvm_userspace_exit")
int tp_kvm_userspace_exit(struct trace_event_raw_kvm_userspace_exit *ctx)
{
	__u32 reason = ctx->reason;
	int err = ctx->errno;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct exit_pending *p;

	if (fallback_ignored(id >> 32))
		return 0;
	if (err < 0)
		reason = FALLBACK_REASON_INTR;
	if (reason == FALLBACK_REASON_IO || reason == FALLBACK_REASON_MMIO)
		return 0;
	if (reason == FALLBACK_REASON_HLT) {
		/* no in-kernel irqchip: the halt goes to the VMM */
		p = bpf_map_lookup_elem(&exit_pending, &tid);
		if (p && p->active && p->reason == FALLBACK_REASON_HLT)
			return 0;
	}
	exit__begin(EXIT_ISA_FALLBACK, reason, exit__class(EXIT_ISA_FALLBACK, reason, 0), -1,
		    bpf_ktime_get_ns(), bpf_ktime_get_tai_ns());
	return 0;
}

/* KVM_RUN (re-)entered: kvm_fpu(load) marks it on every KVM version we
 * support; completes a userspace exit. */
SEC("tracepoint/kvm/kvm_fpu")
int tp_kvm_fpu(struct trace_event_raw_kvm_fpu *ctx)
{
	if (ctx->load && !fallback_ignored(bpf_get_current_pid_tgid() >> 32))
		exit__reentry();
	return 0;
}

#endif
