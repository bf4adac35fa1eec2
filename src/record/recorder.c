#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "collectors/vmcache.h"
#include "discovery/discovery.h"
#include "engine/metric.h"
#include "record/recorder.h"

struct recorder {
	struct hub *hub;
	struct recorder_opts opts;
	enum metric_id metrics[METRIC__COUNT];
	uint64_t fields[METRIC__COUNT];
	size_t nmetrics;
	int consumers[2 * METRIC__COUNT];
	size_t nconsumers;
	struct record_writer *w;
	int64_t from;		/* records before this second are the partial first one */
	int err;		/* the first error of a sink, reported at the end of the second */
};

static int write_record(const struct record *rec, void *ctx)
{
	struct recorder *r = ctx;
	int rc;

	if (!r->w || rec->time < r->from)
		return 0;
	rc = record_writer__record(r->w, rec);
	if (rc && !r->err)
		r->err = rc;
	return 0;
}

/* Widens the kernel-side key to the numeric fields; records nothing. */
static int ignore_record(const struct record *rec, void *ctx)
{
	(void)rec;
	(void)ctx;
	return 0;
}

/* Two consumers per metric: the hub does not hand a consumer a record
 * lacking a numeric field it asked for (an exit whose latency is not
 * measurable), yet the recording needs those records too. One asks for
 * every field, which widens the kernel-side key, and drops what it gets;
 * the other asks for the discrete fields only and records everything. */
static int add_metric(struct recorder *r, enum metric_id m, uint64_t fields, char *err, size_t errlen)
{
	const struct metric_desc *md = metric__get(m);
	uint64_t numeric = 0;
	int widened = -1, id = 0;

	for (unsigned int f = 0; f < md->nfields; f++)
		if (md->fields[f]->type == FIELD_NUMERIC)
			numeric |= FIELD_BIT(f);
	struct hub_consumer all = { m, fields, ignore_record, NULL };
	struct hub_consumer disc = { m, fields & ~numeric, write_record, r };

	if (fields & numeric) {
		id = widened = hub__add(r->hub, &all, err, errlen);
		if (id >= 0)
			r->consumers[r->nconsumers++] = id;
	}
	if (id >= 0 && (id = hub__add(r->hub, &disc, err, errlen)) >= 0) {
		r->consumers[r->nconsumers++] = id;
		return 0;
	}
	if (widened >= 0 && hub__remove(r->hub, widened) == 0)
		r->nconsumers--;
	return id;
}

/* *out is the caller's; the hub is borrowed. */
int recorder__new(struct hub *hub, const struct recorder_opts *o, struct recorder **out,
		  char *err, size_t errlen)
{
	struct recorder *r = calloc(1, sizeof(*r));
	char why[512];
	int rc = 0;

	*out = NULL;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r->hub = hub;
	r->opts = *o;
	r->from = INT64_MAX;
	if (o->nmetrics > METRIC__COUNT) {
		rc = -EINVAL;
		snprintf(err, errlen, "too many metrics");
		goto fail;
	}
	for (size_t i = 0; i < o->nmetrics; i++) {
		const struct metric_desc *md = metric__get(o->metrics[i]);

		rc = add_metric(r, o->metrics[i], o->fields[i], why, sizeof(why));
		if (rc < 0) {
			if (!o->skip_unavailable) {
				snprintf(err, errlen, "cannot record %s: %s", md->name, why);
				goto fail;
			}
			if (o->warn_fn) {
				char msg[700];

				snprintf(msg, sizeof(msg), "not recording %s: %s", md->name, why);
				o->warn_fn(msg);
			}
			continue;
		}
		r->metrics[r->nmetrics] = o->metrics[i];
		r->fields[r->nmetrics++] = o->fields[i];
	}
	if (!r->nmetrics) {
		rc = -ENOENT;
		snprintf(err, errlen, "no collector could start: nothing to record");
		goto fail;
	}
	*out = r;
	return 0;
fail:
	recorder__free(r);
	return rc;
}

size_t recorder__metrics(const struct recorder *r, const enum metric_id **metrics)
{
	*metrics = r->metrics;
	return r->nmetrics;
}

/* The VM table and sources as of second t, when they changed. */
static int write_tables(struct recorder *r, int64_t t)
{
	json_t *vms = discovery__to_json(vmcache__list(hub__vms(r->hub))), *src = json_object();
	char *vtext = NULL, *stext = NULL;
	int rc = -ENOMEM;

	if (!vms || !src)
		goto out;
	for (size_t i = 0; i < r->nmetrics; i++)
		json_object_set_new(src, metric__get(r->metrics[i])->name,
				    json_string(hub__source(r->hub, r->metrics[i])));
	vtext = json_dumps(vms, JSON_COMPACT | JSON_SORT_KEYS);
	stext = json_dumps(src, JSON_COMPACT | JSON_SORT_KEYS);
	if (!vtext || !stext)
		goto out;
	rc = record_writer__vms(r->w, t, vtext);
	if (!rc)
		rc = record_writer__sources(r->w, t, stext);
out:
	free(vtext);
	free(stext);
	json_decref(vms);
	json_decref(src);
	return rc;
}

int recorder__begin(struct recorder *r, const char *path, int64_t first, char *err, size_t errlen)
{
	struct record_writer_opts wo = {
		.hostname = hub__hostname(r->hub), .first = first, .nmetrics = r->nmetrics,
		.metrics = r->metrics, .fields = r->fields, .max_size = r->opts.max_size,
		.keep = r->opts.keep,
	};
	int rc = record_writer__open(path, &wo, &r->w, err, errlen);

	if (rc)
		return rc;
	r->from = first;
	rc = write_tables(r, first);
	if (rc)
		snprintf(err, errlen, "out of memory");
	return rc;
}

int recorder__end_second(struct recorder *r, int64_t t, char *err, size_t errlen)
{
	uint64_t drops[METRIC__COUNT];
	int rc = r->err;

	if (rc) {
		snprintf(err, errlen, "%s: the records of second %lld are lost", strerror(-rc),
			 (long long)t);
		return rc;
	}
	/* the tables seen at the drain of second t hold for t: its records
	 * name the VMs that lived in it */
	rc = write_tables(r, t);
	if (rc) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	for (size_t i = 0; i < r->nmetrics; i++)
		drops[i] = hub__drops(r->hub, r->metrics[i]);
	return record_writer__mark(r->w, t + 1, drops, err, errlen);
}

void recorder__stats(const struct recorder *r, struct record_writer_stats *st)
{
	if (r->w)
		record_writer__stats(r->w, st);
	else
		memset(st, 0, sizeof(*st));
}

void recorder__free(struct recorder *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nconsumers; i++)
		hub__remove(r->hub, r->consumers[i]);
	record_writer__close(r->w);
	free(r);
}
