/* vm.samples: types shared by bpf/samples.bpf.c and src/collectors/samples.c.
 * __u32-style types only (libbpf-tools convention). */
#ifndef KVMSCOPE_BPF_SAMPLES_H
#define KVMSCOPE_BPF_SAMPLES_H

#define SAMPLES_HZ 99

/* cr3 value meaning "the guest CR3 could not be read reliably". Never a real
 * CR3: KVM strips bit 63 (PCID no-flush) before caching it. */
#define SAMPLES_CR3_UNAVAILABLE 0xffffffffffffffffULL

/* Which key parts the active instrumentations need (`samples_want` in
 * .bss, changed by user space while the sampler runs; each key records the
 * mask it was built with). */
#define SAMPLES_WANT_VM		(1u << 0)	/* tgid */
#define SAMPLES_WANT_VCPU	(1u << 1)	/* tgid, tid and the kernel's vCPU index */
#define SAMPLES_WANT_MMUCTX	(1u << 2)
#define SAMPLES_WANT_SUBSEC	(1u << 3)

/* Per vCPU thread: the struct kvm_vcpu last seen running on it. Seeded by
 * user space with vcpu = 0 for threads that discovery names as vCPUs. */
struct samples_thread {
	__u64 vcpu;		/* struct kvm_vcpu *, 0 = not seen yet */
	__u32 tgid;		/* guards against a recycled tid */
	__s32 idx;		/* vcpu->vcpu_idx, -1 until seen */
};

/* Aggregation key; fields not wanted stay 0 and fold together. */
struct samples_key {
	__u32 sec;		/* TAI second */
	__u32 tgid;
	__u32 tid;
	__s32 idx;		/* kernel's vCPU index, -1 if unknown */
	__u64 cr3;		/* guest CR3, or SAMPLES_CR3_UNAVAILABLE */
	__u32 subsec;		/* subsecond bucket lower bound, ms */
	__u32 want;		/* the SAMPLES_WANT_* mask this key was built with */
};

#endif
