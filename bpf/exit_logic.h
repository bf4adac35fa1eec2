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
 *   static __always_inline int exit_wants_latency(void);
 */
#ifndef KVMSCOPE_BPF_EXIT_LOGIC_H
#define KVMSCOPE_BPF_EXIT_LOGIC_H

#include "kvmscope.h"
#include "exit_class.h"

#define EXIT_LATENCY_UNKNOWN 0xffffffffffffffffULL

struct exit_pending {
	__u64 tai;		/* exit time (ns, TAI: wall clock for seconds, subsecond, latency) */
	__u64 latency;		/* filled at completion; EXIT_LATENCY_UNKNOWN if none */
	__u32 reason;
	__s32 vcpu;		/* from kvm_exit's vcpu_id; -1 on the fallback path */
	__u8 isa;		/* enum exit_isa */
	__u8 class;		/* enum exit_class */
	__u8 active;
	__u8 mmio_read_pending;	/* fallback: unsatisfied MMIO read went to userspace */
	__u8 pio_in_booked;	/* fallback: a port IN went to userspace and was booked at
				 * its kvm_userspace_exit; its late kvm_pio is not an exit */
	__u8 pio_out_to_user;	/* fallback: the pending exit is an OUT whose kvm_pio fired;
				 * a kvm_userspace_exit(IO) now is that same exit */
	__u8 vcpu_known;	/* vcpu_idx below was read from the thread's struct kvm_vcpu */
	__u8 in_run;		/* has entered KVM_RUN: a block with no exit open is inside it */
	__u8 published;		/* the thread has an entry in exits_open */
	__s32 vcpu_idx;		/* the vCPU index this thread runs (struct kvm_vcpu.vcpu_idx) */
};

/* Exits that may still be open, for user space to know when a second is
 * final (every exit that began in it has ended and been booked). Only
 * threads that went off CPU inside an exit or inside KVM_RUN are here: an
 * in-kernel halt is seen by no event until it ends (kvm_vcpu_wakeup), and a
 * VMM that blocks handling an exit can take any time; an exit that stays on
 * its CPU ends within microseconds. Written at the switch-out, deleted when
 * the thread's next exit completes: a few map updates per halt, none per
 * exit that never blocks. Value: the TAI ns the open exit began (or, for a
 * block inside KVM_RUN with no exit open, the time of the switch-out). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* tid */
	__type(value, __u64);
} exits_open SEC(".maps");

static __always_inline void open__forget(struct exit_pending *p, __u32 tid)
{
	if (!p->published)
		return;
	p->published = 0;
	bpf_map_delete_elem(&exits_open, &tid);
}

/* Per-thread state in task storage: a pointer hop from the task instead of a
 * hash lookup on every exit event. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct exit_pending);
} exit_pending SEC(".maps");

static __always_inline struct exit_pending *pending_lookup(void)
{
	return bpf_task_storage_get(&exit_pending, bpf_get_current_task_btf(), 0, 0);
}

static __always_inline void exit_complete(const struct exit_pending *p, __u32 tgid, __u32 tid,
					  __u64 now);
static __always_inline void hw_exit_extra(struct trace_event_raw_kvm_exit *ctx);
/* Whether anyone needs exit latencies now: a clock read costs about as much
 * as the rest of a re-entry, so it is skipped when nobody does. */
static __always_inline int exit_wants_latency(void);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* tgid */
	__type(value, __u8);
} hw_exit_seen SEC(".maps");

/* Set once any kvm_exit fired on this host: until then (always, on hosts
 * where it never fires) the fallback programs skip the per-VM lookup. */
volatile __u32 hw_exits_any;

static __always_inline int fallback_ignored(__u32 tgid)
{
	if (!hw_exits_any)
		return 0;
	return bpf_map_lookup_elem(&hw_exit_seen, &tgid) != NULL;
}

/* The thread whose kvm_pio(OUT) this CPU saw last, until its exit is
 * resolved: kvm_userspace_exit(IO) then knows that exit is that OUT without
 * a task-storage lookup (an array lookup is inlined by the verifier; a
 * task-storage one costs about a tenth of an exit's BPF time here). A thread
 * that migrated in between, or an IN, finds no mark and takes the exact path
 * through its task storage. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);			/* tid, 0 for none */
} pio_out_cpu SEC(".maps");

static __always_inline __u32 *pio_out_mark(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pio_out_cpu, &zero);
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
	/* after the booking: user space never sees the exit neither open nor booked */
	open__forget(p, tid);
}

/* The vCPU a thread runs, from the kernel rather than from thread names
 * (QEMU names its vCPU threads only with debug-threads=on; other VMMs never
 * do). While KVM_RUN runs (vcpu_load .. vcpu_put) KVM keeps the vCPU's
 * preempt notifier on the running task's list, and that notifier is a member
 * of struct kvm_vcpu: the list's first entry leads back to the vCPU. No
 * other in-tree code registers preempt notifiers, and this is only called
 * from KVM's own tracepoints. Outside KVM_RUN (kvm_userspace_exit fires after
 * vcpu_put) the list is empty and the next event tries again. Read once per
 * thread: a vCPU is run by the thread that created it. */
static __always_inline void vcpu__learn(struct exit_pending *p)
{
	struct task_struct *task;
	struct hlist_node *first;
	struct kvm_vcpu *vcpu;

	if (p->vcpu_known)
		return;
	/* CO-RE guards: a kernel without them leaves vCPUs to thread names
	 * instead of failing to load every exit program */
	if (!bpf_core_field_exists(struct task_struct, preempt_notifiers) ||
	    !bpf_core_field_exists(struct kvm_vcpu, preempt_notifier) ||
	    !bpf_core_field_exists(struct kvm_vcpu, vcpu_idx))
		return;
	task = bpf_get_current_task_btf();
	first = BPF_CORE_READ(task, preempt_notifiers.first);
	if (!first)
		return;
	vcpu = (void *)first - bpf_core_field_offset(struct kvm_vcpu, preempt_notifier);
	p->vcpu_idx = BPF_CORE_READ(vcpu, vcpu_idx);
	p->vcpu_known = 1;
}

static __always_inline struct exit_pending *pending_of(__u32 tid)
{
	return bpf_task_storage_get(&exit_pending, bpf_get_current_task_btf(), 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* A new exit on the thread at TAI time `tai`: an exit still pending was
 * completed inside the kernel (no re-entry observed), so it closes with
 * latency unknown. One clock (TAI) serves both the wall-clock second and the
 * latency: reading two clocks per exit costs more than a rare clock step,
 * which only shows as a latency clamped to 0. */
static __always_inline struct exit_pending *exit__begin(__u8 isa, __u32 reason, __u8 class,
							__s32 vcpu, __u64 tai)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct exit_pending *p = pending_of(tid);
	__u32 *mark;

	if (!p)
		return NULL;
	exit__finish(p, tgid, tid, tai, EXIT_LATENCY_UNKNOWN);
	vcpu__learn(p);
	if (vcpu < 0 && p->vcpu_known)
		vcpu = p->vcpu_idx;
	p->tai = tai;
	p->isa = isa;
	p->reason = reason;
	p->class = class;
	p->vcpu = vcpu;
	p->active = 1;
	p->mmio_read_pending = 0;
	p->pio_in_booked = 0;
	p->pio_out_to_user = 0;
	mark = pio_out_mark();
	if (mark && *mark == tid)
		*mark = 0;	/* a new exit: the thread's OUT, if any, is over */
	return p;
}

/* The thread re-entered the guest (kvm_entry, or KVM_RUN re-entered). */
static __always_inline void exit__reentry(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	/* created here, on the thread's first KVM_RUN, so that its vCPU is known
	 * before an exit that is seen only after vcpu_put (kvm_userspace_exit) */
	struct exit_pending *p = pending_of(tid);
	__u64 now;

	if (!p)
		return;
	vcpu__learn(p);
	p->in_run = 1;
	if (!p->active)
		return;
	if (!exit_wants_latency()) {
		exit__finish(p, tgid, tid, p->tai, 0);
		return;
	}
	now = bpf_ktime_get_tai_ns();
	exit__finish(p, tgid, tid, now, now > p->tai ? now - p->tai : 0);
}

/* A vCPU thread that ends inside an exit (the VMM shuts the VM down on that
 * exit and never re-enters) still made that exit: book it, latency unknown,
 * before the thread's task storage goes. It is booked in the second the
 * thread ends: a VMM's teardown (QEMU flushing its trace file, say) can
 * outlast the drain of the second the exit began in, and a record for a
 * second already drained would be lost. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(exit_thread_exit)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct exit_pending *p = pending_lookup();

	if (p && p->active) {
		p->tai = bpf_ktime_get_tai_ns();
		exit__finish(p, id >> 32, (__u32)id, p->tai, EXIT_LATENCY_UNKNOWN);
	}
	if (p)
		open__forget(p, (__u32)id);
	return 0;
}

/* A vCPU thread blocks (goes off CPU, not runnable). Inside an exit (a halt
 * on VMX/SVM, the VMM waiting on I/O) or inside KVM_RUN with none open (an
 * in-kernel halt on the fallback path, reported only at its end: outside
 * KVM_RUN a vCPU thread always has its userspace exit open, closed at the
 * re-entry), the exit may outlive the drain of the second it began in, so
 * it is published in exits_open until it completes. A thread preempted
 * (still runnable) goes on within a time slice; a thread that is no vCPU
 * has no task storage: nothing. */
SEC("tp_btf/sched_switch")
int BPF_PROG(exit_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	struct exit_pending *p;
	__u64 began;
	__u32 tid;

	if (!prev_state)		/* TASK_RUNNING: preempted or yielding */
		return 0;
	p = bpf_task_storage_get(&exit_pending, prev, 0, 0);
	if (!p || p->published || !(p->active || p->in_run))
		return 0;
	began = p->active ? p->tai : bpf_ktime_get_tai_ns();
	tid = BPF_CORE_READ(prev, pid);
	if (!bpf_map_update_elem(&exits_open, &tid, &began, BPF_ANY))
		p->published = 1;
	return 0;
}

/* ---- hardware path ----------------------------------------------------
 * Classic tracepoints: kvm_exit's record has the decoded reason and info1
 * for every vendor. They return 1 so that perf and other tracers on the
 * same tracepoint still get the event (0 would filter it out for them). */

SEC("tracepoint/kvm/kvm_exit")
int tp_kvm_exit(struct trace_event_raw_kvm_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1, isa = ctx->isa;
	__u32 reason = ctx->exit_reason;

	if (!hw_exits_any)
		hw_exits_any = 1;
	if (!bpf_map_lookup_elem(&hw_exit_seen, &tgid))
		bpf_map_update_elem(&hw_exit_seen, &tgid, &one, BPF_ANY);
	exit__begin(isa, reason, exit__class(isa, reason, ctx->info1), ctx->vcpu_id,
		    bpf_ktime_get_tai_ns());
	hw_exit_extra(ctx);
	return 1;
}

SEC("tp_btf/kvm_entry")
int BPF_PROG(tp_kvm_entry)
{
	exit__reentry();
	return 0;
}

/* ---- fallback path ----------------------------------------------------
 * Raw (tp_btf) programs: they get the tracepoint's arguments directly, with
 * no trace record built for them, which is most of a classic tracepoint's
 * cost on this per-exit path. */

/* kvm_pio for an OUT (and for an IN handled in the kernel) fires at the exit;
 * for an IN that goes to the VMM it fires only when the read completes, after
 * KVM_RUN was re-entered. That IN was already booked at its
 * kvm_userspace_exit, so its kvm_pio only clears the mark. */
SEC("tp_btf/kvm_pio")
int BPF_PROG(tp_kvm_pio, unsigned int rw)
{
	struct exit_pending *p;

	if (fallback_ignored(bpf_get_current_pid_tgid() >> 32))
		return 0;
	if (rw == 0) {			/* KVM_PIO_IN */
		p = pending_lookup();
		if (p && p->pio_in_booked) {
			p->pio_in_booked = 0;
			return 0;
		}
	}
	p = exit__begin(EXIT_ISA_FALLBACK, FALLBACK_REASON_IO, EXIT_CLASS_IO, -1,
			bpf_ktime_get_tai_ns());
	if (p && rw == 1) {		/* KVM_PIO_OUT */
		__u32 *mark = pio_out_mark();

		p->pio_out_to_user = 1;
		if (mark)
			*mark = (__u32)bpf_get_current_pid_tgid();
	}
	return 0;
}

/* kvm_mmio fires at the exit (write, or unsatisfied read that goes to the
 * VMM) and again when an unsatisfied read completes (type read): only the
 * first is an exit. A read satisfied in the kernel fires once, as read. */
SEC("tp_btf/kvm_mmio")
int BPF_PROG(tp_kvm_mmio, int type, int len, u64 gpa, void *val)
{
	struct exit_pending *p;

	if (fallback_ignored(bpf_get_current_pid_tgid() >> 32))
		return 0;
	if (type == 1) {		/* KVM_TRACE_MMIO_READ */
		p = pending_lookup();
		if (p && p->mmio_read_pending) {
			p->mmio_read_pending = 0;
			return 0;
		}
	}
	p = exit__begin(EXIT_ISA_FALLBACK, FALLBACK_REASON_MMIO, EXIT_CLASS_MMIO, -1,
			bpf_ktime_get_tai_ns());
	if (p && type == 0)		/* KVM_TRACE_MMIO_UNSATISFIED_READ */
		p->mmio_read_pending = 1;
	return 0;
}

/* An in-kernel halt: the event comes at wake-up and carries the halt time. */
SEC("tp_btf/kvm_vcpu_wakeup")
int BPF_PROG(tp_kvm_vcpu_wakeup, __u64 ns, bool waited, bool valid)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_tai_ns();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct exit_pending *p;

	if (fallback_ignored(tgid))
		return 0;
	p = exit__begin(EXIT_ISA_FALLBACK, FALLBACK_REASON_HLT, EXIT_CLASS_HALT, -1, now - ns);
	if (p)
		exit__finish(p, tgid, tid, now, ns);
	return 0;
}

/* Return from KVM_RUN to the VMM. IO, MMIO and HLT were counted by their
 * own events; every other reason (and a signal, errno -EINTR) is an exit of
 * its own. */
SEC("tp_btf/kvm_userspace_exit")
int BPF_PROG(tp_kvm_userspace_exit, __u32 reason, int err)
{
	struct exit_pending *p;

	if (err < 0)
		reason = FALLBACK_REASON_INTR;
	/* the common case first, before any map lookup */
	if (reason == FALLBACK_REASON_MMIO)
		return 0;
	if (fallback_ignored(bpf_get_current_pid_tgid() >> 32))
		return 0;
	if (reason == FALLBACK_REASON_IO) {
		/* An OUT's kvm_pio just began the pending exit; an IN's kvm_pio
		 * comes only after re-entry, so the IN is booked here, at its exit. */
		__u32 *mark = pio_out_mark();

		if (mark && *mark == (__u32)bpf_get_current_pid_tgid()) {
			*mark = 0;	/* the common case: this thread's OUT */
			return 0;
		}
		p = pending_lookup();
		if (p && p->active && p->reason == FALLBACK_REASON_IO && p->pio_out_to_user) {
			p->pio_out_to_user = 0;
			return 0;
		}
		p = exit__begin(EXIT_ISA_FALLBACK, FALLBACK_REASON_IO, EXIT_CLASS_IO, -1,
				bpf_ktime_get_tai_ns());
		if (p)
			p->pio_in_booked = 1;
		return 0;
	}
	if (reason == FALLBACK_REASON_HLT) {
		/* no in-kernel irqchip: the halt goes to the VMM */
		p = pending_lookup();
		if (p && p->active && p->reason == FALLBACK_REASON_HLT)
			return 0;
	}
	exit__begin(EXIT_ISA_FALLBACK, reason, exit__class(EXIT_ISA_FALLBACK, reason, 0), -1,
		    bpf_ktime_get_tai_ns());
	return 0;
}

/* KVM_RUN (re-)entered: kvm_fpu(load) marks it on every KVM version we
 * support; completes a userspace exit. */
SEC("tp_btf/kvm_fpu")
int BPF_PROG(tp_kvm_fpu, int load)
{
	if (load && !fallback_ignored(bpf_get_current_pid_tgid() >> 32))
		exit__reentry();
	return 0;
}

#endif
