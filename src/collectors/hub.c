#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectors/collector.h"
#include "collectors/hub.h"
#include "common/log.h"
#include "engine/metric.h"

#define HUB_MAX_CONSUMERS 1024

static const struct collector_ops *const all_collectors[] = {
	&collector_exits_ops, &collector_irqs_ops, &collector_disk_ops,
	&collector_nic_ops, &collector_samples_ops,
};
#define NCOLLECTORS (sizeof(all_collectors) / sizeof(all_collectors[0]))

struct hub_slot {
	int used;
	struct hub_consumer c;
};

struct hub {
	struct collector collectors[NCOLLECTORS];
	int running[NCOLLECTORS];
	int64_t final_until[NCOLLECTORS];	/* per collector, see hub__final_until */
	int64_t drained_before;
	struct hub_slot consumers[HUB_MAX_CONSUMERS];
	/* the used slots of each metric, so a record visits only its consumers */
	int by_metric[METRIC__COUNT][HUB_MAX_CONSUMERS];
	int nby_metric[METRIC__COUNT];
	/* the VM identities beyond its name: field indexes per metric, and
	 * whether any consumer of the metric uses them now */
	int uuid_field[METRIC__COUNT], vmid_field[METRIC__COUNT];
	uint64_t ident_bits[METRIC__COUNT];
	int ident_needed[METRIC__COUNT];
	struct vmcache *vms;
	char hostname[256];
	struct collector_env env;
};

/* Caller owns *out. */
int hub__new(struct hub **out, const char *proc_root)
{
	struct hub *hub = calloc(1, sizeof(*hub));

	if (!hub)
		return -ENOMEM;
	hub->vms = vmcache__new(proc_root);
	if (!hub->vms) {
		free(hub);
		return -ENOMEM;
	}
	if (gethostname(hub->hostname, sizeof(hub->hostname) - 1))
		snprintf(hub->hostname, sizeof(hub->hostname), "localhost");
	for (size_t i = 0; i < NCOLLECTORS; i++)
		hub->collectors[i].ops = all_collectors[i];
	for (int m = 0; m < METRIC__COUNT; m++) {
		const struct metric_desc *md = metric__get((enum metric_id)m);

		hub->uuid_field[m] = metric__field_index(md, "uuid");
		hub->vmid_field[m] = metric__field_index(md, "vmid");
		if (hub->uuid_field[m] >= 0)
			hub->ident_bits[m] |= FIELD_BIT(hub->uuid_field[m]);
		if (hub->vmid_field[m] >= 0)
			hub->ident_bits[m] |= FIELD_BIT(hub->vmid_field[m]);
	}
	collector__quiet_libbpf();
	hub->env.vms = hub->vms;
	hub->env.hostname = hub->hostname;
	hub->env.tai_offset = collector__tai_offset();
	*out = hub;
	return 0;
}

void hub__free(struct hub *hub)
{
	if (!hub)
		return;
	for (size_t i = 0; i < NCOLLECTORS; i++)
		if (hub->running[i])
			hub->collectors[i].ops->stop(&hub->collectors[i]);
	vmcache__free(hub->vms);
	free(hub);
}

/* fields[m] over all consumers of collector i's metrics; returns consumers. */
static int needed_fields(const struct hub *hub, size_t i, uint64_t fields[METRIC__COUNT])
{
	uint32_t metrics = hub->collectors[i].ops->metrics;
	int n = 0;

	memset(fields, 0, sizeof(uint64_t) * METRIC__COUNT);
	for (size_t s = 0; s < HUB_MAX_CONSUMERS; s++) {
		const struct hub_slot *slot = &hub->consumers[s];

		if (slot->used && (metrics & (1u << slot->c.metric))) {
			uint64_t f = slot->c.fields;

			/* uuid and vmid are filled here from the VM's name: the
			 * collector only has to tell VMs apart */
			if (f & hub->ident_bits[slot->c.metric])
				f = (f & ~hub->ident_bits[slot->c.metric]) | FIELD_BIT(F_VM);
			fields[slot->c.metric] |= f;
			n++;
		}
	}
	return n;
}

/* Bring collector i in line with its consumers: start, reconfigure or stop. */
static int sync_collector(struct hub *hub, size_t i, char *err, size_t errlen)
{
	struct collector *col = &hub->collectors[i];
	uint64_t fields[METRIC__COUNT];
	int n = needed_fields(hub, i, fields), rc = 0;

	if (n == 0 && hub->running[i]) {
		col->ops->stop(col);
		hub->running[i] = 0;
		log_info("hub", "collector %s stopped: no instrumentation needs it", col->ops->name);
	} else if (n > 0 && !hub->running[i]) {
		/* say what the user can do about it, not just the errno */
		if (col->ops->uses_bpf && (rc = collector__check_bpf(err, errlen)))
			return rc;
		hub->env.tai_offset = collector__tai_offset();
		rc = col->ops->start(col, fields);
		if (rc) {
			snprintf(err, errlen, "cannot start the %s collector: %s%s", col->ops->name,
				 strerror(-rc),
				 rc == -EPERM ? " (kvmscope needs root for BPF)" : "");
			return rc;
		}
		hub->running[i] = 1;
		/* what was final while it was idle stays so */
		hub->final_until[i] = hub->drained_before;
		log_info("hub", "collector %s started (source: %s)", col->ops->name,
			 col->source ? col->source : "");
	} else if (n > 0) {
		rc = col->ops->reconfigure(col, fields);
		if (rc)
			snprintf(err, errlen, "cannot reconfigure the %s collector: %s", col->ops->name,
				 strerror(-rc));
	}
	return rc;
}

static void index_consumers(struct hub *hub)
{
	memset(hub->nby_metric, 0, sizeof(hub->nby_metric));
	memset(hub->ident_needed, 0, sizeof(hub->ident_needed));
	for (int s = 0; s < HUB_MAX_CONSUMERS; s++) {
		enum metric_id m = hub->consumers[s].c.metric;

		if (!hub->consumers[s].used)
			continue;
		hub->by_metric[m][hub->nby_metric[m]++] = s;
		if (hub->consumers[s].c.fields & hub->ident_bits[m])
			hub->ident_needed[m] = 1;
	}
}

static int collector_of(enum metric_id metric)
{
	for (size_t i = 0; i < NCOLLECTORS; i++)
		if (all_collectors[i]->metrics & (1u << metric))
			return (int)i;
	return -1;
}

int hub__add(struct hub *hub, const struct hub_consumer *c, char *err, size_t errlen)
{
	int ci = collector_of(c->metric), rc;

	if (ci < 0) {
		snprintf(err, errlen, "no collector for metric %d", (int)c->metric);
		return -EINVAL;
	}
	for (int s = 0; s < HUB_MAX_CONSUMERS; s++) {
		if (hub->consumers[s].used)
			continue;
		hub->consumers[s].used = 1;
		hub->consumers[s].c = *c;
		rc = sync_collector(hub, (size_t)ci, err, errlen);
		if (rc)
			hub->consumers[s].used = 0;
		index_consumers(hub);
		return rc ? rc : s;
	}
	snprintf(err, errlen, "too many instrumentations (at most %d)", HUB_MAX_CONSUMERS);
	return -ENOSPC;
}

int hub__remove(struct hub *hub, int id)
{
	char err[256];
	int ci;

	if (id < 0 || id >= HUB_MAX_CONSUMERS || !hub->consumers[id].used)
		return -ENOENT;
	ci = collector_of(hub->consumers[id].c.metric);
	hub->consumers[id].used = 0;
	index_consumers(hub);
	if (sync_collector(hub, (size_t)ci, err, sizeof(err)))
		log_warn("hub", "%s", err);
	return 0;
}

static int dispatch(const struct record *rec, void *ctx)
{
	struct hub *hub = ctx;
	struct record with_ident;
	int err = 0;

	if (rec->metric >= METRIC__COUNT)
		return 0;
	if (hub->ident_needed[rec->metric]) {
		const char *uuid, *vmid;

		with_ident = *rec;
		vmcache__identity(hub->vms, rec->str[F_VM], &uuid, &vmid);
		with_ident.str[hub->uuid_field[rec->metric]] = uuid;
		with_ident.str[hub->vmid_field[rec->metric]] = vmid;
		rec = &with_ident;
	}
	for (int i = 0; i < hub->nby_metric[rec->metric]; i++) {
		const struct hub_slot *slot = &hub->consumers[hub->by_metric[rec->metric][i]];

		int e;

		if (rec->num_absent & slot->c.fields)
			continue;	/* e.g. a latency decomposition of exits whose latency is unknown */
		/* every consumer gets the record; the first error then stops the
		 * drain (record.h), which hub__drain reports */
		e = slot->c.sink(rec, slot->c.ctx);
		if (e && !err)
			err = e;
	}
	return err;
}

int hub__drain(struct hub *hub, int64_t before)
{
	int total = 0;

	/* A rescan every drain, while something runs: a VM that lives only a
	 * few seconds is then seen alive at least once and keeps its name after
	 * it exits (vmcache remembers gone VMs); lookups alone would only
	 * rescan after it is gone. */
	if (hub__running(hub))
		vmcache__refresh_if_older(hub->vms, 900);

	for (size_t i = 0; i < NCOLLECTORS; i++) {
		struct collector *col = &hub->collectors[i];
		int64_t f;
		int n;

		if (!hub->running[i])
			continue;
		n = col->ops->drain(col, before, &hub->env, dispatch, hub);
		if (n < 0) {
			log_warn("hub", "draining %s failed: %s", col->ops->name, strerror(-n));
			continue;
		}
		f = col->ops->final_until ? col->ops->final_until(col) : before;
		/* never back, also past a restart of the collector */
		if (f > hub->final_until[i])
			hub->final_until[i] = f;
		total += n;
	}
	if (before > hub->drained_before)
		hub->drained_before = before;
	return total;
}

int64_t hub__final_until(const struct hub *hub, enum metric_id metric)
{
	int ci = collector_of(metric);

	/* an idle collector counts nothing: every drained second is final */
	if (ci < 0 || !hub->running[ci])
		return hub->drained_before;
	return hub->final_until[ci];
}

int hub__running(const struct hub *hub)
{
	int n = 0;

	for (size_t i = 0; i < NCOLLECTORS; i++)
		n += hub->running[i];
	return n;
}

uint64_t hub__drops(const struct hub *hub, enum metric_id metric)
{
	int ci = collector_of(metric);
	struct collector *col;

	if (ci < 0 || !hub->running[ci])
		return 0;
	col = (struct collector *)&hub->collectors[ci];
	return col->ops->drops ? col->ops->drops(col) : 0;
}

const char *hub__source(const struct hub *hub, enum metric_id metric)
{
	int ci = collector_of(metric);

	if (ci < 0 || !hub->running[ci] || !hub->collectors[ci].source)
		return "";
	return hub->collectors[ci].source;
}

const char *hub__hostname(const struct hub *hub)
{
	return hub->hostname;
}

int hub__set_hostname(struct hub *hub, const char *name)
{
	if (!name || !*name || strlen(name) >= sizeof(hub->hostname))
		return -EINVAL;
	snprintf(hub->hostname, sizeof(hub->hostname), "%s", name);
	return 0;
}

struct vmcache *hub__vms(struct hub *hub)
{
	return hub->vms;
}
