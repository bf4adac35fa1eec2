/* vmload's virtual devices: a disk doing real O_DIRECT I/O on its backing
 * file or block device, and a NIC on a tap. Each is driven by guest doorbell
 * exits and counts what it really did. */
#ifndef VMLOAD_DEVICES_H
#define VMLOAD_DEVICES_H

#include <stdint.h>
#include <stddef.h>

#include <liburing.h>

#include "opts.h"

#define DISK_PORT_READ(d)  (0x510 + 2 * (d))
#define DISK_PORT_WRITE(d) (0x511 + 2 * (d))
#define NIC_PORT_TX(n)     (0x530 + (n))
#define DISK_MAX_OFFSETS   4096	/* offsets listed in the truth, per op type */

struct disk {
	const struct workload *wl;
	int fd;
	uint64_t dev_size;
	void *buf;
	uint64_t rng;
	uint64_t reads, writes, read_bytes, write_bytes, errors;
	uint64_t min_offset, max_offset;
	uint64_t *read_offsets, *write_offsets;	/* first DISK_MAX_OFFSETS */
	unsigned long aio_ctx;			/* io=aio: aio_context_t, 0 if none */
	struct io_uring ring;			/* io=uring, uring-wq */
	int ring_ok;
};

struct nic {
	const struct workload *wl;
	int fd;
	uint8_t *frame;
	uint64_t tx_packets, tx_bytes, rx_packets, rx_bytes, tx_errors;
};

/* Opens and checks the backing store; on success *d owns fd, buf, the
 * offset lists and the AIO context or io_uring of its io= mode
 * (disk__close releases them). err names the problem. */
int disk__open(struct disk *d, const struct workload *wl, char *err, size_t errlen);
/* One guest operation; write != 0 for a write. 0 or negative errno. */
int disk__op(struct disk *d, int write);
void disk__close(struct disk *d);
/* "sync", "aio", "uring", "uring-wq": as --disk io= spells it. */
const char *disk__io_name(enum disk_io io);

/* Opens (creating if needed) the tap, turns its IPv6 off so the host stack
 * sends nothing on its own, and sets it up. *n owns fd and frame. */
int nic__open(struct nic *n, const struct workload *wl, char *err, size_t errlen);
int nic__tx(struct nic *n);
/* Reads what is waiting on the tap (non-blocking); returns frames read. */
int nic__rx_poll(struct nic *n, int timeout_ms);
void nic__close(struct nic *n);

/* --inject: send count frames of size bytes out of host interface tap. */
int nic__inject(const char *tap, uint64_t count, uint64_t size);

#endif
