/* The latency bucket of engine/bucket.h (LLQ_LATENCY: base 10, orders 1..10,
 * 20 steps per order) without its loop and divisions: on the per-exit path
 * the generic llq__bucket() cost about 150 ns here, two thirds of what
 * vm.exits adds to an exit. The order is found by comparisons, the step
 * within it (half the order's power of ten) by a binary search over the 18
 * steps. tests/unit/test_bucket_latency.c holds it equal to llq__bucket(). */
#ifndef KVMSCOPE_BPF_BUCKET_LATENCY_H
#define KVMSCOPE_BPF_BUCKET_LATENCY_H

static inline __u64 llq_latency__bucket(__u64 v)
{
	__u64 pow, half, d, k = 0;

	if (v < 10ULL)
		return 0;
	if (v >= 10000000000ULL)
		return 10000000000ULL;
	if (v < 100000ULL)
		pow = v < 100ULL ? 10ULL : v < 1000ULL ? 100ULL : v < 10000ULL ? 1000ULL : 10000ULL;
	else
		pow = v < 1000000ULL ? 100000ULL : v < 10000000ULL ? 1000000ULL :
		      v < 100000000ULL ? 10000000ULL : v < 1000000000ULL ? 100000000ULL :
		      1000000000ULL;
	half = pow >> 1;	/* the step: base^(m+1) / 20 */
	d = v - pow;		/* < 18 steps */
	if (d >= 16 * half)
		k = 16;
	if (d >= (k + 8) * half)
		k += 8;
	if (d >= (k + 4) * half)
		k += 4;
	if (d >= (k + 2) * half)
		k += 2;
	if (d >= (k + 1) * half)
		k += 1;
	return pow + k * half;
}

#endif
