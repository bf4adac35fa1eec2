#include "devices.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <linux/if.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define ETH_TYPE_LOCAL_EXP 0x88b5

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static const char *const io_names[] = {
	[DISK_IO_SYNC] = "sync", [DISK_IO_AIO] = "aio",
	[DISK_IO_URING] = "uring", [DISK_IO_URING_WQ] = "uring-wq",
};

const char *disk__io_name(enum disk_io io)
{
	return io <= DISK_IO_URING_WQ ? io_names[io] : "?";
}

/* The AIO context or io_uring of d's io= mode; err names the problem. */
static int disk_open_queue(struct disk *d, char *err, size_t errlen)
{
	int r = 0;

	if (d->wl->io == DISK_IO_AIO) {
		/* raw syscalls: libaio would add a library for three calls */
		if (syscall(SYS_io_setup, 1, &d->aio_ctx) < 0) {
			r = -errno;
			d->aio_ctx = 0;
			snprintf(err, errlen, "--disk io=aio: io_setup: %s", strerror(errno));
		}
	} else if (d->wl->io == DISK_IO_URING || d->wl->io == DISK_IO_URING_WQ) {
		r = io_uring_queue_init(4, &d->ring, 0);
		if (r < 0)
			snprintf(err, errlen, "--disk io=uring: io_uring_queue_init: %s", strerror(-r));
		else
			d->ring_ok = 1;
	}
	return r;
}

/* One read or write of n bytes at off through the AIO context, waited for.
 * Returns what the iocb's completion says (bytes or -errno). */
static ssize_t aio_rw(struct disk *d, int write, size_t n, uint64_t off)
{
	struct iovec iov = { d->buf, n };
	struct iocb cb = { 0 }, *cbp = &cb;
	struct io_event ev;

	cb.aio_fildes = (uint32_t)d->fd;
	cb.aio_lio_opcode = write ? IOCB_CMD_PWRITEV : IOCB_CMD_PREADV;
	cb.aio_buf = (uint64_t)(uintptr_t)&iov;
	cb.aio_nbytes = 1;
	cb.aio_offset = (int64_t)off;
	if (syscall(SYS_io_submit, d->aio_ctx, 1, &cbp) != 1)
		return -errno;
	while (syscall(SYS_io_getevents, d->aio_ctx, 1, 1, &ev, NULL) != 1)
		if (errno != EINTR)
			return -errno;
	return (ssize_t)ev.res;
}

/* The same through the io_uring; uring-wq forces it into an io-wq worker. */
static ssize_t uring_rw(struct disk *d, int write, size_t n, uint64_t off)
{
	struct iovec iov = { d->buf, n };
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
	struct io_uring_cqe *cqe;
	ssize_t res;
	int r;

	if (!sqe)
		return -EBUSY;
	if (write)
		io_uring_prep_writev(sqe, d->fd, &iov, 1, off);
	else
		io_uring_prep_readv(sqe, d->fd, &iov, 1, off);
	if (d->wl->io == DISK_IO_URING_WQ)
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	r = io_uring_submit_and_wait(&d->ring, 1);
	if (r < 0)
		return r;
	do
		r = io_uring_wait_cqe(&d->ring, &cqe);
	while (r == -EINTR);
	if (r < 0)
		return r;
	res = cqe->res;
	io_uring_cqe_seen(&d->ring, cqe);
	return res;
}

int disk__open(struct disk *d, const struct workload *wl, char *err, size_t errlen)
{
	struct stat st;
	uint64_t ops_end;
	int r;

	memset(d, 0, sizeof(*d));
	d->wl = wl;
	d->min_offset = UINT64_MAX;
	d->rng = wl->seed ? wl->seed : 1;
	d->fd = open(wl->path, O_RDWR | (wl->buffered ? 0 : O_DIRECT) | O_CLOEXEC);
	if (d->fd < 0) {
		r = -errno;
		if (errno == EINVAL)
			snprintf(err, errlen, "--disk file=%s: O_DIRECT is not supported there (tmpfs?); use a block device (losetup) or a file on ext4/xfs", wl->path);
		else
			snprintf(err, errlen, "--disk file=%s: %s", wl->path, strerror(errno));
		goto err_out;
	}
	if (fstat(d->fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "--disk file=%s: stat: %s", wl->path, strerror(errno));
		goto err_close;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(d->fd, BLKGETSIZE64, &d->dev_size) < 0) {
			r = -errno;
			snprintf(err, errlen, "--disk file=%s: BLKGETSIZE64: %s", wl->path, strerror(errno));
			goto err_close;
		}
	} else if (S_ISREG(st.st_mode)) {
		d->dev_size = st.st_size;
	} else {
		r = -EINVAL;
		snprintf(err, errlen, "--disk file=%s: neither a regular file nor a block device", wl->path);
		goto err_close;
	}
	if (wl->rand) {
		uint64_t span = wl->span ? wl->span : (d->dev_size > wl->offset ? d->dev_size - wl->offset : 0);

		span -= span % wl->size;
		ops_end = wl->offset + span;
		if (span < wl->size) {
			r = -EINVAL;
			snprintf(err, errlen, "--disk file=%s: no room for one %llu-byte op at offset %llu (size %llu)",
				 wl->path, (unsigned long long)wl->size, (unsigned long long)wl->offset,
				 (unsigned long long)d->dev_size);
			goto err_close;
		}
	} else {
		uint64_t n = wl->reads > wl->writes ? wl->reads : wl->writes;

		ops_end = wl->offset + n * wl->size;
	}
	if (ops_end > d->dev_size) {
		r = -EINVAL;
		snprintf(err, errlen, "--disk file=%s: ops reach byte %llu but it holds %llu bytes",
			 wl->path, (unsigned long long)ops_end, (unsigned long long)d->dev_size);
		goto err_close;
	}
	r = posix_memalign(&d->buf, 4096, wl->size);
	if (r) {
		r = -r;
		snprintf(err, errlen, "--disk: buffer of %llu bytes: %s", (unsigned long long)wl->size, strerror(-r));
		goto err_close;
	}
	memset(d->buf, 0x6b, wl->size);
	d->read_offsets = calloc(DISK_MAX_OFFSETS, sizeof(uint64_t));
	d->write_offsets = calloc(DISK_MAX_OFFSETS, sizeof(uint64_t));
	if (!d->read_offsets || !d->write_offsets) {
		r = -ENOMEM;
		snprintf(err, errlen, "--disk: out of memory");
		goto err_free;
	}
	r = disk_open_queue(d, err, errlen);
	if (r)
		goto err_free;
	return 0;

err_free:
	free(d->read_offsets);
	free(d->write_offsets);
	free(d->buf);
	d->read_offsets = d->write_offsets = NULL;
	d->buf = NULL;
err_close:
	close(d->fd);
err_out:
	d->fd = -1;
	return r;
}

int disk__op(struct disk *d, int write)
{
	const struct workload *wl = d->wl;
	uint64_t i = write ? d->writes : d->reads, off;
	ssize_t n;

	if (wl->rand) {
		uint64_t span = wl->span ? wl->span : d->dev_size - wl->offset;

		off = wl->offset + (xorshift(&d->rng) % (span / wl->size)) * wl->size;
	} else {
		off = wl->offset + i * wl->size;
	}
	if (write) {
		/* Stamp the op number so the data on disk is traceable. */
		memcpy(d->buf, &i, sizeof(i));
	}
	if (wl->io == DISK_IO_AIO)
		n = aio_rw(d, write, wl->size, off);
	else if (wl->io != DISK_IO_SYNC)
		n = uring_rw(d, write, wl->size, off);
	else if ((n = write ? pwrite(d->fd, d->buf, wl->size, off) : pread(d->fd, d->buf, wl->size, off)) < 0)
		n = -errno;
	if (n != (ssize_t)wl->size) {
		d->errors++;
		return n < 0 ? (int)n : -EIO;
	}
	if (write) {
		if (d->writes < DISK_MAX_OFFSETS)
			d->write_offsets[d->writes] = off;
		d->writes++;
		d->write_bytes += n;
	} else {
		if (d->reads < DISK_MAX_OFFSETS)
			d->read_offsets[d->reads] = off;
		d->reads++;
		d->read_bytes += n;
	}
	if (off < d->min_offset)
		d->min_offset = off;
	if (off > d->max_offset)
		d->max_offset = off;
	return 0;
}

void disk__close(struct disk *d)
{
	if (d->aio_ctx)
		syscall(SYS_io_destroy, d->aio_ctx);
	if (d->ring_ok)
		io_uring_queue_exit(&d->ring);
	d->aio_ctx = 0;
	d->ring_ok = 0;
	if (d->fd >= 0)
		close(d->fd);
	free(d->buf);
	free(d->read_offsets);
	free(d->write_offsets);
	d->fd = -1;
	d->buf = NULL;
	d->read_offsets = d->write_offsets = NULL;
}

static void ipv6_off(const char *ifname)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;	/* no IPv6 on this host: nothing to silence */
	if (write(fd, "1", 1) != 1) {
		/* best effort: the frames counted are still exact, only noisier */
	}
	close(fd);
}

static int link_up(const char *ifname)
{
	struct ifreq ifr;
	int s, r = 0;

	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		r = -errno;
		goto out;
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		r = -errno;
out:
	close(s);
	return r;
}

static void build_frame(uint8_t *f, size_t len, int index)
{
	static const uint8_t src[6] = { 0x02, 0x6b, 0x76, 0x6d, 0x00, 0x00 };

	memset(f, 0, len);
	memset(f, 0xff, 6);			/* broadcast */
	memcpy(f + 6, src, 6);
	f[11] = (uint8_t)index;
	f[12] = ETH_TYPE_LOCAL_EXP >> 8;
	f[13] = ETH_TYPE_LOCAL_EXP & 0xff;
}

int nic__open(struct nic *n, const struct workload *wl, char *err, size_t errlen)
{
	struct ifreq ifr;
	int r;

	memset(n, 0, sizeof(*n));
	n->wl = wl;
	n->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (n->fd < 0) {
		r = -errno;
		snprintf(err, errlen, "--nic tap=%s: /dev/net/tun: %s", wl->tap, strerror(errno));
		goto err_out;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", wl->tap);
	if (ioctl(n->fd, TUNSETIFF, &ifr) < 0) {
		r = -errno;
		snprintf(err, errlen, "--nic tap=%s: TUNSETIFF: %s%s", wl->tap, strerror(errno),
			 errno == EBUSY ? " (another process holds it, or it is not a tap)" : "");
		goto err_close;
	}
	ipv6_off(wl->tap);
	r = link_up(wl->tap);
	if (r) {
		snprintf(err, errlen, "--nic tap=%s: set link up: %s", wl->tap, strerror(-r));
		goto err_close;
	}
	n->frame = malloc(wl->size > 0 ? wl->size : 60);
	if (!n->frame) {
		r = -ENOMEM;
		snprintf(err, errlen, "--nic: out of memory");
		goto err_close;
	}
	if (wl->size)
		build_frame(n->frame, wl->size, wl->index);
	return 0;

err_close:
	close(n->fd);
err_out:
	n->fd = -1;
	return r;
}

int nic__tx(struct nic *n)
{
	uint32_t seq = (uint32_t)n->tx_packets;
	ssize_t w;

	memcpy(n->frame + 14, &seq, sizeof(seq));
	w = write(n->fd, n->frame, n->wl->size);
	if (w != (ssize_t)n->wl->size) {
		n->tx_errors++;
		return w < 0 ? -errno : -EIO;
	}
	n->tx_packets++;
	n->tx_bytes += w;
	return 0;
}

int nic__rx_poll(struct nic *n, int timeout_ms)
{
	struct pollfd p = { .fd = n->fd, .events = POLLIN };
	uint8_t buf[65536];
	int got = 0;

	if (poll(&p, 1, timeout_ms) <= 0)
		return 0;
	for (;;) {
		ssize_t r = read(n->fd, buf, sizeof(buf));

		if (r <= 0)
			break;
		n->rx_packets++;
		n->rx_bytes += r;
		got++;
	}
	return got;
}

void nic__close(struct nic *n)
{
	if (n->fd >= 0)
		close(n->fd);
	free(n->frame);
	n->fd = -1;
	n->frame = NULL;
}

int nic__inject(const char *tap, uint64_t count, uint64_t size)
{
	struct sockaddr_ll sll;
	uint8_t frame[1514];
	uint64_t i;
	int s, r = 0;

	s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_TYPE_LOCAL_EXP));
	if (s < 0) {
		r = -errno;
		fprintf(stderr, "vmload: --inject: AF_PACKET socket: %s\n", strerror(errno));
		goto out;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_TYPE_LOCAL_EXP);
	{
		struct ifreq ifr;

		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, IFNAMSIZ, "%s", tap);
		if (ioctl(s, SIOCGIFINDEX, &ifr) == 0)
			sll.sll_ifindex = ifr.ifr_ifindex;
	}
	if (!sll.sll_ifindex) {
		r = -ENODEV;
		fprintf(stderr, "vmload: --inject: no interface '%s'\n", tap);
		goto out_close;
	}
	build_frame(frame, size, 0x80);
	for (i = 0; i < count; i++) {
		uint32_t seq = (uint32_t)i;

		memcpy(frame + 14, &seq, sizeof(seq));
		if (sendto(s, frame, size, 0, (struct sockaddr *)&sll, sizeof(sll)) != (ssize_t)size) {
			r = -errno;
			fprintf(stderr, "vmload: --inject: send on %s: %s (is it up?)\n", tap, strerror(errno));
			goto out_close;
		}
	}
	printf("{\"tap\": \"%s\", \"sent\": %llu, \"size\": %llu}\n", tap,
	       (unsigned long long)count, (unsigned long long)size);
out_close:
	close(s);
out:
	return r;
}
