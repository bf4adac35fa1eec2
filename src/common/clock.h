/* Small time helpers. */
#ifndef KVMSCOPE_COMMON_CLOCK_H
#define KVMSCOPE_COMMON_CLOCK_H

#include <time.h>

/* Milliseconds elapsed since t (CLOCK_MONOTONIC). */
static inline long clock__ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

#endif
