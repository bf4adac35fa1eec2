/* Instrumentations: configuration, the slot ring, and CA values.
 *
 * Storage. One ring of retention/granularity slots; slot i holds the interval
 * starting at start = i * granularity (mod the ring). A slot is a small
 * open-addressing hash of packed 8-byte cells, cell key = (decomposition key
 * id << 8) | numeric bucket index, cell value = a 32-bit count:
 *   scalar              no cells, slot->total only
 *   discrete            one cell per key (bucket index 0)
 *   numeric             one cell per non-empty bucket (key id 0)
 *   discrete + numeric  one cell per (key, non-empty bucket)
 * A count that outgrows 32 bits moves to the instrumentation's overflow
 * table (struct wide) and its cell says COUNT_WIDE: one cell in four billion
 * events pays a lookup, every other cell is half the size. Bucket indexes fit
 * in 8 bits (the catalogue has at most 256 buckets per field: instr__new
 * checks), key ids in 24 (at most INSTR_KEYS_MAX keys held at once).
 * State bytes per slot: 40 for the header + 8 per cell of capacity
 * (capacity is a power of two, at most 8/7 of the cells used rounded up, at
 * least 8 once used), so an idle slot costs 40 bytes and a slot with 100
 * keys about 1 KB. Linear probing at that load still finds a cell in a few
 * probes, within a cache line or two (the mixer spreads the keys). Decomposition keys ("web1,3") are interned once per
 * instrumentation in a chained hash with a reference count per slot using
 * them, and freed when the last slot holding them is recycled.
 *
 * The hot path (instr__ingest) hashes the joined key without building it,
 * finds the key and the cell, and adds: no allocation unless the key or
 * the cell is new (or the slot's table must grow).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/errmsg.h"
#include "common/hash.h"
#include "common/json_util.h"
#include "common/utf8.h"
#include "engine/instr.h"
#include "engine/merge.h"

#define BIDX_BITS 8
#define BIDX_MASK ((1U << BIDX_BITS) - 1)
#define CELLS_MIN 8
/* a slot's table grows beyond LOAD_NUM / LOAD_DEN full */
#define LOAD_NUM 7
#define LOAD_DEN 8
#define UNKNOWN_KEY "unknown"
/* a cell's count lives in the overflow table */
#define COUNT_WIDE UINT32_MAX
_Static_assert(INSTR_KEYS_MAX <= UINT32_MAX >> BIDX_BITS, "key ids must fit beside the bucket");

struct cell {
	uint32_t key;
	uint32_t count;		/* 0 = empty cell */
};

struct slot {
	int64_t start;		/* INT64_MIN: never used */
	uint64_t total;
	uint64_t version;	/* instr.version when last changed */
	uint32_t used, cap;
	struct cell *cells;
};

/* A count beyond 32 bits: cell `key` of slot number `slot`. */
struct wide {
	uint32_t slot, key;
	uint64_t count;
};

struct ikey {
	struct ikey *next;
	uint64_t hash;
	uint32_t id, refs;
	size_t len;
	char s[];
};

struct keytab {
	struct ikey **buckets;
	uint32_t nbuckets;	/* power of two */
	uint32_t count;
	struct ikey **byid;	/* id -> key; id 0 is never used */
	uint32_t idcap;
	uint32_t *freeids;
	uint32_t nfree, next_id;
	uint64_t bytes;
};

struct instr {
	const struct metric_desc *m;
	struct predicate *pred;
	int decomp[INSTR_DECOMP_MAX];	/* field indexes, in the order given */
	int ndecomp;
	int disc[INSTR_DECOMP_MAX];	/* discrete ones, in the order given */
	int ndisc;
	int numidx;			/* numeric field index or -1 */
	const struct field_desc *numf;
	enum instr_arity arity;
	int gran, retention, idle_max;
	bool persist;
	int64_t crtime_ms;
	char *id, *uri;
	int64_t (*now)(void *ctx);
	void *now_ctx;

	uint32_t nslots;
	struct slot *slots;
	int64_t newest;			/* start of the newest slot, INT64_MIN if none */
	struct keytab keys;
	struct wide *wide;		/* [nwide] counts beyond 32 bits */
	uint32_t nwide, wide_cap;
	uint64_t uid;			/* unique in the process */
	uint64_t version;		/* bumped on every change of a slot */
	struct instr_stats st;
};

/* ---- helpers ----------------------------------------------------------- */


static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t align(const struct instr *in, int64_t t)
{
	return floor_div(t, in->gran) * in->gran;
}

static struct slot *slot_of(const struct instr *in, int64_t start)
{
	int64_t i = floor_div(start, in->gran) % (int64_t)in->nslots;

	if (i < 0)
		i += in->nslots;
	return &in->slots[i];
}

static int64_t wall_now(void *ctx)
{
	(void)ctx;
	return (int64_t)time(NULL);
}

/* ---- interned decomposition keys -------------------------------------- */

static int keytab_init(struct keytab *kt)
{
	kt->nbuckets = 64;
	kt->buckets = calloc(kt->nbuckets, sizeof(*kt->buckets));
	kt->next_id = 1;
	return kt->buckets ? 0 : -ENOMEM;
}

static void keytab_free(struct keytab *kt)
{
	uint32_t i;
	struct ikey *k, *n;

	for (i = 0; kt->buckets && i < kt->nbuckets; i++)
		for (k = kt->buckets[i]; k; k = n) {
			n = k->next;
			free(k);
		}
	free(kt->buckets);
	free(kt->byid);
	free(kt->freeids);
	memset(kt, 0, sizeof(*kt));
}

static void keytab_rehash(struct keytab *kt)
{
	uint32_t n = kt->nbuckets * 2, i;
	struct ikey **b = calloc(n, sizeof(*b)), *k, *next;

	if (!b)
		return;		/* keep the longer chains; still correct */
	for (i = 0; i < kt->nbuckets; i++)
		for (k = kt->buckets[i]; k; k = next) {
			next = k->next;
			k->next = b[k->hash & (n - 1)];
			b[k->hash & (n - 1)] = k;
		}
	free(kt->buckets);
	kt->buckets = b;
	kt->nbuckets = n;
}

/* Does key k equal the pieces joined with ","? */
static bool key_matches(const struct ikey *k, const char *const *pc, const size_t *len, int n)
{
	size_t off = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (i) {
			if (off >= k->len || k->s[off] != ',')
				return false;
			off++;
		}
		if (off + len[i] > k->len || memcmp(k->s + off, pc[i], len[i]))
			return false;
		off += len[i];
	}
	return off == k->len;
}

/* Id of the key made of pieces joined with ",", interning it if new (the
 * table owns the copy). 0 when out of memory. */
static uint32_t keytab_intern(struct keytab *kt, const char *const *pc, const size_t *len, int n)
{
	uint64_t h = HASH_SEED;
	struct ikey *k;
	size_t total = 0, off = 0;
	uint32_t id;
	int i;

	for (i = 0; i < n; i++) {
		if (i)
			h = hash__bytes(h, ",", 1);
		h = hash__bytes(h, pc[i], len[i]);
		total += len[i] + (i ? 1 : 0);
	}
	for (k = kt->buckets[h & (kt->nbuckets - 1)]; k; k = k->next)
		if (k->hash == h && key_matches(k, pc, len, n))
			return k->id;

	if (kt->nfree) {
		id = kt->freeids[--kt->nfree];
	} else {
		if (kt->next_id >= kt->idcap) {
			uint32_t cap = kt->idcap ? kt->idcap * 2 : 64;
			struct ikey **b = realloc(kt->byid, cap * sizeof(*b));
			uint32_t *f;

			if (!b)
				return 0;
			kt->byid = b;
			f = realloc(kt->freeids, cap * sizeof(*f));
			if (!f)
				return 0;
			kt->freeids = f;
			kt->idcap = cap;
		}
		if (kt->next_id > INSTR_KEYS_MAX)
			return 0;
		id = kt->next_id++;
	}
	k = malloc(sizeof(*k) + total + 1);
	if (!k) {
		kt->freeids[kt->nfree++] = id;
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (i)
			k->s[off++] = ',';
		memcpy(k->s + off, pc[i], len[i]);
		off += len[i];
	}
	k->s[off] = 0;
	k->len = total;
	k->hash = h;
	k->id = id;
	k->refs = 0;
	k->next = kt->buckets[h & (kt->nbuckets - 1)];
	kt->buckets[h & (kt->nbuckets - 1)] = k;
	kt->byid[id] = k;
	kt->count++;
	kt->bytes += sizeof(*k) + total + 1;
	if (kt->count > kt->nbuckets)
		keytab_rehash(kt);
	return id;
}

static void keytab_unref(struct keytab *kt, uint32_t id)
{
	struct ikey *k = kt->byid[id], **pp;

	if (--k->refs)
		return;
	for (pp = &kt->buckets[k->hash & (kt->nbuckets - 1)]; *pp != k; pp = &(*pp)->next)
		;
	*pp = k->next;
	kt->byid[id] = NULL;
	kt->freeids[kt->nfree++] = id;
	kt->count--;
	kt->bytes -= sizeof(*k) + k->len + 1;
	free(k);
}

/* ---- slots ------------------------------------------------------------- */

static uint32_t slot_index(const struct instr *in, const struct slot *s)
{
	return (uint32_t)(s - in->slots);
}

static struct wide *wide_find(const struct instr *in, const struct slot *s, uint32_t key)
{
	uint32_t i, si = slot_index(in, s);

	for (i = 0; i < in->nwide; i++)
		if (in->wide[i].slot == si && in->wide[i].key == key)
			return &in->wide[i];
	return NULL;
}

static uint64_t cell_count(const struct instr *in, const struct slot *s, const struct cell *c)
{
	const struct wide *w;

	if (c->count != COUNT_WIDE)
		return c->count;
	w = wide_find(in, s, c->key);
	return w ? w->count : COUNT_WIDE;
}

/* Adds n to cell c of slot s, moving its count to the overflow table when it
 * no longer fits in 32 bits. 0 or -ENOMEM (c unchanged). */
static int cell_add(struct instr *in, struct slot *s, struct cell *c, uint64_t n)
{
	struct wide *w;
	uint64_t sum;

	if (c->count == COUNT_WIDE && (w = wide_find(in, s, c->key))) {
		w->count += n;
		return 0;
	}
	sum = (uint64_t)c->count + n;
	if (sum < COUNT_WIDE) {
		c->count = (uint32_t)sum;
		return 0;
	}
	if (in->nwide == in->wide_cap) {
		uint32_t cap = in->wide_cap ? in->wide_cap * 2 : 4;
		struct wide *nw = realloc(in->wide, cap * sizeof(*nw));

		if (!nw)
			return -ENOMEM;
		in->wide = nw;
		in->wide_cap = cap;
	}
	in->wide[in->nwide++] = (struct wide){ slot_index(in, s), c->key, sum };
	c->count = COUNT_WIDE;
	return 0;
}

static void slot_clear(struct instr *in, struct slot *s, int64_t start)
{
	uint32_t i, si = slot_index(in, s);

	if (s->used) {
		for (i = 0; i < s->cap; i++) {
			if (!s->cells[i].count)
				continue;
			if (s->cells[i].key >> BIDX_BITS)
				keytab_unref(&in->keys, s->cells[i].key >> BIDX_BITS);
		}
		memset(s->cells, 0, s->cap * sizeof(*s->cells));
	}
	for (i = 0; i < in->nwide;)
		if (in->wide[i].slot == si)
			in->wide[i] = in->wide[--in->nwide];
		else
			i++;
	/* a slot that had many keys gives its memory back */
	if (s->cap > 64 && s->used < s->cap / 8) {
		free(s->cells);
		s->cells = NULL;
		s->cap = 0;
	}
	s->used = 0;
	s->total = 0;
	s->start = start;
	s->version = ++in->version;
}

/* Makes room in s for `want` cells in all (the table doubles until they fit
 * under its load limit). 0 or -ENOMEM (s unchanged). */
static int slot_grow(struct slot *s, uint32_t want)
{
	uint32_t ncap = s->cap ? s->cap * 2 : CELLS_MIN, i, j;
	struct cell *nc;

	while ((uint64_t)want * LOAD_DEN > (uint64_t)ncap * LOAD_NUM)
		ncap *= 2;
	nc = calloc(ncap, sizeof(*nc));
	if (!nc)
		return -ENOMEM;
	for (i = 0; i < s->cap; i++) {
		if (!s->cells[i].count)
			continue;
		for (j = (uint32_t)hash__mix64(s->cells[i].key) & (ncap - 1); nc[j].count;
		     j = (j + 1) & (ncap - 1))
			;
		nc[j] = s->cells[i];
	}
	free(s->cells);
	s->cells = nc;
	s->cap = ncap;
	return 0;
}

static int slot_add(struct instr *in, struct slot *s, uint32_t key, uint64_t n)
{
	uint32_t j = 0;

	if (in->arity == INSTR_SCALAR) {
		s->total += n;
		s->version = ++in->version;
		return 0;
	}
	if (s->cap) {
		for (j = (uint32_t)hash__mix64(key) & (s->cap - 1); s->cells[j].count;
		     j = (j + 1) & (s->cap - 1))
			if (s->cells[j].key == key) {
				if (cell_add(in, s, &s->cells[j], n))
					return -ENOMEM;
				s->total += n;
				s->version = ++in->version;
				return 0;
			}
	}
	if ((uint64_t)(s->used + 1) * LOAD_DEN > (uint64_t)s->cap * LOAD_NUM) {
		if (slot_grow(s, s->used + 1))
			return -ENOMEM;
		for (j = (uint32_t)hash__mix64(key) & (s->cap - 1); s->cells[j].count;
		     j = (j + 1) & (s->cap - 1))
			;
	}
	s->cells[j].key = key;
	s->cells[j].count = 0;
	if (cell_add(in, s, &s->cells[j], n))
		return -ENOMEM;
	s->used++;
	s->total += n;
	s->version = ++in->version;
	if (key >> BIDX_BITS)
		in->keys.byid[key >> BIDX_BITS]->refs++;
	return 0;
}

/* The slot for `start`, moving the ring forward when start is newer than
 * anything seen; NULL when start is before the ring's window. */
static struct slot *slot_for(struct instr *in, int64_t start)
{
	int64_t span = (int64_t)in->nslots * in->gran, s, from;

	if (in->newest == INT64_MIN || start > in->newest) {
		from = in->newest == INT64_MIN || start - in->newest >= span ?
			start - span + in->gran : in->newest + in->gran;
		for (s = from; s <= start; s += in->gran)
			slot_clear(in, slot_of(in, s), s);
		in->newest = start;
	} else if (start <= in->newest - span) {
		return NULL;
	}
	return slot_of(in, start);
}

/* ---- configuration ----------------------------------------------------- */

static const char *const ignored_props[] = {
	"id", "uri", "uris", "crtime", "value-dimension", "value-arity", "value-scope",
	"nsources", "transformations", "warnings", "enabled", NULL,
};

/* An integer property: JSON integer or decimal string, within [min, max]. */
static int get_int(const json_t *spec, const char *name, long long def, long long min,
		   long long max, long long *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(spec, name);
	long long x;
	char *end;

	if (!v) {
		*out = def;
		return 0;
	}
	if (json_is_integer(v)) {
		x = json_integer_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);

		errno = 0;
		x = strtoll(s, &end, 10);
		if (!*s || *end || errno)
			return errmsg__invalid(err, errlen, "\"%s\" must be an integer, got \"%s\"", name, s);
	} else {
		return errmsg__invalid(err, errlen, "\"%s\" must be an integer, got %s", name, json__type_name(v));
	}
	if (x < min || x > max)
		return errmsg__invalid(err, errlen, "\"%s\" must be between %lld and %lld, got %lld", name,
			    min, max, x);
	*out = x;
	return 0;
}

/* A spec of the right shape naming a metric or field that does not exist,
 * or that asks a field for what its type cannot give: -EDOM, so that callers
 * can tell it from a malformed one (-EINVAL). */
static int meaningless(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int meaningless(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EDOM;
}

static int get_metric(const json_t *spec, const struct metric_desc **out, char *err,
		      size_t errlen)
{
	const json_t *jm = json_object_get(spec, "metric"), *jmod = json_object_get(spec, "module"),
		     *jstat = json_object_get(spec, "stat");
	const struct metric_desc *m = NULL;

	if (jm && !json_is_string(jm))
		return errmsg__invalid(err, errlen, "\"metric\" must be a string, got %s", json__type_name(jm));
	if (jmod && !json_is_string(jmod))
		return errmsg__invalid(err, errlen, "\"module\" must be a string, got %s", json__type_name(jmod));
	if (jstat && !json_is_string(jstat))
		return errmsg__invalid(err, errlen, "\"stat\" must be a string, got %s", json__type_name(jstat));
	if (!!jmod != !!jstat)
		return errmsg__invalid(err, errlen, "\"%s\" given without \"%s\"", jmod ? "module" : "stat",
			    jmod ? "stat" : "module");
	if (jmod) {
		m = metric__by_module_stat(json_string_value(jmod), json_string_value(jstat));
		if (!m)
			return meaningless(err, errlen, "unknown metric: module \"%s\", stat \"%s\"",
				    json_string_value(jmod), json_string_value(jstat));
	}
	if (jm) {
		const struct metric_desc *m2 = metric__by_name(json_string_value(jm));

		if (!m2)
			return meaningless(err, errlen, "unknown metric \"%s\"", json_string_value(jm));
		if (m && m != m2)
			return meaningless(err, errlen, "\"metric\" (%s) disagrees with \"module\"/\"stat\" (%s)",
				    m2->name, m->name);
		m = m2;
	}
	if (!m)
		return errmsg__invalid(err, errlen, "missing \"module\" and \"stat\" (or \"metric\")");
	*out = m;
	return 0;
}

static int add_decomp(struct instr *in, const char *name, size_t len, char *err, size_t errlen)
{
	char buf[64];
	int idx, i;

	if (len == 0)
		return errmsg__invalid(err, errlen, "decomposition: empty field name");
	if (len >= sizeof(buf))
		return meaningless(err, errlen, "decomposition: unknown field \"%.*s...\" for metric %s",
			    40, name, in->m->name);
	memcpy(buf, name, len);
	buf[len] = 0;
	idx = metric__field_index(in->m, buf);
	if (idx < 0)
		return meaningless(err, errlen, "decomposition: unknown field \"%s\" for metric %s", buf,
			    in->m->name);
	for (i = 0; i < in->ndecomp; i++)
		if (in->decomp[i] == idx)
			return errmsg__invalid(err, errlen, "decomposition: field \"%s\" given twice", buf);
	if (in->ndecomp >= INSTR_DECOMP_MAX)
		return errmsg__invalid(err, errlen, "decomposition: at most %d fields", INSTR_DECOMP_MAX);
	if (in->m->fields[idx]->type == FIELD_NUMERIC) {
		if (in->numidx >= 0)
			return meaningless(err, errlen,
				    "decomposition: at most one numeric field, got \"%s\" and \"%s\"",
				    in->m->fields[in->numidx]->name, buf);
		in->numidx = idx;
	} else {
		in->disc[in->ndisc++] = idx;
	}
	in->decomp[in->ndecomp++] = idx;
	return 0;
}

static int get_decomp(struct instr *in, const json_t *spec, char *err, size_t errlen)
{
	const json_t *d = json_object_get(spec, "decomposition"), *e;
	const char *s, *comma;
	size_t i;
	int ret;

	if (!d || json_is_null(d))
		return 0;
	if (json_is_string(d)) {
		s = json_string_value(d);
		if (!*s)
			return 0;
		for (;;) {
			comma = strchr(s, ',');
			ret = add_decomp(in, s, comma ? (size_t)(comma - s) : strlen(s), err, errlen);
			if (ret || !comma)
				return ret;
			s = comma + 1;
		}
	}
	if (!json_is_array(d))
		return errmsg__invalid(err, errlen, "\"decomposition\" must be an array of field names or a string, got %s",
			    json__type_name(d));
	json_array_foreach(d, i, e) {
		if (!json_is_string(e))
			return errmsg__invalid(err, errlen, "decomposition: element %zu must be a field name string, got %s",
				    i, json__type_name(e));
		ret = add_decomp(in, json_string_value(e), strlen(json_string_value(e)), err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static int check_props(const json_t *spec, char *err, size_t errlen)
{
	static const char *const known[] = {
		"module", "stat", "metric", "predicate", "decomposition", "granularity",
		"retention-time", "idle-max", "persist-data", NULL,
	};
	const char *key;
	json_t *v;
	int i;

	json_object_foreach((json_t *)spec, key, v) {
		for (i = 0; known[i]; i++)
			if (!strcmp(key, known[i]))
				break;
		if (known[i])
			continue;
		for (i = 0; ignored_props[i]; i++)
			if (!strcmp(key, ignored_props[i]))
				break;
		if (!ignored_props[i])
			return errmsg__invalid(err, errlen, "unknown instrumentation property \"%s\"", key);
	}
	/* CA accepts only an enabled instrumentation (caInstValidateMutableFields) */
	v = json_object_get(spec, "enabled");
	if (v && !json_is_true(v) &&
	    !(json_is_string(v) && !strcmp(json_string_value(v), "true"))) {
		char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		int rc = errmsg__invalid(err, errlen,
					 "value %.64s for field \"enabled\" is invalid: unsupported value",
					 txt ? txt : "?");

		free(txt);
		return rc;
	}
	return 0;
}

static int get_persist(const json_t *spec, bool *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(spec, "persist-data");

	*out = false;
	if (!v)
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	if (json_is_string(v) && (!strcmp(json_string_value(v), "true") ||
				  !strcmp(json_string_value(v), "false"))) {
		*out = !strcmp(json_string_value(v), "true");
		return 0;
	}
	return errmsg__invalid(err, errlen, "\"persist-data\" must be true or false, got %s", json__type_name(v));
}

/* On success *out is owned by the caller. */
static uint64_t next_uid;

int instr__new(const json_t *spec, struct instr **out, char *err, size_t errlen)
{
	struct instr *in;
	struct timespec ts;
	long long g, r, idle;
	char perr[256];
	int ret;

	if (err && errlen)
		err[0] = 0;
	if (!json_is_object(spec))
		return errmsg__invalid(err, errlen, "an instrumentation must be a JSON object, got %s",
			    spec ? json__type_name(spec) : "nothing");
	ret = check_props(spec, err, errlen);
	if (ret)
		return ret;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->numidx = -1;
	in->newest = INT64_MIN;
	in->now = wall_now;
	ret = get_metric(spec, &in->m, err, errlen);
	if (ret)
		goto err_free;
	ret = predicate__parse(json_object_get(spec, "predicate"), in->m, &in->pred, perr,
			       sizeof(perr));
	if (ret) {
		if (ret == -EINVAL || ret == -EDOM)
			snprintf(err, errlen, "predicate: %s", perr);
		goto err_free;
	}
	ret = get_decomp(in, spec, err, errlen);
	if (ret)
		goto err_free;
	if (in->numidx >= 0)
		in->numf = in->m->fields[in->numidx];
	if (in->numf && metric__nbuckets(in->numf) > BIDX_MASK + 1) {
		/* the catalogue's fields all fit; a new one must too */
		ret = errmsg__invalid(err, errlen, "field \"%s\" has %u buckets, more than %u",
				      in->numf->name, metric__nbuckets(in->numf), BIDX_MASK + 1);
		goto err_free;
	}
	in->arity = in->numidx >= 0 ? (in->ndisc ? INSTR_DISCRETE_NUMERIC : INSTR_NUMERIC) :
				      (in->ndisc ? INSTR_DISCRETE : INSTR_SCALAR);
	ret = get_int(spec, "granularity", 1, 1, INSTR_GRANULARITY_MAX, &g, err, errlen);
	if (ret)
		goto err_free;
	/* CA's rule (ca_granularity_min): slots of 1 s or of a multiple of 5 s */
	if (g != 1 && g % 5) {
		ret = errmsg__invalid(err, errlen,
				      "value %lld for field \"granularity\" is invalid: must be divisible by 5",
				      g);
		goto err_free;
	}
	ret = get_int(spec, "retention-time",
		      (INSTR_RETENTION_DEFAULT + g - 1) / g * g, g, INSTR_RETENTION_MAX, &r,
		      err, errlen);
	if (ret)
		goto err_free;
	if (r < INSTR_RETENTION_MIN) {
		ret = errmsg__invalid(err, errlen,
				      "value %lld for field \"retention-time\" is invalid: minimum is %d",
				      r, INSTR_RETENTION_MIN);
		goto err_free;
	}
	if (r % g) {
		ret = errmsg__invalid(err, errlen, "\"retention-time\" (%lld) must be a multiple of \"granularity\" (%lld)",
			   r, g);
		goto err_free;
	}
	if (r / g > INSTR_SLOTS_MAX) {
		ret = errmsg__invalid(err, errlen, "\"retention-time\" / \"granularity\" (%lld / %lld) exceeds %d slots",
			   r, g, INSTR_SLOTS_MAX);
		goto err_free;
	}
	ret = get_int(spec, "idle-max", INSTR_IDLE_MAX_DEFAULT, 0, INSTR_IDLE_MAX_MAX, &idle,
		      err, errlen);
	if (ret)
		goto err_free;
	ret = get_persist(spec, &in->persist, err, errlen);
	if (ret)
		goto err_free;
	in->gran = (int)g;
	in->retention = (int)r;
	in->idle_max = (int)idle;
	in->nslots = (uint32_t)(r / g);
	ret = -ENOMEM;
	in->slots = calloc(in->nslots, sizeof(*in->slots));
	if (!in->slots)
		goto err_free;
	for (uint32_t i = 0; i < in->nslots; i++)
		in->slots[i].start = INT64_MIN;
	if (in->ndisc && keytab_init(&in->keys))
		goto err_free;
	in->uid = __atomic_add_fetch(&next_uid, 1, __ATOMIC_RELAXED);
	clock_gettime(CLOCK_REALTIME, &ts);
	in->crtime_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	*out = in;
	return 0;
err_free:
	instr__free(in);
	return ret;
}

void instr__free(struct instr *in)
{
	uint32_t i;

	if (!in)
		return;
	for (i = 0; in->slots && i < in->nslots; i++)
		free(in->slots[i].cells);
	free(in->slots);
	free(in->wide);
	keytab_free(&in->keys);
	predicate__free(in->pred);
	free(in->id);
	free(in->uri);
	free(in);
}

int instr__set_id(struct instr *in, const char *id, const char *uri)
{
	char *i2 = id ? strdup(id) : NULL, *u2 = uri ? strdup(uri) : NULL;

	if ((id && !i2) || (uri && !u2)) {
		free(i2);
		free(u2);
		return -ENOMEM;
	}
	free(in->id);
	free(in->uri);
	in->id = i2;
	in->uri = u2;
	return 0;
}

const char *instr__id(const struct instr *in) { return in->id; }
const struct metric_desc *instr__metric(const struct instr *in) { return in->m; }
enum instr_arity instr__arity(const struct instr *in) { return in->arity; }
int instr__granularity(const struct instr *in) { return in->gran; }
int64_t instr__crtime_ms(const struct instr *in)
{
	return in->crtime_ms;
}

int instr__retention(const struct instr *in) { return in->retention; }
int instr__idle_max(const struct instr *in) { return in->idle_max; }
bool instr__persist(const struct instr *in) { return in->persist; }
const struct field_desc *instr__numeric_field(const struct instr *in) { return in->numf; }

void instr__set_clock(struct instr *in, int64_t (*now)(void *ctx), void *ctx)
{
	in->now = now ? now : wall_now;
	in->now_ctx = ctx;
}

uint64_t instr__fields_needed(const struct instr *in)
{
	uint64_t mask = predicate__fields_used(in->pred);
	int i;

	for (i = 0; i < in->ndecomp; i++)
		mask |= 1ULL << in->decomp[i];
	return mask;
}

static const char *arity_name(enum instr_arity a)
{
	switch (a) {
	case INSTR_SCALAR: return "scalar";
	case INSTR_DISCRETE: return "discrete-decomposition";
	default: return "numeric-decomposition";
	}
}

/* uri, id and uris in CA's order (ca-svc-config.js caNormalizeProperties):
 * for a numeric decomposition the heatmap image and details first, then
 * the raw values. */
static int add_uris(const struct instr *in, json_t *o)
{
	static const char *const heatmap[][2] = {
		{ "/value/heatmap/image", "value_heatmap" },
		{ "/value/heatmap/details", "details_heatmap" },
	};
	char buf[1024];
	json_t *uris;

	uris = json_array();
	if (!uris || json_object_set_new(o, "uri", json_string(in->uri)) ||
	    (in->id && json_object_set_new(o, "id", json_string(in->id))) ||
	    json_object_set_new(o, "uris", uris))
		return -ENOMEM;
	for (size_t i = 0; in->numf && i < 2; i++) {
		snprintf(buf, sizeof(buf), "%s%s", in->uri, heatmap[i][0]);
		if (json_array_append_new(uris, json_pack("{s:s, s:s}", "uri", buf,
							  "name", heatmap[i][1])))
			return -ENOMEM;
	}
	snprintf(buf, sizeof(buf), "%s/value/raw", in->uri);
	if (json_array_append_new(uris, json_pack("{s:s, s:s}", "uri", buf, "name", "value_raw")))
		return -ENOMEM;
	return 0;
}

/* Returns a new reference owned by the caller. */
json_t *instr__to_json(const struct instr *in)
{
	json_t *o, *d;
	int i;

	/* CA's fields in CA's order; enabled is always true (CA accepts no
	 * other value) and there are no transformations */
	o = json_pack("{s:s, s:s, s:o, s:[], s:i, s:s, s:b, s:i, s:i, s:{}, s:i, s:i, s:b, s:I, s:s}",
		      "module", in->m->module, "stat", in->m->stat,
		      "predicate", predicate__to_json(in->pred), "decomposition",
		      "value-dimension", (json_int_t)(1 + (in->ndisc > 0) + (in->numidx >= 0)),
		      "value-arity", arity_name(in->arity),
		      "enabled", 1,
		      "retention-time", (json_int_t)in->retention,
		      "idle-max", (json_int_t)in->idle_max,
		      "transformations",
		      "nsources", 1,
		      "granularity", (json_int_t)in->gran,
		      "persist-data", (int)in->persist,
		      "crtime", (json_int_t)in->crtime_ms,
		      "value-scope", "interval");
	if (!o)
		return NULL;
	d = json_object_get(o, "decomposition");
	for (i = 0; i < in->ndecomp; i++)
		if (json_array_append_new(d, json_string(in->m->fields[in->decomp[i]]->name)))
			goto err;
	if (in->uri ? add_uris(in, o)
		    : in->id && json_object_set_new(o, "id", json_string(in->id)))
		goto err;
	return o;
err:
	json_decref(o);
	return NULL;
}

/* ---- ingest ------------------------------------------------------------ */

int instr__ingest(struct instr *in, const struct record *rec)
{
	const char *pc[INSTR_DECOMP_MAX];
	size_t len[INSTR_DECOMP_MAX];
	uint32_t key = 0;
	struct slot *s;
	uint32_t id;
	int i, b;

	if (rec->metric != in->m->id)
		return -EINVAL;
	in->st.records++;
	if (!predicate__eval(in->pred, rec)) {
		in->st.filtered++;
		return 0;
	}
	if (rec->time > in->now(in->now_ctx) + INSTR_FUTURE_MAX) {
		in->st.dropped_future++;
		return 0;
	}
	s = slot_for(in, align(in, rec->time));
	if (!s) {
		in->st.dropped_old++;
		return 0;
	}
	if (!rec->value)
		return 0;
	if (in->numf) {
		b = metric__bucket_index(in->numf, rec->num[in->numidx]);
		key = (uint32_t)b;
	}
	if (in->ndisc) {
		for (i = 0; i < in->ndisc; i++) {
			pc[i] = rec->str[in->disc[i]] ? rec->str[in->disc[i]] : UNKNOWN_KEY;
			len[i] = strlen(pc[i]);
		}
		id = keytab_intern(&in->keys, pc, len, in->ndisc);
		if (!id)
			return -ENOMEM;
		key |= id << BIDX_BITS;
		if (slot_add(in, s, key, rec->value)) {
			if (!in->keys.byid[id]->refs) {
				in->keys.byid[id]->refs = 1;
				keytab_unref(&in->keys, id);
			}
			return -ENOMEM;
		}
		return 0;
	}
	return slot_add(in, s, key, rec->value);
}

/* ---- values ------------------------------------------------------------ */

static json_t *empty_value(const struct instr *in)
{
	switch (in->arity) {
	case INSTR_SCALAR: return json_integer(0);
	case INSTR_NUMERIC: return json_array();
	default: return json_object();
	}
}

/* A cell with its count resolved, for sorting. */
struct vcell {
	uint32_t key;
	uint64_t count;
};

static int cell_cmp(const void *a, const void *b)
{
	const struct vcell *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

static json_t *bucket_json(const struct instr *in, uint64_t bidx, uint64_t count)
{
	uint64_t lo, hi;

	lo = metric__bucket_lo(in->numf, (unsigned int)bidx, &hi);
	hi = metric__json_hi(in->numf, lo, hi);
	return json_pack("[[I,I],I]", (json_int_t)lo, (json_int_t)hi, (json_int_t)count);
}

/* Sets obj[key] = val, taking the reference to val. Keys come from guests'
 * and VMMs' strings, which need not be UTF-8: JSON cannot carry those, so
 * they are shown sanitised (utf8__sanitize) rather than losing the value. */
static int set_key(json_t *obj, const char *key, json_t *val)
{
	size_t len = strlen(key);
	char *clean = NULL;
	int ret = -ENOMEM;

	if (!val)
		return -ENOMEM;
	if (!utf8__valid(key, len)) {
		clean = strdup(key);
		if (!clean)
			goto out;
		utf8__sanitize(clean, len);
	}
	ret = json_object_set(obj, clean ? clean : key, val) ? -ENOMEM : 0;
out:
	free(clean);
	json_decref(val);
	return ret;
}

/* Returns a new reference owned by the caller. */
json_t *instr__value(const struct instr *in, int64_t slot_start)
{
	const struct slot *s;
	struct vcell *cells;
	json_t *v, *dist = NULL;
	uint32_t i, n = 0;
	uint64_t cur = UINT64_MAX;

	slot_start = align(in, slot_start);
	s = slot_of(in, slot_start);
	if (s->start != slot_start || in->newest == INT64_MIN ||
	    slot_start <= in->newest - (int64_t)in->nslots * in->gran)
		return empty_value(in);
	if (in->arity == INSTR_SCALAR)
		return json_integer((json_int_t)s->total);
	v = empty_value(in);
	if (!v || !s->used)
		return v;
	cells = malloc(s->used * sizeof(*cells));
	if (!cells)
		goto err;
	for (i = 0; i < s->cap; i++)
		if (s->cells[i].count)
			cells[n++] = (struct vcell){ s->cells[i].key,
						     cell_count(in, s, &s->cells[i]) };
	qsort(cells, n, sizeof(*cells), cell_cmp);
	for (i = 0; i < n; i++) {
		uint64_t id = cells[i].key >> BIDX_BITS, bidx = cells[i].key & BIDX_MASK;
		const char *k = id ? in->keys.byid[id]->s : NULL;

		switch (in->arity) {
		case INSTR_DISCRETE:
			if (set_key(v, k, json_integer((json_int_t)cells[i].count)))
				goto err_cells;
			break;
		case INSTR_NUMERIC:
			if (json_array_append_new(v, bucket_json(in, bidx, cells[i].count)))
				goto err_cells;
			break;
		default:
			if (id != cur) {
				dist = json_array();
				json_incref(dist);
				if (set_key(v, k, dist)) {
					json_decref(dist);
					goto err_cells;
				}
				json_decref(dist);	/* v holds it now */
				cur = id;
			}
			if (json_array_append_new(dist, bucket_json(in, bidx, cells[i].count)))
				goto err_cells;
			break;
		}
	}
	free(cells);
	return v;
err_cells:
	free(cells);
err:
	json_decref(v);
	return NULL;
}

static bool slot_current(const struct instr *in, const struct slot *s, int64_t t)
{
	return s->start == t && in->newest != INT64_MIN &&
	       t > in->newest - (int64_t)in->nslots * in->gran;
}

uint64_t instr__uid(const struct instr *in)
{
	return in->uid;
}

uint64_t instr__slot_version(const struct instr *in, int64_t slot_start)
{
	const struct slot *s;

	slot_start = align(in, slot_start);
	s = slot_of(in, slot_start);
	return slot_current(in, s, slot_start) ? s->version : 0;
}

/* The caller owns w (dist_window__free), whatever the result. */
int instr__window(const struct instr *in, int64_t start, size_t nslots, struct dist_window *w)
{
	long n;

	dist_window__init(w, align(in, start), in->gran);
	n = instr__window_append(in, start, nslots, 0, w);
	return n < 0 ? (int)n : 0;
}

long instr__window_append(const struct instr *in, int64_t start, size_t nslots,
			  size_t max_cells, struct dist_window *w)
{
	struct dist_bucket *buckets = NULL;
	uint32_t *dense = NULL, nb, i;
	size_t n, ncells = 0;
	const struct slot *s;
	int64_t t;
	long rc = -ENOMEM;

	start = align(in, start);
	if (!in->numf || w->granularity != in->gran ||
	    start != w->start + (int64_t)w->nslots * in->gran)
		return -EINVAL;
	w->decomposed = in->arity == INSTR_DISCRETE_NUMERIC;
	nb = metric__nbuckets(in->numf);
	buckets = malloc((nb ? nb : 1) * sizeof(*buckets));
	/* decomposition key id -> index in w's key table, + 1 (ids are this
	 * piece's: between pieces a key may go and its id be reused; the
	 * duplicate names this leaves are merged by dist_window__finish) */
	dense = calloc(in->keys.idcap ? in->keys.idcap : 1, sizeof(*dense));
	if (!buckets || !dense)
		goto out;
	for (i = 0; i < nb; i++) {
		uint64_t hi, lo = metric__bucket_lo(in->numf, i, &hi);

		buckets[i].lo = (double)lo;
		buckets[i].hi = (double)metric__json_hi(in->numf, lo, hi);
	}
	if (dist_window__set_buckets(w, buckets, nb))
		goto out;
	for (n = 0, t = start; n < nslots; n++, t += in->gran) {
		s = slot_of(in, t);
		if (!slot_current(in, s, t))
			continue;
		if (n && max_cells && ncells + s->used > max_cells)
			break;
		ncells += s->used;
	}
	nslots = n;
	if (dist_window__reserve(w, nslots, ncells, 0, 0))
		goto out;
	for (n = 0, t = start; n < nslots; n++, t += in->gran) {
		if (dist_window__begin_slot(w))
			goto out;
		s = slot_of(in, t);
		if (!slot_current(in, s, t) || !s->used)
			continue;
		for (i = 0; i < s->cap; i++) {
			const struct cell *c = &s->cells[i];
			uint32_t id = c->key >> BIDX_BITS;

			if (!c->count)
				continue;
			if (id && !dense[id]) {
				const struct ikey *k = in->keys.byid[id];
				long ix = dist_window__add_key(w, k->s, k->len);

				if (ix < 0)
					goto out;
				dense[id] = (uint32_t)ix + 1;
			}
			if (dist_window__add_cell(w, id ? dense[id] - 1 : 0,
						  c->key & BIDX_MASK,
						  (double)cell_count(in, s, c)))
				goto out;
		}
	}
	rc = (long)nslots;
out:
	free(buckets);
	free(dense);
	return rc;
}

/* 1 when every slot of [start, start + duration) was collected while the
 * instrumentation existed, is complete by now and is still retained, else
 * 0: CA's minreporting for a single source (a slot before the
 * instrumentation was created reported nothing, not zero events). */
static bool slot_current(const struct instr *in, const struct slot *s, int64_t t);

static int nreporting(const struct instr *in, int64_t start, int64_t duration, int64_t now)
{
	int64_t created = align(in, floor_div(in->crtime_ms, 1000));
	int64_t oldest = align(in, now) - (int64_t)in->nslots * in->gran;

	if (start < oldest || start + duration > now)
		return 0;
	/* a slot the ring holds was collected (restored or replayed data may
	 * predate crtime); one it lacks was collected only after creation */
	for (int64_t t = start; t < start + duration; t += in->gran)
		if (t < created && !slot_current(in, slot_of(in, t), t))
			return 0;
	return 1;
}

static json_t *raw_point(const struct instr *in, int64_t start, int64_t duration, int64_t now)
{
	json_t *v = empty_value(in), *sv;
	int64_t t;

	if (!v)
		return NULL;
	for (t = start; t < start + duration; t += in->gran) {
		sv = instr__value(in, t);
		if (!sv || value__merge(v, sv)) {
			json_decref(sv);
			json_decref(v);
			return NULL;
		}
		json_decref(sv);
	}
	return json_pack("{s:o, s:I, s:I, s:{}, s:i, s:i}", "value", v,
			 "start_time", (json_int_t)start, "duration", (json_int_t)duration,
			 "transformations", "nsources", 1, "minreporting",
			 nreporting(in, start, duration, now));
}

/* Returns a new reference owned by the caller. */
json_t *instr__value_raw(const struct instr *in, int64_t start_time, int64_t duration,
			 int ndatapoints, int64_t now)
{
	json_t *arr, *p;
	int i;

	if (duration <= 0)
		duration = in->gran;
	if (duration > INSTR_RETENTION_MAX)
		duration = INSTR_RETENTION_MAX;
	duration = (duration + in->gran - 1) / in->gran * in->gran;
	if (ndatapoints <= 0)
		ndatapoints = 1;
	if (ndatapoints > INSTR_RAW_NDATAPOINTS_MAX)
		ndatapoints = INSTR_RAW_NDATAPOINTS_MAX;
	if (start_time < 0)
		start_time = align(in, now) - (int64_t)ndatapoints * duration;
	start_time = align(in, start_time);
	if (ndatapoints == 1)
		return raw_point(in, start_time, duration, now);
	arr = json_array();
	for (i = 0; arr && i < ndatapoints; i++) {
		p = raw_point(in, start_time + (int64_t)i * duration, duration, now);
		if (json_array_append_new(arr, p)) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

void instr__stats(const struct instr *in, struct instr_stats *st)
{
	uint32_t i;

	*st = in->st;
	st->keys = in->keys.count;
	st->bytes = sizeof(*in) + (uint64_t)in->nslots * sizeof(struct slot) + in->keys.bytes +
		    (uint64_t)in->wide_cap * sizeof(struct wide) +
		    (uint64_t)in->keys.nbuckets * sizeof(void *) +
		    (uint64_t)in->keys.idcap * (sizeof(void *) + sizeof(uint32_t));
	for (i = 0; i < in->nslots; i++)
		st->bytes += (uint64_t)in->slots[i].cap * sizeof(struct cell);
}

/* ---- persistence ------------------------------------------------------- */

static bool slot_filled(const struct instr *in, int64_t t)
{
	const struct slot *s = slot_of(in, t);

	return s->start == t && s->total;
}

static int64_t oldest_retained(const struct instr *in)
{
	return in->newest - (int64_t)(in->nslots - 1) * in->gran;
}

/* {"metric", "decomposition", "granularity"}: what a saved value must match
 * to be loaded back. New reference owned by the caller. */
static json_t *data_head(const struct instr *in)
{
	json_t *o, *d;
	int i;

	o = json_pack("{s:s, s:[], s:i}", "metric", in->m->name, "decomposition", "granularity",
		      (json_int_t)in->gran);
	if (!o)
		return NULL;
	d = json_object_get(o, "decomposition");
	for (i = 0; i < in->ndecomp; i++)
		if (json_array_append_new(d, json_string(in->m->fields[in->decomp[i]]->name))) {
			json_decref(o);
			return NULL;
		}
	return o;
}

/* Returns a new reference owned by the caller. */
json_t *instr__data_to_json(const struct instr *in)
{
	json_t *o, *slots, *v;
	int64_t t;

	o = data_head(in);
	slots = json_array();
	if (!o || json_object_set_new(o, "slots", slots))
		goto err;
	if (in->newest == INT64_MIN)
		return o;
	for (t = oldest_retained(in); t <= in->newest; t += in->gran) {
		if (!slot_filled(in, t))
			continue;
		v = instr__value(in, t);
		if (json_array_append_new(slots, json_pack("{s:I, s:o}", "start_time",
							   (json_int_t)t, "value", v)))
			goto err;
	}
	return o;
err:
	json_decref(o);
	return NULL;
}

int instr__dump_begin(const struct instr *in, struct instr_dump *d, FILE *f)
{
	json_t *head = data_head(in);
	char *text = head ? json_dumps(head, JSON_COMPACT) : NULL;
	size_t len = text ? strlen(text) : 0;
	int rc = 0;

	/* the head is a non-empty object: its closing brace gives way to the
	 * slots array */
	if (!text || len < 2) {
		rc = -ENOMEM;
		goto out;
	}
	if (fwrite(text, 1, len - 1, f) != len - 1 || fputs(",\"slots\":[", f) < 0)
		rc = -EIO;
	d->next = in->newest == INT64_MIN ? INT64_MAX : oldest_retained(in);
	d->written = 0;
out:
	free(text);
	json_decref(head);
	return rc;
}

/* Writes slot s's value as instr__value's JSON would be written (compact),
 * straight from the cells: the agent saves millions of cells under its
 * lock, and building the JSON tree first costs ten times as much. Keys are
 * escaped by jansson itself. 1: written; 0: a key is not valid UTF-8 (the
 * caller writes the JSON tree, whose sanitised keys may merge); -ENOMEM,
 * -EIO. */
static int dump_value(const struct instr *in, const struct slot *s, FILE *f)
{
	struct vcell *cells = NULL;
	uint32_t i, n = 0, cur = UINT32_MAX;
	char *esc = NULL;
	int rc = -ENOMEM, bad = 0;

	if (in->arity == INSTR_SCALAR)
		return fprintf(f, "%llu", (unsigned long long)s->total) < 0 ? -EIO : 1;
	cells = malloc((s->used ? s->used : 1) * sizeof(*cells));
	if (!cells)
		goto out;
	for (i = 0; i < s->cap; i++)
		if (s->cells[i].count)
			cells[n++] = (struct vcell){ s->cells[i].key, cell_count(in, s, &s->cells[i]) };
	qsort(cells, n, sizeof(*cells), cell_cmp);
	rc = 0;
	for (i = 0; i < n; i++) {
		const struct ikey *k = cells[i].key >> BIDX_BITS ?
				       in->keys.byid[cells[i].key >> BIDX_BITS] : NULL;

		if (k && !utf8__valid(k->s, k->len))
			goto out;
	}
	bad |= fputc(in->arity == INSTR_NUMERIC ? '[' : '{', f) == EOF;
	for (i = 0; i < n && !bad; i++) {
		uint32_t id = cells[i].key >> BIDX_BITS;
		uint64_t lo = 0, hi = 0;

		if (in->numf) {
			lo = metric__bucket_lo(in->numf, cells[i].key & BIDX_MASK, &hi);
			hi = metric__json_hi(in->numf, lo, hi);
		}
		if (in->arity != INSTR_NUMERIC && id != cur) {
			json_t *js = json_stringn(in->keys.byid[id]->s, in->keys.byid[id]->len);

			free(esc);
			esc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
			json_decref(js);
			if (!esc) {
				rc = -ENOMEM;
				goto out;
			}
			bad |= fprintf(f, "%s%s:%s", cur == UINT32_MAX ? "" :
				       in->arity == INSTR_DISCRETE ? "," : "],", esc,
				       in->arity == INSTR_DISCRETE ? "" : "[") < 0;
			cur = id;
		} else if (i) {
			bad |= fputc(',', f) == EOF;
		}
		if (in->arity == INSTR_DISCRETE)
			bad |= fprintf(f, "%lld", (long long)cells[i].count) < 0;
		else
			bad |= fprintf(f, "[[%lld,%lld],%lld]", (long long)lo, (long long)hi,
				       (long long)cells[i].count) < 0;
	}
	if (in->arity == INSTR_DISCRETE_NUMERIC && n)
		bad |= fputc(']', f) == EOF;
	bad |= fputc(in->arity == INSTR_NUMERIC ? ']' : '}', f) == EOF;
	rc = bad ? -EIO : 1;
out:
	free(esc);
	free(cells);
	return rc;
}

int instr__dump_step(const struct instr *in, struct instr_dump *d, FILE *f, unsigned int max)
{
	unsigned int n;
	json_t *v;
	int64_t t = d->next;
	int bad, done;
	size_t cells = 0;

	if (in->newest == INT64_MIN)
		t = INT64_MAX;
	else if (t < oldest_retained(in))
		t = oldest_retained(in);	/* the ring moved on meanwhile */
	for (n = 0; n < max && t <= in->newest && cells < INSTR_DUMP_CELLS; n++, t += in->gran) {
		if (!slot_filled(in, t))
			continue;
		cells += slot_of(in, t)->used + 1;
		if (fprintf(f, "%s{\"start_time\":%lld,\"value\":", d->written ? "," : "",
			    (long long)t) < 0)
			return -EIO;
		done = dump_value(in, slot_of(in, t), f);
		if (done < 0)
			return done;
		if (!done) {
			v = instr__value(in, t);
			if (!v)
				return -ENOMEM;
			bad = json_dumpf(v, f, JSON_COMPACT | JSON_ENCODE_ANY);
			json_decref(v);
			if (bad)
				return -EIO;
		}
		if (fputc('}', f) == EOF)
			return -EIO;
		d->written++;
	}
	d->next = t;
	if (in->newest != INT64_MIN && t <= in->newest)
		return 1;
	return fputs("]}", f) < 0 ? -EIO : 0;
}

/* Checks (dry) or loads one distribution into slot s under key id. */
static int load_dist(struct instr *in, struct slot *s, uint32_t id, const json_t *dist)
{
	const json_t *e, *r, *n;
	size_t i;
	uint64_t lo, hi;
	int b, ret;

	if (!json_is_array(dist))
		return -EINVAL;
	json_array_foreach(dist, i, e) {
		r = json_array_get(e, 0);
		n = json_array_get(e, 1);
		if (json_array_size(e) != 2 || !json_is_integer(n) || json_integer_value(n) < 0 ||
		    !json_is_array(r) || !json_is_integer(json_array_get(r, 0)) ||
		    json_integer_value(json_array_get(r, 0)) < 0)
			return -EINVAL;
		lo = (uint64_t)json_integer_value(json_array_get(r, 0));
		b = metric__bucket_index(in->numf, lo);
		if (b < 0 || metric__bucket_lo(in->numf, (unsigned int)b, &hi) != lo)
			return -EINVAL;
		if (!s || !json_integer_value(n))
			continue;
		ret = slot_add(in, s, (id << BIDX_BITS) | (uint32_t)b,
			       (uint64_t)json_integer_value(n));
		if (ret)
			return ret;
	}
	return 0;
}

/* Cells a saved value holds, at most (for sizing the slot once). */
static size_t value_cells(const struct instr *in, const json_t *v)
{
	const char *k;
	const json_t *kv;
	size_t n = 0;

	if (in->arity == INSTR_NUMERIC)
		return json_array_size(v);
	if (in->arity == INSTR_DISCRETE)
		return json_object_size(v);
	json_object_foreach((json_t *)v, k, kv)
		n += json_array_size(kv);
	return n;
}

/* s == NULL: only check that v has this instrumentation's shape. */
static int load_value(struct instr *in, struct slot *s, const json_t *v)
{
	const char *k;
	const json_t *kv;
	size_t klen, want;
	uint32_t id = 0;
	int ret;

	/* one table of the final size, not a series of doublings that would
	 * leave holes between the parsed JSON's blocks */
	want = s && in->arity != INSTR_SCALAR ? s->used + value_cells(in, v) : 0;
	if (want && want < UINT32_MAX / 2 && want * LOAD_DEN > (size_t)s->cap * LOAD_NUM &&
	    slot_grow(s, (uint32_t)want))
		return -ENOMEM;
	switch (in->arity) {
	case INSTR_SCALAR:
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return -EINVAL;
		if (s)
			s->total += (uint64_t)json_integer_value(v);
		return 0;
	case INSTR_NUMERIC:
		return load_dist(in, s, 0, v);
	default:
		if (!json_is_object(v))
			return -EINVAL;
		json_object_foreach((json_t *)v, k, kv) {
			if (in->arity == INSTR_DISCRETE &&
			    (!json_is_integer(kv) || json_integer_value(kv) < 0))
				return -EINVAL;
			if (in->arity == INSTR_DISCRETE_NUMERIC && (ret = load_dist(in, NULL, 0, kv)))
				return ret;
			if (!s)
				continue;
			klen = strlen(k);
			id = keytab_intern(&in->keys, &k, &klen, 1);
			if (!id)
				return -ENOMEM;
			if (in->arity == INSTR_DISCRETE)
				ret = json_integer_value(kv) ?
				      slot_add(in, s, id << BIDX_BITS,
					       (uint64_t)json_integer_value(kv)) : 0;
			else
				ret = load_dist(in, s, id, kv);
			if (!in->keys.byid[id]->refs) {
				in->keys.byid[id]->refs = 1;
				keytab_unref(&in->keys, id);
			}
			if (ret)
				return ret;
		}
		return 0;
	}
}

static int check_data_header(const struct instr *in, const json_t *data)
{
	const json_t *d = json_object_get(data, "decomposition");
	int i;

	if (!json_is_object(data) ||
	    !json_is_string(json_object_get(data, "metric")) ||
	    strcmp(json_string_value(json_object_get(data, "metric")), in->m->name) ||
	    json_integer_value(json_object_get(data, "granularity")) != in->gran ||
	    !json_is_array(d) || json_array_size(d) != (size_t)in->ndecomp ||
	    !json_is_array(json_object_get(data, "slots")))
		return -EINVAL;
	for (i = 0; i < in->ndecomp; i++)
		if (!json_is_string(json_array_get(d, i)) ||
		    strcmp(json_string_value(json_array_get(d, i)),
			   in->m->fields[in->decomp[i]]->name))
			return -EINVAL;
	return 0;
}

int instr__data_from_json(struct instr *in, const json_t *data)
{
	const json_t *slots, *e, *t;
	struct slot *s;
	size_t i;
	uint32_t j;
	int ret;

	if (check_data_header(in, data))
		return -EINVAL;
	slots = json_object_get(data, "slots");
	json_array_foreach(slots, i, e) {
		t = json_object_get(e, "start_time");
		if (!json_is_integer(t) || json_integer_value(t) % in->gran ||
		    load_value(in, NULL, json_object_get(e, "value")))
			return -EINVAL;
	}
	for (j = 0; j < in->nslots; j++)
		slot_clear(in, &in->slots[j], INT64_MIN);
	in->newest = INT64_MIN;
	json_array_foreach(slots, i, e) {
		s = slot_for(in, json_integer_value(json_object_get(e, "start_time")));
		if (!s)
			continue;	/* older than what the ring holds now */
		ret = load_value(in, s, json_object_get(e, "value"));
		if (ret)
			return ret;
	}
	return 0;
}
