/* Reading a recording (record/format.h, docs/recording.md): the records in
 * the order they were drained, a second at a time, with the VM table and the
 * collectors' sources in force at each second. `kvmscope report` reads it;
 * it is also what a replaying agent takes as its source of records.
 *
 * Records come back in the running kvmscope's terms: metric ids and field
 * positions of engine/metric.h, mapped by name from the recording's own
 * list, so a recording made by another version reads the same. A field that
 * was not recorded is NULL (discrete) or 0 and marked in num_absent
 * (numeric); record_reader__has_field() says which were.
 *
 * Not thread-safe: one owner.
 */
#ifndef KVMSCOPE_RECORD_READER_H
#define KVMSCOPE_RECORD_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/record.h"

struct record_reader;

/* Opens path and reads its header and first chunk. *out is the caller's
 * (record_reader__close). Errors, with a message naming the file in err:
 * -ENOENT/-EACCES..., -ENOTSUP (not a kvmscope recording; a newer format
 * version), -EBADMSG (the header or first chunk is corrupt). */
int record_reader__open(const char *path, struct record_reader **out, char *err, size_t errlen);
void record_reader__close(struct record_reader *r);

/* What the recording holds. */
const char *record_reader__hostname(const struct record_reader *r);
int record_reader__version(const struct record_reader *r);
int64_t record_reader__first(const struct record_reader *r);	/* first complete second */
/* The recording's META object (borrowed): format, version, hostname,
 * created, first, metrics: [{name, fields, numeric}]. */
const json_t *record_reader__meta(const struct record_reader *r);
bool record_reader__has_metric(const struct record_reader *r, enum metric_id m);
/* Field index f (metric.h's position) of metric m was recorded. */
bool record_reader__has_field(const struct record_reader *r, enum metric_id m, int f);

/* One second: every record of seconds [from, before), in file order. The
 * records and their strings are valid until the next call. */
struct record_second {
	int64_t from, before;
	const struct record *recs;
	size_t nrecs;
	/* events the kernel lost, per metric, since the recorder started */
	uint64_t drops[METRIC__COUNT];
};

/* 1: *sec filled; 0: the end (a torn tail, if any, was skipped: see
 * record_reader__torn); -EBADMSG: a corrupt chunk with data after it
 * (message in err: where, and the last second read), -ENOMEM. */
int record_reader__next_second(struct record_reader *r, struct record_second *sec,
			       char *err, size_t errlen);

/* The VM table (kvmscope vms -j) and the sources ({metric: source}) in
 * force at second t, among what has been read so far (tables recorded
 * later than the last second read are not known yet). Borrowed; NULL
 * before the first one. */
const json_t *record_reader__vms_at(const struct record_reader *r, int64_t t);
const json_t *record_reader__sources_at(const struct record_reader *r, int64_t t);

/* The i-th VM table read so far and the second it holds from; NULL past
 * the last one. Borrowed. */
const json_t *record_reader__vm_table(const struct record_reader *r, size_t i, int64_t *since);

/* After the end: 1 when the file ended in an incomplete chunk (the
 * recorder stopped mid-write), with its offset. */
int record_reader__torn(const struct record_reader *r, uint64_t *offset);

/* Where each chunk read so far starts and ends, and the mark it carries
 * (for tools and tests: which seconds a cut at a byte keeps). */
struct record_chunk_info {
	uint64_t offset, end;
	int64_t before;
};
size_t record_reader__chunks(const struct record_reader *r, const struct record_chunk_info **out);

#endif
