/* agent --replay FILE: the agent over a recording instead of the host.
 *
 * Nothing is collected: the file is read once at start (its seconds and VM
 * tables), and each instrumentation created is fed the whole recording at
 * creation through record/feed.h, the path `kvmscope report` takes, so its
 * values and heatmaps for the recorded seconds are those a live one fed the
 * same records gave. The agent's "now" is the second after the recording's
 * last: value/raw without start_time answers the last recorded second, a
 * heatmap ends there. An instrumentation created without retention-time
 * keeps the whole recording (at least the usual default, at most what the
 * engine allows). The file is only read; the caller refuses a state dir.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"
#include "common/log.h"
#include "engine/instr.h"
#include "record/feed.h"
#include "record/reader.h"

struct agent_replay {
	char *path;		/* owned */
	int64_t first, last;	/* recorded seconds, both included */
	json_t *vms;		/* owned: every VM any VM table held, its latest entry */
};

/* Adds the VMs of table to all (keyed by name and pid), the latest entry
 * replacing an earlier one. */
static void merge_vms(json_t *all, const json_t *table)
{
	size_t i;
	json_t *vm;

	json_array_foreach(table, i, vm) {
		char key[512];
		char *pid = json_dumps(json_object_get(vm, "pid"), JSON_ENCODE_ANY);

		snprintf(key, sizeof(key), "%s/%s", json_string_value(json_object_get(vm, "name")) ?: "",
			 pid ? pid : "");
		free(pid);
		json_object_set(all, key, vm);
	}
}

/* a->replay is owned by a (replay__close). */
int replay__open(struct agent *a, const char *path, char *err, size_t errlen)
{
	struct agent_replay *rp = calloc(1, sizeof(*rp));
	struct record_reader *r = NULL;
	struct record_second sec;
	json_t *byname = json_object(), *v;
	const json_t *table;
	const char *k;
	int64_t since;
	int rc;

	if (!rp || !byname || !(rp->path = strdup(path)) || !(rp->vms = json_array())) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto err_free;
	}
	rc = record_reader__open(path, &r, err, errlen);
	if (rc)
		goto err_free;
	rp->first = record_reader__first(r);
	rp->last = INT64_MIN;
	while ((rc = record_reader__next_second(r, &sec, err, errlen)) > 0)
		rp->last = sec.before - 1;
	if (rc < 0)
		goto err_free;
	if (rp->last < rp->first) {
		snprintf(err, errlen, "%s: the recording holds no complete second", path);
		rc = -ENODATA;
		goto err_free;
	}
	if (record_reader__torn(r, NULL))
		log_warn("agent", "%s ends in an incomplete chunk: replaying the seconds before it", path);
	for (size_t i = 0; (table = record_reader__vm_table(r, i, &since)); i++)
		merge_vms(byname, table);
	json_object_foreach(byname, k, v)
		json_array_append(rp->vms, v);
	a->replay = rp;
	/* Every recorded second is complete. CA's defaults end one slot
	 * before now (value/raw starts at now - duration - granularity), so
	 * now is two seconds past the last recorded one, as for a live agent
	 * shortly after it: the defaults then end at the recording's end. */
	a->drained_to = rp->last + 2;
	log_info("agent", "replaying %s: seconds %lld..%lld, %zu VMs", path, (long long)rp->first,
		 (long long)rp->last, json_array_size(rp->vms));
	rp = NULL;
	rc = 0;
err_free:
	record_reader__close(r);
	json_decref(byname);
	if (rp) {
		json_decref(rp->vms);
		free(rp->path);
		free(rp);
	}
	return rc;
}

void replay__close(struct agent *a)
{
	if (!a->replay)
		return;
	json_decref(a->replay->vms);
	free(a->replay->path);
	free(a->replay);
	a->replay = NULL;
}

static int spec_granularity(const json_t *spec)
{
	const json_t *g = json_object_get(spec, "granularity");
	long v = 1;

	if (json_is_integer(g))
		v = (long)json_integer_value(g);
	else if (json_is_string(g))
		v = strtol(json_string_value(g), NULL, 10);
	return v >= 1 && v <= INSTR_GRANULARITY_MAX ? (int)v : 1;
}

int replay__adjust_spec(struct agent *a, json_t *spec)
{
	int64_t g, range, want, cap;

	if (json_object_get(spec, "retention-time"))
		return 0;
	g = spec_granularity(spec);
	range = a->replay->last - a->replay->first + 1;
	want = (range + g - 1) / g * g;
	if (want < INSTR_RETENTION_DEFAULT)
		want = (INSTR_RETENTION_DEFAULT + g - 1) / g * g;
	cap = INSTR_SLOTS_MAX * g < INSTR_RETENTION_MAX ? INSTR_SLOTS_MAX * g : INSTR_RETENTION_MAX;
	cap = cap / g * g;
	if (want > cap)
		want = cap;
	return json_object_set_new(spec, "retention-time", json_integer(want)) ? -ENOMEM : 0;
}

static int64_t replay_clock(void *ctx)
{
	return ((const struct agent_replay *)ctx)->last;
}

int replay__feed(struct agent *a, struct agent_instr *ai, struct agent_error *e)
{
	struct agent_replay *rp = a->replay;
	struct record_reader *r = NULL;
	struct record_second sec;
	struct record_feed feed;
	int rc;

	e->kind = AGENT_EUNAVAIL;
	rc = record_reader__open(rp->path, &r, e->msg, sizeof(e->msg));
	if (rc)
		goto out;
	rc = record_feed__check(r, ai->in, rp->path, e->msg, sizeof(e->msg));
	if (rc) {
		/* a question the recording cannot answer */
		e->kind = AGENT_ESEMANTIC;
		rc = -EINVAL;
		goto out;
	}
	/* the seconds read at start only: the file may have grown since */
	record_feed__init(&feed, ai->in, rp->first, rp->last);
	while ((rc = record_reader__next_second(r, &sec, e->msg, sizeof(e->msg))) > 0 &&
	       sec.from <= rp->last)
		if ((rc = record_feed__second(&feed, &sec))) {
			e->kind = AGENT_EINTERNAL;
			snprintf(e->msg, sizeof(e->msg), "out of memory");
			goto out;
		}
	if (rc < 0)
		goto out;
	rc = 0;
	ai->from = rp->first;
	e->kind = AGENT_OK;
out:
	/* feed's clock lives on this stack */
	instr__set_clock(ai->in, replay_clock, rp);
	record_reader__close(r);
	return rc;
}

json_t *replay__vms(struct agent *a)
{
	return json_deep_copy(a->replay->vms);
}
