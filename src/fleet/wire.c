/* The fleet's binary slot messages (fleet/wire.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/varint.h"
#include "common/grow.h"
#include "common/utf8.h"
#include "engine/merge.h"
#include "fleet/wire.h"

enum { TAG_INT = 0, TAG_DIST = 1, TAG_MAP_INT = 2, TAG_MAP_DIST = 3 };

static int buf_put(struct fleet_buf *b, const void *p, size_t n)
{
	void *d = b->data;

	if (array__grow(&d, &b->cap, b->len + n, 1))
		return -ENOMEM;
	b->data = d;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static int put_le(struct fleet_buf *b, uint64_t v, int bytes)
{
	unsigned char x[8];

	for (int i = 0; i < bytes; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	return buf_put(b, x, (size_t)bytes);
}

static int put_uvar(struct fleet_buf *b, uint64_t v)
{
	unsigned char x[VARINT_MAX_BYTES];

	return buf_put(b, x, varint__encode(x, v));
}

static int put_svar(struct fleet_buf *b, int64_t v)
{
	return put_uvar(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

int fleet_wire__put_header(struct fleet_buf *b, const struct fleet_wire_header *h)
{
	unsigned char m[2] = { FLEET_WIRE_MAGIC, FLEET_WIRE_VERSION };

	if (buf_put(b, m, 2) || put_le(b, h->flags, 2) || put_le(b, h->granularity, 4) ||
	    put_le(b, (uint64_t)h->from, 8) || put_le(b, (uint64_t)h->start, 8) ||
	    put_le(b, (uint64_t)h->drained_us, 8) || put_le(b, h->nslots, 4))
		return -ENOMEM;
	return 0;
}

/* Buckets as value__check accepted them: [[lo, hi], count]. */
static int put_dist(struct fleet_buf *b, const json_t *a)
{
	size_t i;
	json_t *e;

	if (put_uvar(b, json_array_size(a)))
		return -ENOMEM;
	json_array_foreach(a, i, e) {
		const json_t *r = json_array_get(e, 0);
		json_int_t lo = json_integer_value(json_array_get(r, 0));
		json_int_t hi = json_integer_value(json_array_get(r, 1));

		if (put_svar(b, lo) || put_uvar(b, (uint64_t)hi - (uint64_t)lo) ||
		    put_svar(b, json_integer_value(json_array_get(e, 1))))
			return -ENOMEM;
	}
	return 0;
}

static int put_key(struct fleet_buf *b, const char *k)
{
	size_t n = strlen(k);

	if (n > FLEET_WIRE_MAX_KEY)
		return -EINVAL;
	return put_uvar(b, n) || buf_put(b, k, n) ? -ENOMEM : 0;
}

int fleet_wire__put_value(struct fleet_buf *b, const json_t *v)
{
	size_t before = b->len;
	unsigned char tag;
	const char *k;
	json_t *kv;
	int rc = 0;

	if (value__check(v))
		return -EINVAL;
	if (json_is_integer(v)) {
		tag = TAG_INT;
		rc = buf_put(b, &tag, 1) ? -ENOMEM : put_svar(b, json_integer_value(v));
	} else if (json_is_array(v)) {
		tag = TAG_DIST;
		rc = buf_put(b, &tag, 1) ? -ENOMEM : put_dist(b, v);
	} else {
		/* value__check: every member has the same shape */
		kv = json_object_iter_value(json_object_iter((json_t *)v));
		tag = kv && json_is_array(kv) ? TAG_MAP_DIST : TAG_MAP_INT;
		rc = buf_put(b, &tag, 1) || put_uvar(b, json_object_size(v)) ? -ENOMEM : 0;
		json_object_foreach((json_t *)v, k, kv) {
			if (rc)
				break;
			rc = put_key(b, k);
			if (!rc)
				rc = tag == TAG_MAP_DIST ? put_dist(b, kv) : put_svar(b, json_integer_value(kv));
		}
	}
	if (rc)
		b->len = before;
	return rc;
}

/* ---- decoding ---- */

struct reader {
	const unsigned char *p, *end;
	size_t keys_left;
	char *err;
	size_t errlen;
};

static int bad(struct reader *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, r->errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int get_le(struct reader *r, int bytes, uint64_t *v)
{
	if (r->end - r->p < bytes)
		return bad(r, "message shorter than its header");
	*v = 0;
	for (int i = 0; i < bytes; i++)
		*v |= (uint64_t)r->p[i] << (8 * i);
	r->p += bytes;
	return 0;
}

static int get_uvar(struct reader *r, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		uint64_t byte;

		if (r->p >= r->end)
			return bad(r, "a number runs past the end");
		byte = *r->p++;
		if (shift == 63 && byte > 1)
			return bad(r, "a number over 64 bits");
		*v |= (byte & 0x7f) << shift;
		if (!(byte & 0x80))
			return 0;
	}
	return bad(r, "a number over 64 bits");
}

static int get_svar(struct reader *r, int64_t *v)
{
	uint64_t u;
	int rc = get_uvar(r, &u);

	*v = (int64_t)((u >> 1) ^ (~(u & 1) + 1));
	return rc;
}

/* A count of items that each take at least min_bytes: more than the bytes
 * left is malformed (and would otherwise allocate for nothing). */
static int get_count(struct reader *r, size_t min_bytes, size_t *n)
{
	uint64_t u;
	int rc = get_uvar(r, &u);

	if (rc)
		return rc;
	if (u > (uint64_t)(r->end - r->p) / min_bytes)
		return bad(r, "a count of %llu items past the end", (unsigned long long)u);
	*n = (size_t)u;
	return 0;
}

static int get_dist(struct reader *r, json_t **out)
{
	json_t *a = json_array();
	size_t n = 0;
	int rc = a ? get_count(r, 3, &n) : -ENOMEM;

	for (size_t i = 0; !rc && i < n; i++) {
		int64_t lo, cnt;
		uint64_t span;

		rc = get_svar(r, &lo);
		if (!rc)
			rc = get_uvar(r, &span);
		if (!rc)
			rc = get_svar(r, &cnt);
		if (!rc && (span > (uint64_t)INT64_MAX || lo > INT64_MAX - (int64_t)span))
			rc = bad(r, "a bucket's upper bound past 2^63");
		if (!rc && json_array_append_new(a, json_pack("[[I,I],I]", (json_int_t)lo,
							       (json_int_t)(lo + (int64_t)span),
							       (json_int_t)cnt)))
			rc = -ENOMEM;
	}
	if (rc) {
		json_decref(a);
		return rc;
	}
	*out = a;
	return 0;
}

static int get_map(struct reader *r, bool dists, json_t **out)
{
	json_t *o = json_object(), *v;
	size_t n = 0, klen = 0;
	char key[FLEET_WIRE_MAX_KEY + 1];
	int64_t iv;
	int rc = o ? get_count(r, 2, &n) : -ENOMEM;

	if (!rc && n > r->keys_left)
		rc = -E2BIG;
	if (!rc)
		r->keys_left -= n;
	for (size_t i = 0; !rc && i < n; i++) {
		rc = get_count(r, 1, &klen);
		if (!rc && klen > FLEET_WIRE_MAX_KEY)
			rc = bad(r, "a key of %zu bytes (at most %d)", klen, FLEET_WIRE_MAX_KEY);
		if (rc)
			break;
		memcpy(key, r->p, klen);
		key[klen] = '\0';
		r->p += klen;
		if (memchr(key, '\0', klen) || !utf8__valid(key, klen)) {
			rc = bad(r, "a key that is not UTF-8 text");
			break;
		}
		if (json_object_get(o, key)) {
			rc = bad(r, "key '%.64s' twice", key);
			break;
		}
		if (dists)
			rc = get_dist(r, &v);
		else if (!(rc = get_svar(r, &iv)) && !(v = json_integer((json_int_t)iv)))
			rc = -ENOMEM;
		if (!rc && json_object_set_new(o, key, v))
			rc = -ENOMEM;
	}
	if (rc) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return 0;
}

static int get_value(struct reader *r, json_t **out)
{
	int64_t iv;
	int rc;

	if (r->p >= r->end)
		return bad(r, "a value missing at the end");
	switch (*r->p++) {
	case TAG_INT:
		rc = get_svar(r, &iv);
		if (!rc && !(*out = json_integer((json_int_t)iv)))
			rc = -ENOMEM;
		return rc;
	case TAG_DIST:
		return get_dist(r, out);
	case TAG_MAP_INT:
		return get_map(r, false, out);
	case TAG_MAP_DIST:
		return get_map(r, true, out);
	default:
		return bad(r, "unknown value tag %u", r->p[-1]);
	}
}

int fleet_wire__decode(const void *data, size_t len, size_t max_keys,
		       struct fleet_wire_header *h, json_t **values, char *err, size_t errlen)
{
	struct reader r = { data, (const unsigned char *)data + len, max_keys, err, errlen };
	uint64_t flags = 0, gran = 0, from = 0, start = 0, drained = 0, nslots = 0;
	size_t n = 0;
	int rc;

	err[0] = '\0';
	if (len < FLEET_WIRE_HEADER)
		return bad(&r, "%zu bytes: shorter than the %d-byte header", len, FLEET_WIRE_HEADER);
	if (r.p[0] != FLEET_WIRE_MAGIC || r.p[1] != FLEET_WIRE_VERSION)
		return bad(&r, "not a version %d slot message", FLEET_WIRE_VERSION);
	r.p += 2;
	if (get_le(&r, 2, &flags) || get_le(&r, 4, &gran) || get_le(&r, 8, &from) ||
	    get_le(&r, 8, &start) || get_le(&r, 8, &drained) || get_le(&r, 4, &nslots))
		return -EINVAL;
	if (!gran || gran > 86400)
		return bad(&r, "granularity %llu", (unsigned long long)gran);
	if (!nslots || nslots > FLEET_WIRE_MAX_SLOTS)
		return bad(&r, "%llu slots (1..%d)", (unsigned long long)nslots, FLEET_WIRE_MAX_SLOTS);
	if ((int64_t)start % (int64_t)gran)
		return bad(&r, "slot start %lld is not a multiple of the granularity",
			   (long long)(int64_t)start);
	*h = (struct fleet_wire_header){ (uint16_t)flags, (uint32_t)gran, (int64_t)from,
					 (int64_t)start, (int64_t)drained, (uint32_t)nslots };
	for (rc = 0; !rc && n < nslots; n++)
		rc = get_value(&r, &values[n]);
	if (rc)
		n--;	/* the failed one holds nothing */
	if (!rc && r.p != r.end)
		rc = bad(&r, "%zu bytes after the last value", (size_t)(r.end - r.p));
	if (!rc) {
		/* the same shape throughout: a message mixing arities is no one
		 * instrumentation's */
		json_t *acc = json_deep_copy(values[0]);

		for (size_t i = 1; !rc && acc && i < n; i++)
			if (value__merge(acc, values[i]) == -EINVAL)
				rc = bad(&r, "slot %zu has another shape than slot 0", i);
		if (!acc)
			rc = -ENOMEM;
		json_decref(acc);
	}
	if (rc) {
		while (n)
			json_decref(values[--n]);
		if (rc == -E2BIG)
			snprintf(err, errlen, "more than %zu keys", max_keys);
	}
	return rc;
}
