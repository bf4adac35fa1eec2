// SPDX-License-Identifier: GPL-2.0
/* vm.samples, kernel side: a software cpu-clock perf event per online CPU at
 * 99 Hz runs samples_tick; ticks that land on a vCPU thread are counted per
 * (TAI second, VM, vCPU, guest CR3, subsecond bucket), only the parts of the
 * key that active instrumentations need being filled.
 *
 * The guest CR3 lives in vcpu->arch.cr3. The perf program cannot find the
 * running vCPU itself (kvm_running_vcpu is not resolvable), so KVM
 * tracepoints that carry the struct kvm_vcpu * remember it per thread:
 * kvm_entry/kvm_exit on VMX/SVM hosts, kvm_emulate_insn where guest code is
 * emulated (PVM, and real hardware during emulation).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "kvmscope.h"
#include "engine/bucket.h"
#include "samples.h"
#include "aggregate.h"

char LICENSE[] SEC("license") = "GPL";

/* user space changes it while the sampler runs: a new decomposition needs
 * no reload, and no undrained second is lost to one */
volatile __u32 samples_want;

/* tid -> vCPU; user space seeds the vCPU threads discovery knows and prunes
 * threads that are gone. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct samples_thread);
} vcpu_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct samples_key);
	__type(value, __u64);
} samples SEC(".maps");

/* The vCPU this CPU last saw in a KVM tracepoint, and the thread that ran
 * it: a vCPU's memory is reused by the next VM's vCPU once its VM is gone,
 * so the pointer alone does not tell a new thread from the old one. */
struct last_seen {
	__u64 vcpu;
	__u32 tid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_seen);
} last_vcpu SEC(".maps");

/* kvm_emulate_insn fires on every emulated instruction on PVM hosts (over a
 * million per second per busy vCPU) and kvm_entry/kvm_exit on every exit
 * elsewhere, so the common case must be cheap: this CPU's last vCPU is this
 * one, nothing to do. That is exact because a vCPU is run by one thread
 * (KVM's API asks vcpu ioctls to come from the thread that created it), so
 * the thread -> vCPU entry written when this CPU first saw the vCPU still
 * holds. The hash is touched only when a CPU switches vCPUs. */
static __always_inline void remember(struct kvm_vcpu *vcpu)
{
	__u32 zero = 0, tid;
	struct last_seen *last = bpf_map_lookup_elem(&last_vcpu, &zero);
	__u64 id = bpf_get_current_pid_tgid();
	struct samples_thread *t, n;

	tid = (__u32)id;
	if (!last || (last->vcpu == (__u64)vcpu && last->tid == tid))
		return;
	last->vcpu = (__u64)vcpu;
	last->tid = tid;
	t = bpf_map_lookup_elem(&vcpu_threads, &tid);
	if (t && t->vcpu == (__u64)vcpu && t->tgid == id >> 32)
		return;
	n.vcpu = (__u64)vcpu;
	n.tgid = id >> 32;
	n.idx = bpf_core_field_exists(struct kvm_vcpu, vcpu_idx) ? BPF_CORE_READ(vcpu, vcpu_idx) : -1;
	if (t)
		*t = n;
	else
		bpf_map_update_elem(&vcpu_threads, &tid, &n, BPF_ANY);
}

SEC("tp_btf/kvm_entry")
int BPF_PROG(samples_kvm_entry, struct kvm_vcpu *vcpu)
{
	remember(vcpu);
	return 0;
}

SEC("tp_btf/kvm_exit")
int BPF_PROG(samples_kvm_exit, struct kvm_vcpu *vcpu)
{
	remember(vcpu);
	return 0;
}

SEC("tp_btf/kvm_emulate_insn")
int BPF_PROG(samples_kvm_emulate_insn, struct kvm_vcpu *vcpu)
{
	remember(vcpu);
	return 0;
}

/* vcpu->arch.cr3 is a cache, and whether it holds the guest's current CR3
 * depends on how KVM runs the guest:
 *   - VMX with EPT: CR3 loads do not exit; KVM re-reads GUEST_CR3 from the
 *     VMCS only on demand and clears the VCPU_EXREG_CR3 bit of regs_avail
 *     after every exit, so the cache is current only while that bit is set
 *     (and at a tick, which runs right after the exit, it is usually clear);
 *   - SVM: the bit is never cleared (only PDPTRs load lazily) and KVM copies
 *     the VMCB's CR3 on every exit;
 *   - shadow paging (VMX without EPT, PVM): CR3 loads trap, the cache is
 *     always current. Measured on PVM (kernel 6.18): the bit is set and the
 *     MMU is a shadow MMU (root_role.direct = 0) on every tick.
 * So: valid when the bit is set, or when the MMU shadows the guest's own
 * page tables (not direct) outside nested guest mode (an L2 guest's CR3
 * under shadow EPT does not trap to us). Anything else is "unavailable"
 * rather than a stale value. */
static __always_inline __u64 guest_cr3(struct kvm_vcpu *vcpu)
{
	__u32 avail = BPF_CORE_READ(vcpu, arch.regs_avail);
	__u32 bit = 32;
	struct kvm_mmu *mmu;

	if (bpf_core_enum_value_exists(enum kvm_reg, VCPU_EXREG_CR3))
		bit = bpf_core_enum_value(enum kvm_reg, VCPU_EXREG_CR3);
	if (bit < 32 && (avail >> bit) & 1)
		return BPF_CORE_READ(vcpu, arch.cr3);
	/* root_role is 6.0's name for the MMU's role: older kernels report
	 * "unavailable" for these ticks rather than failing the sampler */
	if (!bpf_core_field_exists(struct kvm_mmu, root_role))
		return SAMPLES_CR3_UNAVAILABLE;
	mmu = BPF_CORE_READ(vcpu, arch.mmu);
	if (mmu && !BPF_CORE_READ_BITFIELD_PROBED(mmu, root_role.direct) &&
	    !BPF_CORE_READ_BITFIELD_PROBED(mmu, root_role.guest_mode))
		return BPF_CORE_READ(vcpu, arch.cr3);
	return SAMPLES_CR3_UNAVAILABLE;
}

SEC("perf_event")
int samples_tick(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), now;
	__u32 tid = (__u32)id;
	struct samples_thread *t = bpf_map_lookup_elem(&vcpu_threads, &tid);
	struct samples_key key = {};
	__u32 want = samples_want;	/* one read: the key and its mask agree */

	if (!t || t->tgid != id >> 32)
		return 0;
	key.want = want;
	now = bpf_ktime_get_tai_ns();
	key.sec = now / NSEC_PER_SEC;
	if (want & (SAMPLES_WANT_VM | SAMPLES_WANT_VCPU))
		key.tgid = t->tgid;
	if (want & SAMPLES_WANT_VCPU) {
		key.tid = tid;
		key.idx = t->idx;
	}
	if (want & SAMPLES_WANT_MMUCTX)
		key.cr3 = t->vcpu ? guest_cr3((struct kvm_vcpu *)t->vcpu) : SAMPLES_CR3_UNAVAILABLE;
	if (want & SAMPLES_WANT_SUBSEC)
		key.subsec = subsecond__bucket_ms(now % NSEC_PER_SEC);
	aggregate__add(&samples, &key, 1);
	return 0;
}
