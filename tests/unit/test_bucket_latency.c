/* bpf/bucket_latency.h, the per-exit latency bucket of bpf/exits.bpf.c, must
 * put every value in the bucket engine/bucket.h's llq__bucket() does with
 * LLQ_LATENCY: the engine maps the kernel's lower bounds back to its buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <linux/types.h>

#include "engine/bucket.h"
#include "bucket_latency.h"

static unsigned long long generic(unsigned long long v)
{
	struct llq_params p = LLQ_LATENCY;
	unsigned long long hi;

	return llq__bucket(v, p.base, p.lo_mag, p.hi_mag, p.nsteps, &hi);
}

static void test_every_value_below_a_million(void **state)
{
	(void)state;
	for (unsigned long long v = 0; v < 1000000ULL; v++)
		if (llq_latency__bucket(v) != generic(v))
			fail_msg("v=%llu: fast %llu, llq__bucket %llu", v,
				 (unsigned long long)llq_latency__bucket(v), generic(v));
}

static void test_step_edges_of_every_order(void **state)
{
	(void)state;
	for (unsigned long long pow = 10; pow <= 10000000000ULL; pow *= 10)
		for (unsigned long long k = 0; k <= 18; k++) {
			unsigned long long edge = pow + k * (pow / 2);

			for (long long dv = -2; dv <= 2; dv++) {
				unsigned long long v = edge + (unsigned long long)dv;

				assert_int_equal(llq_latency__bucket(v), generic(v));
			}
		}
	assert_int_equal(llq_latency__bucket(~0ULL), generic(~0ULL));
}

static void test_random_values(void **state)
{
	unsigned long long x = 0x9e3779b97f4a7c15ULL;

	(void)state;
	for (int i = 0; i < 2000000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* spread over every order: shift by 0..63 */
		unsigned long long v = x >> (x & 63);

		assert_int_equal(llq_latency__bucket(v), generic(v));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_value_below_a_million),
		cmocka_unit_test(test_step_edges_of_every_order),
		cmocka_unit_test(test_random_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
