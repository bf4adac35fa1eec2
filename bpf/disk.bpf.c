// SPDX-License-Identifier: GPL-2.0
/* vm.disk_ops / vm.disk_bytes, kernel side.
 *
 * A disk is counted once per VMM operation, by one source that user space
 * chooses per disk:
 *   - a disk the VMM holds open (image file or block device, O_DIRECT or
 *     buffered): the VMM's own operations on (tgid, fd) in `watched_fds`,
 *     whichever way it submits them: positional I/O syscalls, Linux AIO
 *     (io_submit to the iocb's completion) or io_uring (SQE to CQE, also when
 *     an iou-wrk worker issues it). What the page cache, the loop driver or
 *     the device make of an operation below that is not counted again;
 *   - a block device with no fd in the VMM: its requests (block_rq_*, in
 *     `watched_devs`) or, on bio-based devices such as zram and md whose I/O
 *     never becomes a request, its bios (`watched_bio_devs`).
 * Events are aggregated per completion second in `aggr`, keyed only by the
 * fields the active instrumentations need (`disk_want`, set at run time),
 * plus the source, so user space can say which one counted each disk.
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
#define RQ_MAX_BIOS 8	/* bios of one request looked at for AIO iocbs */

#define REQ_F_FIXED_FILE_ 1ULL
#define IOCB_CMD_PREAD_ 0
#define IOCB_CMD_PWRITE_ 1
#define IOCB_CMD_FSYNC_ 2
#define IOCB_CMD_FDSYNC_ 3
#define IOCB_CMD_PREADV_ 7
#define IOCB_CMD_PWRITEV_ 8

/* user space changes it while the programs run: a new decomposition needs
 * no reload, and no undrained second is lost to one */
volatile __u32 disk_want;

/* Completion callbacks that tell whose a kiocb or bio is: an AIO iocb
 * (struct aio_kiocb) and a block device's async direct I/O (struct
 * blkdev_dio). Weak: where they are missing, AIO is timed at io_submit. */
extern const void aio_complete_rw __ksym __weak;
extern const void blkdev_bio_end_io_async __ksym __weak;

struct inflight {
	__u64 ts;		/* CLOCK_MONOTONIC ns at submission */
	__u64 size;
	__u64 offset;
	__u32 slot;
	__u8 optype;
	__u8 source;		/* enum disk_source */
	__u8 ret_is_size;	/* the completion's result is the bytes moved */
	__u8 async;		/* AIO: a kernel hook will report the completion */
};

/* An AIO iocb as both sides can name it: the context's user address
 * (aio_context_t, kioctx.user_id) and the user iocb (io_event.obj). */
struct aio_key {
	__u64 ctx;
	__u64 obj;
};

/* The watched iocbs of one io_submit call, between its entry and exit. */
struct aio_batch {
	__u64 ctx;
	__u32 n;
	__u32 idx[DISK_AIO_MAX_BATCH];	/* position in the call's iocb array */
	__u64 obj[DISK_AIO_MAX_BATCH];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);		/* kernel dev_t: major << 20 | minor */
	__type(value, __u32);		/* slot */
} watched_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);		/* kernel dev_t of a bio-based device */
	__type(value, __u32);		/* slot */
} watched_bio_devs SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);		/* struct bio * */
	__type(value, struct inflight);
} inflight_bio SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct aio_key);
	__type(value, struct inflight);
} inflight_aio SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);		/* tid inside io_submit */
	__type(value, struct aio_batch);
} aio_batches SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);		/* struct io_kiocb * */
	__type(value, struct inflight);
} inflight_uring SEC(".maps");

/* the initial value of an aio_batches entry (too big for the stack) */
static struct aio_batch empty_batch;

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
	__u32 want = disk_want;	/* one read: the key and its mask agree */
	struct llq_params lat_p = LLQ_LATENCY, size_p = LLQ_SIZE, off_p = LLQ_OFFSET;
	__u64 now = bpf_ktime_get_tai_ns(), hi;
	__u64 lat = bpf_ktime_get_ns() - op->ts;

	key.sec = now / NSEC_PER_SEC;
	key.slot = op->slot;
	key.source = op->source;
	key.want = want;
	if (want & DISK_WANT_OPTYPE)
		key.optype = op->optype;
	if (want & DISK_WANT_ERRNO)
		key.err = err;
	if (want & DISK_WANT_SUBSEC)
		key.subsec = subsecond__bucket_ms(now % NSEC_PER_SEC);
	if (want & DISK_WANT_LATENCY)
		key.latency = llq__bucket(lat, lat_p.base, lat_p.lo_mag, lat_p.hi_mag, lat_p.nsteps, &hi);
	if (want & DISK_WANT_SIZE)
		key.size = llq__bucket(size, size_p.base, size_p.lo_mag, size_p.hi_mag,
				       size_p.nsteps, &hi);
	if (want & DISK_WANT_OFFSET)
		key.offset = llq__bucket(op->offset, off_p.base, off_p.lo_mag, off_p.hi_mag,
					 off_p.nsteps, &hi);

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
	op.source = DISK_SRC_RQ;
	op.ts = bpf_ktime_get_ns();
	/* BPF_ANY: request structs are recycled, the newest issue wins */
	if (bpf_map_update_elem(&inflight_rq, &id, &op, BPF_ANY))
		count_drop(DISK_DROP_INFLIGHT);
	return 0;
}


/* ---- image files: the VMM's I/O syscalls -------------------------------
 * Classic syscall tracepoints; their programs return 1 so that perf and
 * other tracers on the same tracepoints still see every event. */

static __always_inline int sys_enter(__u64 fd, __u8 optype, __u64 size, __u64 offset,
				     __u8 ret_is_size)
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
	op.source = DISK_SRC_SYSCALL;
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

static __always_inline int sys_enter_vec(struct trace_event_raw_sys_enter *ctx, __u8 optype)
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
	__u8 optype = (ctx->args[1] & FALLOC_FL_PUNCH_HOLE_) ? DISK_OP_DISCARD : DISK_OP_WRITE;

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

/* ---- Linux AIO -----------------------------------------------------------
 * io_submit's entry reads the user iocbs and opens an in-flight entry per
 * iocb on a watched fd. Where the kernel completes the iocb later, a hook
 * that sees its aio_kiocb closes it: iomap_dio_complete (O_DIRECT on ext4,
 * xfs, btrfs) and, for a block device's single-bio async direct I/O,
 * block_bio_complete (bio-based devices) or block_rq_complete of the request
 * that carries the bio (blk-mq, where block_bio_complete never fires). Both mark the entry at submission so that io_submit's exit
 * knows to leave it; every other iocb (buffered I/O, multi-bio direct I/O,
 * fsync) has completed by the time io_submit returns and is closed there. */

static __always_inline int aio_hooks_known(void)
{
	return &aio_complete_rw != 0;
}

/* The aio_key of a kernel kiocb, or 0 when it is not an AIO iocb. */
static __always_inline int aio_key_of(struct kiocb *iocb, struct aio_key *key)
{
	struct aio_kiocb *req = (struct aio_kiocb *)iocb;

	if (!iocb || !aio_hooks_known() ||
	    (const void *)BPF_CORE_READ(iocb, ki_complete) != &aio_complete_rw)
		return 0;
	key->ctx = BPF_CORE_READ(req, ki_ctx, user_id);
	key->obj = BPF_CORE_READ(req, ki_res.obj);
	return 1;
}

/* The kiocb behind a block device's async direct-I/O bio, or NULL. */
static __always_inline struct kiocb *blkdev_dio_iocb(struct bio *bio)
{
	struct blkdev_dio *dio;

	if (!&blkdev_bio_end_io_async ||
	    (const void *)BPF_CORE_READ(bio, bi_end_io) != &blkdev_bio_end_io_async)
		return NULL;
	dio = (void *)bio - bpf_core_field_offset(struct blkdev_dio, bio);
	return BPF_CORE_READ(dio, iocb);
}

static __always_inline void aio_mark_async(struct kiocb *iocb)
{
	struct aio_key key;
	struct inflight *p;

	if (!aio_key_of(iocb, &key))
		return;
	p = bpf_map_lookup_elem(&inflight_aio, &key);
	if (p)
		p->async = 1;
}

static __always_inline void aio_complete(struct kiocb *iocb, __u16 err, __s64 bytes)
{
	struct aio_key key;
	struct inflight *p, op;

	if (!aio_key_of(iocb, &key))
		return;
	p = bpf_map_lookup_elem(&inflight_aio, &key);
	if (!p)
		return;
	op = *p;
	bpf_map_delete_elem(&inflight_aio, &key);
	account(&op, err, bytes >= 0 ? (__u64)bytes : op.size);
}

SEC("tracepoint/syscalls/sys_enter_io_submit")
int disk_enter_io_submit(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), aio_ctx = ctx->args[0];
	struct iocb *const *iocbpp = (struct iocb *const *)ctx->args[2];
	__s64 nr = (__s64)ctx->args[1];
	struct aio_batch *batch = NULL;
	__u32 tid = (__u32)id;

	for (int i = 0; i < DISK_AIO_MAX_BATCH; i++) {
		struct disk_fd_key fk = { .tgid = id >> 32 };
		struct inflight op = {};
		struct iocb *up, cb;
		struct aio_key key;
		__u32 *slot;

		if (i >= nr)
			break;
		if (bpf_probe_read_user(&up, sizeof(up), &iocbpp[i]) ||
		    bpf_probe_read_user(&cb, sizeof(cb), up))
			break;
		fk.fd = cb.aio_fildes;
		slot = bpf_map_lookup_elem(&watched_fds, &fk);
		if (!slot)
			continue;
		switch (cb.aio_lio_opcode) {
		case IOCB_CMD_PREAD_:
			op.optype = DISK_OP_READ;
			op.size = cb.aio_nbytes;
			break;
		case IOCB_CMD_PWRITE_:
			op.optype = DISK_OP_WRITE;
			op.size = cb.aio_nbytes;
			break;
		case IOCB_CMD_PREADV_:
			op.optype = DISK_OP_READ;
			op.size = iov_len((const struct iovec *)cb.aio_buf, cb.aio_nbytes);
			break;
		case IOCB_CMD_PWRITEV_:
			op.optype = DISK_OP_WRITE;
			op.size = iov_len((const struct iovec *)cb.aio_buf, cb.aio_nbytes);
			break;
		case IOCB_CMD_FSYNC_:
		case IOCB_CMD_FDSYNC_:
			op.optype = DISK_OP_FLUSH;
			break;
		default:
			continue;	/* poll */
		}
		if (op.optype != DISK_OP_FLUSH)
			op.offset = cb.aio_offset < 0 ? 0 : (__u64)cb.aio_offset;
		if (!batch) {
			bpf_map_update_elem(&aio_batches, &tid, &empty_batch, BPF_ANY);
			batch = bpf_map_lookup_elem(&aio_batches, &tid);
			if (!batch) {
				count_drop(DISK_DROP_INFLIGHT);
				return 1;
			}
			batch->ctx = aio_ctx;
		}
		op.slot = *slot;
		op.source = DISK_SRC_AIO;
		op.ts = bpf_ktime_get_ns();
		key.ctx = aio_ctx;
		key.obj = (__u64)up;
		if (bpf_map_update_elem(&inflight_aio, &key, &op, BPF_ANY)) {
			count_drop(DISK_DROP_INFLIGHT);
			continue;
		}
		if (batch->n < DISK_AIO_MAX_BATCH) {
			batch->idx[batch->n & (DISK_AIO_MAX_BATCH - 1)] = i;
			batch->obj[batch->n & (DISK_AIO_MAX_BATCH - 1)] = key.obj;
			batch->n++;
		}
	}
	if (nr > DISK_AIO_MAX_BATCH && batch)
		count_drop(DISK_DROP_UNTRACKED);
	return 1;
}

SEC("tracepoint/syscalls/sys_exit_io_submit")
int disk_exit_io_submit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct aio_batch *batch = bpf_map_lookup_elem(&aio_batches, &tid);
	long submitted = ctx->ret;

	if (!batch)
		return 1;
	for (int i = 0; i < DISK_AIO_MAX_BATCH; i++) {
		struct aio_key key;
		struct inflight *p, op;

		if (i >= batch->n)
			break;
		key.ctx = batch->ctx;
		key.obj = batch->obj[i];
		p = bpf_map_lookup_elem(&inflight_aio, &key);
		if (!p)
			continue;	/* completed already */
		if (batch->idx[i] < submitted && p->async)
			continue;	/* a completion hook will close it */
		op = *p;
		bpf_map_delete_elem(&inflight_aio, &key);
		if (batch->idx[i] < submitted)
			account(&op, 0, op.size);
	}
	bpf_map_delete_elem(&aio_batches, &tid);
	return 1;
}

SEC("tp_btf/iomap_dio_rw_begin")
int BPF_PROG(disk_iomap_dio_begin, struct kiocb *iocb)
{
	aio_mark_async(iocb);
	return 0;
}

SEC("tp_btf/iomap_dio_complete")
int BPF_PROG(disk_iomap_dio_complete, struct kiocb *iocb, int error, ssize_t ret)
{
	aio_complete(iocb, error < 0 ? (__u16)-error : 0, error < 0 ? -1 : ret);
	return 0;
}

/* ---- bios: block devices' async direct I/O, and bio-based devices -------- */

SEC("tp_btf/block_bio_queue")
int BPF_PROG(disk_bio_queue, struct bio *bio)
{
	struct block_device *bdev = BPF_CORE_READ(bio, bi_bdev);
	struct kiocb *iocb = blkdev_dio_iocb(bio);
	struct inflight op = {};
	__u64 id = (__u64)bio;
	__u32 dev, *slot, reqop;

	if (iocb) {
		aio_mark_async(iocb);
		return 0;
	}
	if (!bdev)
		return 0;
	dev = BPF_CORE_READ(bdev, bd_dev);
	slot = bpf_map_lookup_elem(&watched_bio_devs, &dev);
	if (!slot)
		return 0;
	reqop = BPF_CORE_READ(bio, bi_opf) & REQ_OP_MASK_;
	switch (reqop) {
	case 0: op.optype = DISK_OP_READ; break;
	case 1: op.optype = DISK_OP_WRITE; break;
	case 2: op.optype = DISK_OP_FLUSH; break;
	case 3:
	case 5:
		op.optype = DISK_OP_DISCARD; break;
	case 9:
		op.optype = DISK_OP_WRITE; break;
	default:
		return 0;
	}
	if (op.optype != DISK_OP_FLUSH) {
		op.size = BPF_CORE_READ(bio, bi_iter.bi_size);
		op.offset = (BPF_CORE_READ(bio, bi_iter.bi_sector) -
			     BPF_CORE_READ(bdev, bd_start_sect)) << 9;
	}
	op.slot = *slot;
	op.source = DISK_SRC_BIO;
	op.ts = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&inflight_bio, &id, &op, BPF_ANY))
		count_drop(DISK_DROP_INFLIGHT);
	return 0;
}

SEC("tp_btf/block_bio_complete")
int BPF_PROG(disk_bio_complete, struct request_queue *q, struct bio *bio)
{
	struct kiocb *iocb = blkdev_dio_iocb(bio);
	__u16 err = blk_errno(BPF_CORE_READ(bio, bi_status));
	__u64 id = (__u64)bio;
	struct inflight *p, op;

	if (iocb) {
		struct blkdev_dio *dio = (void *)bio - bpf_core_field_offset(struct blkdev_dio, bio);

		aio_complete(iocb, err, err ? -1 : (__s64)BPF_CORE_READ(dio, size));
		return 0;
	}
	p = bpf_map_lookup_elem(&inflight_bio, &id);
	if (!p)
		return 0;
	op = *p;
	bpf_map_delete_elem(&inflight_bio, &id);
	account(&op, err, op.size);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(disk_rq_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 id = (__u64)rq;
	struct inflight *p = bpf_map_lookup_elem(&inflight_rq, &id), op;
	struct bio *bio;

	if (p) {
		op = *p;
		bpf_map_delete_elem(&inflight_rq, &id);
		account(&op, blk_errno(error), op.size);
		return 0;
	}
	/* blk-mq never fires block_bio_complete: an AIO iocb's direct-I/O bio
	 * on a request-based device completes with its request */
	if (!&blkdev_bio_end_io_async)
		return 0;
	bio = BPF_CORE_READ(rq, bio);
	for (int i = 0; i < RQ_MAX_BIOS && bio; i++) {
		struct kiocb *iocb = blkdev_dio_iocb(bio);

		if (iocb)
			aio_complete(iocb, blk_errno(error), error ? -1 : (__s64)BPF_CORE_READ(
				(struct blkdev_dio *)((void *)bio - bpf_core_field_offset(struct blkdev_dio, bio)),
				size));
		bio = BPF_CORE_READ(bio, bi_next);
	}
	return 0;
}

/* ---- io_uring --------------------------------------------------------------
 * A request is followed from io_uring_submit_req (in the submitting thread:
 * the VMM's, or its SQPOLL thread) to the io_uring_complete of its CQE,
 * whichever thread posts it (an iou-wrk worker when the request was punted;
 * those are threads of the VMM's process, so the tgid still names the VM).
 * The io_kiocb links the two, so a punted or reissued request counts once.
 * Fixed files (registered file indexes) name no fd and are not followed. */

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(disk_uring_submit, struct io_kiocb *req)
{
	struct disk_fd_key fk = { .tgid = bpf_get_current_pid_tgid() >> 32 };
	struct io_rw *rw = (struct io_rw *)req;
	struct inflight op = {};
	__u64 id = (__u64)req;
	__s64 pos = 0;
	__u32 *slot;

	if (BPF_CORE_READ(req, flags) & REQ_F_FIXED_FILE_)
		return 0;
	fk.fd = BPF_CORE_READ(req, cqe.fd);
	slot = bpf_map_lookup_elem(&watched_fds, &fk);
	if (!slot)
		return 0;
	switch (BPF_CORE_READ(req, opcode)) {
	case 1:		/* IORING_OP_READV */
	case 4:		/* IORING_OP_READ_FIXED */
	case 22:	/* IORING_OP_READ */
	case 60:	/* IORING_OP_READV_FIXED */
		op.optype = DISK_OP_READ;
		pos = BPF_CORE_READ(rw, kiocb.ki_pos);
		op.ret_is_size = 1;
		break;
	case 2:		/* IORING_OP_WRITEV */
	case 5:		/* IORING_OP_WRITE_FIXED */
	case 23:	/* IORING_OP_WRITE */
	case 61:	/* IORING_OP_WRITEV_FIXED */
		op.optype = DISK_OP_WRITE;
		pos = BPF_CORE_READ(rw, kiocb.ki_pos);
		op.ret_is_size = 1;
		break;
	case 3:		/* IORING_OP_FSYNC */
	case 8:		/* IORING_OP_SYNC_FILE_RANGE */
		op.optype = DISK_OP_FLUSH;
		break;
	case 17: {	/* IORING_OP_FALLOCATE */
		struct io_sync *sync = (struct io_sync *)req;

		op.optype = (BPF_CORE_READ(sync, mode) & FALLOC_FL_PUNCH_HOLE_) ?
			    DISK_OP_DISCARD : DISK_OP_WRITE;
		op.size = BPF_CORE_READ(sync, len);
		pos = BPF_CORE_READ(sync, off);
		break;
	}
	default:
		return 0;
	}
	op.offset = pos < 0 ? 0 : (__u64)pos;	/* -1: the file position */
	op.slot = *slot;
	op.source = DISK_SRC_URING;
	op.ts = bpf_ktime_get_ns();
	/* BPF_ANY: io_kiocbs are recycled, the newest submission wins */
	if (bpf_map_update_elem(&inflight_uring, &id, &op, BPF_ANY))
		count_drop(DISK_DROP_INFLIGHT);
	return 0;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(disk_uring_complete, struct io_ring_ctx *ring, void *req, struct io_uring_cqe *cqe)
{
	__u64 id = (__u64)req;
	struct inflight *p, op;
	__s32 res;

	if (!req)
		return 0;
	p = bpf_map_lookup_elem(&inflight_uring, &id);
	if (!p)
		return 0;
	op = *p;
	bpf_map_delete_elem(&inflight_uring, &id);
	res = BPF_CORE_READ(cqe, res);
	account(&op, res < 0 ? (__u16)-res : 0, res >= 0 && op.ret_is_size ? (__u64)res : op.size);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
