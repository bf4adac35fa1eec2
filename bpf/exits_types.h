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
	/* TAI second before which user space has drained the map: an exit that
	 * began in a drained second and completes only now (a VMM slow to
	 * re-enter, or an in-kernel exit closed by the next exit long after) is
	 * booked in the second it completes instead of being lost */
	__u32 drained_before;
};

#endif
