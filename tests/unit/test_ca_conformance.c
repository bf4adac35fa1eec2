/* Cloud Analytics conformance of kvmscope's heatmap arithmetic: the numbers
 * CA's own functions (node-heatmap heatmap.js at the commit CA pins, and
 * CA's tests tst.value_average.js, tst.value_percentile.js) compute for the
 * same inputs, written here as literals: the pixel rows of CA's images
 * (caAggrValueHeatmapImage with a PNG encoder that hands back the RGB
 * bytes), its details and its arithmetic. The distributions are synthetic by
 * nature: these test arithmetic, not collection. Buckets are passed
 * half-open ([lo, hi_inclusive + 1)), as kvmscope keeps them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/merge.h"
#include "engine/window.h"
#include "render/ca_math.h"
#include "render/heatmap.h"

/* U1: autoscale, CA's table (input: the largest inclusive hi + 1) */
static void test_ca_autoscale_synthetic(void **state)
{
	static const double in[] = { 1, 2, 3, 5, 7, 8, 9, 10, 11, 12, 50, 99, 100, 101, 120, 125,
				     200, 870, 999, 1000, 1001, 1150, 1250, 4096, 10000, 12345,
				     40000, 45000 };
	static const double want[] = { 1, 2, 3, 6, 8, 8, 10, 12, 12, 14, 60, 100, 120, 120, 140,
				       140, 220, 1000, 1000, 1200, 1200, 1200, 1400, 5000, 12000,
				       14000, 42000, 50000 };

	(void)state;
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		assert_true(ca__autoscale(in[i]) == want[i]);
	}
	assert_true(ca__autoscale(0) == 0);	/* an empty window: ymax 0 */
}

struct cab { double lo, hi_incl, n; };

static void bucketize(double *b, int nb, double min, double max, const struct cab *d,
		      size_t n, bool weigh)
{
	memset(b, 0, sizeof(*b) * (size_t)nb);
	for (size_t i = 0; i < n; i++)
		ca__bucketize(b, nb, min, max, d[i].lo, d[i].hi_incl + 1, d[i].n, weigh);
}

static void assert_buckets(const double *b, const double *want, int nb)
{
	for (int i = 0; i < nb; i++) {
		if (fabs(b[i] - want[i]) > 1e-9 * (1 + fabs(want[i])))
			fail_msg("bucket %d: %.17g, CA %.17g", i, b[i], want[i]);
	}
}

/* U2: bucketize, node-heatmap's tests/test-bucketize.js and vec1.txt */
static void test_ca_bucketize_synthetic(void **state)
{
	const struct cab a[] = { { 0, 19, 10 }, { 20, 29, 20 }, { 30, 99, 60 } };
	const struct cab c[] = { { 0, 9, 10 }, { 10, 19, 20 }, { 20, 29, 60 } };
	const struct cab ones[] = { { 0, 0, 1 }, { 1, 1, 1 }, { 2, 2, 1 } };
	const struct cab w[] = { { 10, 19, 2 }, { 20, 29, 1 } };
	const struct cab wide[] = { { 0, 99, 100 } };
	const struct cab lat[] = { { 40000, 44999, 10 } };
	double b[10];

	(void)state;
	/* auto max: the largest inclusive hi + 1 = 100, scaled to 120 */
	assert_true(ca__autoscale(100) == 120);
	bucketize(b, 10, 0, 120, a, 3, false);
	assert_buckets(b, (double[]){ 6, 12, 17.142857142857146, 10.285714285714285,
				      10.285714285714285, 10.285714285714285, 10.285714285714285,
				      10.285714285714285, 3.428571428571434, 0 }, 10);
	bucketize(b, 10, 0, 1000, c, 3, false);
	assert_buckets(b, (double[]){ 90, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 10);
	bucketize(b, 7, 0, 35, c, 3, false);
	assert_buckets(b, (double[]){ 5, 5, 10, 10, 30, 30, 0 }, 7);
	bucketize(b, 2, 15, 25, c, 3, false);
	assert_buckets(b, (double[]){ 10, 30 }, 2);
	bucketize(b, 3, 0, 3, ones, 3, false);
	assert_buckets(b, (double[]){ 1, 1, 1 }, 3);
	bucketize(b, 3, 0, 30, w, 2, true);
	assert_buckets(b, (double[]){ 0, 29, 24.5 }, 3);
	bucketize(b, 5, 50, 75, wide, 1, false);
	assert_buckets(b, (double[]){ 5, 5, 5, 5, 5 }, 5);
	bucketize(b, 10, 0, 100000, lat, 1, false);
	assert_buckets(b, (double[]){ 0, 0, 0, 0, 10, 0, 0, 0, 0, 0 }, 10);
	assert_true(ca__autoscale(45000) == 50000);
}

/* U7: node-heatmap's tests/test-percentile.js (min 1, max 101, 10 buckets) */
static void test_ca_percentile_average_synthetic(void **state)
{
	double ten[10], b[10];
	const struct cab s101[] = { { 1, 10, 5 }, { 11, 20, 10 }, { 21, 30, 30 } };

	(void)state;
	for (int i = 0; i < 10; i++)
		ten[i] = 10;
	assert_true(ca__percentile(ten, 10, 1, 101, 0) == 1);
	assert_true(ca__percentile(ten, 10, 1, 101, 0.5) == 51);
	assert_true(ca__percentile(ten, 10, 1, 101, 0.95) == 96);
	assert_true(ca__percentile(ten, 10, 1, 101, 1) == 101);
	assert_true(ca__average(ten, 10, 1, 101) == 51);
	bucketize(b, 10, 1, 101, s101, 3, false);
	assert_true(ca__percentile(b, 10, 1, 101, 0) == 1);
	assert_true(ca__percentile(b, 10, 1, 101, 0.5) == 23.5);
	assert_true(ca__percentile(b, 10, 1, 101, 0.95) == 30.25);
	assert_true(ca__percentile(b, 10, 1, 101, 1) == 31);
	assert_true(ca__average(b, 10, 1, 101) == 21.555555555555557);
}

/* §7.6: the resources' numbers for CA's data sets (nbuckets 5, ymax 50
 * unless auto) */
static void test_ca_value_average_percentile_synthetic(void **state)
{
	const struct cab big[] = { { 1, 100, 100000 } };
	const struct cab d1_100[] = { { 0, 9, 1 }, { 10, 19, 3 }, { 40, 49, 2 } };
	const struct cab d1_101[] = { { 10, 29, 4 } };
	const struct cab clip[] = { { 10, 19, 5 }, { 90, 99, 5 } };
	const struct cab low[] = { { 10, 19, 5 } };
	double b[100], max;

	(void)state;
	/* tst.value_average.js / tst.value_percentile.js: defaults, auto ymax */
	max = ca__autoscale(101);
	assert_true(max == 120);
	bucketize(b, 100, 0, max, big, 1, false);
	assert_true(ca__average(b, 100, 0, max) == 51.00000000000001);
	assert_true(ca__percentile(b, 100, 0, max, 0) == 0);
	assert_true(fabs(ca__percentile(b, 100, 0, max, 0.5) - 51) < 1e-9);
	assert_true(fabs(ca__percentile(b, 100, 0, max, 0.95) - 96) < 1e-9);
	assert_true(ca__percentile(b, 100, 0, max, 1) == 101.99999999999996);
	bucketize(b, 5, 0, 50, d1_100, 3, false);
	assert_true(ca__average(b, 5, 0, 50) == 23.333333333333332);
	assert_true(ca__percentile(b, 5, 0, 50, 0) == 0);
	assert_true(ca__percentile(b, 5, 0, 50, 0.25) == 11.666666666666668);
	assert_true(ca__percentile(b, 5, 0, 50, 0.5) == 16.666666666666664);
	assert_true(ca__percentile(b, 5, 0, 50, 0.9) == 47);
	assert_true(ca__percentile(b, 5, 0, 50, 1) == 50);
	bucketize(b, 5, 0, 50, d1_101, 1, false);
	assert_true(ca__average(b, 5, 0, 50) == 20);
	/* an empty second: average null (NaN), percentile ymin */
	memset(b, 0, sizeof(b));
	assert_true(isnan(ca__average(b, 5, 7, 50)));
	assert_true(ca__percentile(b, 5, 7, 50, 0.5) == 7);
	/* data above ymax is clipped away */
	bucketize(b, 5, 0, 50, clip, 2, false);
	assert_true(ca__average(b, 5, 0, 50) == 15);
	assert_true(ca__percentile(b, 5, 0, 50, 1) == 20);
	/* p 0 with the first bucket empty: CA fails an assertion, kvmscope ymin */
	bucketize(b, 5, 0, 50, low, 1, false);
	assert_true(ca__percentile(b, 5, 0, 50, 0) == 0);
}

/* §1: raw values on the wire are CA's inclusive [lo, hi]; the fleet reads
 * them back half-open */
static void test_ca_range_notation_synthetic(void **state)
{
	json_t *v = json_loads("{\"a\": [[[250, 260], 1], [[40000, 45000], 3]]}", 0, NULL);
	json_t *d = json_loads("[[[0, 1], 2]]", 0, NULL);
	json_t *n = json_integer(5);
	char *s;

	(void)state;
	assert_int_equal(value__shift_hi(v, -1), 0);
	s = json_dumps(v, JSON_COMPACT);
	assert_string_equal(s, "{\"a\":[[[250,259],1],[[40000,44999],3]]}");
	free(s);
	assert_int_equal(value__shift_hi(v, +1), 0);
	s = json_dumps(v, JSON_COMPACT);
	assert_string_equal(s, "{\"a\":[[[250,260],1],[[40000,45000],3]]}");
	free(s);
	assert_int_equal(value__shift_hi(d, -1), 0);
	s = json_dumps(d, JSON_COMPACT);
	assert_string_equal(s, "[[[0,0],2]]");
	free(s);
	assert_int_equal(value__shift_hi(n, -1), 0);
	assert_int_equal(json_integer_value(n), 5);
	json_decref(v);
	json_decref(d);
	json_decref(n);
}


/* ---- images and details, against CA's own output ---------------------- */

/* A window of CA raw values (kvmscope's half-open notation), one text per
 * slot of granularity g from start; NULL = no data. */
struct win {
	struct dist_window w;
	struct heatmap_input in;
};

static void win_init(struct win *f, int64_t start, int64_t g, size_t n, const char *const *texts)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	dist_window__init(&f->w, start, g);
	for (size_t i = 0; i < n; i++) {
		json_t *v = texts[i] ? json_loads(texts[i], JSON_DECODE_ANY, NULL) : NULL;

		if (texts[i] && !v)
			fail_msg("bad fixture %s", texts[i]);
		if (dist_window__add_json(&f->w, v, err, sizeof(err)))
			fail_msg("fixture refused: %s", err);
		json_decref(v);
	}
	assert_int_equal(dist_window__finish(&f->w), 0);
	f->in = (struct heatmap_input){ &f->w, 0, f->w.nslots };
}

static void params(struct heatmap_params *p, int w, int h, int nb, double ymax)
{
	heatmap_params__init(p);
	p->width = w;
	p->height = h;
	p->nbuckets = nb;
	if (ymax > 0) {
		p->ymax = ymax;
		p->auto_ymax = 0;
	}
}

/* rows[y]: "rrggbb*n rrggbb*m ..." from the left, as CA's pixels */
static void expect_pixels(const struct heatmap *hm, const char *const *rows)
{
	for (int y = 0; y < hm->height; y++) {
		const char *s = rows[y];
		int x = 0;

		while (*s) {
			unsigned int rgb, n = 1;
			int used = 0;

			if (sscanf(s, "%6x*%u%n", &rgb, &n, &used) < 2 && sscanf(s, "%6x%n", &rgb, &used) < 1)
				fail_msg("bad row spec %s", rows[y]);
			for (unsigned int i = 0; i < n; i++, x++) {
				const uint8_t *px = hm->rgb + ((size_t)y * hm->width + x) * 3;
				unsigned int got = (unsigned)px[0] << 16 | (unsigned)px[1] << 8 | px[2];

				if (x >= hm->width || got != rgb)
					fail_msg("pixel (%d, %d): %06x, CA %06x", x, y, got, rgb);
			}
			s += used;
			while (*s == ' ')
				s++;
		}
		if (x != hm->width)
			fail_msg("row %d: %d pixels given, image %d wide", y, x, hm->width);
	}
}

/* Two slots, each 5 pixels wide: rows as (left | right), CA's 10x10 images
 * of 5 buckets, two rows per bucket. */
static void expect_halves(const struct heatmap *hm, const char *const pairs[5][2])
{
	char rows[10][64];
	const char *r[10];

	for (int b = 0; b < 5; b++)
		for (int k = 0; k < 2; k++) {
			snprintf(rows[2 * b + k], sizeof(rows[0]), "%s*5 %s*5", pairs[b][0], pairs[b][1]);
			r[2 * b + k] = rows[2 * b + k];
		}
	expect_pixels(hm, r);
}

#define W "ffffff"

/* d1: t100 [0,9]1 [10,19]3 [40,49]2; t101 [10,29]4 */
static const char *const d1[] = { "[[[0, 10], 1], [[10, 20], 3], [[40, 50], 2]]", "[[[10, 30], 4]]" };
/* d2: t100 {a: [0,9]2, b: [0,9]1 [20,29]5}; t101 {a: [10,19]1, c: [30,39]3} */
static const char *const d2[] = { "{\"a\": [[[0, 10], 2]], \"b\": [[[0, 10], 1], [[20, 30], 5]]}",
				  "{\"a\": [[[10, 20], 1]], \"c\": [[[30, 40], 3]]}" };

static void test_ca_image_undecomposed_synthetic(void **state)
{
	static const char *const rank[5][2] = { { "f28144", W }, { W, W }, { W, "f28144" },
						{ "f26518", "f28144" }, { "f2d6c7", W } };
	static const char *const linear[5][2] = { { "f29461", W }, { W, W }, { W, "f29461" },
						  { "f26518", "f29461" }, { "f2c3aa", W } };
	static const char *const autoy[5][2] = { { "f2cab4", W }, { "f2a176", W }, { W, "f2b695" },
						 { "f27937", "f26518" }, { "f28d57", "f2ded3" } };
	struct heatmap_params p;
	struct heatmap *hm;
	struct win f;

	(void)state;
	win_init(&f, 100, 1, 2, d1);
	/* rank: every non-zero cell counts, duplicates included (3 -> 1,
	 * 2 -> 0.8, 1 -> 0.2) */
	params(&p, 10, 10, 5, 50);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, rank);
	heatmap__free(hm);
	p.coloring = COLORING_LINEAR;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, linear);
	heatmap__free(hm);
	/* no ymax: CA's autoscale of 50 */
	params(&p, 10, 10, 5, 0);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_true(hm->ymax == 60 && hm->ymin == 0 && hm->nbuckets == 5);
	expect_halves(hm, autoy);
	heatmap__free(hm);
	dist_window__free(&f.w);
}

static void test_ca_image_decomposed_synthetic(void **state)
{
	static const char *const plain[5][2] = { { W, W }, { W, "f2884f" }, { "f26518", W },
						 { W, "f2cfbc" }, { "f2884f", W } };
	static const char *const sel_b[5][2] = { { W, W }, { W, "f28144" }, { "35f218", W },
						 { W, "f2ba9b" }, { "d4bf80", W } };
	static const char *const sel_ba[5][2] = { { W, W }, { W, "f28144" }, { "35f218", W },
						  { W, "9bd1f2" }, { "85d4cf", W } };
	static const char *const iso_b[5][2] = { { W, W }, { W, W }, { "35f218", W }, { W, W },
						 { "94f285", W } };
	static const char *const exc_b[5][2] = { { W, W }, { W, "f26518" }, { W, W },
						 { W, "f2c3aa" }, { "f29461", W } };
	static const char *const all[5][2] = { { W, W }, { W, "e144f2" }, { "189ff2", W },
					       { W, "a7f29b" }, { "8be4a3", W } };
	static const char *const white[5][2] = { { W, W }, { W, W }, { W, W }, { W, W }, { W, W } };
	static const char *const hued[5][2] = { { W, W }, { W, "f24444" }, { "1818f2", W },
						{ W, "f29b9b" }, { "cf80a3", W } };
	static const int h0_240[] = { 0, 240 };
	const char *b[] = { "b" }, *ba[] = { "b", "a" }, *zzz[] = { "zzz" };
	struct heatmap_params p;
	struct heatmap *hm;
	struct win f;

	(void)state;
	win_init(&f, 100, 1, 2, d2);
	params(&p, 10, 10, 5, 50);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, plain);
	assert_int_equal(json_array_size(hm->present), 3);
	heatmap__free(hm);
	/* a selected key that is not there adds nothing */
	p.selected = zzz;
	p.nselected = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, plain);
	heatmap__free(hm);
	p.selected = b;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, sel_b);
	heatmap__free(hm);
	p.hues = h0_240;
	p.nhues = 2;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, hued);
	heatmap__free(hm);
	p.hues = NULL;
	p.nhues = 0;
	p.selected = ba;
	p.nselected = 2;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, sel_ba);
	heatmap__free(hm);
	p.selected = b;
	p.nselected = 1;
	p.isolate = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, iso_b);
	heatmap__free(hm);
	p.isolate = 0;
	p.exclude = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, exc_b);
	heatmap__free(hm);
	p.exclude = 0;
	p.nselected = 0;
	p.isolate = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, white);
	heatmap__free(hm);
	p.isolate = 0;
	p.decompose_all = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, all);
	heatmap__free(hm);
	/* CA fails an assertion (500) here: the rest and three keys need 4 */
	p.hues = h0_240;
	p.nhues = 2;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), -EINVAL);
	assert_string_equal(heatmap__last_error(), "need 4 hues");
	dist_window__free(&f.w);
}

/* d1 split over two keys: CA bucketizes the total (and deducts the
 * selected keys from it), so the plain image is d1's to the last bit, where
 * summing the keys' own spreads would differ in the last bits and break a
 * rank tie the other way (CA's output for these, like the others) */
static void test_ca_rest_layer_synthetic(void **state)
{
	static const char *const split[] = {
		"{\"a\": [[[0, 10], 1], [[10, 20], 1]], \"b\": [[[10, 20], 2], [[40, 50], 2]]}",
		"{\"a\": [[[10, 30], 4]]}" };
	static const char *const plain[5][2] = { { "f2cab4", W }, { "f2a176", W }, { W, "f2b695" },
						 { "f27937", "f26518" }, { "f28d57", "f2ded3" } };
	static const char *const sel_a[5][2] = { { "f2c3aa", W }, { "f28449", W }, { W, "74f261" },
						 { "d59e50", "35f218" }, { "9aef89", "c8f2c2" } };
	static const char *const exc_a[5][2] = { { "f2ab85", W }, { "f2884f", W }, { W, W },
						 { "f26518", W }, { "f2cfbc", W } };
	const char *a[] = { "a" };
	struct heatmap_params p;
	struct heatmap *hm;
	struct win f;

	(void)state;
	win_init(&f, 100, 1, 2, split);
	params(&p, 10, 10, 5, 0);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_true(hm->ymax == 60);
	expect_halves(hm, plain);
	heatmap__free(hm);
	p.selected = a;
	p.nselected = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, sel_a);
	heatmap__free(hm);
	p.exclude = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_halves(hm, exc_a);
	heatmap__free(hm);
	dist_window__free(&f.w);
}

/* CA's normalize() vectors, read back from the colours: one layer
 * [[5,5,3,0],[1,0,5,3]] -> [[1,1,0.5,0],[1/6,0,1,0.5]]; two layers (the rest,
 * a selected key) [[[2,0],[4,1]],[[2,3],[0,1]]] ->
 * [[[2/3,0],[1,1/3]],[[2/3,5/6],[0,1/3]]], blended as CA's generate() does. */
static void ca_mix(const int *hue, const double *v, int nl, unsigned int *out)
{
	double t = 0, rgb[3] = { 0, 0, 0 };
	uint8_t c[3];

	for (int m = 0; m < nl; m++)
		t += v[m];
	if (t == 0) {
		*out = 0xffffff;
		return;
	}
	for (int m = 0; m < nl; m++) {
		heatmap__hue_rgb(hue[m], v[m], c);
		if (v[m] == 0)
			c[0] = c[1] = c[2] = 255;
		for (int k = 0; k < 3; k++)
			rgb[k] += c[k] * (v[m] / t);
	}
	*out = (unsigned)rgb[0] << 16 | (unsigned)rgb[1] << 8 | (unsigned)rgb[2];
}

static unsigned int pixel(const struct heatmap *hm, int x, int y)
{
	const uint8_t *px = hm->rgb + ((size_t)y * hm->width + x) * 3;

	return (unsigned)px[0] << 16 | (unsigned)px[1] << 8 | px[2];
}

static void test_ca_rank_normalize_synthetic(void **state)
{
	static const char *const one[] = {
		"[[[0, 1], 5], [[1, 2], 5], [[2, 3], 3]]", "[[[0, 1], 1], [[2, 3], 5], [[3, 4], 3]]" };
	static const double lv1[2][4] = { { 1, 1, 0.5, 0 }, { 1.0 / 6, 0, 1, 0.5 } };
	static const char *const two[] = {
		"{\"r\": [[[0, 1], 2]], \"s\": [[[0, 1], 2], [[1, 2], 3]]}",
		"{\"r\": [[[0, 1], 4], [[1, 2], 1]], \"s\": [[[1, 2], 1]]}" };
	/* [layer][sample][bucket] */
	static const double lv2[2][2][2] = { { { 2.0 / 3, 0 }, { 1, 1.0 / 3 } },
					     { { 2.0 / 3, 5.0 / 6 }, { 0, 1.0 / 3 } } };
	static const int hue1[] = { 21 }, hue2[] = { 21, 112 };
	const char *s[] = { "s" };
	struct heatmap_params p;
	struct heatmap *hm;
	unsigned int want;
	struct win f;

	(void)state;
	win_init(&f, 100, 1, 2, one);
	params(&p, 2, 4, 4, 4);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 4; j++) {
			ca_mix(hue1, &lv1[i][j], 1, &want);
			if (pixel(hm, i, 3 - j) != want)
				fail_msg("sample %d bucket %d: %06x, CA %06x", i, j, pixel(hm, i, 3 - j), want);
		}
	heatmap__free(hm);
	dist_window__free(&f.w);

	win_init(&f, 100, 1, 2, two);
	params(&p, 2, 2, 2, 2);
	p.selected = s;
	p.nselected = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++) {
			double v[2] = { lv2[0][i][j], lv2[1][i][j] };

			ca_mix(hue2, v, 2, &want);
			if (pixel(hm, i, 1 - j) != want)
				fail_msg("sample %d bucket %d: %06x, CA %06x", i, j, pixel(hm, i, 1 - j), want);
		}
	heatmap__free(hm);
	dist_window__free(&f.w);
}

/* vec3.txt: CA's pixel layout, and granularity 10 */
static void test_ca_geometry_synthetic(void **state)
{
	static const char *const diag[] = { "[[[0, 10], 1]]", "[[[10, 20], 1]]", "[[[20, 30], 1]]" };
	static const char *const rows3[10] = {
		W "*6 f26518*4", W "*6 f26518*4", W "*6 f26518*4",
		W "*3 f26518*3 " W "*4", W "*3 f26518*3 " W "*4", W "*3 f26518*3 " W "*4",
		"f26518*3 " W "*7", "f26518*3 " W "*7", "f26518*3 " W "*7", "f26518*3 " W "*7" };
	static const char *const g10[] = { "[[[0, 10], 1]]", "[[[10, 20], 1]]" };
	static const char *const rows_g10[10] = {
		W "*5 f26518*5", W "*5 f26518*5", W "*5 f26518*5", W "*5 f26518*5", W "*5 f26518*5",
		"f26518*5 " W "*5", "f26518*5 " W "*5", "f26518*5 " W "*5", "f26518*5 " W "*5",
		"f26518*5 " W "*5" };
	static const char *const tiny[] = { "[[[0, 1], 1], [[1, 2], 2]]" };
	struct heatmap_params p;
	struct heatmap *hm;
	json_t *d;
	struct win f;

	(void)state;
	/* 3 slots over 10 columns: 0-2, 3-5, 6-9; 3 buckets over 10 rows:
	 * 0-2, 3-5, 6-9 */
	win_init(&f, 100, 1, 3, diag);
	params(&p, 10, 10, 3, 30);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_pixels(hm, rows3);
	heatmap__free(hm);
	/* details name the cell drawn at the pixel */
	assert_int_equal(heatmap__details(&f.in, &p, 3, 3, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_time")), 101);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymin")), 10);
	assert_int_equal(json_integer_value(json_object_get(d, "total")), 1);
	json_decref(d);
	dist_window__free(&f.w);

	/* granularity 10: t1000 [0,9], t1015 [10,19] (stored at 1010), two
	 * columns of 5 pixels */
	win_init(&f, 1000, 10, 2, g10);
	params(&p, 10, 10, 2, 20);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_pixels(hm, rows_g10);
	heatmap__free(hm);
	assert_int_equal(heatmap__details(&f.in, &p, 7, 0, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_time")), 1010);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymin")), 10);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymax")), 20);
	assert_int_equal(json_integer_value(json_object_get(d, "total")), 1);
	assert_int_equal(json_object_size(json_object_get(d, "present")), 0);
	json_decref(d);
	assert_int_equal(heatmap__details(&f.in, &p, 4, 9, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_time")), 1000);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymax")), 10);
	assert_int_equal(json_integer_value(json_object_get(d, "total")), 1);
	json_decref(d);
	dist_window__free(&f.w);

	/* h10 nb20: CA draws only every other bucket (here bucket 0 at rank
	 * 0.5, f2ab85, and bucket 1's two counts nowhere); kvmscope caps
	 * nbuckets at the height instead, so both land in the bottom row */
	win_init(&f, 100, 1, 1, tiny);
	params(&p, 10, 10, 20, 20);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->nbuckets, 10);
	assert_int_equal(pixel(hm, 0, 9), 0xf26518);
	assert_int_equal(pixel(hm, 0, 8), 0xffffff);
	heatmap__free(hm);
	dist_window__free(&f.w);
}

/* An empty window without ymax: CA answers ymax 0 and a white image. */
static void test_ca_empty_window_synthetic(void **state)
{
	static const char *const none[] = { NULL, NULL };
	struct heatmap_params p;
	struct heatmap *hm;
	struct win f;

	(void)state;
	win_init(&f, 100, 1, 2, none);
	heatmap_params__init(&p);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_true(hm->ymax == 0 && hm->ymin == 0 && hm->nbuckets == 100);
	assert_int_equal(hm->width, 600);
	for (int y = 0; y < hm->height; y += 37)
		for (int x = 0; x < hm->width; x += 41)
			assert_int_equal(pixel(hm, x, y), 0xffffff);
	heatmap__free(hm);
	dist_window__free(&f.w);
}

static void expect_details(const struct heatmap_input *in, const struct heatmap_params *p, int x,
			   int y, long long t, int bmin, int bmax, const char *present, int total)
{
	json_t *d = NULL;
	char *s;

	assert_int_equal(heatmap__details(in, p, x, y, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_time")), t);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymin")), bmin);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymax")), bmax);
	s = json_dumps(json_object_get(d, "present"), JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, present);
	free(s);
	assert_true(json_is_integer(json_object_get(d, "total")));
	assert_int_equal(json_integer_value(json_object_get(d, "total")), total);
	json_decref(d);
}

/* §7.5: CA's details, rounded counts max(1, round(v)) of every key */
static void test_ca_details_synthetic(void **state)
{
	static const char *const d3[] = {
		"{\"a\": [[[0, 30], 1]], \"b\": [[[5, 55], 25]], \"c\": [[[2, 42], 2]]}" };
	/* tst.value_details.js: numeric [10,20]5 [30,40]3 | [0,10]7 [10,20]2 |
	 * - | [10,20]100, and the same decomposed by "selma" and "patty" */
	static const char *const both[] = {
		"{\"selma\": [[[10, 21], 5], [[30, 41], 3]]}",
		"{\"selma\": [[[0, 11], 7], [[10, 21], 2]], \"patty\": [[[10, 21], 100]]}",
		NULL };
	const char *a[] = { "a" };
	struct heatmap_params p;
	struct win f;
	json_t *d;

	(void)state;
	win_init(&f, 100, 1, 2, d2);
	params(&p, 10, 10, 5, 50);
	expect_details(&f.in, &p, 0, 9, 100, 0, 10, "{\"a\":2,\"b\":1}", 3);
	expect_details(&f.in, &p, 0, 0, 100, 40, 50, "{}", 0);
	expect_details(&f.in, &p, 5, 9, 101, 0, 10, "{}", 0);
	expect_details(&f.in, &p, 9, 5, 101, 20, 30, "{}", 0);
	expect_details(&f.in, &p, 0, 4, 100, 20, 30, "{\"b\":5}", 5);
	/* the selection does not apply to CA's counts, it does to the cell's */
	p.selected = a;
	p.nselected = 1;
	p.isolate = 1;
	assert_int_equal(heatmap__details(&f.in, &p, 0, 9, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "total")), 3);
	assert_int_equal(json_object_size(json_object_get(d, "cell_present")), 1);
	assert_true(json_number_value(json_object_get(d, "cell_total")) == 2);
	json_decref(d);
	dist_window__free(&f.w);

	win_init(&f, 100, 1, 2, d1);
	params(&p, 10, 10, 5, 50);
	expect_details(&f.in, &p, 0, 9, 100, 0, 10, "{}", 1);
	expect_details(&f.in, &p, 5, 8, 101, 0, 10, "{}", 0);
	dist_window__free(&f.w);

	/* a 0.333 -> 1, b 2.5 -> 3, c 0.4 -> 1 */
	win_init(&f, 100, 1, 1, d3);
	params(&p, 10, 10, 5, 50);
	expect_details(&f.in, &p, 0, 9, 100, 0, 10, "{\"a\":1,\"b\":3,\"c\":1}", 5);
	assert_int_equal(heatmap__details(&f.in, &p, 0, 9, &d), 0);
	assert_true(fabs(json_number_value(json_object_get(d, "cell_total")) - 3.233) < 1e-9);
	json_decref(d);
	dist_window__free(&f.w);

	win_init(&f, 12345, 1, 3, both);
	params(&p, 150, 180, 10, 100);
	expect_details(&f.in, &p, 125, 163, 12347, 0, 10, "{}", 0);
	dist_window__free(&f.w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ca_autoscale_synthetic),
		cmocka_unit_test(test_ca_bucketize_synthetic),
		cmocka_unit_test(test_ca_percentile_average_synthetic),
		cmocka_unit_test(test_ca_value_average_percentile_synthetic),
		cmocka_unit_test(test_ca_range_notation_synthetic),
		cmocka_unit_test(test_ca_image_undecomposed_synthetic),
		cmocka_unit_test(test_ca_image_decomposed_synthetic),
		cmocka_unit_test(test_ca_rest_layer_synthetic),
		cmocka_unit_test(test_ca_rank_normalize_synthetic),
		cmocka_unit_test(test_ca_geometry_synthetic),
		cmocka_unit_test(test_ca_empty_window_synthetic),
		cmocka_unit_test(test_ca_details_synthetic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
