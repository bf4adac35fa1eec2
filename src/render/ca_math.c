/* CA's heatmap arithmetic, transcribed from node-heatmap's heatmap.js
 * (autoscale, bucketize, average, percentile) so that kvmscope's numbers
 * are CA's to the last bit where the operations are the same. */
#include <math.h>

#include "render/ca_math.h"

double ca__autoscale(double max)
{
	int pw;
	double round, ceiling;

	if (max <= 0)
		return max;
	pw = (int)floor(log(max) / log(10)) + 1;
	round = pow(10, pw);
	ceiling = 1.25 * max;
	for (int i = 0; i < 2 * pw; i++) {
		double scaled = (floor(max / round) + 1) * round;

		if (scaled < ceiling)
			return scaled;
		round /= (i % 2) ? 2 : 5;
	}
	return max;
}

void ca__bucketize(double *b, int nbuckets, double min, double max, double lo, double hi,
		   double count, bool weigh)
{
	double size = (max - min) / nbuckets, low, high, u;
	long lowfilled, highfilled;

	/* CA: skip when lo >= max or its inclusive hi (hi - 1) < min */
	if (lo >= max || hi - 1 < min || !(size > 0))
		return;
	if (weigh)
		count *= lo + (hi - 1 - lo) / 2;
	low = (lo - min) / size;
	high = (hi - min) / size;
	lowfilled = (long)floor(low) + 1;
	highfilled = (long)floor(high);
	if (highfilled < lowfilled) {
		if (highfilled >= 0 && highfilled < nbuckets)
			b[highfilled] += count;
		return;
	}
	u = (1 / (high - low)) * count;
	if (low < 0)
		low = 0;
	if (high >= nbuckets)
		high = nbuckets - 1;
	if (highfilled > nbuckets)
		highfilled = nbuckets;
	if (low < lowfilled && lowfilled > 0)
		b[lowfilled - 1] += (lowfilled - low) * u;
	for (long k = lowfilled < 0 ? 0 : lowfilled; k < highfilled; k++)
		b[k] += u;
	if (high > highfilled)
		b[highfilled] += (high - highfilled) * u;
}

double ca__average(const double *b, int nbuckets, double min, double max)
{
	double size = (max - min) / nbuckets, sum = 0, n = 0;

	for (int j = 0; j < nbuckets; j++) {
		sum += b[j] * (min + (j + 0.5) * size);
		n += b[j];
	}
	return n ? sum / n : NAN;
}

double ca__percentile(const double *b, int nbuckets, double min, double max, double p)
{
	double size = (max - min) / nbuckets, total = 0, cum = 0, frac;

	for (int j = 0; j < nbuckets; j++)
		total += b[j];
	if (!total)
		return min;
	for (int j = 0; j < nbuckets; j++) {
		cum += b[j];
		if (cum / total < p)
			continue;
		if (!b[j])
			return min;	/* CA: 0/0, an assertion */
		frac = (p * total - (cum - b[j])) / b[j];
		frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
		return min + (j + frac) * size;
	}
	return max;
}
