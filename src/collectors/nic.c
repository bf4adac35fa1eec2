/* vm.nic_bytes and vm.nic_packets from the taps' own counters.
 *
 * The kernel already counts every packet on a tap, so sampling
 * /sys/class/net/<tap>/statistics once a second costs nothing per packet and
 * needs no BPF. Each drain that starts a new second samples every tap of
 * every VM and emits the deltas since the previous sample as the second that
 * just ended. Directions are the guest's: host rx on a tap is what the guest
 * sent, host tx is what it received.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectors/collector.h"
#include "common/log.h"

#define SUB "nic"
#define SYSFS_NET "/sys/class/net"

enum { C_RX_BYTES, C_TX_BYTES, C_RX_PACKETS, C_TX_PACKETS, C__COUNT };

static const char *const counter_files[C__COUNT] = {
	"rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
};

struct tap_state {
	char ifname[32];
	char vm[VM_NAME_MAX];
	uint64_t last[C__COUNT];
	int seen;			/* present in the latest sample */
};

struct nic_priv {
	struct tap_state *taps;
	size_t ntaps, cap;
	int64_t last_before;		/* the `before` of the latest sample */
};

static int read_u64(const char *path, uint64_t *v)
{
	FILE *f = fopen(path, "r");
	int ok;

	if (!f)
		return -errno;
	ok = fscanf(f, "%" SCNu64, v) == 1;
	fclose(f);
	return ok ? 0 : -EINVAL;
}

static int read_counters(const char *ifname, uint64_t out[C__COUNT])
{
	char path[128];
	int err;

	for (int i = 0; i < C__COUNT; i++) {
		snprintf(path, sizeof(path), SYSFS_NET "/%s/statistics/%s", ifname, counter_files[i]);
		err = read_u64(path, &out[i]);
		if (err)
			return err;
	}
	return 0;
}

static struct tap_state *find_tap(struct nic_priv *p, const char *ifname)
{
	for (size_t i = 0; i < p->ntaps; i++)
		if (!strcmp(p->taps[i].ifname, ifname))
			return &p->taps[i];
	return NULL;
}

/* Counters only grow; a smaller value means the tap was recreated under the
 * same name, and everything it counted since is new traffic. */
static uint64_t delta(uint64_t now, uint64_t last)
{
	return now >= last ? now - last : now;
}

static int emit(const struct collector_env *env, int64_t t, const struct tap_state *tap,
		enum metric_id metric, const char *direction, uint64_t value,
		record_sink_fn sink, void *ctx, int *emitted)
{
	struct record rec;
	int err;

	if (!value)
		return 0;
	memset(&rec, 0, sizeof(rec));
	rec.metric = metric;
	rec.time = t;
	rec.value = value;
	rec.str[F_HOSTNAME] = env->hostname;
	rec.str[F_VM] = tap->vm;
	rec.str[F_NIC_NIC] = tap->ifname;
	rec.str[F_NIC_DIRECTION] = direction;
	err = sink(&rec, ctx);
	if (!err)
		(*emitted)++;
	return err;
}

/* Sample every tap of `list`: taps seen for the first time become a baseline,
 * known ones emit their deltas (when sink is set) as second t, and taps no
 * longer present are forgotten. Returns records emitted or -errno. */
static int sample(struct nic_priv *p, const struct vm_list *list, const struct collector_env *env,
		  int64_t t, record_sink_fn sink, void *ctx)
{
	int emitted = 0, err = 0;

	for (size_t i = 0; i < p->ntaps; i++)
		p->taps[i].seen = 0;
	for (size_t v = 0; v < list->nvms && !err; v++) {
		const struct vm_info *vm = &list->vms[v];

		for (size_t n = 0; n < vm->nnics && !err; n++) {
			const char *ifname = vm->nics[n].ifname;
			struct tap_state *tap = find_tap(p, ifname);
			uint64_t now[C__COUNT];

			if (!ifname[0] || (tap && tap->seen))
				continue;	/* listed twice (e.g. multiqueue fds) */
			if (read_counters(ifname, now))
				continue;	/* vanished since the scan: forgotten below */
			if (!tap) {
				if (p->ntaps == p->cap) {
					size_t cap = p->cap ? 2 * p->cap : 8;
					struct tap_state *bigger = realloc(p->taps, cap * sizeof(*bigger));

					if (!bigger)
						return -ENOMEM;
					p->taps = bigger;
					p->cap = cap;
				}
				tap = &p->taps[p->ntaps++];
				snprintf(tap->ifname, sizeof(tap->ifname), "%s", ifname);
				memcpy(tap->last, now, sizeof(now));	/* baseline */
			} else if (sink) {
				snprintf(tap->vm, sizeof(tap->vm), "%s", vm->name);
				err = emit(env, t, tap, METRIC_VM_NIC_BYTES, "sent",
					   delta(now[C_RX_BYTES], tap->last[C_RX_BYTES]), sink, ctx, &emitted);
				if (!err)
					err = emit(env, t, tap, METRIC_VM_NIC_BYTES, "received",
						   delta(now[C_TX_BYTES], tap->last[C_TX_BYTES]), sink, ctx, &emitted);
				if (!err)
					err = emit(env, t, tap, METRIC_VM_NIC_PACKETS, "sent",
						   delta(now[C_RX_PACKETS], tap->last[C_RX_PACKETS]), sink, ctx, &emitted);
				if (!err)
					err = emit(env, t, tap, METRIC_VM_NIC_PACKETS, "received",
						   delta(now[C_TX_PACKETS], tap->last[C_TX_PACKETS]), sink, ctx, &emitted);
				memcpy(tap->last, now, sizeof(now));
			}
			snprintf(tap->vm, sizeof(tap->vm), "%s", vm->name);
			tap->seen = 1;
		}
	}
	/* forget taps that disappeared: a tap that comes back starts a new baseline */
	for (size_t i = 0; i < p->ntaps;)
		if (!p->taps[i].seen)
			p->taps[i] = p->taps[--p->ntaps];
		else
			i++;
	return err ? err : emitted;
}

/* On success c->priv owns the tap table until nic_stop. */
static int nic_start(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct nic_priv *p = calloc(1, sizeof(*p));
	struct vm_list list = { 0 };

	if (!p)
		return -ENOMEM;
	/* baseline now (start has no vmcache), so the first drained second counts */
	if (!discovery__scan("/proc", &list)) {
		sample(p, &list, NULL, 0, NULL, NULL);
		discovery__free(&list);
	}
	c->priv = p;
	c->source = SYSFS_NET "/<tap>/statistics";
	return 0;
}

static void nic_stop(struct collector *c)
{
	struct nic_priv *p = c->priv;

	if (p)
		free(p->taps);
	free(p);
	c->priv = NULL;
}

static int nic_reconfigure(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	/* every field is always reported: nothing to change */
	return 0;
}

static int nic_drain(struct collector *c, int64_t before, const struct collector_env *env,
		     record_sink_fn sink, void *ctx)
{
	struct nic_priv *p = c->priv;
	int err;

	if (!p)
		return -EINVAL;
	/* one sample per second: a second drain for the same second has no new data */
	if (before <= p->last_before)
		return 0;
	p->last_before = before;
	if (!env->vms)
		return 0;
	err = vmcache__refresh(env->vms);
	if (err) {
		log_warn(SUB, "VM scan failed (%s): NIC counters not sampled this second", strerror(-err));
		return 0;
	}
	return sample(p, vmcache__list(env->vms), env, before - 1, sink, ctx);
}

static uint64_t nic_drops(struct collector *c)
{
	return 0;	/* counters are the kernel's: nothing can be lost */
}

const struct collector_ops collector_nic_ops = {
	.name = "nic",
	.metrics = (1u << METRIC_VM_NIC_BYTES) | (1u << METRIC_VM_NIC_PACKETS),
	.start = nic_start,
	.reconfigure = nic_reconfigure,
	.drain = nic_drain,
	.stop = nic_stop,
	.drops = nic_drops,
};
