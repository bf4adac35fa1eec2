/* CA predicates: filters on a metric's fields.
 *
 *   {}                          true
 *   {"eq": [field, value]}      also "ne"; any field
 *   {"lt": [field, number]}     also "le", "gt", "ge"; numeric fields only
 *   {"and": [p, ...]}           non-empty array of predicates
 *   {"or":  [p, ...]}
 *
 * Discrete fields compare as strings; a JSON integer given for a discrete
 * field (vcpu: 0) is compared as its decimal string. A discrete field the
 * collector could not resolve (NULL in the record) equals nothing. Numeric
 * fields compare the record's value (already the bucket lower bound when the
 * kernel bucketed it). The predicate may also be given as a JSON string
 * holding the object, as CA form parameters send it; "" means {}.
 */
#ifndef KVMSCOPE_ENGINE_PREDICATE_H
#define KVMSCOPE_ENGINE_PREDICATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "engine/metric.h"
#include "engine/record.h"

#define PREDICATE_MAX_DEPTH 16		/* nesting of and/or */
#define PREDICATE_MAX_NODES 1024	/* leaves + and/or nodes */

struct predicate;

/* Parses and validates `j` for metric m. On success *out is a new predicate
 * owned by the caller (free with predicate__free). On bad input returns
 * -EINVAL with a message naming the offending part in err, or -EDOM when
 * the predicate is well-formed but names a field the metric lacks or asks a
 * field for what its type cannot give; -ENOMEM when out of memory. */
int predicate__parse(const json_t *j, const struct metric_desc *m, struct predicate **out,
		     char *err, size_t errlen);

bool predicate__eval(const struct predicate *p, const struct record *rec);

/* Bit i set when field index i of the metric is referenced. */
uint64_t predicate__fields_used(const struct predicate *p);

/* True for {} (no filtering). */
bool predicate__is_true(const struct predicate *p);

/* The predicate as a JSON object (normalized: always an object, never the
 * string form). New reference owned by the caller. */
json_t *predicate__to_json(const struct predicate *p);

void predicate__free(struct predicate *p);

#endif
