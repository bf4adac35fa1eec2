/* vm.nic_bytes and vm.nic_packets from the taps' own counters.
 *
 * The kernel already counts every packet on a tap, so sampling
 * /sys/class/net/<tap>/statistics once a second costs nothing per packet and
 * needs no BPF. Each drain that starts a new second samples every tap on the
 * host (tun/tap and macvtap interfaces, and any interface a VM is found to
 * hold) and books the deltas since the previous sample as the second that
 * just ended, to the VM holding the tap now or, if none does, to the VM that
 * held it at the previous sample: a VM that exited (or let go of its tap)
 * since then did that traffic. Taps without a holder are sampled too, so a
 * VM that opens a tap made before it counts from its first frame, and a tap
 * that did not exist at the previous sample counts from zero (everything it
 * counted happened since). What a tap counted between the last sample and
 * its removal is lost: its counters are gone with it. Directions are the
 * guest's: host rx on a tap is what the guest sent, host tx is what it
 * received.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectors/collector.h"
#include "common/log.h"

#define SUB "nic"
#define SYSFS_NET "/sys/class/net"

enum { C_RX_BYTES, C_TX_BYTES, C_RX_PACKETS, C_TX_PACKETS, C__COUNT };

static const char *const counter_files[C__COUNT] = {
	"rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
};

struct tap_state {
	char ifname[IF_NAMESIZE];
	int ifindex;
	char vm[VM_NAME_MAX];		/* holder at the latest sample, "" if none */
	uint64_t last[C__COUNT];
	int seen;			/* present in the latest sample */
};

struct nic_priv {
	struct tap_state *taps;
	size_t ntaps, cap;
	int64_t last_before;		/* the `before` of the latest sample */
	int sampled;			/* a sample has been taken: later taps are new */
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

/* By ifindex: a tap renamed keeps its counters, one made again under the
 * same name is another tap. */
static struct tap_state *find_tap(struct nic_priv *p, int ifindex)
{
	for (size_t i = 0; i < p->ntaps; i++)
		if (p->taps[i].ifindex == ifindex)
			return &p->taps[i];
	return NULL;
}

/* On success the new entry is p's (freed by nic_stop). */
static struct tap_state *add_tap(struct nic_priv *p, const char *ifname, int ifindex)
{
	struct tap_state *tap;

	if (p->ntaps == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 8;
		struct tap_state *bigger = realloc(p->taps, cap * sizeof(*bigger));

		if (!bigger)
			return NULL;
		p->taps = bigger;
		p->cap = cap;
	}
	tap = &p->taps[p->ntaps++];
	memset(tap, 0, sizeof(*tap));
	snprintf(tap->ifname, sizeof(tap->ifname), "%s", ifname);
	tap->ifindex = ifindex;
	return tap;
}

/* The VM of `list` (may be NULL) holding interface ifname, or NULL. */
static const struct vm_info *holder_of(const struct vm_list *list, const char *ifname)
{
	for (size_t v = 0; list && v < list->nvms; v++)
		for (size_t n = 0; n < list->vms[v].nnics; n++)
			if (!strcmp(list->vms[v].nics[n].ifname, ifname))
				return &list->vms[v];
	return NULL;
}

/* A VMM holds a tun/tap through /dev/net/tun and a macvtap through /dev/tapN. */
static int is_tap(const char *ifname)
{
	char path[128];

	snprintf(path, sizeof(path), SYSFS_NET "/%s/tun_flags", ifname);
	if (!access(path, F_OK))
		return 1;
	snprintf(path, sizeof(path), SYSFS_NET "/%s/macvtap", ifname);
	return !access(path, F_OK);
}

/* Counters only grow; a smaller value (another tap got the ifindex of one
 * removed since the previous sample) means everything it counted is new. */
static uint64_t delta(uint64_t now, uint64_t last)
{
	return now >= last ? now - last : now;
}

static int emit(const struct collector_env *env, int64_t t, const struct tap_state *tap,
		const char *vm, enum metric_id metric, const char *direction, uint64_t value,
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
	rec.str[F_VM] = vm;
	rec.str[F_NIC_NIC] = tap->ifname;
	rec.str[F_NIC_DIRECTION] = direction;
	err = sink(&rec, ctx);
	if (!err)
		(*emitted)++;
	return err;
}

static int emit_deltas(const struct collector_env *env, int64_t t, const struct tap_state *tap,
		       const char *vm, const uint64_t now[C__COUNT],
		       record_sink_fn sink, void *ctx, int *emitted)
{
	static const struct {
		enum metric_id metric;
		const char *direction;
		int counter;
	} out[] = {
		{ METRIC_VM_NIC_BYTES, "sent", C_RX_BYTES },
		{ METRIC_VM_NIC_BYTES, "received", C_TX_BYTES },
		{ METRIC_VM_NIC_PACKETS, "sent", C_RX_PACKETS },
		{ METRIC_VM_NIC_PACKETS, "received", C_TX_PACKETS },
	};
	int err = 0;

	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]) && !err; i++)
		err = emit(env, t, tap, vm, out[i].metric, out[i].direction,
			   delta(now[out[i].counter], tap->last[out[i].counter]), sink, ctx, emitted);
	return err;
}

/* Sample every tap on the host. The first sample is a baseline; later ones
 * emit (when sink is set) each tap's deltas as second t, booked to its
 * holder in `list` (may be NULL), else to its holder at the previous
 * sample. Taps no longer present are forgotten. Returns records emitted or
 * -errno. */
static int sample(struct nic_priv *p, const struct vm_list *list, const struct collector_env *env,
		  int64_t t, record_sink_fn sink, void *ctx)
{
	char path[128];
	struct dirent *e;
	int emitted = 0, err = 0;
	DIR *d = opendir(SYSFS_NET);

	if (!d)
		return -errno;
	for (size_t i = 0; i < p->ntaps; i++)
		p->taps[i].seen = 0;
	while (!err && (e = readdir(d))) {
		const struct vm_info *holder;
		struct tap_state *tap;
		uint64_t now[C__COUNT], ifindex;

		if (e->d_name[0] == '.' || strlen(e->d_name) >= IF_NAMESIZE)
			continue;
		holder = holder_of(list, e->d_name);
		if (!holder && !is_tap(e->d_name))
			continue;
		snprintf(path, sizeof(path), SYSFS_NET "/%s/ifindex", e->d_name);
		if (read_u64(path, &ifindex) || read_counters(e->d_name, now))
			continue;	/* vanished since readdir: forgotten below */
		tap = find_tap(p, (int)ifindex);
		if (!tap) {
			tap = add_tap(p, e->d_name, (int)ifindex);
			if (!tap) {
				err = -ENOMEM;
				break;
			}
			/* the first sample is the baseline; a tap new since the
			 * previous one counts from zero (add_tap zeroed last) */
			if (!p->sampled)
				memcpy(tap->last, now, sizeof(now));
		}
		snprintf(tap->ifname, sizeof(tap->ifname), "%s", e->d_name);	/* renamed? */
		if (sink) {
			const char *vm = holder ? holder->name : tap->vm;

			if (vm[0])
				err = emit_deltas(env, t, tap, vm, now, sink, ctx, &emitted);
		}
		memcpy(tap->last, now, sizeof(now));
		snprintf(tap->vm, sizeof(tap->vm), "%s", holder ? holder->name : "");
		tap->seen = 1;
	}
	closedir(d);
	/* forget taps that disappeared: a tap that comes back is a new one */
	for (size_t i = 0; i < p->ntaps;)
		if (!p->taps[i].seen)
			p->taps[i] = p->taps[--p->ntaps];
		else
			i++;
	if (!err)
		p->sampled = 1;
	return err ? err : emitted;
}

/* On success c->priv owns the tap table until nic_stop. */
static int nic_start(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct nic_priv *p = calloc(1, sizeof(*p));
	struct vm_list list = { 0 };
	int err;

	if (!p)
		return -ENOMEM;
	/* baseline now (start has no vmcache), so the first drained second
	 * counts; the holders are known where the scan works, so a VM that
	 * exits before that drain is still booked its traffic */
	err = discovery__scan("/proc", &list);
	sample(p, err ? NULL : &list, NULL, 0, NULL, NULL);
	if (!err)
		discovery__free(&list);
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
