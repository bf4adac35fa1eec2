/* The agent's insides, shared by agent.c and state.c only. */
#ifndef KVMSCOPE_AGENT_INTERNAL_H
#define KVMSCOPE_AGENT_INTERNAL_H

#include <pthread.h>

#include "agent/agent.h"
#include "engine/record.h"

struct hub;
struct instr;
struct fleet;
struct metrics_export;

/* One instrumentation as the agent keeps it. */
struct agent_instr {
	unsigned long id;		/* host-wide, never reused: the operator's */
	/* its number among its owner's (the id a tenant sees and addresses: a
	 * tenant must not learn from gaps in its ids how many instrumentations
	 * others made); the operator's own have owner_id == id */
	unsigned long owner_id;
	char *owner;			/* owned: principal->owner at creation */
	struct instr *in;		/* owned */
	int consumer;			/* hub consumer id, -1 if not registered */
	int64_t from;			/* records before this second are dropped (partial) */
	int64_t last_read;		/* unix second its value was last read */
	/* its id in the fleet's bucket (0: this host's only); an aggregator's
	 * are the same as id, a member's are its own copies of the fleet's */
	unsigned long fleet_id;
	bool fleet_pending;		/* being put in the bucket (forward_created) */
	/* data/<id>.log as the persister left it (state.c): the start of the
	 * next slot to append (0: the file is to be written whole) and the
	 * records it holds */
	int64_t log_next;
	size_t log_records;
	struct agent_instr *next;
};

struct agent {
	struct agent_config cfg;
	pthread_mutex_t lock;		/* everything below but what the threads own */
	/* every second before this one has been drained: the newest complete
	 * value is the slot before it (reading "now - 1" right after the second
	 * turns, before the drain, would show an empty slot) */
	int64_t drained_to;
	/* per metric: every second before it is final (hub__final_until) */
	int64_t final_until[METRIC__COUNT];
	struct hub *hub;
	struct agent_instr *instrs;	/* ascending id */
	unsigned long next_id;
	/* owned: {"tenant:...": the next owner_id of that owner}; never
	 * lowered, so that a tenant's ids are never reused either */
	json_t *owner_next;
	bool dirty;			/* specs changed since the last persist */
	int64_t last_persist;
	bool started;			/* agent__start ran: save at the end */
	/* the persister thread (state.c); the flags are under lock */
	pthread_t persister;
	pthread_cond_t persist_cv;
	bool persister_running, persist_wanted, persist_stop, persisting;
	/* the state dir (state.c): its fd and the fd of its held lock file
	 * (-1: none); state_io serialises the writes of state.json and the
	 * reopening of the dir, and is taken before a->lock */
	int state_dfd, state_lockfd;
	pthread_mutex_t state_io;
	json_t *state_kept;		/* owned: entries of state.json not restored,
					 * written back as they were on every save */
	json_t *state_duplicates;	/* owned: entries whose id came twice */
	unsigned long *state_deleted;	/* owned: ids deleted, their data files to remove */
	size_t state_ndeleted, state_deleted_cap;
	struct fleet *fleet;		/* NULL without --nats */
	/* --scope-vms as a tenant-like principal (nvms 0: unscoped); its
	 * predicate is AND-ed onto every instrumentation, the operator's too */
	struct principal scope;
	struct metrics_export *metrics;	/* NULL without --metrics */
	struct agent_replay *replay;	/* NULL unless --replay: then no hub */
};

/* ---- agent.c, for state.c (caller holds a->lock) ---- */

/* Creates the instrumentation `id` of `owner` from a saved spec (borrowed),
 * as the operator would; owner_id is its number among its owner's (0: a
 * tenant's gets the owner's next, the operator's its id). On success *out
 * points into a's list. */
int agent__restore(struct agent *a, const json_t *spec, unsigned long id, const char *owner,
		   unsigned long owner_id, struct agent_instr **out, struct agent_error *e);
struct agent_instr *agent__by_id(struct agent *a, unsigned long id);

/* ---- state.c ---- */

/* Before anything else in agent__new: no state dir yet. */
void state__init(struct agent *a);
/* Opens a->cfg.state_dir (creating it), refuses one that others may write
 * or that someone else owns, and takes its lock: a second agent on it is
 * refused with the first one's pid. 0 or -errno with the reason in err. */
int state__open(struct agent *a, char *err, size_t errlen);
/* Releases the dir, its lock and what state__load kept. */
void state__close(struct agent *a);
/* Writes state.json now, from what the agent holds now (data files stay
 * with the persister): a request answers only after this. Caller does not
 * hold a->lock. 0 or -errno with e set. */
int state__commit(struct agent *a, struct agent_error *e);
/* Notes that instrumentation id is deleted: its data files go at the next
 * save. Caller holds a->lock. */
void state__deleted(struct agent *a, unsigned long id);

/* Writes every instrumentation to STATE_DIR/state.json and persist-data
 * ones' data to STATE_DIR/data/<id>.json, each atomically. Takes a->lock
 * itself, briefly and repeatedly: the caller must not hold it. Failures are
 * logged and leave a->dirty set so that the next tick tries again.
 * 0 or -errno. */
int state__save(struct agent *a);
/* Restores state.json and the data files, if any. A state.json that cannot
 * be parsed is renamed aside to state.json.bad-<unix time> and reported; the
 * agent starts empty. Caller holds a->lock. Returns instrumentations
 * restored. */
int state__load(struct agent *a);
/* Starts the persister thread (nothing without a state dir): it runs
 * state__save() each time state__request() asks. 0 or -errno. */
int state__start(struct agent *a);
/* Asks for a save, unless one is under way. Caller holds a->lock. */
void state__request(struct agent *a);
/* Stops and joins the persister; a save under way finishes first. Caller
 * does not hold a->lock. */
void state__stop(struct agent *a);

/* ---- replay.c (caller holds a->lock, but in replay__open/close) ---- */

/* Reads the recording at path once: its seconds and VM tables. The
 * agent's now becomes the second after its last. 0 or -errno (not a
 * recording, corrupt, no complete second) with the reason in err. */
int replay__open(struct agent *a, const char *path, char *err, size_t errlen);
void replay__close(struct agent *a);
/* Without a retention-time, spec (a copy the caller owns) gets one that
 * covers the recording. 0 or -ENOMEM. */
int replay__adjust_spec(struct agent *a, json_t *spec);
/* Feeds every recorded second into ai->in. 0 or -errno with e set. */
int replay__feed(struct agent *a, struct agent_instr *ai, struct agent_error *e);
/* Every VM the recording's VM tables held (new reference, NULL: no memory). */
json_t *replay__vms(struct agent *a);

#endif
