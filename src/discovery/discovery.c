/* VM discovery over a /proc tree.
 *
 * A VM is any process holding an "anon_inode:kvm-vm" fd. For each one we read
 * its cmdline (name, disks and taps named there), its fds (vCPU fds, tun fds,
 * open disks) and its threads' names (which thread runs which vCPU).
 *
 * Everything is read relative to directory fds (openat/readlinkat/fstatat)
 * so that a scan costs one syscall per fd, and so that it works on any tree
 * that looks like /proc: the unit tests build one in a temp dir. Processes
 * vanish and permissions differ all the time: any ENOENT/ESRCH/EACCES on a
 * process or an item skips that process or item, never the scan.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "discovery/discovery.h"

/* libvirt command lines run to ~10 KiB; a -name beyond this is not seen. */
#define CMDLINE_MAX (128 * 1024)

static int is_number(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* Read a small file below dirfd into buf (NUL-terminated). Returns the
 * length or -errno. */
static ssize_t read_at(int dirfd, const char *path, char *buf, size_t size)
{
	ssize_t n, total = 0;
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while ((size_t)total + 1 < size) {
		n = read(fd, buf + total, size - 1 - total);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			total = -errno;
			goto out;
		}
		if (n == 0)
			break;
		total += n;
	}
	buf[total] = '\0';
out:
	close(fd);
	return total;
}

static ssize_t link_at(int dirfd, const char *name, char *buf, size_t size)
{
	ssize_t n = readlinkat(dirfd, name, buf, size - 1);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return n;
}

/* Directory reading straight from getdents64 into a caller buffer: opendir
 * costs a malloc, an fcntl and an fstat per directory, and a scan opens two
 * directories per process. */
struct dir_iter {
	int fd;
	long n, pos;
	char buf[4096];
};

static void dir_iter_init(struct dir_iter *it, int fd)
{
	it->fd = fd;
	it->n = it->pos = 0;
}

static void dir_iter_rewind(struct dir_iter *it)
{
	lseek(it->fd, 0, SEEK_SET);
	it->n = it->pos = 0;
}

/* Next entry name that is a decimal number (pids, tids, fds), or NULL. */
static const char *dir_iter_next_number(struct dir_iter *it)
{
	struct dirent64 *d;

	for (;;) {
		if (it->pos >= it->n) {
			it->n = getdents64(it->fd, it->buf, sizeof(it->buf));
			it->pos = 0;
			if (it->n <= 0)
				return NULL;
		}
		d = (struct dirent64 *)(it->buf + it->pos);
		it->pos += d->d_reclen;
		if (is_number(d->d_name))
			return d->d_name;
	}
}

/* Grow *arr (of *n elements of `size` bytes, capacity *cap) by one zeroed
 * element; the array stays owned by whoever owns *arr. NULL on ENOMEM. */
static void *push(void **arr, size_t *n, size_t *cap, size_t size)
{
	char *p;

	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;

		p = realloc(*arr, ncap * size);
		if (!p)
			return NULL;
		*arr = p;
		*cap = ncap;
	}
	p = (char *)*arr + *n * size;
	memset(p, 0, size);
	(*n)++;
	return p;
}

/* Per-VM build state: capacities live here, not in the public struct. */
struct vm_build {
	struct vm_info *vm;
	size_t vcpu_cap, disk_cap, nic_cap;
	int pidfd;
	int err;		/* first ENOMEM, reported by the scan */
};

static int add_vcpu(struct vm_build *b, int index, pid_t tid)
{
	struct vm_info *vm = b->vm;
	struct vm_vcpu *v;

	for (size_t i = 0; i < vm->nvcpus; i++) {
		if (vm->vcpus[i].index == index) {
			if (tid)
				vm->vcpus[i].tid = tid;
			return 0;
		}
	}
	v = push((void **)&vm->vcpus, &vm->nvcpus, &b->vcpu_cap, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->index = index;
	v->tid = tid;
	return 0;
}

static int add_nic(struct vm_build *b, const char *ifname)
{
	struct vm_info *vm = b->vm;
	struct vm_nic *n;

	if (!*ifname)
		return 0;
	for (size_t i = 0; i < vm->nnics; i++)
		if (!strncmp(vm->nics[i].ifname, ifname, sizeof(vm->nics[i].ifname) - 1))
			return 0;
	n = push((void **)&vm->nics, &vm->nnics, &b->nic_cap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	snprintf(n->ifname, sizeof(n->ifname), "%s", ifname);
	return 0;
}

static int same_disk(const struct vm_disk *d, int is_block, dev_t dev, ino_t ino,
		     const char *path)
{
	if (dev || ino)
		return d->is_block == is_block && d->dev == dev && d->ino == ino;
	return !strncmp(d->path, path, sizeof(d->path) - 1);
}

static int add_disk(struct vm_build *b, const char *path, int fd, const struct stat *st)
{
	struct vm_info *vm = b->vm;
	int is_block = st && S_ISBLK(st->st_mode);
	dev_t dev = st ? (is_block ? st->st_rdev : st->st_dev) : 0;
	ino_t ino = st && !is_block ? st->st_ino : 0;
	struct vm_disk *d;

	for (size_t i = 0; i < vm->ndisks; i++)
		if (same_disk(&vm->disks[i], is_block, dev, ino, path))
			return 0;
	d = push((void **)&vm->disks, &vm->ndisks, &b->disk_cap, sizeof(*d));
	if (!d)
		return -ENOMEM;
	snprintf(d->path, sizeof(d->path), "%s", path);
	d->is_block = is_block;
	d->dev = dev;
	d->ino = ino;
	d->fd = fd;
	return 0;
}

/* A raw image is a whole number of sectors; an image in a format with its
 * own header (qcow2 grows by clusters and metadata, so its size is any
 * number) is known by its magic. */
static int is_disk_stat(int fddir, const char *fd, const struct stat *st)
{
	static const char qcow2_magic[4] = { 'Q', 'F', 'I', '\xfb' };
	char magic[4];
	int f, is_image = 0;

	if (S_ISBLK(st->st_mode))
		return 1;
	if (!S_ISREG(st->st_mode) || st->st_size <= 0)
		return 0;
	if (st->st_size % 512 == 0)
		return 1;
	/* /proc/<pid>/fd/N is a magic link: opening it reopens the VMM's file */
	f = openat(fddir, fd, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (f < 0)
		return 0;
	is_image = pread(f, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
		   !memcmp(magic, qcow2_magic, sizeof(magic));
	close(f);
	return is_image;
}

/* One pass over /proc/<pid>/fd (it, still owned by the caller): vCPU fds,
 * tun fds, open disks. */
static void scan_fds(struct vm_build *b, struct dir_iter *it)
{
	char link[PATH_MAX], fdinfo[4096], path[300], ifname[IF_NAMESIZE];
	const char *fd;
	struct stat st;
	int idx;

	dir_iter_rewind(it);
	while ((fd = dir_iter_next_number(it))) {
		if (link_at(it->fd, fd, link, sizeof(link)) < 0)
			continue;
		idx = discovery__parse_vcpu_fd_link(link);
		if (idx >= 0) {
			if (add_vcpu(b, idx, 0))
				b->err = -ENOMEM;
		} else if (!strcmp(link, "/dev/net/tun")) {
			snprintf(path, sizeof(path), "fdinfo/%s", fd);
			if (read_at(b->pidfd, path, fdinfo, sizeof(fdinfo)) > 0 &&
			    !discovery__parse_fdinfo_iff(fdinfo, ifname, sizeof(ifname)) &&
			    add_nic(b, ifname))
				b->err = -ENOMEM;
		} else if (!strncmp(link, "/dev/tap", 8) && link[8] >= '0' && link[8] <= '9') {
			/* macvtap: /dev/tapN is the interface with ifindex N */
			if (if_indextoname((unsigned)atoi(link + 8), ifname) && add_nic(b, ifname))
				b->err = -ENOMEM;
		} else if (discovery__path_may_be_disk(link) &&
			   !fstatat(it->fd, fd, &st, 0) && is_disk_stat(it->fd, fd, &st)) {
			if (add_disk(b, link, atoi(fd), &st))
				b->err = -ENOMEM;
		}
	}
}

/* KVM's own workers live in the VMM's thread group (kvm-nx-lpage-recovery
 * is a PF_USER_WORKER thread) and their syscall file shows the registers of
 * the vCPU thread that created them, stuck in that first KVM_RUN: they must
 * not pass for vCPU threads. */
#define TASK_PF_USER_WORKER 0x00004000u
#define TASK_PF_KTHREAD     0x00200000u
static int is_kernel_worker(int taskfd, const char *tid)
{
	char path[300], text[512], *p;
	unsigned long flags;

	snprintf(path, sizeof(path), "%s/stat", tid);
	if (read_at(taskfd, path, text, sizeof(text)) <= 0 || !(p = strrchr(text, ')')))
		return 1;
	/* after "pid (comm)": state ppid pgrp session tty_nr tpgid flags */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1)
		return 1;
	return (flags & (TASK_PF_USER_WORKER | TASK_PF_KTHREAD)) != 0;
}

/* The vCPU thread `tid` runs, read from the kernel: a thread blocked in
 * ioctl(fd, KVM_RUN) (in-kernel halt, or an exit being handled) names its
 * vCPU fd in /proc/<pid>/task/<tid>/syscall. A thread in guest mode reads
 * "running" and one between two KVM_RUNs is in some other syscall, so this
 * is asked again a few times (see scan_threads). -1 if not seen now. */
static int vcpu_of_kvm_run(struct vm_build *b, int taskfd, const char *tid)
{
	char path[300], text[512], link[64];
	int fd;

	if (is_kernel_worker(taskfd, tid))
		return -1;
	snprintf(path, sizeof(path), "%s/syscall", tid);
	if (read_at(taskfd, path, text, sizeof(text)) <= 0)
		return -1;
	fd = discovery__parse_kvm_run_syscall(text);
	if (fd < 0)
		return -1;
	snprintf(path, sizeof(path), "fd/%d", fd);
	if (link_at(b->pidfd, path, link, sizeof(link)) < 0)
		return -1;
	return discovery__parse_vcpu_fd_link(link);
}

static int vcpus_without_tid(const struct vm_info *vm)
{
	int n = 0;

	for (size_t i = 0; i < vm->nvcpus; i++)
		n += vm->vcpus[i].tid == 0;
	return n;
}

/* Which thread runs which vCPU: the thread name where the VMM sets one
 * ("CPU 3/KVM"; QEMU only with debug-threads=on), else the vCPU fd a thread
 * is in KVM_RUN on. That second answer is a snapshot, so up to
 * KVM_RUN_PASSES looks, 1 ms apart, while some vCPU still has no thread;
 * metrics do not depend on it (the kernel side learns each thread's vCPU
 * from struct kvm_vcpu), only the tids `kvmscope vms` shows. */
#define KVM_RUN_PASSES 5
static void scan_threads(struct vm_build *b)
{
	char path[300], comm[64];
	struct dir_iter it;
	const char *tid;
	int fd, idx;

	fd = openat(b->pidfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	dir_iter_init(&it, fd);
	while ((tid = dir_iter_next_number(&it))) {
		snprintf(path, sizeof(path), "%s/comm", tid);
		if (read_at(fd, path, comm, sizeof(comm)) <= 0)
			continue;
		idx = discovery__parse_vcpu_comm(comm);
		if (idx >= 0 && add_vcpu(b, idx, (pid_t)atol(tid)))
			b->err = -ENOMEM;
	}
	for (int pass = 0; pass < KVM_RUN_PASSES && vcpus_without_tid(b->vm); pass++) {
		if (pass)
			usleep(1000);
		dir_iter_rewind(&it);
		while ((tid = dir_iter_next_number(&it))) {
			if (vm_info__vcpu_of_tid(b->vm, (pid_t)atol(tid)) >= 0)
				continue;
			idx = vcpu_of_kvm_run(b, fd, tid);
			if (idx >= 0 && add_vcpu(b, idx, (pid_t)atol(tid)))
				b->err = -ENOMEM;
		}
	}
	close(fd);
}

static void cmdline_item(void *ctx, enum discovery_arg kind, const char *value)
{
	struct vm_build *b = ctx;
	char rel[PATH_MAX];
	struct stat st;
	int ok;

	if (kind == DISCOVERY_ARG_NIC) {
		if (add_nic(b, value))
			b->err = -ENOMEM;
		return;
	}
	/* a relative path is relative to the VMM's cwd, not ours */
	if (value[0] == '/') {
		ok = !stat(value, &st);
	} else {
		ok = snprintf(rel, sizeof(rel), "cwd/%s", value) < (int)sizeof(rel) &&
		     !fstatat(b->pidfd, rel, &st, 0);
	}
	if (add_disk(b, value, -1, ok ? &st : NULL))
		b->err = -ENOMEM;
}

static int cmp_vcpu(const void *a, const void *b)
{
	const struct vm_vcpu *x = a, *y = b;

	return (x->index > y->index) - (x->index < y->index);
}

/* Open disks in fd order, then those only named on the command line. */
static int cmp_disk(const void *a, const void *b)
{
	unsigned x = (unsigned)((const struct vm_disk *)a)->fd;
	unsigned y = (unsigned)((const struct vm_disk *)b)->fd;

	return (x > y) - (x < y);
}

static int cmp_vm(const void *a, const void *b)
{
	const struct vm_info *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

static void vm_info__release(struct vm_info *vm)
{
	free(vm->vcpus);
	free(vm->disks);
	free(vm->nics);
	memset(vm, 0, sizeof(*vm));
}

/* Fill *vm for process pid (pidfd open on its /proc dir, fds its fd dir;
 * both stay the caller's). vm's arrays are owned by vm afterwards, even on
 * error. Returns 0, -ESRCH when the process has gone (skip it), or -ENOMEM
 * (the only error that fails a scan). */
static int build_vm(struct vm_info *vm, pid_t pid, int pidfd, struct dir_iter *fds,
		    char *cmdline)
{
	struct vm_build b = { .vm = vm, .pidfd = pidfd };
	ssize_t n;
	char *nl;

	vm->pid = pid;
	/* it held the VM fd a moment ago; if it is gone now, drop it */
	if (read_at(pidfd, "comm", vm->comm, sizeof(vm->comm)) < 0)
		return -ESRCH;
	if ((nl = strchr(vm->comm, '\n')))
		*nl = '\0';
	n = read_at(pidfd, "cmdline", cmdline, CMDLINE_MAX);
	if (n < 0)
		n = 0;
	if (discovery__parse_name(cmdline, (size_t)n, vm->name, sizeof(vm->name)))
		snprintf(vm->name, sizeof(vm->name), "pid:%d", (int)pid);
	discovery__parse_uuid(cmdline, (size_t)n, vm->uuid, sizeof(vm->uuid));
	discovery__parse_vmid(cmdline, (size_t)n, vm->vmid, sizeof(vm->vmid));
	scan_fds(&b, fds);
	scan_threads(&b);
	discovery__parse_cmdline_devices(cmdline, (size_t)n, cmdline_item, &b);
	/* readdir order is the kernel's (fd order in /proc, anything in a
	 * copy of it): sort so that output and indexes are stable */
	if (vm->nvcpus > 1)
		qsort(vm->vcpus, vm->nvcpus, sizeof(*vm->vcpus), cmp_vcpu);
	if (vm->ndisks > 1)
		qsort(vm->disks, vm->ndisks, sizeof(*vm->disks), cmp_disk);
	return b.err;
}

enum { FDS_NO_VM, FDS_VM, FDS_DENIED };

/* Does the fd dir hold the VM fd? Stops at the first EACCES: a process whose
 * fd links root cannot read (another user namespace, an LSM) denies them all. */
static int holds_vm_fd(struct dir_iter *it)
{
	char link[64];
	const char *fd;

	while ((fd = dir_iter_next_number(it))) {
		ssize_t n = link_at(it->fd, fd, link, sizeof(link));

		if (n == -EACCES)
			return FDS_DENIED;
		if (n > 0 && discovery__is_vm_fd_link(link))
			return FDS_VM;
	}
	return FDS_NO_VM;
}

/* *out is overwritten; on success the caller owns it (discovery__free). On
 * failure nothing is left allocated. */
int discovery__scan(const char *proc_root, struct vm_list *out)
{
	struct dir_iter *proc = NULL, *fds = NULL;
	const char *pid;
	size_t cap = 0;
	char *cmdline;
	int err = 0, procfd;

	if (!proc_root || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	cmdline = malloc(CMDLINE_MAX);
	proc = malloc(sizeof(*proc));
	fds = malloc(sizeof(*fds));
	if (!cmdline || !proc || !fds) {
		err = -ENOMEM;
		goto err_free;
	}
	procfd = open(proc_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (procfd < 0) {
		err = -errno;
		goto err_free;
	}
	dir_iter_init(proc, procfd);
	while ((pid = dir_iter_next_number(proc))) {
		struct vm_info *vm;
		int pidfd, fdfd, held;
		char path[64];

		/* straight to <pid>/fd: the pid dir is only opened for VMs */
		snprintf(path, sizeof(path), "%s/fd", pid);
		fdfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fdfd < 0) {
			if (errno == EACCES || errno == EPERM)
				out->nunreadable++;
			continue;
		}
		dir_iter_init(fds, fdfd);
		held = holds_vm_fd(fds);
		if (held == FDS_DENIED)
			out->nunreadable++;
		if (held != FDS_VM)
			goto next_fd;
		pidfd = openat(procfd, pid, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pidfd < 0)
			goto next_fd;
		vm = push((void **)&out->vms, &out->nvms, &cap, sizeof(*vm));
		if (!vm) {
			err = -ENOMEM;
			goto err_pid;
		}
		err = build_vm(vm, (pid_t)atol(pid), pidfd, fds, cmdline);
		if (err == -ESRCH) {
			vm_info__release(vm);
			out->nvms--;
			err = 0;
		}
		if (err)
			goto err_pid;
		close(pidfd);
next_fd:
		close(fdfd);
		continue;
err_pid:
		close(pidfd);
		close(fdfd);
		goto err_list;
	}
	close(procfd);
	if (out->nvms > 1)
		qsort(out->vms, out->nvms, sizeof(*out->vms), cmp_vm);
	free(fds);
	free(proc);
	free(cmdline);
	return 0;

err_list:
	close(procfd);
	discovery__free(out);
err_free:
	free(fds);
	free(proc);
	free(cmdline);
	return err;
}

void discovery__free(struct vm_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->nvms; i++)
		vm_info__release(&list->vms[i]);
	free(list->vms);
	memset(list, 0, sizeof(*list));
}

const struct vm_info *vm_list__find_pid(const struct vm_list *list, pid_t pid)
{
	struct vm_info key = { .pid = pid };

	if (!list || !list->nvms)
		return NULL;
	return bsearch(&key, list->vms, list->nvms, sizeof(*list->vms), cmp_vm);
}

int vm_info__vcpu_of_tid(const struct vm_info *vm, pid_t tid)
{
	if (!vm || tid <= 0)
		return -1;
	for (size_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].tid == tid)
			return vm->vcpus[i].index;
	return -1;
}
