/* The CA endpoints: catalogue, instrumentations, their values and heatmaps.
 * Each handler parses the request, calls the agent and turns what it
 * answers, or its error kind, into the CA response. */
#include <errno.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api/api.h"
#include "common/log.h"
#include "engine/finality.h"
#include "engine/instr.h"
#include "engine/merge.h"
#include "engine/window.h"
#include "render/base64.h"
#include "render/ca_math.h"
#include "render/heatmap.h"
#include "render/heatmap_live.h"
#include "render/png.h"


/* ---- parameters ---- */

/* An integer query parameter in [min, max]; false (and r set to 400) when
 * present but malformed or out of range. */
static bool arg_int(const struct api_request *rq, struct api_response *r, const char *name,
		    long long min, long long max, long long *out, bool *given)
{
	const char *v = api__arg(rq, name);
	char *end, clean[64];
	long long n;

	if (given)
		*given = v != NULL;
	if (!v)
		return true;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (!*v || *end || errno || n < min || n > max) {
		api__error(r, 400, "InvalidArgument",
			   "parameter \"%s\" must be an integer between %lld and %lld, got \"%s\"",
			   name, min, max, agent__clean(v, clean, sizeof(clean)));
		return false;
	}
	*out = n;
	return true;
}

static bool arg_double(const struct api_request *rq, struct api_response *r, const char *name,
		       double min, double max, double *out, bool *given)
{
	const char *v = api__arg(rq, name);
	char *end, clean[64];
	double d;

	*given = v != NULL;
	if (!v)
		return true;
	d = strtod(v, &end);
	if (!*v || *end || !isfinite(d) || d < min || d > max) {
		api__error(r, 400, "InvalidArgument",
			   "parameter \"%s\" must be a number between %g and %g, got \"%s\"", name, min,
			   max, agent__clean(v, clean, sizeof(clean)));
		return false;
	}
	*out = d;
	return true;
}

static bool arg_bool(const struct api_request *rq, struct api_response *r, const char *name,
		     int *out)
{
	const char *v = api__arg(rq, name);
	char clean[64];

	if (!v)
		return true;
	/* CA (caHttpParam 'boolean'): exactly true or false */
	if (!strcmp(v, "true"))
		*out = 1;
	else if (!strcmp(v, "false"))
		*out = 0;
	else {
		api__error(r, 400, "InvalidArgument", "value \"%s\" for param \"%s\" not valid: not a boolean",
			   agent__clean(v, clean, sizeof(clean)), name);
		return false;
	}
	return true;
}

static bool args_valid(const struct api_request *rq, struct api_response *r)
{
	json_t *args = api__args_json(rq);
	bool ok = args && !json_object_get(args, "\x01invalid");

	json_decref(args);
	if (!ok)
		api__error(r, 400, "InvalidArgument", "a query parameter is empty-named or not valid UTF-8");
	return ok;
}

/* ---- catalogue, VMs, peers ---- */

/* Answers r with what an agent call gave: json (owned, moved into r) on
 * rc 0, else e's status and body. */
static void answer(struct api_response *r, int rc, json_t *json, const struct agent_error *e)
{
	if (rc)
		api__agent_error(r, e);
	else
		r->json = json;
}

void routes_ca__catalogue(const struct api_ctx *cx, const struct api_request *rq,
			  struct api_response *r)
{
	struct agent_error e;
	json_t *out = NULL;
	int rc;

	rc = agent__catalogue(cx->agent, rq->who, &out, &e);
	answer(r, rc, out, &e);
}

void routes_ca__vms(const struct api_ctx *cx, const struct api_request *rq, struct api_response *r)
{
	struct agent_error e;
	json_t *out = NULL;
	int rc;

	rc = agent__vms(cx->agent, rq->who, &out, &e);
	answer(r, rc, out, &e);
}

void routes_ca__peers(const struct api_ctx *cx, const struct api_request *rq,
		      struct api_response *r)
{
	struct agent_error e;
	json_t *out = NULL;
	int rc;

	rc = agent__peers(cx->agent, rq->who, &out, &e);
	answer(r, rc, out, &e);
}

void routes_ca__not_found(const struct api_ctx *cx, const struct api_request *rq,
			  struct api_response *r)
{
	char clean[256];

	(void)cx;
	api__error(r, 404, "ResourceNotFound", "no such resource: %s",
		   agent__clean(rq->path, clean, sizeof(clean)));
}

/* ---- instrumentations ---- */

void routes_ca__list(const struct api_ctx *cx, const struct api_request *rq,
		     struct api_response *r)
{
	struct agent_error e;
	json_t *out = NULL;
	int rc;

	rc = agent__list(cx->agent, rq->who, &out, &e);
	answer(r, rc, out, &e);
}

/* The request's instrumentation spec: a JSON body, a form body, or the query
 * string (CA clients send any of them). New reference, or NULL with r set. */
static json_t *request_spec(const struct api_request *rq, struct api_response *r, bool empty_ok)
{
	char err[256];
	json_t *spec = NULL;

	const char *b = rq->body;

	while (*b == ' ' || *b == '\t' || *b == '\r' || *b == '\n')
		b++;
	/* curl -d sends JSON labelled as a form: a body opening with '{' or '['
	 * is JSON whatever its label */
	if (rq->body_len && *b != '{' && *b != '[' &&
	    !strncasecmp(rq->content_type, "application/x-www-form-urlencoded", 33)) {
		int rc = form__parse(rq->body, rq->body_len, &spec, err, sizeof(err));

		if (rc) {
			api__error(r, 400, "InvalidArgument", "form body: %s", err);
			return NULL;
		}
	} else if (rq->body_len) {
		json_error_t jerr;

		if (strlen(rq->body) != rq->body_len) {
			api__error(r, 400, "InvalidArgument", "body: NUL byte in JSON");
			return NULL;
		}
		spec = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
		if (!spec) {
			api__error(r, 400, "InvalidArgument", "body is not valid JSON: %s (line %d, column %d)",
				   jerr.text, jerr.line, jerr.column);
			return NULL;
		}
		if (!json_is_object(spec)) {
			api__error(r, 400, "InvalidArgument", "body must be a JSON object, got %s",
				   json_is_array(spec) ? "an array" : "a scalar");
			json_decref(spec);
			return NULL;
		}
	} else {
		if (!args_valid(rq, r))
			return NULL;
		spec = api__args_json(rq);
		if (!spec) {
			api__error(r, 500, "InternalError", "out of memory");
			return NULL;
		}
		if (!json_object_size(spec) && !empty_ok) {
			json_decref(spec);
			api__error(r, 400, "InvalidArgument",
				   "no instrumentation given: send a JSON body, a form or query parameters (module, stat, ...)");
			return NULL;
		}
	}
	return spec;
}

/* The caller's bearer token: an aggregator sends it on so that each peer
 * applies its own scoping for that caller. NULL if none. */
static const char *bearer(const struct api_request *rq)
{
	const char *h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);

	if (!h || strncasecmp(h, "Bearer ", 7))
		return NULL;
	for (h += 7; *h == ' '; h++)
		;
	return *h ? h : NULL;
}

static void created(struct api_response *r, int rc, json_t *json, unsigned long id,
		    const struct agent_error *e)
{
	answer(r, rc, json, e);
	if (rc)
		return;
	r->status = 201;
	snprintf(r->location, sizeof(r->location), "/ca/instrumentations/%lu", id);
}

void routes_ca__create(const struct api_ctx *cx, const struct api_request *rq,
		       struct api_response *r)
{
	json_t *spec = request_spec(rq, r, false), *out = NULL;
	struct agent_error e;
	unsigned long id = 0;
	int rc;

	if (!spec)
		return;
	rc = agent__create(cx->agent, rq->who, bearer(rq), spec, &out, &id, &e);
	created(r, rc, out, id, &e);
	json_decref(spec);
}

void routes_ca__get(const struct api_ctx *cx, const struct api_request *rq,
		    struct api_response *r)
{
	struct agent_error e;
	json_t *out = NULL;
	int rc;

	rc = agent__get(cx->agent, rq->who, rq->params[0], &out, &e);
	answer(r, rc, out, &e);
}

void routes_ca__destroy(const struct api_ctx *cx, const struct api_request *rq,
			struct api_response *r)
{
	struct agent_error e;

	if (agent__destroy(cx->agent, rq->who, rq->params[0], &e))
		api__agent_error(r, &e);
	else
		r->status = 204;
}

/* PUT changes what CA lets change (retention-time, idle-max, persist-data);
 * the properties that define the data (metric, predicate, decomposition,
 * granularity) are fixed: changing one is 409. The data is carried over. */
void routes_ca__replace(const struct api_ctx *cx, const struct api_request *rq,
			struct api_response *r)
{
	struct agent_instr_info info;
	struct agent_error e;
	json_t *body, *out = NULL;
	int rc;

	/* an unknown id is 404 before its body is looked at */
	if (agent__find(cx->agent, rq->who, rq->params[0], &info, &e)) {
		api__agent_error(r, &e);
		return;
	}
	body = request_spec(rq, r, false);
	if (!body)
		return;
	rc = agent__replace(cx->agent, rq->who, rq->params[0], body, &out, &e);
	answer(r, rc, out, &e);
	json_decref(body);
}

void routes_ca__clone(const struct api_ctx *cx, const struct api_request *rq,
		      struct api_response *r)
{
	struct agent_instr_info info;
	struct agent_error e;
	json_t *body, *out = NULL;
	unsigned long id = 0;
	int rc;

	if (agent__find(cx->agent, rq->who, rq->params[0], &info, &e)) {
		api__agent_error(r, &e);
		return;
	}
	body = request_spec(rq, r, true);
	if (!body)
		return;
	rc = agent__clone(cx->agent, rq->who, bearer(rq), rq->params[0], body, &out, &id, &e);
	created(r, rc, out, id, &e);
	json_decref(body);
}

/* ---- values ---- */

/* Default durations of CA's value resources (ca-agg.js ai_duration). */
#define RAW_DURATION_DEFAULT		1
#define IMAGE_DURATION_DEFAULT		60
#define SUMMARY_DURATION_DEFAULT	1
/* CA's default timeout (the future check); a request may give up to the
 * maximum, and one that gives it waits up to that long for its data points
 * to be final (engine/finality.h) */
#define VALUE_TIMEOUT_DEFAULT_MS	5000
#define VALUE_TIMEOUT_MAX_MS		10000

/* The time parameters of a value request and the data points they give,
 * computed as CA does (ca-agg.js caAggrInterval, normalizeInterval,
 * caaggsvc.js loadParameters). */
struct val_req {
	json_t *body;		/* a JSON body's object: it replaces the query */
	json_t *form;		/* a form body's fields: they override the query */
	bool array;		/* ndatapoints was given: answer an array */
	long long ndp, timeout;
	long long start, duration;	/* as requested (start inferred if absent) */
	int64_t nstart, nduration;	/* normalized to the granularity */
	int g;
	int64_t final_until, drained_to;	/* the instrumentation's, at the request */
	int64_t now_ms;
};

static void val_req_free(struct val_req *v)
{
	json_decref(v->body);
	json_decref(v->form);
	v->body = v->form = NULL;
}

/* A value parameter's text: from a JSON body if there is one (numbers are
 * written out), else a form body's field, else the query's. NULL if absent;
 * "\x01" for a JSON value that is neither a number nor a string. */
static const char *vparam(const struct val_req *v, const struct api_request *rq,
			  const char *name, char *buf, size_t n)
{
	json_t *j;

	if (v->body) {
		j = json_object_get(v->body, name);
		if (!j)
			return NULL;
		if (json_is_string(j))
			return json_string_value(j);
		if (json_is_integer(j))
			snprintf(buf, n, "%lld", (long long)json_integer_value(j));
		else if (json_is_real(j))
			snprintf(buf, n, "%.17g", json_real_value(j));
		else
			return "\x01";
		return buf;
	}
	if (v->form && json_is_string(j = json_object_get(v->form, name)))
		return json_string_value(j);
	return api__arg(rq, name);
}

/* An integer value parameter in [min, max], with CA's messages
 * (ca-common.js caHttpParam). false with r set when present but bad. */
static bool vparam_int(const struct val_req *v, const struct api_request *rq,
		       struct api_response *r, const char *name, long long min, long long max,
		       long long *out, bool *given)
{
	char buf[64], clean[64], *end;
	const char *s = vparam(v, rq, name, buf, sizeof(buf));
	long long n;

	*given = s != NULL;
	if (!s)
		return true;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (!*s || *end || errno) {
		api__error(r, 400, "InvalidArgument", "value \"%s\" for param \"%s\" not valid: not a number",
			   agent__clean(s, clean, sizeof(clean)), name);
		return false;
	}
	if (n < min || n > max) {
		api__error(r, 400, "InvalidArgument", "value \"%s\" for param \"%s\" not valid: value too %s (%s: %lld)",
			   agent__clean(s, clean, sizeof(clean)), name, n < min ? "small" : "large",
			   n < min ? "min" : "max", n < min ? min : max);
		return false;
	}
	*out = n;
	return true;
}

/* Reads a JSON or form body of a value request into v. false with r set. */
static bool val_body(const struct api_request *rq, struct api_response *r, struct val_req *v)
{
	const char *b = rq->body;
	json_error_t jerr;
	char err[256];

	while (*b == ' ' || *b == '\t' || *b == '\r' || *b == '\n')
		b++;
	if (!rq->body_len || !*b)
		return true;
	if (*b != '{' && !strncasecmp(rq->content_type, "application/x-www-form-urlencoded", 33)) {
		if (form__parse(rq->body, rq->body_len, &v->form, err, sizeof(err))) {
			api__error(r, 400, "InvalidArgument", "form body: %s", err);
			return false;
		}
		return true;
	}
	v->body = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!v->body) {
		api__error(r, 400, "InvalidArgument", "failed to parse JSON: %s", jerr.text);
		return false;
	}
	if (!json_is_object(v->body)) {
		api__error(r, 400, "InvalidArgument", "failed to parse JSON: the body must be an object");
		return false;
	}
	return true;
}

/* kvmscope has no transformations (CA's geolocate, reverse DNS): any one
 * named is unknown. false with r set. */
static bool val_transformations(const struct val_req *v, const struct api_request *rq,
				struct api_response *r)
{
	json_t *t = v->body ? json_object_get(v->body, "transformations") : NULL;
	const char *s = NULL;
	char buf[64], clean[64];

	if (t && json_is_array(t) && json_array_size(t))
		s = json_is_string(json_array_get(t, 0)) ? json_string_value(json_array_get(t, 0)) : "?";
	else if (t && json_is_string(t))
		s = json_string_value(t);
	else if (!v->body)
		s = vparam(v, rq, "transformations", buf, sizeof(buf));
	if (!s || !*s)
		return true;
	api__error(r, 400, "InvalidArgument", "transformation \"%.*s\" does not exist",
		   (int)strcspn(s, ","), agent__clean(s, clean, sizeof(clean)));
	return false;
}

/* Parses and checks start_time, duration, end_time, ndatapoints, timeout
 * and transformations, and computes the data points. dflt: the resource's
 * default duration. The caller frees v (val_req_free), also on failure.
 * false with r set. */
static bool val_request(const struct agent_instr_info *info, const struct api_request *rq,
			struct api_response *r, long long dflt, struct val_req *v)
{
	long long start = 0, dur = 0, end = 0, latest;
	bool gs, gd, ge, gn, gt;
	struct timespec ts;
	int64_t now_ms;
	const char *why = NULL;

	memset(v, 0, sizeof(*v));
	v->ndp = 1;
	v->timeout = VALUE_TIMEOUT_DEFAULT_MS;
	v->g = info->granularity;
	v->final_until = info->final_until;
	v->drained_to = info->drained_to;
	clock_gettime(CLOCK_REALTIME, &ts);
	v->now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (!args_valid(rq, r) || !val_body(rq, r, v) ||
	    !vparam_int(v, rq, r, "start_time", 0, 1LL << 40, &start, &gs) ||
	    !vparam_int(v, rq, r, "duration", 1, INSTR_RETENTION_MAX, &dur, &gd) ||
	    !vparam_int(v, rq, r, "end_time", 0, 1LL << 40, &end, &ge) ||
	    !vparam_int(v, rq, r, "ndatapoints", 1, INSTR_RAW_NDATAPOINTS_MAX, &v->ndp, &gn) ||
	    !vparam_int(v, rq, r, "timeout", 0, VALUE_TIMEOUT_MAX_MS, &v->timeout, &gt) ||
	    !val_transformations(v, rq, r))
		return false;
	v->array = gn;
	/* The agent's clock: its now is the second after the newest drained
	 * one (a replaying agent's, two past its recording's last), so that
	 * CA's default, now - duration - granularity, names the same slot
	 * however soon after a drain the request comes. */
	now_ms = (int64_t)info->now * 1000 + 999;
	if (!gd && !(gs && ge))
		dur = dflt;
	if (ge) {
		if (!gs) {
			if (dur > end)
				why = "\"duration\" cannot exceed \"end_time\"";
			start = end - dur;
		} else if (!gd) {
			if (end <= start)
				why = "\"end_time\" must be later than \"start_time\"";
			dur = end - start;
		} else if (start + dur != end) {
			why = "\"start_time\" + \"duration\" must equal \"end_time\"";
		}
	} else if (!gs) {
		/* CA's default, or the newest final point when it is newer
		 * (CA's is not final while an exit that began in it is open) */
		start = finality__default_start(now_ms / 1000 - dur - v->g, v->final_until, dur,
						v->array ? v->ndp : 1, v->g);
	}
	if (!why && dur < 1)
		why = "\"duration\" must be positive";
	if (why) {
		api__error(r, 400, "InvalidArgument", "%s", why);
		return false;
	}
	v->start = start;
	v->duration = dur;
	v->nstart = start - start % v->g;
	v->nduration = dur % v->g ? (dur / v->g + 1) * v->g : dur;
	/* A data point longer than the retention cannot be whole, and summing
	 * one held the agent lock for minutes (604800 s x 3600 points). */
	if (v->nduration > info->retention) {
		api__error(r, 400, "InvalidArgument",
			   "duration %lld exceeds the instrumentation's retention-time of %d s",
			   (long long)v->nduration, info->retention);
		return false;
	}
	latest = v->nstart + v->ndp * v->nduration;
	if (latest * 1000 > now_ms + v->timeout) {
		api__error(r, 409, "InvalidArgument", "requested data point is too far in the future");
		return false;
	}
	/* with a timeout: wait (set aside by the server, no lock held) until
	 * the last point is final or the timeout has passed */
	if (gt && latest > v->final_until) {
		int64_t deadline = rq->wait_deadline_ms ? rq->wait_deadline_ms
							: v->now_ms + v->timeout;

		if (v->now_ms < deadline) {
			r->wait_until_ms = deadline;
			return false;
		}
	}
	return true;
}

/* minreporting of a local instrumentation's data point (see the engine's
 * raw values): 1 when every slot is complete, retained and after the
 * instrumentation's creation. */
static int val_minreporting(const struct agent_instr_info *info, int64_t start, int64_t dur)
{
	int64_t created = info->created - info->created % info->granularity;
	int64_t oldest = info->now - info->now % info->granularity - info->retention;

	return start >= created && start >= oldest && start + dur <= info->now;
}

/* Adds CA's envelope of data point i to o, after what the resource wrote
 * (caaggsvc.js caAggrValueRequest.complete). 0 or -ENOMEM. */
static int val_envelope(json_t *o, const struct val_req *v, long long i, int nsources,
			int minreporting)
{
	int64_t s = v->nstart + i * v->nduration;
	long long rs = v->start + i * v->duration;
	int64_t delay;
	int rc = 0;

	rc |= json_object_set_new(o, "start_time", json_integer(s));
	rc |= json_object_set_new(o, "duration", json_integer(v->nduration));
	rc |= json_object_set_new(o, "end_time", json_integer(s + v->nduration));
	rc |= json_object_set_new(o, "nsources", json_integer(nsources));
	rc |= json_object_set_new(o, "minreporting", json_integer(minreporting));
	rc |= json_object_set_new(o, "requested_start_time", json_integer(rs));
	rc |= json_object_set_new(o, "requested_duration", json_integer(v->duration));
	rc |= json_object_set_new(o, "requested_end_time", json_integer(rs + v->duration));
	/* kvmscope's, after CA's: whether the point may still change */
	rc |= json_object_set_new(o, "final_until", json_integer(v->final_until));
	if (finality__point(v->final_until, v->drained_to, s + v->nduration, v->now_ms, &delay)) {
		rc |= json_object_set_new(o, "partial", json_true());
		rc |= json_object_set_new(o, "delay", json_integer(delay));
	}
	return rc ? -ENOMEM : 0;
}

/* A raw point of the engine's as CA writes it: value (ranges inclusive),
 * transformations, then the envelope. New reference, NULL on ENOMEM. */
static json_t *raw_point_ca(const json_t *pt, const struct val_req *v, long long i)
{
	json_t *val = json_deep_copy(json_object_get(pt, "value"));
	json_t *o = json_object();

	if (!val || !o || value__shift_hi(val, -1) || json_object_set_new(o, "value", val) ||
	    json_object_set_new(o, "transformations", json_object()) ||
	    val_envelope(o, v, i, (int)json_integer_value(json_object_get(pt, "nsources")),
			 (int)json_integer_value(json_object_get(pt, "minreporting")))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

void routes_ca__value_raw(const struct api_ctx *cx, const struct api_request *rq,
			  struct api_response *r)
{
	struct agent_instr_info info;
	struct agent_error e;
	json_t *out = NULL, *res = NULL;
	struct val_req v;
	int rc;

	memset(&v, 0, sizeof(v));
	if (agent__find(cx->agent, rq->who, rq->params[0], &info, &e)) {
		api__agent_error(r, &e);
		return;
	}
	if (!val_request(&info, rq, r, RAW_DURATION_DEFAULT, &v))
		goto out;
	rc = agent__value_raw(cx->agent, rq->who, rq->params[0], v.nstart, v.nduration,
			      (int)v.ndp, &out, &e);
	if (rc) {
		api__agent_error(r, &e);
		goto out;
	}
	if (!v.array) {
		res = raw_point_ca(json_is_array(out) ? json_array_get(out, 0) : out, &v, 0);
	} else {
		res = json_array();
		for (long long i = 0; res && i < v.ndp; i++) {
			const json_t *pt = json_is_array(out) ? json_array_get(out, (size_t)i) : out;

			if (json_array_append_new(res, raw_point_ca(pt, &v, i))) {
				json_decref(res);
				res = NULL;
			}
		}
	}
	if (!res)
		api__error(r, 500, "InternalError", "out of memory");
	r->json = res;
out:
	json_decref(out);
	val_req_free(&v);
}

struct hm_req {
	struct heatmap_params p;
	struct dist_window w;		/* the slots, copied out under the lock */
	size_t nslots;
	int64_t start, duration, g;
	struct val_req v;	/* the time parameters and the envelope */
	struct agent_instr_info info;
	int nbuckets;		/* as asked: CA does not cap it to the height */
	const char *selected[64];
	int hues[64];
	json_t *args;		/* owns the selected strings */
	long long budget;	/* bytes of hm_budget this request holds */
};

/* Memory all heatmap requests together may hold: the image (4 bytes a
 * pixel while drawn, then the PNG) and the copied window. Four maximal
 * requests at once (4096 x 4096, 1000 buckets) took 825 MiB before the
 * window was typed and can still take ~100 MiB each; beyond the budget a
 * request gets 503 and a Retry-After instead of pushing the agent towards
 * its MemoryMax. */
#define HEATMAP_BUDGET_BYTES	(384ll << 20)
static _Atomic long long hm_budget_used;

static bool hm_budget_take(struct hm_req *h, long long bytes)
{
	if (atomic_fetch_add(&hm_budget_used, bytes) + bytes > HEATMAP_BUDGET_BYTES) {
		atomic_fetch_sub(&hm_budget_used, bytes);
		return false;
	}
	h->budget += bytes;
	return true;
}

static void hm_req_free(struct hm_req *h)
{
	dist_window__free(&h->w);
	json_decref(h->args);
	val_req_free(&h->v);
	atomic_fetch_sub(&hm_budget_used, h->budget);
	h->budget = 0;
}

static void hm_budget_refused(struct api_response *r)
{
	api__error(r, 503, "ServiceUnavailable",
		   "heatmaps in progress hold the agent's heatmap memory budget of %lld MiB: retry in a second, or ask for a smaller image",
		   HEATMAP_BUDGET_BYTES >> 20);
	r->retry_after = 1;
}

/* Collects a repeated or comma-separated parameter into strings borrowed
 * from h->args. */
static int list_arg(struct hm_req *h, const char *name, const char **out, size_t max, size_t *n)
{
	json_t *v = json_object_get(h->args, name), *e;
	size_t i;

	if (!v)
		return 0;
	/* kvmscope's name[] form: one value is one key, commas and all */
	if (json_is_string(v) && strchr(name, '[')) {
		if (*n >= max)
			return -E2BIG;
		out[(*n)++] = json_string_value(v);
		return 0;
	}
	/* CA (caHttpParam 'array'): one value is split on commas, a repeated
	 * one is taken as it is */
	if (json_is_string(v)) {
		const char *str = json_string_value(v), *c;
		json_t *arr = json_array();

		do {
			c = strchr(str, ',');
			if (!arr || json_array_append_new(arr, json_stringn(str, c ? (size_t)(c - str) : strlen(str)))) {
				json_decref(arr);
				return -ENOMEM;
			}
			str = c ? c + 1 : str;
		} while (c);
		if (json_object_set_new(h->args, name, arr))
			return -ENOMEM;
		v = arr;
	}
	json_array_foreach(v, i, e) {
		if (*n >= max)
			return -E2BIG;
		out[(*n)++] = json_string_value(e);
	}
	return 0;
}

/* Parses the heatmap parameters. false with r set on bad input. */
static bool heatmap_request(const struct agent_instr_info *info, const struct api_request *rq,
			    struct api_response *r, long long dflt_duration, struct hm_req *h)
{
	long long w = 600, ht = 300, nb = 100;
	bool gw, gmin, gmax;
	double ymin = 0, ymax = 0;
	const char *v;
	const char *hue_s[64];
	size_t nhue_s = 0;

	memset(h, 0, sizeof(*h));
	heatmap_params__init(&h->p);
	h->info = *info;
	/* CA: 404, as for a resource that does not exist (caAggrSupportsHeatmap) */
	if (!info->numeric_field[0]) {
		api__error(r, 404, "ResourceNotFound",
			   "instrumentation %lu has no numeric decomposition, so no heatmap (decompose by e.g. subsecond or latency)",
			   info->id);
		return false;
	}
	if (!val_request(info, rq, r, dflt_duration, &h->v))
		return false;
	if (!args_valid(rq, r) ||
	    !arg_int(rq, r, "width", 1, HEATMAP_MAX_WIDTH, &w, &gw) ||
	    !arg_int(rq, r, "height", 1, HEATMAP_MAX_HEIGHT, &ht, NULL) ||
	    !arg_int(rq, r, "nbuckets", 1, HEATMAP_MAX_BUCKETS, &nb, NULL) ||
	    !arg_double(rq, r, "ymin", 0, 1e19, &ymin, &gmin) ||
	    !arg_double(rq, r, "ymax", 0, 1e19, &ymax, &gmax) ||
	    !arg_bool(rq, r, "isolate", &h->p.isolate) ||
	    !arg_bool(rq, r, "exclude", &h->p.exclude) ||
	    !arg_bool(rq, r, "decompose_all", &h->p.decompose_all))
		return false;
	(void)gw;
	h->p.width = (int)w;
	h->p.height = (int)ht;
	h->p.nbuckets = (int)(nb > ht ? ht : nb);
	h->nbuckets = (int)nb;
	h->p.ymin = ymin;
	if (gmax) {
		if (ymax <= ymin) {
			api__error(r, 400, "InvalidArgument", "parameter \"ymax\" (%g) must exceed \"ymin\" (%g)",
				   ymax, ymin);
			return false;
		}
		h->p.ymax = ymax;
		h->p.auto_ymax = 0;
	} else if (!strcmp(info->numeric_field, "subsecond")) {
		/* the whole second, always: the point is where in it things happen */
		h->p.ymax = 1000;
		h->p.auto_ymax = 0;
	}
	if (h->p.isolate + h->p.exclude + h->p.decompose_all > 1) {
		api__error(r, 400, "InvalidArgument",
			   "only one of \"isolate\", \"exclude\", and \"decompose_all\" may be specified");
		return false;
	}
	if ((v = api__arg(rq, "coloring"))) {
		if (!strcmp(v, "rank"))
			h->p.coloring = COLORING_RANK;
		else if (!strcmp(v, "linear"))
			h->p.coloring = COLORING_LINEAR;
		else {
			api__error(r, 400, "InvalidArgument", "parameter \"coloring\" must be rank or linear");
			return false;
		}
	}
	if ((v = api__arg(rq, "weights"))) {
		if (!strcmp(v, "count"))
			h->p.weights = WEIGHTS_COUNT;
		else if (!strcmp(v, "weight"))
			h->p.weights = WEIGHTS_WEIGHT;
		else {
			api__error(r, 400, "InvalidArgument", "parameter \"weights\" must be count or weight");
			return false;
		}
	}
	h->args = api__args_json(rq);
	if (!h->args || list_arg(h, "selected", h->selected, 64, &h->p.nselected) ||
	    list_arg(h, "selected[]", h->selected, 64, &h->p.nselected)) {
		api__error(r, 400, "InvalidArgument", "parameter \"selected\": at most 64 keys");
		return false;
	}
	h->p.selected = h->selected;
	if (list_arg(h, "hues", hue_s, 64, &nhue_s) || list_arg(h, "hues[]", hue_s, 64, &nhue_s)) {
		api__error(r, 400, "InvalidArgument", "parameter \"hues\": at most 64 hues");
		return false;
	}
	for (size_t i = 0; i < nhue_s; i++) {
		/* hues=21,112 and hues=21&hues=112 both work */
		const char *s = hue_s[i];

		while (*s) {
			char *e;
			long hv = strtol(s, &e, 10);

			if (e == s || hv < 0 || hv > 359 || (*e && *e != ',') || h->p.nhues >= 64) {
				api__error(r, 400, "InvalidArgument",
					   "invalid hue: parameter \"hues\" must be integers 0..359 (at most 64), got \"%.40s\"",
					   hue_s[i]);
				return false;
			}
			h->hues[h->p.nhues++] = (int)hv;
			s = *e ? e + 1 : e;
		}
	}
	if (h->p.nhues)
		h->p.hues = h->hues;
	/* CA (caAggrHeatmapConf): a hue for the rest unless isolated, and one
	 * per selected key */
	if (h->p.nhues && !h->p.decompose_all &&
	    h->p.nselected + (h->p.isolate ? 0 : 1) > h->p.nhues) {
		api__error(r, 400, "InvalidArgument", "need %zu hues",
			   h->p.nselected + (h->p.isolate ? 0 : 1));
		return false;
	}
	h->g = info->granularity;
	/* CA answers an array of ndatapoints images (or details); kvmscope
	 * bounds what one answer may hold: the points' window within the
	 * retention (older slots hold nothing), their pixels those of one
	 * maximal image */
	if (h->v.ndp > 1 && h->v.ndp * h->v.nduration > info->retention) {
		api__error(r, 400, "InvalidArgument",
			   "ndatapoints x duration (%lld s) exceeds the instrumentation's retention-time of %d s",
			   h->v.ndp * (long long)h->v.nduration, info->retention);
		return false;
	}
	if (dflt_duration == IMAGE_DURATION_DEFAULT &&
	    h->v.ndp * w * ht > (long long)HEATMAP_MAX_WIDTH * HEATMAP_MAX_HEIGHT) {
		api__error(r, 400, "InvalidArgument",
			   "ndatapoints x width x height (%lld pixels) exceeds %lld, the pixels of one %dx%d image",
			   h->v.ndp * w * ht, (long long)HEATMAP_MAX_WIDTH * HEATMAP_MAX_HEIGHT,
			   HEATMAP_MAX_WIDTH, HEATMAP_MAX_HEIGHT);
		return false;
	}
	h->start = h->v.nstart;
	h->duration = h->v.nduration * h->v.ndp;
	h->nslots = (size_t)(h->duration / h->g);
	return true;
}

/* Finds the instrumentation, parses the parameters and has the agent copy
 * the slots into h's typed window, so that drawing runs without the agent's
 * lock. false with r set (and nothing in h to free) on failure. */
static bool heatmap_prepare(const struct api_ctx *cx, const struct api_request *rq,
			    struct api_response *r, long long dflt_duration, struct hm_req *h)
{
	struct agent_instr_info info;
	struct agent_error e;

	memset(h, 0, sizeof(*h));
	if (agent__find(cx->agent, rq->who, rq->params[0], &info, &e)) {
		api__agent_error(r, &e);
		return false;
	}
	if (!heatmap_request(&info, rq, r, dflt_duration, h)) {
		hm_req_free(h);
		return false;
	}
	if (!hm_budget_take(h, 4ll * h->p.width * h->p.height)) {
		hm_budget_refused(r);
		hm_req_free(h);
		return false;
	}
	return true;
}

static bool heatmap_gather(const struct api_ctx *cx, const struct api_request *rq,
			   struct api_response *r, long long dflt_duration, struct hm_req *h)
{
	struct agent_error e;

	if (!heatmap_prepare(cx, rq, r, dflt_duration, h))
		return false;
	if (agent__window(cx->agent, rq->who, rq->params[0], h->start, h->nslots, &h->w, &e)) {
		api__agent_error(r, &e);
		hm_req_free(h);
		return false;
	}
	if (!hm_budget_take(h, (long long)(h->w.cell_cap * sizeof(*h->w.cells) +
					   h->w.names_cap + h->w.bucket_cap * sizeof(*h->w.buckets)))) {
		hm_budget_refused(r);
		hm_req_free(h);
		return false;
	}
	return true;
}

static void heatmap_failed(struct api_response *r, int rc)
{
	if (rc == -ENOMEM)
		api__error(r, 500, "InternalError", "out of memory");
	else
		api__error(r, 400, "InvalidArgument", "heatmap: %s", heatmap__last_error());
}

/* A number CA writes as an integer when it is one. New reference. */
static json_t *json_num(double d)
{
	if (d == floor(d) && fabs(d) < 9e15)
		return json_integer((json_int_t)d);
	return json_real(d);
}

/* Data point i's image in CA's order (caAggrValueHeatmapImage): nbuckets,
 * width, height, ymin, ymax, present, transformations, image, then the
 * envelope. New reference, NULL on ENOMEM. */
static json_t *image_obj(const struct hm_req *h, long long i, const char *b64, double ymin,
			 double ymax, int nbuckets, int width, int height, json_t *present)
{
	int64_t start = h->v.nstart + i * h->v.nduration;
	json_t *o = json_pack("{s:i, s:i, s:i, s:o, s:o, s:O, s:{}, s:s}", "nbuckets", nbuckets,
			      "width", width, "height", height, "ymin", json_num(ymin),
			      "ymax", json_num(ymax), "present", present, "transformations",
			      "image", b64);

	if (o && val_envelope(o, &h->v, i, h->info.nsources,
			      val_minreporting(&h->info, start, h->v.nduration))) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

/* The answer of a single image: an object, or an array of it when
 * ndatapoints was given. r set. */
static void image_answer(struct api_response *r, const struct hm_req *h, const char *b64,
			 double ymin, double ymax, int nbuckets, int width, int height,
			 json_t *present)
{
	json_t *o = image_obj(h, 0, b64, ymin, ymax, nbuckets, width, height, present);

	if (o && h->v.array)
		o = json_pack("[o]", o);
	if (!o)
		api__error(r, 500, "InternalError", "out of memory");
	r->json = o;
}

/* Copies for heatmap_image_live under the agent lock, one piece a call. */
struct live_copy {
	struct heatmap_live_req *q;
	uint64_t uid;
	size_t from;
};

static long live_uid(const struct instr *in, void *arg)
{
	*(uint64_t *)arg = instr__uid(in);
	return 0;
}

static long live_copy(const struct instr *in, void *arg)
{
	struct live_copy *c = arg;

	/* deleted and another made under the same id meanwhile */
	if (instr__uid(in) != c->uid)
		return -ESTALE;
	return heatmap_live__copy(c->q, in, c->from, AGENT_WINDOW_COPY_CELLS);
}

/* A local instrumentation's image goes through the live panel cache
 * (render/heatmap_live.h): slots it drew before are not copied again, and
 * viewers of one panel within a second share one drawing. The panel is
 * taken before the agent lock, never under it. Returns false, with nothing
 * answered, for an aggregator's instrumentation: its slots are merged from
 * the peers (heatmap_gather). */
static bool heatmap_image_live(const struct api_ctx *cx, const struct api_request *rq,
			       struct api_response *r)
{
	struct heatmap_live_req q;
	struct heatmap_live_image im;
	struct live_copy c = { &q, 0, 0 };
	struct agent_error e;
	struct hm_req h;
	long got = 1;
	int rc;

	if (!heatmap_prepare(cx, rq, r, IMAGE_DURATION_DEFAULT, &h))
		return true;
	/* several data points: drawn one after the other from one copy */
	if (h.v.ndp > 1) {
		hm_req_free(&h);
		return false;
	}
	rc = agent__read_instr(cx->agent, rq->who, rq->params[0], live_uid, &c.uid, &got, &e);
	if (rc == -EXDEV) {
		hm_req_free(&h);
		return false;
	}
	if (rc) {
		api__agent_error(r, &e);
		goto out;
	}
	rc = heatmap_live__begin(&q, c.uid, &h.p, h.start, h.g, h.nslots);
	if (rc) {
		heatmap_failed(r, rc);
		goto out;
	}
	got = 1;
	while (got > 0 && c.from < h.nslots) {
		rc = agent__read_instr(cx->agent, rq->who, rq->params[0], live_copy, &c, &got, &e);
		if (rc) {
			api__agent_error(r, &e);	/* deleted meanwhile: 404 */
			got = 0;
		} else if (got == -ESTALE) {
			api__error(r, 409, "InvalidState", "instrumentation %s changed while it was drawn",
				   rq->params[0]);
		} else if (got < 0) {
			api__error(r, 500, "InternalError", "out of memory");
		}
		c.from += got > 0 ? (size_t)got : 0;
	}
	rc = got > 0 ? heatmap_live__image(&q, &im) : 0;
	heatmap_live__end(&q);
	if (got <= 0)
		goto out;
	if (rc == -EIO)
		api__error(r, 500, "InternalError", "PNG encoding failed");
	else if (rc)
		heatmap_failed(r, rc);
	if (rc)
		goto out;
	image_answer(r, &h, im.image, im.ymin, im.ymax, im.nbuckets, im.width, im.height,
		     im.present);
	heatmap_live_image__free(&im);
out:
	hm_req_free(&h);
	return true;
}

void routes_ca__heatmap_image(const struct api_ctx *cx, const struct api_request *rq,
			      struct api_response *r)
{
	struct heatmap_input in;
	struct heatmap *hm = NULL;
	unsigned char *png = NULL;
	size_t pnglen, per;
	char *b64 = NULL;
	json_t *res = NULL, *o = NULL;
	struct hm_req h;
	int rc;

	if (heatmap_image_live(cx, rq, r))
		return;
	if (!heatmap_gather(cx, rq, r, IMAGE_DURATION_DEFAULT, &h))
		return;
	per = (size_t)(h.v.nduration / h.g);
	res = h.v.array ? json_array() : NULL;
	if (h.v.array && !res)
		goto nomem;
	/* CA: one image per data point, each over its own slots */
	for (long long i = 0; i < h.v.ndp; i++) {
		in = (struct heatmap_input){ &h.w, (size_t)i * per, per };
		rc = heatmap__build(&in, &h.p, &hm);
		if (rc) {
			heatmap_failed(r, rc);
			goto out;
		}
		rc = png__encode_rgb(hm->rgb, hm->width, hm->height, &png, &pnglen);
		if (!rc)
			rc = base64__encode(png, pnglen, &b64);
		if (rc) {
			api__error(r, 500, "InternalError", "PNG encoding failed: %s", strerror(-rc));
			goto out;
		}
		o = image_obj(&h, i, b64, hm->ymin, hm->ymax, hm->nbuckets, hm->width, hm->height,
			      hm->present);
		free(b64);
		free(png);
		heatmap__free(hm);
		b64 = NULL;
		png = NULL;
		hm = NULL;
		if (!o || (res && json_array_append_new(res, o)))
			goto nomem;
		if (!res)
			break;
	}
	r->json = res ? res : o;
	res = NULL;
	goto out;
nomem:
	api__error(r, 500, "InternalError", "out of memory");
out:
	json_decref(res);
	free(b64);
	free(png);
	heatmap__free(hm);
	hm_req_free(&h);
}

/* Data point i's details in CA's fields (caAggrValueHeatmapDetails:
 * nbuckets, width, height, bucket_time, bucket_ymin, bucket_ymax, present,
 * total), kvmscope's after them (heatmap__details), then the envelope.
 * New reference, NULL on ENOMEM. */
static json_t *details_obj(const struct hm_req *h, long long i, const json_t *det)
{
	int64_t start = h->v.nstart + i * h->v.nduration;
	json_t *o = json_pack("{s:i, s:i, s:i}", "nbuckets", h->p.nbuckets, "width", h->p.width,
			      "height", h->p.height);

	if (o && (json_object_update(o, (json_t *)det) ||
		  val_envelope(o, &h->v, i, h->info.nsources,
			       val_minreporting(&h->info, start, h->v.nduration)))) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

void routes_ca__heatmap_details(const struct api_ctx *cx, const struct api_request *rq,
				struct api_response *r)
{
	struct heatmap_input in;
	long long x = -1, y = -1;
	json_t *det = NULL, *res = NULL, *o = NULL;
	bool gx, gy;
	struct hm_req h;
	size_t per;
	int rc;

	if (!heatmap_gather(cx, rq, r, IMAGE_DURATION_DEFAULT, &h))
		return;
	if (!arg_int(rq, r, "x", 0, 1LL << 31, &x, &gx) ||
	    !arg_int(rq, r, "y", 0, 1LL << 31, &y, &gy))
		goto out;
	if (!gx || !gy) {
		api__error(r, 400, "InvalidArgument", "param \"%s\" must be specified", gx ? "y" : "x");
		goto out;
	}
	if (x >= h.p.width || y >= h.p.height) {
		api__error(r, 400, "InvalidArgument", "\"%s\" must be less than \"%s\"",
			   x >= h.p.width ? "x" : "y", x >= h.p.width ? "width" : "height");
		goto out;
	}
	per = (size_t)(h.v.nduration / h.g);
	res = h.v.array ? json_array() : NULL;
	if (h.v.array && !res)
		goto nomem;
	/* CA: the pixel of each data point's own image */
	for (long long i = 0; i < h.v.ndp; i++) {
		in = (struct heatmap_input){ &h.w, (size_t)i * per, per };
		rc = heatmap__details(&in, &h.p, (int)x, (int)y, &det);
		if (rc) {
			heatmap_failed(r, rc);
			goto out;
		}
		o = details_obj(&h, i, det);
		json_decref(det);
		det = NULL;
		if (!o || (res && json_array_append_new(res, o)))
			goto nomem;
		if (!res)
			break;
	}
	r->json = res ? res : o;
	res = NULL;
	goto out;
nomem:
	api__error(r, 500, "InternalError", "out of memory");
out:
	json_decref(res);
	json_decref(det);
	hm_req_free(&h);
}

/* CA's average or percentile of data point i of h (caAggrValueHeatmapAverage
 * and ...Percentile): the total, re-bucketed into h's linear buckets over
 * [ymin, ymax) (ymax scaled from the point's data when not given), summed
 * over the point's slots. New reference, NULL on ENOMEM. */
static json_t *summary_point(const struct hm_req *h, long long i, bool percentile, double pct)
{
	size_t per = (size_t)(h->v.nduration / h->g), first = (size_t)i * per;
	double ymin = h->p.ymin, ymax = h->p.ymax, r;
	double *b = calloc((size_t)h->nbuckets, sizeof(*b));
	const struct dist_window *w = &h->w;
	json_t *o = NULL;

	if (!b)
		return NULL;
	if (h->p.auto_ymax) {
		double max = 0;

		for (size_t s = first; s < first + per && s < w->nslots; s++)
			for (size_t c = w->slot_off[s]; c < w->slot_off[s + 1]; c++)
				if (w->buckets[w->cells[c].bucket].hi > max)
					max = w->buckets[w->cells[c].bucket].hi;
		ymax = ca__autoscale(max);
	}
	for (size_t s = first; s < first + per && s < w->nslots; s++)
		for (size_t c = w->slot_off[s]; c < w->slot_off[s + 1]; c++) {
			const struct dist_bucket *db = &w->buckets[w->cells[c].bucket];

			ca__bucketize(b, h->nbuckets, ymin, ymax, db->lo, db->hi, w->cells[c].count,
				      h->p.weights == WEIGHTS_WEIGHT);
		}
	r = percentile ? ca__percentile(b, h->nbuckets, ymin, ymax, pct)
		       : ca__average(b, h->nbuckets, ymin, ymax);
	o = json_pack("{s:i, s:i, s:i, s:o}", "nbuckets", h->nbuckets, "width", h->p.width,
		      "height", h->p.height, percentile ? "percentile" : "average",
		      isnan(r) ? json_null() : json_real(r));
	if (o && val_envelope(o, &h->v, i, h->info.nsources,
			      val_minreporting(&h->info, h->v.nstart + i * h->v.nduration,
					       h->v.nduration))) {
		json_decref(o);
		o = NULL;
	}
	free(b);
	return o;
}

static void heatmap_summary(const struct api_ctx *cx, const struct api_request *rq,
			    struct api_response *r, bool percentile)
{
	struct heatmap_input in;
	double pct = 0;
	bool gp = false;
	int series = 0;
	struct hm_req h;
	json_t *res = NULL;
	int rc;

	if (!arg_bool(rq, r, "series", &series))
		return;
	/* series=true: kvmscope's [[t, v], ...] over the slots (the web UI's) */
	if (!heatmap_gather(cx, rq, r, series ? IMAGE_DURATION_DEFAULT : SUMMARY_DURATION_DEFAULT,
			    &h))
		return;
	if (percentile) {
		if (!arg_double(rq, r, "percentile", 0, 1, &pct, &gp))
			goto out;
		if (!gp) {
			api__error(r, 400, "InvalidArgument", "param \"percentile\" must be specified");
			goto out;
		}
	}
	if (series) {
		in = (struct heatmap_input){ &h.w, 0, h.w.nslots };
		rc = percentile ? heatmap__percentile(&in, &h.p, pct * 100, &r->json)
				: heatmap__average(&in, &h.p, &r->json);
		if (rc)
			heatmap_failed(r, rc);
		goto out;
	}
	if (!h.v.array) {
		res = summary_point(&h, 0, percentile, pct);
	} else {
		res = json_array();
		for (long long i = 0; res && i < h.v.ndp; i++)
			if (json_array_append_new(res, summary_point(&h, i, percentile, pct))) {
				json_decref(res);
				res = NULL;
			}
	}
	if (!res)
		api__error(r, 500, "InternalError", "out of memory");
	r->json = res;
out:
	hm_req_free(&h);
}

void routes_ca__heatmap_average(const struct api_ctx *cx, const struct api_request *rq,
				struct api_response *r)
{
	heatmap_summary(cx, rq, r, false);
}

void routes_ca__heatmap_percentile(const struct api_ctx *cx, const struct api_request *rq,
				   struct api_response *r)
{
	heatmap_summary(cx, rq, r, true);
}

/* ---- CA's listings and legacy resources ---- */

/* [{"name", "uri"}, ...] of the children of the request's path (CA:
 * aggHttpValueList, aggHttpValueHeatmapList: the request URL without its
 * trailing slashes, then "/" and the child). New reference. */
static json_t *children(const struct api_request *rq, const char *const *names,
			const char *const *leaves, size_t n)
{
	json_t *arr = json_array();
	size_t len = strlen(rq->path);
	char uri[1100];

	while (len > 1 && rq->path[len - 1] == '/')
		len--;
	for (size_t i = 0; arr && i < n; i++) {
		snprintf(uri, sizeof(uri), "%.*s/%s", (int)len, rq->path, leaves[i]);
		if (json_array_append_new(arr, json_pack("{s:s, s:s}", "name", names[i], "uri", uri))) {
			json_decref(arr);
			arr = NULL;
		}
	}
	return arr;
}

void routes_ca__value_list(const struct api_ctx *cx, const struct api_request *rq,
			   struct api_response *r)
{
	static const char *const names[] = { "value_raw", "value_heatmap" };
	static const char *const leaves[] = { "raw", "heatmap" };
	struct agent_instr_info info;
	struct agent_error e;

	if (agent__find(cx->agent, rq->who, rq->params[0], &info, &e)) {
		api__agent_error(r, &e);
		return;
	}
	r->json = children(rq, names, leaves, info.numeric_field[0] ? 2 : 1);
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
}

void routes_ca__heatmap_list(const struct api_ctx *cx, const struct api_request *rq,
			     struct api_response *r)
{
	static const char *const names[] = { "image", "details", "average", "percentile" };
	struct agent_instr_info info;
	struct agent_error e;

	if (agent__find(cx->agent, rq->who, rq->params[0], &info, &e)) {
		api__agent_error(r, &e);
		return;
	}
	if (!info.numeric_field[0]) {
		api__error(r, 404, "ResourceNotFound",
			   "instrumentation %lu has no numeric decomposition, so no heatmap", info.id);
		return;
	}
	r->json = children(rq, names, names, 4);
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
}

/* CA's legacy GET /ca/types: the arity of each of the legacy field types
 * that /ca/metrics gives (legacy_type). */
void routes_ca__types(const struct api_ctx *cx, const struct api_request *rq,
		      struct api_response *r)
{
	(void)cx;
	(void)rq;
	r->json = json_pack("{s:s, s:s, s:s}", "latency", "numeric", "string", "discrete",
			    "number", "numeric");
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
}

/* CA's legacy GET /ca/transformations: kvmscope has none. */
void routes_ca__transformations(const struct api_ctx *cx, const struct api_request *rq,
				struct api_response *r)
{
	(void)cx;
	(void)rq;
	r->json = json_object();
}

/* CA's legacy GET /ca/metrics: {module: {label, stats: {stat: {label,
 * type: "unused", fields: {field: {label, type}}}}}}, a field's type
 * "latency" for times, "number" for other numeric fields, else "string". */
void routes_ca__metrics_legacy(const struct api_ctx *cx, const struct api_request *rq,
			       struct api_response *r)
{
	struct agent_error e;
	json_t *cat = NULL, *out, *m, *mods, *fields, *types;
	size_t i;
	int rc;

	rc = agent__catalogue(cx->agent, rq->who, &cat, &e);
	if (rc) {
		api__agent_error(r, &e);
		return;
	}
	out = json_object();
	mods = json_object_get(cat, "modules");
	fields = json_object_get(cat, "fields");
	types = json_object_get(cat, "types");
	json_array_foreach(json_object_get(cat, "metrics"), i, m) {
		const char *mod = json_string_value(json_object_get(m, "module"));
		json_t *mo, *stats, *st, *fo, *f;
		size_t k;

		if (!out || !mod)
			break;
		mo = json_object_get(out, mod);
		if (!mo) {
			json_t *label = json_object_get(json_object_get(mods, mod), "label");

			mo = json_pack("{s:O, s:{}}", "label", label ? label : json_string(mod),
				       "stats");
			json_object_set_new(out, mod, mo);
		}
		stats = json_object_get(mo, "stats");
		fo = json_object();
		st = json_pack("{s:O, s:s, s:o}", "label", json_object_get(m, "label"), "type",
			       "unused", "fields", fo);
		if (!st || !stats)
			continue;
		json_object_set_new(stats, json_string_value(json_object_get(m, "stat")), st);
		json_array_foreach(json_object_get(m, "fields"), k, f) {
			const char *fn = json_string_value(f);
			json_t *fd = json_object_get(fields, fn ? fn : "");
			const char *type = json_string_value(json_object_get(fd, "type"));
			json_t *td = json_object_get(types, type ? type : "");
			const char *arity = json_string_value(json_object_get(td, "arity"));
			const char *unit = json_string_value(json_object_get(td, "unit"));
			const char *ca = arity && !strcmp(arity, "numeric") ?
				(unit && !strcmp(unit, "seconds") && type && strcmp(type, "subsecond") ?
				 "latency" : "number") : "string";

			if (fn)
				json_object_set_new(fo, fn, json_pack("{s:O, s:s}", "label",
					json_object_get(fd, "label"), "type", ca));
		}
	}
	json_decref(cat);
	if (!out)
		api__error(r, 500, "InternalError", "out of memory");
	r->json = out;
}

/* ---- CA's admin status ---- */

/* The process's start, in ms since the epoch (/proc/self/stat's starttime
 * after /proc/stat's btime); 0 when unreadable. */
static int64_t process_started_ms(void)
{
	char buf[1024], *p;
	unsigned long long start = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after the command's closing parenthesis: field 3 on; starttime is 22 */
	p = strrchr(buf, ')');
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &start) != 1 || hz <= 0)
		return 0;
	f = fopen("/proc/stat", "r");
	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	return btime ? (int64_t)btime * 1000 + (int64_t)(start * 1000 / (unsigned long long)hz) : 0;
}

/* Resident memory in bytes (/proc/self/statm); 0 when unreadable. */
static long long process_rss(void)
{
	long long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%lld %lld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * sysconf(_SC_PAGESIZE);
}

/* CA's /ca/admin/status (ca-svc-config.js status) as far as kvmscope has its
 * parts: the process (started, uptime, heap as rss), the host, the one
 * instrumenter (this host) or a fleet aggregator's hosts, and the
 * instrumentations the caller may see by id; recurse (boolean) and timeout
 * (1..60 s) are checked as CA's, and there are no other services to ask.
 * Operators only: a tenant gets 404, as for a path it cannot see. */
void routes_ca__admin_status(const struct api_ctx *cx, const struct api_request *rq,
			     struct api_response *r)
{
	struct timespec t0, t1;
	struct agent_error e;
	struct utsname u;
	json_t *o = NULL, *list = NULL, *peers = NULL, *insts, *instrs, *it;
	long long timeout = 5;
	int recurse = 0;
	int64_t started, now_ms;
	size_t i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (rq->who->role != ROLE_OPERATOR) {
		routes_ca__not_found(cx, rq, r);
		return;
	}
	if (!arg_bool(rq, r, "recurse", &recurse) ||
	    !arg_int(rq, r, "timeout", 1, 60, &timeout, NULL))
		return;
	if (agent__list(cx->agent, rq->who, &list, &e)) {
		api__agent_error(r, &e);
		return;
	}
	if (agent__peers(cx->agent, rq->who, &peers, &e))
		peers = json_array();
	if (json_is_object(peers)) {
		/* a fleet: its hosts */
		json_t *hosts = json_incref(json_object_get(peers, "hosts"));

		json_decref(peers);
		peers = hosts ? hosts : json_array();
	}
	if (uname(&u))
		memset(&u, 0, sizeof(u));
	clock_gettime(CLOCK_REALTIME, &t1);
	now_ms = (int64_t)t1.tv_sec * 1000 + t1.tv_nsec / 1000000;
	started = process_started_ms();
	insts = json_object();
	instrs = json_object();
	json_array_foreach(list, i, it) {
		const char *id = json_string_value(json_object_get(it, "id"));

		if (id && insts)
			json_object_set(insts, id, it);
	}
	if (instrs && peers && json_array_size(peers)) {
		json_array_foreach(peers, i, it) {
			const char *h = json_string_value(json_object_get(it, "host"));
			json_object_set(instrs, h ? h : "?", it);
		}
	} else if (instrs) {
		json_object_set_new(instrs, u.nodename, json_pack("{s:s}", "hostname", u.nodename));
	}
	o = json_pack("{s:{s:I}, s:{s:s, s:s, s:s}, s:I, s:I, s:o, s:o, s:b}",
		      "heap", "rss", process_rss(),
		      "sysinfo", "hostname", u.nodename, "release", u.release, "machine", u.machine,
		      "started", (json_int_t)started, "uptime", (json_int_t)(started ? now_ms - started : 0),
		      "cfg_instrumenters", instrs, "cfg_insts", insts, "recurse", recurse);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (o)
		json_object_set_new(o, "request_latency",
				    json_integer((t1.tv_sec - t0.tv_sec) * 1000 +
						 (t1.tv_nsec - t0.tv_nsec) / 1000000));
	json_decref(list);
	json_decref(peers);
	if (!o)
		api__error(r, 500, "InternalError", "out of memory");
	r->json = o;
}
