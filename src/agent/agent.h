/* The agent: kvmscope's daemon state below HTTP.
 *
 * One struct agent (opaque) holds the collection hub, the instrumentations
 * and who owns them, the optional fleet on a NATS bus (--nats), the Prometheus
 * exporter (--metrics) and the persister of state.json. Every function here
 * takes the agent's one lock itself and copies out what it returns, so
 * callers (the HTTP API, tests) never see the lock, the hub, the fleet or
 * the persister: the agent tells the fleet and the persister of each change
 * itself.
 *
 * Errors: 0 or -errno, and for requests an error kind and a message in a
 * struct agent_error. Kinds say what went wrong in the agent's terms; the
 * API maps them to HTTP statuses and CA error codes.
 */
#ifndef KVMSCOPE_AGENT_AGENT_H
#define KVMSCOPE_AGENT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "export/om.h"

#define AGENT_PER_OWNER_DEFAULT	64
/* Upper bound on an instrumentation's value cells: slots x buckets of the
 * numeric field x AGENT_KEYS_ESTIMATE per discrete field decomposed. */
#define AGENT_CELLS_MAX_DEFAULT	20000000ull
/* Cells a reader copies per hold of the agent lock (about 2 ms here). */
#define AGENT_WINDOW_COPY_CELLS	100000
#define AGENT_KEYS_ESTIMATE	16
#define AGENT_PERSIST_INTERVAL	10

struct agent;
struct dist_window;
struct instr;

enum principal_role { ROLE_OPERATOR, ROLE_TENANT };

/* Who asks: an operator sees and manages everything; a tenant only its VMs
 * (its instrumentations get a forced VM predicate) and its own
 * instrumentations. */
struct principal {
	enum principal_role role;
	char *owner;		/* "operator" or "tenant:VM1,VM2" */
	char **vms;		/* tenant: the VMs it may see */
	size_t nvms;
};

struct agent_config {
	const char *state_dir;		/* NULL: no persistence */
	const char *proc_root;		/* NULL: "/proc" */
	int max_per_owner;		/* instrumentations per owner (0: default) */
	uint64_t max_cells;		/* 0: default */
	/* the fleet (fleet/fleet.h): nats://HOST:PORT,... (NULL: none) */
	const char *nats;
	const char *fleet;		/* its name */
	const char *nats_auth_file;	/* NULL: none */
	const char *nats_tls_ca, *nats_tls_cert, *nats_tls_key;
	bool aggregate;			/* serve the fleet's instrumentations */
	int nats_replicas;		/* the bucket's (0: 3, or 1 on a one-server bus) */
	const char *hostname;		/* NULL: gethostname() */
	const char *scope_vms;		/* VM1,VM2: forced on every instrumentation */
	bool metrics;			/* the Prometheus exporter */
	uint64_t metrics_max_series;
	int metrics_keep_s;
	const char *replay;		/* a recording to serve instead of the host
					 * (agent/replay.c; NULL: collect) */
};

enum agent_errkind {
	AGENT_OK = 0,
	AGENT_EINVAL,		/* malformed: wrong types or shapes */
	AGENT_ESEMANTIC,	/* well-formed but meaningless here: unknown metric
				 * or field, a field the caller may not use, too large */
	AGENT_ENOENT,		/* no such instrumentation visible to the caller,
				 * or the facility is off */
	AGENT_EPERM,		/* the caller's role may not */
	AGENT_ECONFLICT,	/* a property fixed at creation would change */
	AGENT_ELIMIT,		/* the owner has as many instrumentations as allowed */
	AGENT_EUNAVAIL,		/* collection cannot start now */
	AGENT_EINTERNAL,	/* out of memory, the fleet's bucket unreachable */
};

struct agent_error {
	enum agent_errkind kind;
	char msg[512];
};

/* What a reader needs to know of an instrumentation before it reads. */
struct agent_instr_info {
	unsigned long id;
	int granularity, retention;
	char numeric_field[64];		/* "" when it has none */
	int64_t now;			/* the newest complete second + 1 */
	int64_t drained_to;		/* every second before it is drained (0: none yet) */
	int64_t final_until;		/* every second before it is final (engine/finality.h) */
	int64_t created;		/* crtime, in seconds */
	int nsources;			/* CA's nsources: 1, or the live hosts of a fleet */
};

/* Sets up the hub, the fleet, the exporter and restores STATE_DIR/state.json
 * (cfg's strings are borrowed: they must outlive the agent). No thread is
 * started yet (agent__start). On success the caller owns *out (agent__free).
 * -EINVAL for a bad configuration, other -errno when the host refuses; the
 * reason in err. */
int agent__new(const struct agent_config *cfg, struct agent **out, char *err, size_t errlen);
/* Starts the agent's threads: the persister, and the fleet's. Threads inherit the caller's
 * signal mask and privileges. 0 or -errno with the reason in err. */
int agent__start(struct agent *a, char *err, size_t errlen);
/* Once a second, when the second before now is complete: drains the hub
 * into the instrumentations, deletes those unread for longer than their
 * idle-max (on the whole fleet, for an aggregator's), ticks the exporter and asks for a save when
 * one is due. */
void agent__tick(struct agent *a, int64_t now);
/* Stops the threads, saves a started agent's state a last time, stops the
 * collectors and frees everything. NULL is fine. */
void agent__free(struct agent *a);
int64_t agent__now(void);
/* Instrumentations now, whoever owns them. */
size_t agent__count(struct agent *a);
/* The state directory the agent was started with (NULL or "" without
 * one); owned by the agent, fixed for its life. */
const char *agent__state_dir(const struct agent *a);
/* Copies s into dst (size n) replacing bytes that are not printable ASCII,
 * '"' and '\\' by '?', so that user input can be quoted in messages (JSON,
 * logs) safely. Returns dst. */
const char *agent__clean(const char *s, char *dst, size_t n);

/* Requests. `id` is the caller's text ("12"); peer_token is unused (the
 * fleet's hosts scope a tenant by its owner, which the bucket carries). JSON results are new references owned by the
 * caller. Each returns 0 or -errno with e set. */
int agent__catalogue(struct agent *a, const struct principal *who, json_t **out,
		     struct agent_error *e);
int agent__vms(struct agent *a, const struct principal *who, json_t **out, struct agent_error *e);
int agent__peers(struct agent *a, const struct principal *who, json_t **out,
		 struct agent_error *e);
int agent__list(struct agent *a, const struct principal *who, json_t **out,
		struct agent_error *e);
/* spec borrowed. *out: the instrumentation as created, *id its id. */
int agent__create(struct agent *a, const struct principal *who, const char *peer_token,
		  const json_t *spec, json_t **out, unsigned long *id, struct agent_error *e);
int agent__get(struct agent *a, const struct principal *who, const char *id, json_t **out,
	       struct agent_error *e);
/* Changes what may change (retention-time, idle-max, persist-data) from
 * changes (borrowed), keeping the data; a fixed property that would change
 * is AGENT_ECONFLICT. The replaced one does not count against the owner's
 * limit. */
int agent__replace(struct agent *a, const struct principal *who, const char *id,
		   const json_t *changes, json_t **out, struct agent_error *e);
/* A new instrumentation: `id`'s spec with changes (borrowed) applied. */
int agent__clone(struct agent *a, const struct principal *who, const char *peer_token,
		 const char *id, const json_t *changes, json_t **out, unsigned long *new_id,
		 struct agent_error *e);
int agent__destroy(struct agent *a, const struct principal *who, const char *id,
		   struct agent_error *e);
int agent__find(struct agent *a, const struct principal *who, const char *id,
		struct agent_instr_info *info, struct agent_error *e);
/* value/raw (see instr__value_raw), merged with the fleet's hosts' values. Counts as
 * a read for idle-max. */
int agent__value_raw(struct agent *a, const struct principal *who, const char *id,
		     long long start, long long duration, int ndatapoints, json_t **out,
		     struct agent_error *e);
/* Calls fn(in, arg) under the agent lock with instrumentation id's engine
 * object, borrowed for the call only; *result gets what fn returns. For a
 * reader that copies what it needs in pieces (the live heatmap cache), one
 * call per piece: the lock is never held across calls. Counts as a read for
 * idle-max. 0, -ENOENT (AGENT_ENOENT) when who cannot see id, or -EXDEV
 * for an aggregator's instrumentation, whose values are not in `in` alone
 * but merged with the fleet's hosts' (use agent__window). */
int agent__read_instr(struct agent *a, const struct principal *who, const char *id,
		      long (*fn)(const struct instr *in, void *arg), void *arg, long *result,
		      struct agent_error *e);
/* Copies nslots slots from start into w (initialised here; the caller's, to
 * dist_window__free, also on error), a bounded number of cells per hold of
 * the lock; an aggregator's are merged with the fleet's hosts'. The window is
 * finished (sorted). Counts as a read for idle-max. An instrumentation
 * deleted meanwhile is AGENT_ENOENT. */
int agent__window(struct agent *a, const struct principal *who, const char *id, int64_t start,
		  size_t nslots, struct dist_window *w, struct agent_error *e);
/* The exporter's exposition text (*out owned by the caller, free). Operators
 * only; AGENT_ENOENT without --metrics. */
int agent__metrics(struct agent *a, const struct principal *who, enum om_format fmt,
		   double started, char **out, size_t *len, struct agent_error *e);

#endif
