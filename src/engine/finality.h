/* Finality: which seconds of a metric are shown for good.
 *
 * A second S of a metric is final once it has been drained and, for
 * vm.exits, every exit that began in S has ended and been booked in S; a
 * second is declared final at most FINAL_WAIT_MAX_S seconds after its end
 * even if an exit that began in it is still open (that exit is then booked
 * in the second it ends). final_until T says every second < T is final; it
 * never goes back. A value covering a second >= T is partial: it may still
 * grow. These are the pure rules; the collectors feed them what the kernel
 * says is open, the API and the terminal commands apply them. */
#ifndef KVMSCOPE_ENGINE_FINALITY_H
#define KVMSCOPE_ENGINE_FINALITY_H

#include <stdbool.h>
#include <stdint.h>

/* Seconds after its end that a second waits at most for its open exits. */
#define FINAL_WAIT_MAX_S	3
/* The drain of second S runs about this long after S ends (cmd_agent.c). */
#define FINAL_DRAIN_GRACE_MS	150
/* No second is open: for finality__advance's oldest_open. */
#define FINAL_NONE_OPEN		INT64_MAX

/* The final_until after a drain of every second < drained_before (unix s)
 * when the oldest exit still open began in second oldest_open
 * (FINAL_NONE_OPEN: none): min(drained_before, oldest_open), but at least
 * drained_before - wait_max (the cap) and at least prev (monotonic). */
int64_t finality__advance(int64_t prev, int64_t drained_before, int64_t oldest_open,
			  int wait_max);

/* Whether the data point [start, end) is partial under final_until, and if
 * so *delay_s: whole seconds (>= 1) until it is expected to be final, at
 * now_ms (unix ms). drained_before: seconds < it are drained. A point not
 * yet drained is expected at the drain of its last second; one drained but
 * held by an open exit, at the latest when the cap releases its last
 * second. */
bool finality__point(int64_t final_until, int64_t drained_before, int64_t end, int64_t now_ms,
		     int64_t *delay_s);

/* The start of the default data point of ndatapoints points of duration
 * dur on granularity g: of CA's default (ca_start, now - duration -
 * granularity) and the newest start whose points are all final, the newer
 * one whose points are all final. final_until <= 0 (nothing known yet):
 * ca_start. */
int64_t finality__default_start(int64_t ca_start, int64_t final_until, int64_t dur, int64_t ndp,
				int64_t g);

#endif
