/* VM discovery: every process holding an anon_inode:kvm-vm fd is a VM,
 * whatever its VMM. Cheap to refresh, and tolerant of processes that vanish
 * mid-read (they are skipped, never an error).
 */
#ifndef KVMSCOPE_DISCOVERY_H
#define KVMSCOPE_DISCOVERY_H

#include <stddef.h>
#include <sys/types.h>

#define VM_NAME_MAX 128
#define VM_UUID_MAX 37
#define VM_VMID_MAX 12

struct vm_vcpu {
	int index;		/* vCPU index (from "CPU n/KVM" or kvm-vcpu:n) */
	pid_t tid;		/* thread running it; 0 if not known */
};

struct vm_disk {
	char path[256];		/* what the VMM opened (readlink of the fd), or -drive file= */
	int is_block;		/* 1: block device, dev is its rdev (major:minor) */
	dev_t dev;		/* block device: rdev; regular file: st_dev of the file */
	ino_t ino;		/* regular file: inode; 0 for block devices */
	int fd;			/* fd number in the VMM, -1 when only seen on the command line */
};

struct vm_nic {
	char ifname[32];	/* tap interface, from fdinfo "iff:" or the command line */
};

struct vm_info {
	pid_t pid;
	char name[VM_NAME_MAX];	/* -name guest=N / -name N / --name N, else "pid:<pid>" */
	char uuid[VM_UUID_MAX];	/* QEMU -uuid (libvirt, OpenStack), lowercase; "" if none */
	char vmid[VM_VMID_MAX];	/* Proxmox VMID (-id N, or -pidfile .../qemu-server/N.pid); "" */
	char comm[32];
	struct vm_vcpu *vcpus;
	size_t nvcpus;
	struct vm_disk *disks;
	size_t ndisks;
	struct vm_nic *nics;
	size_t nnics;
};

struct vm_list {
	struct vm_info *vms;	/* sorted by pid */
	size_t nvms;
	/* processes whose open files could not be read (EACCES: other users'
	 * processes when not root); any of them may be a hidden VM */
	size_t nunreadable;
};

/* Scan `proc_root` (normally "/proc") for VMs. On success *out is filled and
 * owned by the caller (release with discovery__free). Returns 0 or -errno. */
int discovery__scan(const char *proc_root, struct vm_list *out);
void discovery__free(struct vm_list *list);

/* Lookups into a scanned list; NULL / -1 when absent. */
const struct vm_info *vm_list__find_pid(const struct vm_list *list, pid_t pid);
/* vCPU index of thread `tid` in VM `vm`, or -1. */
int vm_info__vcpu_of_tid(const struct vm_info *vm, pid_t tid);

/* Parsers, exposed for unit tests and fuzzing. They allocate nothing.
 * cmdline is the raw /proc/<pid>/cmdline (NUL-separated, len bytes).
 * Returns 0 and writes a NUL-terminated name, or -ENOENT if none given. */
int discovery__parse_name(const char *cmdline, size_t len, char *name, size_t name_len);
/* QEMU -uuid U: 0 and U in lowercase, or -ENOENT (absent or not a UUID). */
int discovery__parse_uuid(const char *cmdline, size_t len, char *uuid, size_t uuid_len);
/* Proxmox VMID: -id N (Proxmox's QEMU), else the N of a -pidfile
 * .../qemu-server/N.pid (its file layout); 0 and N, or -ENOENT. */
int discovery__parse_vmid(const char *cmdline, size_t len, char *vmid, size_t vmid_len);
/* fdinfo text of a tun fd: returns 0 and the interface of its "iff:" line. */
int discovery__parse_fdinfo_iff(const char *fdinfo, char *ifname, size_t ifname_len);
/* Thread comm like "CPU 3/KVM" -> 3; -1 if not a vCPU thread name. */
int discovery__parse_vcpu_comm(const char *comm);
/* fd link like "anon_inode:kvm-vcpu:3" -> 3; -1 otherwise. */
int discovery__parse_vcpu_fd_link(const char *link);
/* /proc/<pid>/task/<tid>/syscall of a thread blocked in ioctl(FD, KVM_RUN)
 * ("16 0xFD 0xae80 ...", x86-64) -> FD; -1 for any other state. */
int discovery__parse_kvm_run_syscall(const char *syscall);

/* Is this fd link the VM fd ("anon_inode:kvm-vm")? 1 / 0. */
int discovery__is_vm_fd_link(const char *link);
/* Could an fd pointing at `path` be a virtual disk, judging by its name?
 * (the rule is written above its definition in parse.c). 1 / 0. */
int discovery__path_may_be_disk(const char *path);

/* Disks and tap interfaces named on a VMM command line: QEMU -drive file=,
 * -blockdev filename=, -hda..-hdd/-cdrom/-pflash/-sd PATH, -netdev/-net/-nic
 * ifname=; cloud-hypervisor/vmload/crosvm --disk path=|file=, --net/--nic
 * tap=, crosvm --tap-name. fn is called once per item with a NUL-terminated
 * value valid only during the call. Returns the number of options seen or
 * -EINVAL. Allocates nothing (uses PATH_MAX bytes of stack). */
enum discovery_arg { DISCOVERY_ARG_DISK, DISCOVERY_ARG_NIC };
typedef void (*discovery_arg_fn)(void *ctx, enum discovery_arg kind, const char *value);
int discovery__parse_cmdline_devices(const char *cmdline, size_t len,
				     discovery_arg_fn fn, void *ctx);

/* Render as the JSON of `kvmscope vms -j` (a jansson json_t * array, caller
 * owns the reference). Declared as void * to keep jansson out of this header. */
void *discovery__to_json(const struct vm_list *list);

#endif
