// SPDX-License-Identifier: GPL-2.0
/* The floor of vm.exits' kernel side: programs that do nothing, on exactly
 * the hooks bpf/exits.bpf.c attaches to, with the same program types. What
 * kvmscope costs above this is its own work; this much any BPF tool pays to
 * be called on these events at all. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sched_process_exit")
int BPF_PROG(floor_thread_exit) { return 0; }

SEC("tracepoint/kvm/kvm_exit")
int floor_kvm_exit(void *ctx) { return 1; }

SEC("tp_btf/kvm_entry")
int BPF_PROG(floor_kvm_entry) { return 0; }

SEC("tp_btf/kvm_pio")
int BPF_PROG(floor_kvm_pio) { return 0; }

SEC("tp_btf/kvm_mmio")
int BPF_PROG(floor_kvm_mmio) { return 0; }

SEC("tp_btf/kvm_vcpu_wakeup")
int BPF_PROG(floor_kvm_vcpu_wakeup) { return 0; }

SEC("tp_btf/kvm_userspace_exit")
int BPF_PROG(floor_kvm_userspace_exit) { return 0; }

SEC("tp_btf/kvm_fpu")
int BPF_PROG(floor_kvm_fpu) { return 0; }
