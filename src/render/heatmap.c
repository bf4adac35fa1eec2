/* Heatmap rendering in the way of Cloud Analytics: see heatmap.h for the
 * model. The pipeline is: find the keys and decide which are drawn and in
 * which hue (layers); pick ymax; spread every source bucket over the linear
 * y-buckets it overlaps; normalise cell values (rank or linear); blend the
 * layers' colours by their share of each cell; scale cells to pixels. */
#include "render/heatmap.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bucket upper bounds at or above this are the open-ended overflow bucket
 * ([base^hi_mag, +inf)): it has no meaningful width, so it is treated as a
 * point at its lower bound. */
#define OVERFLOW_HI 9.0e18

static _Thread_local char last_error[256];

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *heatmap__last_error(void)
{
	return last_error[0] ? last_error : "no error";
}

int heatmap__default_hue(size_t i)
{
	return (int)((21 + 91 * (unsigned long long)i) % 360);
}

void heatmap_params__init(struct heatmap_params *p)
{
	memset(p, 0, sizeof(*p));
	p->width = 600;
	p->height = 300;
	p->nbuckets = 100;
	p->ymin = 0;
	p->ymax = 0;
	p->auto_ymax = 1;
	p->coloring = COLORING_RANK;
	p->weights = WEIGHTS_COUNT;
}

double heatmap__auto_ymax(double max)
{
	static const double mant[] = { 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 10 };
	double scale;
	size_t i;

	if (!(max > 0) || !isfinite(max))
		return 1;
	scale = pow(10, floor(log10(max)));
	/* log10 rounding can land one decade off near powers of ten */
	if (scale > max)
		scale /= 10;
	for (i = 0; i < sizeof(mant) / sizeof(mant[0]); i++) {
		double c = mant[i] * scale;

		/* tolerate representation error so 1000 stays 1000 */
		if (c >= max * (1 - 1e-12))
			return c;
	}
	return 10 * scale;
}

static int hue_of(const struct heatmap_params *p, size_t i)
{
	int h;

	if (p->hues && i < p->nhues) {
		h = p->hues[i] % 360;
		return h < 0 ? h + 360 : h;
	}
	return heatmap__default_hue(i);
}

/* ---- input validation -------------------------------------------------- */

struct src_bucket {
	double lo, hi, count;
};

/* Reads one [[lo, hi], count] entry. */
static int read_bucket(const json_t *e, size_t slot, const char *key, size_t i,
		       struct src_bucket *b)
{
	const json_t *range = json_array_get(e, 0), *cnt = json_array_get(e, 1);

	if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_array(range) ||
	    json_array_size(range) != 2 || !json_is_number(json_array_get(range, 0)) ||
	    !json_is_number(json_array_get(range, 1)) || !json_is_number(cnt))
		goto bad;
	b->lo = json_number_value(json_array_get(range, 0));
	b->hi = json_number_value(json_array_get(range, 1));
	b->count = json_number_value(cnt);
	if (!isfinite(b->lo) || !isfinite(b->hi) || b->hi < b->lo || !(b->count >= 0))
		goto bad;
	return 0;
bad:
	set_error("slot %zu%s%s%s: bucket %zu is not [[lo, hi], count] with lo <= hi and count >= 0",
		  slot, key ? " key \"" : "", key ? key : "", key ? "\"" : "", i);
	return -EINVAL;
}

static int check_dist(const json_t *d, size_t slot, const char *key)
{
	struct src_bucket b;
	size_t i;

	if (!json_is_array(d)) {
		set_error("slot %zu%s%s%s: value is not a numeric distribution [[[lo, hi], count], ...]",
			  slot, key ? " key \"" : "", key ? key : "", key ? "\"" : "");
		return -EINVAL;
	}
	for (i = 0; i < json_array_size(d); i++)
		if (read_bucket(json_array_get(d, i), slot, key, i, &b))
			return -EINVAL;
	return 0;
}

enum shape { SHAPE_EMPTY, SHAPE_DIST, SHAPE_MAP };

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The keys of an input and which of them are drawn. */
struct keyset {
	enum shape shape;
	size_t nall;
	char **all;		/* sorted, owned */
	int *drawn;		/* [nall] */
	int *layer;		/* [nall] layer index for drawn keys */
	size_t nlayers;
	int *layer_hue;		/* [nlayers] */
	int *layer_named;	/* [nlayers] index into all[] or -1 for "the rest" */
};

static void keyset__free(struct keyset *ks)
{
	size_t i;

	for (i = 0; i < ks->nall; i++)
		free(ks->all[i]);
	free(ks->all);
	free(ks->drawn);
	free(ks->layer);
	free(ks->layer_hue);
	free(ks->layer_named);
	memset(ks, 0, sizeof(*ks));
}

static int selected_index(const struct heatmap_params *p, const char *key)
{
	size_t i;

	for (i = 0; i < p->nselected; i++)
		if (strcmp(p->selected[i], key) == 0)
			return (int)i;
	return -1;
}

static int check_params(const struct heatmap_input *in, const struct heatmap_params *p)
{
	size_t i;

	if (!in || !p || (in->nslots && !in->slots)) {
		set_error("missing input or parameters");
		return -EINVAL;
	}
	if (in->nslots == 0) {
		set_error("no time slots to draw");
		return -EINVAL;
	}
	if (in->granularity < 1) {
		set_error("granularity %lld: must be at least 1 second", (long long)in->granularity);
		return -EINVAL;
	}
	if (p->width < 1 || p->width > HEATMAP_MAX_WIDTH) {
		set_error("width %d: must be 1..%d", p->width, HEATMAP_MAX_WIDTH);
		return -EINVAL;
	}
	if (p->height < 1 || p->height > HEATMAP_MAX_HEIGHT) {
		set_error("height %d: must be 1..%d", p->height, HEATMAP_MAX_HEIGHT);
		return -EINVAL;
	}
	if (p->nbuckets < 1 || p->nbuckets > HEATMAP_MAX_BUCKETS) {
		set_error("nbuckets %d: must be 1..%d", p->nbuckets, HEATMAP_MAX_BUCKETS);
		return -EINVAL;
	}
	if (!isfinite(p->ymin) || (!p->auto_ymax && (!isfinite(p->ymax) || p->ymax <= p->ymin))) {
		set_error("ymin %g, ymax %g: need finite values with ymax > ymin", p->ymin, p->ymax);
		return -EINVAL;
	}
	if (p->isolate && p->exclude) {
		set_error("isolate and exclude: choose one");
		return -EINVAL;
	}
	if (p->nselected && !p->selected) {
		set_error("selected: %zu keys announced, none given", p->nselected);
		return -EINVAL;
	}
	for (i = 0; i < p->nselected; i++)
		if (!p->selected[i]) {
			set_error("selected[%zu]: missing key", i);
			return -EINVAL;
		}
	if (p->nhues && !p->hues) {
		set_error("hues: %zu hues announced, none given", p->nhues);
		return -EINVAL;
	}
	if (p->coloring != COLORING_RANK && p->coloring != COLORING_LINEAR) {
		set_error("coloring %d: must be rank or linear", (int)p->coloring);
		return -EINVAL;
	}
	if (p->weights != WEIGHTS_COUNT && p->weights != WEIGHTS_WEIGHT) {
		set_error("weights %d: must be count or weight", (int)p->weights);
		return -EINVAL;
	}
	return 0;
}

/* Validates every slot and fills ks (the caller's, released with
 * keyset__free() whatever the result). */
static int keyset__build(const struct heatmap_input *in, const struct heatmap_params *p,
			 struct keyset *ks)
{
	json_t *set = NULL;
	const char *k;
	json_t *v;
	size_t s, i, n;
	int err = 0, rest = -1;

	memset(ks, 0, sizeof(*ks));
	set = json_object();
	if (!set)
		return -ENOMEM;
	for (s = 0; s < in->nslots; s++) {
		const json_t *val = in->slots[s].value;
		enum shape sh;

		if (!val || json_is_null(val) ||
		    (json_is_array(val) && json_array_size(val) == 0) ||
		    (json_is_object(val) && json_object_size(val) == 0))
			continue;
		if (json_is_array(val))
			sh = SHAPE_DIST;
		else if (json_is_object(val))
			sh = SHAPE_MAP;
		else {
			set_error("slot %zu: value is a %s, not a numeric distribution (a heatmap needs a numeric decomposition)",
				  s, json_is_number(val) ? "number" : "non-distribution");
			err = -EINVAL;
			goto out;
		}
		if (ks->shape != SHAPE_EMPTY && ks->shape != sh) {
			set_error("slot %zu: mixes a decomposed and an undecomposed distribution", s);
			err = -EINVAL;
			goto out;
		}
		ks->shape = sh;
		if (sh == SHAPE_DIST) {
			err = check_dist(val, s, NULL);
			if (err)
				goto out;
			continue;
		}
		json_object_foreach((json_t *)val, k, v) {
			err = check_dist(v, s, k);
			if (err)
				goto out;
			if (json_object_set(set, k, json_true())) {
				err = -ENOMEM;
				goto out;
			}
		}
	}

	n = ks->shape == SHAPE_MAP ? json_object_size(set) : 1;
	ks->all = calloc(n, sizeof(*ks->all));
	ks->drawn = calloc(n, sizeof(*ks->drawn));
	ks->layer = calloc(n, sizeof(*ks->layer));
	ks->layer_hue = calloc(n + 1, sizeof(*ks->layer_hue));
	ks->layer_named = calloc(n + 1, sizeof(*ks->layer_named));
	if (!ks->all || !ks->drawn || !ks->layer || !ks->layer_hue || !ks->layer_named) {
		err = -ENOMEM;
		goto out;
	}
	if (ks->shape != SHAPE_MAP) {
		/* one unnamed distribution: selection does not apply */
		ks->nall = 1;
		ks->drawn[0] = 1;
		ks->nlayers = 1;
		ks->layer_hue[0] = hue_of(p, 0);
		ks->layer_named[0] = -1;
		goto out;
	}
	json_object_foreach(set, k, v) {
		ks->all[ks->nall] = strdup(k);
		if (!ks->all[ks->nall]) {
			err = -ENOMEM;
			goto out;
		}
		ks->nall++;
	}
	qsort(ks->all, ks->nall, sizeof(*ks->all), cmp_str);

	for (i = 0; i < ks->nall; i++) {
		int sel = selected_index(p, ks->all[i]);

		if ((p->isolate && sel < 0) || (p->exclude && sel >= 0))
			continue;
		ks->drawn[i] = 1;
		if (p->decompose_all) {
			ks->layer[i] = (int)ks->nlayers;
			ks->layer_hue[ks->nlayers] = hue_of(p, ks->nlayers + 1);
			ks->layer_named[ks->nlayers++] = (int)i;
		} else if (sel >= 0 && !p->exclude) {
			/* hue follows the selection order, present or not, so a
			 * key keeps its colour while others come and go */
			ks->layer[i] = (int)ks->nlayers;
			ks->layer_hue[ks->nlayers] = hue_of(p, (size_t)sel + 1);
			ks->layer_named[ks->nlayers++] = (int)i;
		} else {
			if (rest < 0) {
				rest = (int)ks->nlayers;
				ks->layer_hue[ks->nlayers] = hue_of(p, 0);
				ks->layer_named[ks->nlayers++] = -1;
			}
			ks->layer[i] = rest;
		}
	}
out:
	json_decref(set);
	return err;
}

/* Index into ks->all of key k, or -1. */
static int key_index(const struct keyset *ks, const char *k)
{
	char *const *hit = bsearch(&k, ks->all, ks->nall, sizeof(*ks->all), cmp_str);

	return hit ? (int)(hit - ks->all) : -1;
}

/* Calls fn for every bucket of every drawn key in slot s. */
typedef void (*bucket_fn)(void *ctx, size_t key, const struct src_bucket *b);

static void foreach_bucket(const struct heatmap_input *in, const struct keyset *ks, size_t s,
			   bucket_fn fn, void *ctx)
{
	const json_t *val = in->slots[s].value;
	struct src_bucket b;
	const char *k;
	json_t *d;
	size_t i;

	if (!val)
		return;
	if (json_is_array(val)) {
		for (i = 0; i < json_array_size(val); i++)
			if (!read_bucket(json_array_get(val, i), s, NULL, i, &b))
				fn(ctx, 0, &b);
		return;
	}
	if (!json_is_object(val))
		return;
	json_object_foreach((json_t *)val, k, d) {
		int ki = key_index(ks, k);

		if (ki < 0 || !ks->drawn[ki])
			continue;
		for (i = 0; i < json_array_size(d); i++)
			if (!read_bucket(json_array_get(d, i), s, k, i, &b))
				fn(ctx, (size_t)ki, &b);
	}
}

static int is_point(const struct src_bucket *b)
{
	return b->hi >= OVERFLOW_HI || b->hi <= b->lo;
}

static double midpoint(const struct src_bucket *b)
{
	return is_point(b) ? b->lo : (b->lo + b->hi) / 2;
}

static void find_max(void *ctx, size_t key, const struct src_bucket *b)
{
	double *max = ctx, top = is_point(b) ? b->lo : b->hi;

	if (b->count > 0 && top > *max)
		*max = top;
}

/* ---- spreading --------------------------------------------------------- */

struct spread_ctx {
	struct heatmap *hm;
	size_t col;
	double step;
	int weighted;
};

/* Adds a source bucket to the column's y-buckets in proportion to overlap;
 * whatever lies outside [ymin, ymax) is clipped away. */
static void spread(void *vctx, size_t key, const struct src_bucket *b)
{
	struct spread_ctx *c = vctx;
	struct heatmap *hm = c->hm;
	double w = c->weighted ? b->count * midpoint(b) : b->count;
	double *col = hm->cells + c->col * (size_t)hm->nbuckets * hm->nkeys;
	double lo, hi;
	long i, ia, ib;

	if (w <= 0)
		return;
	if (is_point(b)) {
		if (b->lo < hm->ymin || b->lo >= hm->ymax)
			return;
		i = (long)floor((b->lo - hm->ymin) / c->step);
		if (i >= hm->nbuckets)
			i = hm->nbuckets - 1;
		col[(size_t)i * hm->nkeys + key] += w;
		return;
	}
	lo = fmax(b->lo, hm->ymin);
	hi = fmin(b->hi, hm->ymax);
	if (lo >= hi)
		return;
	ia = (long)floor((lo - hm->ymin) / c->step);
	ib = (long)ceil((hi - hm->ymin) / c->step) - 1;
	if (ia < 0)
		ia = 0;
	if (ib >= hm->nbuckets)
		ib = hm->nbuckets - 1;
	for (i = ia; i <= ib; i++) {
		double blo = hm->ymin + (double)i * c->step;
		double bhi = i == hm->nbuckets - 1 ? hm->ymax : blo + c->step;
		double ov = fmin(hi, bhi) - fmax(lo, blo);

		if (ov > 0)
			col[(size_t)i * hm->nkeys + key] += w * ov / (b->hi - b->lo);
	}
}

/* ---- colour ------------------------------------------------------------ */

static void hsv_rgb(double h, double s, double v, double rgb[3])
{
	double c = v * s, hp = fmod(h, 360) / 60, x = c * (1 - fabs(fmod(hp, 2) - 1));
	double m = v - c, r = 0, g = 0, b = 0;

	if (hp < 1) { r = c; g = x; }
	else if (hp < 2) { r = x; g = c; }
	else if (hp < 3) { g = c; b = x; }
	else if (hp < 4) { g = x; b = c; }
	else if (hp < 5) { r = x; b = c; }
	else { r = c; b = x; }
	rgb[0] = r + m;
	rgb[1] = g + m;
	rgb[2] = b + m;
}

void heatmap__hue_rgb(int hue, double intensity, uint8_t rgb[3])
{
	double c[3];
	int i;

	hsv_rgb(hue, fmin(1, fmax(0, intensity)), 1, c);
	for (i = 0; i < 3; i++)
		rgb[i] = (uint8_t)lround(c[i] * 255);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct norm {
	enum heatmap_coloring coloring;
	double *distinct;	/* sorted distinct non-zero values (rank) */
	size_t ndistinct;
	double max;
};

static double intensity(const struct norm *n, double v)
{
	size_t lo = 0, hi = n->ndistinct;

	if (v <= 0)
		return 0;
	if (n->coloring == COLORING_LINEAR)
		return n->max > 0 ? v / n->max : 0;
	/* rank: 1-based position of v among the distinct values */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (n->distinct[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n->ndistinct ? (double)(lo + 1) / (double)n->ndistinct : 0;
}

void heatmap__free(struct heatmap *hm)
{
	size_t i;

	if (!hm)
		return;
	free(hm->rgb);
	json_decref(hm->present);
	free(hm->col_start);
	free(hm->col_nslots);
	for (i = 0; i < hm->nkeys; i++)
		free(hm->keys[i]);
	free(hm->keys);
	free(hm->key_layer);
	for (i = 0; i < hm->nlayers; i++)
		free(hm->layers[i].name);
	free(hm->layers);
	free(hm->cells);
	free(hm->level);
	free(hm);
}

/* Copies the keyset's drawn keys and layers into hm (which owns the copies). */
static int adopt_keys(struct heatmap *hm, const struct keyset *ks, size_t **map_out)
{
	size_t i, n = 0, *map;

	map = calloc(ks->nall, sizeof(*map));	/* all[] index -> drawn key index */
	hm->keys = calloc(ks->nall, sizeof(*hm->keys));
	hm->key_layer = calloc(ks->nall, sizeof(*hm->key_layer));
	hm->layers = calloc(ks->nlayers ? ks->nlayers : 1, sizeof(*hm->layers));
	if (!map || !hm->keys || !hm->key_layer || !hm->layers)
		goto err_nomem;
	for (i = 0; i < ks->nall; i++) {
		if (!ks->drawn[i])
			continue;
		if (ks->all[i] && !(hm->keys[n] = strdup(ks->all[i])))
			goto err_nomem;
		hm->key_layer[n] = (size_t)ks->layer[i];
		map[i] = n++;
		hm->nkeys = n;
	}
	for (i = 0; i < ks->nlayers; i++) {
		hm->layers[i].hue = ks->layer_hue[i];
		if (ks->layer_named[i] >= 0 &&
		    !(hm->layers[i].name = strdup(ks->all[ks->layer_named[i]])))
			goto err_nomem;
		hm->nlayers = i + 1;
	}
	*map_out = map;
	return 0;
err_nomem:
	free(map);
	return -ENOMEM;
}

/* Maps keyset indices to heatmap key indices while spreading. */
struct remap_ctx {
	struct spread_ctx sc;
	const size_t *map;
};

static void spread_remapped(void *vctx, size_t key, const struct src_bucket *b)
{
	struct remap_ctx *r = vctx;

	spread(&r->sc, r->map[key], b);
}

int heatmap__build(const struct heatmap_input *in, const struct heatmap_params *p,
		   struct heatmap **out)
{
	struct keyset ks;
	struct heatmap *hm = NULL;
	struct norm nm = { 0 };
	struct remap_ctx rc;
	size_t *map = NULL, s, c, b, k, l, ncells, nvals = 0;
	double *lv = NULL;
	uint8_t *cellrgb = NULL;
	int err, x, y;

	last_error[0] = 0;
	err = check_params(in, p);
	if (err)
		return err;
	err = keyset__build(in, p, &ks);
	if (err)
		goto err_keys;

	hm = calloc(1, sizeof(*hm));
	if (!hm)
		goto err_nomem;
	hm->width = p->width;
	hm->height = p->height;
	hm->nbuckets = p->nbuckets < p->height ? p->nbuckets : p->height;
	hm->nslots = in->nslots;
	hm->granularity = in->granularity;
	hm->ncols = in->nslots < (size_t)p->width ? in->nslots : (size_t)p->width;
	hm->present = json_array();
	if (!hm->present)
		goto err_nomem;
	if (ks.shape == SHAPE_MAP)
		for (k = 0; k < ks.nall; k++)
			if (json_array_append_new(hm->present, json_string(ks.all[k])))
				goto err_nomem;
	err = adopt_keys(hm, &ks, &map);
	if (err)
		goto err_free;

	hm->ymin = p->ymin;
	if (p->auto_ymax) {
		double max = -INFINITY;

		for (s = 0; s < in->nslots; s++)
			foreach_bucket(in, &ks, s, find_max, &max);
		/* round the data max itself; when that does not clear a
		 * raised ymin, round the span above ymin instead */
		hm->ymax = heatmap__auto_ymax(max);
		if (hm->ymax <= hm->ymin)
			hm->ymax = hm->ymin + heatmap__auto_ymax(max - hm->ymin);
	} else {
		hm->ymax = p->ymax;
	}

	hm->col_start = calloc(hm->ncols, sizeof(*hm->col_start));
	hm->col_nslots = calloc(hm->ncols, sizeof(*hm->col_nslots));
	ncells = hm->ncols * (size_t)hm->nbuckets;
	hm->cells = calloc(ncells * (hm->nkeys ? hm->nkeys : 1), sizeof(*hm->cells));
	hm->level = calloc(ncells, sizeof(*hm->level));
	hm->rgb = malloc((size_t)hm->width * hm->height * 3);
	lv = calloc(ncells * (hm->nlayers ? hm->nlayers : 1), sizeof(*lv));
	cellrgb = malloc(ncells * 3);
	nm.distinct = malloc(ncells * (hm->nlayers ? hm->nlayers : 1) * sizeof(double));
	if (!hm->col_start || !hm->col_nslots || !hm->cells || !hm->level || !hm->rgb ||
	    !lv || !cellrgb || !nm.distinct)
		goto err_nomem;

	/* columns: when there are more slots than pixels, neighbours merge */
	rc.sc = (struct spread_ctx){ hm, 0, (hm->ymax - hm->ymin) / hm->nbuckets,
				     p->weights == WEIGHTS_WEIGHT };
	rc.map = map;
	for (c = 0; c < hm->ncols; c++) {
		size_t s0 = c * in->nslots / hm->ncols, s1 = (c + 1) * in->nslots / hm->ncols;

		hm->col_start[c] = in->slots[s0].start_time;
		hm->col_nslots[c] = s1 - s0;
		rc.sc.col = c;
		for (s = s0; s < s1; s++)
			foreach_bucket(in, &ks, s, spread_remapped, &rc);
	}

	/* per-layer cell values and the set they are normalised against */
	for (c = 0; c < ncells; c++) {
		double total = 0;

		for (k = 0; k < hm->nkeys; k++)
			lv[c * hm->nlayers + hm->key_layer[k]] += hm->cells[c * hm->nkeys + k];
		for (l = 0; l < hm->nlayers; l++) {
			double v = lv[c * hm->nlayers + l];

			if (v > 0) {
				nm.distinct[nvals++] = v;
				if (v > hm->max)
					hm->max = v;
				total += v;
			}
		}
		if (total > hm->max_total)
			hm->max_total = total;
	}
	qsort(nm.distinct, nvals, sizeof(double), cmp_double);
	for (s = 0; s < nvals; s++)
		if (nm.ndistinct == 0 || nm.distinct[s] != nm.distinct[nm.ndistinct - 1])
			nm.distinct[nm.ndistinct++] = nm.distinct[s];
	nm.coloring = p->coloring;
	nm.max = hm->max;

	for (c = 0; c < ncells; c++) {
		double total = 0, rgb[3] = { 0, 0, 0 }, one[3], level = 0;

		for (l = 0; l < hm->nlayers; l++)
			total += lv[c * hm->nlayers + l];
		if (total <= 0) {
			memset(cellrgb + c * 3, 255, 3);
			continue;
		}
		for (l = 0; l < hm->nlayers; l++) {
			double v = lv[c * hm->nlayers + l], share = v / total, in_ = intensity(&nm, v);

			if (v <= 0)
				continue;
			hsv_rgb(hm->layers[l].hue, in_, 1, one);
			for (b = 0; b < 3; b++)
				rgb[b] += share * one[b];
			level += share * in_;
		}
		for (b = 0; b < 3; b++)
			cellrgb[c * 3 + b] = (uint8_t)lround(fmin(1, fmax(0, rgb[b])) * 255);
		hm->level[c] = (float)level;
	}

	for (y = 0; y < hm->height; y++) {
		size_t bk = (size_t)hm->nbuckets - 1 - (size_t)y * hm->nbuckets / hm->height;

		for (x = 0; x < hm->width; x++) {
			size_t col = (size_t)x * hm->ncols / hm->width;

			memcpy(hm->rgb + ((size_t)y * hm->width + x) * 3,
			       cellrgb + (col * hm->nbuckets + bk) * 3, 3);
		}
	}
	*out = hm;
	hm = NULL;
	err = 0;
	goto out;

err_nomem:
	err = -ENOMEM;
err_free:
	heatmap__free(hm);
out:
	free(nm.distinct);
	free(cellrgb);
	free(lv);
	free(map);
err_keys:
	keyset__free(&ks);
	return err;
}

/* ---- details ----------------------------------------------------------- */

static json_t *number(double v)
{
	double r = round(v);

	if (fabs(v - r) < 1e-9 && fabs(r) < 9e15)
		return json_integer((json_int_t)r);
	return json_real(round(v * 1000) / 1000);
}

int heatmap__cell_details(const struct heatmap *hm, int x, int y, json_t **out)
{
	json_t *o = NULL, *present = NULL;
	size_t col, bk, k;
	double step, total = 0;

	if (x < 0 || y < 0 || x >= hm->width || y >= hm->height) {
		set_error("pixel (%d, %d): outside the %dx%d image", x, y, hm->width, hm->height);
		return -ERANGE;
	}
	col = (size_t)x * hm->ncols / hm->width;
	bk = (size_t)hm->nbuckets - 1 - (size_t)y * hm->nbuckets / hm->height;
	step = (hm->ymax - hm->ymin) / hm->nbuckets;
	present = json_object();
	if (!present)
		goto err_nomem;
	for (k = 0; k < hm->nkeys; k++) {
		double v = hm->cells[(col * hm->nbuckets + bk) * hm->nkeys + k];

		total += v;
		if (v > 0 && hm->keys[k] && json_object_set_new(present, hm->keys[k], number(v)))
			goto err_nomem;
	}
	o = json_pack("{sI sI s o s o s O s o}",
		      "start_time", (json_int_t)hm->col_start[col],
		      "duration", (json_int_t)(hm->col_nslots[col] * hm->granularity),
		      "bucket_min", number(hm->ymin + (double)bk * step),
		      "bucket_max", number(bk == (size_t)hm->nbuckets - 1 ? hm->ymax :
					   hm->ymin + (double)(bk + 1) * step),
		      "present", present,
		      "total", number(total));
	if (!o)
		goto err_nomem;
	json_decref(present);
	*out = o;
	return 0;
err_nomem:
	json_decref(present);
	return -ENOMEM;
}

int heatmap__details(const struct heatmap_input *in, const struct heatmap_params *p,
		     int x, int y, json_t **out)
{
	struct heatmap *hm;
	int err = heatmap__build(in, p, &hm);

	if (err)
		return err;
	err = heatmap__cell_details(hm, x, y, out);
	heatmap__free(hm);
	return err;
}

/* ---- average and percentiles ------------------------------------------- */

struct collect_ctx {
	struct src_bucket *b;
	size_t n, cap;
	int failed;
};

static void collect(void *vctx, size_t key, const struct src_bucket *b)
{
	struct collect_ctx *c = vctx;

	if (c->failed || b->count <= 0)
		return;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct src_bucket *nb = realloc(c->b, cap * sizeof(*nb));

		if (!nb) {
			c->failed = 1;
			return;
		}
		c->b = nb;
		c->cap = cap;
	}
	c->b[c->n++] = *b;
}

static int cmp_bucket(const void *a, const void *b)
{
	const struct src_bucket *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* pct < 0 asks for the average. */
static int summarize(const struct heatmap_input *in, const struct heatmap_params *p,
		     double pct, json_t **out)
{
	struct keyset ks;
	struct collect_ctx cc = { 0 };
	json_t *arr = NULL;
	size_t s, i;
	int err;

	last_error[0] = 0;
	if (!in || !p || (in->nslots && !in->slots)) {
		set_error("missing input or parameters");
		return -EINVAL;
	}
	if (pct > 100 || isnan(pct)) {
		set_error("percentile %g: must be 0..100", pct);
		return -EINVAL;
	}
	if (p->isolate && p->exclude) {
		set_error("isolate and exclude: choose one");
		return -EINVAL;
	}
	err = keyset__build(in, p, &ks);
	if (err)
		goto out;
	arr = json_array();
	if (!arr)
		goto err_nomem;
	for (s = 0; s < in->nslots; s++) {
		double total = 0, sum = 0, cum = 0, target, v = NAN;
		json_t *pt;

		cc.n = 0;
		foreach_bucket(in, &ks, s, collect, &cc);
		if (cc.failed)
			goto err_nomem;
		for (i = 0; i < cc.n; i++) {
			total += cc.b[i].count;
			sum += cc.b[i].count * midpoint(&cc.b[i]);
		}
		if (total > 0 && pct < 0) {
			v = sum / total;
		} else if (total > 0) {
			qsort(cc.b, cc.n, sizeof(*cc.b), cmp_bucket);
			target = pct / 100 * total;
			for (i = 0; i < cc.n; i++) {
				const struct src_bucket *b = &cc.b[i];

				if (cum + b->count >= target || i == cc.n - 1) {
					double f = fmin(1, fmax(0, (target - cum) / b->count));

					v = is_point(b) ? b->lo : b->lo + f * (b->hi - b->lo);
					break;
				}
				cum += b->count;
			}
		}
		pt = json_pack("[I o]", (json_int_t)in->slots[s].start_time,
			       isnan(v) ? json_null() : json_real(v));
		if (!pt || json_array_append_new(arr, pt))
			goto err_nomem;
	}
	*out = arr;
	arr = NULL;
	goto out;
err_nomem:
	err = -ENOMEM;
out:
	json_decref(arr);
	free(cc.b);
	keyset__free(&ks);
	return err;
}

int heatmap__average(const struct heatmap_input *in, const struct heatmap_params *p,
		     json_t **out)
{
	return summarize(in, p, -1, out);
}

int heatmap__percentile(const struct heatmap_input *in, const struct heatmap_params *p,
			double pct, json_t **out)
{
	if (!(pct >= 0)) {
		set_error("percentile %g: must be 0..100", pct);
		return -EINVAL;
	}
	return summarize(in, p, pct, out);
}
