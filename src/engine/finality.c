/* Finality rules: see finality.h. */
#include "engine/finality.h"

int64_t finality__advance(int64_t prev, int64_t drained_before, int64_t oldest_open,
			  int wait_max)
{
	int64_t t = oldest_open < drained_before ? oldest_open : drained_before;

	if (t < drained_before - wait_max)
		t = drained_before - wait_max;
	return t > prev ? t : prev;
}

bool finality__point(int64_t final_until, int64_t drained_before, int64_t end, int64_t now_ms,
		     int64_t *delay_s)
{
	int64_t expected_ms, d;

	if (end <= final_until) {
		*delay_s = 0;
		return false;
	}
	expected_ms = end * 1000 + FINAL_DRAIN_GRACE_MS;
	if (end <= drained_before)
		expected_ms += (int64_t)FINAL_WAIT_MAX_S * 1000;
	d = expected_ms - now_ms;
	d = d <= 0 ? 1 : (d + 999) / 1000;
	*delay_s = d;
	return true;
}

static int64_t floor_to(int64_t t, int64_t g)
{
	int64_t r = t % g;

	return r < 0 ? t - r - g : t - r;
}

int64_t finality__default_start(int64_t ca_start, int64_t final_until, int64_t dur, int64_t ndp,
				int64_t g)
{
	int64_t ndur, newest;

	if (final_until <= 0 || g <= 0 || dur <= 0 || ndp <= 0)
		return ca_start;
	ndur = (dur + g - 1) / g * g;
	newest = floor_to(final_until - ndp * ndur, g);
	if (floor_to(ca_start, g) + ndp * ndur <= final_until && ca_start > newest)
		return ca_start;
	return newest;
}
