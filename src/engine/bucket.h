/* Numeric bucketing shared by the kernel side (the programs in bpf/) and the engine.
 *
 * Both sides must agree to the bucket, so this header has no includes and
 * only plain integer arithmetic with bounded loops (the BPF verifier accepts
 * it). Log-linear buckets in the style of DTrace's llquantize():
 *   [0, base^lo_mag)                              one bucket
 *   [base^m, base^(m+1)) for lo_mag <= m < hi_mag split into equal steps of
 *                        max(1, base^(m+1) / nsteps)
 *   [base^hi_mag, +inf)                           one bucket
 * `subsecond` is linear instead: 0..1000 ms in 10 ms buckets.
 *
 * Parameters per numeric field (stated in the catalogue and README):
 *   latency  ns     base 10, orders 1..10 (10 ns .. 10 s), 20 steps/order
 *   size     bytes  base 10, orders 0..9,                  20 steps/order
 *   offset   bytes  base 10, orders 3..13 (1 KB .. 10 TB), 20 steps/order
 *   subsecond ms    linear, width 10
 */
#ifndef KVMSCOPE_ENGINE_BUCKET_H
#define KVMSCOPE_ENGINE_BUCKET_H

#define BUCKET_MAX_MAG 20

struct llq_params {
	unsigned int base, lo_mag, hi_mag, nsteps;
};

#define LLQ_LATENCY { 10, 1, 10, 20 }
#define LLQ_SIZE    { 10, 0, 9, 20 }
#define LLQ_OFFSET  { 10, 3, 13, 20 }
#define SUBSECOND_BUCKET_MS 10

/* Lower bound of the bucket holding v; *hi gets the exclusive upper bound
 * (0xffffffffffffffff for the overflow bucket). */
static inline unsigned long long llq__bucket(unsigned long long v, unsigned int base,
					     unsigned int lo_mag, unsigned int hi_mag,
					     unsigned int nsteps, unsigned long long *hi)
{
	unsigned long long pow = 1, next, step;
	unsigned int m;

	for (m = 0; m < BUCKET_MAX_MAG && m < lo_mag; m++)
		pow *= base;
	if (v < pow) {
		*hi = pow;
		return 0;
	}
	for (m = lo_mag; m < BUCKET_MAX_MAG && m < hi_mag; m++) {
		next = pow * base;
		if (v < next) {
			step = next / nsteps;
			if (step < 1)
				step = 1;
			/* the first step starts at base^m, not 0 */
			unsigned long long lo = pow + ((v - pow) / step) * step;
			*hi = lo + step < next ? lo + step : next;
			return lo;
		}
		pow = next;
	}
	*hi = 0xffffffffffffffffULL;
	return pow;
}

/* Subsecond bucket lower bound in ms for a nanosecond offset within the second. */
static inline unsigned long long subsecond__bucket_ms(unsigned long long ns_in_second)
{
	unsigned long long ms = ns_in_second / 1000000ULL;

	if (ms > 999)
		ms = 999;
	return ms - ms % SUBSECOND_BUCKET_MS;
}

#endif
