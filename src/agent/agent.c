/* The agent: its instrumentations, created on behalf of a principal
 * (forced tenant scope, per-owner and size limits), looked up with
 * visibility rules, expired when idle, shared with a fleet (fleet/fleet.h);
 * the drain once a second; the agent's lifecycle. Everything takes a->lock, the one
 * lock of the agent, and copies out what it returns. */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/internal.h"
#include "collectors/hub.h"
#include "collectors/vmcache.h"
#include "common/log.h"
#include "discovery/discovery.h"
#include "engine/instr.h"
#include "engine/metric.h"
#include "engine/window.h"
#include "export/metrics.h"
#include "fleet/fleet.h"

/* cells copied per hold of the agent's lock (about a millisecond here): a
 * long or wide window is copied in pieces so that the drain and other
 * requests are not kept waiting */

int64_t agent__now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

static int kind_errno(enum agent_errkind kind)
{
	switch (kind) {
	case AGENT_OK: return 0;
	case AGENT_EINVAL:
	case AGENT_ESEMANTIC: return -EINVAL;
	case AGENT_ENOENT: return -ENOENT;
	case AGENT_EPERM: return -EPERM;
	case AGENT_ECONFLICT: return -EEXIST;
	case AGENT_ELIMIT: return -EDQUOT;
	case AGENT_EUNAVAIL: return -EAGAIN;
	case AGENT_EINTERNAL: break;
	}
	return -EIO;
}

/* Sets e and returns the errno of kind, so that a function can
 * `return fail(e, ...)`. */
static int fail(struct agent_error *e, enum agent_errkind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct agent_error *e, enum agent_errkind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->kind = kind;
	return kind_errno(kind);
}

static int fail_nomem(struct agent_error *e)
{
	return fail(e, AGENT_EINTERNAL, "out of memory");
}

const char *agent__clean(const char *s, char *dst, size_t n)
{
	size_t j = 0;

	if (!n)
		return dst;
	for (; s && *s && j + 1 < n; s++)
		dst[j++] = ((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f && *s != '"' &&
			    *s != '\\') ? *s : '?';
	dst[j] = '\0';
	return dst;
}

static bool visible(const struct principal *who, const struct agent_instr *ai)
{
	return who->role == ROLE_OPERATOR || !strcmp(who->owner, ai->owner);
}

/* A tenant's instrumentations are numbered among its own (1, 2, ...): what
 * a tenant sees and addresses is owner_id, the operator the host-wide id. */
static bool owner_is_tenant(const char *owner)
{
	return !strncmp(owner, "tenant:", strlen("tenant:"));
}

static unsigned long owner_next_get(const struct agent *a, const char *owner)
{
	json_int_t n = json_integer_value(json_object_get(a->owner_next, owner));

	return n > 0 ? (unsigned long)n : 1;
}

/* Notes that owner has used owner_id: its next one is higher. 0 or -ENOMEM. */
static int owner_id_seen(struct agent *a, const char *owner, unsigned long owner_id)
{
	if (owner_id < owner_next_get(a, owner))
		return 0;
	return json_object_set_new(a->owner_next, owner, json_integer((json_int_t)owner_id + 1)) ?
	       -ENOMEM : 0;
}

/* The id `who` knows ai by. */
static unsigned long view_id(const struct principal *who, const struct agent_instr *ai)
{
	return who->role == ROLE_TENANT ? ai->owner_id : ai->id;
}

/* uri (a string in j) with its "/ca/instrumentations/<id>" prefix renumbered
 * to to_id. */
static void renumber_uri(json_t *j, unsigned long id, unsigned long to_id)
{
	char prefix[64], buf[1024];
	const char *u = json_string_value(j);
	size_t n = (size_t)snprintf(prefix, sizeof(prefix), "/ca/instrumentations/%lu", id);

	if (!u || strncmp(u, prefix, n) || (u[n] && u[n] != '/'))
		return;
	snprintf(buf, sizeof(buf), "/ca/instrumentations/%lu%s", to_id, u + n);
	json_string_set(j, buf);
}

/* ai as who sees it: a tenant its own numbering (id, uri, uris), the
 * operator the host-wide id and, for a tenant's, whose it is and the
 * tenant's number. Returns a new reference owned by the caller (NULL: out
 * of memory). Caller holds a->lock. */
static json_t *present(const struct principal *who, const struct agent_instr *ai)
{
	json_t *j = instr__to_json(ai->in), *u;
	char idbuf[32];
	size_t i;

	if (!j || !owner_is_tenant(ai->owner))
		return j;
	if (who->role != ROLE_TENANT) {
		if (json_object_set_new(j, "owner", json_string(ai->owner)) ||
		    json_object_set_new(j, "owner_id", json_integer((json_int_t)ai->owner_id)))
			goto err;
		return j;
	}
	snprintf(idbuf, sizeof(idbuf), "%lu", ai->owner_id);
	if (json_object_set_new(j, "id", json_string(idbuf)))
		goto err;
	renumber_uri(json_object_get(j, "uri"), ai->id, ai->owner_id);
	json_array_foreach(json_object_get(j, "uris"), i, u)
		renumber_uri(json_object_get(u, "uri"), ai->id, ai->owner_id);
	return j;
err:
	json_decref(j);
	return NULL;
}

struct agent_instr *agent__by_id(struct agent *a, unsigned long id)
{
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		if (ai->id == id)
			return ai;
	return NULL;
}

/* The instrumentation `id` (the caller's text) if who may see it, else NULL
 * with e set. Caller holds a->lock. */
static struct agent_instr *find_locked(struct agent *a, const struct principal *who,
				       const char *id, struct agent_error *e)
{
	struct agent_instr *ai = NULL;
	char *end, clean[64];
	unsigned long n;

	if (id && *id >= '0' && *id <= '9') {
		errno = 0;
		n = strtoul(id, &end, 10);
		if (*end || errno)
			;
		else if (who->role != ROLE_TENANT)
			ai = agent__by_id(a, n);
		else
			for (ai = a->instrs; ai; ai = ai->next)
				if (ai->owner_id == n && !strcmp(ai->owner, who->owner))
					break;
	}
	if (ai && visible(who, ai))
		return ai;
	fail(e, AGENT_ENOENT, "no instrumentation with id \"%s\"",
	     agent__clean(id, clean, sizeof(clean)));
	return NULL;
}

static int sink(const struct record *rec, void *ctx)
{
	struct agent_instr *ai = ctx;

	if (rec->time < ai->from)
		return 0;
	return instr__ingest(ai->in, rec);
}


/* True when pred is {"or": scope} or {"and": [..., {"or": scope}]}. */
static bool scoped_already(const json_t *pred, const json_t *or)
{
	const json_t *and = json_object_get(pred, "and");
	const json_t *last = json_array_get(and, json_array_size(and) ? json_array_size(and) - 1 : 0);

	if (json_equal(json_object_get(pred, "or"), (json_t *)or) && json_object_size(pred) == 1)
		return true;
	return json_object_size(pred) == 1 && last && json_object_size(last) == 1 &&
	       json_equal(json_object_get(last, "or"), (json_t *)or);
}

/* A tenant's predicate: theirs AND-ed with "one of my VMs". Returns a new
 * reference owned by the caller, or NULL with err set. */
static json_t *scoped_predicate(const struct principal *who, const json_t *pred, char *err,
				size_t errlen)
{
	json_t *user = NULL, *or = json_array(), *out = NULL;

	if (!or)
		return NULL;
	for (size_t i = 0; i < who->nvms; i++)
		json_array_append_new(or, json_pack("{s:[s,s]}", "eq", "vm", who->vms[i]));
	if (pred && json_is_string(pred) && *json_string_value(pred)) {
		json_error_t jerr;

		user = json_loads(json_string_value(pred), 0, &jerr);
		if (!user) {
			snprintf(err, errlen, "predicate: not JSON: %s", jerr.text);
			goto out;
		}
	} else if (pred && json_is_object(pred)) {
		user = json_incref((json_t *)pred);
	} else if (pred && !json_is_null(pred) && !json_is_string(pred)) {
		snprintf(err, errlen, "predicate: want an object or a JSON string, got %s",
			 json_is_array(pred) ? "an array" : "a scalar");
		goto out;
	}
	if (!user || (json_is_object(user) && json_object_size(user) == 0))
		out = json_pack("{s:O}", "or", or);
	else if (scoped_already(user, or))
		out = json_incref(user);	/* a PUT or clone of a scoped spec */
	else
		out = json_pack("{s:[O,{s:O}]}", "and", user, "or", or);
out:
	json_decref(user);
	json_decref(or);
	return out;
}

/* Cells an instrumentation may hold at most (see AGENT_CELLS_MAX_DEFAULT). */
static uint64_t cells_bound(const struct instr *in, char *what, size_t whatlen)
{
	const struct field_desc *nf = instr__numeric_field(in);
	uint64_t slots = (uint64_t)instr__retention(in) / (uint64_t)instr__granularity(in);
	uint64_t nb = nf ? metric__nbuckets(nf) : 1, keys = 1;
	json_t *j = instr__to_json(in), *d = j ? json_object_get(j, "decomposition") : NULL;
	size_t i, ndisc = 0;
	json_t *v;

	json_array_foreach(d, i, v) {
		const struct field_desc *fd;
		int fi = metric__field_index(instr__metric(in), json_string_value(v));

		if (fi < 0)
			continue;
		fd = instr__metric(in)->fields[fi];
		if (fd->type == FIELD_DISCRETE) {
			ndisc++;
			keys *= AGENT_KEYS_ESTIMATE;
		}
	}
	json_decref(j);
	snprintf(what, whatlen, "%llu slots (retention-time %d s / granularity %d s) x %llu %s buckets x %llu keys (%d per discrete field, %zu decomposed)",
		 (unsigned long long)slots, instr__retention(in), instr__granularity(in),
		 (unsigned long long)nb, nf ? nf->name : "(no numeric field)",
		 (unsigned long long)keys, AGENT_KEYS_ESTIMATE, ndisc);
	return slots * nb * keys;
}

static size_t owner_count(const struct agent *a, const char *owner)
{
	size_t n = 0;

	for (const struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		n += !strcmp(ai->owner, owner);
	return n;
}

static void link_sorted(struct agent *a, struct agent_instr *ai)
{
	struct agent_instr **pp = &a->instrs;

	while (*pp && (*pp)->id < ai->id)
		pp = &(*pp)->next;
	ai->next = *pp;
	*pp = ai;
}


/* instr__new's failures: a spec of the wrong shape or types is malformed;
 * one that names a metric or field that does not exist, or asks a field for
 * what its type cannot give, is well-formed but meaningless. */
static enum agent_errkind spec_error_kind(int rc)
{
	return rc == -EDOM ? AGENT_ESEMANTIC : AGENT_EINVAL;
}

/* Creates an instrumentation from spec (borrowed) on behalf of who, and
 * registers it with the hub. id == 0 picks the next free id; owner NULL
 * means who->owner; owner_id == 0 picks a tenant's next (the operator's
 * own are numbered by id). replacing (may be NULL) is the one the new one will
 * replace: it does not count against the owner's limit, and the new one is
 * not linked into a's list (the caller swaps it in or frees it with
 * instr_free). Otherwise the new one is linked and owned by a. Caller
 * holds a->lock. */
static int create_locked(struct agent *a, const struct principal *who, const json_t *spec,
			 unsigned long id, const char *owner, unsigned long owner_id,
			 const struct agent_instr *replacing, struct agent_instr **out,
			 struct agent_error *e)
{
	struct agent_instr *ai = NULL;
	json_t *s = NULL;
	char idbuf[32], uri[64], what[256], why[sizeof(e->msg)];
	struct hub_consumer c;
	size_t count;
	uint64_t cells;
	int rc;

	if (!owner)
		owner = who->owner;
	if (!json_is_object(spec))
		return fail(e, AGENT_EINVAL, "the instrumentation must be a JSON object");
	count = owner_count(a, owner);
	if (replacing && !strcmp(replacing->owner, owner))
		count--;
	if (a->cfg.max_per_owner > 0 && count >= (size_t)a->cfg.max_per_owner)
		return fail(e, AGENT_ELIMIT, "owner '%s' already has %d instrumentations (the limit, --max-instrumentations)",
			    who->role == ROLE_TENANT ? "tenant" : "operator", a->cfg.max_per_owner);
	s = json_deep_copy(spec);
	if (!s || (a->replay && replay__adjust_spec(a, s)))
		goto err_nomem;
	if (who->role == ROLE_TENANT) {
		json_t *p = scoped_predicate(who, json_object_get(s, "predicate"), why,
					     sizeof(why));

		if (!p) {
			rc = fail(e, AGENT_EINVAL, "%s", why);
			goto err_free;
		}
		json_object_set_new(s, "predicate", p);
	}
	if (a->scope.nvms) {
		/* the agent's own scope (--scope-vms), on top of a tenant's */
		json_t *p = scoped_predicate(&a->scope, json_object_get(s, "predicate"), why,
					     sizeof(why));

		if (!p) {
			rc = fail(e, AGENT_EINVAL, "%s", why);
			goto err_free;
		}
		json_object_set_new(s, "predicate", p);
	}
	ai = calloc(1, sizeof(*ai));
	if (!ai)
		goto err_nomem;
	ai->consumer = -1;
	rc = instr__new(s, &ai->in, e->msg, sizeof(e->msg));
	if (rc == -ENOMEM)
		goto err_nomem;
	if (rc) {
		e->kind = spec_error_kind(rc);
		rc = kind_errno(e->kind);
		goto err_free;
	}
	if (who->role == ROLE_TENANT &&
	    (instr__fields_needed(ai->in) & FIELD_BIT(F_HOSTNAME))) {
		rc = fail(e, AGENT_ESEMANTIC, "field 'hostname' is not available");
		goto err_free;
	}
	cells = cells_bound(ai->in, what, sizeof(what));
	if (cells > a->cfg.max_cells) {
		rc = fail(e, AGENT_ESEMANTIC, "instrumentation too large: %s = %llu cells > %llu (lower retention-time or the decomposition)",
			  what, (unsigned long long)cells, (unsigned long long)a->cfg.max_cells);
		goto err_free;
	}
	ai->id = replacing ? replacing->id : id ? id : a->next_id;
	if (ai->id >= a->next_id)
		a->next_id = ai->id + 1;
	ai->owner_id = replacing ? replacing->owner_id : owner_id ? owner_id :
		       owner_is_tenant(owner) ? owner_next_get(a, owner) : ai->id;
	ai->owner = strdup(owner);
	if (!ai->owner || (owner_is_tenant(owner) && owner_id_seen(a, owner, ai->owner_id)))
		goto err_nomem;
	snprintf(idbuf, sizeof(idbuf), "%lu", ai->id);
	snprintf(uri, sizeof(uri), "/ca/instrumentations/%lu", ai->id);
	if (instr__set_id(ai->in, idbuf, uri))
		goto err_nomem;
	ai->from = agent__now() + 1;
	ai->last_read = agent__now();
	if (a->replay && (rc = replay__feed(a, ai, e)))
		goto err_free;
	c = (struct hub_consumer){ instr__metric(ai->in)->id, instr__fields_needed(ai->in), sink, ai };
	rc = a->replay ? -1 : hub__add(a->hub, &c, why, sizeof(why));
	if (rc < 0 && !a->replay) {
		rc = fail(e, AGENT_EUNAVAIL, "%s", why);
		goto err_free;
	}
	ai->consumer = rc;
	if (!replacing)
		link_sorted(a, ai);
	a->dirty = true;
	json_decref(s);
	*out = ai;
	if (!replacing)
		log_info("api", "instrumentation %lu created: %s owner=%s (its %lu)", ai->id,
			 instr__metric(ai->in)->name, ai->owner, ai->owner_id);
	return 0;
err_nomem:
	rc = fail_nomem(e);
err_free:
	if (ai) {
		instr__free(ai->in);
		free(ai->owner);
		free(ai);
	}
	json_decref(s);
	return rc;
}

/* Frees ai, which is in no list. */
static void instr_free(struct agent *a, struct agent_instr *ai)
{
	if (ai->consumer >= 0)
		hub__remove(a->hub, ai->consumer);
	instr__free(ai->in);
	free(ai->owner);
	free(ai);
}

/* Unlinks and frees ai; an aggregator deletes it from the fleet's bucket
 * too, unless the bucket said so (from_bucket). Caller holds a->lock. */
static void destroy_fleet_locked(struct agent *a, struct agent_instr *ai, bool from_bucket)
{
	struct agent_instr **pp = &a->instrs;

	while (*pp && *pp != ai)
		pp = &(*pp)->next;
	if (*pp)
		*pp = ai->next;
	if (a->fleet && ai->fleet_id) {
		fleet__detach(a->fleet, ai->fleet_id);
		if (fleet__aggregating(a->fleet) && !from_bucket)
			fleet__delete(a->fleet, ai->fleet_id);
	}
	state__deleted(a, ai->id);
	instr_free(a, ai);
	a->dirty = true;
}

static void destroy_locked(struct agent *a, struct agent_instr *ai)
{
	destroy_fleet_locked(a, ai, false);
}

int agent__restore(struct agent *a, const json_t *spec, unsigned long id, const char *owner,
		   unsigned long owner_id, struct agent_instr **out, struct agent_error *e)
{
	/* The saved spec already carries the tenant's forced scope: restoring
	 * it as the operator keeps it unchanged. */
	struct principal who = { ROLE_OPERATOR, (char *)owner, NULL, 0 };

	return create_locked(a, &who, spec, id, owner, owner_id, NULL, out, e);
}

/* An aggregator puts ai in the fleet's bucket (spec borrowed: what the
 * caller sent, without this agent's scoping: each host scopes it as the
 * owner itself). The bucket's answer is waited for without a->lock (a hung
 * bus must not stop drains and reads): the caller's lock is released and
 * taken again, and ai found again by its id. An id another aggregator took
 * meanwhile is skipped: ai is made again under the next one. *aip then
 * points to the one kept; on failure ai is undone. Caller holds a->lock. */
static int forward_created(struct agent *a, struct agent_instr **aip, const struct principal *who,
			   const json_t *spec, struct agent_error *e)
{
	struct agent_instr *ai = *aip;
	char why[256] = "";
	int rc = 0;

	if (!a->fleet || !fleet__aggregating(a->fleet))
		return 0;	/* a member's own instrumentation: this host only */
	for (int tries = 0; tries < 64; tries++) {
		unsigned long id = ai->id, owner_id = ai->owner_id;
		char *owner = strdup(ai->owner);
		int g = instr__granularity(ai->in), r = instr__retention(ai->in);

		if (!owner)
			return fail_nomem(e);
		/* the watch may bring the record before the answer: it then
		 * finds this one as the fleet's */
		ai->fleet_id = id;
		ai->fleet_pending = true;
		pthread_mutex_unlock(&a->lock);
		rc = fleet__create(a->fleet, id, spec, owner, owner_id, g, r, why, sizeof(why));
		pthread_mutex_lock(&a->lock);
		free(owner);
		ai = agent__by_id(a, id);
		if (!ai)
			return fail(e, AGENT_ENOENT, "instrumentation %lu was deleted while it was being created",
				    id);
		ai->fleet_pending = false;
		if (rc != -EEXIST)
			break;
		/* taken by another aggregator: that id's record comes through
		 * the watch; this one moves on (not deleting the other's key) */
		ai->fleet_id = 0;
		destroy_locked(a, ai);
		rc = create_locked(a, who, spec, 0, NULL, 0, NULL, &ai, e);
		if (rc)
			return rc;
	}
	if (!rc) {
		fleet__attach(a->fleet, ai->fleet_id, ai->from);
		*aip = ai;
		return 0;
	}
	ai->fleet_id = 0;	/* never in the bucket */
	destroy_locked(a, ai);
	return fail(e, rc == -EAGAIN ? AGENT_EUNAVAIL : AGENT_EINTERNAL,
		    "cannot put the instrumentation in the fleet: %s", why[0] ? why : strerror(-rc));
}

/* *out: a new reference owned by the caller, ai as who sees it; *id the
 * host-wide id, *view_id the one who knows it by. */
static int created(const struct principal *who, struct agent_instr *ai, json_t **out,
		   unsigned long *id, unsigned long *view, struct agent_error *e)
{
	*out = present(who, ai);
	*id = ai->id;
	*view = view_id(who, ai);
	return *out ? 0 : fail_nomem(e);
}

/* A 201 only once state.json holds the new one: what cannot be saved is
 * undone (*out released) and the error is the caller's. Caller does not
 * hold a->lock. */
static int created_durably(struct agent *a, unsigned long id, json_t **out, struct agent_error *e)
{
	struct agent_instr *ai;
	int rc = state__commit(a, e);

	if (!rc)
		return 0;
	pthread_mutex_lock(&a->lock);
	ai = agent__by_id(a, id);
	if (ai)
		destroy_locked(a, ai);
	pthread_mutex_unlock(&a->lock);
	json_decref(*out);
	*out = NULL;
	return rc;
}

/* ---- requests ---- */

/* *out owned by the caller, as for every request below. */
int agent__create(struct agent *a, const struct principal *who, const char *peer_token,
		  const json_t *spec, json_t **out, unsigned long *id, struct agent_error *e)
{
	struct agent_instr *ai;
	unsigned long new_id = 0, view = 0;
	int rc;

	pthread_mutex_lock(&a->lock);
	rc = create_locked(a, who, spec, 0, NULL, 0, NULL, &ai, e);
	if (!rc)
		rc = forward_created(a, &ai, who, spec, e);
	if (!rc)
		rc = created(who, ai, out, &new_id, &view, e);
	pthread_mutex_unlock(&a->lock);
	if (!rc)
		rc = created_durably(a, new_id, out, e);
	if (!rc && id)
		*id = view;
	return rc;
}

/* Every second of the metric before it is final: a replay's recorded ones
 * are all (its drained_to is two past the last, replay.c), a live agent's as
 * of its last drain (0 before the first). */
static int64_t final_locked(const struct agent *a, enum metric_id m)
{
	if (a->replay)
		return a->drained_to - 1;
	return m < METRIC__COUNT ? a->final_until[m] : 0;
}

int agent__get(struct agent *a, const struct principal *who, const char *id, json_t **out,
	       struct agent_error *e)
{
	struct agent_instr *ai;
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	if (!ai) {
		rc = -ENOENT;
		goto out;
	}
	*out = present(who, ai);
	if (!*out) {
		rc = fail_nomem(e);
		goto out;
	}
	if (a->fleet && ai->fleet_id && fleet__aggregating(a->fleet)) {
		json_object_set_new(*out, "nsources", json_integer(fleet__nsources(a->fleet)));
		json_object_set_new(*out, "hosts", fleet__instr_status(a->fleet, ai->fleet_id));
	}
	/* after CA's own fields; GET only (not in POST/PUT answers) */
	if (json_object_set_new(*out, "final_until",
				json_integer(final_locked(a, instr__metric(ai->in)->id))))
		rc = fail_nomem(e);
out:
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int agent__list(struct agent *a, const struct principal *who, json_t **out,
		struct agent_error *e)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&a->lock);
	for (struct agent_instr *ai = a->instrs; arr && ai; ai = ai->next) {
		json_t *o;

		if (!visible(who, ai))
			continue;
		o = present(who, ai);
		if (o)
			json_object_set_new(o, "final_until",
					    json_integer(final_locked(a, instr__metric(ai->in)->id)));
		json_array_append_new(arr, o);
	}
	pthread_mutex_unlock(&a->lock);
	*out = arr;
	return arr ? 0 : fail_nomem(e);
}

const char *agent__state_dir(const struct agent *a)
{
	return a->cfg.state_dir;
}

size_t agent__count(struct agent *a)
{
	size_t n = 0;

	pthread_mutex_lock(&a->lock);
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		n++;
	pthread_mutex_unlock(&a->lock);
	return n;
}

int agent__destroy(struct agent *a, const struct principal *who, const char *id,
		   struct agent_error *e)
{
	struct agent_instr *ai;
	int rc = -ENOENT;

	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	if (ai) {
		log_info("api", "instrumentation %lu deleted on request", ai->id);
		destroy_locked(a, ai);
		rc = 0;
	}
	pthread_mutex_unlock(&a->lock);
	/* a 204 only once state.json no longer lists it */
	if (!rc && (rc = state__commit(a, e)))
		snprintf(e->msg, sizeof(e->msg), "instrumentation %s deleted, but the state cannot be saved: it comes back at a restart unless a later save succeeds",
			 id);
	return rc;
}

/* The properties that define the data; the others may change. */
static const char *const fixed_props[] = { "module", "stat", "predicate", "decomposition",
					   "granularity" };

/* Replaces ai by the same with changes (borrowed) applied, keeping its
 * data; *out the new one (in ai's place in the list, ai freed). An
 * aggregator puts the change in the fleet's bucket unless it came from
 * there (from_bucket). Caller holds a->lock. */
static int replace_locked(struct agent *a, struct agent_instr *ai, const json_t *changes,
			  bool from_bucket, struct agent_instr **out, struct agent_error *e)
{
	struct principal as_owner = { ROLE_OPERATOR, NULL, NULL, 0 };
	json_t *merged = NULL, *oldj = NULL, *newj = NULL, *data = NULL;
	unsigned long ai_fleet_id = ai->fleet_id;
	struct agent_instr *nai = NULL, **pp;
	int rc;

	oldj = instr__to_json(ai->in);
	merged = json_deep_copy(oldj);
	if (!merged || json_object_update(merged, (json_t *)changes)) {
		rc = fail_nomem(e);
		goto out;
	}
	/* as the owner: the spec already carries a tenant's scope */
	as_owner.owner = ai->owner;
	rc = create_locked(a, &as_owner, merged, ai->id, ai->owner, ai->owner_id, ai, &nai, e);
	if (rc)
		goto out;
	newj = instr__to_json(nai->in);
	for (size_t i = 0; i < sizeof(fixed_props) / sizeof(fixed_props[0]); i++)
		if (!json_equal(json_object_get(oldj, fixed_props[i]),
				json_object_get(newj, fixed_props[i]))) {
			rc = fail(e, AGENT_ECONFLICT,
				  "\"%s\" of an instrumentation cannot change (create a new one or clone it)",
				  fixed_props[i]);
			instr_free(a, nai);
			goto out;
		}
	data = instr__data_to_json(ai->in);
	if (data && instr__data_from_json(nai->in, data))
		log_warn("api", "instrumentation %lu: data not carried over the change", ai->id);
	nai->from = ai->from;
	nai->last_read = agent__now();
	/* nai takes ai's place in the list */
	for (pp = &a->instrs; *pp != ai; pp = &(*pp)->next)
		;
	nai->next = ai->next;
	*pp = nai;
	instr_free(a, ai);
	a->dirty = true;
	nai->fleet_id = ai_fleet_id;
	if (nai->fleet_id && fleet__aggregating(a->fleet) && !from_bucket &&
	    fleet__change(a->fleet, nai->fleet_id, changes, instr__retention(nai->in)))
		log_warn("api", "instrumentation %lu: change not put in the fleet's bucket",
			 nai->id);
	*out = nai;
out:
	json_decref(merged);
	json_decref(oldj);
	json_decref(newj);
	json_decref(data);
	return rc;
}

int agent__replace(struct agent *a, const struct principal *who, const char *id,
		   const json_t *changes, json_t **out, struct agent_error *e)
{
	struct agent_instr *ai, *nai;
	int rc;

	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	rc = ai ? replace_locked(a, ai, changes, false, &nai, e) : -ENOENT;
	if (!rc) {
		*out = present(who, nai);
		if (!*out)
			rc = fail_nomem(e);
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int agent__clone(struct agent *a, const struct principal *who, const char *peer_token,
		 const char *id, const json_t *changes, json_t **out, unsigned long *new_id,
		 struct agent_error *e)
{
	struct agent_instr *ai, *nai;
	json_t *spec = NULL, *fwd = NULL;
	unsigned long cloned = 0, view = 0;
	int rc;

	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	if (!ai) {
		rc = -ENOENT;
		goto out;
	}
	spec = instr__to_json(ai->in);
	/* the fleet gets the clone of the spec it holds, not of this agent's scoping */
	fwd = a->fleet && ai->fleet_id ? fleet__spec(a->fleet, ai->fleet_id) : NULL;
	if (!spec || json_object_update(spec, (json_t *)changes) ||
	    (fwd && json_object_update(fwd, (json_t *)changes))) {
		rc = fail_nomem(e);
		goto out;
	}
	rc = create_locked(a, who, spec, 0, NULL, 0, NULL, &nai, e);
	if (!rc)
		rc = forward_created(a, &nai, who, fwd ? fwd : spec, e);
	if (!rc)
		rc = created(who, nai, out, &cloned, &view, e);
out:
	pthread_mutex_unlock(&a->lock);
	if (!rc)
		rc = created_durably(a, cloned, out, e);
	if (!rc && new_id)
		*new_id = view;
	json_decref(spec);
	json_decref(fwd);
	return rc;
}

/* Are ai's values merged with the fleet's hosts' here (an aggregator's
 * fleet instrumentation)? */
static bool merged_here(const struct agent *a, const struct agent_instr *ai)
{
	return a->fleet && ai->fleet_id && fleet__aggregating(a->fleet);
}

/* A read of ai: idle-max counts from it, on every aggregator. */
static void note_read(struct agent *a, struct agent_instr *ai)
{
	ai->last_read = agent__now();
	if (merged_here(a, ai))
		fleet__touch(a->fleet, ai->fleet_id, ai->last_read);
}

static int64_t newest_locked(const struct agent *a)
{
	return a->drained_to ? a->drained_to : agent__now();
}


int agent__find(struct agent *a, const struct principal *who, const char *id,
		struct agent_instr_info *info, struct agent_error *e)
{
	const struct field_desc *nf;
	struct agent_instr *ai;
	int rc = -ENOENT;

	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	if (ai) {
		nf = instr__numeric_field(ai->in);
		info->id = view_id(who, ai);
		info->granularity = instr__granularity(ai->in);
		info->retention = instr__retention(ai->in);
		snprintf(info->numeric_field, sizeof(info->numeric_field), "%s", nf ? nf->name : "");
		info->now = newest_locked(a);
		info->drained_to = a->drained_to;
		info->final_until = final_locked(a, instr__metric(ai->in)->id);
		info->created = instr__crtime_ms(ai->in) / 1000;
		info->nsources = merged_here(a, ai) ? fleet__nsources(a->fleet) : 1;
		rc = 0;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int agent__value_raw(struct agent *a, const struct principal *who, const char *id,
		     long long start, long long duration, int ndatapoints, json_t **out,
		     struct agent_error *e)
{
	struct agent_instr *ai;
	int rc = -ENOENT;

	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	if (!ai)
		goto out;
	note_read(a, ai);
	rc = 0;
	*out = instr__value_raw(ai->in, start, duration, ndatapoints, newest_locked(a));
	if (!*out)
		rc = fail_nomem(e);
	else if (merged_here(a, ai) && fleet__annotate_raw(a->fleet, ai->fleet_id, ai->from, *out) == -ENOMEM) {
		json_decref(*out);
		*out = NULL;
		rc = fail_nomem(e);
	}
out:
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* An aggregator's window is made of the values merged with the fleet's hosts'
 * (raw values as instr__value gives them, decoded from the wire). Caller
 * holds a->lock. 0 or -errno. */
static int merged_window(const struct agent *a, struct agent_instr *ai, int64_t start,
			 size_t nslots, struct dist_window *w)
{
	int64_t g = instr__granularity(ai->in);
	char err[256];
	json_t *v;
	int rc = 0;

	for (size_t i = 0; !rc && i < nslots; i++) {
		int64_t t = start + (int64_t)i * g;

		v = instr__value(ai->in, t);
		if (!v)
			return -ENOMEM;
		fleet__merge_slot(a->fleet, ai->fleet_id, t, ai->from, v);
		rc = dist_window__add_json(w, v, err, sizeof(err));
		if (rc == -EINVAL)
			log_warn("api", "instrumentation %lu: merged slot left out: %s", ai->id, err);
		if (rc == -EINVAL)
			rc = 0;
		json_decref(v);
	}
	return rc;
}

int agent__read_instr(struct agent *a, const struct principal *who, const char *id,
		      long (*fn)(const struct instr *in, void *arg), void *arg, long *result,
		      struct agent_error *e)
{
	struct agent_instr *ai;
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	if (!ai)
		rc = -ENOENT;
	else if (merged_here(a, ai))
		rc = -EXDEV;
	if (!rc) {
		ai->last_read = newest_locked(a);
		*result = fn(ai->in, arg);
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int agent__window(struct agent *a, const struct principal *who, const char *id, int64_t start,
		  size_t nslots, struct dist_window *w, struct agent_error *e)
{
	struct agent_instr *ai;
	size_t copied = 0;
	int rc = 0;
	long got;

	dist_window__init(w, start, 1);
	pthread_mutex_lock(&a->lock);
	ai = find_locked(a, who, id, e);
	if (!ai) {
		rc = -ENOENT;
		goto out;
	}
	dist_window__init(w, start, instr__granularity(ai->in));
	note_read(a, ai);
	if (merged_here(a, ai)) {
		if (merged_window(a, ai, start, nslots, w))
			rc = fail_nomem(e);
		goto out;
	}
	while (copied < nslots) {
		if (copied) {
			pthread_mutex_unlock(&a->lock);
			pthread_mutex_lock(&a->lock);
			/* deleted meanwhile: as if it had gone before */
			ai = find_locked(a, who, id, e);
			if (!ai) {
				rc = -ENOENT;
				goto out;
			}
		}
		got = instr__window_append(ai->in, start + (int64_t)copied * w->granularity,
					   nslots - copied, AGENT_WINDOW_COPY_CELLS, w);
		if (got <= 0) {
			rc = fail_nomem(e);
			goto out;
		}
		copied += (size_t)got;
	}
out:
	pthread_mutex_unlock(&a->lock);
	/* the sorting part of the copy: outside the lock */
	if (!rc && dist_window__finish(w))
		rc = fail_nomem(e);
	return rc;
}

int agent__catalogue(struct agent *a, const struct principal *who, json_t **out,
		     struct agent_error *e)
{
	(void)a;
	*out = metric__catalogue_json(who->role == ROLE_TENANT);
	return *out ? 0 : fail_nomem(e);
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

int agent__vms(struct agent *a, const struct principal *who, json_t **out, struct agent_error *e)
{
	json_t *all, *vm;
	struct vmcache *vc;
	size_t i;

	*out = json_array();
	pthread_mutex_lock(&a->lock);
	vc = a->hub ? hub__vms(a->hub) : NULL;
	if (vc)
		vmcache__refresh(vc);
	all = a->replay ? replay__vms(a) : vc ? discovery__to_json(vmcache__list(vc)) : json_array();
	pthread_mutex_unlock(&a->lock);
	if (!all || !*out) {
		json_decref(all);
		json_decref(*out);
		*out = NULL;
		return fail_nomem(e);
	}
	json_array_foreach(all, i, vm)
		if (tenant_sees_vm(who, json_string_value(json_object_get(vm, "name"))))
			json_array_append(*out, vm);
	json_decref(all);
	return 0;
}

/* The bus and the fleet's hosts are the operator's business, not a tenant's. */
int agent__peers(struct agent *a, const struct principal *who, json_t **out,
		 struct agent_error *e)
{
	if (who->role != ROLE_OPERATOR)
		return fail(e, AGENT_EPERM, "the fleet's status is for operators");
	/* the fleet has its own lock */
	*out = a->fleet ? fleet__status_json(a->fleet) :
	       json_pack("{s:n, s:[]}", "bus", "hosts");
	return *out ? 0 : fail_nomem(e);
}

int agent__metrics(struct agent *a, const struct principal *who, enum om_format fmt,
		   double started, char **out, size_t *len, struct agent_error *e)
{
	int rc;

	if (who->role != ROLE_OPERATOR)
		return fail(e, AGENT_EPERM, "/metrics shows every VM on this host: it needs an operator token");
	pthread_mutex_lock(&a->lock);
	if (!a->metrics) {
		pthread_mutex_unlock(&a->lock);
		return fail(e, AGENT_ENOENT, "the Prometheus exporter is off: start the agent with --metrics");
	}
	rc = metrics_export__render(a->metrics, fmt, started, out, len);
	pthread_mutex_unlock(&a->lock);
	return rc ? fail_nomem(e) : 0;
}

/* ---- scope ---- */

static void free_scope(struct agent *a)
{
	for (size_t i = 0; i < a->scope.nvms; i++)
		free(a->scope.vms[i]);
	free(a->scope.vms);
	a->scope.vms = NULL;
	a->scope.nvms = 0;
}


/* The scope's strings are owned by a (agent__free_scope). */
static int set_scope(struct agent *a, const char *list, char *err, size_t errlen)
{
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ",");
		char **nv;

		if (len == 0 || len > 255) {
			snprintf(err, errlen, "--scope-vms: empty or overlong VM name in '%s'", list);
			goto err_free;
		}
		nv = realloc(a->scope.vms, (a->scope.nvms + 1) * sizeof(*nv));
		if (!nv)
			goto err_nomem;
		a->scope.vms = nv;
		if (!(nv[a->scope.nvms] = strndup(p, len)))
			goto err_nomem;
		a->scope.nvms++;
		p += len;
		if (*p == ',' && !*++p) {
			snprintf(err, errlen, "--scope-vms: trailing ',' in '%s'", list);
			goto err_free;
		}
	}
	if (!a->scope.nvms) {
		snprintf(err, errlen, "--scope-vms: no VM named (want VM1,VM2)");
		goto err_free;
	}
	a->scope.role = ROLE_TENANT;
	return 0;
err_nomem:
	snprintf(err, errlen, "out of memory");
err_free:
	free_scope(a);
	return -EINVAL;
}


/* ---- lifecycle ---- */

/* --nats and its options into a->fleet (owned by a). */
static int fleet_setup(struct agent *a, char *err, size_t errlen)
{
	struct fleet_config fc = {
		a->cfg.nats, a->cfg.fleet, NULL, a->cfg.nats_auth_file, a->cfg.nats_tls_ca,
		a->cfg.nats_tls_cert, a->cfg.nats_tls_key, a->cfg.aggregate, a->cfg.nats_replicas,
	};
	char host[256];

	if (a->cfg.hostname) {
		fc.host = a->cfg.hostname;
	} else {
		if (gethostname(host, sizeof(host) - 1))
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		fc.host = host;
	}
	return fleet__new(&fc, &a->fleet, err, errlen);
}

/* On success the caller owns *out (agent__free). */
int agent__new(const struct agent_config *cfg, struct agent **out, char *err, size_t errlen)
{
	struct agent *a = calloc(1, sizeof(*a));
	int rc;

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->cfg = *cfg;
	if (!a->cfg.proc_root)
		a->cfg.proc_root = "/proc";
	if (!a->cfg.max_per_owner)
		a->cfg.max_per_owner = AGENT_PER_OWNER_DEFAULT;
	if (!a->cfg.max_cells)
		a->cfg.max_cells = AGENT_CELLS_MAX_DEFAULT;
	a->next_id = 1;
	a->owner_next = json_object();
	if (!a->owner_next) {
		free(a);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&a->lock, NULL);
	state__init(a);
	/* bad options first: -EINVAL, whatever the reason */
	if (a->cfg.scope_vms && set_scope(a, a->cfg.scope_vms, err, errlen)) {
		rc = -EINVAL;
		goto err_free;
	}
	if (a->cfg.nats && fleet_setup(a, err, errlen)) {
		rc = -EINVAL;
		goto err_free;
	}
	if (a->cfg.replay && (a->cfg.state_dir || a->cfg.metrics || a->cfg.nats || a->cfg.hostname)) {
		snprintf(err, errlen, "--replay reads a recording only: no --state-dir, --metrics, --nats or --hostname with it");
		rc = -EINVAL;
		goto err_free;
	}
	if ((rc = state__open(a, err, errlen)))
		goto err_host;
	if (a->cfg.replay) {
		rc = replay__open(a, a->cfg.replay, err, errlen);
		if (rc)
			goto err_host;
		goto restored;	/* nothing to collect, nothing saved */
	}
	rc = hub__new(&a->hub, a->cfg.proc_root);
	if (rc) {
		snprintf(err, errlen, "cannot set up the collection hub");
		goto err_host;
	}
	if (a->cfg.hostname)
		hub__set_hostname(a->hub, a->cfg.hostname);
	pthread_mutex_lock(&a->lock);
	state__load(a);
	pthread_mutex_unlock(&a->lock);
	/* parsing a large state file leaves freed heap behind: hand it back */
	malloc_trim(0);
restored:
	if (a->cfg.metrics) {
		struct om_config oc = { a->cfg.metrics_max_series, a->cfg.metrics_keep_s };
		char why[256];

		rc = metrics_export__start(&a->metrics, a->hub, &oc, why, sizeof(why));
		if (rc) {
			snprintf(err, errlen, "--metrics: %s", why);
			goto err_host;
		}
	}
	*out = a;
	return 0;
err_host:
	/* the host refused: not the options' fault */
	if (rc == -EINVAL || rc >= 0)
		rc = -EIO;
err_free:
	agent__free(a);
	return rc;
}

/* Restored fleet instrumentations publish again from where their data
 * goes on; then the bus. */
static int fleet_start(struct agent *a, char *err, size_t errlen)
{
	pthread_mutex_lock(&a->lock);
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		if (ai->fleet_id)
			fleet__attach(a->fleet, ai->fleet_id, ai->from);
	pthread_mutex_unlock(&a->lock);
	return fleet__start(a->fleet, err, errlen);
}

int agent__start(struct agent *a, char *err, size_t errlen)
{
	int rc;

	if (a->fleet && (rc = fleet_start(a, err, errlen)))
		return rc;
	rc = state__start(a);
	if (rc) {
		snprintf(err, errlen, "cannot start the state persister thread");
		return rc;
	}
	a->started = true;
	return 0;
}

/* ---- the fleet (agent__tick) ---- */

static struct agent_instr *by_fleet_id(struct agent *a, unsigned long fid)
{
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		if (ai->fleet_id == fid)
			return ai;
	return NULL;
}

/* The principal a bucket record's owner stands for: "operator", or
 * "tenant:VM1,VM2", whose VMs then scope it on this host as they would a
 * tenant's request here. p->vms is owned by the caller (free; its strings
 * point into *copy, also the caller's). 0, -EINVAL or -ENOMEM. */
static int owner_principal(const char *owner, struct principal *p, char **copy)
{
	char *save = NULL, *vm;
	size_t n = 0;

	*p = (struct principal){ ROLE_OPERATOR, (char *)owner, NULL, 0 };
	*copy = NULL;
	if (!strcmp(owner, "operator"))
		return 0;
	if (!owner_is_tenant(owner) || !owner[strlen("tenant:")])
		return -EINVAL;
	*copy = strdup(owner + strlen("tenant:"));
	p->vms = calloc(strlen(owner), sizeof(*p->vms));
	if (!*copy || !p->vms) {
		free(*copy);
		free(p->vms);
		p->vms = NULL;
		*copy = NULL;
		return -ENOMEM;
	}
	for (vm = strtok_r(*copy, ",", &save); vm; vm = strtok_r(NULL, ",", &save))
		p->vms[n++] = vm;
	p->nvms = n;
	p->role = ROLE_TENANT;
	return 0;
}

static const char *const fleet_changeable[] = { "retention-time", "idle-max", "persist-data" };

/* The bucket holds rec (borrowed) for fid: this host instruments it, or
 * changes its copy. Caller holds a->lock. */
static void fleet_put_locked(struct agent *a, unsigned long fid, const json_t *rec)
{
	const json_t *spec = json_object_get(rec, "spec");
	const char *owner = json_string_value(json_object_get(rec, "owner"));
	json_int_t owner_id = json_integer_value(json_object_get(rec, "owner_id"));
	struct agent_instr *ai = by_fleet_id(a, fid), *nai;
	bool aggregating = fleet__aggregating(a->fleet);
	struct agent_error e = { 0 };
	struct principal who;
	json_t *cur, *changes;
	char *copy = NULL;

	if (ai) {
		/* what may change: the rest is fixed by the id */
		cur = instr__to_json(ai->in);
		changes = json_object();
		for (size_t i = 0; cur && changes && i < sizeof(fleet_changeable) / sizeof(fleet_changeable[0]); i++) {
			json_t *want = json_object_get(spec, fleet_changeable[i]);

			if (want && !json_equal(want, json_object_get(cur, fleet_changeable[i])))
				json_object_set(changes, fleet_changeable[i], want);
		}
		if (json_object_size(changes) && replace_locked(a, ai, changes, true, &nai, &e))
			log_warn("fleet", "instrumentation %lu (fleet %lu): change refused: %s", ai->id,
				 fid, e.msg);
		json_decref(cur);
		json_decref(changes);
		return;
	}
	if (aggregating && agent__by_id(a, fid)) {
		log_error("fleet", "fleet instrumentation %lu: this aggregator holds a local one with that id: not served here",
			  fid);
		return;
	}
	if (!owner || owner_principal(owner, &who, &copy)) {
		log_warn("fleet", "fleet instrumentation %lu: owner '%s' unusable: not instrumented here",
			 fid, owner ? owner : "");
		return;
	}
	if (create_locked(a, &who, spec, aggregating ? fid : 0, owner,
			  aggregating && owner_id > 0 ? (unsigned long)owner_id : 0, NULL, &ai, &e)) {
		log_warn("fleet", "fleet instrumentation %lu not instrumented on this host: %s", fid,
			 e.msg);
	} else {
		ai->fleet_id = fid;
		fleet__attach(a->fleet, fid, ai->from);
		log_info("fleet", "fleet instrumentation %lu instrumented here as %lu", fid, ai->id);
	}
	free(who.vms);
	free(copy);
}

/* The bucket's changes, the requests for older slots, the new slots and the
 * heartbeat. Caller holds a->lock. */
/* The end of what ai holds as final at this tick: every slot before it
 * is complete here. Caller holds a->lock. */
static int64_t final_edge_locked(const struct agent *a, const struct agent_instr *ai, int64_t now)
{
	int64_t fin = final_locked(a, instr__metric(ai->in)->id);

	return fin < now ? fin : now;
}

static void fleet_tick_locked(struct agent *a, int64_t now)
{
	struct fleet_request rq;
	struct fleet_event ev;
	struct agent_instr *ai, *next;
	size_t n = 0;

	while (!fleet__next_event(a->fleet, &ev)) {
		switch (ev.kind) {
		case FLEET_EV_PUT:
			fleet_put_locked(a, ev.id, ev.record);
			break;
		case FLEET_EV_DEL:
			if ((ai = by_fleet_id(a, ev.id))) {
				log_info("fleet", "fleet instrumentation %lu deleted (here %lu)", ev.id, ai->id);
				destroy_fleet_locked(a, ai, true);
			}
			break;
		case FLEET_EV_SYNCED:
			for (ai = a->instrs; ai; ai = next) {
				next = ai->next;
				/* one being created is not in the bucket yet */
				if (ai->fleet_id && !ai->fleet_pending &&
				    !fleet__known(a->fleet, ai->fleet_id)) {
					log_info("fleet", "fleet instrumentation %lu is no longer in the bucket: deleted here (%lu)",
						 ai->fleet_id, ai->id);
					destroy_fleet_locked(a, ai, true);
				}
			}
			break;
		}
		json_decref(ev.record);
	}
	/* only final slots leave this host: an exit booked late into its
	 * start second would change a slot the aggregators already merged */
	while (!fleet__next_request(a->fleet, &rq))
		if ((ai = by_fleet_id(a, rq.id)))
			fleet__answer(a->fleet, &rq, ai->in, ai->from, final_edge_locked(a, ai, now));
	for (ai = a->instrs; ai; ai = ai->next)
		if (ai->fleet_id) {
			fleet__publish(a->fleet, ai->fleet_id, ai->in, ai->from,
				       final_edge_locked(a, ai, now));
			n++;
		}
	fleet__heartbeat(a->fleet, now, n);
}

/* Deletes instrumentations unread for longer than their idle-max. Caller
 * holds a->lock. */
static void expire_idle(struct agent *a, int64_t now)
{
	struct agent_instr *ai = a->instrs, *next;

	for (; ai; ai = next) {
		int idle = instr__idle_max(ai->in);
		int64_t last = ai->last_read;

		next = ai->next;
		/* a member's copy lives as long as the bucket holds it: the
		 * aggregators read it, and they expire it for the fleet */
		if (ai->fleet_id && !fleet__aggregating(a->fleet))
			continue;
		if (ai->fleet_id && fleet__last_read(a->fleet, ai->fleet_id) > last)
			last = fleet__last_read(a->fleet, ai->fleet_id);
		if (idle > 0 && now - last > idle) {
			log_info("api", "instrumentation %lu deleted: unread for %lld s (idle-max %d)",
				 ai->id, (long long)(now - last), idle);
			destroy_locked(a, ai);
		}
	}
}

void agent__tick(struct agent *a, int64_t now)
{
	int d;

	if (a->replay)
		return;	/* the recording's seconds were all fed at creation */
	pthread_mutex_lock(&a->lock);
	d = hub__drain(a->hub, now);
	if (d < 0)
		log_warn("agent", "drain failed: %s", strerror(-d));
	a->drained_to = now;
	for (int m = 0; m < METRIC__COUNT; m++)
		a->final_until[m] = hub__final_until(a->hub, (enum metric_id)m);
	if (a->fleet)
		fleet_tick_locked(a, now);
	expire_idle(a, now);
	if (a->metrics)
		metrics_export__tick(a->metrics, a->hub, now);
	/* the persister thread writes; the drain goes on meanwhile */
	if (a->dirty || (now - a->last_persist >= AGENT_PERSIST_INTERVAL && a->instrs))
		state__request(a);
	pthread_mutex_unlock(&a->lock);
}

void agent__free(struct agent *a)
{
	if (!a)
		return;
	state__stop(a);
	if (a->started)
		state__save(a);
	/* the fleet goes first: nothing may be published past here */
	fleet__free(a->fleet);
	a->fleet = NULL;
	while (a->instrs) {
		struct agent_instr *ai = a->instrs;

		a->instrs = ai->next;
		instr_free(a, ai);
	}
	metrics_export__stop(a->metrics, a->hub);
	hub__free(a->hub);
	replay__close(a);
	free_scope(a);
	state__close(a);
	json_decref(a->owner_next);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
