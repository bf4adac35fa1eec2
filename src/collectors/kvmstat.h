/* The kernel side of `kvmscope stat`: per-vCPU exit/irq/emulation counters. */
#ifndef KVMSCOPE_COLLECTORS_KVMSTAT_H
#define KVMSCOPE_COLLECTORS_KVMSTAT_H

#include <stdint.h>
#include <sys/types.h>

#include <linux/types.h>

#include "kvmstat_types.h"	/* bpf/: counter layout shared with the kernel side */

struct kvmstat;

/* One drained entry: counters of one (pid, thread or vCPU) in one second. */
struct kvmstat_entry {
	int64_t time;		/* unix second */
	pid_t pid;
	pid_t tid;		/* 0 when keyed by destination vCPU */
	int vcpu;		/* -1 when only the thread is known */
	uint64_t v[KVMSTAT__N];
};

typedef int (*kvmstat_entry_fn)(const struct kvmstat_entry *e, void *ctx);

/* Load and attach the programs. On success the caller owns *out (release
 * with kvmstat__close); on failure err says what the user should do. */
int kvmstat__open(struct kvmstat **out, char *err, size_t errlen);
/* Hand every complete second before unix time `before` to fn, then forget
 * it. An exit is counted in the second it began: one that ends after that
 * second was drained is handed over by a later drain (of the same `before`
 * too) until the second is final. */
int kvmstat__drain(struct kvmstat *ks, int64_t before, kvmstat_entry_fn fn, void *ctx);
/* Every second before it is final (engine/finality.h) as of the last drain:
 * drained, and no exit that began in it still open, COLLECTOR_FINAL_WAIT_MAX_S
 * after its end at most. */
int64_t kvmstat__final_until(const struct kvmstat *ks);
uint64_t kvmstat__drops(struct kvmstat *ks);
void kvmstat__close(struct kvmstat *ks);

#endif
