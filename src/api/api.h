/* The agent: kvmscope's daemon behind the CA-compatible REST API.
 *
 * One struct agent holds the collection hub, the instrumentations and who
 * owns them. The HTTP server (server.c) authenticates a request, finds its
 * route and calls a handler (routes_ca.c, routes_static.c) with the agent
 * lock held for the CA routes; the drain thread takes the same lock once per
 * second. state.c persists instrumentations across restarts.
 */
#ifndef KVMSCOPE_API_API_H
#define KVMSCOPE_API_API_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "api/tokens.h"

#define API_BODY_MAX		(64 * 1024)
#define API_PER_OWNER_DEFAULT	64
/* Upper bound on an instrumentation's value cells: slots x buckets of the
 * numeric field x API_KEYS_ESTIMATE per discrete field decomposed. */
#define API_CELLS_MAX_DEFAULT	20000000ull
#define API_KEYS_ESTIMATE	16
#define API_PERSIST_INTERVAL	10

struct hub;
struct instr;
struct token_set;
struct fleet;
struct metrics_export;

struct agent_config {
	const char *listen;		/* "ADDR:PORT" */
	const char *state_dir;		/* NULL: no persistence */
	const char *token_file;		/* NULL: everyone is operator (loopback only) */
	const char *web_dir;		/* NULL: no static files */
	const char *proc_root;		/* "/proc" */
	int max_per_owner;		/* instrumentations per owner */
	uint64_t max_cells;
	const char *peers;		/* --peers HOST:PORT,...: aggregate them (NULL: none) */
	const char *peer_token_file;	/* token sent to peers when a caller has none */
	const char *hostname;		/* NULL: gethostname() */
	const char *scope_vms;		/* --scope-vms VM1,VM2: forced on every instrumentation */
	bool metrics;			/* --metrics: GET /metrics (Prometheus) */
	uint64_t metrics_max_series;	/* --metrics-max-series */
	int metrics_keep_s;		/* --metrics-keep: seconds a gone VM's series stay */
};

/* One instrumentation as the agent keeps it. */
struct agent_instr {
	unsigned long id;
	char *owner;			/* owned: principal->owner at creation */
	struct instr *in;		/* owned */
	int consumer;			/* hub consumer id, -1 if not registered */
	int64_t from;			/* records before this second are dropped (partial) */
	int64_t last_read;		/* unix second its value was last read */
	json_t *restored_links;		/* owned: its peers' ids as state.json had them,
					 * until the fleet adopts them (NULL: none) */
	struct agent_instr *next;
};

struct agent {
	struct agent_config cfg;
	pthread_mutex_t lock;		/* hub, instrumentations, next_id, dirty */
	/* every second before this one has been drained: the newest complete
	 * value is the slot before it (reading "now - 1" right after the second
	 * turns, before the drain, would show an empty slot) */
	int64_t drained_to;
	struct hub *hub;
	struct token_set *tokens;	/* NULL without --token-file */
	struct agent_instr *instrs;	/* ascending id */
	unsigned long next_id;
	bool dirty;			/* specs changed since the last persist */
	int64_t last_persist;
	/* the persister thread (state.c); the flags are under lock */
	pthread_t persister;
	pthread_cond_t persist_cv;
	bool persister_running, persist_wanted, persist_stop, persisting;
	char web_root[4096];		/* realpath of the web dir, "" if none */
	struct fleet *fleet;		/* NULL without --peers */
	/* --scope-vms as a tenant-like principal (nvms 0: unscoped); its
	 * predicate is AND-ed onto every instrumentation, the operator's too */
	struct principal scope;
	struct metrics_export *metrics;	/* NULL without --metrics */
};

/* ---- agent.c ---- */

/* Creates a new instrumentation from spec (borrowed) on behalf of who,
 * registers it with the hub and links it into a. Caller holds a->lock.
 * On success *out points into a's list (owned by a). On error returns an
 * HTTP status (>= 400) with the CA error code and message in code/err. */
int agent__create(struct agent *a, const struct principal *who, const json_t *spec,
		  unsigned long id, const char *owner, struct agent_instr **out,
		  const char **code, char *err, size_t errlen);
/* Unlinks and frees ai. Caller holds a->lock. */
void agent__destroy(struct agent *a, struct agent_instr *ai);
/* The instrumentation `id` if who may see it, else NULL. */
struct agent_instr *agent__find(struct agent *a, const struct principal *who, const char *id);
/* The instrumentation `id` whoever owns it, or NULL. Caller holds a->lock. */
struct agent_instr *agent__by_id(struct agent *a, unsigned long id);
bool agent__visible(const struct principal *who, const struct agent_instr *ai);
/* Parses --scope-vms "VM1,VM2" into a->scope (owned by a, agent__free_scope).
 * -EINVAL with the reason in err. */
int agent__set_scope(struct agent *a, const char *list, char *err, size_t errlen);
void agent__free_scope(struct agent *a);
/* Deletes instrumentations unread for longer than their idle-max. */
void agent__expire_idle(struct agent *a, int64_t now);
int64_t agent__now(void);

/* ---- state.c ---- */

/* Writes every instrumentation to STATE_DIR/state.json and persist-data
 * ones' data to STATE_DIR/data/<id>.json, each atomically. Takes a->lock
 * itself, briefly and repeatedly: the caller must not hold it. Failures are
 * logged and leave a->dirty set so that the next request tries again.
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
/* Writes data atomically to path (tmp file, fsync, rename, fsync dir). */
int state__write_atomic(const char *path, const char *data, size_t len);

/* ---- HTTP requests and responses (server.c) ---- */

struct api_request {
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	const char *params[4];		/* ":id" captures in route order */
	const char *body;		/* NUL-terminated, may be "" */
	size_t body_len;
	const char *content_type;	/* "" when absent */
	const struct principal *who;
};

struct api_response {
	int status;
	json_t *json;			/* owned; sent as application/json */
	char *file_path;		/* owned; static file to send */
	const char *file_type;
	const char *allow;		/* for 405 */
	char allow_buf[128];		/* what allow points to when it is built per request */
	char location[64];		/* for 201, "" if none */
	char *body;			/* owned; sent as body_type (/metrics text) */
	size_t body_len;
	const char *body_type;
};

/* Sets r to {"code": code, "message": printf(...)} with status. */
void api__error(struct api_response *r, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A query-string argument, or NULL. */
const char *api__arg(const struct api_request *rq, const char *name);
/* Every query-string argument as a JSON object of strings (repeated
 * names become arrays). New reference. */
json_t *api__args_json(const struct api_request *rq);
/* Copies s into dst (size n) replacing bytes that are not printable ASCII
 * by '?', so that user input can be quoted in JSON and logs safely. */
const char *api__clean(const char *s, char *dst, size_t n);

/* ---- form.c ---- */

/* Parses application/x-www-form-urlencoded into *out: an object of strings,
 * a repeated name becoming an array. -EINVAL with the reason in err
 * (bad %-escape, invalid UTF-8 after decoding). */
int form__parse(const char *buf, size_t len, json_t **out, char *err, size_t errlen);

/* ---- routes ---- */

typedef void (*api_handler_fn)(struct agent *a, const struct api_request *rq,
			       struct api_response *r);

struct api_route {
	const char *method;
	const char *pattern;		/* "/ca/instrumentations/:id/clone" */
	api_handler_fn fn;
	bool locked;			/* run with a->lock held */
};

extern const struct api_route routes_ca[];
extern const size_t routes_ca_count;
void routes_static__serve(struct agent *a, const struct api_request *rq, struct api_response *r);
/* The web directory to use: dir when given, else ../../web relative to the
 * binary (a build tree), else /usr/share/kvmscope/web. Writes its realpath
 * into out; -ENOENT when none exists. */
int routes_static__resolve_root(const char *dir, char *out, size_t outlen);

/* Matches path against pattern; fills params. true on match. */
bool route__match(const char *pattern, const char *path, const char **params, size_t nparams,
		  char *buf, size_t buflen);

/* ---- server.c ---- */
struct api_server;
/* Starts listening. Caller owns *out (server__stop). */
int server__start(struct agent *a, struct api_server **out, char *err, size_t errlen);
void server__stop(struct api_server *s);

/* ---- privs.c ---- */
/* Drops every capability the agent does not need after binding its socket
 * (keeps BPF, PERFMON, SYS_ADMIN, SYS_RESOURCE, SYS_PTRACE, DAC_READ_SEARCH,
 * DAC_OVERRIDE) from the calling thread and the bounding set, and sets
 * no_new_privs. Threads started later inherit the result. 0 or -errno. */
int privs__drop(char *err, size_t errlen);
/* Parses "ADDR:PORT" ("[::1]:7134" for IPv6). */
int server__parse_listen(const char *s, char *addr, size_t addrlen, int *port, bool *loopback);

#endif
