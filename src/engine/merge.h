/* Merging CA raw values: the sum of two values of the same instrumentation
 * (two hosts, or two time slots). Shapes (DESIGN §2):
 *   scalar                 573
 *   discrete               {"web1": 120, "db2": 7}
 *   numeric                [[[lo, hi], count], ...]
 *   discrete + numeric     {"web1": [[[lo, hi], count], ...], ...}
 * Scalars add, maps are unioned with values merged per key, distributions
 * add bucket-wise (buckets matched by [lo, hi]). Counts are JSON integers. The result's distributions
 * are sorted by lo with equal buckets combined, so merging is associative and
 * commutative on these normalized values, and the empty value of an arity
 * (0, {}, []) is the identity.
 */
#ifndef KVMSCOPE_ENGINE_MERGE_H
#define KVMSCOPE_ENGINE_MERGE_H

#include <jansson.h>

/* Merges src into dst in place (src is only borrowed). Returns 0, -EINVAL
 * when the shapes differ or either value is malformed (dst is then left
 * unchanged), or -ENOMEM (dst may be partly merged). */
int value__merge(json_t *dst, const json_t *src);

/* 0 when v is a well-formed raw value of any shape, else -EINVAL. */
int value__check(const json_t *v);

/* Adds delta to the upper bound of every bucket of v's distributions, in
 * place: -1 writes kvmscope's half-open [lo, hi) as CA's inclusive
 * [lo, hi - 1] (every numeric field is an integer, so this is exact), +1
 * reads CA's form back. Other shapes are left alone. 0 or -EINVAL for a
 * malformed value (left unchanged). */
int value__shift_hi(json_t *v, int delta);

#endif
