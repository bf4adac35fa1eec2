/* The recorder: hub consumers that write every record of the metrics asked
 * for, with every field, into a recording (record/writer.h), with the VM
 * table and the sources. `kvmscope record` runs one; anything else that owns
 * a hub (a test driving a live instrumentation from the same drain) can too.
 *
 * Not thread-safe: the hub's owner drives it.
 */
#ifndef KVMSCOPE_RECORD_RECORDER_H
#define KVMSCOPE_RECORD_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include "collectors/hub.h"
#include "engine/record.h"
#include "record/writer.h"

struct recorder;

struct recorder_opts {
	size_t nmetrics;
	const enum metric_id *metrics;
	const uint64_t *fields;		/* per metric: FIELD_BIT()s to record */
	/* a metric whose collector cannot start: 1 = go on without it (a
	 * warning in warn_fn), 0 = fail */
	int skip_unavailable;
	void (*warn_fn)(const char *msg);
	uint64_t max_size;		/* record_writer_opts */
	unsigned int keep;
};

/* Registers the consumers on hub (borrowed: it must outlive the recorder).
 * *out is the caller's (recorder__free). -errno with a message. */
int recorder__new(struct hub *hub, const struct recorder_opts *o, struct recorder **out,
		  char *err, size_t errlen);
/* The metrics really recorded (collectors that started), in order. */
size_t recorder__metrics(const struct recorder *r, const enum metric_id **metrics);
/* Creates path and records from second `first` on. Call it after
 * hub__drain(hub, first) (the partial second before `first` is then gone,
 * not recorded). Writes the VM table and sources as of `first`. */
int recorder__begin(struct recorder *r, const char *path, int64_t first, char *err, size_t errlen);
/* After hub__drain(hub, t + 1): the tables if they changed, the mark of
 * second t, the chunk written. -errno with a message (the recording then
 * ends at t). */
int recorder__end_second(struct recorder *r, int64_t t, char *err, size_t errlen);
void recorder__stats(const struct recorder *r, struct record_writer_stats *st);
/* Removes its consumers from the hub and closes the file. */
void recorder__free(struct recorder *r);

#endif
