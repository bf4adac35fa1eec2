/* CA predicates: parse once into a small tree, evaluate per record. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "engine/predicate.h"

enum pred_op { P_TRUE, P_EQ, P_NE, P_LT, P_LE, P_GT, P_GE, P_AND, P_OR };

static const char *const op_names[] = {
	[P_TRUE] = "", [P_EQ] = "eq", [P_NE] = "ne", [P_LT] = "lt", [P_LE] = "le",
	[P_GT] = "gt", [P_GE] = "ge", [P_AND] = "and", [P_OR] = "or",
};

enum val_kind { V_STR, V_UINT, V_NEG, V_REAL };

struct predicate {
	enum pred_op op;
	/* leaves */
	int field;
	bool numeric;
	enum val_kind vk;
	char *s;
	uint64_t u;
	double d;
	/* and / or */
	size_t nkids;
	struct predicate **kids;
	/* root only: the normalized JSON form */
	json_t *json;
};

struct parse_ctx {
	const struct metric_desc *m;
	char *err;
	size_t errlen;
	unsigned int nodes;
};

static int fail(struct parse_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail(struct parse_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err && c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* A predicate of the right shape that asks a field for what it does not
 * have: -EDOM, so that callers can tell it from a malformed one. */
static int fail_meaning(struct parse_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail_meaning(struct parse_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err && c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return -EDOM;
}

static void node_free(struct predicate *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->nkids; i++)
		node_free(p->kids[i]);
	free(p->kids);
	free(p->s);
	free(p);
}

void predicate__free(struct predicate *p)
{
	if (!p)
		return;
	json_decref(p->json);
	node_free(p);
}

static int parse_node(struct parse_ctx *c, const json_t *j, unsigned int depth,
		      struct predicate **out);

static int parse_leaf(struct parse_ctx *c, enum pred_op op, const json_t *args,
		      struct predicate *p)
{
	const char *opn = op_names[op], *fname;
	const struct field_desc *f;
	const json_t *v;
	char buf[32];
	int idx;

	if (!json_is_array(args))
		return fail(c, "\"%s\" needs an array of [field, value], got %s", opn,
			    json__type_name(args));
	if (json_array_size(args) != 2)
		return fail(c, "\"%s\" needs an array of [field, value], got %zu elements",
			    opn, json_array_size(args));
	if (!json_is_string(json_array_get(args, 0)))
		return fail(c, "\"%s\": the field name must be a string, got %s", opn,
			    json__type_name(json_array_get(args, 0)));
	fname = json_string_value(json_array_get(args, 0));
	idx = metric__field_index(c->m, fname);
	if (idx < 0)
		return fail_meaning(c, "unknown field \"%s\" for metric %s", fname, c->m->name);
	f = c->m->fields[idx];
	p->field = idx;
	p->numeric = f->type == FIELD_NUMERIC;
	if (op >= P_LT && op <= P_GE && !p->numeric)
		return fail_meaning(c, "\"%s\" needs a numeric field, \"%s\" is discrete", opn, fname);
	v = json_array_get(args, 1);
	if (p->numeric) {
		if (json_is_integer(v)) {
			json_int_t i = json_integer_value(v);

			p->vk = i < 0 ? V_NEG : V_UINT;
			p->u = i < 0 ? 0 : (uint64_t)i;
		} else if (json_is_real(v)) {
			p->vk = V_REAL;
			p->d = json_real_value(v);
		} else {
			return fail_meaning(c, "\"%s\": value for numeric field \"%s\" must be a number, got %s",
				    opn, fname, json__type_name(v));
		}
		return 0;
	}
	p->vk = V_STR;
	if (json_is_string(v)) {
		p->s = strdup(json_string_value(v));
	} else if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		p->s = strdup(buf);
	} else {
		return fail(c, "\"%s\": value for discrete field \"%s\" must be a string or an integer, got %s",
			    opn, fname, json__type_name(v));
	}
	return p->s ? 0 : -ENOMEM;
}

static int parse_bool(struct parse_ctx *c, enum pred_op op, const json_t *args,
		      unsigned int depth, struct predicate *p)
{
	size_t i, n;
	int err;

	if (!json_is_array(args) || json_array_size(args) == 0)
		return fail(c, "\"%s\" needs a non-empty array of predicates, got %s",
			    op_names[op], json_is_array(args) ? "an empty array" :
			    json__type_name(args));
	n = json_array_size(args);
	p->kids = calloc(n, sizeof(*p->kids));
	if (!p->kids)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		err = parse_node(c, json_array_get(args, i), depth + 1, &p->kids[i]);
		if (err)
			return err;	/* the caller frees p and the kids parsed so far */
		p->nkids++;
	}
	return 0;
}

/* On success *out is a new node owned by the caller. */
static int parse_node(struct parse_ctx *c, const json_t *j, unsigned int depth,
		      struct predicate **out)
{
	struct predicate *p;
	const char *key = "";
	json_t *args = NULL;
	enum pred_op op;
	int err;

	if (depth > PREDICATE_MAX_DEPTH)
		return fail(c, "predicate nested deeper than %d levels", PREDICATE_MAX_DEPTH);
	if (++c->nodes > PREDICATE_MAX_NODES)
		return fail(c, "predicate has more than %d terms", PREDICATE_MAX_NODES);
	if (!json_is_object(j))
		return fail(c, "a predicate must be a JSON object, got %s", json__type_name(j));
	if (json_object_size(j) > 1)
		return fail(c, "a predicate object must have exactly one operator, got %zu keys",
			    json_object_size(j));
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->field = -1;
	if (json_object_size(j) == 0) {
		p->op = P_TRUE;
		goto out;
	}
	json_object_foreach((json_t *)j, key, args)
		break;
	for (op = P_EQ; op <= P_OR; op++)
		if (!strcmp(key, op_names[op]))
			break;
	if (op > P_OR) {
		err = fail(c, "unknown predicate operator \"%s\" (expected eq, ne, lt, le, gt, ge, and, or)",
			   key);
		goto err_free;
	}
	p->op = op;
	err = op == P_AND || op == P_OR ? parse_bool(c, op, args, depth, p) :
					  parse_leaf(c, op, args, p);
	if (err)
		goto err_free;
out:
	*out = p;
	return 0;
err_free:
	node_free(p);
	return err;
}

/* On success *out is owned by the caller; j is only borrowed. */
int predicate__parse(const json_t *j, const struct metric_desc *m, struct predicate **out,
		     char *err, size_t errlen)
{
	struct parse_ctx c = { .m = m, .err = err, .errlen = errlen };
	json_t *parsed = NULL;
	json_error_t jerr;
	struct predicate *p = NULL;
	int ret;

	if (err && errlen)
		err[0] = 0;
	if (!m)
		return fail(&c, "no metric given for the predicate");
	if (!j) {
		parsed = json_object();
	} else if (json_is_string(j)) {
		const char *s = json_string_value(j);

		s += strspn(s, " \t\r\n");
		parsed = *s ? json_loads(s, JSON_DECODE_ANY, &jerr) : json_object();
		if (!parsed)
			return fail(&c, "predicate string is not valid JSON: %s (column %d)",
				    jerr.text, jerr.column);
	} else {
		parsed = json_deep_copy(j);
	}
	if (!parsed)
		return -ENOMEM;
	ret = parse_node(&c, parsed, 1, &p);
	if (ret)
		goto err_json;
	p->json = parsed;
	*out = p;
	return 0;
err_json:
	json_decref(parsed);
	return ret;
}

static bool eval_leaf(const struct predicate *p, const struct record *rec)
{
	int cmp;

	if (p->numeric) {
		uint64_t v = rec->num[p->field];

		switch (p->vk) {
		case V_NEG:
			cmp = 1;
			break;
		case V_REAL:
			cmp = (double)v < p->d ? -1 : (double)v > p->d ? 1 : 0;
			break;
		default:
			cmp = v < p->u ? -1 : v > p->u ? 1 : 0;
			break;
		}
	} else {
		const char *s = rec->str[p->field];

		if (!s)
			return p->op == P_NE;
		cmp = strcmp(s, p->s);
	}
	switch (p->op) {
	case P_EQ: return cmp == 0;
	case P_NE: return cmp != 0;
	case P_LT: return cmp < 0;
	case P_LE: return cmp <= 0;
	case P_GT: return cmp > 0;
	case P_GE: return cmp >= 0;
	default: return false;
	}
}

bool predicate__eval(const struct predicate *p, const struct record *rec)
{
	size_t i;

	if (!p)
		return true;
	switch (p->op) {
	case P_TRUE:
		return true;
	case P_AND:
		for (i = 0; i < p->nkids; i++)
			if (!predicate__eval(p->kids[i], rec))
				return false;
		return true;
	case P_OR:
		for (i = 0; i < p->nkids; i++)
			if (predicate__eval(p->kids[i], rec))
				return true;
		return false;
	default:
		return eval_leaf(p, rec);
	}
}

uint64_t predicate__fields_used(const struct predicate *p)
{
	uint64_t mask = 0;
	size_t i;

	if (!p)
		return 0;
	if (p->field >= 0)
		mask |= 1ULL << p->field;
	for (i = 0; i < p->nkids; i++)
		mask |= predicate__fields_used(p->kids[i]);
	return mask;
}

bool predicate__is_true(const struct predicate *p)
{
	return !p || p->op == P_TRUE;
}

/* Returns a new reference owned by the caller. */
json_t *predicate__to_json(const struct predicate *p)
{
	if (!p || !p->json)
		return json_object();
	return json_deep_copy(p->json);
}
