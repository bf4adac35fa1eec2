/* Cloud Analytics' heatmap arithmetic (node-heatmap lib/heatmap.js, as CA
 * pinned it): the linear re-bucketing of a distribution over [min, max),
 * auto-scaling of max, and the average and percentile of a re-bucketed
 * column. The average/percentile resources answer with exactly these, so
 * that a CA client gets CA's numbers.
 *
 * Buckets are given half-open, [lo, hi) with hi = CA's inclusive hi + 1,
 * which is how CA's bucketize spreads them. */
#ifndef KVMSCOPE_RENDER_CA_MATH_H
#define KVMSCOPE_RENDER_CA_MATH_H

#include <stdbool.h>

/* CA's autoscale(max): the next multiple of a round step above max and
 * below 1.25 max, else max itself. */
double ca__autoscale(double max);

/* Adds count, spread evenly over [lo, hi), to the nbuckets linear buckets
 * b[] of [min, max) (CA bucketize); what lies outside is dropped in
 * proportion. weigh: multiply count by CA's midpoint lo + (hi - 1 - lo)/2. */
void ca__bucketize(double *b, int nbuckets, double min, double max, double lo, double hi,
		   double count, bool weigh);

/* Mean of the linear buckets by their midpoints; NaN when they are empty. */
double ca__average(const double *b, int nbuckets, double min, double max);

/* p-th quantile (0 <= p <= 1) interpolated within its linear bucket; min
 * when the buckets are empty, and min too where CA fails an assertion (p
 * 0 with the first bucket empty). */
double ca__percentile(const double *b, int nbuckets, double min, double max, double p);

#endif
