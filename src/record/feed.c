#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "record/feed.h"

static int64_t feed_clock(void *ctx)
{
	return *(const int64_t *)ctx;
}

void record_feed__init(struct record_feed *f, struct instr *in, int64_t from, int64_t to)
{
	f->in = in;
	f->from = from;
	f->to = to;
	f->needed = instr__fields_needed(in);
	f->clock = from;
	instr__set_clock(in, feed_clock, &f->clock);
}

int record_feed__second(struct record_feed *f, const struct record_second *sec)
{
	enum metric_id m = instr__metric(f->in)->id;

	f->clock = sec->before - 1;
	for (size_t i = 0; i < sec->nrecs; i++) {
		const struct record *rec = &sec->recs[i];

		if (rec->metric != m || rec->time < f->from || rec->time > f->to)
			continue;
		/* as the hub does live: no record lacking a numeric field in use */
		if (rec->num_absent & f->needed)
			continue;
		if (instr__ingest(f->in, rec))
			return -ENOMEM;
	}
	return 0;
}

int record_feed__check(const struct record_reader *r, const struct instr *in, const char *path,
		       char *err, size_t errlen)
{
	const struct metric_desc *md = instr__metric(in);
	uint64_t needed = instr__fields_needed(in);
	char have[512];
	size_t off = 0;

	if (!record_reader__has_metric(r, md->id)) {
		char *names = json_dumps(json_object_get(record_reader__meta(r), "metrics"), JSON_COMPACT);

		snprintf(err, errlen, "%s has no %s (it holds: %s)", path, md->name, names ? names : "?");
		free(names);
		return -ENOENT;
	}
	have[0] = '\0';
	for (unsigned int f = 0; f < md->nfields && off < sizeof(have); f++)
		if (record_reader__has_field(r, md->id, (int)f))
			off += (size_t)snprintf(have + off, sizeof(have) - off, "%s%s", off ? ", " : "",
						md->fields[f]->name);
	for (unsigned int f = 0; f < md->nfields; f++)
		if ((needed & FIELD_BIT(f)) && !record_reader__has_field(r, md->id, (int)f)) {
			snprintf(err, errlen, "%s recorded %s without its field '%s' (recorded: %s)", path,
				 md->name, md->fields[f]->name, have);
			return -EDOM;
		}
	return 0;
}
