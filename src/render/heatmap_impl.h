/* The steps of heatmap__build, shared with the live cache (heatmap_live.c),
 * which runs them per column and keeps what a refresh can reuse. Private to
 * src/render/. */
#ifndef KVMSCOPE_RENDER_HEATMAP_IMPL_H
#define KVMSCOPE_RENDER_HEATMAP_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>

#include "common/hash.h"
#include "render/heatmap.h"

int dist_bucket__is_point(const struct dist_bucket *b);

/* The keys with data in the drawn slots and which of them are drawn, in
 * which layer. */
struct keyset {
	int named;		/* decomposed, with keys in the drawn slots */
	size_t npresent;
	const char **present;	/* [npresent] sorted, borrowed from the window */
	long *drawn;		/* [window keys, or 1] drawn key index, -1 if not drawn */
	size_t ndrawn;
	const char **drawn_name;/* [ndrawn] NULL if undecomposed */
	size_t *drawn_layer;	/* [ndrawn] */
	size_t nlayers;
	int *layer_hue;		/* [nlayers] */
	const char **layer_name;/* [nlayers] NULL for the total / "the rest" */
};

/* How one source bucket lands on the y-buckets, in CA's arithmetic
 * (node-heatmap bucketize): rows ia..ib, row i taking ov[off + i - ia] *
 * (r * count) (a bucket inside one row, or a point: all of it on ia). */
struct span {
	long ia, ib;		/* ib < ia: nothing drawn */
	size_t off;
	double r, mid;		/* 1 / (high - low) in rows; CA's midpoint for weights */
	int whole;
};

/* What a build and a details request share: keys, ymax and the spans. */
struct prep {
	struct keyset ks;
	double ymin, ymax, step;
	int nbuckets;
	struct span *span;	/* [window buckets] */
	double *ov;
};

/* A hue's HSV sextant and the share of its second component, worked out
 * once: the colour at saturation s (value 1) is then a few multiplications. */
struct hue_tab {
	int sextant;
	double k;
	double h;		/* the hue, degrees in [0, 360) */
	int ca_i;		/* CA's floor(h / 60) and h / 60 - that */
	double ca_f;
};

/* CA's colour of a cell at level (0..1] in this hue (node-heatmap
 * generate(): HSV with saturation 0.9 level and value 0.95, each channel
 * rounded half up to 0..255 by convertHSVToRGB's sextant formula); white
 * at level 0. */
static inline void hue_tab__ca_rgb(const struct hue_tab *t, double level, double rgb[3])
{
	double s = 0.9 * level, v = 0.95, f = t->ca_f, p, q, u, r, g, b;
	int i = t->ca_i;

	if (level <= 0) {
		rgb[0] = rgb[1] = rgb[2] = 255;
		return;
	}
	p = v * (1 - s);
	q = v * (1 - s * f);
	u = v * (1 - s * (1 - f));
	switch (i) {
	case 0: r = v; g = u; b = p; break;
	case 1: r = q; g = v; b = p; break;
	case 2: r = p; g = v; b = u; break;
	case 3: r = p; g = q; b = v; break;
	case 4: r = u; g = p; b = v; break;
	default: r = v; g = p; b = q; break;
	}
	rgb[0] = floor(r * 255 + 0.5);
	rgb[1] = floor(g * 255 + 0.5);
	rgb[2] = floor(b * 255 + 0.5);
}

static inline void hue_tab__rgb(const struct hue_tab *t, double s, double v, double rgb[3])
{
	double c = v * s, x = c * t->k, m = v - c, r = 0, g = 0, b = 0;

	switch (t->sextant) {
	case 0: r = c; g = x; break;
	case 1: r = x; g = c; break;
	case 2: g = c; b = x; break;
	case 3: g = x; b = c; break;
	case 4: r = x; b = c; break;
	default: r = c; b = x; break;
	}
	rgb[0] = r + m;
	rgb[1] = g + m;
	rgb[2] = b + m;
}

/* The non-zero cell values, for rank colouring (CA's normalize(): every
 * non-zero cell of every layer counts, duplicates included, and a value's
 * level is the share of those cells at or below it). An open-addressing
 * hash of the distinct values' bit patterns with how many cells hold each;
 * after ranking, le[i] is how many cells hold a value <= vals[i]. */
struct distinct {
	uint64_t *bits;		/* [cap] 0 = empty slot (0.0 is never stored) */
	uint64_t *mult;		/* [cap] cells holding the value */
	uint64_t *le;		/* [cap] after distinct__rank */
	size_t cap, n;		/* n distinct values */
	uint64_t total;		/* cells, duplicates included */
};

static inline size_t distinct__slot(const struct distinct *d, uint64_t bits)
{
	/* whole numbers have all-zero low mantissa bits: mix them all in */
	size_t i = (size_t)hash__mix64(bits) & (d->cap - 1);

	while (d->bits[i] && d->bits[i] != bits)
		i = (i + 1) & (d->cap - 1);
	return i;
}

/* The pixels of an image side of npix pixels that each of its ncells cells
 * (columns, or y-buckets from the top) fills, as CA's generate() lays them
 * out: cell i covers floor(i * npix / ncells) .. floor((i + 1) * npix /
 * ncells) - 1 in double arithmetic, the last one up to the edge. ncells <=
 * npix (kvmscope merges columns and caps buckets beyond that), so every
 * cell has a pixel. map[pixel] = cell. */
static inline void heatmap__cell_map(int npix, size_t ncells, size_t *map)
{
	double bw = (double)npix / (double)ncells;
	size_t i;
	long x;

	for (i = 0; i < ncells; i++) {
		long x0 = (long)floor((double)i * bw);
		long x1 = i + 1 == ncells ? npix : (long)floor((double)(i + 1) * bw);

		for (x = x0; x < x1 && x < npix; x++)
			map[x] = i;
	}
}

/* The cell of one pixel under heatmap__cell_map's layout. */
static inline size_t heatmap__pixel_cell(int npix, size_t ncells, long pixel)
{
	double bw = (double)npix / (double)ncells;
	size_t i = (size_t)((double)pixel / bw);

	if (i >= ncells)
		i = ncells - 1;
	while (i + 1 < ncells && (long)floor((double)(i + 1) * bw) <= pixel)
		i++;
	while (i > 0 && (long)floor((double)i * bw) > pixel)
		i--;
	return i;
}

/* -EINVAL (with the reason for heatmap__last_error) for parameters or an
 * input heatmap__build refuses. */
int heatmap__check_params(const struct heatmap_input *in, const struct heatmap_params *p);
void keyset__free(struct keyset *ks);
int keyset__from_seen(const struct heatmap_params *p, size_t nk, const char *const *names,
		      const unsigned char *seen, const size_t *order, struct keyset *ks);
void prep__free(struct prep *pr);
int prep__spans(struct prep *pr, const struct dist_bucket *buckets, size_t nb);
/* Adds n cells to col ([nbuckets][ndrawn]), each source bucket in proportion
 * to its overlap with each y-bucket. */
void span__spread_cells(const struct prep *pr, const struct dist_cell *c, size_t n, int weighted,
		  double *col);
/* CA's layer of "the rest" (caAggrValueHeatmapImage: the total
 * bucketized, less each selected key's map, node-heatmap deduct() zeroing
 * what falls below 0.001) for one slot's cells c[n], added to
 * rest[nbuckets]. sel[i]: selected key i's index in c's key numbering, -1
 * when it is absent. Scratch: tot[ntab] (the bucket table's size) zeroed,
 * left zeroed; row, sub [nbuckets]. */
void span__ca_rest(const struct prep *pr, const struct dist_cell *c, size_t n, const long *sel,
		   size_t nsel, int weighted, double *tot, size_t ntab, double *row, double *sub,
		   double *rest);
/* The layer of the rest in ks, or -1 when there is none. */
long keyset__rest_layer(const struct keyset *ks);
void hue_tab__init(struct hue_tab *t, double h);
/* Adds k cells holding v. 0 or -ENOMEM. */
int distinct__add_n(struct distinct *d, double v, uint64_t k);
/* Cells holding v (0 when none). */
uint64_t distinct__mult(const struct distinct *d, double v);
int distinct__rank(struct distinct *d);
double distinct__intensity(const struct distinct *d, double v);
void distinct__free(struct distinct *d);
/* CA's running maximum of a window (node-heatmap bucketize with no max):
 * over the slots in time order and each slot's buckets in ascending order,
 * a bucket whose inclusive upper bound (hi - 1) exceeds the maximum so far
 * raises it to hi. */
static inline double ca__max_step(double m, const struct dist_bucket *b)
{
	double top = dist_bucket__is_point(b) ? b->lo + 1 : b->hi;

	return top - 1 > m ? top : m;
}

/* Every key a layer of its own, in order: the cells are the layer values. */
bool keyset__layers_are_keys(const size_t *key_layer, size_t nkeys, size_t nl);
/* lv ([ncells][nl], zeroed) = cells ([ncells][nkeys]) summed by layer. */
void keyset__layer_values(const double *cells, size_t ncells, const size_t *key_layer, size_t nkeys,
		  size_t nl, double *lv);
/* Adds the non-zero values of vals ([ncells][nl]) to dv (rank colouring)
 * and raises *max (largest value) and *max_total (largest cell total). 0 or
 * -ENOMEM. */
int distinct__collect(const double *vals, size_t ncells, size_t nl, enum heatmap_coloring coloring,
		   struct distinct *dv, double *max, double *max_total);
/* The colour (and, when levels is not NULL, the intensity) of each cell.
 * 0 or -ENOMEM. */
int hue_tab__colour_cells(const double *vals, size_t ncells, size_t nl, enum heatmap_coloring coloring,
		  double max, const struct distinct *dv, const struct hue_tab *ht, uint8_t *cellrgb,
		  float *levels);
/* The pixels: column c's cell colours are colrgb[c] ([nbuckets][3]).
 * 0 or -ENOMEM. */
int heatmap__paint(uint8_t *rgb, int width, int height, int nbuckets, size_t ncols,
	   const uint8_t *const *colrgb);

#endif
