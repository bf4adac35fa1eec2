/* Merging CA raw values. Everything is validated before dst is touched so a
 * shape mismatch never leaves a half-merged value behind. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/merge.h"

enum shape { S_EMPTY, S_NUMBER, S_DIST, S_MAP_NUMBER, S_MAP_DIST, S_BAD };

struct bucket {
	json_int_t lo, hi, n;
};

static int bucket_parse(const json_t *e, struct bucket *b)
{
	const json_t *r;

	if (!json_is_array(e) || json_array_size(e) != 2)
		return -EINVAL;
	r = json_array_get(e, 0);
	if (!json_is_array(r) || json_array_size(r) != 2 ||
	    !json_is_integer(json_array_get(r, 0)) || !json_is_integer(json_array_get(r, 1)) ||
	    !json_is_integer(json_array_get(e, 1)))
		return -EINVAL;
	b->lo = json_integer_value(json_array_get(r, 0));
	b->hi = json_integer_value(json_array_get(r, 1));
	b->n = json_integer_value(json_array_get(e, 1));
	return b->lo <= b->hi ? 0 : -EINVAL;
}

static int dist_check(const json_t *a)
{
	struct bucket b;
	size_t i;

	for (i = 0; i < json_array_size(a); i++)
		if (bucket_parse(json_array_get(a, i), &b))
			return -EINVAL;
	return 0;
}

/* The shape of a value; an empty array or object is S_EMPTY only for the
 * arity check's purposes (it matches any shape of its own JSON type). */
static enum shape shape_of(const json_t *v)
{
	enum shape s = S_EMPTY, ks;
	const char *key;
	json_t *kv;

	if (json_is_integer(v))
		return S_NUMBER;
	if (json_is_array(v))
		return dist_check(v) ? S_BAD : S_DIST;
	if (!json_is_object(v))
		return S_BAD;
	json_object_foreach((json_t *)v, key, kv) {
		if (json_is_integer(kv))
			ks = S_MAP_NUMBER;
		else if (json_is_array(kv) && !dist_check(kv))
			ks = S_MAP_DIST;
		else
			return S_BAD;
		if (s != S_EMPTY && s != ks)
			return S_BAD;
		s = ks;
	}
	return s;	/* S_EMPTY for {} */
}

int value__check(const json_t *v)
{
	return shape_of(v) == S_BAD ? -EINVAL : 0;
}

/* Counts are integers; sums wrap like the u64 counters they come from. */
static int number_add(json_t *dst, const json_t *src)
{
	uint64_t sum = (uint64_t)json_integer_value(dst) + (uint64_t)json_integer_value(src);

	return json_integer_set(dst, (json_int_t)sum) ? -ENOMEM : 0;
}

static int bucket_cmp(const void *a, const void *b)
{
	const struct bucket *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

/* Both arrays already validated. Buckets with the same lo but a different
 * hi are kept apart (they come from different bucketing and summing them
 * would misplace counts); they still sort deterministically. */
static int dist_merge(json_t *dst, const json_t *src)
{
	size_t nd = json_array_size(dst), ns = src ? json_array_size(src) : 0, n = 0, i;
	struct bucket *b;
	int err = -ENOMEM;

	b = malloc((nd + ns + 1) * sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (i = 0; i < nd; i++)
		bucket_parse(json_array_get(dst, i), &b[n++]);
	for (i = 0; i < ns; i++)
		bucket_parse(json_array_get(src, i), &b[n++]);
	qsort(b, n, sizeof(*b), bucket_cmp);
	json_array_clear(dst);
	for (i = 0; i < n; i++) {
		uint64_t cnt = (uint64_t)b[i].n;

		while (i + 1 < n && !bucket_cmp(&b[i], &b[i + 1]))
			cnt += (uint64_t)b[++i].n;
		if (json_array_append_new(dst, json_pack("[[I,I],I]", b[i].lo, b[i].hi,
							 (json_int_t)cnt)))
			goto out;
	}
	err = 0;
out:
	free(b);
	return err;
}

int value__merge(json_t *dst, const json_t *src)
{
	enum shape sd = shape_of(dst), ss = shape_of(src);
	const char *key;
	json_t *kv, *dv, *copy;
	int err;

	if (sd == S_BAD || ss == S_BAD)
		return -EINVAL;
	if (json_typeof(dst) != json_typeof(src))
		return -EINVAL;
	if (sd != ss && sd != S_EMPTY && ss != S_EMPTY)
		return -EINVAL;
	switch (json_typeof(dst)) {
	case JSON_INTEGER:
		return number_add(dst, src);
	case JSON_ARRAY:
		return dist_merge(dst, src);
	case JSON_OBJECT:
		json_object_foreach((json_t *)src, key, kv) {
			dv = json_object_get(dst, key);
			if (dv) {
				err = json_is_array(dv) ? dist_merge(dv, kv) : number_add(dv, kv);
			} else {
				/* normalize the copied distribution like a merged one */
				copy = json_is_array(kv) ? json_array() : json_deep_copy(kv);
				err = copy ? 0 : -ENOMEM;
				if (!err && json_is_array(kv))
					err = dist_merge(copy, kv);
				if (!err && json_object_set_new(dst, key, copy))
					err = -ENOMEM;
				else if (err)
					json_decref(copy);
			}
			if (err)
				return err;
		}
		return 0;
	default:
		return -EINVAL;
	}
}

static void dist_shift_hi(json_t *a, int delta)
{
	size_t i;
	json_t *e;

	json_array_foreach(a, i, e) {
		json_t *range = json_array_get(e, 0);

		json_array_set_new(range, 1,
				   json_integer(json_integer_value(json_array_get(range, 1)) + delta));
	}
}

int value__shift_hi(json_t *v, int delta)
{
	enum shape s = shape_of(v);
	const char *key;
	json_t *kv;

	if (s == S_BAD)
		return -EINVAL;
	if (json_is_array(v))
		dist_shift_hi(v, delta);
	else if (json_is_object(v))
		json_object_foreach(v, key, kv)
			if (json_is_array(kv))
				dist_shift_hi(kv, delta);
	return 0;
}
