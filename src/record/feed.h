/* Recorded records into an instrumentation, as the hub gives live ones.
 *
 * `kvmscope report` and a replaying agent (agent --replay) feed a
 * recording's seconds through here, so that both skip what the hub skips
 * live (a record lacking a numeric field the instrumentation uses) and the
 * instrumentation's clock follows the recording rather than today's date
 * (a record far from "now" would otherwise be dropped as future).
 */
#ifndef KVMSCOPE_RECORD_FEED_H
#define KVMSCOPE_RECORD_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "engine/instr.h"
#include "record/reader.h"

struct record_feed {
	struct instr *in;	/* borrowed */
	int64_t from, to;	/* record times kept: from..to, both included */
	uint64_t needed;	/* in's fields */
	int64_t clock;		/* the newest second fed: in's clock reads it */
};

/* Points in's clock at f->clock: f must outlive in's ingesting, or the
 * caller sets another clock once done. */
void record_feed__init(struct record_feed *f, struct instr *in, int64_t from, int64_t to);
/* Ingests sec's records of in's metric within from..to. 0 or -ENOMEM. */
int record_feed__second(struct record_feed *f, const struct record_second *sec);
/* Whether r recorded in's metric and every field in uses: 0, -ENOENT (no
 * such metric in the file) or -EDOM (a field missing), with a message
 * naming path in err. */
int record_feed__check(const struct record_reader *r, const struct instr *in, const char *path,
		       char *err, size_t errlen);

#endif
