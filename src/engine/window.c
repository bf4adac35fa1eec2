/* Typed time windows: see window.h. Every array allocated here belongs to
 * the window and is released by dist_window__free(). */
#include "common/grow.h"
#include "common/errmsg.h"
#include "common/hash.h"
#include "common/utf8.h"
#include "engine/window.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dist_window__init(struct dist_window *w, int64_t start, int64_t g)
{
	memset(w, 0, sizeof(*w));
	w->start = start;
	w->granularity = g;
}

void dist_window__free(struct dist_window *w)
{
	free(w->slot_off);
	free(w->cells);
	free(w->keys);
	free(w->names);
	free(w->buckets);
	free(w->bucket_hash);
	json_decref(w->key_map);
	dist_window__init(w, w->start, w->granularity);
}

int dist_window__grow_cells(struct dist_window *w)
{
	return array__grow((void **)&w->cells, &w->cell_cap, w->ncells + 1, sizeof(*w->cells));
}

int dist_window__reserve(struct dist_window *w, size_t nslots, size_t ncells, size_t nkeys,
			 size_t names_len)
{
	char *old = w->names;
	size_t i;

	if (array__grow((void **)&w->slot_off, &w->slot_cap, w->nslots + nslots + 1, sizeof(size_t)) ||
	    array__grow((void **)&w->cells, &w->cell_cap, w->ncells + ncells, sizeof(*w->cells)) ||
	    array__grow((void **)&w->keys, &w->key_cap, w->nkeys + nkeys, sizeof(*w->keys)) ||
	    array__grow((void **)&w->names, &w->names_cap, w->names_len + names_len + nkeys,
		 sizeof(char)))
		return -ENOMEM;
	if (old != w->names)
		for (i = 0; i < w->nkeys; i++)
			w->keys[i] = w->names + (w->keys[i] - old);
	return 0;
}

long dist_window__add_key(struct dist_window *w, const char *s, size_t len)
{
	char *k;

	if (dist_window__reserve(w, 0, 0, 1, len))
		return -ENOMEM;
	k = w->names + w->names_len;
	memcpy(k, s, len);
	k[len] = 0;
	/* shown as raw values show it */
	utf8__sanitize(k, len);
	w->names_len += len + 1;
	w->keys[w->nkeys] = k;
	w->decomposed = true;
	return (long)w->nkeys++;
}

int dist_window__set_buckets(struct dist_window *w, const struct dist_bucket *b, size_t n)
{
	if (array__grow((void **)&w->buckets, &w->bucket_cap, n, sizeof(*b)))
		return -ENOMEM;
	if (n)
		memcpy(w->buckets, b, n * sizeof(*b));
	w->nbuckets = n;
	return 0;
}

int dist_window__begin_slot(struct dist_window *w)
{
	if (array__grow((void **)&w->slot_off, &w->slot_cap, w->nslots + 2, sizeof(size_t)))
		return -ENOMEM;
	if (!w->nslots)
		w->slot_off[0] = w->ncells;
	w->slot_off[++w->nslots] = w->ncells;
	return 0;
}

/* ---- CA JSON values ---------------------------------------------------- */

static uint64_t hash_bucket(double lo, double hi)
{
	uint64_t a, b;

	memcpy(&a, &lo, sizeof(a));
	memcpy(&b, &hi, sizeof(b));
	return hash__mix64(a ^ b * 0x9e3779b97f4a7c15ULL);
}

/* Index of bucket [lo, hi), added if new (the lookup table is the
 * window's); -ENOMEM. */
static long bucket_index(struct dist_window *w, double lo, double hi)
{
	size_t i, mask;
	uint32_t *h;

	if ((w->nbuckets + 1) * 2 > w->bucket_hash_cap) {
		size_t cap = w->bucket_hash_cap ? w->bucket_hash_cap * 2 : 64;

		h = calloc(cap, sizeof(*h));
		if (!h)
			return -ENOMEM;
		for (i = 0; i < w->nbuckets; i++) {
			size_t j = hash_bucket(w->buckets[i].lo, w->buckets[i].hi) & (cap - 1);

			while (h[j])
				j = (j + 1) & (cap - 1);
			h[j] = (uint32_t)i + 1;
		}
		free(w->bucket_hash);
		w->bucket_hash = h;
		w->bucket_hash_cap = cap;
	}
	mask = w->bucket_hash_cap - 1;
	for (i = hash_bucket(lo, hi) & mask; w->bucket_hash[i]; i = (i + 1) & mask) {
		const struct dist_bucket *b = &w->buckets[w->bucket_hash[i] - 1];

		if (b->lo == lo && b->hi == hi)
			return (long)w->bucket_hash[i] - 1;
	}
	if (array__grow((void **)&w->buckets, &w->bucket_cap, w->nbuckets + 1, sizeof(*w->buckets)))
		return -ENOMEM;
	w->buckets[w->nbuckets].lo = lo;
	w->buckets[w->nbuckets].hi = hi;
	w->bucket_hash[i] = (uint32_t)w->nbuckets + 1;
	return (long)w->nbuckets++;
}


#define WHERE_FMT "slot %zu%s%s%s"
#define WHERE(slot, key) (slot), (key) ? " key \"" : "", (key) ? (key) : "", (key) ? "\"" : ""

static int add_dist(struct dist_window *w, uint32_t key, const json_t *d, size_t slot,
		    const char *kname, char *err, size_t errlen)
{
	size_t i;

	if (!json_is_array(d))
		return errmsg__invalid(err, errlen,
			   WHERE_FMT ": value is not a numeric distribution [[[lo, hi], count], ...]",
			   WHERE(slot, kname));
	for (i = 0; i < json_array_size(d); i++) {
		const json_t *e = json_array_get(d, i), *range = json_array_get(e, 0),
			     *cnt = json_array_get(e, 1);
		double lo, hi, n;
		long b;

		if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_array(range) ||
		    json_array_size(range) != 2 || !json_is_number(json_array_get(range, 0)) ||
		    !json_is_number(json_array_get(range, 1)) || !json_is_number(cnt))
			goto bad_bucket;
		lo = json_number_value(json_array_get(range, 0));
		hi = json_number_value(json_array_get(range, 1));
		n = json_number_value(cnt);
		if (!isfinite(lo) || !isfinite(hi) || hi < lo || !(n >= 0))
			goto bad_bucket;
		if (n == 0)
			continue;
		b = bucket_index(w, lo, hi);
		if (b < 0 || dist_window__add_cell(w, key, (uint32_t)b, n))
			return -ENOMEM;
		continue;
bad_bucket:
		return errmsg__invalid(err, errlen,
			   WHERE_FMT ": bucket %zu is not [[lo, hi], count] with lo <= hi and count >= 0",
			   WHERE(slot, kname), i);
	}
	return 0;
}

int dist_window__add_json(struct dist_window *w, const json_t *v, char *err, size_t errlen)
{
	size_t slot = w->nslots;
	const char *k;
	json_t *d, *ix;
	long key;
	int rc;

	rc = dist_window__begin_slot(w);
	if (rc || !v || json_is_null(v) || (json_is_array(v) && !json_array_size(v)) ||
	    (json_is_object(v) && !json_object_size(v)))
		return rc;
	if (json_is_array(v)) {
		if (w->decomposed)
			return errmsg__invalid(err, errlen, "slot %zu: mixes a decomposed and an undecomposed distribution",
				   slot);
		w->slot_off[w->nslots] = w->ncells;
		rc = add_dist(w, 0, v, slot, NULL, err, errlen);
		w->slot_off[w->nslots] = w->ncells;
		return rc;
	}
	if (!json_is_object(v))
		return errmsg__invalid(err, errlen,
			   "slot %zu: value is a %s, not a numeric distribution (a heatmap needs a numeric decomposition)",
			   slot, json_is_number(v) ? "number" : "non-distribution");
	if (!w->decomposed && w->ncells)
		return errmsg__invalid(err, errlen, "slot %zu: mixes a decomposed and an undecomposed distribution",
			   slot);
	if (!w->key_map && !(w->key_map = json_object()))
		return -ENOMEM;
	w->decomposed = true;
	json_object_foreach((json_t *)v, k, d) {
		ix = json_object_get(w->key_map, k);
		if (ix) {
			key = (long)json_integer_value(ix);
		} else {
			key = dist_window__add_key(w, k, strlen(k));
			if (key < 0 || json_object_set_new(w->key_map, k, json_integer(key)))
				return -ENOMEM;
		}
		rc = add_dist(w, (uint32_t)key, d, slot, k, err, errlen);
		if (rc)
			return rc;
	}
	w->slot_off[w->nslots] = w->ncells;
	return 0;
}

/* ---- finishing: sorted tables and cells -------------------------------- */

/* qsort_r comparators: several request threads sort at once */
static int cmp_key_ix(const void *a, const void *b, void *ctx)
{
	const struct dist_window *w = ctx;

	return strcmp(w->keys[*(const uint32_t *)a], w->keys[*(const uint32_t *)b]);
}

static int cmp_bucket_ix(const void *a, const void *b, void *ctx)
{
	const struct dist_window *w = ctx;
	const struct dist_bucket *x = &w->buckets[*(const uint32_t *)a],
				 *y = &w->buckets[*(const uint32_t *)b];

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* Sorts n table entries through a permutation; remap[old] = new index, with
 * entries equal under cmp merged. Returns the new count. */
static size_t sort_table(struct dist_window *w, size_t n,
			 int (*cmp)(const void *, const void *, void *), uint32_t *perm,
			 uint32_t *remap)
{
	size_t i, m = 0;

	for (i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	qsort_r(perm, n, sizeof(*perm), cmp, w);
	for (i = 0; i < n; i++) {
		if (i && !cmp(&perm[i - 1], &perm[i], w)) {
			remap[perm[i]] = remap[perm[i - 1]];
			continue;
		}
		remap[perm[i]] = (uint32_t)m++;
	}
	return m;
}

static bool is_identity(const uint32_t *remap, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (remap[i] != i)
			return false;
	return true;
}

/* Counting sort of one slot's cells by bucket, then (stable) by key, and
 * merging of equal pairs; tmp has room for the slot; cnt for
 * max(nkeys, nbuckets) + 1 counters. Returns the cell count left. */
static size_t sort_slot(struct dist_window *w, struct dist_cell *c, size_t n,
			struct dist_cell *tmp, size_t *cnt)
{
	size_t i, m;
	bool sorted = true;

	for (i = 1; i < n && sorted; i++)
		sorted = c[i - 1].key < c[i].key ||
			 (c[i - 1].key == c[i].key && c[i - 1].bucket < c[i].bucket);
	if (!sorted) {
		/* counting over the range this slot uses (a few dozen buckets
		 * of the hundreds a field has) */
		uint32_t blo = UINT32_MAX, bhi = 0, klo = UINT32_MAX, khi = 0;

		for (i = 0; i < n; i++) {
			blo = c[i].bucket < blo ? c[i].bucket : blo;
			bhi = c[i].bucket > bhi ? c[i].bucket : bhi;
			klo = c[i].key < klo ? c[i].key : klo;
			khi = c[i].key > khi ? c[i].key : khi;
		}
		memset(cnt, 0, (bhi - blo + 2) * sizeof(*cnt));
		for (i = 0; i < n; i++)
			cnt[c[i].bucket - blo + 1]++;
		for (i = 1; i <= bhi - blo; i++)
			cnt[i] += cnt[i - 1];
		for (i = 0; i < n; i++)
			tmp[cnt[c[i].bucket - blo]++] = c[i];
		memset(cnt, 0, (khi - klo + 2) * sizeof(*cnt));
		for (i = 0; i < n; i++)
			cnt[tmp[i].key - klo + 1]++;
		for (i = 1; i <= khi - klo; i++)
			cnt[i] += cnt[i - 1];
		for (i = 0; i < n; i++)
			c[cnt[tmp[i].key - klo]++] = tmp[i];
	}
	for (i = 0, m = 0; i < n; i++) {
		if (m && c[m - 1].key == c[i].key && c[m - 1].bucket == c[i].bucket)
			c[m - 1].count += c[i].count;
		else
			c[m++] = c[i];
	}
	return m;
}

/* The scratch arrays are this function's and freed before it returns. */
int dist_window__finish(struct dist_window *w)
{
	size_t nt = w->nkeys > w->nbuckets ? w->nkeys : w->nbuckets, i, s, maxslot = 0, out;
	uint32_t *perm = NULL, *kmap = NULL, *bmap = NULL;
	struct dist_cell *tmp = NULL;
	struct dist_bucket *nb = NULL;
	size_t *cnt = NULL;
	char **nk = NULL;
	size_t newk, newb;
	int rc = -ENOMEM;

	perm = malloc((nt + 1) * sizeof(*perm));
	kmap = malloc((w->nkeys + 1) * sizeof(*kmap));
	bmap = malloc((w->nbuckets + 1) * sizeof(*bmap));
	cnt = malloc((nt + 2) * sizeof(*cnt));
	nk = malloc((w->nkeys + 1) * sizeof(*nk));
	nb = malloc((w->nbuckets + 1) * sizeof(*nb));
	if (!perm || !kmap || !bmap || !cnt || !nk || !nb)
		goto out;
	newk = sort_table(w, w->nkeys, cmp_key_ix, perm, kmap);
	for (i = 0; i < w->nkeys; i++)
		nk[kmap[i]] = w->keys[i];
	newb = sort_table(w, w->nbuckets, cmp_bucket_ix, perm, bmap);
	for (i = 0; i < w->nbuckets; i++)
		nb[bmap[i]] = w->buckets[i];
	if (!is_identity(kmap, w->nkeys) || !is_identity(bmap, w->nbuckets))
		for (i = 0; i < w->ncells; i++) {
			if (w->nkeys)
				w->cells[i].key = kmap[w->cells[i].key];
			w->cells[i].bucket = bmap[w->cells[i].bucket];
		}
	if (newk)
		memcpy(w->keys, nk, newk * sizeof(*nk));
	w->nkeys = newk;
	if (newb)
		memcpy(w->buckets, nb, newb * sizeof(*nb));
	w->nbuckets = newb;
	/* the (lo, hi) lookup pointed at the old order */
	free(w->bucket_hash);
	w->bucket_hash = NULL;
	w->bucket_hash_cap = 0;
	json_decref(w->key_map);
	w->key_map = NULL;

	for (s = 0; s < w->nslots; s++)
		if (w->slot_off[s + 1] - w->slot_off[s] > maxslot)
			maxslot = w->slot_off[s + 1] - w->slot_off[s];
	tmp = malloc((maxslot + 1) * sizeof(*tmp));
	if (!tmp)
		goto out;
	for (s = 0, out = 0; s < w->nslots; s++) {
		size_t from = w->slot_off[s], n = w->slot_off[s + 1] - from;

		if (out != from && n)
			memmove(w->cells + out, w->cells + from, n * sizeof(*w->cells));
		w->slot_off[s] = out;
		if (n)
			out += sort_slot(w, w->cells + out, n, tmp, cnt);
	}
	if (w->nslots)
		w->slot_off[w->nslots] = out;
	w->ncells = out;
	rc = 0;
out:
	free(perm);
	free(kmap);
	free(bmap);
	free(cnt);
	free(nk);
	free(nb);
	free(tmp);
	return rc;
}
