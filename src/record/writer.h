/* Writing a recording (record/format.h, docs/recording.md): the records a
 * drain dispatched, the VM table and the collectors' sources, one chunk per
 * second, appended to a file that is rotated past a size limit.
 *
 * Not thread-safe: the drain loop owns the writer.
 */
#ifndef KVMSCOPE_RECORD_WRITER_H
#define KVMSCOPE_RECORD_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/record.h"

struct record_writer;

/* What each file of a recording says about itself. */
struct record_writer_opts {
	const char *hostname;
	int64_t first;			/* the first complete second recorded */
	size_t nmetrics;
	const enum metric_id *metrics;	/* the metrics recorded, in this order */
	const uint64_t *fields;		/* per metric: FIELD_BIT()s recorded */
	uint64_t max_size;		/* rotate before a file grows past this; 0: never */
	unsigned int keep;		/* rotated files kept: path.1 .. path.keep */
	int level;			/* zstd level; 0: the library's default */
};

/* Creates (truncates) path and writes its header. *out is the caller's
 * (record_writer__close). -errno with a message in err. */
int record_writer__open(const char *path, const struct record_writer_opts *opts,
			struct record_writer **out, char *err, size_t errlen);
/* Appends a record to the current chunk (copied: rec may go after the
 * call). -EINVAL for a metric not recorded, -ENOMEM. */
int record_writer__record(struct record_writer *w, const struct record *rec);
/* The VM table (kvmscope vms -j, as compact JSON text) and the sources
 * ({metric: source}) as of second t; written only when they differ from the
 * previous ones. 0 or -ENOMEM. */
int record_writer__vms(struct record_writer *w, int64_t t, const char *json);
int record_writer__sources(struct record_writer *w, int64_t t, const char *json);
/* Ends the chunk: every record of a second < before is in it. drops[i]:
 * kernel-side losses of metric i (opts order) so far. Compresses and writes
 * it in one write(2), rotating first when the file would pass max_size.
 * 0 or -errno with a message in err. */
int record_writer__mark(struct record_writer *w, int64_t before, const uint64_t *drops,
			char *err, size_t errlen);

struct record_writer_stats {
	uint64_t records, chunks, raw_bytes, bytes;	/* bytes: written to disk, all files */
	unsigned int rotations;
};
void record_writer__stats(const struct record_writer *w, struct record_writer_stats *st);

/* Closes the file (what is not marked yet is dropped) and frees w. */
void record_writer__close(struct record_writer *w);

#endif
