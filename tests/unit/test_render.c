/* Heatmap rendering: bucketing, ymax, colouring, hues, details, summaries,
 * PNG, base64 and the terminal view. Expected values are derived from the
 * parameters (ymin, ymax, height, nbuckets) rather than copied from output. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "render/base64.h"
#include "engine/instr.h"
#include "render/heatmap.h"
#include "render/heatmap_live.h"
#include "render/png.h"
#include "render/term_heatmap.h"
#include "render/term_table.h"

#define T0 1700000000	/* 22:13:20 UTC */

/* Slots from JSON texts (CA raw values, through dist_window__add_json, as an
 * aggregator's merged values come); NULL text = no data. */
struct fixture {
	struct dist_window w;
	struct heatmap_input in;
	char err[256];
};

/* 0, or what dist_window__add_json refused (reason in f->err). */
static int fx_try(struct fixture *f, size_t n, const char *const *texts)
{
	size_t i;
	int rc = 0;

	assert_true(n <= 64);
	memset(f, 0, sizeof(*f));
	dist_window__init(&f->w, T0, 1);
	for (i = 0; i < n && !rc; i++) {
		json_error_t e;
		json_t *v = texts[i] ? json_loads(texts[i], JSON_DECODE_ANY, &e) : NULL;

		if (texts[i] && !v)
			fail_msg("bad fixture JSON %s: %s", texts[i], e.text);
		rc = dist_window__add_json(&f->w, v, f->err, sizeof(f->err));
		json_decref(v);
	}
	if (!rc)
		rc = dist_window__finish(&f->w);
	f->in.w = &f->w;
	f->in.first = 0;
	f->in.nslots = f->w.nslots;
	return rc;
}

static void fx_init(struct fixture *f, size_t n, const char *const *texts)
{
	int rc = fx_try(f, n, texts);

	if (rc)
		fail_msg("fixture refused (%d): %s", rc, f->err);
}

static void fx_fini(struct fixture *f)
{
	dist_window__free(&f->w);
}

static double cell(const struct heatmap *hm, size_t col, size_t bucket, size_t key)
{
	return hm->cells[(col * hm->nbuckets + bucket) * hm->nkeys + key];
}

static const uint8_t *px(const struct heatmap *hm, int x, int y)
{
	return hm->rgb + ((size_t)y * hm->width + x) * 3;
}

static int is_white(const uint8_t *p)
{
	return p[0] == 255 && p[1] == 255 && p[2] == 255;
}

static void params_fixed(struct heatmap_params *p, int w, int h, int nb, double ymin, double ymax)
{
	heatmap_params__init(p);
	p->width = w;
	p->height = h;
	p->nbuckets = nb;
	p->ymin = ymin;
	p->ymax = ymax;
	p->auto_ymax = 0;
}

/* ---- bucketing --------------------------------------------------------- */

static void test_spread_over_three_rows(void **state)
{
	const char *v[] = { "[[[0, 30], 3], [[45, 55], 2], [[90, 110], 4]]" };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;
	double sum = 0;
	size_t b;

	fx_init(&f, 1, v);
	params_fixed(&p, 10, 10, 10, 0, 100);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->nbuckets, 10);
	/* [0,30) spans rows 0, 1, 2: one third each */
	for (b = 0; b < 3; b++)
		assert_float_equal(cell(hm, 0, b, 0), 1.0, 1e-9);
	/* [45,55) straddles rows 4 and 5 */
	assert_float_equal(cell(hm, 0, 4, 0), 1.0, 1e-9);
	assert_float_equal(cell(hm, 0, 5, 0), 1.0, 1e-9);
	/* [90,110): the half above ymax is clipped */
	assert_float_equal(cell(hm, 0, 9, 0), 2.0, 1e-9);
	for (b = 0; b < 10; b++)
		sum += cell(hm, 0, b, 0);
	assert_float_equal(sum, 3 + 2 + 2, 1e-9);
	assert_int_equal(json_array_size(hm->present), 0);
	heatmap__free(hm);
	fx_fini(&f);
}

static void test_weights(void **state)
{
	const char *v[] = { "[[[10, 20], 2]]" };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;

	fx_init(&f, 1, v);
	params_fixed(&p, 1, 10, 10, 0, 100);
	p.weights = WEIGHTS_WEIGHT;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	/* count x CA's bucket midpoint, lo + (hi_inclusive - lo) / 2 (CA's
	 * bucketize vector: [10,19] x 2 weighs 29) */
	assert_float_equal(cell(hm, 0, 1, 0), 2 * 14.5, 1e-9);
	heatmap__free(hm);
	fx_fini(&f);
}

static void test_auto_ymax_table(void **state)
{
	static const struct { double max, want; } t[] = {
		/* CA's autoscale (node-heatmap), the bucket maximum being hi_incl + 1 */
		{ 870, 1000 }, { 1150, 1200 }, { 1000, 1200 }, { 999, 1000 }, { 260, 300 },
		{ 101, 120 }, { 5, 6 }, { 8, 8 }, { 0.7, 0.7 }, { 3600, 4000 }, { 45000, 50000 },
		{ 0, 1 },
	};
	double m;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		double got = heatmap__auto_ymax(t[i].max);

		if (fabs(got - t[i].want) > 1e-9 * t[i].want)
			fail_msg("auto ymax for %g: got %g, want %g", t[i].max, got, t[i].want);
	}
	/* CA's rule: at least the max, below 1.25 max */
	for (m = 0.013; m < 1e7; m *= 1.0137) {
		double got = heatmap__auto_ymax(m);

		if (got < m || got >= 1.25 * m)
			fail_msg("auto ymax for %g: %g is outside [max, 1.25 max)", m, got);
	}
}

static void test_auto_ymax_in_build(void **state)
{
	const char *v[] = { "[[[100, 200], 1], [[800, 870], 1]]", NULL };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;

	fx_init(&f, 2, v);
	heatmap_params__init(&p);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_float_equal(hm->ymax, 1000, 1e-9);
	assert_float_equal(hm->ymin, 0, 1e-9);
	heatmap__free(hm);
	fx_fini(&f);
}

/* ---- colouring --------------------------------------------------------- */

static void test_rank_vs_linear(void **state)
{
	const char *v[] = { "[[[0, 10], 1]]", "[[[0, 10], 2]]", "[[[0, 10], 100]]" };
	static const int red[] = { 0 };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;
	int x;

	fx_init(&f, 3, v);
	params_fixed(&p, 3, 1, 1, 0, 10);
	p.hues = red;
	p.nhues = 1;
	/* CA: hue 0 at level l is (242, g, g), g = round(255 0.95 (1 - 0.9 l));
	 * rank: 1, 2, 100 are at 1/3, 2/3, 1 */
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	for (x = 0; x < 3; x++) {
		int want = (int)floor(255 * 0.95 * (1 - 0.9 * (x + 1) / 3.0) + 0.5);

		assert_int_equal(px(hm, x, 0)[0], 242);
		assert_int_equal(px(hm, x, 0)[1], want);
		assert_int_equal(px(hm, x, 0)[2], want);
	}
	heatmap__free(hm);

	/* linear: v / max(1, max) */
	p.coloring = COLORING_LINEAR;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(px(hm, 0, 0)[1], (int)floor(255 * 0.95 * (1 - 0.9 / 100) + 0.5));
	assert_int_equal(px(hm, 1, 0)[1], (int)floor(255 * 0.95 * (1 - 0.9 * 2 / 100) + 0.5));
	assert_int_equal(px(hm, 2, 0)[1], 24);
	heatmap__free(hm);
	fx_fini(&f);
}

/* All counts in [250, 260) ms: only the pixel rows whose bucket overlaps
 * 250..260 are coloured, for a fixed and for an automatic ymax. */
static void check_subsecond_rows(const struct heatmap *hm)
{
	double step = (hm->ymax - hm->ymin) / hm->nbuckets;
	int x, y, coloured = 0;

	for (y = 0; y < hm->height; y++) {
		int b = hm->nbuckets - 1 - y * hm->nbuckets / hm->height;
		double lo = hm->ymin + b * step, hi = lo + step;
		int want = hi > 250 && lo < 260;

		for (x = 0; x < hm->width; x++) {
			if (is_white(px(hm, x, y)) == want)
				fail_msg("pixel (%d, %d), bucket [%g, %g): expected %s", x, y, lo, hi,
					 want ? "colour" : "white");
		}
		coloured += want;
	}
	assert_true(coloured > 0);
}

static void test_subsecond_line(void **state)
{
	const char *v[] = { "[[[250, 260], 40]]", "[[[250, 260], 40]]", "[[[250, 260], 40]]",
			    "[[[250, 260], 40]]", "[[[250, 260], 40]]" };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;

	fx_init(&f, 5, v);
	params_fixed(&p, 500, 300, 100, 0, 1000);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	/* rows 300 - 260/1000*300 = 222 .. 300 - 250/1000*300 = 225 (exclusive) */
	assert_true(is_white(px(hm, 0, 221)));
	assert_false(is_white(px(hm, 0, 222)));
	assert_false(is_white(px(hm, 499, 224)));
	assert_true(is_white(px(hm, 499, 225)));
	check_subsecond_rows(hm);
	heatmap__free(hm);

	heatmap_params__init(&p);
	p.width = 500;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_float_equal(hm->ymax, 300, 1e-9);
	check_subsecond_rows(hm);
	heatmap__free(hm);
	fx_fini(&f);
}

/* ---- keys and hues ------------------------------------------------------ */

static const char *const abc[] = {
	"{\"a\": [[[0, 10], 5]], \"b\": [[[10, 20], 5]], \"c\": [[[20, 30], 5]]}"
};
static const int hues3[] = { 0, 120, 240 };

/* Pixel row for the bucket of key a/b/c in a 1x3 image over [0, 30). */
#define ROW_A 2
#define ROW_B 1
#define ROW_C 0

static void expect_rgb(const struct heatmap *hm, int y, int r, int g, int b)
{
	const uint8_t *c = px(hm, 0, y);

	if (c[0] != r || c[1] != g || c[2] != b)
		fail_msg("row %d: got (%d, %d, %d), want (%d, %d, %d)", y, c[0], c[1], c[2], r, g, b);
}

static void build_abc(struct fixture *f, struct heatmap_params *p, struct heatmap **hm)
{
	fx_init(f, 1, abc);
	params_fixed(p, 1, 3, 3, 0, 30);
	p->hues = hues3;
	p->nhues = 3;
}

static void test_selected_isolate_exclude(void **state)
{
	const char *sel[] = { "b" }, *absent[] = { "zzz" };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;

	build_abc(&f, &p, &hm);
	/* nothing selected: one layer in hues[0] */
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->nlayers, 1);
	expect_rgb(hm, ROW_A, 242, 24, 24);
	expect_rgb(hm, ROW_B, 242, 24, 24);
	expect_rgb(hm, ROW_C, 242, 24, 24);
	assert_int_equal(json_array_size(hm->present), 3);
	assert_string_equal(json_string_value(json_array_get(hm->present, 0)), "a");
	heatmap__free(hm);

	p.selected = sel;
	p.nselected = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_rgb(hm, ROW_A, 242, 24, 24);
	expect_rgb(hm, ROW_B, 24, 242, 24);	/* hues[1] */
	expect_rgb(hm, ROW_C, 242, 24, 24);
	heatmap__free(hm);

	/* CA: an isolated key i takes the caller's hues[i] */
	p.isolate = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_rgb(hm, ROW_A, 255, 255, 255);
	expect_rgb(hm, ROW_B, 242, 24, 24);
	expect_rgb(hm, ROW_C, 255, 255, 255);
	assert_int_equal(hm->nkeys, 1);
	heatmap__free(hm);
	/* ... and the default sequence still starts it at 112 */
	p.hues = NULL;
	p.nhues = 0;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->layers[0].hue, 112);
	heatmap__free(hm);
	p.hues = hues3;
	p.nhues = 3;

	p.isolate = 0;
	p.exclude = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_rgb(hm, ROW_A, 242, 24, 24);
	expect_rgb(hm, ROW_B, 255, 255, 255);
	expect_rgb(hm, ROW_C, 242, 24, 24);
	heatmap__free(hm);

	/* isolating a key that is absent draws nothing, without failing */
	p.exclude = 0;
	p.isolate = 1;
	p.selected = absent;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->nkeys, 0);
	expect_rgb(hm, ROW_A, 255, 255, 255);
	expect_rgb(hm, ROW_B, 255, 255, 255);
	expect_rgb(hm, ROW_C, 255, 255, 255);
	assert_int_equal(json_array_size(hm->present), 3);
	heatmap__free(hm);

	p.exclude = 1;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), -EINVAL);
	assert_non_null(strstr(heatmap__last_error(), "isolate"));
	fx_fini(&f);
}

static void test_decompose_all_and_default_hues(void **state)
{
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;
	uint8_t want[3];

	static const int hues4[] = { 0, 120, 240, 60 };

	build_abc(&f, &p, &hm);
	p.decompose_all = 1;
	/* the rest and three present keys: three hues are too few */
	assert_int_equal(heatmap__build(&f.in, &p, &hm), -EINVAL);
	assert_string_equal(heatmap__last_error(), "need 4 hues");
	p.hues = hues4;
	p.nhues = 4;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->nlayers, 3);
	expect_rgb(hm, ROW_A, 24, 242, 24);	/* hues[1] */
	expect_rgb(hm, ROW_B, 24, 24, 242);	/* hues[2] */
	heatmap__hue_rgb(60, 1, want);		/* hues[3] */
	expect_rgb(hm, ROW_C, want[0], want[1], want[2]);
	heatmap__free(hm);

	p.hues = NULL;
	p.nhues = 0;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->layers[0].hue, 112);
	assert_int_equal(hm->layers[1].hue, 203);
	heatmap__free(hm);
	fx_fini(&f);
}

/* CA's colour vector "mix 21@0.5 + 112@1": the rest (a, 1) at rank 0.5
 * in hue 21 and the selected b (3) at rank 1 in hue 112 blend, weighed by
 * their levels and truncated, into (115, 218, 60) (CA: 115.99999999999999
 * becomes 115). */
static void test_blend_by_share(void **state)
{
	const char *v[] = { "{\"a\": [[[0, 10], 1]], \"b\": [[[0, 10], 3]]}" };
	const char *sel[] = { "b" };
	static const int hues[] = { 21, 112 };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;

	fx_init(&f, 1, v);
	params_fixed(&p, 1, 1, 1, 0, 10);
	p.selected = sel;
	p.nselected = 1;
	p.hues = hues;
	p.nhues = 2;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	expect_rgb(hm, 0, 115, 218, 60);
	heatmap__free(hm);
	fx_fini(&f);
}

/* CA's colour vectors (HSV(h, 0.9 level, 0.95), rounded; white at 0) */
static void test_ca_colours_synthetic(void **state)
{
	static const struct { int hue; double level; uint8_t rgb[3]; } vec[] = {
		{ 21, 1, { 242, 101, 24 } },	{ 21, 0.5, { 242, 171, 133 } },
		{ 21, 0.25, { 242, 207, 188 } }, { 21, 1e-9, { 242, 242, 242 } },
		{ 21, 0, { 255, 255, 255 } },	{ 112, 1, { 53, 242, 24 } },
		{ 203, 1, { 24, 159, 242 } },	{ 294, 1, { 220, 24, 242 } },
		{ 25, 1, { 242, 115, 24 } },	{ 0, 1, { 242, 24, 24 } },
	};
	uint8_t got[3];

	(void)state;
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		heatmap__hue_rgb(vec[i].hue, vec[i].level, got);
		if (memcmp(got, vec[i].rgb, 3))
			fail_msg("hue %d level %g: (%d, %d, %d), CA (%d, %d, %d)", vec[i].hue,
				 vec[i].level, got[0], got[1], got[2], vec[i].rgb[0], vec[i].rgb[1],
				 vec[i].rgb[2]);
	}
}

/* ---- details, average, percentile --------------------------------------- */

static void test_details(void **state)
{
	const char *v[] = { "{\"web1\": [[[250, 260], 30]], \"db2\": [[[250, 260], 10]]}",
			    "{\"web1\": [[[250, 260], 31]], \"db2\": [[[250, 260], 11]]}",
			    "{\"web1\": [[[250, 260], 32]], \"db2\": [[[250, 260], 12]], \"x\": [[[0, 10], 1]]}",
			    NULL, "{\"web1\": [[[250, 260], 34]]}" };
	struct fixture f;
	struct heatmap_params p;
	json_t *d;
	int x, y;

	fx_init(&f, 5, v);
	params_fixed(&p, 500, 300, 100, 0, 1000);
	/* slot 2 is columns 200..299; 250 ms is bucket 25, rows 222..224 */
	x = 250;
	y = 300 - 255 * 300 / 1000;
	assert_int_equal(heatmap__details(&f.in, &p, x, y, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_time")), T0 + 2);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_duration")), 1);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymin")), 250);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_ymax")), 260);
	assert_float_equal(json_number_value(json_object_get(d, "bucket_min")), 250, 1e-9);
	assert_float_equal(json_number_value(json_object_get(d, "bucket_max")), 260, 1e-9);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "present"), "web1")), 32);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "present"), "db2")), 12);
	assert_null(json_object_get(json_object_get(d, "present"), "x"));
	assert_int_equal(json_integer_value(json_object_get(d, "total")), 44);
	assert_float_equal(json_number_value(json_object_get(json_object_get(d, "cell_present"), "web1")), 32, 1e-9);
	assert_float_equal(json_number_value(json_object_get(d, "cell_total")), 44, 1e-9);
	json_decref(d);

	/* the empty slot */
	assert_int_equal(heatmap__details(&f.in, &p, 350, y, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_time")), T0 + 3);
	assert_float_equal(json_number_value(json_object_get(d, "total")), 0, 1e-9);
	assert_int_equal(json_object_size(json_object_get(d, "present")), 0);
	json_decref(d);

	/* y = 0 is the top: the bucket just below ymax */
	assert_int_equal(heatmap__details(&f.in, &p, 0, 0, &d), 0);
	assert_float_equal(json_number_value(json_object_get(d, "bucket_max")), 1000, 1e-9);
	json_decref(d);

	assert_int_equal(heatmap__details(&f.in, &p, 500, 0, &d), -ERANGE);
	assert_int_equal(heatmap__details(&f.in, &p, 0, -1, &d), -ERANGE);
	fx_fini(&f);
}

static void test_average_percentile(void **state)
{
	const char *v[] = { "[[[10, 20], 50], [[0, 10], 50]]", NULL, "[[[100, 200], 4]]" };
	static const struct { double p, want; } t[] = {
		{ 0, 0 }, { 25, 5 }, { 50, 10 }, { 75, 15 }, { 90, 18 }, { 100, 20 },
	};
	struct fixture f;
	struct heatmap_params p;
	json_t *a;
	size_t i;

	fx_init(&f, 3, v);
	heatmap_params__init(&p);
	assert_int_equal(heatmap__average(&f.in, &p, &a), 0);
	assert_int_equal(json_array_size(a), 3);
	assert_int_equal(json_integer_value(json_array_get(json_array_get(a, 0), 0)), T0);
	assert_float_equal(json_number_value(json_array_get(json_array_get(a, 0), 1)), 10, 1e-9);
	assert_true(json_is_null(json_array_get(json_array_get(a, 1), 1)));
	assert_float_equal(json_number_value(json_array_get(json_array_get(a, 2), 1)), 150, 1e-9);
	json_decref(a);

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		double got;

		assert_int_equal(heatmap__percentile(&f.in, &p, t[i].p, &a), 0);
		got = json_number_value(json_array_get(json_array_get(a, 0), 1));
		if (fabs(got - t[i].want) > 1e-9)
			fail_msg("p%g: got %g, want %g", t[i].p, got, t[i].want);
		json_decref(a);
	}
	assert_int_equal(heatmap__percentile(&f.in, &p, 101, &a), -EINVAL);
	assert_non_null(strstr(heatmap__last_error(), "101"));
	assert_int_equal(heatmap__percentile(&f.in, &p, -1, &a), -EINVAL);
	fx_fini(&f);
}

static void test_average_selected(void **state)
{
	const char *v[] = { "{\"a\": [[[0, 10], 1]], \"b\": [[[100, 110], 1]]}" };
	const char *sel[] = { "b" };
	struct fixture f;
	struct heatmap_params p;
	json_t *a;

	fx_init(&f, 1, v);
	heatmap_params__init(&p);
	assert_int_equal(heatmap__average(&f.in, &p, &a), 0);
	assert_float_equal(json_number_value(json_array_get(json_array_get(a, 0), 1)), 55, 1e-9);
	json_decref(a);
	p.selected = sel;
	p.nselected = 1;
	p.isolate = 1;
	assert_int_equal(heatmap__average(&f.in, &p, &a), 0);
	assert_float_equal(json_number_value(json_array_get(json_array_get(a, 0), 1)), 105, 1e-9);
	json_decref(a);
	fx_fini(&f);
}

/* ---- bad input ---------------------------------------------------------- */

static void test_bad_input(void **state)
{
	const char *num[] = { NULL, "573" };
	const char *bad[] = { "[[[10, 5], 1]]" };
	const char *mixed[] = { "[[[0, 1], 1]]", "{\"a\": [[[0, 1], 1]]}" };
	const char *mapbad[] = { "{\"web1\": 7}" };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm = NULL;

	const char *good[] = { "[[[0, 10], 1]]" };

	heatmap_params__init(&p);
	assert_int_equal(fx_try(&f, 2, num), -EINVAL);
	assert_non_null(strstr(f.err, "slot 1"));
	assert_non_null(strstr(f.err, "number"));
	fx_fini(&f);

	assert_int_equal(fx_try(&f, 1, bad), -EINVAL);
	assert_non_null(strstr(f.err, "bucket 0"));
	fx_fini(&f);

	assert_int_equal(fx_try(&f, 2, mixed), -EINVAL);
	assert_non_null(strstr(f.err, "slot 1"));
	fx_fini(&f);

	assert_int_equal(fx_try(&f, 1, mapbad), -EINVAL);
	assert_non_null(strstr(f.err, "\"web1\""));
	fx_fini(&f);

	fx_init(&f, 1, good);
	p.width = 0;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), -EINVAL);
	assert_non_null(strstr(heatmap__last_error(), "width 0"));
	heatmap_params__init(&p);
	p.auto_ymax = 0;
	p.ymax = -5;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), -EINVAL);
	assert_non_null(strstr(heatmap__last_error(), "ymax"));
	fx_fini(&f);

	fx_init(&f, 0, NULL);
	heatmap_params__init(&p);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), -EINVAL);
	assert_null(hm);
}

/* ---- more slots than pixels -------------------------------------------- */

static void test_columns_merge(void **state)
{
	const char *v[] = { "[[[0, 10], 1]]", "[[[0, 10], 2]]", "[[[0, 10], 3]]", "[[[0, 10], 4]]" };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;
	json_t *d;

	fx_init(&f, 4, v);
	params_fixed(&p, 2, 1, 1, 0, 10);
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(hm->ncols, 2);
	assert_float_equal(cell(hm, 0, 0, 0), 3, 1e-9);
	assert_float_equal(cell(hm, 1, 0, 0), 7, 1e-9);
	assert_int_equal(heatmap__details(&f.in, &p, 1, 0, &d), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_time")), T0 + 2);
	assert_int_equal(json_integer_value(json_object_get(d, "bucket_duration")), 2);
	/* a merged column is counted whole: slots 2 and 3 */
	assert_int_equal(json_integer_value(json_object_get(d, "total")), 7);
	assert_float_equal(json_number_value(json_object_get(d, "cell_total")), 7, 1e-9);
	json_decref(d);
	heatmap__free(hm);
	fx_fini(&f);
}

/* ---- PNG and base64 ----------------------------------------------------- */

static void decode_png(const unsigned char *png, size_t len, int w, int h, uint8_t **out)
{
	spng_ctx *ctx = spng_ctx_new(0);
	struct spng_ihdr ihdr;
	size_t sz;

	assert_non_null(ctx);
	assert_int_equal(spng_set_png_buffer(ctx, png, len), 0);
	assert_int_equal(spng_get_ihdr(ctx, &ihdr), 0);
	assert_int_equal(ihdr.width, w);
	assert_int_equal(ihdr.height, h);
	assert_int_equal(spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &sz), 0);
	assert_int_equal(sz, (size_t)w * h * 3);
	*out = malloc(sz);
	assert_non_null(*out);
	assert_int_equal(spng_decode_image(ctx, *out, sz, SPNG_FMT_RGB8, 0), 0);
	spng_ctx_free(ctx);
}

/* A readable demo: a timer line at 250 ms (key "timer"), noise spread over
 * the second (key "noise") and a burst of a third key. */
static void build_sample(struct fixture *f, char texts[60][512])
{
	const char *ptrs[60];
	unsigned int seed = 12345, i, j;

	for (i = 0; i < 60; i++) {
		int n = snprintf(texts[i], 512, "{\"timer\": [[[250, 260], %u]], \"noise\": [", 20 + i % 5);

		for (j = 0; j < 6; j++) {
			unsigned int lo;

			seed = seed * 1103515245u + 12345u;
			lo = (seed >> 16) % 100 * 10;
			n += snprintf(texts[i] + n, 512 - n, "%s[[%u, %u], %u]", j ? ", " : "", lo,
				      lo + 10, 1 + (seed >> 8) % 4);
		}
		if (i >= 30 && i < 40)
			snprintf(texts[i] + n, 512 - n, "], \"burst\": [[[600, 700], %u]]}", 50u);
		else
			snprintf(texts[i] + n, 512 - n, "]}");
		ptrs[i] = texts[i];
	}
	fx_init(f, 60, ptrs);
}

static void test_png_roundtrip_and_sample(void **state)
{
	static char texts[60][512];
	const char *sel[] = { "timer", "burst" };
	struct fixture f;
	struct heatmap_params p;
	struct heatmap *hm;
	unsigned char *png = NULL;
	uint8_t *back = NULL;
	char *b64 = NULL;
	size_t len;
	FILE *fp;

	build_sample(&f, texts);
	heatmap_params__init(&p);
	p.selected = sel;
	p.nselected = 2;
	p.ymax = 1000;
	p.auto_ymax = 0;
	assert_int_equal(heatmap__build(&f.in, &p, &hm), 0);
	assert_int_equal(png__encode_rgb(hm->rgb, hm->width, hm->height, &png, &len), 0);
	assert_true(len > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
	decode_png(png, len, hm->width, hm->height, &back);
	assert_memory_equal(back, hm->rgb, (size_t)hm->width * hm->height * 3);

	assert_int_equal(base64__encode(png, len, &b64), 0);
	assert_int_equal(strlen(b64), base64__encoded_len(len));
	assert_int_equal(strncmp(b64, "iVBORw0KGgo", 11), 0);	/* the PNG signature */

	mkdir("tests/artifacts", 0755);
	fp = fopen("tests/artifacts/render_sample.png", "wb");
	if (fp) {
		assert_int_equal(fwrite(png, 1, len, fp), len);
		fclose(fp);
	}
	assert_int_equal(png__encode_rgb(hm->rgb, 0, 1, &png, &len), -EINVAL);
	free(b64);
	free(back);
	free(png);
	heatmap__free(hm);
	fx_fini(&f);
}

static void test_base64_rfc4648(void **state)
{
	static const struct { const char *in, *out; } t[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
		{ "\xff\xfe", "//4=" }, { "\xfb\xff", "+/8=" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *s = NULL;

		assert_int_equal(base64__encode(t[i].in, strlen(t[i].in), &s), 0);
		assert_string_equal(s, t[i].out);
		assert_int_equal(base64__encoded_len(strlen(t[i].in)), strlen(t[i].out));
		free(s);
	}
}

/* ---- terminal ----------------------------------------------------------- */

static char *draw_term(const struct heatmap_input *in, const struct heatmap_params *p,
		       const char *unit, int color)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	assert_non_null(m);
	assert_int_equal(term_heatmap__draw(m, in, p, "vm.irqs by subsecond", unit, color), 0);
	fclose(m);
	return buf;
}

static void test_term_heatmap(void **state)
{
	const char *v[] = { "[[[250, 260], 4]]", NULL, "[[[250, 260], 9]]", "[[[0, 10], 1]]" };
	struct fixture f;
	struct heatmap_params p;
	char *s, *line, *save;
	int rows = 0, shaded_rows = 0;

	setenv("TZ", "UTC", 1);
	tzset();
	fx_init(&f, 4, v);
	heatmap_params__init(&p);
	p.width = 60;
	p.height = 15;
	p.ymax = 1000;
	p.auto_ymax = 0;
	s = draw_term(&f.in, &p, "ms", 0);
	assert_non_null(strstr(s, "vm.irqs by subsecond"));
	assert_non_null(strstr(s, "     1s ┤"));	/* 1000 ms at the top */
	assert_non_null(strstr(s, "0ms"));
	assert_non_null(strstr(s, "22:13:20"));	/* T0, left */
	assert_non_null(strstr(s, "22:13:23"));	/* T0 + 3, right */
	assert_non_null(strchr(s, '@'));	/* the largest cell */
	assert_null(strstr(s, "\x1b["));
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *bar = strstr(line, "┤");

		if (!bar)
			bar = strstr(line, "│");
		if (!bar)
			continue;
		rows++;
		/* one character per slot after the axis */
		bar += strlen("│");
		assert_int_equal(strlen(bar), 4);
		if (strspn(bar, " ") != 4)
			shaded_rows++;
	}
	assert_int_equal(rows, 15);
	/* 250..260 and 0..10 each fall in a single text row */
	assert_int_equal(shaded_rows, 2);
	free(s);

	/* automatic ymax, colour: labels follow the data (260 -> 300) */
	p.auto_ymax = 1;
	s = draw_term(&f.in, &p, "ms", 1);
	assert_non_null(strstr(s, "300ms"));
	assert_non_null(strstr(s, "\x1b[38;2;"));
	assert_non_null(strstr(s, "▀"));
	free(s);
	fx_fini(&f);
}

static void test_format_value(void **state)
{
	static const struct { double v; const char *unit, *want; } t[] = {
		{ 250, "ms", "250ms" }, { 0.01, "ms", "10µs" }, { 1500, "ms", "1.5s" },
		{ 4096, "bytes", "4KB" }, { 100000, "ns", "100µs" }, { 0, "ms", "0ms" },
		{ 1536, "B", "1.5KB" }, { 12000, "", "12k" }, { 7, "ops", "7 ops" },
	};
	char buf[32];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		term__format_value(t[i].v, t[i].unit, buf, sizeof(buf));
		assert_string_equal(buf, t[i].want);
	}
}

static void test_term_table(void **state)
{
	json_t *v = json_loads("{\"db2\": 7, \"web1\": 120, \"aa\": 7}", 0, NULL);
	json_t *n = json_integer(573), *d = json_loads("[[[0, 1], 1]]", 0, NULL);
	char *buf = NULL, *w, *db, *aa;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	assert_int_equal(term_table__draw(m, v, "vm.exits by vm", 0), 0);
	assert_int_equal(term_table__draw(m, n, "vm.exits", 0), 0);
	assert_int_equal(term_table__draw(m, d, "vm.exits", 0), -EINVAL);
	fclose(m);
	w = strstr(buf, "web1");
	aa = strstr(buf, "aa");
	db = strstr(buf, "db2");
	assert_true(w && aa && db && w < aa && aa < db);	/* by value, then key */
	assert_non_null(strstr(buf, "vm.exits: 573"));
	free(buf);
	json_decref(v);
	json_decref(n);
	json_decref(d);
}

/* ---- live panels ------------------------------------------------------- */

static int64_t live_clock;

static int64_t live_now(void *ctx)
{
	(void)ctx;
	return live_clock;
}

static void live_rec(struct instr *in, int64_t t, const char *vm, uint64_t lat, uint64_t n)
{
	struct record r = { .metric = METRIC_VM_EXITS, .time = t, .value = n };

	r.str[F_HOSTNAME] = "host1";
	r.str[F_VM] = vm;
	r.str[F_EXITS_VCPU] = "0";
	r.str[F_EXITS_REASON] = "IO_INSTRUCTION";
	r.str[F_EXITS_CLASS] = "iox";
	r.num[F_EXITS_LATENCY] = lat;
	assert_int_equal(instr__ingest(in, &r), 0);
}

/* A cold render of [start, start + n): the copy, heatmap__build, PNG, base64. */
static void cold_image(const struct instr *in, const struct heatmap_params *p, int64_t start,
		       size_t n, struct heatmap_live_image *out)
{
	struct dist_window w;
	struct heatmap_input hi;
	struct heatmap *hm;
	unsigned char *png;
	size_t len;

	assert_int_equal(instr__window(in, start, n, &w), 0);
	assert_int_equal(dist_window__finish(&w), 0);
	hi = (struct heatmap_input){ &w, 0, w.nslots };
	assert_int_equal(heatmap__build(&hi, p, &hm), 0);
	assert_int_equal(png__encode_rgb(hm->rgb, hm->width, hm->height, &png, &len), 0);
	assert_int_equal(base64__encode(png, len, &out->image), 0);
	out->ymin = hm->ymin;
	out->ymax = hm->ymax;
	out->nbuckets = hm->nbuckets;
	out->width = hm->width;
	out->height = hm->height;
	out->present = json_incref(hm->present);
	free(png);
	heatmap__free(hm);
	dist_window__free(&w);
}

/* The live answer (copied in pieces of 7 cells) must equal the cold one. */
struct live_work {
	size_t nstale, nspread, ncoloured;
	int reused;
};

static struct live_work expect_live_is_cold(const struct instr *in, const struct heatmap_params *p,
					    int64_t start, size_t n)
{
	struct heatmap_live_req q;
	struct live_work work;
	struct heatmap_live_image live, cold;
	size_t done = 0;

	memset(&cold, 0, sizeof(cold));
	cold_image(in, p, start, n, &cold);
	assert_int_equal(heatmap_live__begin(&q, instr__uid(in), p, start, instr__granularity(in), n), 0);
	while (done < n) {
		long got = heatmap_live__copy(&q, in, done, 7);

		assert_true(got >= 1);
		done += (size_t)got;
	}
	assert_int_equal(heatmap_live__image(&q, &live), 0);
	work = (struct live_work){ q.nstale, q.nspread, q.ncoloured, q.reused };
	heatmap_live__end(&q);
	assert_string_equal(live.image, cold.image);
	assert_true(live.ymin == cold.ymin);
	assert_true(live.ymax == cold.ymax);
	assert_int_equal(live.nbuckets, cold.nbuckets);
	assert_int_equal(live.width, cold.width);
	assert_int_equal(live.height, cold.height);
	assert_true(json_equal(live.present, cold.present));
	heatmap_live_image__free(&live);
	heatmap_live_image__free(&cold);
	return work;
}

/* Refreshes of a live panel share work with the answer before, and give
 * what a cold render of the same window gives, byte for byte, through new
 * seconds, late records into old slots, keys coming and going, ymax going
 * up and down and every parameter that changes the drawing. */
static void test_live_refresh_equals_cold(void **state)
{
	static const char *vms[] = { "web1", "db2", "cache3" };
	const char *sel[] = { "db2", "new4" };
	static const int hues[] = { 200, 10 };
	struct instr *in;
	struct heatmap_params p, variants[6];
	char err[256];
	json_t *spec = json_pack("{s:s, s:[s,s], s:i}", "metric", "vm.exits", "decomposition",
				 "vm", "latency", "retention-time", 120);
	int64_t t, start;
	struct live_work wk;
	size_t v;

	(void)state;
	heatmap_live__flush();
	assert_int_equal(instr__new(spec, &in, err, sizeof(err)), 0);
	json_decref(spec);
	live_clock = T0 + 60;
	instr__set_clock(in, live_now, NULL);
	for (t = T0; t < T0 + 60; t++)
		for (v = 0; v < 3; v++)
			live_rec(in, t, vms[v], 1000 + 700 * (uint64_t)((t + (int64_t)v) % 9),
				 1 + (uint64_t)((t * 3 + (int64_t)v) % 7));
	heatmap_params__init(&p);
	p.width = 60;
	p.height = 40;
	p.nbuckets = 20;
	p.decompose_all = 1;
	start = T0 + 20;
	wk = expect_live_is_cold(in, &p, start, 40);
	assert_int_equal(wk.nstale, 40);
	assert_int_equal(wk.nspread, 40);
	wk = expect_live_is_cold(in, &p, start, 40);	/* nothing changed */
	assert_int_equal(wk.nstale, 0);
	assert_true(wk.reused);
	assert_true(heatmap_live__bytes() > 0);
	for (int step = 0; step < 8; step++) {
		t = T0 + 60 + step;
		live_clock = t + 1;
		live_rec(in, t, vms[step % 3], 2000, 3);
		if (step == 2)
			live_rec(in, t - 30, "db2", 1500, 4);		/* late, into an old slot */
		if (step == 3)
			live_rec(in, t, "new4", 3000, 1);		/* a new key */
		if (step == 4)
			live_rec(in, t, "web1", 90000, 2);		/* ymax goes up */
		if (step == 5)
			live_rec(in, t, "web1", 1000, 1000);		/* a new distinct value */
		start++;
		wk = expect_live_is_cold(in, &p, start, 40);
		assert_false(wk.reused);
		if (step == 0 || step == 1 || step == 6 || step == 7) {
			/* one new column; keys, ymax and value set as before */
			assert_int_equal(wk.nstale, 1);
			assert_int_equal(wk.nspread, 1);
		} else if (step == 2) {
			assert_int_equal(wk.nstale, 2);		/* and the late one */
		}
	}
	/* the ymax of step 4 leaves the window */
	live_clock += 40;
	expect_live_is_cold(in, &p, live_clock - 20, 20);
	for (v = 0; v < 6; v++)
		variants[v] = p;
	variants[0].coloring = COLORING_LINEAR;
	variants[1].decompose_all = 0;
	variants[1].selected = sel;
	variants[1].nselected = 2;
	variants[2] = variants[1];
	variants[2].isolate = 1;
	variants[2].hues = hues;
	variants[2].nhues = 2;
	variants[3] = variants[1];
	variants[3].exclude = 1;
	variants[4].weights = WEIGHTS_WEIGHT;
	variants[4].auto_ymax = 0;
	variants[4].ymin = 1500;
	variants[4].ymax = 4000;
	variants[5].width = 25;		/* more slots than pixels: drawn whole */
	for (v = 0; v < 6; v++) {
		expect_live_is_cold(in, &variants[v], live_clock - 50, 50);
		live_rec(in, live_clock - 1, vms[v % 3], 1200, 2);
		expect_live_is_cold(in, &variants[v], live_clock - 50, 50);
		expect_live_is_cold(in, &variants[v], live_clock - 49, 50);
	}
	/* undecomposed */
	instr__free(in);
	spec = json_pack("{s:s, s:[s], s:i}", "metric", "vm.exits", "decomposition", "latency",
			 "retention-time", 30);
	assert_int_equal(instr__new(spec, &in, err, sizeof(err)), 0);
	json_decref(spec);
	instr__set_clock(in, live_now, NULL);
	for (t = live_clock - 20; t < live_clock; t++)
		live_rec(in, t, "x", 500 + 100 * (uint64_t)(t % 5), 2);
	expect_live_is_cold(in, &p, live_clock - 20, 20);
	live_rec(in, live_clock, "x", 800, 5);
	live_clock++;
	expect_live_is_cold(in, &p, live_clock - 20, 20);
	instr__free(in);
	heatmap_live__flush();
	assert_int_equal(heatmap_live__bytes(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spread_over_three_rows),
		cmocka_unit_test(test_weights),
		cmocka_unit_test(test_auto_ymax_table),
		cmocka_unit_test(test_auto_ymax_in_build),
		cmocka_unit_test(test_rank_vs_linear),
		cmocka_unit_test(test_subsecond_line),
		cmocka_unit_test(test_selected_isolate_exclude),
		cmocka_unit_test(test_decompose_all_and_default_hues),
		cmocka_unit_test(test_blend_by_share),
		cmocka_unit_test(test_ca_colours_synthetic),
		cmocka_unit_test(test_details),
		cmocka_unit_test(test_average_percentile),
		cmocka_unit_test(test_average_selected),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_columns_merge),
		cmocka_unit_test(test_png_roundtrip_and_sample),
		cmocka_unit_test(test_base64_rfc4648),
		cmocka_unit_test(test_live_refresh_equals_cold),
		cmocka_unit_test(test_term_heatmap),
		cmocka_unit_test(test_format_value),
		cmocka_unit_test(test_term_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
