// SPDX-License-Identifier: GPL-2.0
/* vm.disk_ops / vm.disk_bytes, kernel side.
 *
 * Two sources, chosen per disk by user space so that one guest operation is
 * counted once:
 *   - block devices (loop, LVM, zvol, rbd, ...): block_rq_issue/complete on
 *     the devices in `watched_devs`; the request pointer links issue to
 *     completion, so merges and requeues on other devices cost one lookup;
 *   - image files: the VMM's own positional I/O syscalls on (tgid, fd) pairs
 *     in `watched_fds`. The loop driver's I/O to its backing file runs in
 *     kernel workers, never in a VMM's fd table, so the two cannot overlap.
 * Events are aggregated per completion second in `aggr`, keyed only by the
 * fields the active instrumentations need (`disk_want`, set before load).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "kvmscope.h"
#include "engine/bucket.h"
#include "disk.h"

#define REQ_OP_MASK_ 0xff
#define MINORBITS_ 20
#define FALLOC_FL_PUNCH_HOLE_ 0x02
#define MAX_IOVS 8

const volatile __u32 disk_want = 0;

struct inflight {
	__u64 ts;		/* CLOCK_MONOTONIC ns at issue */
	__u64 size;
	__u64 offset;
	__u32 slot;
	__u16 optype;
	__u16 ret_is_size;	/* syscall returns the bytes moved */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);		/* kernel dev_t: major << 20 | minor */
	__type(value, __u32);		/* slot */
} watched_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct disk_fd_key);
	__type(value, __u32);		/* slot */
} watched_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);		/* struct request * */
	__type(value, struct inflight);
} inflight_rq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);		/* tid inside a watched syscall */
	__type(value, struct inflight);
} inflight_sys SEC(".maps");

struct disk_val {
	__u64 v[DISK_NVALS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct disk_key);
	__type(value, struct disk_val);
} aggr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DISK_DROP__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &which);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* blk_status_t -> errno, as blk_status_to_errno() does (values stable since
 * 4.13; anything newer reads as EIO). */
static __always_inline __u16 blk_errno(__u8 sts)
{
	switch (sts) {
	case 0: return 0;
	case 1: return 95;	/* EOPNOTSUPP */
	case 2: return 110;	/* ETIMEDOUT */
	case 3: return 28;	/* ENOSPC */
	case 4: return 67;	/* ENOLINK */
	case 5: return 121;	/* EREMOTEIO */
	case 6: return 52;	/* EBADE */
	case 7: return 61;	/* ENODATA */
	case 8: return 84;	/* EILSEQ */
	case 9: return 12;	/* ENOMEM */
	case 12: return 11;	/* EAGAIN */
	case 13: return 16;	/* EBUSY */
	case 16: return 19;	/* ENODEV */
	default: return 5;	/* EIO */
	}
}

static __always_inline void account(const struct inflight *op, __u16 err, __u64 size)
{
	struct disk_key key = {};
	struct disk_val zero = {}, *val;
	__u64 now = bpf_ktime_get_tai_ns(), hi;
	__u64 lat = bpf_ktime_get_ns() - op->ts;

	key.sec = now / NSEC_PER_SEC;
	key.slot = op->slot;
	if (disk_want & DISK_WANT_OPTYPE)
		key.optype = op->optype;
	if (disk_want & DISK_WANT_ERRNO)
		key.err = err;
	if (disk_want & DISK_WANT_SUBSEC)
		key.subsec = subsecond__bucket_ms(now % NSEC_PER_SEC);
	if (disk_want & DISK_WANT_LATENCY)
		key.latency = llq__bucket(lat, 10, 1, 10, 20, &hi);
	if (disk_want & DISK_WANT_SIZE)
		key.size = llq__bucket(size, 10, 0, 9, 20, &hi);
	if (disk_want & DISK_WANT_OFFSET)
		key.offset = llq__bucket(op->offset, 10, 3, 13, 20, &hi);

	val = bpf_map_lookup_elem(&aggr, &key);
	if (!val) {
		bpf_map_update_elem(&aggr, &key, &zero, BPF_NOEXIST);
		val = bpf_map_lookup_elem(&aggr, &key);
		if (!val) {
			count_drop(DISK_DROP_AGGR);
			return;
		}
	}
	val->v[DISK_VAL_OPS]++;
	/* only data transfers move bytes; a discard's length is its size */
	if (op->optype == DISK_OP_READ || op->optype == DISK_OP_WRITE)
		val->v[DISK_VAL_BYTES] += size;
}

/* ---- block devices ---------------------------------------------------- */

SEC("tp_btf/block_rq_issue")
int BPF_PROG(disk_rq_issue, struct request *rq)
{
	struct block_device *part = BPF_CORE_READ(rq, part);
	struct inflight op = {};
	__u64 start = 0, id = (__u64)rq;
	__u32 dev, *slot, reqop;

	if (part) {
		dev = BPF_CORE_READ(part, bd_dev);
		start = BPF_CORE_READ(part, bd_start_sect);
	} else {
		struct gendisk *disk = BPF_CORE_READ(rq, q, disk);

		if (!disk)
			return 0;
		dev = ((__u32)BPF_CORE_READ(disk, major) << MINORBITS_) |
		      (__u32)BPF_CORE_READ(disk, first_minor);
	}
	slot = bpf_map_lookup_elem(&watched_devs, &dev);
	if (!slot)
		return 0;

	reqop = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK_;
	switch (reqop) {
	case 0: op.optype = DISK_OP_READ; break;
	case 1: op.optype = DISK_OP_WRITE; break;
	case 2: op.optype = DISK_OP_FLUSH; break;
	case 3: /* discard */
	case 5: /* secure erase */
		op.optype = DISK_OP_DISCARD; break;
	case 9: /* write zeroes */
		op.optype = DISK_OP_WRITE; break;
	default:
		return 0;	/* zone management and driver passthrough */
	}
	if (op.optype != DISK_OP_FLUSH) {
		op.size = BPF_CORE_READ(rq, __data_len);
		op.offset = (BPF_CORE_READ(rq, __sector) - start) << 9;
	}
	op.slot = *slot;
	op.ts = bpf_ktime_get_ns();
	/* BPF_ANY: request structs are recycled, the newest issue wins */
	if (bpf_map_update_elem(&inflight_rq, &id, &op, BPF_ANY))
		count_drop(DISK_DROP_INFLIGHT);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(disk_rq_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 id = (__u64)rq;
	struct inflight *p = bpf_map_lookup_elem(&inflight_rq, &id), op;

	if (!p)
		return 0;
	op = *p;
	bpf_map_delete_elem(&inflight_rq, &id);
	account(&op, blk_errno(error), op.size);
	return 0;
}

/* ---- image files: the VMM's I/O syscalls -------------------------------
 * Classic syscall tracepoints; their programs return 1 so that perf and
 * other tracers on the same tracepoints still see every event. */

static __always_inline int sys_enter(__u64 fd, __u16 optype, __u64 size, __u64 offset,
				     __u16 ret_is_size)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct disk_fd_key fk = { .tgid = id >> 32, .fd = (__u32)fd };
	struct inflight op = {};
	__u32 tid = (__u32)id, *slot;

	if (fd > 0xffffffffULL)
		return 1;
	slot = bpf_map_lookup_elem(&watched_fds, &fk);
	if (!slot)
		return 1;
	op.slot = *slot;
	op.optype = optype;
	op.size = size;
	op.offset = offset;
	op.ret_is_size = ret_is_size;
	op.ts = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&inflight_sys, &tid, &op, BPF_ANY))
		count_drop(DISK_DROP_INFLIGHT);
	return 1;
}

static __always_inline int sys_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight *p = bpf_map_lookup_elem(&inflight_sys, &tid), op;
	__u64 size;

	if (!p)
		return 1;
	op = *p;
	bpf_map_delete_elem(&inflight_sys, &tid);
	size = op.size;
	/* a short transfer moved what it returned */
	if (ret >= 0 && op.ret_is_size)
		size = ret;
	account(&op, ret < 0 ? (__u16)-ret : 0, size);
	return 1;
}

/* Requested length of an iovec array; only read for watched fds. */
static __always_inline __u64 iov_len(const struct iovec *vec, __u64 vlen)
{
	__u64 total = 0;

	for (int i = 0; i < MAX_IOVS; i++) {
		struct iovec iov;

		if ((__u64)i >= vlen)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), &vec[i]))
			break;
		total += iov.iov_len;
	}
	return total;
}

static __always_inline int sys_enter_vec(struct trace_event_raw_sys_enter *ctx, __u16 optype)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct disk_fd_key fk = { .tgid = id >> 32, .fd = (__u32)ctx->args[0] };
	__s64 pos = (__s64)ctx->args[3];

	/* cheap filter first: the iovec walk is for watched fds only */
	if (!bpf_map_lookup_elem(&watched_fds, &fk))
		return 1;
	return sys_enter(ctx->args[0], optype,
			 iov_len((const struct iovec *)ctx->args[1], ctx->args[2]),
			 pos < 0 ? 0 : (__u64)pos, 1);
}

SEC("tracepoint/syscalls/sys_enter_pread64")
int disk_enter_pread64(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(ctx->args[0], DISK_OP_READ, ctx->args[2], ctx->args[3], 1);
}

SEC("tracepoint/syscalls/sys_enter_pwrite64")
int disk_enter_pwrite64(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(ctx->args[0], DISK_OP_WRITE, ctx->args[2], ctx->args[3], 1);
}

SEC("tracepoint/syscalls/sys_enter_preadv")
int disk_enter_preadv(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter_vec(ctx, DISK_OP_READ);
}

SEC("tracepoint/syscalls/sys_enter_pwritev")
int disk_enter_pwritev(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter_vec(ctx, DISK_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_preadv2")
int disk_enter_preadv2(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter_vec(ctx, DISK_OP_READ);
}

SEC("tracepoint/syscalls/sys_enter_pwritev2")
int disk_enter_pwritev2(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter_vec(ctx, DISK_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_fsync")
int disk_enter_fsync(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(ctx->args[0], DISK_OP_FLUSH, 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_fdatasync")
int disk_enter_fdatasync(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(ctx->args[0], DISK_OP_FLUSH, 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_fallocate")
int disk_enter_fallocate(struct trace_event_raw_sys_enter *ctx)
{
	/* QEMU discards with PUNCH_HOLE and writes zeroes with ZERO_RANGE */
	__u16 optype = (ctx->args[1] & FALLOC_FL_PUNCH_HOLE_) ? DISK_OP_DISCARD : DISK_OP_WRITE;

	return sys_enter(ctx->args[0], optype, ctx->args[3], ctx->args[2], 0);
}

#define DISK_EXIT(name)							\
SEC("tracepoint/syscalls/sys_exit_" #name)				\
int disk_exit_##name(struct trace_event_raw_sys_exit *ctx)		\
{									\
	return sys_exit(ctx->ret);					\
}

DISK_EXIT(pread64)
DISK_EXIT(pwrite64)
DISK_EXIT(preadv)
DISK_EXIT(pwritev)
DISK_EXIT(preadv2)
DISK_EXIT(pwritev2)
DISK_EXIT(fsync)
DISK_EXIT(fdatasync)
DISK_EXIT(fallocate)

char LICENSE[] SEC("license") = "GPL";
