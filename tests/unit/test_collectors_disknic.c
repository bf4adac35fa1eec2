/* Disk and NIC collectors against the real kernel, with this test process as
 * the VM: it holds a kvm-vm fd (so discovery finds it), opens a disk image,
 * a loop device and a tap, and does I/O whose counts are known exactly.
 * Needs root, /dev/kvm and BPF; skips loudly without them. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "collectors/collector.h"
#include "engine/bucket.h"

#define MAX_RECS 4096

struct saved {
	enum metric_id metric;
	uint64_t value;
	char str[RECORD_MAX_FIELDS][256];
	int has[RECORD_MAX_FIELDS];
	uint64_t num[RECORD_MAX_FIELDS];
};

static struct saved recs[MAX_RECS];
static size_t nrecs;
static int kvm_fd = -1, vm_fd = -1;
static char vm_name[64];

static int save(const struct record *r, void *ctx)
{
	struct saved *s;

	if (nrecs == MAX_RECS)
		return -ENOSPC;
	s = &recs[nrecs++];
	memset(s, 0, sizeof(*s));
	s->metric = r->metric;
	s->value = r->value;
	for (int i = 0; i < RECORD_MAX_FIELDS; i++) {
		if (r->str[i]) {
			snprintf(s->str[i], sizeof(s->str[i]), "%s", r->str[i]);
			s->has[i] = 1;
		}
		s->num[i] = r->num[i];
	}
	return 0;
}

/* Sum of values of `metric` records whose str[field] equals want (NULL: all)
 * and whose str[F_VM] is this process. */
static uint64_t sum(enum metric_id metric, int field, const char *want)
{
	uint64_t total = 0;

	for (size_t i = 0; i < nrecs; i++) {
		if (recs[i].metric != metric || strcmp(recs[i].str[F_VM], vm_name))
			continue;
		if (want && (!recs[i].has[field] || strcmp(recs[i].str[field], want)))
			continue;
		total += recs[i].value;
	}
	return total;
}

static void wait_next_second(void)
{
	time_t t0 = time(NULL);

	while (time(NULL) == t0)
		usleep(20000);
	usleep(20000);
}

/* Drains every second that has ended into recs[]. */
static void drain_all(struct collector *c, struct vmcache *vc)
{
	struct collector_env env = { .vms = vc, .hostname = "testhost",
				     .tai_offset = collector__tai_offset() };

	wait_next_second();
	nrecs = 0;
	assert_true(c->ops->drain(c, time(NULL), &env, save, NULL) >= 0);
}

static void all_fields(uint64_t fields[METRIC__COUNT])
{
	for (int m = 0; m < METRIC__COUNT; m++)
		fields[m] = 0x1ff;
}

static int setup(void **state)
{
	if (geteuid() != 0 || access("/dev/kvm", R_OK | W_OK))
		return 0;
	system("mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing");
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd >= 0)
		vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	snprintf(vm_name, sizeof(vm_name), "pid:%d", (int)getpid());
	return 0;
}

static int teardown(void **state)
{
	if (vm_fd >= 0)
		close(vm_fd);
	if (kvm_fd >= 0)
		close(kvm_fd);
	return 0;
}

#define REQUIRE_VM() do {						\
	if (vm_fd < 0) {						\
		print_message("# SKIP needs root and a working /dev/kvm (KVM_CREATE_VM)\n"); \
		skip();							\
	}								\
} while (0)

static void check_size_bucket(uint64_t size)
{
	unsigned long long hi, lo = llq__bucket(size, 10, 0, 9, 20, &hi);

	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].metric == METRIC_VM_DISK_OPS && !strcmp(recs[i].str[F_VM], vm_name) &&
		    strcmp(recs[i].str[F_DISK_OPTYPE], "flush"))
			assert_int_equal(recs[i].num[F_DISK_SIZE], lo);
}

/* Image file: counted from the VMM's syscalls on its fd. */
static void test_image_file_syscalls(void **state)
{
	struct collector c = { .ops = &collector_disk_ops };
	uint64_t fields[METRIC__COUNT];
	char path[] = "/tmp/kvmscope-ut-XXXXXX.img", buf[4096];
	struct vmcache *vc;
	int fd, err;

	REQUIRE_VM();
	fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	memset(buf, 0xab, sizeof(buf));
	all_fields(fields);
	err = c.ops->start(&c, fields);
	if (err) {
		print_message("# SKIP disk collector cannot start here: %s\n", strerror(-err));
		close(fd);
		unlink(path);
		skip();
	}
	vc = vmcache__new("/proc");
	for (int i = 0; i < 5; i++)
		assert_int_equal(pwrite(fd, buf, sizeof(buf), 8192 * (i + 1)), sizeof(buf));
	for (int i = 0; i < 3; i++)
		assert_int_equal(pread(fd, buf, sizeof(buf), 65536 + 4096 * i), sizeof(buf));
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
	drain_all(&c, vc);

	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "write"), 5);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "read"), 3);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "flush"), 1);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "discard"), 1);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_DISK, path), 10);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_ERRNO, "0"), 10);
	assert_int_equal(sum(METRIC_VM_DISK_BYTES, F_DISK_OPTYPE, "write"), 5 * 4096);
	assert_int_equal(sum(METRIC_VM_DISK_BYTES, F_DISK_OPTYPE, "read"), 3 * 4096);
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].metric == METRIC_VM_DISK_OPS && !strcmp(recs[i].str[F_VM], vm_name)) {
			assert_true(recs[i].num[F_DISK_LATENCY] > 0);
			assert_true(recs[i].num[F_DISK_SUBSECOND] < 1000);
			assert_string_equal(recs[i].str[F_HOSTNAME], "testhost");
		}
	check_size_bucket(4096);

	/* a failing syscall is counted once, with its errno */
	assert_int_equal(pread(fd, buf, sizeof(buf), -4096), -1);
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_ERRNO, "22"), 1);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_ERRNO, NULL), 1);

	c.ops->stop(&c);
	vmcache__free(vc);
	close(fd);
	unlink(path);
}

/* Block device: counted from block_rq_issue/complete, once (the loop
 * driver's own I/O to its backing file is not the VMM's). */
static void test_loop_device_block(void **state)
{
	struct collector c = { .ops = &collector_disk_ops };
	uint64_t fields[METRIC__COUNT];
	char img[] = "/tmp/kvmscope-ut-XXXXXX", cmd[256], loopdev[64] = "";
	struct vmcache *vc;
	void *buf = NULL;
	FILE *p;
	int fd, bfd, err;

	REQUIRE_VM();
	fd = mkstemp(img);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "losetup -f --show %s 2>/dev/null", img);
	p = popen(cmd, "r");
	if (!p || !fgets(loopdev, sizeof(loopdev), p) || !loopdev[0]) {
		if (p)
			pclose(p);
		unlink(img);
		print_message("# SKIP no loop device available (losetup -f failed)\n");
		skip();
	}
	pclose(p);
	loopdev[strcspn(loopdev, "\n")] = '\0';
	bfd = open(loopdev, O_RDWR | O_DIRECT);
	assert_true(bfd >= 0);
	assert_int_equal(posix_memalign(&buf, 4096, 16384), 0);
	memset(buf, 0x5a, 16384);

	all_fields(fields);
	err = c.ops->start(&c, fields);
	if (err) {
		print_message("# SKIP disk collector cannot start here: %s\n", strerror(-err));
		goto out;
	}
	vc = vmcache__new("/proc");
	for (int i = 0; i < 4; i++)
		assert_int_equal(pwrite(bfd, buf, 16384, 1 << 20 | (i * 16384)), 16384);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pread(bfd, buf, 16384, 2 << 20 | (i * 16384)), 16384);
	drain_all(&c, vc);

	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "write"), 4);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "read"), 2);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_DISK, loopdev), 6);
	assert_int_equal(sum(METRIC_VM_DISK_BYTES, F_DISK_OPTYPE, "write"), 4 * 16384);
	assert_int_equal(sum(METRIC_VM_DISK_BYTES, F_DISK_OPTYPE, "read"), 2 * 16384);
	check_size_bucket(16384);
	{
		unsigned long long hi, lo_w = llq__bucket(1 << 20, 10, 3, 13, 20, &hi);
		unsigned long long lo_r = llq__bucket(2 << 20, 10, 3, 13, 20, &hi);

		for (size_t i = 0; i < nrecs; i++)
			if (recs[i].metric == METRIC_VM_DISK_OPS && !strcmp(recs[i].str[F_VM], vm_name))
				assert_int_equal(recs[i].num[F_DISK_OFFSET],
						 !strcmp(recs[i].str[F_DISK_OPTYPE], "write") ? lo_w : lo_r);
	}
	assert_int_equal(c.ops->drops(&c), 0);
	c.ops->stop(&c);
	vmcache__free(vc);
out:
	free(buf);
	close(bfd);
	snprintf(cmd, sizeof(cmd), "losetup -d %s", loopdev);
	system(cmd);
	unlink(img);
}

/* The key carries only what instrumentations need; reconfigure changes it. */
static void test_reconfigure_key_fields(void **state)
{
	struct collector c = { .ops = &collector_disk_ops };
	uint64_t fields[METRIC__COUNT] = { 0 };
	char path[] = "/tmp/kvmscope-ut-XXXXXX.img", buf[512];
	struct vmcache *vc;
	int fd, err;

	REQUIRE_VM();
	fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	memset(buf, 1, sizeof(buf));
	fields[METRIC_VM_DISK_OPS] = FIELD_BIT(F_VM);
	err = c.ops->start(&c, fields);
	if (err) {
		print_message("# SKIP disk collector cannot start here: %s\n", strerror(-err));
		close(fd);
		unlink(path);
		skip();
	}
	vc = vmcache__new("/proc");
	for (int i = 0; i < 3; i++)
		assert_int_equal(pwrite(fd, buf, sizeof(buf), 512 * i), sizeof(buf));
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
	drain_all(&c, vc);
	/* keyed per VM only: the records name neither optype nor disk */
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_VM, vm_name), 4);
	for (size_t i = 0; i < nrecs; i++)
		if (!strcmp(recs[i].str[F_VM], vm_name)) {
			assert_false(recs[i].has[F_DISK_OPTYPE]);
			assert_false(recs[i].has[F_DISK_DISK]);
		}

	fields[METRIC_VM_DISK_OPS] |= FIELD_BIT(F_DISK_OPTYPE);
	assert_int_equal(c.ops->reconfigure(&c, fields), 0);
	vmcache__refresh(vc);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pwrite(fd, buf, sizeof(buf), 512 * i), sizeof(buf));
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "write"), 2);
	assert_int_equal(sum(METRIC_VM_DISK_OPS, F_DISK_OPTYPE, "read"), 0);
	c.ops->stop(&c);
	vmcache__free(vc);
	close(fd);
	unlink(path);
}

static int tap_open(char *ifname, size_t len)
{
	struct ifreq ifr = { 0 };
	char path[128];
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), s;
	FILE *f;

	if (fd < 0)
		return -1;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "kvsut%%d");
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		close(fd);
		return -1;
	}
	snprintf(ifname, len, "%s", ifr.ifr_name);
	/* no IPv6 autoconfiguration traffic from the host into the tap */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
	if ((f = fopen(path, "w"))) {
		fputs("1", f);
		fclose(f);
	}
	s = socket(AF_INET, SOCK_DGRAM, 0);
	ioctl(s, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	ioctl(s, SIOCSIFFLAGS, &ifr);
	close(s);
	return fd;
}

static void test_tap_counters(void **state)
{
	struct collector c = { .ops = &collector_nic_ops };
	uint64_t fields[METRIC__COUNT];
	unsigned char frame[300];
	char ifname[IFNAMSIZ];
	struct vmcache *vc;
	int fd;

	REQUIRE_VM();
	fd = tap_open(ifname, sizeof(ifname));
	if (fd < 0) {
		print_message("# SKIP cannot create a tap (/dev/net/tun)\n");
		skip();
	}
	/* broadcast frames of a local experimental ethertype: the host drops
	 * them, after counting them as received on the tap */
	memset(frame, 0, sizeof(frame));
	memset(frame, 0xff, 6);
	frame[6] = 0x02;
	frame[12] = 0x88;
	frame[13] = 0xb5;
	all_fields(fields);
	assert_int_equal(c.ops->start(&c, fields), 0);	/* baseline */
	vc = vmcache__new("/proc");
	for (int i = 0; i < 7; i++)
		assert_int_equal(write(fd, frame, sizeof(frame)), sizeof(frame));
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_DIRECTION, "sent"), 7);
	assert_int_equal(sum(METRIC_VM_NIC_BYTES, F_NIC_DIRECTION, "sent"), 7 * sizeof(frame));
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_NIC, ifname), 7);
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_DIRECTION, "received"), 0);

	/* the same second drained again: nothing new, nothing twice */
	nrecs = 0;
	{
		struct collector_env env = { .vms = vc, .hostname = "testhost", .tai_offset = 0 };

		assert_int_equal(c.ops->drain(&c, time(NULL), &env, save, NULL), 0);
	}
	/* the tap goes away: no records, no error */
	close(fd);
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_NIC, ifname), 0);
	c.ops->stop(&c);
	vmcache__free(vc);
}

/* Opens the existing tap `ifname` again (TUNSETIFF by its name). */
static int tap_attach(const char *ifname)
{
	struct ifreq ifr = { 0 };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void send_frames(int fd, int n, size_t len)
{
	unsigned char frame[1514];

	memset(frame, 0, len);
	memset(frame, 0xff, 6);
	frame[6] = 0x02;
	frame[12] = 0x88;
	frame[13] = 0xb5;
	for (int i = 0; i < n; i++)
		assert_int_equal(write(fd, frame, len), (ssize_t)len);
}

/* A tap made after the collector started (QEMU making its own tap) and
 * used at once: counted from its first frame, not from its first sample. */
static void test_tap_made_after_start(void **state)
{
	struct collector c = { .ops = &collector_nic_ops };
	uint64_t fields[METRIC__COUNT];
	char ifname[IFNAMSIZ];
	struct vmcache *vc;
	int fd;

	REQUIRE_VM();
	all_fields(fields);
	assert_int_equal(c.ops->start(&c, fields), 0);
	vc = vmcache__new("/proc");
	fd = tap_open(ifname, sizeof(ifname));
	if (fd < 0) {
		c.ops->stop(&c);
		vmcache__free(vc);
		print_message("# SKIP cannot create a tap (/dev/net/tun)\n");
		skip();
	}
	send_frames(fd, 5, 120);
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_NIC, ifname), 5);
	assert_int_equal(sum(METRIC_VM_NIC_BYTES, F_NIC_DIRECTION, "sent"), 5 * 120);
	close(fd);
	c.ops->stop(&c);
	vmcache__free(vc);
}

static char persistent_tap[IFNAMSIZ];
static int persistent_fd = -1;	/* the test's fd on it: held, the tap cannot be opened */

/* Removes the persistent tap of test_persistent_tap_edges, failed or not. */
static int remove_persistent_tap(void **state)
{
	int fd;

	if (persistent_fd >= 0)
		close(persistent_fd);
	persistent_fd = -1;
	if (!persistent_tap[0])
		return 0;
	fd = tap_attach(persistent_tap);
	if (fd >= 0) {
		ioctl(fd, TUNSETPERSIST, 0);
		close(fd);
	}
	persistent_tap[0] = 0;
	return 0;
}

/* A persistent tap made before the VM holds it, opened and used between two
 * samples, then let go (the VM exits) right after its last frames: both
 * ends of its traffic are the VM's, though no sample saw the VM hold the
 * tap while it moved them. */
static void test_persistent_tap_edges(void **state)
{
	struct collector c = { .ops = &collector_nic_ops };
	uint64_t fields[METRIC__COUNT];
	char ifname[IFNAMSIZ];
	struct vmcache *vc;
	int fd;

	REQUIRE_VM();
	fd = tap_open(ifname, sizeof(ifname));
	if (fd < 0 || ioctl(fd, TUNSETPERSIST, 1)) {
		if (fd >= 0)
			close(fd);
		print_message("# SKIP cannot create a persistent tap (/dev/net/tun)\n");
		skip();
	}
	snprintf(persistent_tap, sizeof(persistent_tap), "%s", ifname);
	close(fd);	/* the tap stays, held by no one */
	all_fields(fields);
	assert_int_equal(c.ops->start(&c, fields), 0);
	vc = vmcache__new("/proc");
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_NIC, ifname), 0);

	fd = persistent_fd = tap_attach(ifname);
	assert_true(fd >= 0);
	send_frames(fd, 3, 90);
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_NIC, ifname), 3);
	assert_int_equal(sum(METRIC_VM_NIC_BYTES, F_NIC_NIC, ifname), 3 * 90);

	send_frames(fd, 4, 70);
	close(fd);
	persistent_fd = -1;
	drain_all(&c, vc);
	assert_int_equal(sum(METRIC_VM_NIC_PACKETS, F_NIC_NIC, ifname), 4);
	assert_int_equal(sum(METRIC_VM_NIC_BYTES, F_NIC_DIRECTION, "sent"), 4 * 70);

	/* held by no one and quiet: nothing more, booked to no one */
	drain_all(&c, vc);
	for (size_t i = 0; i < nrecs; i++)
		assert_string_not_equal(recs[i].str[F_NIC_NIC], ifname);

	c.ops->stop(&c);
	vmcache__free(vc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_file_syscalls),
		cmocka_unit_test(test_loop_device_block),
		cmocka_unit_test(test_reconfigure_key_fields),
		cmocka_unit_test(test_tap_counters),
		cmocka_unit_test(test_tap_made_after_start),
		cmocka_unit_test_teardown(test_persistent_tap_edges, remove_persistent_tap),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
