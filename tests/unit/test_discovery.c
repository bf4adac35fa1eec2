/* Discovery: the /proc parsers on every VMM command-line form we know, and a
 * scan of a fake /proc tree built in a temp dir. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "discovery/discovery.h"

/* A cmdline as the kernel writes it: arguments separated by NUL. The
 * literal's own trailing NUL is included, like /proc's final separator. */
#define CMD(lit) lit, sizeof(lit)

static const char *name_of(const char *cmd, size_t len)
{
	static char name[VM_NAME_MAX];

	if (discovery__parse_name(cmd, len, name, sizeof(name)))
		return "(none)";
	return name;
}

/* ---- names ---------------------------------------------------------------- */

static const char *uuid_of(const char *cmd, size_t len)
{
	static char uuid[VM_UUID_MAX];

	if (discovery__parse_uuid(cmd, len, uuid, sizeof(uuid)))
		return "(none)";
	return uuid;
}

static const char *vmid_of(const char *cmd, size_t len)
{
	static char vmid[VM_VMID_MAX];

	if (discovery__parse_vmid(cmd, len, vmid, sizeof(vmid)))
		return "(none)";
	return vmid;
}

/* libvirt and OpenStack pass -uuid; Proxmox passes -id (its own QEMU) and
 * keeps /var/run/qemu-server/<VMID>.pid. */
static void test_identities(void **state)
{
	assert_string_equal(uuid_of(CMD("qemu\0-name\0guest=a\0-uuid\0" "0F8FAD5B-D9CB-469F-A165-70867728950E\0-m\0" "64")),
			    "0f8fad5b-d9cb-469f-a165-70867728950e");
	assert_string_equal(uuid_of(CMD("qemu\0--uuid=12345678-1234-1234-1234-123456789abc")),
			    "12345678-1234-1234-1234-123456789abc");
	/* the last one wins, as in QEMU */
	assert_string_equal(uuid_of(CMD("qemu\0-uuid\0" "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa\0-uuid\0" "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb")),
			    "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb");
	/* not a UUID: none, rather than a wrong one */
	assert_string_equal(uuid_of(CMD("qemu\0-uuid\0not-a-uuid")), "(none)");
	assert_string_equal(uuid_of(CMD("qemu\0-uuid\0" "0f8fad5b-d9cb-469f-a165-70867728950")), "(none)");
	assert_string_equal(uuid_of(CMD("qemu\0-uuid\0" "0f8fad5bxd9cb-469f-a165-70867728950e")), "(none)");
	assert_string_equal(uuid_of(CMD("qemu\0-uuid")), "(none)");
	assert_string_equal(uuid_of(CMD("qemu\0-m\0" "64")), "(none)");
	/* -uuid is not -uuidx */
	assert_string_equal(uuid_of(CMD("qemu\0-uuidx\0" "12345678-1234-1234-1234-123456789abc")), "(none)");

	assert_string_equal(vmid_of(CMD("/usr/bin/kvm\0-id\0" "105\0-name\0web,debug-threads=on")), "105");
	assert_string_equal(vmid_of(CMD("kvm\0-pidfile\0/var/run/qemu-server/101.pid\0-daemonize")), "101");
	/* -id wins over the pidfile */
	assert_string_equal(vmid_of(CMD("kvm\0-pidfile\0/run/qemu-server/7.pid\0-id\0" "8")), "8");
	assert_string_equal(vmid_of(CMD("kvm\0-id\0" "abc")), "(none)");
	assert_string_equal(vmid_of(CMD("kvm\0-id\0")), "(none)");
	assert_string_equal(vmid_of(CMD("kvm\0-id\0" "12345678901")), "(none)");
	assert_string_equal(vmid_of(CMD("qemu\0-pidfile\0/tmp/vm.pid")), "(none)");
	assert_string_equal(vmid_of(CMD("qemu\0-pidfile\0/run/qemu-server/x/1.pid")), "(none)");
	assert_string_equal(vmid_of(CMD("qemu\0-pidfile\0/run/qemu-server/12")), "(none)");
	/* -idle is not -id */
	assert_string_equal(vmid_of(CMD("qemu\0-idle\0" "3")), "(none)");
	/* truncated cmdline without its final NUL */
	assert_string_equal(vmid_of("kvm\0-id\0" "123", 11), "123");
	assert_string_equal(vmid_of("kvm\0-id\0" "123", 10), "12");
}

static void test_name_qemu_forms(void **state)
{
	assert_string_equal(name_of(CMD("qemu-system-x86_64\0-m\0512\0-name\0guest=web1,debug-threads=on\0-smp\02")), "web1");
	assert_string_equal(name_of(CMD("qemu\0-name\0guest=db2")), "db2");
	assert_string_equal(name_of(CMD("qemu\0-name\0plain\0-m\0128")), "plain");
	assert_string_equal(name_of(CMD("qemu\0-name\0vm3,debug-threads=on")), "vm3");
	assert_string_equal(name_of(CMD("qemu\0-name\0process=qemu-x,guest=vm4")), "vm4");
	assert_string_equal(name_of(CMD("qemu\0-name\0debug-threads=on,guest=vm5,process=p")), "vm5");
	/* ",," is QEMU's escaped comma */
	assert_string_equal(name_of(CMD("qemu\0-name\0guest=a,,b,debug-threads=on")), "a,b");
	/* the last -name wins, as in QEMU */
	assert_string_equal(name_of(CMD("qemu\0-name\0first\0-name\0guest=second")), "second");
	/* a -name that names no guest falls back */
	assert_string_equal(name_of(CMD("qemu\0-name\0process=p,debug-threads=on")), "(none)");
	assert_string_equal(name_of(CMD("qemu\0-name\0guest=")), "(none)");
	assert_string_equal(name_of(CMD("qemu\0-name\0")), "(none)");
	/* -name as the last argument, value missing */
	assert_string_equal(name_of(CMD("qemu\0-m\0128\0-name")), "(none)");
}

static void test_name_dashdash_forms(void **state)
{
	assert_string_equal(name_of(CMD("crosvm\0run\0--name\0alpha\0vmlinux")), "alpha");
	assert_string_equal(name_of(CMD("vmm\0--name=beta\0--cpus\0boot=2")), "beta");
	assert_string_equal(name_of(CMD("qemu\0-name=gamma")), "gamma");
	assert_string_equal(name_of(CMD("qemu\0--name\0guest=delta,debug-threads=on")), "delta");
	/* another VMM's name with '=' in it, taken verbatim */
	assert_string_equal(name_of(CMD("vmm\0--name=a=b")), "a=b");
	/* look-alikes are not -name */
	assert_string_equal(name_of(CMD("vmm\0--names\0x\0-namex\0y\0--name-prefix=z")), "(none)");
}

static void test_name_absent(void **state)
{
	/* firecracker and cloud-hypervisor take no name option */
	assert_string_equal(name_of(CMD("firecracker\0--api-sock\0/run/fc.sock\0--id\0vm7")), "(none)");
	assert_string_equal(name_of(CMD("cloud-hypervisor\0--kernel\0/k\0--cpus\0boot=2\0--disk\0path=/d.img")), "(none)");
	/* argv[0] is never an option */
	assert_string_equal(name_of(CMD("-name\0x")), "(none)");
	assert_string_equal(name_of("", 0), "(none)");
	assert_string_equal(name_of(NULL, 0), "(none)");
	assert_string_equal(name_of(CMD("")), "(none)");
}

static void test_name_edges(void **state)
{
	char name[8], big[VM_NAME_MAX + 64];
	char cmd[512];
	size_t len;

	/* no trailing NUL: the value ends at len, not beyond */
	{
		static const char raw[] = { 'q', 0, '-', 'n', 'a', 'm', 'e', 0, 'a', 'b', 'c', 'X', 'Y' };

		assert_int_equal(discovery__parse_name(raw, 11, big, sizeof(big)), 0);
		assert_string_equal(big, "abc");
		assert_int_equal(discovery__parse_name(raw, 8, big, sizeof(big)), -ENOENT);
	}
	/* a huge name is truncated to the buffer, NUL-terminated */
	len = (size_t)snprintf(cmd, sizeof(cmd), "q%c-name%c", 0, 0);
	memset(cmd + len, 'n', 300);
	len += 300;
	assert_int_equal(discovery__parse_name(cmd, len, big, sizeof(big)), 0);
	assert_int_equal(strlen(big), sizeof(big) - 1);
	assert_int_equal(discovery__parse_name(cmd, len, name, sizeof(name)), 0);
	assert_string_equal(name, "nnnnnnn");
	/* control bytes cannot reach a terminal */
	assert_string_equal(name_of(CMD("q\0-name\0a\tb\033[2Jc")), "a?b?[2Jc");
	/* no room at all */
	assert_int_equal(discovery__parse_name(CMD("q\0-name\0a"), name, 0), -EINVAL);
}

/* ---- fdinfo, comm, fd links --------------------------------------------- */

static void test_fdinfo_iff(void **state)
{
	char ifname[16];

	assert_int_equal(discovery__parse_fdinfo_iff(
		"pos:\t0\nflags:\t0104002\nmnt_id:\t26\nino:\t1061\niff:\ttap-web1\n",
		ifname, sizeof(ifname)), 0);
	assert_string_equal(ifname, "tap-web1");
	/* a tun fd not attached to an interface has no iff line */
	assert_int_equal(discovery__parse_fdinfo_iff("pos:\t0\nflags:\t02\nmnt_id:\t26\n",
						     ifname, sizeof(ifname)), -ENOENT);
	assert_string_equal(ifname, "");
	/* last line without newline; "iff" only at a line start */
	assert_int_equal(discovery__parse_fdinfo_iff("xiff:\tno\npos:\t0\niff: tap0", ifname,
						     sizeof(ifname)), 0);
	assert_string_equal(ifname, "tap0");
	assert_int_equal(discovery__parse_fdinfo_iff("iff:\t\n", ifname, sizeof(ifname)), -ENOENT);
	assert_int_equal(discovery__parse_fdinfo_iff("", ifname, sizeof(ifname)), -ENOENT);
	assert_int_equal(discovery__parse_fdinfo_iff(NULL, ifname, sizeof(ifname)), -ENOENT);
	/* overlong: truncated */
	assert_int_equal(discovery__parse_fdinfo_iff("iff:\tabcdefghijklmnopqrstuvwxyz\n", ifname,
						     sizeof(ifname)), 0);
	assert_string_equal(ifname, "abcdefghijklmno");
	assert_int_equal(discovery__parse_fdinfo_iff("iff:\ttap0\n", ifname, 0), -EINVAL);
}

/* /proc/<pid>/task/<tid>/syscall lines as this kernel writes them */
static void test_kvm_run_syscall(void **state)
{
	assert_int_equal(discovery__parse_kvm_run_syscall(
				 "16 0x6 0xae80 0x0 0x0 0x0 0x0 0x7ffd2a3c1d58 0x7f3b2a91c8db\n"), 6);
	assert_int_equal(discovery__parse_kvm_run_syscall("16 0x1f 0xae80 0x0"), 31);
	/* another ioctl on the vCPU fd (KVM_GET_REGS), another syscall, states */
	assert_int_equal(discovery__parse_kvm_run_syscall("16 0x6 0x8090ae81 0x7ffd"), -1);
	assert_int_equal(discovery__parse_kvm_run_syscall("230 0x1 0x1 0x7f1b 0x0"), -1);
	assert_int_equal(discovery__parse_kvm_run_syscall("running\n"), -1);
	assert_int_equal(discovery__parse_kvm_run_syscall("-1 0x7ffd 0x7f3b\n"), -1);
	assert_int_equal(discovery__parse_kvm_run_syscall("16 0xffffffffffff 0xae80 0x0"), -1);
	assert_int_equal(discovery__parse_kvm_run_syscall("16"), -1);
	assert_int_equal(discovery__parse_kvm_run_syscall(""), -1);
}

static void test_vcpu_comm(void **state)
{
	assert_int_equal(discovery__parse_vcpu_comm("CPU 0/KVM"), 0);
	assert_int_equal(discovery__parse_vcpu_comm("CPU 3/KVM\n"), 3);
	assert_int_equal(discovery__parse_vcpu_comm("CPU 127/KVM"), 127);
	assert_int_equal(discovery__parse_vcpu_comm("fc_vcpu 2"), 2);
	assert_int_equal(discovery__parse_vcpu_comm("vcpu5"), 5);
	assert_int_equal(discovery__parse_vcpu_comm("crosvm_vcpu11"), 11);
	assert_int_equal(discovery__parse_vcpu_comm("CPU 3/KVMx"), -1);
	assert_int_equal(discovery__parse_vcpu_comm("CPU /KVM"), -1);
	assert_int_equal(discovery__parse_vcpu_comm("CPU -1/KVM"), -1);
	assert_int_equal(discovery__parse_vcpu_comm("CPU 99999999999999/KVM"), -1);
	assert_int_equal(discovery__parse_vcpu_comm("qemu-system-x86"), -1);
	assert_int_equal(discovery__parse_vcpu_comm("vcpu"), -1);
	assert_int_equal(discovery__parse_vcpu_comm(""), -1);
	assert_int_equal(discovery__parse_vcpu_comm(NULL), -1);
}

static void test_fd_links(void **state)
{
	assert_int_equal(discovery__parse_vcpu_fd_link("anon_inode:kvm-vcpu:0"), 0);
	assert_int_equal(discovery__parse_vcpu_fd_link("anon_inode:kvm-vcpu:17"), 17);
	assert_int_equal(discovery__parse_vcpu_fd_link("anon_inode:kvm-vcpu:"), -1);
	assert_int_equal(discovery__parse_vcpu_fd_link("anon_inode:kvm-vcpu:1x"), -1);
	assert_int_equal(discovery__parse_vcpu_fd_link("anon_inode:kvm-vm"), -1);
	assert_int_equal(discovery__parse_vcpu_fd_link(NULL), -1);
	assert_true(discovery__is_vm_fd_link("anon_inode:kvm-vm"));
	assert_false(discovery__is_vm_fd_link("anon_inode:kvm-vmx"));
	assert_false(discovery__is_vm_fd_link("/dev/kvm"));
	assert_false(discovery__is_vm_fd_link(NULL));
}

static void test_disk_rule(void **state)
{
	assert_true(discovery__path_may_be_disk("/dev/loop3"));
	assert_true(discovery__path_may_be_disk("/dev/dm-0"));
	assert_true(discovery__path_may_be_disk("/var/lib/libvirt/images/web1.qcow2"));
	assert_false(discovery__path_may_be_disk("/dev/kvm"));
	assert_false(discovery__path_may_be_disk("/dev/net/tun"));
	assert_false(discovery__path_may_be_disk("/dev/null"));
	assert_false(discovery__path_may_be_disk("/dev/urandom"));
	assert_false(discovery__path_may_be_disk("/dev/vhost-net"));
	assert_false(discovery__path_may_be_disk("/dev/pts/3"));
	assert_false(discovery__path_may_be_disk("/dev/ttyS0"));
	assert_false(discovery__path_may_be_disk("/proc/1/status"));
	assert_false(discovery__path_may_be_disk("/sys/fs/cgroup/x"));
	assert_false(discovery__path_may_be_disk("/dev/shm/qemu-ram"));
	assert_false(discovery__path_may_be_disk("/memfd:pc.ram (deleted)"));
	assert_false(discovery__path_may_be_disk("/var/lib/qemu/mem.XXXX (deleted)"));
	assert_false(discovery__path_may_be_disk("/usr/lib/x86_64-linux-gnu/libc.so.6"));
	assert_false(discovery__path_may_be_disk("/usr/lib/libfoo.so"));
	assert_false(discovery__path_may_be_disk("/var/log/libvirt/qemu/web1.log"));
	assert_false(discovery__path_may_be_disk("/run/libvirt/qemu/web1.pid"));
	assert_false(discovery__path_may_be_disk("anon_inode:kvm-vm"));
	assert_false(discovery__path_may_be_disk("socket:[1234]"));
	assert_false(discovery__path_may_be_disk("pipe:[1234]"));
	assert_false(discovery__path_may_be_disk(""));
	assert_false(discovery__path_may_be_disk(NULL));
	/* ".so" inside a name is not a library */
	assert_true(discovery__path_may_be_disk("/img/solar.sox.img"));
}

/* ---- disks and NICs from the command line ----------------------------------- */

struct items {
	char disks[8][256];
	char nics[8][32];
	int ndisks, nnics;
};

static void collect(void *ctx, enum discovery_arg kind, const char *value)
{
	struct items *it = ctx;

	if (kind == DISCOVERY_ARG_DISK && it->ndisks < 8)
		snprintf(it->disks[it->ndisks++], sizeof(it->disks[0]), "%s", value);
	else if (kind == DISCOVERY_ARG_NIC && it->nnics < 8)
		snprintf(it->nics[it->nnics++], sizeof(it->nics[0]), "%s", value);
}

static void test_cmdline_devices_qemu(void **state)
{
	struct items it = { 0 };

	discovery__parse_cmdline_devices(CMD(
		"qemu\0-drive\0file=/img/a.qcow2,if=virtio,format=qcow2\0"
		"-drive\0if=none,id=d1,file=/dev/vg/b\0"
		"-drive\0file=rbd:pool/img,format=raw\0"		/* remote: skipped */
		"-drive\0file=nbd://host/x\0"				/* remote: skipped */
		"-blockdev\0driver=file,filename=/img/c,,x.raw,node-name=n\0"
		"-cdrom\0/iso/boot.iso\0"
		"-netdev\0tap,id=n0,ifname=tap-a,script=no\0"
		"-netdev\0user,id=n1\0"
		"-nic\0tap,ifname=tap-b\0"), collect, &it);
	assert_int_equal(it.ndisks, 4);
	assert_string_equal(it.disks[0], "/img/a.qcow2");
	assert_string_equal(it.disks[1], "/dev/vg/b");
	assert_string_equal(it.disks[2], "/img/c,x.raw");
	assert_string_equal(it.disks[3], "/iso/boot.iso");
	assert_int_equal(it.nnics, 2);
	assert_string_equal(it.nics[0], "tap-a");
	assert_string_equal(it.nics[1], "tap-b");
}

/* QEMU -daemonize changes its directory to / after opening its disks: a
 * relative disk path on its command line is left to the fd scan, which knows
 * the disk by its absolute path. */
static void test_cmdline_devices_daemonized(void **state)
{
	struct items it = { 0 };

	discovery__parse_cmdline_devices(CMD(
		"qemu-system-x86_64\0-daemonize\0-drive\0file=disk.img,format=raw\0"
		"-drive\0file=/abs/b.img\0-hda\0./c.img\0"), collect, &it);
	assert_int_equal(it.ndisks, 1);
	assert_string_equal(it.disks[0], "/abs/b.img");

	memset(&it, 0, sizeof(it));
	discovery__parse_cmdline_devices(CMD("qemu\0-drive\0file=rel.img\0--daemonize\0"), collect, &it);
	assert_int_equal(it.ndisks, 0);

	/* without the option (a value spelled like it is not it) relative paths stay */
	memset(&it, 0, sizeof(it));
	discovery__parse_cmdline_devices(CMD(
		"qemu\0-drive\0file=disk.img\0-name\0-daemonize-not\0"), collect, &it);
	assert_int_equal(it.ndisks, 1);
	assert_string_equal(it.disks[0], "disk.img");
	(void)state;
}

static void test_cmdline_devices_others(void **state)
{
	struct items it = { 0 };

	/* cloud-hypervisor: several values after one option */
	discovery__parse_cmdline_devices(CMD(
		"cloud-hypervisor\0--disk\0path=/img/os.raw\0path=/img/data.raw,readonly=on\0"
		"--net\0tap=chtap0,mac=12:34:56:78:90:ab\0--cpus\0boot=2"), collect, &it);
	assert_int_equal(it.ndisks, 2);
	assert_string_equal(it.disks[0], "/img/os.raw");
	assert_string_equal(it.disks[1], "/img/data.raw");
	assert_int_equal(it.nnics, 1);
	assert_string_equal(it.nics[0], "chtap0");

	/* vmload and crosvm; crosvm's trailing kernel path is not a disk */
	memset(&it, 0, sizeof(it));
	discovery__parse_cmdline_devices(CMD(
		"vmload\0-name\0guest=x\0--disk\0file=/dev/loop3,reads=10\0--nic\0tap=vt0,tx=5\0"
		"--tap-name\0cvtap\0--disk\0rel/disk.img\0vmlinux"), collect, &it);
	assert_int_equal(it.ndisks, 2);
	assert_string_equal(it.disks[0], "/dev/loop3");
	assert_string_equal(it.disks[1], "rel/disk.img");
	assert_int_equal(it.nnics, 2);
	assert_string_equal(it.nics[0], "vt0");
	assert_string_equal(it.nics[1], "cvtap");

	/* option last with no value, no NUL at the end */
	memset(&it, 0, sizeof(it));
	discovery__parse_cmdline_devices("q\0-drive", 8, collect, &it);
	discovery__parse_cmdline_devices("q\0-drive\0file=/a", 16, collect, &it);
	assert_int_equal(it.ndisks, 1);
	assert_string_equal(it.disks[0], "/a");
	assert_int_equal(discovery__parse_cmdline_devices(NULL, 0, collect, &it), 0);
	assert_int_equal(discovery__parse_cmdline_devices("q", 1, NULL, NULL), -EINVAL);
}

/* ---- a fake /proc ------------------------------------------------------------ */

struct fake {
	char root[64];		/* the fake /proc */
	char img[96];		/* a regular 1 MiB image file */
	char blk[96];		/* a block device node (mknod), "" when not root */
	char small[96];		/* a 100-byte file: a log, not a disk */
};

static void put(const char *dir, const char *rel, const char *data, size_t len)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void mkdirf(const char *fmt, ...)
{
	char path[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	assert_int_equal(mkdir(path, 0755), 0);
}

static void linkf(const char *target, const char *fmt, ...)
{
	char path[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	assert_int_equal(symlink(target, path), 0);
}

static void fake_pid(struct fake *f, int pid, const char *comm, const char *cmd, size_t cmdlen)
{
	char dir[256];

	mkdirf("%s/%d", f->root, pid);
	mkdirf("%s/%d/fd", f->root, pid);
	mkdirf("%s/%d/fdinfo", f->root, pid);
	mkdirf("%s/%d/task", f->root, pid);
	snprintf(dir, sizeof(dir), "%s/%d", f->root, pid);
	put(dir, "comm", comm, strlen(comm));
	put(dir, "cmdline", cmd, cmdlen);
}

static void fake_thread(struct fake *f, int pid, int tid, const char *comm)
{
	char dir[256];

	mkdirf("%s/%d/task/%d", f->root, pid, tid);
	snprintf(dir, sizeof(dir), "%s/%d/task/%d", f->root, pid, tid);
	put(dir, "comm", comm, strlen(comm));
}

#define TUN_ATTACHED "pos:\t0\nflags:\t0104002\nmnt_id:\t26\niff:\ttapweb1\n"
#define TUN_DETACHED "pos:\t0\nflags:\t02\n"

static int fake_setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	char dir[256];
	int fd;

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/kvmscope-proc.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->img, sizeof(f->img), "%s/web1.img", f->root);
	fd = open(f->img, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(f->small, sizeof(f->small), "%s/console.out", f->root);
	put(f->root, "console.out", "boot log\n", 9);
	snprintf(f->blk, sizeof(f->blk), "%s/loop3", f->root);
	if (mknod(f->blk, S_IFBLK | 0600, makedev(7, 3))) {
		fprintf(stderr, "# mknod of a block node failed (%s): block disk case not covered\n",
			strerror(errno));
		f->blk[0] = '\0';
	}

	/* 4242: QEMU with two vCPUs, a block disk, an image, a tap, noise fds */
	fake_pid(f, 4242, "qemu-system-x86\n", CMD(
		"qemu-system-x86_64\0-name\0guest=web1,debug-threads=on\0"
		"-drive\0file=/nonexistent/extra.qcow2,if=virtio\0"
		"-netdev\0tap,id=n0,ifname=tapweb1\0-netdev\0tap,id=n1,ifname=tapcfg\0"));
	linkf("/dev/kvm", "%s/4242/fd/3", f->root);
	linkf("anon_inode:kvm-vm", "%s/4242/fd/10", f->root);
	linkf("anon_inode:kvm-vcpu:0", "%s/4242/fd/11", f->root);
	linkf("anon_inode:kvm-vcpu:1", "%s/4242/fd/12", f->root);
	linkf("/dev/net/tun", "%s/4242/fd/13", f->root);
	snprintf(dir, sizeof(dir), "%s/4242/fdinfo", f->root);
	put(dir, "13", TUN_ATTACHED, strlen(TUN_ATTACHED));
	linkf("/dev/net/tun", "%s/4242/fd/14", f->root);	/* detached: no iff */
	put(dir, "14", TUN_DETACHED, strlen(TUN_DETACHED));
	linkf(f->img, "%s/4242/fd/15", f->root);
	if (f->blk[0])
		linkf(f->blk, "%s/4242/fd/16", f->root);
	linkf(f->small, "%s/4242/fd/17", f->root);		/* too small to be a disk */
	linkf("/dev/null", "%s/4242/fd/0", f->root);
	linkf("socket:[12345]", "%s/4242/fd/18", f->root);
	linkf("/gone/away.img", "%s/4242/fd/19", f->root);	/* dangling: skipped */
	fake_thread(f, 4242, 4242, "qemu-system-x86\n");
	fake_thread(f, 4242, 4250, "CPU 0/KVM\n");
	fake_thread(f, 4242, 4251, "CPU 1/KVM\n");
	fake_thread(f, 4242, 4252, "IO mon_iothread\n");

	/* 77: a VMM with no name, vCPU 2 has a thread but no fd, vCPU 0 the reverse */
	fake_pid(f, 77, "firecracker\n", CMD("firecracker\0--api-sock\0/run/fc.sock"));
	linkf("anon_inode:kvm-vm", "%s/77/fd/5", f->root);
	linkf("anon_inode:kvm-vcpu:0", "%s/77/fd/6", f->root);
	fake_thread(f, 77, 80, "fc_vcpu 2\n");

	/* 500: not a VM, only /dev/kvm open (e.g. a capability probe) */
	fake_pid(f, 500, "probe\n", CMD("probe"));
	linkf("/dev/kvm", "%s/500/fd/3", f->root);

	/* 600: half gone: no fd dir any more */
	mkdirf("%s/600", f->root);
	/* junk that is not a pid */
	mkdirf("%s/self-not-a-pid", f->root);
	*state = f;
	return 0;
}

static int fake_teardown(void **state)
{
	struct fake *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void test_scan_fake_proc(void **state)
{
	struct fake *f = *state;
	struct vm_list list;
	const struct vm_info *vm;
	struct stat st;
	int nd;

	assert_int_equal(discovery__scan(f->root, &list), 0);
	assert_int_equal(list.nvms, 2);
	/* sorted by pid */
	assert_int_equal(list.vms[0].pid, 77);
	assert_int_equal(list.vms[1].pid, 4242);
	assert_null(vm_list__find_pid(&list, 500));
	assert_null(vm_list__find_pid(&list, 600));

	vm = vm_list__find_pid(&list, 4242);
	assert_non_null(vm);
	assert_string_equal(vm->name, "web1");
	assert_string_equal(vm->comm, "qemu-system-x86");
	assert_int_equal(vm->nvcpus, 2);
	assert_int_equal(vm->vcpus[0].index, 0);
	assert_int_equal(vm->vcpus[0].tid, 4250);
	assert_int_equal(vm->vcpus[1].index, 1);
	assert_int_equal(vm->vcpus[1].tid, 4251);
	assert_int_equal(vm_info__vcpu_of_tid(vm, 4251), 1);
	assert_int_equal(vm_info__vcpu_of_tid(vm, 4252), -1);
	assert_int_equal(vm_info__vcpu_of_tid(vm, 0), -1);

	/* image (fd 15), block node (fd 16, when root), extra.qcow2 from the cmdline */
	nd = f->blk[0] ? 3 : 2;
	assert_int_equal(vm->ndisks, nd);
	assert_int_equal(stat(f->img, &st), 0);
	assert_string_equal(vm->disks[0].path, f->img);
	assert_false(vm->disks[0].is_block);
	assert_int_equal(vm->disks[0].dev, st.st_dev);
	assert_int_equal(vm->disks[0].ino, st.st_ino);
	assert_int_equal(vm->disks[0].fd, 15);
	if (f->blk[0]) {
		assert_string_equal(vm->disks[1].path, f->blk);
		assert_true(vm->disks[1].is_block);
		assert_int_equal(major(vm->disks[1].dev), 7);
		assert_int_equal(minor(vm->disks[1].dev), 3);
		assert_int_equal(vm->disks[1].ino, 0);
		assert_int_equal(vm->disks[1].fd, 16);
	}
	assert_string_equal(vm->disks[nd - 1].path, "/nonexistent/extra.qcow2");
	assert_int_equal(vm->disks[nd - 1].fd, -1);
	assert_int_equal(vm->disks[nd - 1].dev, 0);

	/* tapweb1 from fdinfo and the cmdline (once), tapcfg from the cmdline only */
	assert_int_equal(vm->nnics, 2);
	assert_string_equal(vm->nics[0].ifname, "tapweb1");
	assert_string_equal(vm->nics[1].ifname, "tapcfg");

	vm = vm_list__find_pid(&list, 77);
	assert_non_null(vm);
	assert_string_equal(vm->name, "pid:77");
	assert_int_equal(vm->nvcpus, 2);
	assert_int_equal(vm->vcpus[0].index, 0);
	assert_int_equal(vm->vcpus[0].tid, 0);
	assert_int_equal(vm->vcpus[1].index, 2);
	assert_int_equal(vm->vcpus[1].tid, 80);
	assert_int_equal(vm->ndisks, 0);
	assert_int_equal(vm->nnics, 0);
	assert_int_equal(vm_info__vcpu_of_tid(vm, 80), 2);
	discovery__free(&list);
	assert_int_equal(list.nvms, 0);
	assert_null(list.vms);
	discovery__free(&list);		/* twice is harmless */
}

/* The bug this guards: a daemonized QEMU started with "-drive file=web1.img"
 * from the image's directory listed the disk twice, once from its fd and
 * once as the relative name that no longer resolves from its cwd (/). */
static void test_scan_daemonized_relative_disk_once(void **state)
{
	struct fake *f = *state;
	struct vm_list list;
	const struct vm_info *vm;

	fake_pid(f, 9000, "qemu-system-x86\n", CMD(
		"qemu-system-x86_64\0-name\0d1\0-daemonize\0-drive\0file=web1.img,if=virtio\0"));
	linkf("anon_inode:kvm-vm", "%s/9000/fd/10", f->root);
	linkf(f->img, "%s/9000/fd/15", f->root);
	linkf("/", "%s/9000/cwd", f->root);
	fake_thread(f, 9000, 9000, "qemu-system-x86\n");
	assert_int_equal(discovery__scan(f->root, &list), 0);
	vm = vm_list__find_pid(&list, 9000);
	assert_non_null(vm);
	assert_int_equal(vm->ndisks, 1);
	assert_string_equal(vm->disks[0].path, f->img);
	assert_int_equal(vm->disks[0].fd, 15);
	discovery__free(&list);
}

static void test_scan_json(void **state)
{
	struct fake *f = *state;
	struct vm_list list;
	json_t *arr, *vm, *d;
	char dev[32];
	struct stat st;

	assert_int_equal(discovery__scan(f->root, &list), 0);
	arr = discovery__to_json(&list);
	assert_non_null(arr);
	assert_true(json_is_array(arr));
	assert_int_equal(json_array_size(arr), 2);
	vm = json_array_get(arr, 1);
	assert_int_equal(json_integer_value(json_object_get(vm, "pid")), 4242);
	assert_string_equal(json_string_value(json_object_get(vm, "name")), "web1");
	assert_string_equal(json_string_value(json_object_get(vm, "comm")), "qemu-system-x86");
	assert_int_equal(json_integer_value(json_object_get(
		json_array_get(json_object_get(vm, "vcpus"), 1), "tid")), 4251);
	d = json_array_get(json_object_get(vm, "disks"), 0);
	assert_int_equal(stat(f->img, &st), 0);
	snprintf(dev, sizeof(dev), "%u:%u", major(st.st_dev), minor(st.st_dev));
	assert_string_equal(json_string_value(json_object_get(d, "type")), "file");
	assert_string_equal(json_string_value(json_object_get(d, "dev")), dev);
	assert_int_equal(json_integer_value(json_object_get(d, "ino")), st.st_ino);
	/* open in the VMM: counted at its own operations on the fd */
	assert_string_equal(json_string_value(json_object_get(d, "counted_at")), "vmm");
	/* named on the command line only: nothing to count until it is opened */
	d = json_array_get(json_object_get(vm, "disks"), f->blk[0] ? 2 : 1);
	assert_string_equal(json_string_value(json_object_get(d, "path")), "/nonexistent/extra.qcow2");
	assert_string_equal(json_string_value(json_object_get(d, "counted_at")), "none");
	if (f->blk[0]) {
		d = json_array_get(json_object_get(vm, "disks"), 1);
		assert_string_equal(json_string_value(json_object_get(d, "type")), "block");
		assert_string_equal(json_string_value(json_object_get(d, "dev")), "7:3");
	}
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(json_object_get(vm, "nics"), 0), "ifname")), "tapweb1");
	json_decref(arr);
	discovery__free(&list);

	/* an empty list is "[]" */
	arr = discovery__to_json(&list);
	assert_int_equal(json_array_size(arr), 0);
	json_decref(arr);
}

static void test_json_non_utf8(void **state)
{
	struct vm_info vm = { .pid = 9 };
	struct vm_list list = { .vms = &vm, .nvms = 1 };
	json_t *arr;

	snprintf(vm.name, sizeof(vm.name), "bad\xff\xfename");
	snprintf(vm.comm, sizeof(vm.comm), "ok");
	arr = discovery__to_json(&list);
	assert_non_null(arr);
	assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "name")),
			    "bad??name");
	json_decref(arr);
}

static void test_scan_errors(void **state)
{
	struct vm_list list;

	assert_int_equal(discovery__scan("/nonexistent-proc-root", &list), -ENOENT);
	assert_int_equal(list.nvms, 0);
	assert_int_equal(discovery__scan(NULL, &list), -EINVAL);
	assert_int_equal(discovery__scan("/proc", NULL), -EINVAL);
	assert_null(vm_list__find_pid(NULL, 1));
	assert_int_equal(vm_info__vcpu_of_tid(NULL, 1), -1);
}

/* The real /proc: must succeed whatever runs on this host, and this test
 * process (which holds no VM fd) must not be listed. */
static void test_scan_real_proc(void **state)
{
	struct vm_list list;

	assert_int_equal(discovery__scan("/proc", &list), 0);
	assert_null(vm_list__find_pid(&list, getpid()));
	discovery__free(&list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_qemu_forms),
		cmocka_unit_test(test_name_dashdash_forms),
		cmocka_unit_test(test_name_absent),
		cmocka_unit_test(test_name_edges),
		cmocka_unit_test(test_identities),
		cmocka_unit_test(test_fdinfo_iff),
		cmocka_unit_test(test_vcpu_comm),
		cmocka_unit_test(test_kvm_run_syscall),
		cmocka_unit_test(test_fd_links),
		cmocka_unit_test(test_disk_rule),
		cmocka_unit_test(test_cmdline_devices_qemu),
		cmocka_unit_test(test_cmdline_devices_others),
		cmocka_unit_test(test_cmdline_devices_daemonized),
		cmocka_unit_test_setup_teardown(test_scan_fake_proc, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_scan_json, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_scan_daemonized_relative_disk_once, fake_setup,
						fake_teardown),
		cmocka_unit_test(test_json_non_utf8),
		cmocka_unit_test(test_scan_errors),
		cmocka_unit_test(test_scan_real_proc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
