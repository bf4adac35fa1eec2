/* vm.disk_ops and vm.disk_bytes: user side of bpf/disk.bpf.c.
 *
 * User space decides what each VM disk is watched through and pushes that
 * into the kernel's filter maps from discovery, at start and then at most
 * once a second while draining, so that new VMs and hot-plugged disks are
 * picked up and devices of no VM cost a single hash lookup:
 *   - a disk the VMM holds open (file or block device): the VMM's own
 *     operations on that fd (syscalls, Linux AIO, io_uring), so that one
 *     guest request is one operation whatever the page cache or the device
 *     below make of it;
 *   - a block device named on the command line but not open in the VMM
 *     (kernel back ends): its requests, or its bios where the device is
 *     bio-based (no blk-mq queue: zram, md).
 * Which source counted each disk is part of every aggregated key; the
 * collector's source line names them per disk.
 *
 * The kernel knows disks only as "slots"; the slot table here turns them
 * back into (vm, disk path). Slots are never reused within a run, so a key
 * drained after its VM exited still names the right VM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collectors/collector.h"
#include "common/clock.h"
#include "common/log.h"
#include "disk.h"
#include "disk.skel.h"

#define SUB "disk"

#define MAX_SLOTS 65536
#define MAX_WATCHED 4096

enum slot_mode {
	SLOT_PER_DISK,		/* disk (or something finer) is needed */
	SLOT_PER_VM,		/* vm is needed, disk is not */
	SLOT_ONE,		/* neither: every disk shares slot 0 */
};

struct disk_slot {
	enum slot_mode mode;	/* the granularity it was made under: what it names */
	pid_t pid;
	char vm[VM_NAME_MAX];
	char path[256];
	uint32_t sources;	/* 1 << enum disk_source seen for this slot */
	int64_t last_seen;	/* second of its newest drained key */
};

/* What sync_watched pushes into the kernel's filters, MAX_WATCHED of each
 * kind: too big for a stack frame, so the collector keeps one. */
struct watch_lists {
	uint32_t devs[MAX_WATCHED], dev_slots[MAX_WATCHED], fd_slots[MAX_WATCHED];
	uint32_t bio_devs[MAX_WATCHED], bio_slots[MAX_WATCHED];
	struct disk_fd_key fds[MAX_WATCHED];
	unsigned char stale[MAX_WATCHED][16];	/* sync_map's keys to delete */
};

struct disk_priv {
	struct disk_bpf *skel;
	struct watch_lists *lists;
	uint32_t want;
	enum slot_mode mode;
	uint64_t fields[METRIC__COUNT];
	struct disk_slot *slots;
	size_t nslots, cap;
	struct timespec last_sync;
	char source[4096];	/* c->source: the sources seen, per disk */
};

#define SOURCE_GENERAL "the VMM's I/O on disks it holds open: pread/pwrite/preadv/pwritev/" \
	"fsync/fdatasync/fallocate (syscall), io_submit to iomap/blkdev completion (aio), " \
	"io_uring_submit_req to io_uring_complete (io_uring); block_rq_issue/complete (rq) " \
	"or block_bio_queue/complete (bio) for block devices it does not hold open"

static const char *const source_names[DISK_SRC__COUNT] = {
	[DISK_SRC_SYSCALL] = "syscall",
	[DISK_SRC_AIO] = "aio",
	[DISK_SRC_URING] = "io_uring",
	[DISK_SRC_BIO] = "bio",
	[DISK_SRC_RQ] = "rq",
};

static const char *const optype_names[DISK_OP__COUNT] = {
	[DISK_OP_READ] = "read",
	[DISK_OP_WRITE] = "write",
	[DISK_OP_FLUSH] = "flush",
	[DISK_OP_DISCARD] = "discard",
};

static void want_of(const uint64_t fields[METRIC__COUNT], uint32_t *want, enum slot_mode *mode)
{
	uint64_t ops = fields[METRIC_VM_DISK_OPS], bytes = fields[METRIC_VM_DISK_BYTES];
	uint64_t any = ops | bytes;

	*want = 0;
	if (any & (1ull << F_DISK_OPTYPE))
		*want |= DISK_WANT_OPTYPE;
	if (ops & (1ull << F_DISK_ERRNO))
		*want |= DISK_WANT_ERRNO;
	if (ops & (1ull << F_DISK_LATENCY))
		*want |= DISK_WANT_LATENCY;
	if (ops & (1ull << F_DISK_SIZE))
		*want |= DISK_WANT_SIZE;
	if (ops & (1ull << F_DISK_OFFSET))
		*want |= DISK_WANT_OFFSET;
	if (ops & (1ull << F_DISK_SUBSECOND))
		*want |= DISK_WANT_SUBSEC;
	if (any & (1ull << F_DISK_DISK))
		*mode = SLOT_PER_DISK;
	else if (any & (1ull << F_VM))
		*mode = SLOT_PER_VM;
	else
		*mode = SLOT_ONE;
}

/* Slot of (vm, disk) under the current granularity; -ENOSPC when the table
 * is full (the disk is then not watched, and a warning says so). */
static int64_t slot_of(struct disk_priv *p, const struct vm_info *vm, const struct vm_disk *d)
{
	pid_t pid = p->mode == SLOT_ONE ? 0 : vm->pid;
	const char *path = p->mode == SLOT_PER_DISK ? d->path : "";

	for (size_t i = 0; i < p->nslots; i++)
		if (p->slots[i].mode == p->mode && p->slots[i].pid == pid &&
		    !strcmp(p->slots[i].path, path)) {
			if (p->mode != SLOT_ONE)
				snprintf(p->slots[i].vm, sizeof(p->slots[i].vm), "%s", vm->name);
			return (int64_t)i;
		}
	if (p->nslots == MAX_SLOTS)
		return -ENOSPC;
	if (p->nslots == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		struct disk_slot *bigger = realloc(p->slots, cap * sizeof(*bigger));

		if (!bigger)
			return -ENOMEM;
		p->slots = bigger;
		p->cap = cap;
	}
	struct disk_slot *s = &p->slots[p->nslots];

	s->mode = p->mode;
	s->pid = pid;
	s->sources = 0;
	s->last_seen = 0;
	snprintf(s->vm, sizeof(s->vm), "%s", p->mode == SLOT_ONE ? "" : vm->name);
	snprintf(s->path, sizeof(s->path), "%s", path);
	return (int64_t)p->nslots++;
}

/* Make map_fd hold exactly the n (key, slot) pairs in keys/slots; `stale`
 * is scratch space for MAX_WATCHED keys. */
static int sync_map(int map_fd, const void *keys, const uint32_t *slots, size_t n, size_t ksz,
		    unsigned char (*stale)[16])
{
	unsigned char cur[16], next[16];
	size_t nstale = 0;
	int have = 0, err = 0;

	while (nstale < MAX_WATCHED && !bpf_map_get_next_key(map_fd, have ? cur : NULL, next)) {
		size_t i;

		for (i = 0; i < n; i++)
			if (!memcmp((const unsigned char *)keys + i * ksz, next, ksz))
				break;
		if (i == n)
			memcpy(stale[nstale++], next, ksz);
		memcpy(cur, next, ksz);
		have = 1;
	}
	for (size_t i = 0; i < nstale; i++)
		bpf_map_delete_elem(map_fd, stale[i]);
	for (size_t i = 0; i < n; i++)
		if (bpf_map_update_elem(map_fd, (const unsigned char *)keys + i * ksz, &slots[i], BPF_ANY))
			err = -errno;
	return err;
}

/* A block device whose I/O never becomes a request (zram, md, dm, nvme
 * multipath heads) has no blk-mq "mq" directory; a partition inherits its
 * disk's. 1 / 0; a device that vanished reads as request-based. */
static int is_bio_based(dev_t dev)
{
	char path[96];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/partition", major(dev), minor(dev));
	if (!stat(path, &st))
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/../mq", major(dev), minor(dev));
	else
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/mq", major(dev), minor(dev));
	if (!stat(path, &st))
		return 0;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", major(dev), minor(dev));
	return !stat(path, &st);
}

const char *disk__counted_at(const struct vm_disk *d)
{
	if (d->fd >= 0)
		return "vmm";
	if (!d->is_block)
		return "none";
	return is_bio_based(d->dev) ? "bio" : "rq";
}

#define SOURCE_RECENT_S 60

/* c->source for users: which source counted each disk that did I/O in the
 * last minute ("counting: VM:DISK=aio; ..."), first, so that a narrow
 * terminal shows it; then the general rule. */
static void describe_sources(struct disk_priv *p, struct collector *c, int64_t now)
{
	size_t len = 0, cap = sizeof(p->source);

	p->source[0] = '\0';
	for (size_t i = 0; i < p->nslots && len < cap; i++) {
		const struct disk_slot *s = &p->slots[i];
		int first = 1;

		if (!s->sources || s->last_seen < now - SOURCE_RECENT_S)
			continue;
		len += (size_t)snprintf(p->source + len, cap - len, "%s%s%s%s=",
					len ? "; " : "counting: ", s->mode == SLOT_ONE ? "all" : s->vm,
					*s->path ? ":" : "", s->path);
		for (int src = 0; src < DISK_SRC__COUNT && len < cap; src++)
			if (s->sources & (1u << src)) {
				len += (size_t)snprintf(p->source + len, cap - len, "%s%s", first ? "" : "+",
							source_names[src]);
				first = 0;
			}
	}
	if (len < cap)
		snprintf(p->source + len, cap - len, "%s%s", len ? " | " : "", SOURCE_GENERAL);
	c->source = p->source;
}

/* Push the disks of `list` into the kernel's filters. */
static int sync_watched(struct disk_priv *p, const struct vm_list *list)
{
	struct watch_lists *w = p->lists;
	uint32_t *devs = w->devs, *dev_slots = w->dev_slots, *fd_slots = w->fd_slots;
	uint32_t *bio_devs = w->bio_devs, *bio_slots = w->bio_slots;
	struct disk_fd_key *fds = w->fds;
	size_t ndevs = 0, nbio = 0, nfds = 0;
	int err;

	for (size_t v = 0; v < list->nvms; v++) {
		const struct vm_info *vm = &list->vms[v];

		for (size_t i = 0; i < vm->ndisks; i++) {
			const struct vm_disk *d = &vm->disks[i];
			int64_t slot;

			const char *at = disk__counted_at(d);
			int by_fd = !strcmp(at, "vmm"), bio = !strcmp(at, "bio");

			/* an image seen only on the command line has no fd to watch yet */
			if (!strcmp(at, "none"))
				continue;
			if ((by_fd && nfds == MAX_WATCHED) || (bio && nbio == MAX_WATCHED) ||
			    (!by_fd && !bio && ndevs == MAX_WATCHED)) {
				log_warn(SUB, "more than %d watched disks: %s of VM %s is not watched",
					 MAX_WATCHED, d->path, vm->name);
				continue;
			}
			slot = slot_of(p, vm, d);
			if (slot < 0) {
				log_warn(SUB, "disk %s of VM %s is not watched: %s", d->path, vm->name,
					 strerror((int)-slot));
				continue;
			}
			if (by_fd) {
				fds[nfds].tgid = (uint32_t)vm->pid;
				fds[nfds].fd = (uint32_t)d->fd;
				fd_slots[nfds++] = (uint32_t)slot;
			} else if (bio) {
				bio_devs[nbio] = (major(d->dev) << 20) | minor(d->dev);
				bio_slots[nbio++] = (uint32_t)slot;
			} else {
				/* the kernel's dev_t, not glibc's encoding */
				devs[ndevs] = (major(d->dev) << 20) | minor(d->dev);
				dev_slots[ndevs++] = (uint32_t)slot;
			}
		}
	}
	err = sync_map(bpf_map__fd(p->skel->maps.watched_devs), devs, dev_slots, ndevs, sizeof(devs[0]),
		       w->stale);
	if (!err)
		err = sync_map(bpf_map__fd(p->skel->maps.watched_bio_devs), bio_devs, bio_slots, nbio,
			       sizeof(bio_devs[0]), w->stale);
	if (!err)
		err = sync_map(bpf_map__fd(p->skel->maps.watched_fds), fds, fd_slots, nfds, sizeof(fds[0]),
			       w->stale);
	if (err)
		log_warn(SUB, "updating the watched disk maps failed: %s", strerror(-err));
	clock_gettime(CLOCK_MONOTONIC, &p->last_sync);
	return err;
}

static void priv_free(struct disk_priv *p)
{
	if (!p)
		return;
	collector__bpf_stop(disk_bpf, &p->skel);
	free(p->slots);
	free(p->lists);
	free(p);
}

static int disk_before_attach(void *skel, void *ctx)
{
	struct disk_bpf *s = skel;
	const struct disk_priv *p = ctx;

	s->bss->disk_want = p->want;
	return 0;
}

/* Fields a kernel may lack that these programs read without a guard of
 * their own: without them only that program is left out. */
static const struct collector_guard disk_guards[] = {
	{ "disk_rq_issue", "request", "part" },
	{ "disk_bio_queue", "bio", "bi_bdev" },
	{ "disk_bio_queue", "blkdev_dio", "iocb" },
	{ "disk_bio_complete", "blkdev_dio", "iocb" },
	{ "disk_bio_complete", "blkdev_dio", "size" },
	{ "disk_rq_complete", "blkdev_dio", "iocb" },
	{ "disk_rq_complete", "blkdev_dio", "size" },
	{ "disk_iomap_dio_begin", "aio_kiocb", "ki_ctx" },
	{ "disk_iomap_dio_complete", "aio_kiocb", "ki_res" },
	{ "disk_uring_submit", "io_kiocb", "cqe" },
	{ "disk_uring_complete", "io_uring_cqe", "res" },
	{ NULL, NULL, NULL },
};

static const struct collector_bpf disk_bpf_life = {
	.what = "vm.disk",
	.attach_hint = "(is tracefs mounted at /sys/kernel/tracing?)",
	.guards = disk_guards,
	.before_attach = disk_before_attach,
};

/* Discovery's disks into the kernel's filters; start and reconfigure have
 * no vmcache, so they scan once themselves and the next second counts. */
static void sync_from_scan(struct disk_priv *p)
{
	struct vm_list list = { 0 };

	if (!discovery__scan("/proc", &list)) {
		sync_watched(p, &list);
		discovery__free(&list);
	}
}

/* On success c->priv owns the skeleton (loaded and attached) and the slot
 * table until disk_stop. */
static int disk_start(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct disk_priv *p = calloc(1, sizeof(*p));
	char msg[256];
	int err;

	if (!p)
		return -ENOMEM;
	p->lists = malloc(sizeof(*p->lists));
	if (!p->lists) {
		err = -ENOMEM;
		goto err_free;
	}
	err = collector__check_bpf(msg, sizeof(msg));
	if (err) {
		log_error(SUB, "%s", msg);
		goto err_free;
	}
	memcpy(p->fields, fields, sizeof(p->fields));
	want_of(fields, &p->want, &p->mode);
	err = collector__bpf_start(disk_bpf, &p->skel, &disk_bpf_life, p, msg, sizeof(msg));
	if (err) {
		log_error(SUB, "%s", msg);
		goto err_free;
	}
	sync_from_scan(p);
	c->priv = p;
	describe_sources(p, c, 0);
	return 0;
err_free:
	priv_free(p);
	return err;
}

static void disk_stop(struct collector *c)
{
	priv_free(c->priv);
	c->priv = NULL;
}

/* The key's fields are chosen in the kernel at run time (disk_want), and
 * every key and slot says what it was built with: nothing is reloaded, so
 * the seconds not yet drained stay exact for every instrumentation. */
static int disk_reconfigure(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct disk_priv *p = c->priv;
	enum slot_mode mode;
	uint32_t want;

	if (!p)
		return -EINVAL;
	want_of(fields, &want, &mode);
	memcpy(p->fields, fields, sizeof(p->fields));
	p->want = want;
	p->skel->bss->disk_want = want;
	if (mode != p->mode) {
		p->mode = mode;
		sync_from_scan(p);
	}
	return 0;
}

static int64_t rec_time_of(const struct disk_key *key, const struct drain_emit *e)
{
	return (int64_t)key->sec - e->env->tai_offset;
}

static int emit_one(const void *k, const uint64_t *vals, void *ctx)
{
	const struct disk_key *key = k;
	struct drain_emit *e = ctx;
	struct disk_priv *p = e->priv;
	struct disk_slot *s = key->slot < p->nslots ? &p->slots[key->slot] : NULL;
	struct record rec;
	char errbuf[16];
	int err;

	if (s && key->source < DISK_SRC__COUNT) {
		s->sources |= 1u << key->source;
		if (rec_time_of(key, e) > s->last_seen)
			s->last_seen = rec_time_of(key, e);
	}
	memset(&rec, 0, sizeof(rec));
	rec.metric = METRIC_VM_DISK_OPS;
	rec.time = (int64_t)key->sec - e->env->tai_offset;
	rec.value = vals[DISK_VAL_OPS];
	rec.str[F_HOSTNAME] = e->env->hostname;
	if (s && s->mode != SLOT_ONE)
		rec.str[F_VM] = s->vm;
	if (s && s->mode == SLOT_PER_DISK)
		rec.str[F_DISK_DISK] = s->path;
	if ((key->want & DISK_WANT_OPTYPE) && key->optype < DISK_OP__COUNT)
		rec.str[F_DISK_OPTYPE] = optype_names[key->optype];
	if (key->want & DISK_WANT_ERRNO) {
		snprintf(errbuf, sizeof(errbuf), "%u", key->err);
		rec.str[F_DISK_ERRNO] = errbuf;
	}
	rec.num[F_DISK_LATENCY] = key->latency;
	rec.num[F_DISK_SIZE] = key->size;
	rec.num[F_DISK_OFFSET] = key->offset;
	rec.num[F_DISK_SUBSECOND] = key->subsec;
	if (rec.value) {
		err = drain_emit__record(e, &rec);
		if (err)
			return err;
	}
	/* vm.disk_bytes: the same key without the vm.disk_ops-only fields */
	rec.metric = METRIC_VM_DISK_BYTES;
	rec.value = vals[DISK_VAL_BYTES];
	rec.str[F_DISK_ERRNO] = NULL;
	rec.num[F_DISK_LATENCY] = rec.num[F_DISK_SIZE] = rec.num[F_DISK_OFFSET] = rec.num[F_DISK_SUBSECOND] = 0;
	if (rec.value) {
		err = drain_emit__record(e, &rec);
		if (err)
			return err;
	}
	return 0;
}

static int disk_drain(struct collector *c, int64_t before, const struct collector_env *env,
		      record_sink_fn sink, void *ctx)
{
	struct disk_priv *p = c->priv;
	struct drain_emit e = { p, env, sink, ctx, 0 };
	int err;

	if (!p)
		return -EINVAL;
	/* new VMs and hot-plugged disks: refresh the filters about once a second */
	if (env->vms && clock__ms_since(&p->last_sync) >= 900 && !vmcache__refresh(env->vms))
		sync_watched(p, vmcache__list(env->vms));
	err = collector__drain_records(bpf_map__fd(p->skel->maps.aggr), sizeof(struct disk_key),
				       DISK_NVALS, before, &e, emit_one);
	describe_sources(p, c, before);
	return err;
}

static uint64_t disk_drops(struct collector *c)
{
	struct disk_priv *p = c->priv;
	uint64_t total = 0, n;

	if (!p)
		return 0;
	for (uint32_t i = 0; i < DISK_DROP__COUNT; i++)
		if (!bpf_map_lookup_elem(bpf_map__fd(p->skel->maps.drops), &i, &n))
			total += n;
	return total;
}

const struct collector_ops collector_disk_ops = {
	.name = "disk",
	.uses_bpf = 1,
	.metrics = (1u << METRIC_VM_DISK_OPS) | (1u << METRIC_VM_DISK_BYTES),
	.start = disk_start,
	.reconfigure = disk_reconfigure,
	.drain = disk_drain,
	.stop = disk_stop,
	.drops = disk_drops,
};
