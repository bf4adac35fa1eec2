/* Distributions of a time window, typed: what a heatmap, its details and its
 * average/percentile overlays are drawn from.
 *
 * A window is nslots consecutive time slots (start, start + granularity,
 * ...), each a run of cells (key, bucket, count) in one array:
 *   keys     the decomposition keys, a table of strings; undecomposed data
 *            has no keys and every cell has key 0
 *   buckets  a table of [lo, hi) ranges, hi as CA's raw values give it
 *            (metric__json_hi: the open-ended bucket is one order wide)
 *   cells    slot i's cells are cells[slot_off[i] .. slot_off[i + 1])
 * After dist_window__finish() the key table is sorted (strcmp, no
 * duplicates), the bucket table is sorted by (lo, hi), and each slot's cells
 * are sorted by (key, bucket) with one cell per pair.
 *
 * The engine fills a window from its slots (instr__window) with a few
 * array appends per cell and no allocation per cell, so that the copy can be
 * made under the owner's lock and everything else outside it. Values that
 * come as CA JSON (an aggregator's merged values, tests) go in through
 * dist_window__add_json(). */
#ifndef KVMSCOPE_ENGINE_WINDOW_H
#define KVMSCOPE_ENGINE_WINDOW_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct dist_cell {
	uint32_t key;		/* index into keys[]; 0 when undecomposed */
	uint32_t bucket;	/* index into buckets[] */
	double count;
};

struct dist_bucket {
	double lo, hi;
};

struct dist_window {
	int64_t start;			/* first slot's start, seconds since the epoch */
	int64_t granularity;		/* seconds per slot */
	size_t nslots;
	size_t *slot_off;		/* [nslots + 1] */
	size_t slot_cap;

	struct dist_cell *cells;
	size_t ncells, cell_cap;

	bool decomposed;		/* the values are maps of keys */
	char **keys;			/* [nkeys] pointers into names */
	size_t nkeys, key_cap;
	char *names;			/* the key strings, NUL-separated */
	size_t names_len, names_cap;

	struct dist_bucket *buckets;
	size_t nbuckets, bucket_cap;
	/* dist_window__add_json's lookups: key -> index, (lo, hi) -> index */
	json_t *key_map;
	uint32_t *bucket_hash;		/* index + 1, 0 = empty */
	size_t bucket_hash_cap;
};

/* An empty window of granularity g starting at start; nothing allocated
 * until data comes. */
void dist_window__init(struct dist_window *w, int64_t start, int64_t g);
/* Releases what w holds (w itself is the caller's) and leaves it empty. */
void dist_window__free(struct dist_window *w);

/* Makes room for ncells more cells, nkeys more keys of names_len bytes in
 * all, and nslots more slots, so that the appends below do not allocate.
 * 0 or -ENOMEM. */
int dist_window__reserve(struct dist_window *w, size_t nslots, size_t ncells, size_t nkeys,
			 size_t names_len);
/* Appends a key (copied; len bytes, not NUL-terminated) and returns its
 * index, or -ENOMEM. Bytes that are not valid UTF-8 become '?': keys end up
 * in JSON, which cannot carry them. */
long dist_window__add_key(struct dist_window *w, const char *s, size_t len);
/* Sets the bucket table to n buckets (copied). 0 or -ENOMEM. */
int dist_window__set_buckets(struct dist_window *w, const struct dist_bucket *b, size_t n);
/* Opens the next slot: cells appended from now on belong to it. 0 or
 * -ENOMEM. */
int dist_window__begin_slot(struct dist_window *w);
/* Doubles the cell array. 0 or -ENOMEM. */
int dist_window__grow_cells(struct dist_window *w);
/* Appends a cell to the open slot (inline: the engine calls it per cell
 * under its lock). 0 or -ENOMEM. */
static inline int dist_window__add_cell(struct dist_window *w, uint32_t key, uint32_t bucket,
					double count)
{
	if (w->ncells == w->cell_cap && dist_window__grow_cells(w))
		return -ENOMEM;
	w->cells[w->ncells].key = key;
	w->cells[w->ncells].bucket = bucket;
	w->cells[w->ncells].count = count;
	w->ncells++;
	w->slot_off[w->nslots] = w->ncells;
	return 0;
}

/* Appends one slot given as a CA raw value: JSON null, [] or {} for no
 * data, [[[lo, hi], count], ...] or {"key": [[[lo, hi], count], ...], ...}.
 * -EINVAL with the reason in err for anything else (a number, a bad bucket,
 * maps mixed with plain distributions), -ENOMEM. */
int dist_window__add_json(struct dist_window *w, const json_t *value, char *err,
			  size_t errlen);

/* Sorts the tables and the cells as described above (outside any lock: it
 * is the part of the copy that is not O(cells)). 0 or -ENOMEM. */
int dist_window__finish(struct dist_window *w);

/* The start time of slot i. */
static inline int64_t dist_window__slot_start(const struct dist_window *w, size_t i)
{
	return w->start + (int64_t)i * w->granularity;
}

#endif
