/* The metric catalogue (DESIGN §2): what can be instrumented, each metric's
 * fields in their fixed order (records index fields by that order), units,
 * and how numeric fields are bucketed.
 *
 * Everything here is static and read-only; pointers returned stay valid for
 * the life of the process.
 */
#ifndef KVMSCOPE_ENGINE_METRIC_H
#define KVMSCOPE_ENGINE_METRIC_H

#include <stdint.h>
#include <jansson.h>

#include "engine/record.h"
#include "engine/bucket.h"

enum field_type {
	FIELD_DISCRETE,		/* string; decomposes into a map */
	FIELD_NUMERIC,		/* u64; decomposes into a distribution */
};

enum bucket_kind {
	BUCKET_NONE,		/* discrete fields */
	BUCKET_LLQ,		/* log-linear, llq__bucket() */
	BUCKET_LINEAR,		/* [0, linear_max) in linear_width steps */
};

struct field_desc {
	const char *name;	/* "latency" */
	const char *label;	/* "latency" for people */
	const char *ca_type;	/* CA catalogue type: "string", "time", "size", "subsecond" */
	const char *unit;	/* "ns", "bytes", "ms", or "" for discrete fields */
	enum field_type type;
	enum bucket_kind bucketing;
	struct llq_params llq;		/* BUCKET_LLQ */
	unsigned int linear_width;	/* BUCKET_LINEAR */
	unsigned int linear_max;	/* BUCKET_LINEAR: exclusive upper bound of the range */
};

struct metric_desc {
	enum metric_id id;
	const char *module;	/* "vm" */
	const char *stat;	/* "exits" */
	const char *name;	/* "vm.exits" */
	const char *label;	/* "VM exits" */
	const char *unit;	/* "exits" */
	unsigned int nfields;
	const struct field_desc *fields[RECORD_MAX_FIELDS];
};

/* NULL when unknown. */
const struct metric_desc *metric__by_name(const char *name);
const struct metric_desc *metric__by_module_stat(const char *module, const char *stat);
const struct metric_desc *metric__get(enum metric_id id);

/* Index of `field` in m's field list, or -ENOENT. */
int metric__field_index(const struct metric_desc *m, const char *field);

/* Lower bound of the bucket holding v; *hi gets the exclusive upper bound
 * (UINT64_MAX for the overflow bucket of log-linear fields). Discrete fields
 * have no buckets: returns v, *hi = v + 1. */
uint64_t metric__bucket(const struct field_desc *f, uint64_t v, uint64_t *hi);

/* Number of buckets of a numeric field and the lower bound of bucket i
 * (ascending). Used for compact bucket indexes. */
unsigned int metric__nbuckets(const struct field_desc *f);
int metric__bucket_index(const struct field_desc *f, uint64_t v);
uint64_t metric__bucket_lo(const struct field_desc *f, unsigned int idx, uint64_t *hi);

/* The upper bound reported in JSON for a bucket: JSON integers are signed
 * 64-bit, so the open-ended overflow bucket [base^hi_mag, inf) is reported
 * as one order wide: [base^hi_mag, base^(hi_mag+1)). */
uint64_t metric__json_hi(const struct field_desc *f, uint64_t lo, uint64_t hi);

/* The CA `GET /ca` catalogue. hide_hostname drops the hostname field (a
 * single-host view where it carries no information). New reference owned by
 * the caller; NULL on allocation failure. */
json_t *metric__catalogue_json(int hide_hostname);

#endif
