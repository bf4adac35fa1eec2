/* The agent's Prometheus exporter: hub consumers, drops, expiry, rendering. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collectors/hub.h"
#include "collectors/vmcache.h"
#include "common/log.h"
#include "export/metrics.h"

#define SWEEP_EVERY_S 10
#define FAM_MAX 16

struct fam_ctx {
	struct metrics_export *m;
	size_t fam;
};

struct metrics_export {
	struct om_store *store;
	int consumers[FAM_MAX];
	struct fam_ctx ctx[FAM_MAX];
	uint64_t drops_base[METRIC__COUNT], drops_last[METRIC__COUNT];
	int64_t last_sweep;
	int keep_s;
	int ingest_err;			/* last ingest error, logged once per tick */
};

static int sink(const struct record *rec, void *ctx)
{
	struct fam_ctx *fc = ctx;
	int rc = om_store__ingest(fc->m->store, fc->fam, rec, rec->time);

	if (rc)
		fc->m->ingest_err = rc;
	return 0;	/* one family's trouble must not stop the others' drain */
}

/* On success the caller owns *out. */
int metrics_export__start(struct metrics_export **out, struct hub *hub,
			  const struct om_config *cfg, char *err, size_t errlen)
{
	struct metrics_export *m;
	int rc;

	if (om_nfamilies > FAM_MAX) {
		snprintf(err, errlen, "too many exported families");
		return -E2BIG;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < FAM_MAX; i++)
		m->consumers[i] = -1;
	m->keep_s = cfg && cfg->keep_s ? cfg->keep_s : OM_KEEP_S_DEFAULT;
	rc = om_store__new(&m->store, cfg);
	if (rc) {
		snprintf(err, errlen, "out of memory");
		goto err_free;
	}
	for (size_t i = 0; i < om_nfamilies; i++) {
		struct hub_consumer c = { om_families[i].metric, om_family__fields(&om_families[i]),
					  sink, &m->ctx[i] };

		m->ctx[i] = (struct fam_ctx){ m, i };
		rc = hub__add(hub, &c, err, errlen);
		if (rc < 0)
			goto err_remove;
		m->consumers[i] = rc;
	}
	*out = m;
	return 0;
err_remove:
	for (size_t i = 0; i < om_nfamilies; i++)
		if (m->consumers[i] >= 0)
			hub__remove(hub, m->consumers[i]);
	om_store__free(m->store);
err_free:
	free(m);
	return rc;
}

void metrics_export__stop(struct metrics_export *m, struct hub *hub)
{
	if (!m)
		return;
	for (size_t i = 0; i < om_nfamilies; i++)
		if (m->consumers[i] >= 0)
			hub__remove(hub, m->consumers[i]);
	om_store__free(m->store);
	free(m);
}

void metrics_export__tick(struct metrics_export *m, struct hub *hub, int64_t now)
{
	if (m->ingest_err) {
		log_warn("metrics", "series lost: %s", strerror(-m->ingest_err));
		m->ingest_err = 0;
	}
	/* a collector restarted by someone else's consumers counts from 0 again:
	 * keep the exported total monotonic */
	for (int i = 0; i < METRIC__COUNT; i++) {
		uint64_t cur = hub__drops(hub, (enum metric_id)i);

		if (cur < m->drops_last[i])
			m->drops_base[i] += m->drops_last[i];
		m->drops_last[i] = cur;
	}
	if (now - m->last_sweep >= SWEEP_EVERY_S) {
		const struct vm_list *vl = vmcache__list(hub__vms(hub));
		const char **names = vl->nvms ? calloc(vl->nvms, sizeof(*names)) : NULL;
		size_t n = 0, dropped;

		for (size_t i = 0; names && i < vl->nvms; i++)
			names[n++] = vl->vms[i].name;
		dropped = om_store__sweep(m->store, names, n, now);
		if (dropped)
			log_info("metrics", "%zu series of VMs gone for over %d s dropped", dropped,
				 m->keep_s);
		free(names);
		m->last_sweep = now;
	}
}

int metrics_export__render(struct metrics_export *m, enum om_format fmt, double started,
			   char **out, size_t *len)
{
	struct om_self self = { .scrape_started = started };

	for (int i = 0; i < METRIC__COUNT; i++)
		self.kernel_drops[i] = m->drops_base[i] + m->drops_last[i];
	return om__render(m->store, fmt, &self, out, len);
}

struct om_store *metrics_export__store(struct metrics_export *m)
{
	return m->store;
}
