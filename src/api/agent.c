/* The agent's instrumentations: creation on behalf of a principal (forced
 * tenant scope, per-owner and size limits), lookup with visibility rules,
 * idle-max expiry. The caller holds a->lock for everything here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "collectors/hub.h"
#include "common/log.h"
#include "engine/instr.h"
#include "engine/metric.h"
#include "fleet/fleet.h"

int64_t agent__now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

bool agent__visible(const struct principal *who, const struct agent_instr *ai)
{
	return who->role == ROLE_OPERATOR || !strcmp(who->owner, ai->owner);
}

struct agent_instr *agent__find(struct agent *a, const struct principal *who, const char *id)
{
	struct agent_instr *ai;
	char *end;
	unsigned long n;

	if (!id || !*id || *id < '0' || *id > '9')
		return NULL;
	errno = 0;
	n = strtoul(id, &end, 10);
	if (*end || errno)
		return NULL;
	ai = agent__by_id(a, n);
	return ai && agent__visible(who, ai) ? ai : NULL;
}

struct agent_instr *agent__by_id(struct agent *a, unsigned long id)
{
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		if (ai->id == id)
			return ai;
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

/* Cells an instrumentation may hold at most (see API_CELLS_MAX_DEFAULT). */
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
			keys *= API_KEYS_ESTIMATE;
		}
	}
	json_decref(j);
	snprintf(what, whatlen, "%llu slots (retention-time %d s / granularity %d s) x %llu %s buckets x %llu keys (%d per discrete field, %zu decomposed)",
		 (unsigned long long)slots, instr__retention(in), instr__granularity(in),
		 (unsigned long long)nb, nf ? nf->name : "(no numeric field)",
		 (unsigned long long)keys, API_KEYS_ESTIMATE, ndisc);
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

/* On success the new agent_instr is owned by a (agent__destroy frees it).
 * id == 0 picks the next free id; owner NULL means who->owner. */
int agent__create(struct agent *a, const struct principal *who, const json_t *spec,
		  unsigned long id, const char *owner, struct agent_instr **out,
		  const char **code, char *err, size_t errlen)
{
	struct agent_instr *ai = NULL;
	json_t *s = NULL;
	char idbuf[32], uri[64], what[256];
	struct hub_consumer c;
	uint64_t cells;
	int rc, status;

	if (!owner)
		owner = who->owner;
	*code = "InvalidArgument";
	if (!json_is_object(spec)) {
		snprintf(err, errlen, "the instrumentation must be a JSON object");
		return 400;
	}
	if (a->cfg.max_per_owner > 0 && owner_count(a, owner) >= (size_t)a->cfg.max_per_owner) {
		*code = "TooManyInstrumentations";
		snprintf(err, errlen, "owner '%s' already has %d instrumentations (the limit, --max-instrumentations)",
			 who->role == ROLE_TENANT ? "tenant" : "operator", a->cfg.max_per_owner);
		return 429;
	}
	s = json_deep_copy(spec);
	if (!s)
		goto err_nomem;
	if (who->role == ROLE_TENANT) {
		json_t *p;

		p = scoped_predicate(who, json_object_get(s, "predicate"), err, errlen);
		if (!p) {
			status = 400;
			goto err_free;
		}
		json_object_set_new(s, "predicate", p);
	}
	if (a->scope.nvms) {
		/* the agent's own scope (--scope-vms), on top of a tenant's */
		json_t *p = scoped_predicate(&a->scope, json_object_get(s, "predicate"), err, errlen);

		if (!p) {
			status = 400;
			goto err_free;
		}
		json_object_set_new(s, "predicate", p);
	}
	ai = calloc(1, sizeof(*ai));
	if (!ai)
		goto err_nomem;
	ai->consumer = -1;
	rc = instr__new(s, &ai->in, err, errlen);
	if (rc == -ENOMEM)
		goto err_nomem;
	if (rc) {
		/* syntax (wrong types) is 400; well-formed but meaningless is 422 */
		status = (strstr(err, "unknown metric") || strstr(err, "unknown field") ||
			  strstr(err, "is discrete") || strstr(err, "numeric field") ||
			  strstr(err, "disagrees")) ? 422 : 400;
		goto err_free;
	}
	if (who->role == ROLE_TENANT &&
	    (instr__fields_needed(ai->in) & FIELD_BIT(F_HOSTNAME))) {
		snprintf(err, errlen, "field 'hostname' is not available");
		status = 422;
		goto err_free;
	}
	cells = cells_bound(ai->in, what, sizeof(what));
	if (cells > a->cfg.max_cells) {
		*code = "InvalidArgument";
		snprintf(err, errlen, "instrumentation too large: %s = %llu cells > %llu (lower retention-time or the decomposition)",
			 what, (unsigned long long)cells, (unsigned long long)a->cfg.max_cells);
		status = 422;
		goto err_free;
	}
	ai->id = id ? id : a->next_id;
	if (ai->id >= a->next_id)
		a->next_id = ai->id + 1;
	ai->owner = strdup(owner);
	if (!ai->owner)
		goto err_nomem;
	snprintf(idbuf, sizeof(idbuf), "%lu", ai->id);
	snprintf(uri, sizeof(uri), "/ca/instrumentations/%lu", ai->id);
	if (instr__set_id(ai->in, idbuf, uri))
		goto err_nomem;
	ai->from = agent__now() + 1;
	ai->last_read = agent__now();
	c = (struct hub_consumer){ instr__metric(ai->in)->id, instr__fields_needed(ai->in), sink, ai };
	rc = hub__add(a->hub, &c, err, errlen);
	if (rc < 0) {
		*code = "InternalError";
		status = 503;
		goto err_free;
	}
	ai->consumer = rc;
	link_sorted(a, ai);
	a->dirty = true;
	json_decref(s);
	*out = ai;
	log_info("api", "instrumentation %lu created: %s owner=%s", ai->id,
		 instr__metric(ai->in)->name, ai->owner);
	return 0;
err_nomem:
	*code = "InternalError";
	snprintf(err, errlen, "out of memory");
	status = 500;
err_free:
	if (ai) {
		instr__free(ai->in);
		free(ai->owner);
		free(ai);
	}
	json_decref(s);
	return status;
}

void agent__destroy(struct agent *a, struct agent_instr *ai)
{
	struct agent_instr **pp = &a->instrs;

	while (*pp && *pp != ai)
		pp = &(*pp)->next;
	if (*pp)
		*pp = ai->next;
	if (ai->consumer >= 0)
		hub__remove(a->hub, ai->consumer);
	instr__free(ai->in);
	json_decref(ai->restored_links);
	free(ai->owner);
	free(ai);
	a->dirty = true;
}

/* The scope's strings are owned by a (agent__free_scope). */
int agent__set_scope(struct agent *a, const char *list, char *err, size_t errlen)
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
	agent__free_scope(a);
	return -EINVAL;
}

void agent__free_scope(struct agent *a)
{
	for (size_t i = 0; i < a->scope.nvms; i++)
		free(a->scope.vms[i]);
	free(a->scope.vms);
	a->scope.vms = NULL;
	a->scope.nvms = 0;
}

void agent__expire_idle(struct agent *a, int64_t now)
{
	struct agent_instr *ai = a->instrs, *next;

	for (; ai; ai = next) {
		int idle = instr__idle_max(ai->in);

		next = ai->next;
		if (idle > 0 && now - ai->last_read > idle) {
			log_info("api", "instrumentation %lu deleted: unread for %lld s (idle-max %d)",
				 ai->id, (long long)(now - ai->last_read), idle);
			if (a->fleet)
				fleet__forget(a->fleet, ai->id);
			agent__destroy(a, ai);
		}
	}
}
