/* The fleet: one agent aggregating the instrumentations of its peers.
 *
 * `kvmscope agent --peers HOST:PORT,...` makes an agent an aggregator. Every
 * instrumentation created there is also created on each peer (same spec, the
 * caller's bearer token forwarded so that the peers apply their own tenant
 * scoping); the fleet keeps the mapping aggregator id -> peer id and a ring
 * of each peer's per-slot values, fetched once a second over HTTP
 * (value/raw, concurrently, connect timeout 500 ms, total 1 s). Reads on the
 * aggregator merge the peers' slots into the local ones with value__merge.
 *
 * Sources: the aggregator counts itself as one (it instruments its own host
 * like any peer). nsources = 1 + peers up now; a slot's reporting count =
 * 1 + peers whose value for that slot was fetched.
 *
 * Peers that are down are retried every second: instrumentations missing
 * there are created when they return (reconcile). On a peer's return each
 * mapping is verified (same crtime) before its values are trusted again;
 * slots of the outage stay unreported (no backfill).
 *
 * Thread-safety: every function takes the fleet's own lock; the fleet's
 * thread never takes the agent's lock, so callers may hold it.
 */
#ifndef KVMSCOPE_FLEET_FLEET_H
#define KVMSCOPE_FLEET_FLEET_H

#include <stdint.h>
#include <stddef.h>
#include <jansson.h>

#define FLEET_MAX_PEERS		64
#define FLEET_CONNECT_MS	500
#define FLEET_TIMEOUT_MS	1000
/* the latest slots are fetched again each second: a peer's drain may run
 * late, and a slot fetched too early would be kept incomplete */
#define FLEET_REFETCH_SLOTS	3
#define FLEET_RETRY_S		5	/* after a peer refused a creation */

struct fleet;

/* Parses peers ("HOST:PORT,HOST:PORT", numeric or named hosts, IPv6 as
 * [ADDR]:PORT) and sets up the fleet; token (copied, may be NULL) is sent to
 * peers when a caller presented none. Caller owns *out (fleet__free). -EINVAL
 * with the reason in err. */
int fleet__new(const char *peers, const char *token, struct fleet **out, char *err,
	       size_t errlen);
/* Starts the thread that talks to the peers. 0 or -errno. */
int fleet__start(struct fleet *f);
/* Stops the thread and frees everything. */
void fleet__free(struct fleet *f);
size_t fleet__npeers(const struct fleet *f);

/* Forwards the instrumentation `id` (spec borrowed and copied, token copied,
 * may be NULL) to every peer. 0, -ENOMEM, -EEXIST. */
int fleet__track(struct fleet *f, unsigned long id, const json_t *spec, const char *token,
		 int granularity, int retention);
/* Forgets `id`, deleting it on the peers (retried until they answer). */
void fleet__forget(struct fleet *f, unsigned long id);
/* A PUT on `id`: the changeable properties of body (borrowed) are sent on to
 * the peers; retention is the new one. */
int fleet__update(struct fleet *f, unsigned long id, const json_t *body, int retention);
/* The spec `id` was forwarded with; new reference, NULL if not tracked. */
json_t *fleet__spec(struct fleet *f, unsigned long id);

/* Merges the peers' values for the slot starting at start into value (in
 * place) and returns the sources that reported it, the aggregator included.
 * -errno when a peer's value has another shape (it is then left out). */
int fleet__merge_slot(struct fleet *f, unsigned long id, int64_t start, json_t *value);
/* Sources now: 1 + peers up. */
int fleet__nsources(struct fleet *f);
/* Rewrites a value/raw answer (one object or an array of them) of `id`:
 * merges the peers' values into each point and sets its nsources and
 * minreporting (the fewest sources reporting any slot of the point). */
int fleet__annotate_raw(struct fleet *f, unsigned long id, json_t *raw);

/* [{"address", "state", "id", "since", "last_error"}] for `id`: the peer's
 * id (null while not created or being verified), the first slot it reports;
 * new reference. */
json_t *fleet__instr_status(struct fleet *f, unsigned long id);
/* The mapping of `id` to the peers, for the aggregator's state file:
 * [{"address", "id", "crtime"}] for each peer holding it; new reference
 * (an empty array when none, NULL when out of memory). */
json_t *fleet__links_json(struct fleet *f, unsigned long id);
/* Takes back a mapping that fleet__links_json() gave before a restart
 * (links borrowed), for `id` already tracked: each peer's instrumentation
 * is verified (same crtime) before it is read again, and created anew if it
 * is gone or another, so that a restarted aggregator does not leave a
 * second copy on every peer. Entries for addresses that are no longer peers
 * are skipped (logged). Values resume from the next slot. 0, -ENOENT (id
 * not tracked), -EINVAL (links malformed). */
int fleet__adopt(struct fleet *f, unsigned long id, const json_t *links);
/* [{"address", "state": "up"|"down"|"unknown", "last_error", "last_success",
 *   "down_since", "instrumentations", "pending_deletes"}]; new reference. */
json_t *fleet__peers_json(struct fleet *f);

#endif
