/* The fleet's tick in steps, for tests: plan the requests to the peers,
 * answer them (as the peers would, or not at all), apply the answers. The
 * fleet's thread does the same with curl in between (fleet.c, tick).
 *
 * A tick plans, per peer: a probe (GET /ca), the deletions it still owes,
 * and per instrumentation one of create (POST), verify (GET, after the peer
 * came back), change (PUT) or fetch of the newest slots (value/raw).
 */
#ifndef KVMSCOPE_FLEET_FLEET_PLAN_H
#define KVMSCOPE_FLEET_FLEET_PLAN_H

#include <stddef.h>
#include <stdint.h>

struct fleet;
struct fleet_jobs;

struct fleet_request {
	size_t peer;			/* index in the --peers list */
	const char *method, *url;	/* borrowed from the jobs */
	const char *body;		/* NULL: none */
	const char *auth;		/* "Authorization: Bearer ..." or NULL */
};

/* The requests a tick at `now` sends. Caller owns *out (fleet_jobs__free).
 * 0 or -ENOMEM. */
int fleet__plan(struct fleet *f, int64_t now, struct fleet_jobs **out);
size_t fleet_jobs__count(const struct fleet_jobs *js);
/* The i-th request; -ENOENT past the end. */
int fleet_jobs__request(const struct fleet_jobs *js, size_t i, struct fleet_request *out);
/* The peer answered the i-th request with status and body (copied, may be
 * NULL). 0, -ENOENT, -ENOMEM. */
int fleet_jobs__answer(struct fleet_jobs *js, size_t i, long status, const char *body);
/* The i-th request did not reach its peer. */
int fleet_jobs__unreachable(struct fleet_jobs *js, size_t i, const char *why);
/* Applies the answers, as a tick does after its requests (probes first).
 * Requests neither answered nor unreachable count as unreachable. */
void fleet__apply(struct fleet *f, struct fleet_jobs *js, int64_t now);
void fleet_jobs__free(struct fleet_jobs *js);

#endif
