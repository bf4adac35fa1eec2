/* Heatmap rendering in the way of Cloud Analytics: see heatmap.h for the
 * model. The pipeline is: find the keys and decide which are drawn and in
 * which hue (layers); pick ymax; spread every source bucket over the linear
 * y-buckets it overlaps; normalise cell values (rank or linear); blend the
 * layers' colours by their share of each cell; scale cells to pixels.
 *
 * The input is typed (engine/window.h), so the work per cell is a few
 * array reads: how a source bucket spreads over the y-buckets is worked out
 * once per bucket of the window (struct span), rank colouring looks values
 * up in a hash of the distinct ones (a few dozen, typically) rather than
 * sorting every cell value, and each hue's HSV sextant is worked out once. */
#include "common/str.h"
#include "render/ca_math.h"
#include "render/heatmap.h"
#include "render/heatmap_impl.h"

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
	if (!(max > 0) || !isfinite(max))
		return 1;
	return ca__autoscale(max);
}

double heatmap__ca_ymax(double max, double ymin)
{
	double ymax;

	/* nothing (or only [0, 0]): CA's autoscale(0), a white image */
	if (!(max > 0) || !isfinite(max))
		return 0;
	ymax = ca__autoscale(max);
	/* CA would divide by a negative bucket size here and draw nothing:
	 * round the span above a raised ymin instead */
	if (ymax <= ymin)
		ymax = ymin + heatmap__auto_ymax(max - ymin);
	return ymax;
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

/* ---- parameters and keys ----------------------------------------------- */

static int selected_index(const struct heatmap_params *p, const char *key)
{
	size_t i;

	for (i = 0; i < p->nselected; i++)
		if (strcmp(p->selected[i], key) == 0)
			return (int)i;
	return -1;
}

static int check_input(const struct heatmap_input *in)
{
	if (!in || !in->w || in->first > in->w->nslots ||
	    in->nslots > in->w->nslots - in->first) {
		set_error("missing input or parameters");
		return -EINVAL;
	}
	return 0;
}

int heatmap__check_params(const struct heatmap_input *in, const struct heatmap_params *p)
{
	size_t i;

	if (!p || check_input(in)) {
		set_error("missing input or parameters");
		return -EINVAL;
	}
	if (in->nslots == 0) {
		set_error("no time slots to draw");
		return -EINVAL;
	}
	if (in->w->granularity < 1) {
		set_error("granularity %lld: must be at least 1 second", (long long)in->w->granularity);
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

void keyset__free(struct keyset *ks)
{
	free(ks->present);
	free(ks->drawn);
	free(ks->drawn_name);
	free(ks->drawn_layer);
	free(ks->layer_hue);
	free(ks->layer_name);
	memset(ks, 0, sizeof(*ks));
}

static const struct dist_cell *cells_of(const struct heatmap_input *in, size_t s, size_t *n)
{
	const struct dist_window *w = in->w;
	size_t i = in->first + s;

	*n = w->slot_off[i + 1] - w->slot_off[i];
	return *n ? w->cells + w->slot_off[i] : NULL;
}

/* Fills ks (the caller's, released with keyset__free() whatever the
 * result) from nk keys named names[i] (NULL when undecomposed), seen[i] set
 * for those with data in the drawn slots; order lists the key indexes in
 * strcmp order of their names (NULL: they are in that order already). */
int keyset__from_seen(const struct heatmap_params *p, size_t nk, const char *const *names,
		      const unsigned char *seen, const size_t *order, struct keyset *ks)
{
	long rest = -1;
	size_t i, o;

	memset(ks, 0, sizeof(*ks));
	if (!nk)
		nk = 1;
	ks->present = calloc(nk, sizeof(*ks->present));
	ks->drawn = malloc(nk * sizeof(*ks->drawn));
	ks->drawn_name = calloc(nk, sizeof(*ks->drawn_name));
	ks->drawn_layer = calloc(nk, sizeof(*ks->drawn_layer));
	ks->layer_hue = calloc(nk + 1, sizeof(*ks->layer_hue));
	ks->layer_name = calloc(nk + 1, sizeof(*ks->layer_name));
	if (!ks->present || !ks->drawn || !ks->drawn_name || !ks->drawn_layer ||
	    !ks->layer_hue || !ks->layer_name)
		return -ENOMEM;
	for (o = 0; o < nk; o++) {
		i = order ? order[o] : o;
		ks->drawn[i] = -1;
		if (names && seen[i])
			ks->present[ks->npresent++] = names[i];
	}
	if (!ks->npresent) {
		/* one unnamed distribution: selection does not apply */
		for (i = 0; i < nk; i++)
			ks->drawn[i] = 0;
		ks->ndrawn = 1;
		ks->nlayers = 1;
		ks->layer_hue[0] = hue_of(p, 0);
		return 0;
	}
	ks->named = 1;
	/* CA counts the rest and every present key (its assertion, a 500
	 * there; a clear 400 here) */
	if (p->decompose_all && p->hues && p->nhues < ks->npresent + 1) {
		set_error("need %zu hues", ks->npresent + 1);
		return -EINVAL;
	}
	for (o = 0; o < nk; o++) {
		int sel;

		i = order ? order[o] : o;
		if (!seen[i])
			continue;
		sel = selected_index(p, names[i]);
		if ((p->isolate && sel < 0) || (p->exclude && sel >= 0))
			continue;
		ks->drawn[i] = (long)ks->ndrawn;
		ks->drawn_name[ks->ndrawn] = names[i];
		if (p->decompose_all) {
			ks->drawn_layer[ks->ndrawn] = ks->nlayers;
			ks->layer_hue[ks->nlayers] = hue_of(p, ks->nlayers + 1);
			ks->layer_name[ks->nlayers++] = names[i];
		} else if (sel >= 0 && !p->exclude) {
			/* hue follows the selection order, present or not, so a
			 * key keeps its colour while others come and go; CA:
			 * isolated key i takes the caller's hues[i], the
			 * default sequence still skips the rest's 21 */
			ks->drawn_layer[ks->ndrawn] = ks->nlayers;
			ks->layer_hue[ks->nlayers] =
				p->isolate && p->hues && (size_t)sel < p->nhues ?
				hue_of(p, (size_t)sel) : hue_of(p, (size_t)sel + 1);
			ks->layer_name[ks->nlayers++] = names[i];
		} else {
			if (rest < 0) {
				rest = (long)ks->nlayers;
				ks->layer_hue[ks->nlayers] = hue_of(p, 0);
				ks->layer_name[ks->nlayers++] = NULL;
			}
			ks->drawn_layer[ks->ndrawn] = (size_t)rest;
		}
		ks->ndrawn++;
	}
	return 0;
}

/* The same for the drawn slots of a window. */
static int keyset__build(const struct heatmap_input *in, const struct heatmap_params *p,
			 struct keyset *ks)
{
	const struct dist_window *w = in->w;
	int named = w->decomposed && w->nkeys;
	size_t nk = named ? w->nkeys : 1, s, i, n;
	unsigned char *seen = calloc(nk, 1);
	const struct dist_cell *c;
	int err;

	if (!seen) {
		memset(ks, 0, sizeof(*ks));
		return -ENOMEM;
	}
	if (named)
		for (s = 0; s < in->nslots; s++) {
			c = cells_of(in, s, &n);
			for (i = 0; i < n; i++)
				seen[c[i].key] = 1;
		}
	err = keyset__from_seen(p, nk, named ? (const char *const *)w->keys : NULL, seen, NULL, ks);
	free(seen);
	return err;
}

/* ---- buckets and spreading --------------------------------------------- */

int dist_bucket__is_point(const struct dist_bucket *b)
{
	return b->hi >= OVERFLOW_HI || b->hi <= b->lo;
}

static double midpoint(const struct dist_bucket *b)
{
	return dist_bucket__is_point(b) ? b->lo : (b->lo + b->hi) / 2;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* CA's data maximum of the drawn slots over every key, whatever is drawn
 * (bucketize of the total, ca__max_step). 0 when there is nothing; -1 when
 * out of memory. */
static double window_ca_max(const struct heatmap_input *in)
{
	const struct dist_window *w = in->w;
	uint32_t *idx = NULL;
	unsigned char *mark = calloc(w->nbuckets ? w->nbuckets : 1, 1);
	size_t cap = 0, s, i, n, m;
	double max = 0;

	if (!mark)
		return -1;
	for (s = 0; s < in->nslots; s++) {
		const struct dist_cell *c = cells_of(in, s, &n);

		if (n > cap) {
			uint32_t *ni = realloc(idx, n * sizeof(*idx));

			if (!ni) {
				max = -1;
				break;
			}
			idx = ni;
			cap = n;
		}
		for (i = 0, m = 0; i < n; i++)
			if (c[i].count > 0 && !mark[c[i].bucket]) {
				mark[c[i].bucket] = 1;
				idx[m++] = c[i].bucket;
			}
		/* the bucket table is sorted by (lo, hi): index order is CA's */
		if (m)
			qsort(idx, m, sizeof(*idx), cmp_u32);
		for (i = 0; i < m; i++) {
			max = ca__max_step(max, &w->buckets[idx[i]]);
			mark[idx[i]] = 0;
		}
	}
	free(idx);
	free(mark);
	return max;
}

void prep__free(struct prep *pr)
{
	keyset__free(&pr->ks);
	free(pr->span);
	free(pr->ov);
}

/* Fills pr (the caller's, released with prep__free() whatever the result). */
static int prep__build(const struct heatmap_input *in, const struct heatmap_params *p,
		       struct prep *pr)
{
	const struct dist_window *w = in->w;
	int err;

	memset(pr, 0, sizeof(*pr));
	err = keyset__build(in, p, &pr->ks);
	if (err)
		return err;
	pr->nbuckets = p->nbuckets < p->height ? p->nbuckets : p->height;
	pr->ymin = p->ymin;
	if (p->auto_ymax) {
		/* CA scales the total, whatever the selection draws */
		double max = window_ca_max(in);

		if (max < 0)
			return -ENOMEM;
		pr->ymax = heatmap__ca_ymax(max, pr->ymin);
	} else {
		pr->ymax = p->ymax;
	}
	return prep__spans(pr, w->buckets, w->nbuckets);
}

/* Works out pr's step and how each of the nb buckets spreads, from pr's
 * ymin, ymax and nbuckets, as CA's bucketize does for [lo, hi - 1]: low =
 * (lo - ymin) / step, high = (hi - ymin) / step; the rows fully covered
 * take u = (1 / (high - low)) * count, the partial ones their overlap times
 * u, and what lies outside [ymin, ymax) is dropped. 0 or -ENOMEM (pr is
 * freed by prep__free). */
int prep__spans(struct prep *pr, const struct dist_bucket *buckets, size_t nb)
{
	size_t b, nov = 0;
	long nbk = pr->nbuckets;

	pr->step = (pr->ymax - pr->ymin) / pr->nbuckets;
	pr->span = calloc(nb ? nb : 1, sizeof(*pr->span));
	pr->ov = malloc((nb ? nb : 1) * 2 * sizeof(*pr->ov));
	if (!pr->span || !pr->ov)
		return -ENOMEM;
	for (b = 0; b < nb; b++) {
		const struct dist_bucket *bk = &buckets[b];
		struct span *sp = &pr->span[b];
		double low, high, lo = bk->lo, hi = dist_bucket__is_point(bk) ? bk->lo + 1 : bk->hi;
		long lowfilled, highfilled;

		sp->ia = 0;
		sp->ib = -1;
		sp->mid = dist_bucket__is_point(bk) ? bk->lo : lo + (hi - 1 - lo) / 2;
		/* an empty window's ymax 0: nothing lands anywhere */
		if (!(pr->step > 0) || lo >= pr->ymax || hi - 1 < pr->ymin)
			continue;
		if (dist_bucket__is_point(bk)) {
			sp->whole = 1;
			sp->ia = sp->ib = (long)floor((lo - pr->ymin) / pr->step);
			if (sp->ia < 0 || sp->ia >= nbk)
				sp->ib = -1;
			continue;
		}
		low = (lo - pr->ymin) / pr->step;
		high = (hi - pr->ymin) / pr->step;
		lowfilled = (long)floor(low) + 1;
		highfilled = (long)floor(high);
		if (highfilled < lowfilled) {
			sp->whole = 1;
			sp->ia = sp->ib = highfilled;
			if (highfilled < 0 || highfilled >= nbk)
				sp->ib = -1;
			continue;
		}
		sp->r = 1 / (high - low);
		if (low < 0)
			low = 0;
		if (high >= nbk)
			high = (double)(nbk - 1);
		if (highfilled > nbk)
			highfilled = nbk;
		sp->ia = low < lowfilled && lowfilled > 0 ? lowfilled - 1 :
			 lowfilled < 0 ? 0 : lowfilled;
		sp->ib = high > highfilled ? highfilled : highfilled - 1;
		if (sp->ib < sp->ia)
			continue;
		/* room: rows of every bucket add up to at most nbuckets + 2 */
		if (nov + (size_t)(sp->ib - sp->ia + 1) > nb * 2) {
			double *no = realloc(pr->ov, (nov + (size_t)(sp->ib - sp->ia + 1) + nb) *
					     sizeof(*pr->ov));

			if (!no)
				return -ENOMEM;
			pr->ov = no;
		}
		sp->off = nov;
		for (long k = sp->ia; k <= sp->ib; k++)
			pr->ov[nov++] = k == lowfilled - 1 ? lowfilled - low :
					k == highfilled && high > highfilled ? high - highfilled : 1;
	}
	return 0;
}

/* Adds n cells to col ([nbuckets][ndrawn]), each source bucket spread over
 * its rows (struct span); whatever lies outside [ymin, ymax) is clipped
 * away. */
void span__spread_cells(const struct prep *pr, const struct dist_cell *c, size_t n, int weighted,
		  double *col)
{
	size_t nk = pr->ks.ndrawn, i;

	for (i = 0; i < n; i++) {
		const struct span *sp = &pr->span[c[i].bucket];
		long key = pr->ks.drawn[c[i].key], y;
		double wv = weighted ? c[i].count * sp->mid : c[i].count, u;

		if (key < 0 || wv <= 0 || sp->ib < sp->ia)
			continue;
		if (sp->whole) {
			col[(size_t)sp->ia * nk + (size_t)key] += wv;
			continue;
		}
		u = sp->r * wv;
		for (y = sp->ia; y <= sp->ib; y++) {
			double f = pr->ov[sp->off + (size_t)(y - sp->ia)];

			/* CA adds u itself to a row it covers */
			col[(size_t)y * nk + (size_t)key] += f == 1 ? u : f * u;
		}
	}
}

/* Adds count of source bucket b, spread as span__spread_cells spreads it,
 * to rows[nbuckets]. */
static void span__add(const struct prep *pr, size_t b, double count, int weighted, double *rows)
{
	const struct span *sp = &pr->span[b];
	double wv = weighted ? count * sp->mid : count, u;
	long y;

	if (wv <= 0 || sp->ib < sp->ia)
		return;
	if (sp->whole) {
		rows[sp->ia] += wv;
		return;
	}
	u = sp->r * wv;
	for (y = sp->ia; y <= sp->ib; y++) {
		double f = pr->ov[sp->off + (size_t)(y - sp->ia)];

		rows[y] += f == 1 ? u : f * u;
	}
}

void span__ca_rest(const struct prep *pr, const struct dist_cell *c, size_t n, const long *sel,
		   size_t nsel, int weighted, double *tot, size_t ntab, double *row, double *sub,
		   double *rest)
{
	size_t nb = (size_t)pr->nbuckets, i, b, k;

	memset(row, 0, nb * sizeof(*row));
	/* CA's total: the keys' counts summed per bucket, spread in bucket
	 * order */
	for (i = 0; i < n; i++)
		if (c[i].count > 0)
			tot[c[i].bucket] += c[i].count;
	for (b = 0; b < ntab; b++)
		if (tot[b] > 0) {
			span__add(pr, b, tot[b], weighted, row);
			tot[b] = 0;
		}
	for (k = 0; k < nsel; k++) {
		memset(sub, 0, nb * sizeof(*sub));
		for (i = 0; sel[k] >= 0 && i < n; i++)
			if ((long)c[i].key == sel[k] && c[i].count > 0)
				span__add(pr, c[i].bucket, c[i].count, weighted, sub);
		for (b = 0; b < nb; b++) {
			row[b] -= sub[b];
			if (row[b] < 0.001)
				row[b] = 0;
		}
	}
	for (b = 0; b < nb; b++)
		rest[b] += row[b];
}

long keyset__rest_layer(const struct keyset *ks)
{
	size_t l;

	for (l = 0; ks->named && l < ks->nlayers; l++)
		if (!ks->layer_name[l])
			return (long)l;
	return -1;
}

static int cmp_key(const void *k, const void *e)
{
	return strcmp(k, *(char *const *)e);
}

/* Overwrites the rest layer of lv ([ncols][nbuckets][nl]) with CA's. 0 or
 * -ENOMEM. */
static int ca_rest_layers(const struct heatmap_input *in, const struct heatmap_params *p,
			  const struct prep *pr, size_t ncols, size_t nl, long rl, double *lv)
{
	const struct dist_window *w = in->w;
	size_t nb = (size_t)pr->nbuckets, c, s, y, i;
	long *sel = calloc(p->nselected ? p->nselected : 1, sizeof(*sel));
	double *tot = calloc(w->nbuckets ? w->nbuckets : 1, sizeof(*tot));
	double *row = malloc(nb * 3 * sizeof(*row));
	int err = -ENOMEM;

	if (!sel || !tot || !row)
		goto out;
	for (i = 0; i < p->nselected; i++) {
		char **k = bsearch(p->selected[i], w->keys, w->nkeys, sizeof(*w->keys), cmp_key);

		sel[i] = k ? (long)(k - w->keys) : -1;
	}
	for (c = 0; c < ncols; c++) {
		size_t s0 = c * in->nslots / ncols, s1 = (c + 1) * in->nslots / ncols, n;
		double *rest = row + 2 * nb;

		memset(rest, 0, nb * sizeof(*rest));
		for (s = s0; s < s1; s++) {
			const struct dist_cell *cl = cells_of(in, s, &n);

			span__ca_rest(pr, cl, n, sel, p->nselected, p->weights == WEIGHTS_WEIGHT, tot,
				      w->nbuckets, row, row + nb, rest);
		}
		for (y = 0; y < nb; y++)
			lv[(c * nb + y) * nl + (size_t)rl] = rest[y];
	}
	err = 0;
out:
	free(sel);
	free(tot);
	free(row);
	return err;
}

static void spread_slots(const struct heatmap_input *in, const struct prep *pr, size_t s0,
			 size_t s1, int weighted, double *col)
{
	const struct dist_cell *c;
	size_t s, n;

	for (s = s0; s < s1; s++) {
		c = cells_of(in, s, &n);
		span__spread_cells(pr, c, n, weighted, col);
	}
}

/* ---- colour ------------------------------------------------------------ */

void hue_tab__init(struct hue_tab *t, double h)
{
	double hp = fmod(h, 360) / 60;

	t->k = 1 - fabs(fmod(hp, 2) - 1);
	t->h = fmod(h, 360);
	t->ca_i = (int)floor(t->h / 60);
	t->ca_f = t->h / 60 - t->ca_i;
	t->sextant = hp < 1 ? 0 : hp < 2 ? 1 : hp < 3 ? 2 : hp < 4 ? 3 : hp < 5 ? 4 : 5;
}

void heatmap__hue_rgb(int hue, double intensity, uint8_t rgb[3])
{
	struct hue_tab t;
	double c[3];
	int i;

	hue_tab__init(&t, hue);
	hue_tab__ca_rgb(&t, fmin(1, fmax(0, intensity)), c);
	for (i = 0; i < 3; i++)
		rgb[i] = (uint8_t)c[i];
}

void distinct__free(struct distinct *d)
{
	free(d->bits);
	free(d->mult);
	free(d->le);
	memset(d, 0, sizeof(*d));
}

/* d's table (its own, released by distinct__free) grows as needed; a
 * zeroed d is an empty one. */
int distinct__add_n(struct distinct *d, double v, uint64_t k)
{
	uint64_t bits;
	size_t i;

	memcpy(&bits, &v, sizeof(bits));
	if ((d->n + 1) * 2 > d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct distinct nd = { calloc(cap, sizeof(uint64_t)), calloc(cap, sizeof(uint64_t)),
				       NULL, cap, d->n, d->total };

		if (!nd.bits || !nd.mult) {
			distinct__free(&nd);
			return -ENOMEM;
		}
		for (i = 0; i < d->cap; i++)
			if (d->bits[i]) {
				size_t j = distinct__slot(&nd, d->bits[i]);

				nd.bits[j] = d->bits[i];
				nd.mult[j] = d->mult[i];
			}
		distinct__free(d);
		*d = nd;
	}
	i = distinct__slot(d, bits);
	if (!d->bits[i]) {
		d->bits[i] = bits;
		d->n++;
	}
	d->mult[i] += k;
	d->total += k;
	return 0;
}

uint64_t distinct__mult(const struct distinct *d, double v)
{
	uint64_t bits;
	size_t i;

	if (!d->cap)
		return 0;
	memcpy(&bits, &v, sizeof(bits));
	i = distinct__slot(d, bits);
	return d->bits[i] ? d->mult[i] : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts the values and records how many cells hold each one or less
 * (d->le, d's). */
int distinct__rank(struct distinct *d)
{
	double *v = malloc((d->n ? d->n : 1) * sizeof(*v));
	uint64_t cum = 0;
	size_t i, n = 0;

	free(d->le);
	d->le = calloc(d->cap ? d->cap : 1, sizeof(*d->le));
	if (!v || !d->le) {
		free(v);
		return -ENOMEM;
	}
	for (i = 0; i < d->cap; i++)
		if (d->bits[i])
			memcpy(&v[n++], &d->bits[i], sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_double);
	for (i = 0; i < n; i++) {
		uint64_t bits;
		size_t j;

		memcpy(&bits, &v[i], sizeof(bits));
		j = distinct__slot(d, bits);
		cum += d->mult[j];
		d->le[j] = cum;
	}
	free(v);
	return 0;
}

/* CA's rank level: (n - i) / n with i the first position of v among the n
 * values sorted in descending order, i.e. the cells at or below v over n. */
double distinct__intensity(const struct distinct *d, double v)
{
	uint64_t bits;

	if (!d->total || !d->le)
		return 0;
	memcpy(&bits, &v, sizeof(bits));
	return (double)d->le[distinct__slot(d, bits)] / (double)d->total;
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
static int adopt_keys(struct heatmap *hm, const struct keyset *ks)
{
	size_t i;
	bool failed = false;

	hm->present = json_array();
	hm->keys = calloc(ks->ndrawn, sizeof(*hm->keys));
	hm->key_layer = calloc(ks->ndrawn, sizeof(*hm->key_layer));
	hm->layers = calloc(ks->nlayers ? ks->nlayers : 1, sizeof(*hm->layers));
	if (!hm->present || !hm->keys || !hm->key_layer || !hm->layers)
		return -ENOMEM;
	for (i = 0; i < ks->npresent; i++)
		if (json_array_append_new(hm->present, json_string(ks->present[i])))
			return -ENOMEM;
	for (i = 0; i < ks->ndrawn; i++) {
		hm->keys[i] = str__dup_or_null(ks->named ? ks->drawn_name[i] : NULL, &failed);
		hm->key_layer[i] = ks->drawn_layer[i];
		hm->nkeys = i + 1;
	}
	for (i = 0; i < ks->nlayers; i++) {
		hm->layers[i].hue = ks->layer_hue[i];
		hm->layers[i].name = str__dup_or_null(ks->layer_name[i], &failed);
		hm->nlayers = i + 1;
	}
	return failed ? -ENOMEM : 0;
}

bool keyset__layers_are_keys(const size_t *key_layer, size_t nkeys, size_t nl)
{
	size_t k;

	for (k = 0; k < nkeys && key_layer[k] == k; k++)
		;
	return k == nkeys && nkeys == nl;
}

void keyset__layer_values(const double *cells, size_t ncells, const size_t *key_layer, size_t nkeys,
		  size_t nl, double *lv)
{
	size_t c, k;

	for (c = 0; c < ncells; c++)
		for (k = 0; k < nkeys; k++)
			lv[c * nl + key_layer[k]] += cells[c * nkeys + k];
}

int distinct__collect(const double *vals, size_t ncells, size_t nl, enum heatmap_coloring coloring,
		   struct distinct *dv, double *max, double *max_total)
{
	double last = 0;
	uint64_t run = 0;
	size_t c, l;

	for (c = 0; c < ncells; c++) {
		const double *cl = vals + c * nl;
		double total = 0;

		for (l = 0; l < nl; l++) {
			double v = cl[l];

			if (v > 0) {
				/* a source bucket spread over several rows gives
				 * them one value: add the run at once */
				if (coloring == COLORING_RANK) {
					if (v != last) {
						if (run && distinct__add_n(dv, last, run))
							return -ENOMEM;
						last = v;
						run = 0;
					}
					run++;
				}
				if (v > *max)
					*max = v;
				total += v;
			}
		}
		if (total > *max_total)
			*max_total = total;
	}
	if (run && distinct__add_n(dv, last, run))
		return -ENOMEM;
	return 0;
}

/* A layer's normalized level in a cell: CA's rank among the non-zero
 * cells, or CA's linear v / max(1, max). last/last_in cache the previous value's. */
static double cell_level(double v, enum heatmap_coloring coloring, double max,
			 const struct distinct *dv, double *last, double *last_in)
{
	if (coloring == COLORING_LINEAR)
		return v / fmax(1, max);
	if (v != *last) {
		*last_in = distinct__intensity(dv, v);
		*last = v;
	}
	return *last_in;
}

int hue_tab__colour_cells(const double *vals, size_t ncells, size_t nl, enum heatmap_coloring coloring,
		  double max, const struct distinct *dv, const struct hue_tab *ht, uint8_t *cellrgb,
		  float *levels)
{
	double last = 0, last_in = 0, *in_ = malloc((nl ? nl : 1) * sizeof(*in_));
	size_t c, l, b;

	if (!in_)
		return -ENOMEM;
	for (c = 0; c < ncells; c++) {
		double total = 0, rgb[3] = { 0, 0, 0 }, one[3], level = 0, tl = 0;
		const double *cl = vals + c * nl;

		for (l = 0; l < nl; l++)
			total += cl[l];
		if (total <= 0) {
			memset(cellrgb + c * 3, 255, 3);
			if (levels)
				levels[c] = 0;
			continue;
		}
		/* CA (node-heatmap generate): the layers' colours weighed by their
		 * normalized levels, summed in layer order and truncated */
		for (l = 0; l < nl; l++) {
			in_[l] = 0;
			if (cl[l] <= 0)
				continue;
			in_[l] = cell_level(cl[l], coloring, max, dv, &last, &last_in);
			tl += in_[l];
			level += cl[l] / total * in_[l];
		}
		for (l = 0; l < nl; l++) {
			if (cl[l] <= 0)
				continue;
			hue_tab__ca_rgb(&ht[l], in_[l], one);
			for (b = 0; b < 3; b++)
				rgb[b] += one[b] * (in_[l] / tl);
		}
		for (b = 0; b < 3; b++)
			cellrgb[c * 3 + b] = (uint8_t)fmin(255, fmax(0, rgb[b]));
		if (levels)
			levels[c] = (float)level;
	}
	free(in_);
	return 0;
}

int heatmap__paint(uint8_t *rgb, int width, int height, int nbuckets, size_t ncols,
		  const uint8_t *const *colrgb)
{
	size_t *colx = malloc((size_t)width * sizeof(*colx));
	size_t *rowb = malloc((size_t)height * sizeof(*rowb));
	int x, y, err = -ENOMEM;

	if (!colx || !rowb)
		goto out;
	heatmap__cell_map(width, ncols, colx);
	heatmap__cell_map(height, (size_t)nbuckets, rowb);
	for (y = 0; y < height; y++) {
		/* rows from the top: rowb[y] counts y-buckets down from ymax */
		size_t bk = (size_t)nbuckets - 1 - rowb[y];
		uint8_t *row = rgb + (size_t)y * width * 3;

		if (y && rowb[y] == rowb[y - 1]) {
			/* rows of one y-bucket are alike */
			memcpy(row, row - (size_t)width * 3, (size_t)width * 3);
			continue;
		}
		for (x = 0; x < width; x++)
			memcpy(row + (size_t)x * 3, colrgb[colx[x]] + bk * 3, 3);
	}
	err = 0;
out:
	free(colx);
	free(rowb);
	return err;
}

int heatmap__build(const struct heatmap_input *in, const struct heatmap_params *p,
		   struct heatmap **out)
{
	struct prep pr = { 0 };
	struct heatmap *hm = NULL;
	struct distinct dv = { 0 };
	struct hue_tab *ht = NULL;
	const uint8_t **colrgb = NULL;
	size_t c, l, ncells, nl;
	long rl;
	double *lv = NULL;
	uint8_t *cellrgb = NULL;
	int err;

	last_error[0] = 0;
	err = heatmap__check_params(in, p);
	if (err)
		return err;
	err = prep__build(in, p, &pr);
	if (err)
		goto err_free;

	hm = calloc(1, sizeof(*hm));
	if (!hm)
		goto err_nomem;
	hm->width = p->width;
	hm->height = p->height;
	hm->nbuckets = pr.nbuckets;
	hm->nslots = in->nslots;
	hm->granularity = in->w->granularity;
	hm->ncols = in->nslots < (size_t)p->width ? in->nslots : (size_t)p->width;
	hm->ymin = pr.ymin;
	hm->ymax = pr.ymax;
	err = adopt_keys(hm, &pr.ks);
	if (err)
		goto err_free;

	nl = hm->nlayers ? hm->nlayers : 1;
	hm->col_start = calloc(hm->ncols, sizeof(*hm->col_start));
	hm->col_nslots = calloc(hm->ncols, sizeof(*hm->col_nslots));
	ncells = hm->ncols * (size_t)hm->nbuckets;
	hm->cells = calloc(ncells * (hm->nkeys ? hm->nkeys : 1), sizeof(*hm->cells));
	hm->level = calloc(ncells, sizeof(*hm->level));
	hm->rgb = malloc((size_t)hm->width * hm->height * 3);
	cellrgb = malloc(ncells * 3);
	ht = calloc(nl, sizeof(*ht));
	colrgb = malloc(hm->ncols * sizeof(*colrgb));
	if (!hm->col_start || !hm->col_nslots || !hm->cells || !hm->level || !hm->rgb ||
	    !cellrgb || !ht || !colrgb)
		goto err_nomem;

	/* columns: when there are more slots than pixels, neighbours merge */
	for (c = 0; c < hm->ncols; c++) {
		size_t s0 = c * in->nslots / hm->ncols, s1 = (c + 1) * in->nslots / hm->ncols;

		hm->col_start[c] = dist_window__slot_start(in->w, in->first + s0);
		hm->col_nslots[c] = s1 - s0;
		spread_slots(in, &pr, s0, s1, p->weights == WEIGHTS_WEIGHT,
			     hm->cells + c * (size_t)hm->nbuckets * hm->nkeys);
	}

	/* per-layer cell values and the set they are normalised against; when
	 * every key is a layer of its own (decompose_all, or one key) they are
	 * the cells themselves */
	rl = keyset__rest_layer(&pr.ks);
	if (rl >= 0 || !keyset__layers_are_keys(hm->key_layer, hm->nkeys, nl)) {
		lv = calloc(ncells * nl, sizeof(*lv));
		if (!lv)
			goto err_nomem;
		keyset__layer_values(hm->cells, ncells, hm->key_layer, hm->nkeys, nl, lv);
		/* the rest as CA computes it, to the last bit */
		if (rl >= 0 && ca_rest_layers(in, p, &pr, hm->ncols, nl, rl, lv))
			goto err_nomem;
	}
	if (distinct__collect(lv ? lv : hm->cells, ncells, nl, p->coloring, &dv, &hm->max,
			   &hm->max_total))
		goto err_nomem;
	if (p->coloring == COLORING_RANK && distinct__rank(&dv))
		goto err_nomem;
	for (l = 0; l < hm->nlayers; l++)
		hue_tab__init(&ht[l], hm->layers[l].hue);
	if (hue_tab__colour_cells(lv ? lv : hm->cells, ncells, nl, p->coloring, hm->max, &dv, ht,
				  cellrgb, hm->level))
		goto err_nomem;
	for (c = 0; c < hm->ncols; c++)
		colrgb[c] = cellrgb + c * (size_t)hm->nbuckets * 3;
	if (heatmap__paint(hm->rgb, hm->width, hm->height, hm->nbuckets, hm->ncols, colrgb))
		goto err_nomem;
	*out = hm;
	hm = NULL;
	err = 0;
	goto out;

err_nomem:
	err = -ENOMEM;
err_free:
	heatmap__free(hm);
out:
	distinct__free(&dv);
	free(ht);
	free(colrgb);
	free(cellrgb);
	free(lv);
	prep__free(&pr);
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

int heatmap__details(const struct heatmap_input *in, const struct heatmap_params *p,
		     int x, int y, json_t **out)
{
	const struct dist_window *w = in->w;
	struct prep pr = { 0 };
	size_t ncols, col, bk, s0, s1, s, k, nk = w->decomposed && w->nkeys ? w->nkeys : 1;
	double *colv = NULL, *cav = NULL, size, bymin, bymax, total = 0, ctotal = 0;
	json_t *o = NULL, *present = NULL, *cell = NULL;
	int err;

	last_error[0] = 0;
	err = heatmap__check_params(in, p);
	if (err)
		return err;
	if (x < 0 || y < 0 || x >= p->width || y >= p->height) {
		set_error("pixel (%d, %d): outside the %dx%d image", x, y, p->width, p->height);
		return -ERANGE;
	}
	err = prep__build(in, p, &pr);
	if (err)
		goto out;
	err = -ENOMEM;
	/* the cell drawn at the pixel (CA's samplerange rounds differently
	 * where width / duration or height / nbuckets is not whole, and can
	 * name the neighbouring second or bucket) */
	ncols = in->nslots < (size_t)p->width ? in->nslots : (size_t)p->width;
	col = heatmap__pixel_cell(p->width, ncols, x);
	bk = (size_t)pr.nbuckets - 1 - heatmap__pixel_cell(p->height, (size_t)pr.nbuckets, y);
	s0 = col * in->nslots / ncols;
	s1 = (col + 1) * in->nslots / ncols;
	colv = calloc((size_t)pr.nbuckets * (pr.ks.ndrawn ? pr.ks.ndrawn : 1), sizeof(*colv));
	cav = calloc(nk, sizeof(*cav));
	present = json_object();
	cell = json_object();
	if (!colv || !cav || !present || !cell)
		goto out;
	/* kvmscope's cell: the drawn keys, as the image spreads them */
	spread_slots(in, &pr, s0, s1, p->weights == WEIGHTS_WEIGHT, colv);
	for (k = 0; k < pr.ks.ndrawn; k++) {
		double v = colv[bk * pr.ks.ndrawn + k];

		ctotal += v;
		if (v > 0 && pr.ks.named && json_object_set_new(cell, pr.ks.drawn_name[k], number(v)))
			goto out;
	}
	/* CA's counts: every key, its count re-bucketed over the rounded
	 * bucket bounds, max(1, round(v)) where it is not 0 */
	size = (pr.ymax - pr.ymin) / pr.nbuckets;
	bymin = round(pr.ymin + (double)bk * size);
	bymax = round(pr.ymin + (double)(bk + 1) * size);
	for (s = s0; s < s1; s++) {
		size_t n, i;
		const struct dist_cell *c = cells_of(in, s, &n);

		for (i = 0; i < n; i++) {
			const struct dist_bucket *db = &w->buckets[c[i].bucket];

			ca__bucketize(&cav[w->decomposed && w->nkeys ? c[i].key : 0], 1, bymin, bymax,
				      db->lo, db->hi, c[i].count, false);
		}
	}
	for (k = 0; k < nk; k++) {
		double v = cav[k] ? fmax(1, round(cav[k])) : 0;

		total += v;
		if (v && w->decomposed && w->nkeys &&
		    json_object_set_new(present, w->keys[k], json_integer((json_int_t)v)))
			goto out;
	}
	o = json_pack("{sI sI sI sO sI sI s o s o sO s o}",
		      "bucket_time", (json_int_t)dist_window__slot_start(w, in->first + s0),
		      "bucket_ymin", (json_int_t)bymin, "bucket_ymax", (json_int_t)bymax,
		      "present", present, "total", (json_int_t)total,
		      "bucket_duration", (json_int_t)((int64_t)(s1 - s0) * w->granularity),
		      "bucket_min", number(pr.ymin + (double)bk * pr.step),
		      "bucket_max", number(bk == (size_t)pr.nbuckets - 1 ? pr.ymax :
					   pr.ymin + (double)(bk + 1) * pr.step),
		      "cell_present", cell, "cell_total", number(ctotal));
	if (!o)
		goto out;
	*out = o;
	err = 0;
out:
	json_decref(present);
	json_decref(cell);
	free(colv);
	free(cav);
	prep__free(&pr);
	return err;
}

/* ---- average and percentiles ------------------------------------------- */

/* pct < 0 asks for the average. */
static int summarize(const struct heatmap_input *in, const struct heatmap_params *p,
		     double pct, json_t **out)
{
	const struct dist_window *w;
	struct keyset ks = { 0 };
	const struct dist_cell **order = NULL;
	size_t *cnt = NULL;
	json_t *arr = NULL;
	size_t s, i, n, m, nb;
	int err;

	last_error[0] = 0;
	if (!p || check_input(in)) {
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
	w = in->w;
	nb = w->nbuckets;
	err = keyset__build(in, p, &ks);
	if (err)
		goto out;
	arr = json_array();
	cnt = malloc((nb + 1) * sizeof(*cnt));
	if (!arr || !cnt)
		goto err_nomem;
	for (s = 0; s < in->nslots; s++) {
		const struct dist_cell *c = cells_of(in, s, &n);
		double total = 0, sum = 0, cum = 0, target, v = NAN;
		json_t *pt;

		for (i = 0, m = 0; i < n; i++) {
			if (ks.drawn[c[i].key] < 0 || c[i].count <= 0)
				continue;
			total += c[i].count;
			sum += c[i].count * midpoint(&w->buckets[c[i].bucket]);
			m++;
		}
		if (total > 0 && pct < 0) {
			v = sum / total;
		} else if (total > 0) {
			/* the drawn cells by bucket (ascending lo, hi), keys in
			 * order within a bucket: a counting sort */
			const struct dist_cell **no = realloc(order, m * sizeof(*order));

			if (!no)
				goto err_nomem;
			order = no;
			memset(cnt, 0, (nb + 1) * sizeof(*cnt));
			for (i = 0; i < n; i++)
				if (ks.drawn[c[i].key] >= 0 && c[i].count > 0)
					cnt[c[i].bucket + 1]++;
			for (i = 1; i <= nb; i++)
				cnt[i] += cnt[i - 1];
			for (i = 0; i < n; i++)
				if (ks.drawn[c[i].key] >= 0 && c[i].count > 0)
					order[cnt[c[i].bucket]++] = &c[i];
			target = pct / 100 * total;
			for (i = 0; i < m; i++) {
				const struct dist_bucket *b = &w->buckets[order[i]->bucket];
				double bc = order[i]->count;

				if (cum + bc >= target || i == m - 1) {
					double f = fmin(1, fmax(0, (target - cum) / bc));

					v = dist_bucket__is_point(b) ? b->lo : b->lo + f * (b->hi - b->lo);
					break;
				}
				cum += bc;
			}
		}
		pt = json_pack("[I o]", (json_int_t)dist_window__slot_start(w, in->first + s),
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
	free(order);
	free(cnt);
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
