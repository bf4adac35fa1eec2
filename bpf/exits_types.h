/* vm.exits: kernel/user shared layout. */
#ifndef KVMSCOPE_BPF_EXITS_TYPES_H
#define KVMSCOPE_BPF_EXITS_TYPES_H

struct exits_key {
	__u32 sec;		/* TAI second of the exit */
	__u32 tgid;
	__u32 tid;		/* 0 unless vm/vcpu fields are needed */
	__s32 vcpu;		/* from kvm_exit, -1 on the fallback path */
	__u32 reason;		/* 0 unless reason/class are needed */
	__u8 isa;
	__u8 class;
	__u16 subsecond;	/* ms bucket lower bound, 0 unless needed */
	__u64 latency;		/* bucket lower bound (ns), EXIT_LATENCY_UNKNOWN, or 0 */
};

/* What the active instrumentations need (set by user space at run time). */
struct exits_config {
	__u32 want_thread;
	__u32 want_reason;
	__u32 want_latency;
	__u32 want_subsecond;
	/* TAI second before which user space has declared every second final
	 * (shown for good): an exit that began in a final second and completes
	 * only now (a halt or VMM outliving COLLECTOR_FINAL_WAIT_MAX_S, an
	 * in-kernel exit closed by the next exit long after) is booked in the
	 * second it completes instead of changing a final value. An exit whose
	 * second is not final yet is booked in the second it began, even when
	 * that second was drained already: user space drains it again. */
	__u32 final_before;
};

#endif
