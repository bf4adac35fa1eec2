/* HTTP plumbing (libmicrohttpd): bodies and their limit, authentication,
 * routing by table, JSON errors, responses.
 *
 * A pool of MHD threads serves the connections; handlers call the agent,
 * which serializes on its own lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api/api.h"
#include "api/conn_guard.h"
#include "common/log.h"

/* A request set aside until its data is final (api_response.wait_until_ms). */
struct waiter {
	struct MHD_Connection *conn;
	struct waiter *next;
};

struct api_server {
	struct MHD_Daemon *daemon;
	struct api_ctx cx;
	struct conn_guard *guard;
	/* suspended requests, resumed by the waker thread every
	 * SERVER_WAIT_POLL_MS to look again (finality moves once a second;
	 * a look costs one agent__find) */
	pthread_mutex_t wait_lock;
	pthread_cond_t wait_cv;
	struct waiter *waiting;
	pthread_t waker;
	bool waker_running;
	atomic_bool stopping;		/* set under wait_lock; read by handlers too */
};

#define SERVER_WAIT_POLL_MS	100

#define SERVER_CONN_LIMIT	512
#define SERVER_PER_IP_LIMIT	256
/* Query parameters a request may carry: no route takes more than a dozen.
 * microhttpd keeps each in its per-connection pool and, when the pool is
 * full, closes the connection without an answer; beyond this count the
 * query is cut before microhttpd parses it and the request gets 414. */
#define SERVER_MAX_PARAMS	256
#define SERVER_HEADER_MEMORY	(32 * 1024)

/* Per-request state between MHD's calls, freed in request_done. */
struct conn_ctx {
	char *body;
	size_t len, cap;
	bool too_large;
	bool answered;
	bool started;			/* on_request has seen the headers */
	unsigned nparams;		/* > SERVER_MAX_PARAMS: the query was cut */
	int64_t wait_deadline_ms;	/* set aside until then (0: never was) */
};

/* Resumes every waiting request (each handler looks again and answers or
 * waits again), every SERVER_WAIT_POLL_MS, until the server stops. */
static void *waker_main(void *arg)
{
	struct api_server *s = arg;

	pthread_mutex_lock(&s->wait_lock);
	while (!s->stopping) {
		struct timespec until;
		struct waiter *w;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += SERVER_WAIT_POLL_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->wait_cv, &s->wait_lock, &until);
		while ((w = s->waiting)) {
			s->waiting = w->next;
			MHD_resume_connection(w->conn);
			free(w);
		}
	}
	pthread_mutex_unlock(&s->wait_lock);
	return NULL;
}

/* Sets the request aside (from its own handler call, as microhttpd wants).
 * false when it cannot wait: it is answered now. */
static bool wait_aside(struct api_server *s, struct MHD_Connection *conn)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return false;
	pthread_mutex_lock(&s->wait_lock);
	if (s->stopping || !s->waker_running) {
		pthread_mutex_unlock(&s->wait_lock);
		free(w);
		return false;
	}
	/* suspended before the waker can see it, so that its resume follows */
	MHD_suspend_connection(conn);
	w->conn = conn;
	w->next = s->waiting;
	s->waiting = w;
	pthread_mutex_unlock(&s->wait_lock);
	return true;
}

/* CA's error code for a kvmscope status: CA clients read error.code, so
 * every kvmscope status maps to the ECA_* code CA uses for that kind of
 * failure (ca-http.js: ECA_INVAL for bad input, ECA_NORESOURCE when out of
 * resources, ECA_NOENT when there is no such thing). */
static const char *ca_code(int status)
{
	if (status == 404)
		return "ECA_NOENT";
	if (status == 503 || status == 429)
		return "ECA_NORESOURCE";
	if (status >= 500)
		return "ECA_UNKNOWN";
	return "ECA_INVAL";
}

/* kvmscope's {"code","message"} with CA's {"error":{"code","message"}}
 * alongside, so that clients of either read the same body. New reference
 * owned by the caller, NULL when msg is not UTF-8. */
static json_t *error_body(const char *code, const char *msg, int status)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s}}", "code", code, "message", msg, "error",
			 "code", ca_code(status), "message", msg);
}

void api__error(struct api_response *r, int status, const char *code, const char *fmt, ...)
{
	char msg[1024], clean[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_decref(r->json);
	r->status = status;
	r->json = error_body(code, msg, status);
	if (!r->json)	/* msg quoted something that is not UTF-8 */
		r->json = error_body(code, agent__clean(msg, clean, sizeof(clean)), status);
}

void api__agent_error(struct api_response *r, const struct agent_error *e)
{
	static const struct {
		int status;
		const char *code;
	} map[] = {
		[AGENT_OK] = { 500, "InternalError" },	/* not an error: a bug */
		[AGENT_EINVAL] = { 400, "InvalidArgument" },
		[AGENT_ESEMANTIC] = { 422, "InvalidArgument" },
		[AGENT_ENOENT] = { 404, "ResourceNotFound" },
		[AGENT_EPERM] = { 403, "Forbidden" },
		[AGENT_ECONFLICT] = { 409, "InvalidState" },
		[AGENT_ELIMIT] = { 429, "TooManyInstrumentations" },
		[AGENT_EUNAVAIL] = { 503, "InternalError" },
		[AGENT_EINTERNAL] = { 500, "InternalError" },
	};
	size_t k = (size_t)e->kind < sizeof(map) / sizeof(map[0]) ? (size_t)e->kind : AGENT_OK;

	api__error(r, map[k].status, map[k].code, "%s", e->msg);
}

const char *api__arg(const struct api_request *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	json_t *o = cls, *v, *old;

	(void)kind;
	v = json_string(value ? value : "");
	if (!v || !key || !*key) {
		json_decref(v);
		json_object_set_new(o, "\x01invalid", json_true());
		return MHD_YES;
	}
	old = json_object_get(o, key);
	if (!old) {
		/* jansson refuses a key that is not UTF-8 */
		if (json_object_set_new(o, key, v))
			json_object_set_new(o, "\x01invalid", json_true());
	}
	else if (json_is_array(old))
		json_array_append_new(old, v);
	else
		json_object_set_new(o, key, json_pack("[O,o]", old, v));
	return MHD_YES;
}

json_t *api__args_json(const struct api_request *rq)
{
	json_t *o = json_object();

	if (o)
		MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, collect_arg, o);
	return o;
}

bool route__match(const char *pattern, const char *path, const char **params, size_t nparams,
		  char *buf, size_t buflen)
{
	size_t np = 0, used = 0, plen = strlen(pattern);
	const char *p = pattern, *s = path;

	if (plen >= 2 && !strcmp(pattern + plen - 2, "/*"))
		/* a subtree: "/ca/" "*" is /ca and everything below, "/" "*" every path */
		return !strncmp(path, pattern, plen - 2) &&
		       (!path[plen - 2] || path[plen - 2] == '/');

	while (*p && *s) {
		if (*p == ':') {
			const char *end = strchr(s, '/');
			size_t len = end ? (size_t)(end - s) : strlen(s);

			if (len == 0 || np >= nparams || used + len + 1 > buflen)
				return false;
			memcpy(buf + used, s, len);
			buf[used + len] = '\0';
			params[np++] = buf + used;
			used += len + 1;
			s += len;
			while (*p && *p != '/')
				p++;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	/* one trailing slash is forgiven: /ca/ is /ca */
	if (*s == '/' && !s[1])
		s++;
	return !*p && !*s;
}

static bool path_is_sane(const char *path, char *why, size_t whylen)
{
	const char *seg = path;

	if (*path != '/') {
		snprintf(why, whylen, "path must start with '/'");
		return false;
	}
	for (const unsigned char *c = (const unsigned char *)path; *c; c++)
		if (*c < 0x20 || *c >= 0x7f) {
			snprintf(why, whylen, "path has a control or non-ASCII byte (0x%02x)", *c);
			return false;
		}
	while ((seg = strchr(seg, '/'))) {
		seg++;
		if (!strncmp(seg, "..", 2) && (seg[2] == '/' || !seg[2])) {
			snprintf(why, whylen, "path contains a '..' segment");
			return false;
		}
	}
	return true;
}

static const struct principal *authenticate(const struct api_ctx *cx, struct MHD_Connection *conn)
{
	const char *h;

	if (!cx->tokens)
		return tokens__anonymous_operator();
	h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7))
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return tokens__lookup(cx->tokens, h, strlen(h));
}

/* Tries the routes in order: the first whose path matches and whose method
 * is the request's answers; a path matched only by routes of other methods
 * is 405, with the methods it has in Allow. */
/* CA's X-API-Version (ca-http.js decodeRequest): "ca/" and three parts
 * separated by dots; absent means ca/0.1.0. */
static bool api_version_ok(const char *v)
{
	const char *dot1, *dot2;

	if (!v)
		return true;
	if (strncmp(v, "ca/", 3))
		return false;
	v += 3;
	dot1 = strchr(v, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	return dot2 && !strchr(dot2 + 1, '.');
}

/* CA's /ca/customers/:custid/... is the same API scoped to a customer:
 * kvmscope scopes by the caller's token instead, so the prefix is an alias
 * of /ca/... (into buf). false for an empty custid, which CA answers 404. */
static bool customer_alias(const char *path, char *buf, size_t n, const char **out)
{
	const char *id = path + strlen("/ca/customers/"), *rest;

	*out = path;
	if (strncmp(path, "/ca/customers/", strlen("/ca/customers/")))
		return true;
	rest = strchr(id, '/');
	if (rest == id || !*id)
		return false;
	snprintf(buf, n, "/ca%s", rest ? rest : "");
	*out = buf;
	return true;
}

static void dispatch(const struct api_ctx *cx, struct api_request *rq, struct api_response *r)
{
	char why[128], clean[256], capbuf[512], allow[128] = "", alias[1024];
	bool path_known = false;
	const char *v;

	if (!path_is_sane(rq->path, why, sizeof(why))) {
		api__error(r, 400, "InvalidArgument", "%s: '%s'", why,
			   agent__clean(rq->path, clean, sizeof(clean)));
		return;
	}
	/* CA (caHttpRouter): OPTIONS is 200 on any path, without a token:
	 * a browser's preflight carries none */
	if (!strcmp(rq->method, "OPTIONS")) {
		r->status = 200;
		r->empty = true;
		return;
	}
	if (!strncmp(rq->path, "/ca", 3) && (!rq->path[3] || rq->path[3] == '/')) {
		/* CA (decodeRequest): form fields only url-encoded */
		if (!strncasecmp(rq->content_type, "multipart/form-data", 19) &&
		    (!rq->content_type[19] || rq->content_type[19] == ';' || rq->content_type[19] == ' ')) {
			api__error(r, 415, "UnsupportedMediaType", "multipart form data is not supported");
			return;
		}
		v = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "X-API-Version");
		if (!api_version_ok(v)) {
			api__error(r, 409, "InvalidArgument", "invalid API version string: %s",
				   agent__clean(v, clean, sizeof(clean)));
			return;
		}
		if (strlen(rq->path) >= sizeof(alias) ||
		    !customer_alias(rq->path, alias, sizeof(alias), &rq->path)) {
			api__error(r, 404, "ResourceNotFound", "no such resource: %s",
				   agent__clean(rq->path, clean, sizeof(clean)));
			return;
		}
	}
	for (size_t i = 0; i < api_routes_count; i++) {
		const struct api_route *rt = &api_routes[i];
		/* HEAD wherever GET is (RFC 9110 9.3.2): MHD leaves the body out */
		bool get = rt->method && !strcmp(rt->method, "GET");
		bool head = get && !strcmp(rq->method, "HEAD");

		memset(rq->params, 0, sizeof(rq->params));
		if (!route__match(rt->pattern, rq->path, rq->params, 4, capbuf, sizeof(capbuf)))
			continue;
		if ((rt->flags & ROUTE_TOKEN) && !rq->who) {
			api__error(r, 401, "Unauthorized",
				   "missing or invalid bearer token (send 'Authorization: Bearer TOKEN')");
			return;
		}
		if (!rt->method && path_known)
			break;
		if (rt->method && strcmp(rt->method, rq->method) && !head) {
			const char *m[2] = { rt->method, get ? "HEAD" : NULL };

			path_known = true;
			for (size_t k = 0; k < 2 && m[k]; k++)
				if (!strstr(allow, m[k])) {
					size_t l = strlen(allow);

					snprintf(allow + l, sizeof(allow) - l, "%s%s", l ? ", " : "", m[k]);
				}
			continue;
		}
		rt->fn(cx, rq, r);
		return;
	}
	if (path_known) {
		snprintf(r->allow_buf, sizeof(r->allow_buf), "%s", allow);
		r->allow = r->allow_buf;
		api__error(r, 405, "MethodNotAllowed", "method %s not allowed on %s (allowed: %s)",
			   agent__clean(rq->method, why, sizeof(why)),
			   agent__clean(rq->path, clean, sizeof(clean)), allow);
		return;
	}
	api__error(r, 404, "ResourceNotFound", "no such resource: %s",
		   agent__clean(rq->path, clean, sizeof(clean)));
}

/* cors: add CA's Access-Control-* headers (only when tokens guard the API:
 * without them every client is an operator, and any page the operator's
 * browser opens could read and change the agent). */
static enum MHD_Result send_response(struct MHD_Connection *conn, struct api_response *r,
				     bool head, bool cors)
{
	struct MHD_Response *resp = NULL;
	enum MHD_Result ret;

	if (r->file_path) {
		int fd = open(r->file_path, O_RDONLY | O_CLOEXEC);
		struct stat st;

		if (fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode)) {
			resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
			if (resp)
				MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->file_type);
		} else {
			if (fd >= 0)
				close(fd);
			api__error(r, 404, "ResourceNotFound", "file vanished");
		}
	}
	if (!resp && r->body && r->status == 200) {
		resp = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			return MHD_NO;
		r->body = NULL;
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->body_type);
	}
	if (!resp && (r->status == 204 || r->empty)) {
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
	}
	if (!resp) {
		char *text = r->json ? json_dumps(r->json, JSON_COMPACT) : NULL;
		size_t len;

		if (!text) {
			text = strdup("{\"code\":\"InternalError\",\"message\":\"no response\"}");
			r->status = 500;
		}
		if (!text)
			return MHD_NO;
		len = strlen(text);
		text = realloc(text, len + 2) ?: text;
		/* a newline at the end, for people using curl */
		text[len] = '\n';
		resp = MHD_create_response_from_buffer(len + 1, text, MHD_RESPMEM_MUST_FREE);
		if (!resp) {
			free(text);
			return MHD_NO;
		}
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	}
	(void)head;
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (cors) {
		/* CA's (ca-http.js response.send), and Authorization: a page of
		 * another origin must send its own bearer token */
		MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Content-type, Authorization");
		MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
		MHD_add_response_header(resp, "Access-Control-Allow-Methods", "POST, GET, DELETE, PUT");
	}
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	if (r->retry_after > 0) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%d", r->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (r->location[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
	if (r->status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"kvmscope\"");
	ret = MHD_queue_response(conn, (unsigned int)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result early_error(struct MHD_Connection *conn, int status, const char *code,
				   const char *msg)
{
	struct api_response r = { 0 };
	enum MHD_Result ret;

	api__error(&r, status, code, "%s", msg);
	ret = send_response(conn, &r, false, false);
	json_decref(r.json);
	return ret;
}

struct header_count {
	const char *name;
	unsigned n;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
				    const char *value)
{
	struct header_count *hc = cls;

	(void)kind;
	(void)value;
	if (key && !strcasecmp(key, hc->name))
		hc->n++;
	return MHD_YES;
}

/* How often header `name` occurs: MHD_lookup_connection_value() sees the
 * first only. */
static unsigned count_headers(struct MHD_Connection *conn, const char *name)
{
	struct header_count hc = { name, 0 };

	MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &hc);
	return hc.n;
}

/* MHD_OPTION_URI_LOG_CALLBACK: runs on the request line, before microhttpd
 * parses the query into its per-connection pool. A query of more than
 * SERVER_MAX_PARAMS parameters is cut here (the buffer is microhttpd's read
 * buffer, which it parses right after this call) and answered 414 by
 * on_request: parsed, it would fill the pool and microhttpd would close the
 * connection without a word. Ownership: the returned context becomes the
 * request's *con_cls, freed in request_done. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct conn_ctx *cx = calloc(1, sizeof(*cx));
	char *q = strchr(uri, '?');

	(void)cls;
	conn_guard__request_started(conn);
	if (!cx || !q)
		return cx;
	cx->nparams = 1;
	for (const char *p = q + 1; *p; p++)
		cx->nparams += *p == '&';
	if (cx->nparams > SERVER_MAX_PARAMS)
		q[1] = '\0';
	return cx;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct api_server *s = cls;
	struct conn_ctx *cx = *con_cls;
	struct api_request rq = { 0 };
	struct api_response r = { .status = 200 };
	enum MHD_Result ret;
	char msg[160];

	(void)version;
	if (!cx || !cx->started) {
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);

		if (!cx && !(cx = calloc(1, sizeof(*cx))))
			return MHD_NO;
		*con_cls = cx;
		cx->started = true;
		if (cx->nparams > SERVER_MAX_PARAMS) {
			cx->answered = true;
			conn_guard__request_complete(conn);
			snprintf(msg, sizeof(msg), "%u query parameters: at most %d are accepted",
				 cx->nparams, SERVER_MAX_PARAMS);
			return early_error(conn, 414, "RequestTooLarge", msg);
		}
		if (count_headers(conn, MHD_HTTP_HEADER_CONTENT_LENGTH) > 1 ||
		    (cl && MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))) {
			/* two framings of one body: a proxy in front may read it
			 * the other way (request smuggling) */
			cx->answered = true;
			conn_guard__request_complete(conn);
			return early_error(conn, 400, "InvalidArgument",
					   "a request has one Content-Length or a chunked body, not both or two");
		}
		if (cl && strtoull(cl, NULL, 10) > API_BODY_MAX) {
			conn_guard__request_complete(conn);
			cx->answered = true;
			snprintf(msg, sizeof(msg), "request body of %s bytes exceeds the limit of %d bytes",
				 cl, API_BODY_MAX);
			return early_error(conn, 413, "RequestTooLarge", msg);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (cx->answered || cx->too_large)
			return MHD_YES;
		if (cx->len + n > API_BODY_MAX) {
			cx->too_large = true;
			return MHD_YES;
		}
		if (cx->len + n + 1 > cx->cap) {
			size_t cap = cx->len + n + 1 < 4096 ? 4096 : (cx->len + n + 1) * 2;
			char *nb = realloc(cx->body, cap > API_BODY_MAX + 1 ? API_BODY_MAX + 1 : cap);

			if (!nb)
				return MHD_NO;
			cx->body = nb;
			cx->cap = cap > API_BODY_MAX + 1 ? API_BODY_MAX + 1 : cap;
		}
		memcpy(cx->body + cx->len, upload, n);
		cx->len += n;
		cx->body[cx->len] = '\0';
		return MHD_YES;
	}
	if (cx->answered)
		return MHD_YES;
	conn_guard__request_complete(conn);
	if (cx->too_large) {
		snprintf(msg, sizeof(msg), "request body exceeds the limit of %d bytes", API_BODY_MAX);
		return early_error(conn, 413, "RequestTooLarge", msg);
	}
	rq.conn = conn;
	rq.method = method;
	rq.path = url;
	rq.body = cx->body ? cx->body : "";
	rq.body_len = cx->len;
	rq.content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						      MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!rq.content_type)
		rq.content_type = "";
	rq.who = authenticate(&s->cx, conn);
	rq.wait_deadline_ms = cx->wait_deadline_ms;
	/* stopping: a waiting request is answered with what there is */
	if (rq.wait_deadline_ms && s->stopping)
		rq.wait_deadline_ms = 1;
	dispatch(&s->cx, &rq, &r);
	if (r.wait_until_ms && !r.json && !r.body && !r.file_path) {
		cx->wait_deadline_ms = r.wait_until_ms;
		if (wait_aside(s, conn))
			return MHD_YES;
		/* cannot wait: look once more, as at the deadline */
		rq.wait_deadline_ms = 1;
		r = (struct api_response){ .status = 200 };
		dispatch(&s->cx, &rq, &r);
	}
	if (r.status >= 500)
		log_warn("api", "%s %s -> %d", method, url, r.status);
	else
		log_debug("api", "%s %s -> %d", method, url, r.status);
	ret = send_response(conn, &r, !strcmp(method, "HEAD"), s->cx.tokens != NULL);
	json_decref(r.json);
	free(r.file_path);
	free(r.body);
	return ret;
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct conn_ctx *cx = *con_cls;

	(void)cls;
	(void)toe;
	conn_guard__answered(conn);
	if (cx) {
		free(cx->body);
		free(cx);
		*con_cls = NULL;
	}
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

/* MHD's %-decoding of the path and of query arguments, except that %00
 * stays as it is: a decoded NUL would silently cut "/x.html%00.png" or
 * "1%00junk" short, since handlers see C strings. Left encoded, the path is
 * not found and the argument is not a number. */
static size_t unescape_keep_nul(void *cls, struct MHD_Connection *conn, char *s)
{
	char *r = s, *w = s;

	(void)cls;
	(void)conn;
	while (*r) {
		int hi = r[0] == '%' ? hex_digit(r[1]) : -1;
		int lo = hi >= 0 ? hex_digit(r[2]) : -1;

		if (lo >= 0 && (hi | lo)) {
			*w++ = (char)(hi * 16 + lo);
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_warn("http", "%s", buf);
}

int server__parse_listen(const char *s, char *addr, size_t addrlen, int *port, bool *loopback)
{
	const char *colon;
	char *end;
	long p;
	size_t alen;
	struct in_addr a4;
	struct in6_addr a6;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		alen = (size_t)(rb - s - 1);
		if (alen >= addrlen)
			return -EINVAL;
		memcpy(addr, s + 1, alen);
		addr[alen] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		alen = (size_t)(colon - s);
		if (alen >= addrlen)
			return -EINVAL;
		memcpy(addr, s, alen);
		addr[alen] = '\0';
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || p < 0 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	if (inet_pton(AF_INET, addr, &a4) == 1) {
		*loopback = (ntohl(a4.s_addr) >> 24) == 127;
		return AF_INET;
	}
	if (inet_pton(AF_INET6, addr, &a6) == 1) {
		*loopback = IN6_IS_ADDR_LOOPBACK(&a6);
		return AF_INET6;
	}
	return -EINVAL;
}

/* Request threads: handlers serialize on the agent lock only while they
 * touch instrumentations; heatmaps are drawn outside it. */
#define SERVER_THREADS 4

/* On success the caller owns *out (server__stop). */
int server__start(struct agent *a, const struct api_server_config *cfg, struct api_server **out,
		  char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	char addr[128];
	bool loopback;
	int port, family;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
			     MHD_ALLOW_SUSPEND_RESUME;
	struct api_server *s;
	int fd = -1, one = 1, rc;

	family = server__parse_listen(cfg->listen, addr, sizeof(addr), &port, &loopback);
	if (family < 0) {
		snprintf(err, errlen, "--listen '%s': want ADDR:PORT with a numeric address (127.0.0.1:7134, [::1]:7134)",
			 cfg->listen);
		return -EINVAL;
	}
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, addr, &sin->sin_addr);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, addr, &sin6->sin6_addr);
		flags |= MHD_USE_IPv6;
	}
	/* Bind here rather than in MHD so that privileges can be dropped
	 * between the bind and the start of the thread that serves requests. */
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&ss, family == AF_INET ? sizeof(struct sockaddr_in)
							      : sizeof(struct sockaddr_in6)) ||
	    listen(fd, 128)) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, strerror(errno));
		goto err_close;
	}
	rc = privs__drop(err, errlen);
	if (rc)
		goto err_close;
	s = calloc(1, sizeof(*s));
	if (!s) {
		rc = -ENOMEM;
		goto err_close;
	}
	s->cx = (struct api_ctx){ a, cfg->tokens, cfg->web_root ? cfg->web_root : "" };
	pthread_mutex_init(&s->wait_lock, NULL);
	pthread_cond_init(&s->wait_cv, NULL);
	rc = conn_guard__new(CONN_GUARD_DEADLINE_MS, CONN_GUARD_WAITING_PER_ADDR, &s->guard);
	if (rc) {
		snprintf(err, errlen, "cannot start the connection guard: %s", strerror(-rc));
		free(s);
		goto err_close;
	}
	/* Slow or stuck clients: 10 s without a byte closes a connection; one
	 * address holds at most SERVER_PER_IP_LIMIT of the SERVER_CONN_LIMIT
	 * connections, so one slow client cannot starve the others. Request
	 * headers beyond SERVER_HEADER_MEMORY get 431. */
	s->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s,
				     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				     MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
				     MHD_OPTION_NOTIFY_CONNECTION, conn_guard__notify, s->guard,
				     MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
				     MHD_OPTION_UNESCAPE_CALLBACK, unescape_keep_nul, NULL,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)SERVER_CONN_LIMIT,
				     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)SERVER_PER_IP_LIMIT,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
				     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVER_HEADER_MEMORY,
				     /* a heatmap being drawn must not hold up a raw read */
				     MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)SERVER_THREADS,
				     MHD_OPTION_END);
	if (!s->daemon) {
		snprintf(err, errlen, "cannot serve on %s", cfg->listen);
		conn_guard__free(s->guard);
		free(s);
		rc = -EIO;
		goto err_close;
	}
	/* without the waker, requests that would wait are answered at once */
	if (pthread_create(&s->waker, NULL, waker_main, s))
		log_warn("api", "cannot start the waker thread: requests with a timeout do not wait");
	else
		s->waker_running = true;
	*out = s;
	return 0;
err_close:
	if (fd >= 0)
		close(fd);
	return rc;
}

void server__stop(struct api_server *s)
{
	if (!s)
		return;
	/* microhttpd wants every suspended connection resumed before it stops:
	 * the waker resumes them all as it ends, and they are answered at once */
	pthread_mutex_lock(&s->wait_lock);
	s->stopping = true;
	pthread_cond_signal(&s->wait_cv);
	pthread_mutex_unlock(&s->wait_lock);
	if (s->waker_running)
		pthread_join(s->waker, NULL);
	MHD_stop_daemon(s->daemon);
	conn_guard__free(s->guard);
	free(s);
}
