/* The fleet: kvmscope agents of many hosts on a NATS bus (docs/fleet.md).
 *
 * `kvmscope agent --nats URL,... --fleet NAME --hostname H` makes an agent a
 * member of fleet NAME. The fleet's instrumentations are fleet state: one
 * key "i.<id>" per instrumentation in the JetStream key-value bucket
 * KS_<NAME> holding {"spec", "owner", "owner_id", "granularity",
 * "retention"}; every member watches it and instruments its own host with
 * each (as the owner: a tenant's VMs scope it on every host), and a member
 * that joins or returns gets the current set from the bucket.
 *
 * Once a second, after its drain, a member publishes each fleet
 * instrumentation's slots completed since the last time, in the binary form
 * of fleet/wire.h, on kvmscope.<NAME>.s.<id>.<host>, and a heartbeat on
 * kvmscope.<NAME>.h.<host>. It answers requests for older slots (which it
 * keeps as long as its retention-time does) on kvmscope.<NAME>.r.<host>.
 *
 * An aggregator (--aggregate) is a member whose API creates, changes and
 * deletes the fleet's instrumentations (ids are fleet-wide: the bucket's
 * create refuses an id taken) and that subscribes to every host's slots; its
 * reads merge the other hosts' slots into its own with value__merge. Several
 * aggregators may serve one fleet: each hears everything and answers alike.
 * nsources = 1 + hosts whose heartbeat is fresh; a slot's reporting count =
 * 1 + hosts whose value for it arrived. A value that cannot be merged (another
 * shape, another granularity, more keys than the bound) is left out and
 * counted: a slot lacking a host is reported short, never wrong. Missing
 * slots of a host that reports again are requested from it (backfill).
 *
 * Host names go into subjects with '.' written as '~' (so "web1.example"
 * is one subject token); a --hostname with '~', '*', '>' or spaces is
 * refused in a fleet.
 *
 * Thread-safety: every function takes the fleet's own lock; the fleet's
 * threads (its own and the NATS library's) never take the agent's lock, so
 * callers may hold it. Publishing never blocks: messages wait in a bounded
 * outbox (FLEET_OUTBOX_BYTES) that the fleet's publisher empties onto the
 * bus (and the library's own reconnect buffer, as large, while the bus is
 * away); beyond, they are dropped, counted, and left to the aggregators'
 * requests.
 */
#ifndef KVMSCOPE_FLEET_FLEET_H
#define KVMSCOPE_FLEET_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define FLEET_OUTBOX_BYTES	(16 << 20)
#define FLEET_ALIVE_MS		3500	/* a heartbeat older than this: host gone */
#define FLEET_RING_SLOTS	600	/* slots an aggregator keeps per host and instrumentation */
#define FLEET_MAX_HOSTS		4096
/* keys of one host's message beyond which it is refused and the host
 * marked as flooding */
#define FLEET_MAX_HOST_KEYS	100000
/* keys and buckets an aggregator keeps of one host's instrumentation over
 * its ring; a slot past it is refused (missing) and the host marked */
#define FLEET_MAX_HOST_CELLS	1000000
#define FLEET_REQUEST_EVERY_MS	2000	/* between two requests for one host's gaps */
#define FLEET_REQUEST_TRIES	3	/* a range a host never fills is given up */
#define FLEET_KV_TIMEOUT_MS	1000
#define FLEET_NAME_MAX		64

struct fleet;
struct instr;

struct fleet_config {
	const char *urls;		/* nats://HOST:PORT,... (borrowed) */
	const char *name;		/* the fleet: [A-Za-z0-9_-]{1,64} */
	const char *host;		/* this host's name */
	const char *auth_file;		/* NULL: none; "user U\npassword P" or "token T", mode 0600 */
	const char *tls_ca;		/* NULL: plain TCP unless the URL says tls:// */
	const char *tls_cert, *tls_key;	/* a client certificate (both or neither) */
	bool aggregate;
	int replicas;			/* the bucket's (0: 3, or 1 where the bus has one server) */
};

/* Checks cfg (copied) and reads its auth file. Caller owns *out
 * (fleet__free). -EINVAL with the reason in err. */
int fleet__new(const struct fleet_config *cfg, struct fleet **out, char *err, size_t errlen);
/* Connects (in the background: an unreachable bus is retried for ever and
 * reported) and starts the fleet's thread. 0 or -errno with err set. */
int fleet__start(struct fleet *f, char *err, size_t errlen);
/* Stops everything and frees f; NULL is fine. */
void fleet__free(struct fleet *f);
bool fleet__aggregating(const struct fleet *f);

/* ---- the bucket (aggregators) ---- */

/* Puts instrumentation id in the bucket if no one holds that id: spec is
 * what the caller sent (borrowed), owner its principal. 0, -EEXIST (another
 * aggregator took id), -EAGAIN (the bucket cannot be reached: err says why),
 * -ENOMEM. */
int fleet__create(struct fleet *f, unsigned long id, const json_t *spec, const char *owner,
		  unsigned long owner_id, int granularity, int retention, char *err, size_t errlen);
/* Deletes id from the bucket (queued, retried until the bus takes it). */
void fleet__delete(struct fleet *f, unsigned long id);
/* The changeable properties of changes (borrowed) into id's record
 * (queued). 0, -ENOENT (not in the bucket), -ENOMEM. */
int fleet__change(struct fleet *f, unsigned long id, const json_t *changes, int retention);
/* id's spec as the bucket holds it; new reference, NULL if none. */
json_t *fleet__spec(struct fleet *f, unsigned long id);

/* ---- what members do with the bucket ---- */

/* SYNCED: every key of the bucket came (after a start or a reconnect):
 * fleet instrumentations fleet__known() denies are gone */
enum fleet_event_kind { FLEET_EV_PUT, FLEET_EV_DEL, FLEET_EV_SYNCED };
struct fleet_event {
	enum fleet_event_kind kind;
	unsigned long id;
	json_t *record;			/* PUT: owned by the receiver */
};
/* The next change of the bucket, in order. 0, or -ENOENT when none. */
int fleet__next_event(struct fleet *f, struct fleet_event *ev);
/* Does the bucket hold id (as far as the watch has told)? */
bool fleet__known(struct fleet *f, unsigned long id);

/* ---- publishing (the agent's tick) ---- */

/* The agent instruments fleet instrumentation id with in (borrowed, read
 * during the calls below only): its slots from `from` on are published. */
void fleet__attach(struct fleet *f, unsigned long id, int64_t from);
void fleet__detach(struct fleet *f, unsigned long id);
/* Publishes the slots of id completed before drained_to and not published
 * yet. Caller holds whatever protects in. 0 or -errno (counted). */
int fleet__publish(struct fleet *f, unsigned long id, const struct instr *in, int64_t from,
		   int64_t drained_to);
struct fleet_request {
	unsigned long id;
	int64_t from, to;		/* slots starting in [from, to) */
};
/* The next request for older slots. 0, or -ENOENT when none. */
int fleet__next_request(struct fleet *f, struct fleet_request *rq);
/* Answers rq with what in holds (slots from `from`, before drained_to,
 * within its retention). */
int fleet__answer(struct fleet *f, const struct fleet_request *rq, const struct instr *in,
		  int64_t from, int64_t drained_to);
/* Publishes this host's heartbeat. */
void fleet__heartbeat(struct fleet *f, int64_t now, size_t ninstrs);

/* ---- reading (aggregators) ---- */

/* Merges the other hosts' values for the slot starting at start into value
 * (in place) and returns the sources that reported it, this host included
 * when the slot is not older than self_from (the first second of its own
 * data: an aggregator that joined later did not see the slots before). */
int fleet__merge_slot(struct fleet *f, unsigned long id, int64_t start, int64_t self_from,
		      json_t *value);
/* Sources now: 1 + other hosts alive. */
int fleet__nsources(struct fleet *f);
/* Rewrites a value/raw answer (one object or an array of them) of id:
 * merges the hosts' values into each point and sets its nsources and
 * minreporting (the fewest sources reporting any slot of the point). */
int fleet__annotate_raw(struct fleet *f, unsigned long id, int64_t self_from, json_t *raw);
/* [{"host", "from", "newest", "slots", "refused"}] for id; new reference. */
json_t *fleet__instr_status(struct fleet *f, unsigned long id);
/* {"bus": {...}, "hosts": [...]}: see docs/fleet.md; new reference. */
json_t *fleet__status_json(struct fleet *f);
/* Notes a read of id (for idle-max): aggregators tell each other. */
void fleet__touch(struct fleet *f, unsigned long id, int64_t now);
/* The newest read of id any aggregator reported (0: none). */
int64_t fleet__last_read(struct fleet *f, unsigned long id);

#endif
