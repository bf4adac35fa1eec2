/* Cloud Analytics conformance of kvmscope's heatmap arithmetic: the numbers
 * CA's own functions (node-heatmap heatmap.js at the commit CA pins, and
 * CA's tests tst.value_average.js, tst.value_percentile.js) compute for the
 * same inputs, written here as literals. The distributions are synthetic by nature:
 * these test arithmetic, not collection. Buckets are passed half-open
 * ([lo, hi_inclusive + 1)), as kvmscope keeps them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/merge.h"
#include "render/ca_math.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ca_autoscale_synthetic),
		cmocka_unit_test(test_ca_bucketize_synthetic),
		cmocka_unit_test(test_ca_percentile_average_synthetic),
		cmocka_unit_test(test_ca_value_average_percentile_synthetic),
		cmocka_unit_test(test_ca_range_notation_synthetic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
