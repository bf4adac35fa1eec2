/* The CA endpoints: catalogue, instrumentations, their values and heatmaps.
 * Every handler here runs with a->lock held (see the table at the end). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "api/api.h"
#include "collectors/hub.h"
#include "collectors/vmcache.h"
#include "common/log.h"
#include "discovery/discovery.h"
#include "engine/instr.h"
#include "engine/metric.h"
#include "fleet/fleet.h"
#include "render/base64.h"
#include "render/heatmap.h"
#include "render/heatmap_live.h"
#include "render/png.h"

#define HEATMAP_DURATION_DEFAULT 600
/* cells copied per hold of the agent's lock (about a millisecond here): a
 * long or wide window is copied in pieces so that the drain and other
 * requests are not kept waiting */
#define HEATMAP_COPY_CELLS 100000

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
			   name, min, max, api__clean(v, clean, sizeof(clean)));
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
			   max, api__clean(v, clean, sizeof(clean)));
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
	if (!strcmp(v, "true") || !strcmp(v, "1") || !*v)
		*out = 1;
	else if (!strcmp(v, "false") || !strcmp(v, "0"))
		*out = 0;
	else {
		api__error(r, 400, "InvalidArgument", "parameter \"%s\" must be true or false, got \"%s\"",
			   name, api__clean(v, clean, sizeof(clean)));
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

/* ---- catalogue, VMs ---- */

static void get_catalogue(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	r->json = metric__catalogue_json(rq->who->role == ROLE_TENANT);
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
}

static bool tenant_sees_vm(const struct principal *who, const char *name)
{
	if (who->role == ROLE_OPERATOR)
		return true;
	for (size_t i = 0; name && i < who->nvms; i++)
		if (!strcmp(who->vms[i], name))
			return true;
	return false;
}

static void get_vms(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	struct vmcache *vc = hub__vms(a->hub);
	json_t *all, *out, *vm;
	size_t i;

	if (vc)
		vmcache__refresh(vc);
	all = vc ? discovery__to_json(vmcache__list(vc)) : json_array();
	out = json_array();
	if (!all || !out) {
		json_decref(all);
		json_decref(out);
		api__error(r, 500, "InternalError", "out of memory");
		return;
	}
	json_array_foreach(all, i, vm)
		if (tenant_sees_vm(rq->who, json_string_value(json_object_get(vm, "name"))))
			json_array_append(out, vm);
	json_decref(all);
	r->json = out;
}

/* ---- instrumentations ---- */

static json_t *instr_json(const struct agent_instr *ai)
{
	return instr__to_json(ai->in);
}

static void list_instrs(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	json_t *arr = json_array();

	for (struct agent_instr *ai = a->instrs; arr && ai; ai = ai->next)
		if (agent__visible(rq->who, ai))
			json_array_append_new(arr, instr_json(ai));
	r->json = arr;
	if (!arr)
		api__error(r, 500, "InternalError", "out of memory");
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

/* An aggregator creates ai on its peers too (spec borrowed: what the caller
 * sent, without this agent's scoping). false with ai undone and r set. */
static bool forward_created(struct agent *a, const struct api_request *rq,
			    struct agent_instr *ai, const json_t *spec, struct api_response *r)
{
	int rc;

	if (!a->fleet)
		return true;
	rc = fleet__track(a->fleet, ai->id, spec, bearer(rq), instr__granularity(ai->in),
			  instr__retention(ai->in));
	if (!rc)
		return true;
	agent__destroy(a, ai);
	api__error(r, 500, "InternalError", "cannot forward the instrumentation to the peers: %s",
		   strerror(-rc));
	return false;
}

static void created(struct agent_instr *ai, struct api_response *r)
{
	r->status = 201;
	r->json = instr_json(ai);
	snprintf(r->location, sizeof(r->location), "/ca/instrumentations/%lu", ai->id);
}

static void create_instr(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	json_t *spec = request_spec(rq, r, false);
	struct agent_instr *ai;
	const char *code;
	char err[512];
	int status;

	if (!spec)
		return;
	status = agent__create(a, rq->who, spec, 0, NULL, &ai, &code, err, sizeof(err));
	if (status)
		api__error(r, status, code, "%s", err);
	else if (forward_created(a, rq, ai, spec, r))
		created(ai, r);
	json_decref(spec);
}

static struct agent_instr *find_or_404(struct agent *a, const struct api_request *rq,
				       struct api_response *r)
{
	struct agent_instr *ai = agent__find(a, rq->who, rq->params[0]);
	char clean[64];

	if (!ai)
		api__error(r, 404, "ResourceNotFound", "no instrumentation with id \"%s\"",
			   api__clean(rq->params[0], clean, sizeof(clean)));
	return ai;
}

static void get_instr(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	struct agent_instr *ai = find_or_404(a, rq, r);

	if (ai)
		r->json = instr_json(ai);
	if (ai && r->json && a->fleet) {
		json_object_set_new(r->json, "nsources", json_integer(fleet__nsources(a->fleet)));
		json_object_set_new(r->json, "peers", fleet__instr_status(a->fleet, ai->id));
	}
}

static void delete_instr(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	struct agent_instr *ai = find_or_404(a, rq, r);

	if (!ai)
		return;
	log_info("api", "instrumentation %lu deleted on request", ai->id);
	if (a->fleet)
		fleet__forget(a->fleet, ai->id);
	agent__destroy(a, ai);
	r->status = 204;
}

/* PUT changes what CA lets change (retention-time, idle-max, persist-data);
 * the properties that define the data (metric, predicate, decomposition,
 * granularity) are fixed: changing one is 409. The data is carried over. */
static void put_instr(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	static const char *const fixed[] = { "module", "stat", "predicate", "decomposition",
					     "granularity" };
	struct agent_instr *ai = find_or_404(a, rq, r), *nai;
	struct principal as_owner = { ROLE_OPERATOR, NULL, NULL, 0 };
	json_t *body, *merged = NULL, *oldj = NULL, *newj = NULL, *data = NULL;
	const char *code;
	char err[512];
	int status, saved_limit = a->cfg.max_per_owner;

	if (!ai)
		return;
	body = request_spec(rq, r, false);
	if (!body)
		return;
	oldj = instr_json(ai);
	merged = json_deep_copy(oldj);
	if (!merged || json_object_update(merged, body)) {
		api__error(r, 500, "InternalError", "out of memory");
		goto out;
	}
	as_owner.owner = ai->owner;
	/* the new one replaces the old: it must not count against the limit */
	a->cfg.max_per_owner = 0;
	status = agent__create(a, &as_owner, merged, ai->id, ai->owner, &nai, &code, err, sizeof(err));
	a->cfg.max_per_owner = saved_limit;
	if (status) {
		api__error(r, status, code, "%s", err);
		goto out;
	}
	newj = instr_json(nai);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (!json_equal(json_object_get(oldj, fixed[i]), json_object_get(newj, fixed[i]))) {
			api__error(r, 409, "InvalidState",
				   "\"%s\" of an instrumentation cannot change (create a new one or clone it)",
				   fixed[i]);
			agent__destroy(a, nai);
			goto out;
		}
	data = instr__data_to_json(ai->in);
	if (data && instr__data_from_json(nai->in, data))
		log_warn("api", "instrumentation %lu: data not carried over the change", ai->id);
	nai->from = ai->from;
	nai->last_read = agent__now();
	agent__destroy(a, ai);
	if (a->fleet && fleet__update(a->fleet, nai->id, body, instr__retention(nai->in)))
		log_warn("api", "instrumentation %lu: change not forwarded to the peers (out of memory)",
			 nai->id);
	r->json = instr_json(nai);
out:
	json_decref(body);
	json_decref(merged);
	json_decref(oldj);
	json_decref(newj);
	json_decref(data);
}

static void clone_instr(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	struct agent_instr *ai = find_or_404(a, rq, r), *nai;
	json_t *body, *spec, *fwd;
	const char *code;
	char err[512];
	int status;

	if (!ai)
		return;
	body = request_spec(rq, r, true);
	if (!body)
		return;
	spec = instr_json(ai);
	/* peers get the clone of what they were sent, not of this agent's scoping */
	fwd = a->fleet ? fleet__spec(a->fleet, ai->id) : NULL;
	if (!spec || json_object_update(spec, body) || (fwd && json_object_update(fwd, body))) {
		api__error(r, 500, "InternalError", "out of memory");
	} else {
		status = agent__create(a, rq->who, spec, 0, NULL, &nai, &code, err, sizeof(err));
		if (status)
			api__error(r, status, code, "%s", err);
		else if (forward_created(a, rq, nai, fwd ? fwd : spec, r))
			created(nai, r);
	}
	json_decref(body);
	json_decref(spec);
	json_decref(fwd);
}

/* ---- values ---- */

static void value_raw(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	struct agent_instr *ai = find_or_404(a, rq, r);
	long long start = -1, duration = 0, ndp = 1;

	if (!ai || !args_valid(rq, r) ||
	    !arg_int(rq, r, "start_time", 0, 1LL << 40, &start, NULL) ||
	    !arg_int(rq, r, "duration", 1, INSTR_RETENTION_MAX, &duration, NULL) ||
	    !arg_int(rq, r, "ndatapoints", 1, INSTR_RAW_NDATAPOINTS_MAX, &ndp, NULL))
		return;
	ai->last_read = agent__now();
	r->json = instr__value_raw(ai->in, start, duration, (int)ndp,
				    a->drained_to ? a->drained_to : agent__now());
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
	else if (a->fleet && fleet__annotate_raw(a->fleet, ai->id, r->json) == -ENOMEM)
		api__error(r, 500, "InternalError", "out of memory");
}

/* The aggregator's peers: operators only (addresses are the operator's
 * business, not a tenant's). */
static void get_peers(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	if (rq->who->role != ROLE_OPERATOR) {
		api__error(r, 403, "Forbidden", "the peer list is for operators");
		return;
	}
	r->json = a->fleet ? fleet__peers_json(a->fleet) : json_array();
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
}

struct hm_req {
	struct heatmap_params p;
	struct dist_window w;		/* the slots, copied out under the lock */
	size_t nslots;
	int64_t start, duration, g;
	const char *selected[64];
	int hues[64];
	json_t *args;		/* owns the selected strings */
};

static void hm_req_free(struct hm_req *h)
{
	dist_window__free(&h->w);
	json_decref(h->args);
}

/* Collects a repeated or comma-separated parameter into strings borrowed
 * from h->args. */
static int list_arg(struct hm_req *h, const char *name, const char **out, size_t max, size_t *n)
{
	json_t *v = json_object_get(h->args, name), *e;
	size_t i;

	if (!v)
		return 0;
	if (json_is_string(v)) {
		if (*n >= max)
			return -E2BIG;
		out[(*n)++] = json_string_value(v);
		return 0;
	}
	json_array_foreach(v, i, e) {
		if (*n >= max)
			return -E2BIG;
		out[(*n)++] = json_string_value(e);
	}
	return 0;
}

/* An aggregator's heatmap is drawn from the values merged with its peers'
 * (which come as CA JSON). 0 or -errno. */
static int merged_window(const struct agent *a, struct agent_instr *ai, struct hm_req *h)
{
	char err[256];
	json_t *v;
	int rc = 0;

	dist_window__init(&h->w, h->start, h->g);
	for (size_t i = 0; !rc && i < h->nslots; i++) {
		int64_t t = h->start + (int64_t)i * h->g;

		v = instr__value(ai->in, t);
		if (!v)
			return -ENOMEM;
		fleet__merge_slot(a->fleet, ai->id, t, v);
		rc = dist_window__add_json(&h->w, v, err, sizeof(err));
		if (rc == -EINVAL)
			log_warn("api", "instrumentation %lu: merged slot left out: %s", ai->id, err);
		if (rc == -EINVAL)
			rc = 0;
		json_decref(v);
	}
	return rc;
}

/* Parses the heatmap parameters and gathers the slots. false with r set on
 * bad input. */
static bool heatmap_request(const struct agent *a, struct agent_instr *ai,
			    const struct api_request *rq, struct api_response *r, struct hm_req *h)
{
	const struct field_desc *nf = instr__numeric_field(ai->in);
	long long w = 600, ht = 300, nb = 100, start = -1, dur = 0;
	bool gw, gs, gd, gmin, gmax;
	double ymin = 0, ymax = 0;
	const char *v;
	const char *hue_s[64];
	size_t nhue_s = 0;
	int64_t now = a->drained_to ? a->drained_to : agent__now(), end;

	memset(h, 0, sizeof(*h));
	heatmap_params__init(&h->p);
	if (!nf) {
		api__error(r, 409, "InvalidState",
			   "instrumentation %lu has no numeric decomposition, so no heatmap (decompose by e.g. subsecond or latency)",
			   ai->id);
		return false;
	}
	if (!args_valid(rq, r) ||
	    !arg_int(rq, r, "width", 1, HEATMAP_MAX_WIDTH, &w, &gw) ||
	    !arg_int(rq, r, "height", 1, HEATMAP_MAX_HEIGHT, &ht, NULL) ||
	    !arg_int(rq, r, "nbuckets", 1, HEATMAP_MAX_BUCKETS, &nb, NULL) ||
	    !arg_int(rq, r, "start_time", 0, 1LL << 40, &start, &gs) ||
	    !arg_int(rq, r, "duration", 1, instr__retention(ai->in), &dur, &gd) ||
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
	h->p.ymin = ymin;
	if (gmax) {
		if (ymax <= ymin) {
			api__error(r, 400, "InvalidArgument", "parameter \"ymax\" (%g) must exceed \"ymin\" (%g)",
				   ymax, ymin);
			return false;
		}
		h->p.ymax = ymax;
		h->p.auto_ymax = 0;
	} else if (!strcmp(nf->name, "subsecond")) {
		/* the whole second, always: the point is where in it things happen */
		h->p.ymax = 1000;
		h->p.auto_ymax = 0;
	}
	if (h->p.isolate && h->p.exclude) {
		api__error(r, 400, "InvalidArgument", "parameters \"isolate\" and \"exclude\" exclude each other");
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
					   "parameter \"hues\" must be integers 0..359 (at most 64), got \"%.40s\"",
					   hue_s[i]);
				return false;
			}
			h->hues[h->p.nhues++] = (int)hv;
			s = *e ? e + 1 : e;
		}
	}
	if (h->p.nhues)
		h->p.hues = h->hues;
	h->g = instr__granularity(ai->in);
	if (!gd)
		dur = instr__retention(ai->in) < HEATMAP_DURATION_DEFAULT ? instr__retention(ai->in)
									  : HEATMAP_DURATION_DEFAULT;
	dur = (dur + h->g - 1) / h->g * h->g;
	if (gs) {
		start = start / h->g * h->g;
	} else {
		end = now / h->g * h->g;	/* the slot in progress is left out */
		start = end - dur;
	}
	h->start = start;
	h->duration = dur;
	h->nslots = (size_t)(dur / h->g);
	/* the fleet's merged values are gathered here, local ones in pieces
	 * by heatmap_gather */
	dist_window__init(&h->w, start, h->g);
	if (a->fleet && merged_window(a, ai, h)) {
		api__error(r, 500, "InternalError", "out of memory");
		return false;
	}
	ai->last_read = now;
	return true;
}

/* The locked part of a heatmap request: find the instrumentation and copy
 * its slots into h (a typed window h owns), HEATMAP_COPY_CELLS at a time, so
 * that drawing runs without the lock and no hold of it grows with the
 * window.
 * false with r set (and nothing in h to free) on failure. */
static bool heatmap_gather(struct agent *a, const struct api_request *rq, struct api_response *r,
			   struct hm_req *h)
{
	struct agent_instr *ai;
	bool ok = false, parsed = false;
	size_t copied = 0;
	long got;

	pthread_mutex_lock(&a->lock);
	ai = find_or_404(a, rq, r);
	if (ai) {
		ok = heatmap_request(a, ai, rq, r, h);
		parsed = true;
	}
	while (ok && !a->fleet && copied < h->nslots) {
		if (copied) {
			pthread_mutex_unlock(&a->lock);
			pthread_mutex_lock(&a->lock);
			/* deleted meanwhile: 404, as if it had gone before */
			ai = find_or_404(a, rq, r);
			if (!ai) {
				ok = false;
				break;
			}
		}
		got = instr__window_append(ai->in, h->start + (int64_t)copied * h->g,
					   h->nslots - copied, HEATMAP_COPY_CELLS, &h->w);
		if (got <= 0) {
			api__error(r, 500, "InternalError", "out of memory");
			ok = false;
			break;
		}
		copied += (size_t)got;
	}
	pthread_mutex_unlock(&a->lock);
	if (parsed && !ok)
		hm_req_free(h);
	/* the sorting part of the copy: outside the lock */
	if (ok && dist_window__finish(&h->w)) {
		api__error(r, 500, "InternalError", "out of memory");
		hm_req_free(h);
		ok = false;
	}
	return ok;
}

static void heatmap_failed(struct api_response *r, int rc)
{
	if (rc == -ENOMEM)
		api__error(r, 500, "InternalError", "out of memory");
	else
		api__error(r, 400, "InvalidArgument", "heatmap: %s", heatmap__last_error());
}

/* A local instrumentation's image goes through the live panel cache
 * (render/heatmap_live.h): slots it drew before are not copied again, and
 * viewers of one panel within a second share one drawing. The panel is
 * taken before the agent lock, never under it. */
static void heatmap_image_live(struct agent *a, const struct api_request *rq,
			       struct api_response *r)
{
	struct heatmap_live_req q;
	struct heatmap_live_image im;
	struct agent_instr *ai;
	struct hm_req h;
	uint64_t uid = 0;
	size_t copied = 0;
	long got = 1;
	int rc;

	pthread_mutex_lock(&a->lock);
	ai = find_or_404(a, rq, r);
	if (ai && !heatmap_request(a, ai, rq, r, &h))
		hm_req_free(&h);
	else if (ai)
		uid = instr__uid(ai->in);
	pthread_mutex_unlock(&a->lock);
	if (!uid)
		return;
	rc = heatmap_live__begin(&q, uid, &h.p, h.start, h.g, h.nslots);
	if (rc) {
		heatmap_failed(r, rc);
		goto out;
	}
	while (got > 0 && copied < h.nslots) {
		pthread_mutex_lock(&a->lock);
		ai = find_or_404(a, rq, r);	/* deleted meanwhile: 404 */
		if (ai && instr__uid(ai->in) != uid)
			api__error(r, 409, "InvalidState", "instrumentation %lu changed while it was drawn",
				   ai->id);
		got = ai && instr__uid(ai->in) == uid ?
		      heatmap_live__copy(&q, ai->in, copied, HEATMAP_COPY_CELLS) : 0;
		pthread_mutex_unlock(&a->lock);
		if (got < 0)
			api__error(r, 500, "InternalError", "out of memory");
		copied += got > 0 ? (size_t)got : 0;
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
	r->json = json_pack("{s:s, s:f, s:f, s:i, s:i, s:i, s:O, s:I, s:I}", "image", im.image,
			    "ymin", im.ymin, "ymax", im.ymax, "nbuckets", im.nbuckets,
			    "width", im.width, "height", im.height, "present", im.present,
			    "start_time", (json_int_t)h.start, "duration", (json_int_t)h.duration);
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
	heatmap_live_image__free(&im);
out:
	hm_req_free(&h);
}

static void heatmap_image(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	struct heatmap_input in;
	struct heatmap *hm = NULL;
	unsigned char *png = NULL;
	size_t pnglen;
	char *b64 = NULL;
	struct hm_req h;
	int rc;

	if (!a->fleet) {
		heatmap_image_live(a, rq, r);
		return;
	}
	if (!heatmap_gather(a, rq, r, &h))
		return;
	in = (struct heatmap_input){ &h.w, 0, h.w.nslots };
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
	r->json = json_pack("{s:s, s:f, s:f, s:i, s:i, s:i, s:O, s:I, s:I}", "image", b64,
			    "ymin", hm->ymin, "ymax", hm->ymax, "nbuckets", hm->nbuckets,
			    "width", hm->width, "height", hm->height, "present", hm->present,
			    "start_time", (json_int_t)h.start, "duration", (json_int_t)h.duration);
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
out:
	free(b64);
	free(png);
	heatmap__free(hm);
	hm_req_free(&h);
}

static void heatmap_details(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	struct heatmap_input in;
	long long x = -1, y = -1;
	bool gx, gy;
	struct hm_req h;
	int rc;

	if (!heatmap_gather(a, rq, r, &h))
		return;
	if (!arg_int(rq, r, "x", 0, h.p.width - 1, &x, &gx) ||
	    !arg_int(rq, r, "y", 0, h.p.height - 1, &y, &gy))
		goto out;
	if (!gx || !gy) {
		api__error(r, 400, "InvalidArgument", "parameter \"%s\" is required", gx ? "y" : "x");
		goto out;
	}
	in = (struct heatmap_input){ &h.w, 0, h.w.nslots };
	rc = heatmap__details(&in, &h.p, (int)x, (int)y, &r->json);
	if (rc == -ERANGE)
		api__error(r, 400, "InvalidArgument", "pixel (%lld, %lld) is outside the image", x, y);
	else if (rc)
		heatmap_failed(r, rc);
out:
	hm_req_free(&h);
}

static void heatmap_summary(struct agent *a, const struct api_request *rq, struct api_response *r,
			    bool percentile)
{
	struct heatmap_input in;
	double pct = 0;
	bool gp = false;
	struct hm_req h;
	int rc;

	if (!heatmap_gather(a, rq, r, &h))
		return;
	if (percentile) {
		if (!arg_double(rq, r, "percentile", 0, 1, &pct, &gp))
			goto out;
		if (!gp) {
			api__error(r, 400, "InvalidArgument", "parameter \"percentile\" (0..1) is required");
			goto out;
		}
	}
	in = (struct heatmap_input){ &h.w, 0, h.w.nslots };
	rc = percentile ? heatmap__percentile(&in, &h.p, pct * 100, &r->json)
			: heatmap__average(&in, &h.p, &r->json);
	if (rc)
		heatmap_failed(r, rc);
out:
	hm_req_free(&h);
}

static void heatmap_average(struct agent *a, const struct api_request *rq, struct api_response *r)
{
	heatmap_summary(a, rq, r, false);
}

static void heatmap_percentile(struct agent *a, const struct api_request *rq,
			       struct api_response *r)
{
	heatmap_summary(a, rq, r, true);
}

#define ID "/ca/instrumentations/:id"
const struct api_route routes_ca[] = {
	{ "GET",    "/ca",				get_catalogue,	    true },
	{ "GET",    "/ca/vms",				get_vms,	    true },
	{ "GET",    "/ca/peers",			get_peers,	    false },
	{ "GET",    "/ca/instrumentations",		list_instrs,	    true },
	{ "POST",   "/ca/instrumentations",		create_instr,	    true },
	{ "GET",    ID,					get_instr,	    true },
	{ "PUT",    ID,					put_instr,	    true },
	{ "DELETE", ID,					delete_instr,	    true },
	{ "POST",   ID "/clone",			clone_instr,	    true },
	{ "GET",    ID "/value/raw",			value_raw,	    true },
	{ "GET",    ID "/value/heatmap/image",		heatmap_image,	    false },
	{ "GET",    ID "/value/heatmap/details",	heatmap_details,    false },
	{ "GET",    ID "/value/heatmap/average",	heatmap_average,    false },
	{ "GET",    ID "/value/heatmap/percentile",	heatmap_percentile, false },
};
const size_t routes_ca_count = sizeof(routes_ca) / sizeof(routes_ca[0]);
