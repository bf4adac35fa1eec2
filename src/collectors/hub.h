/* The collection hub: which collectors run, for whom, and the drain.
 *
 * Consumers (instrumentations in `watch` and in the agent) register the
 * metric and fields they need; the hub starts a collector when its first
 * consumer arrives, narrows or widens the kernel-side key as consumers come
 * and go (reconfigure), and stops it — unloading its BPF programs — when the
 * last one leaves. Nothing is attached while nothing is instrumented.
 *
 * Not thread-safe: one owner serializes add/remove/drain.
 */
#ifndef KVMSCOPE_COLLECTORS_HUB_H
#define KVMSCOPE_COLLECTORS_HUB_H

#include <stdint.h>

#include "engine/record.h"

struct hub;

struct hub_consumer {
	enum metric_id metric;
	uint64_t fields;	/* FIELD_BIT()s the consumer's predicate and decomposition use */
	record_sink_fn sink;	/* called for each record of its metric */
	void *ctx;
};

/* Caller owns *out (hub__free). proc_root is normally "/proc". */
int hub__new(struct hub **out, const char *proc_root);
void hub__free(struct hub *hub);

/* Register a consumer; starts/reconfigures the metric's collector. Returns
 * a consumer id >= 0, or -errno with a message for the user in err. */
int hub__add(struct hub *hub, const struct hub_consumer *c, char *err, size_t errlen);
/* Unregister; stops the collector when it was the last consumer. */
int hub__remove(struct hub *hub, int id);
/* Drain every running collector up to (excluding) unix second `before` and
 * dispatch the records. A record lacking a numeric field a consumer needs
 * (record.num_absent) is not given to that consumer. Returns records
 * dispatched or -errno. */
int hub__drain(struct hub *hub, int64_t before);
/* Unix second before which every second of the metric is final
 * (engine/finality.h) as of the last drain: the drained seconds, less those
 * an exit that began in them still holds open (vm.exits), up to
 * COLLECTOR_FINAL_WAIT_MAX_S. Host-wide: one open exit of any VM holds the
 * second for every instrumentation of the metric. 0 before the first
 * drain. */
int64_t hub__final_until(const struct hub *hub, enum metric_id metric);
/* Collectors running now, and events lost in the kernel since they started. */
int hub__running(const struct hub *hub);
uint64_t hub__drops(const struct hub *hub, enum metric_id metric);
/* What the metric's data comes from on this host, for users ("" if idle). */
const char *hub__source(const struct hub *hub, enum metric_id metric);
const char *hub__hostname(const struct hub *hub);
/* Replaces the hostname records carry (default: gethostname()); agents
 * sharing one kernel tell their records apart by it. -EINVAL if empty or
 * too long. */
int hub__set_hostname(struct hub *hub, const char *name);
struct vmcache *hub__vms(struct hub *hub);

#endif
