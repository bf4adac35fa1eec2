/* Types shared by bpf/disk.bpf.c and src/collectors/disk.c. */
#ifndef KVMSCOPE_BPF_DISK_H
#define KVMSCOPE_BPF_DISK_H

/* Which optional key fields the kernel fills (`disk_want` in .bss, changed
 * by user space while the programs run). Fields left out stay 0, so keys
 * that differ only in them merge in the kernel; each key records the mask it
 * was built with, so a key aggregated before a change still decodes right. */
#define DISK_WANT_OPTYPE	(1u << 0)
#define DISK_WANT_ERRNO		(1u << 1)
#define DISK_WANT_LATENCY	(1u << 2)
#define DISK_WANT_SIZE		(1u << 3)
#define DISK_WANT_OFFSET	(1u << 4)
#define DISK_WANT_SUBSEC	(1u << 5)

enum disk_optype {
	DISK_OP_READ,
	DISK_OP_WRITE,
	DISK_OP_FLUSH,
	DISK_OP_DISCARD,
	DISK_OP__COUNT
};

/* Where an operation was seen. A disk the VMM holds open is counted at the
 * VMM's own operations on its fd (one per guest request, whatever the cache
 * mode or the device below); a block device with no fd in the VMM (kernel
 * back ends) at its requests (blk-mq) or bios (bio-based: zram, md). */
enum disk_source {
	DISK_SRC_SYSCALL,	/* pread/pwrite/preadv/pwritev/fsync/... */
	DISK_SRC_AIO,		/* io_submit, to the iocb's completion */
	DISK_SRC_URING,		/* io_uring SQE, to its CQE (iou-wrk workers too) */
	DISK_SRC_BIO,		/* block_bio_queue/complete on a bio-based device */
	DISK_SRC_RQ,		/* block_rq_issue/complete on a blk-mq device */
	DISK_SRC__COUNT
};

/* A watched disk of a VM ("slot"): user space chooses the granularity (one
 * slot per VM disk, per VM, or one for all) and pushes dev -> slot for block
 * devices and (tgid, fd) -> slot for image files. */
struct disk_fd_key {
	__u32 tgid;
	__u32 fd;
};

struct disk_key {
	__u32 sec;		/* TAI second of the completion */
	__u32 slot;
	__u8 optype;		/* enum disk_optype */
	__u8 source;		/* enum disk_source, always filled */
	__u16 err;		/* positive errno, 0 on success */
	__u16 subsec;		/* ms bucket lower bound */
	__u16 want;		/* the DISK_WANT_* mask this key was built with */
	__u64 latency;		/* ns bucket lower bound */
	__u64 size;		/* bytes bucket lower bound */
	__u64 offset;		/* bytes bucket lower bound */
};

/* Per-CPU counters of a key. */
#define DISK_VAL_OPS	0
#define DISK_VAL_BYTES	1
#define DISK_NVALS	2

/* Indexes of the drop counters (array map `drops`). */
#define DISK_DROP_AGGR		0	/* aggregation map full */
#define DISK_DROP_INFLIGHT	1	/* in-flight map full: op not timed */
#define DISK_DROP_UNTRACKED	2	/* io_submit batch beyond what is followed */
#define DISK_DROP__COUNT	3

/* iocbs of one io_submit call followed to their completion */
#define DISK_AIO_MAX_BATCH	32

#endif
