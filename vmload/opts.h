/* vmload's command line: workloads as --KIND key=value,... specs. */
#ifndef VMLOAD_OPTS_H
#define VMLOAD_OPTS_H

#include <stdint.h>
#include <stdio.h>

#include "guest.h"

#define MAX_WORKLOADS 64
#define MAX_DISKS     8
#define MAX_NICS      8

/* how a disk submits its I/O, the ways QEMU's aio= does */
enum disk_io { DISK_IO_SYNC, DISK_IO_AIO, DISK_IO_URING, DISK_IO_URING_WQ };

enum wl_kind { WL_PIO, WL_MMIO, WL_HLT, WL_IRQ, WL_CR3, WL_DISK, WL_NIC, WL_PIT };
enum irq_via { VIA_PIC, VIA_IOAPIC, VIA_MSI };

struct workload {
	enum wl_kind kind;
	int vcpu;
	uint64_t count;		/* pio, mmio, hlt, irq */
	double rate;		/* operations per second, 0 = as fast as possible */
	uint64_t port, addr;	/* pio port, mmio address */
	int pio_in;		/* pio: IN instead of OUT (dir=in) */
	/* irq (and the wake-ups of hlt) */
	uint64_t vector;
	enum irq_via via;
	uint64_t period_ms, phase_ms;
	int64_t line;		/* -1 = chosen by vmload */
	/* cr3 */
	int nr_weights;
	uint64_t weights[GUEST_MAX_ROOTS];
	uint64_t unit;
	double duration;
	/* disk */
	char *path;
	uint64_t reads, writes, size, offset, span, seed;
	int rand;
	enum disk_io io;
	int buffered;		/* cache=buffered: no O_DIRECT */
	/* nic */
	char *tap;
	uint64_t tx, rx;
	int index;		/* n-th disk / n-th nic */
	/* pit: KVM's in-kernel PIT, channel 0 at hz (count and vector above) */
	uint64_t hz;
};

struct config {
	int nr_vcpus;
	const char *name;		/* NULL: no name */
	char *name_owned;		/* name's copy when cut out of -name guest=NAME,... */
	double duration;		/* s, cap on the whole run */
	uint64_t delay_ms, linger_ms;
	int no_thread_names;		/* --thread-names=off: vCPU threads keep vmload's name */
	const char *truth_path;		/* NULL: stdout */
	int nr_workloads;
	struct workload wl[MAX_WORKLOADS];
	int nr_disks, nr_nics;
	const char *inject;		/* --inject spec: helper mode, no VM */
};

/* Parses argv into *cfg. Workload paths/tap names are copies that cfg owns
 * (opts__free releases them, also after a failed parse); other strings point
 * into argv. Returns 0, 1 for --help (usage already printed), or -EINVAL
 * after printing a precise error. */
int opts__parse(int argc, char **argv, struct config *cfg);
void opts__free(struct config *cfg);
void opts__usage(FILE *out);
/* Parses an --inject spec: tap=NAME,count=J,size=L. On success *tap is a
 * copy the caller frees. */
int opts__parse_inject(const char *spec, char **tap, uint64_t *count, uint64_t *size);
const char *opts__via_name(enum irq_via via);

#endif
