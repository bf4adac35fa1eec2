/* Heatmaps of numeric distributions, drawn the way Cloud Analytics drew them.
 *
 * x is time (one column per time slot, oldest at the left), y a numeric field
 * (linear buckets over [ymin, ymax], ymax at the top), colour the count in a
 * cell. Decomposition keys get distinct hues on a white background; a cell's
 * saturation grows with its count.
 *
 * The input is a typed window of time slots (engine/window.h): per slot,
 * cells (key, bucket [lo, hi), count) over a key table; the window comes
 * from the engine (instr__window) or from CA raw values
 * (dist_window__add_json). A view of it is drawn: in->nslots slots from
 * in->first.
 *
 * Hues, as CA gives them: hues[0] (default 21) colours everything not drawn
 * in a hue of its own (the undecomposed total, or the sum of the unselected
 * keys); hues[1 + i] colours the i-th selected key (or the i-th key, in key
 * order, with decompose_all); with isolate, the caller's hues[i] colours the
 * i-th selected key (the default sequence still starts it at 112). Missing
 * entries continue the default sequence 21, 112, 203, 294, 25, ... (+91 mod
 * 360).
 *
 * Colours, as CA's: HSV(hue, 0.9 level, 0.95), white where nothing is; rank
 * levels count every non-zero cell of every layer, duplicates included (a
 * value's level is the share of cells at or below it), linear ones are
 * v / max(1, max).
 *
 * Pixels, as CA lays them out: column i covers floor(i * width / ncols) ..
 * floor((i + 1) * width / ncols) - 1, likewise the y-buckets from the top.
 * Where CA would leave data out, kvmscope keeps it: more slots than pixels
 * are merged into width columns, and nbuckets is capped at the height.
 *
 * Auto ymax, as CA's: autoscale (render/ca_math.h) of the data maximum of
 * every key in the window, whatever is drawn; 0 (a white image) when there
 * is none.
 */
#ifndef KVMSCOPE_RENDER_HEATMAP_H
#define KVMSCOPE_RENDER_HEATMAP_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "engine/window.h"

#define HEATMAP_MAX_WIDTH  4096
#define HEATMAP_MAX_HEIGHT 4096
#define HEATMAP_MAX_BUCKETS 1000

struct heatmap_input {
	const struct dist_window *w;	/* borrowed, finished (dist_window__finish) */
	size_t first, nslots;		/* the slots drawn: w's first .. first + nslots - 1 */
};

enum heatmap_coloring { COLORING_RANK, COLORING_LINEAR };
enum heatmap_weights { WEIGHTS_COUNT, WEIGHTS_WEIGHT };

struct heatmap_params {
	int width, height;		/* pixels */
	double ymin, ymax;		/* ymax ignored when auto_ymax */
	int nbuckets;			/* y buckets; capped at height */
	int auto_ymax;
	const char **selected;		/* borrowed keys, drawn in hues[1..] */
	size_t nselected;
	int isolate;			/* draw only the selected keys */
	int exclude;			/* draw everything but the selected keys */
	int decompose_all;		/* every key in a hue of its own */
	const int *hues;		/* borrowed; NULL = default sequence */
	size_t nhues;
	enum heatmap_coloring coloring;
	enum heatmap_weights weights;	/* weight = count x bucket midpoint */
};

/* One layer is drawn in one hue: a key, or several keys summed. */
struct heatmap_layer {
	char *name;			/* owned; NULL for the total / "the rest" */
	int hue;
};

/* A rendered heatmap. Everything it points to is owned by it and released
 * by heatmap__free(). */
struct heatmap {
	int width, height;
	uint8_t *rgb;			/* width * height * 3, row-major from the top */
	double ymin, ymax;		/* ymax after auto_ymax */
	int nbuckets;			/* y buckets used (clamped to height) */
	json_t *present;		/* array of the keys with data, sorted */

	/* The grid behind the pixels, kept for hit-testing (details). */
	size_t ncols;			/* columns of time slots: min(nslots, width) */
	size_t nslots;
	int64_t granularity;
	int64_t *col_start;		/* [ncols] start time of each column */
	size_t *col_nslots;		/* [ncols] slots merged into each column */
	size_t nkeys;			/* drawn keys; 1 unnamed key if undecomposed */
	char **keys;			/* [nkeys] owned; keys[0] NULL if undecomposed */
	size_t *key_layer;		/* [nkeys] layer each key is drawn in */
	size_t nlayers;
	struct heatmap_layer *layers;	/* [nlayers] */
	double *cells;			/* [ncols][nbuckets][nkeys] counts or weights */
	float *level;			/* [ncols][nbuckets] intensity 0..1 of the cell */
	double max;			/* largest per-layer cell value */
	double max_total;		/* largest cell total */
};

/* Defaults: 600x300, 100 buckets, ymin 0, auto ymax, rank colouring, count
 * weights, default hues, nothing selected. */
void heatmap_params__init(struct heatmap_params *p);

/* Hue i of the default sequence: 21, then +91 mod 360. */
int heatmap__default_hue(size_t i);

/* The colour of a cell drawn in hue at intensity 0..1: HSV(hue, intensity, 1),
 * white at 0, the pure hue at 1. */
void heatmap__hue_rgb(int hue, double intensity, uint8_t rgb[3]);

/* CA's autoscale of max; 1 when max <= 0. */
double heatmap__auto_ymax(double max);
/* The automatic ymax of a window whose CA data maximum is max: CA's
 * autoscale, 0 when there is no data; above a raised ymin it rounds the
 * span above ymin (where CA would draw nothing). */
double heatmap__ca_ymax(double max, double ymin);

/* Renders in into a new heatmap. On success *out is the caller's, to be
 * released with heatmap__free(). Returns 0, -EINVAL for bad parameters or
 * a value that is not a numeric distribution (heatmap__last_error() says
 * which), -ENOMEM. */
int heatmap__build(const struct heatmap_input *in, const struct heatmap_params *p,
		   struct heatmap **out);
void heatmap__free(struct heatmap *hm);

/* The cell heatmap__build draws at pixel (x, y), y from the top (y = 0 is
 * ymax), computed from the slots of its column only (and one pass over the
 * cells for the keys and the automatic ymax). *out becomes a new object
 * owned by the caller, CA's fields first:
 *   "bucket_time"             the column's start
 *   "bucket_ymin", "bucket_ymax"  the y-bucket, rounded, ymax exclusive
 *   "present", "total"        CA's counts: every key with data there (the
 *                             selection does not apply), each
 *                             max(1, round(count)) over the rounded bounds
 *                             ({} and the total's own when undecomposed)
 * then kvmscope's:
 *   "bucket_duration"         seconds in the column (slots merged)
 *   "bucket_min", "bucket_max"    the y-bucket's bounds, unrounded
 *   "cell_present", "cell_total"  the drawn keys' values as drawn, with
 *                             fractions (3 decimals) and weights
 * Returns 0, -ERANGE when (x, y) is outside the image, -EINVAL, -ENOMEM. */
int heatmap__details(const struct heatmap_input *in, const struct heatmap_params *p,
		     int x, int y, json_t **out);

/* Per time slot, over the drawn keys (selected/isolate/exclude apply; ymin,
 * ymax and weights do not): the mean of the distribution using bucket
 * midpoints, or its p-th percentile (0 <= p <= 100) interpolated linearly
 * inside the bucket that holds it. *out becomes a new array owned by the
 * caller: [[start_time, value], ...], value null for a slot with no data. */
int heatmap__average(const struct heatmap_input *in, const struct heatmap_params *p,
		     json_t **out);
int heatmap__percentile(const struct heatmap_input *in, const struct heatmap_params *p,
			double pct, json_t **out);

/* The reason for the last -EINVAL from this module in this thread. */
const char *heatmap__last_error(void);

#endif
