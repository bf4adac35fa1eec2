/* The HTTP side of the agent: kvmscope's CA-compatible REST API, /metrics
 * and the web UI's files.
 *
 * The server (server.c) authenticates a request, finds its route in the one
 * table (routes.c) and calls its handler (routes_ca.c, routes_metrics.c,
 * routes_static.c). Handlers turn the request into calls on the agent
 * (agent/agent.h), which does the work and takes its own lock, and the
 * agent's error kinds into HTTP statuses and CA error bodies.
 */
#ifndef KVMSCOPE_API_API_H
#define KVMSCOPE_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "agent/agent.h"
#include "api/tokens.h"

#define API_BODY_MAX		(64 * 1024)

struct token_set;

/* What handlers need besides the request: the agent and the server's own
 * settings. */
struct api_ctx {
	struct agent *agent;
	const struct token_set *tokens;	/* NULL: everyone is operator (loopback only) */
	const char *web_root;		/* realpath of the web dir, "" if none */
};

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
	/* a request that waits (api_response.wait_until_ms) is dispatched
	 * again later with the deadline it asked for; 0 on its first dispatch */
	int64_t wait_deadline_ms;
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
	int retry_after;		/* seconds, for 503; 0: no Retry-After */
	/* not 0 (and nothing answered): the handler waits for data that is not
	 * final yet; the server sets the request aside, without holding a
	 * thread or the agent lock, and dispatches it again (with
	 * api_request.wait_deadline_ms) whenever it may be ready and once this
	 * unix ms time has passed */
	int64_t wait_until_ms;
	bool empty;			/* no body (OPTIONS) */
};

/* Sets r to {"code": code, "message": printf(...)} with status. */
void api__error(struct api_response *r, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Sets r to the HTTP status and CA error body for the agent's error e. */
void api__agent_error(struct api_response *r, const struct agent_error *e);
/* A query-string argument, or NULL. */
const char *api__arg(const struct api_request *rq, const char *name);
/* Every query-string argument as a JSON object of strings (repeated
 * names become arrays). New reference. */
json_t *api__args_json(const struct api_request *rq);

/* ---- form.c ---- */

/* Parses application/x-www-form-urlencoded into *out: an object of strings,
 * a repeated name becoming an array. -EINVAL with the reason in err
 * (bad %-escape, invalid UTF-8 after decoding). */
int form__parse(const char *buf, size_t len, json_t **out, char *err, size_t errlen);

/* ---- routes ---- */

typedef void (*api_handler_fn)(const struct api_ctx *cx, const struct api_request *rq,
			       struct api_response *r);

enum {
	ROUTE_TOKEN = 1,	/* 401 without a valid bearer token (or none configured) */
};

struct api_route {
	const char *method;		/* NULL: any (after the routes of the same path) */
	const char *pattern;		/* "/ca/instrumentations/:id/clone"; "/ca/" "*": a subtree */
	api_handler_fn fn;
	unsigned int flags;
};

/* routes.c: every path the server answers, in the order they are tried. */
extern const struct api_route api_routes[];
extern const size_t api_routes_count;

/* Matches path against pattern; fills params. A pattern ending in "/" "*"
 * ("/ca/" "*") matches its prefix and everything below it. true on match. */
bool route__match(const char *pattern, const char *path, const char **params, size_t nparams,
		  char *buf, size_t buflen);

/* routes_ca.c */
void routes_ca__catalogue(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__vms(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__peers(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__list(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__create(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__get(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__replace(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__destroy(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__clone(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__value_raw(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__value_list(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__heatmap_list(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__types(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__transformations(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__metrics_legacy(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
/* CA's GET /ca/admin/status (operators): what this agent is and holds. */
void routes_ca__admin_status(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__heatmap_image(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__heatmap_details(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__heatmap_average(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
void routes_ca__heatmap_percentile(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
/* Any other path under /ca: 404. */
void routes_ca__not_found(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
/* routes_metrics.c: GET /metrics (Prometheus/OpenMetrics). */
void routes_metrics__serve(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
/* routes_static.c: the web UI's files. */
void routes_static__serve(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r);
/* The web directory to use: dir when given, else ../../web relative to the
 * binary (a build tree), else /usr/share/kvmscope/web. Writes its realpath
 * into out; -ENOENT when none exists. */
int routes_static__resolve_root(const char *dir, char *out, size_t outlen);

/* ---- server.c ---- */

struct api_server_config {
	const char *listen;		/* "ADDR:PORT" */
	const struct token_set *tokens;	/* borrowed; NULL: everyone is operator */
	const char *web_root;		/* borrowed; "" or NULL: no static files */
};

struct api_server;
/* Binds cfg->listen, drops privileges and starts serving a's API (a and
 * cfg's pointers borrowed: they must outlive the server). Caller owns *out
 * (server__stop). -errno with the reason in err. */
int server__start(struct agent *a, const struct api_server_config *cfg, struct api_server **out,
		  char *err, size_t errlen);
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
