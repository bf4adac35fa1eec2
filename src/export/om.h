/* OpenMetrics / Prometheus export: cumulative series built from the same
 * per-second records the collectors hand the instrumentations, and their
 * text rendering.
 *
 * Prometheus counters must never go down, while the kernel side is drained
 * and reset every second: so the store keeps running totals in user space,
 * one series per (family, label values). Histograms map the engine's
 * log-linear buckets onto fixed Prometheus boundaries that are engine bucket
 * edges (a 1-2.5-5 series), so that every engine bucket lies entirely inside
 * one Prometheus bucket and nothing is interpolated.
 *
 * The number of series is bounded (what Prometheus stores: a counter is one
 * series, a histogram is its buckets + _count + _sum); records that would
 * need a new series beyond the bound are counted, not stored. Series of a VM
 * that has not been seen (no record, not in the VM list) for keep_s seconds
 * are dropped.
 *
 * Not thread-safe: the owner serializes ingest, sweep and render (the
 * agent's lock).
 */
#ifndef KVMSCOPE_EXPORT_OM_H
#define KVMSCOPE_EXPORT_OM_H

#include <stddef.h>
#include <stdint.h>

#include "engine/record.h"

#define OM_MAX_LABELS 5
#define OM_MAX_EDGES 24
#define OM_MAX_SERIES_DEFAULT 20000
#define OM_KEEP_S_DEFAULT 600

enum om_type { OM_COUNTER, OM_HISTOGRAM };

enum om_format {
	OM_OPENMETRICS,		/* application/openmetrics-text; version=1.0.0 */
	OM_TEXT_004,		/* text/plain; version=0.0.4 (promtool, older scrapers) */
};

/* One exported metric family, fed by one engine metric. */
struct om_family {
	const char *name;		/* OpenMetrics family name (no _total) */
	const char *help;
	const char *unit;		/* "" or the base unit the name ends in */
	enum om_type type;
	enum metric_id metric;
	int nlabels;
	int labels[OM_MAX_LABELS];	/* record field indexes, named as in the catalogue */
	int numeric;			/* histograms: the numeric field; else -1 */
	double divisor;			/* engine unit -> base unit (ns -> s: 1e9, exact in a
					 * double, so 1000 ns prints as 1e-06) */
	uint64_t edge_lo, edge_hi;	/* histograms: 1-2.5-5 boundaries in [lo, hi], engine units */
};

extern const struct om_family om_families[];
extern const size_t om_nfamilies;

/* Histogram boundaries of family f in engine units, ascending; returns how
 * many (at most OM_MAX_EDGES). */
size_t om_family__edges(const struct om_family *f, uint64_t *edges);
/* The hub fields a consumer of family f needs. */
uint64_t om_family__fields(const struct om_family *f);

struct om_config {
	uint64_t max_series;		/* 0: OM_MAX_SERIES_DEFAULT */
	int keep_s;			/* 0: OM_KEEP_S_DEFAULT */
};

/* Figures that live outside the store, rendered as self-metrics. */
struct om_self {
	uint64_t kernel_drops[METRIC__COUNT];	/* cumulative, never decreasing */
	double scrape_started;			/* CLOCK_MONOTONIC seconds */
};

struct om_store;

/* Caller owns *out (om_store__free). 0 or -ENOMEM. */
int om_store__new(struct om_store **out, const struct om_config *cfg);
void om_store__free(struct om_store *s);

/* Adds one drained record to family `fam`'s series. now is the unix second
 * (for expiry). 0, or -ENOMEM; a refused series is counted and returns 0. */
int om_store__ingest(struct om_store *s, size_t fam, const struct record *rec, int64_t now);

/* Marks the series of VMs named in live[] (n names) as seen at now, then
 * drops series whose VM was last seen more than keep_s seconds ago.
 * Returns series dropped. */
size_t om_store__sweep(struct om_store *s, const char *const *live, size_t n, int64_t now);

/* Series held now, in Prometheus' count (see above), and refused so far. */
uint64_t om_store__series(const struct om_store *s);
uint64_t om_store__refused(const struct om_store *s);

/* Renders every family and the self-metrics. On success *out is a
 * NUL-terminated buffer owned by the caller (free), *len its length.
 * 0 or -ENOMEM. */
int om__render(const struct om_store *s, enum om_format fmt, const struct om_self *self,
	       char **out, size_t *len);

/* Content-Type of each format. */
const char *om__content_type(enum om_format fmt);
/* The format an HTTP Accept header asks for: OpenMetrics unless the header
 * names text/plain and not application/openmetrics-text. NULL: OpenMetrics. */
enum om_format om__negotiate(const char *accept);

/* A growing text buffer; an allocation failure sets oom and later appends
 * do nothing, so that callers check once at the end. */
struct om_buf {
	char *p;
	size_t len, cap;
	int oom;
};
/* Appends v as a label value: backslash, double quote and newline escaped,
 * bytes that are not valid UTF-8 replaced by U+FFFD (Prometheus rejects a
 * whole scrape over one invalid byte, and VM names come from command lines). */
void om_buf__label_value(struct om_buf *b, const char *v);
void om_buf__printf(struct om_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Shortest decimal that reads back as the same double ("1e-06", "0.25"). */
void om__format_double(double v, char *buf, size_t len);

#endif
