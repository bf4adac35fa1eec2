/* Instrumentations: a metric, a predicate, a decomposition, and the values
 * they produce, kept per time slot in a fixed-size ring.
 *
 * Configuration is CA JSON (POST /ca/instrumentations):
 *   module + stat, or metric ("vm.exits")
 *   predicate       object or JSON string (see predicate.h); default {}
 *   decomposition   array of field names or "a,b" string; default none.
 *                   At most one numeric field. Beyond CA, several discrete
 *                   fields are allowed: their values are joined with "," in
 *                   the order given into one key ("web1,3"). A discrete value
 *                   the collector could not resolve shows as "unknown".
 *   granularity     seconds per slot, 1..INSTR_GRANULARITY_MAX, default 1
 *   retention-time  seconds kept, a multiple of granularity, at most
 *                   INSTR_RETENTION_MAX and INSTR_SLOTS_MAX slots; default
 *                   600 rounded up to a multiple of granularity
 *   idle-max        seconds unread before the owner may delete it,
 *                   0..INSTR_IDLE_MAX_MAX (0 = never), default 3600
 *   persist-data    bool, default false
 * Integers may also be given as decimal strings and persist-data as
 * "true"/"false" (CA form parameters). The read-only properties that
 * instr__to_json() writes (id, uri, uris, crtime, value-*) are accepted and
 * ignored so that a GET result can be sent back; anything else is an error.
 *
 * Not thread-safe: the owner serializes calls on one instrumentation.
 */
#ifndef KVMSCOPE_ENGINE_INSTR_H
#define KVMSCOPE_ENGINE_INSTR_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "engine/metric.h"
#include "engine/predicate.h"
#include "engine/record.h"
#include "engine/window.h"

#define INSTR_GRANULARITY_MAX	3600
#define INSTR_RETENTION_DEFAULT	600
#define INSTR_RETENTION_MAX	(7 * 86400)
#define INSTR_SLOTS_MAX		86400		/* one day at 1 s */
#define INSTR_IDLE_MAX_DEFAULT	3600
#define INSTR_IDLE_MAX_MAX	(7 * 86400)	/* CA's maximum, a week */
#define INSTR_RETENTION_MIN	10		/* CA's minimum */
#define INSTR_DECOMP_MAX	8
/* distinct decomposition keys held at once (a cell packs the key's id in
 * 24 bits); a record with a key beyond them is refused as if out of memory */
#define INSTR_KEYS_MAX		((1U << 24) - 1)
/* records stamped further than this past the instrumentation's clock are
 * dropped: one bogus timestamp must not roll the whole ring away */
#define INSTR_FUTURE_MAX	60
#define INSTR_RAW_NDATAPOINTS_MAX 3600

enum instr_arity {
	INSTR_SCALAR,			/* "scalar" */
	INSTR_DISCRETE,			/* "discrete-decomposition" */
	INSTR_NUMERIC,			/* "numeric-decomposition" */
	INSTR_DISCRETE_NUMERIC,		/* "numeric-decomposition" with keys */
};

struct instr_stats {
	uint64_t records;		/* records of this metric seen */
	uint64_t filtered;		/* rejected by the predicate */
	uint64_t dropped_old;		/* time before the ring's window */
	uint64_t dropped_future;	/* time > clock + INSTR_FUTURE_MAX */
	uint64_t keys;			/* distinct decomposition keys held */
	uint64_t bytes;			/* memory held for values */
};

struct instr;

/* Validates spec (borrowed) and builds an instrumentation owned by the
 * caller (instr__free). On bad input a message naming the offending property
 * in err and -EINVAL (malformed: wrong types or shapes) or -EDOM (well-formed
 * but naming a metric or field that does not exist, or asking a field for
 * what its type cannot give); -ENOMEM. */
int instr__new(const json_t *spec, struct instr **out, char *err, size_t errlen);
void instr__free(struct instr *in);

/* The owner names it: id ("1") and its URI ("/ca/instrumentations/1"; may be
 * NULL). Both strings are copied. */
int instr__set_id(struct instr *in, const char *id, const char *uri);
const char *instr__id(const struct instr *in);

/* Where "now" comes from (default: wall clock). Replays and tests set their
 * own so that records far from today's date are not dropped as future. */
void instr__set_clock(struct instr *in, int64_t (*now)(void *ctx), void *ctx);

const struct metric_desc *instr__metric(const struct instr *in);
enum instr_arity instr__arity(const struct instr *in);
int instr__granularity(const struct instr *in);
int instr__retention(const struct instr *in);
/* When it was created, in ms since the epoch. */
int64_t instr__crtime_ms(const struct instr *in);
int instr__idle_max(const struct instr *in);
bool instr__persist(const struct instr *in);
/* The numeric decomposition field, or NULL. */
const struct field_desc *instr__numeric_field(const struct instr *in);

/* The CA instrumentation object. New reference owned by the caller. */
json_t *instr__to_json(const struct instr *in);

/* Bit i set for each field index the predicate or decomposition uses. */
uint64_t instr__fields_needed(const struct instr *in);

/* Adds rec->value to the slot of rec->time when the predicate passes.
 * 0 (also for filtered and dropped records: see instr__stats), -EINVAL for a
 * record of another metric, -ENOMEM. Allocates only for a key or cell not
 * yet in the slot. */
int instr__ingest(struct instr *in, const struct record *rec);

/* Raw value of the slot starting at slot_start (aligned down to the
 * granularity): 573, {"k": n}, [[[lo,hi],n],...] sorted by lo, or
 * {"k": [[[lo,hi],n],...]}. A slot without data (or outside the ring) gives
 * 0, {} or [] as fits the arity. New reference owned by the caller. */
json_t *instr__value(const struct instr *in, int64_t slot_start);

/* A number no other instrumentation of this process has had. */
uint64_t instr__uid(const struct instr *in);
/* The version of the slot starting at slot_start (aligned down): it changes
 * whenever the slot's data does (a record added, the slot recycled or
 * restored), so that a reader who kept a copy of the slot knows whether the
 * copy still holds. 0 for a slot outside the ring (no data). */
uint64_t instr__slot_version(const struct instr *in, int64_t slot_start);

/* Copies the nslots slots from start (aligned down to the granularity) into
 * w (initialised here; the caller's, released with dist_window__free) in
 * O(cells held) with a few allocations for the whole window, none per cell:
 * the copy a heatmap is drawn from, made under the owner's lock. Slots
 * without data (or outside the ring) are empty. Cells come in the engine's
 * order: call dist_window__finish() on w (outside the lock) before use.
 * Numeric arities only: -EINVAL for scalar and discrete ones; -ENOMEM. */
int instr__window(const struct instr *in, int64_t start, size_t nslots, struct dist_window *w);
/* The same, appending to w (whose slots must end where start begins) the
 * slots from start on, at most nslots of them and, when max_cells is not 0,
 * no more than max_cells cells unless the first slot alone has more: a
 * caller copying a long window lets go of its lock between pieces of a
 * bounded cost. Returns the slots appended, -EINVAL, -ENOMEM. */
long instr__window_append(const struct instr *in, int64_t start, size_t nslots,
			  size_t max_cells, struct dist_window *w);

/* CA GET .../value/raw. start_time < 0: the last complete slot before now
 * (with ndatapoints > 1, the last ndatapoints ending there); duration <= 0:
 * the granularity (rounded up to a multiple of it); ndatapoints <= 0: 1,
 * capped at INSTR_RAW_NDATAPOINTS_MAX. One object when ndatapoints <= 1,
 * else an array of them:
 *   {"value", "start_time", "duration", "transformations": {},
 *    "nsources": 1, "minreporting": 1 or 0}
 * minreporting is 0 for a point reaching before the instrumentation was
 * created, before the oldest retained slot or past now.
 * New reference owned by the caller; NULL when out of memory. */
json_t *instr__value_raw(const struct instr *in, int64_t start_time, int64_t duration,
			 int ndatapoints, int64_t now);

void instr__stats(const struct instr *in, struct instr_stats *st);

/* Retained slots, for persistence over restarts:
 *   {"metric", "decomposition", "granularity", "slots": [{"start_time", "value"}, ...]}
 * New reference owned by the caller. */
json_t *instr__data_to_json(const struct instr *in);
/* The same, written to f a few slots at a time, so that a caller that
 * shares the instrumentation with other threads can let go of its lock
 * between steps (the agent saves millions of cells this way). Slots the ring
 * has dropped meanwhile are skipped; slots added meanwhile are written. */
struct instr_dump {
	int64_t next;		/* start of the next slot to look at */
	uint64_t written;	/* slots written so far */
};
/* Writes the head of the object. 0, -ENOMEM or -EIO. */
int instr__dump_begin(const struct instr *in, struct instr_dump *d, FILE *f);
/* Looks at up to max slots from d->next on and writes those with data,
 * stopping early once INSTR_DUMP_CELLS cells are written (so that one call
 * costs about a millisecond whatever the slots hold).
 * 1: more remain; 0: done (the object is closed); -ENOMEM or -EIO. */
#define INSTR_DUMP_CELLS 4096
int instr__dump_step(const struct instr *in, struct instr_dump *d, FILE *f, unsigned int max);
/* Replaces the retained data with `data` (borrowed). -EINVAL when it was
 * saved by an instrumentation of another metric, decomposition or
 * granularity, or is malformed (the data held before is then kept). */
int instr__data_from_json(struct instr *in, const json_t *data);

#endif
