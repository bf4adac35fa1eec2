#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zstd.h>

#include "common/grow.h"
#include "engine/metric.h"
#include "record/format.h"
#include "record/reader.h"

#define RECORD_MAX_METRICS 64

struct table_at {
	int64_t time;
	json_t *json;
};

struct tables {
	struct table_at *v;
	size_t n, cap;
};

struct recorded_metric {
	int id;				/* enum metric_id, -1: unknown to this kvmscope */
	size_t nfields;
	int field[RECORD_MAX_FIELDS];	/* recorded field j -> metric.h index, -1 unknown */
	int numeric[RECORD_MAX_FIELDS];	/* recorded field j is numeric */
};

struct record_reader {
	char *path;
	FILE *f;
	uint64_t offset;		/* of the next chunk */
	json_t *meta;
	const char *hostname;
	int version;
	int64_t first;
	size_t nmetrics;
	struct recorded_metric metrics[RECORD_MAX_METRICS];
	uint64_t has_field[METRIC__COUNT];
	/* the current chunk */
	unsigned char *stored, *payload;
	size_t stored_cap, payload_cap, len, pos;
	int64_t last_before;		/* the last mark returned; INT64_MIN before one */
	/* the second being assembled */
	struct record *recs;
	int64_t (*str_off)[RECORD_MAX_FIELDS];	/* per record: offset in strs, -1 = NULL */
	size_t nrecs, recs_cap, str_off_cap;
	char *strs;
	size_t strs_len, strs_cap;
	uint64_t drops[METRIC__COUNT];
	struct tables vms, sources;
	struct record_chunk_info *chunks;
	size_t nchunks, chunks_cap;
	int torn;
	uint64_t torn_offset;
	int ended;
};

/* Payload decoding: each returns 0, or -EBADMSG when the entry runs past
 * the payload (a chunk that passed its CRC but was not written by us). */
static int get_varint(struct record_reader *r, uint64_t *v)
{
	uint64_t x = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		unsigned char c;

		if (r->pos >= r->len)
			return -EBADMSG;
		c = r->payload[r->pos++];
		x |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -EBADMSG;
}

static int get_svarint(struct record_reader *r, int64_t *v)
{
	uint64_t u = 0;
	int rc = get_varint(r, &u);

	*v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
	return rc;
}

static int get_byte(struct record_reader *r, unsigned char *c)
{
	if (r->pos >= r->len)
		return -EBADMSG;
	*c = r->payload[r->pos++];
	return 0;
}

/* A length-prefixed byte string in place: *p points into the payload. */
static int get_bytes(struct record_reader *r, size_t len, const unsigned char **p)
{
	if (len > r->len - r->pos)
		return -EBADMSG;
	*p = r->payload + r->pos;
	r->pos += len;
	return 0;
}

/* A JSON entry's text, parsed; new reference owned by the caller. */
static int get_json(struct record_reader *r, json_t **out)
{
	const unsigned char *p;
	uint64_t len;
	int rc = get_varint(r, &len);

	if (!rc)
		rc = get_bytes(r, (size_t)len, &p);
	if (rc)
		return rc;
	*out = json_loadb((const char *)p, (size_t)len, JSON_DECODE_ANY, NULL);
	return *out ? 0 : -EBADMSG;
}

static int read_fully(FILE *f, void *buf, size_t len)
{
	return fread(buf, 1, len, f) == len ? 0 : -1;
}

/* After a chunk that claims more bytes than the file has: is there a whole
 * chunk (magic, sizes, CRC) further on? Then its size was damaged, not cut
 * by a crash. Leaves the stream at the end. */
static int valid_chunk_follows(struct record_reader *r, uint64_t from)
{
	unsigned char *rest = NULL;
	size_t len = 0, cap = 0, n;
	int found = 0;

	if (fseeko(r->f, (off_t)from, SEEK_SET))
		return 0;
	for (;;) {
		if (array__grow((void **)&rest, &cap, len + 65536, 1))
			break;
		n = fread(rest + len, 1, 65536, r->f);
		len += n;
		if (n < 65536 || len > 2 * (size_t)RECORD_CHUNK_MAX)
			break;
	}
	for (size_t i = 0; !found && i + RECORD_CHUNK_HEADER_SIZE <= len; i++) {
		uint32_t stored;

		if (memcmp(rest + i, RECORD_CHUNK_MAGIC, 4))
			continue;
		stored = record_le32_get(rest + i + 4);
		found = stored <= len - i - RECORD_CHUNK_HEADER_SIZE &&
			record__chunk_crc(stored, record_le32_get(rest + i + 8),
					  rest + i + RECORD_CHUNK_HEADER_SIZE) ==
				record_le32_get(rest + i + 12);
	}
	free(rest);
	return found;
}

/* Reads the chunk at r->offset into r->payload. 1: read; 0: the end (clean
 * or torn); -EBADMSG with a message; -ENOMEM. */
static int load_chunk(struct record_reader *r, char *err, size_t errlen)
{
	unsigned char h[RECORD_CHUNK_HEADER_SIZE];
	uint32_t stored, raw, crc;
	size_t got, n;
	int c;

	got = fread(h, 1, sizeof(h), r->f);
	if (got == 0 && feof(r->f))
		return 0;
	if (got < sizeof(h))
		goto torn;
	if (memcmp(h, RECORD_CHUNK_MAGIC, 4)) {
		/* a crash can leave the end of a file zero-filled */
		int all_zero = 1;

		for (size_t i = 0; i < sizeof(h); i++)
			all_zero &= h[i] == 0;
		while (all_zero && (c = fgetc(r->f)) != EOF)
			all_zero = c == 0;
		if (all_zero)
			goto torn;
		snprintf(err, errlen, "%s is corrupt: no chunk header at byte %llu (read up to second %lld)",
			 r->path, (unsigned long long)r->offset, (long long)r->last_before);
		return -EBADMSG;
	}
	stored = record_le32_get(h + 4);
	raw = record_le32_get(h + 8);
	crc = record_le32_get(h + 12);
	if (stored > RECORD_CHUNK_MAX || raw > RECORD_CHUNK_MAX) {
		snprintf(err, errlen, "%s is corrupt: the chunk at byte %llu claims %u bytes (read up to second %lld)",
			 r->path, (unsigned long long)r->offset, stored > raw ? stored : raw,
			 (long long)r->last_before);
		return -EBADMSG;
	}
	if (array__grow((void **)&r->stored, &r->stored_cap, stored ? stored : 1, 1) ||
	    array__grow((void **)&r->payload, &r->payload_cap, raw ? raw : 1, 1)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (read_fully(r->f, r->stored, stored)) {
		if (valid_chunk_follows(r, r->offset + 1)) {
			snprintf(err, errlen, "%s is corrupt: the chunk at byte %llu claims more bytes than "
				 "the file holds, yet whole chunks follow (read up to second %lld)",
				 r->path, (unsigned long long)r->offset, (long long)r->last_before);
			return -EBADMSG;
		}
		goto torn;
	}
	if (record__chunk_crc(stored, raw, r->stored) != crc) {
		if ((c = fgetc(r->f)) == EOF)
			goto torn;	/* the last chunk: written in part when the recorder died */
		snprintf(err, errlen, "%s is corrupt: CRC mismatch in the chunk at byte %llu (read up to second %lld)",
			 r->path, (unsigned long long)r->offset, (long long)r->last_before);
		return -EBADMSG;
	}
	n = ZSTD_decompress(r->payload, raw, r->stored, stored);
	if (ZSTD_isError(n) || n != raw) {
		snprintf(err, errlen, "%s is corrupt: the chunk at byte %llu does not decompress (%s)",
			 r->path, (unsigned long long)r->offset,
			 ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
		return -EBADMSG;
	}
	if (array__grow((void **)&r->chunks, &r->chunks_cap, r->nchunks + 1, sizeof(*r->chunks))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r->chunks[r->nchunks++] = (struct record_chunk_info){
		r->offset, r->offset + sizeof(h) + stored, INT64_MIN };
	r->offset += sizeof(h) + stored;
	r->len = raw;
	r->pos = 0;
	return 1;
torn:
	r->torn = 1;
	r->torn_offset = r->offset;
	return 0;
}

static int parse_meta(struct record_reader *r, char *err, size_t errlen)
{
	json_t *metrics = json_object_get(r->meta, "metrics"), *m;
	size_t i;

	if (!json_is_object(r->meta) || !json_is_array(metrics) ||
	    !json_is_string(json_object_get(r->meta, "hostname")) ||
	    !json_is_integer(json_object_get(r->meta, "first")) ||
	    json_array_size(metrics) > RECORD_MAX_METRICS) {
		snprintf(err, errlen, "%s is corrupt: its description (META) is not one kvmscope writes",
			 r->path);
		return -EBADMSG;
	}
	r->hostname = json_string_value(json_object_get(r->meta, "hostname"));
	r->first = json_integer_value(json_object_get(r->meta, "first"));
	r->nmetrics = json_array_size(metrics);
	json_array_foreach(metrics, i, m) {
		struct recorded_metric *rm = &r->metrics[i];
		const struct metric_desc *md = metric__by_name(json_string_value(json_object_get(m, "name")) ?: "");
		json_t *fields = json_object_get(m, "fields"), *numeric = json_object_get(m, "numeric"), *fj;
		size_t j, k;

		if (!json_is_array(fields) || json_array_size(fields) > RECORD_MAX_FIELDS ||
		    !json_is_array(numeric)) {
			snprintf(err, errlen, "%s is corrupt: metric %zu of its description has no field list",
				 r->path, i);
			return -EBADMSG;
		}
		rm->id = md ? (int)md->id : -1;
		rm->nfields = json_array_size(fields);
		json_array_foreach(fields, j, fj) {
			int f = md ? metric__field_index(md, json_string_value(fj) ?: "") : -1;

			json_t *nj;

			rm->field[j] = f < 0 ? -1 : f;
			/* the recording says how each field is written, so that one
			 * this kvmscope does not know can be skipped */
			rm->numeric[j] = 0;
			json_array_foreach(numeric, k, nj)
				if (json_equal(nj, fj))
					rm->numeric[j] = 1;
			if (f >= 0 && rm->numeric[j] != (md->fields[f]->type == FIELD_NUMERIC)) {
				snprintf(err, errlen, "%s: field %s of %s changed type since it was recorded",
					 r->path, json_string_value(fj), md->name);
				return -EBADMSG;
			}
			if (f >= 0)
				r->has_field[md->id] |= FIELD_BIT(f);
		}
	}
	return 0;
}

static int tables_add(struct tables *t, int64_t time, json_t *json)
{
	if (array__grow((void **)&t->v, &t->cap, t->n + 1, sizeof(*t->v))) {
		json_decref(json);
		return -ENOMEM;
	}
	t->v[t->n++] = (struct table_at){ time, json };
	return 0;
}

static const json_t *tables_at(const struct tables *t, int64_t time)
{
	const json_t *best = NULL;

	for (size_t i = 0; i < t->n && t->v[i].time <= time; i++)
		best = t->v[i].json;
	return best;
}

static int decode_record(struct record_reader *r)
{
	struct recorded_metric *rm;
	struct record *rec;
	unsigned char slot;
	uint64_t v;
	int64_t *offs;
	int rc;

	if ((rc = get_byte(r, &slot)))
		return rc;
	if (slot >= r->nmetrics)
		return -EBADMSG;
	rm = &r->metrics[slot];
	if (array__grow((void **)&r->recs, &r->recs_cap, r->nrecs + 1, sizeof(*r->recs)))
		return -ENOMEM;
	if (r->str_off_cap < r->recs_cap) {
		void *p = realloc(r->str_off, r->recs_cap * sizeof(*r->str_off));

		if (!p)
			return -ENOMEM;
		r->str_off = p;
		r->str_off_cap = r->recs_cap;
	}
	rec = &r->recs[r->nrecs];
	offs = r->str_off[r->nrecs];
	memset(rec, 0, sizeof(*rec));
	for (int i = 0; i < RECORD_MAX_FIELDS; i++)
		offs[i] = -1;
	rec->metric = (enum metric_id)rm->id;
	if ((rc = get_svarint(r, &rec->time)) || (rc = get_varint(r, &rec->value)) ||
	    (rc = get_varint(r, &v)))
		return rc;
	rec->num_absent = (uint32_t)v;
	/* numeric fields not recorded are as unknown as the kernel's absent ones */
	if (rm->id >= 0) {
		const struct metric_desc *md = metric__get((enum metric_id)rm->id);

		for (unsigned int f = 0; f < md->nfields; f++)
			if (md->fields[f]->type == FIELD_NUMERIC &&
			    !(r->has_field[rm->id] & FIELD_BIT(f)))
				rec->num_absent |= 1u << f;
	}
	for (size_t j = 0; j < rm->nfields; j++) {
		const unsigned char *p;
		int f = rm->field[j];

		if ((rc = get_varint(r, &v)))
			return rc;
		if (rm->numeric[j]) {
			if (f >= 0)
				rec->num[f] = v;
			continue;
		}
		if (!v)
			continue;
		if ((rc = get_bytes(r, (size_t)(v - 1), &p)))
			return rc;
		if (f < 0)
			continue;
		if (array__grow((void **)&r->strs, &r->strs_cap, r->strs_len + (size_t)v, 1))
			return -ENOMEM;
		memcpy(r->strs + r->strs_len, p, (size_t)(v - 1));
		r->strs[r->strs_len + v - 1] = '\0';
		offs[f] = (int64_t)r->strs_len;
		r->strs_len += (size_t)v;
	}
	if (rm->id >= 0)
		r->nrecs++;	/* a metric this kvmscope does not know is skipped */
	return 0;
}

/* Entries up to the next MARK. 1: a mark (its value in *before); 0: the
 * payload ended first; -EBADMSG, -ENOMEM. */
static int decode_until_mark(struct record_reader *r, int64_t *before)
{
	while (r->pos < r->len) {
		unsigned char tag;
		int64_t t;
		json_t *j;
		uint64_t n, v;
		int rc = get_byte(r, &tag);

		if (rc)
			return rc;
		switch (tag) {
		case RECORD_TAG_META:
			/* every file of a rotated recording starts with it */
			if ((rc = get_json(r, &j)))
				return rc;
			json_decref(j);
			break;
		case RECORD_TAG_VMS:
		case RECORD_TAG_SOURCES:
			if ((rc = get_svarint(r, &t)) || (rc = get_json(r, &j)))
				return rc;
			if ((rc = tables_add(tag == RECORD_TAG_VMS ? &r->vms : &r->sources, t, j)))
				return rc;
			break;
		case RECORD_TAG_RECORD:
			if ((rc = decode_record(r)))
				return rc;
			break;
		case RECORD_TAG_MARK:
			if ((rc = get_svarint(r, before)) || (rc = get_varint(r, &n)))
				return rc;
			for (uint64_t i = 0; i < n; i++) {
				unsigned char slot;

				if ((rc = get_byte(r, &slot)) || (rc = get_varint(r, &v)))
					return rc;
				if (slot < r->nmetrics && r->metrics[slot].id >= 0)
					r->drops[r->metrics[slot].id] = v;
			}
			return 1;
		default:
			return -EBADMSG;
		}
	}
	return 0;
}

/* *out is the caller's (record_reader__close). */
int record_reader__open(const char *path, struct record_reader **out, char *err, size_t errlen)
{
	struct record_reader *r = calloc(1, sizeof(*r));
	unsigned char h[RECORD_FILE_HEADER_SIZE];
	size_t got;
	int rc = -ENOMEM;

	*out = NULL;
	if (!r || !(r->path = strdup(path))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	r->last_before = INT64_MIN;
	r->f = fopen(path, "rb");
	if (!r->f) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	got = fread(h, 1, sizeof(h), r->f);
	if (got < RECORD_FILE_MAGIC_LEN || memcmp(h, RECORD_FILE_MAGIC, RECORD_FILE_MAGIC_LEN)) {
		rc = -ENOTSUP;
		snprintf(err, errlen, "%s is not a kvmscope recording (it does not start with the "
			 "recording magic; kvmscope record writes them)", path);
		goto fail;
	}
	if (got < sizeof(h)) {
		rc = -EBADMSG;
		snprintf(err, errlen, "%s holds no complete second: it ends inside its header", path);
		goto fail;
	}
	r->version = (int)record_le32_get(h + 8);
	if (r->version != RECORD_FILE_VERSION) {
		rc = -ENOTSUP;
		snprintf(err, errlen, "%s is a recording of format version %u; this kvmscope reads version %d",
			 path, record_le32_get(h + 8), RECORD_FILE_VERSION);
		goto fail;
	}
	if (record_le32_get(h + 12) < RECORD_FILE_HEADER_SIZE ||
	    record_le32_get(h + 12) > 4096 ||
	    fseek(r->f, (long)record_le32_get(h + 12), SEEK_SET)) {
		rc = -EBADMSG;
		snprintf(err, errlen, "%s is corrupt: its header size is %u", path, record_le32_get(h + 12));
		goto fail;
	}
	r->offset = record_le32_get(h + 12);
	rc = load_chunk(r, err, errlen);
	if (rc == 0) {
		rc = -EBADMSG;
		snprintf(err, errlen, "%s holds no complete second (the recorder stopped before writing one)",
			 path);
	}
	if (rc < 0)
		goto fail;
	{
		unsigned char tag = 0;

		if (get_byte(r, &tag) || tag != RECORD_TAG_META || get_json(r, &r->meta)) {
			rc = -EBADMSG;
			snprintf(err, errlen, "%s is corrupt: its first chunk does not describe the recording",
				 path);
			goto fail;
		}
	}
	rc = parse_meta(r, err, errlen);
	if (rc)
		goto fail;
	*out = r;
	return 0;
fail:
	record_reader__close(r);
	return rc;
}

void record_reader__close(struct record_reader *r)
{
	if (!r)
		return;
	if (r->f)
		fclose(r->f);
	for (size_t i = 0; i < r->vms.n; i++)
		json_decref(r->vms.v[i].json);
	for (size_t i = 0; i < r->sources.n; i++)
		json_decref(r->sources.v[i].json);
	free(r->vms.v);
	free(r->sources.v);
	json_decref(r->meta);
	free(r->stored);
	free(r->payload);
	free(r->recs);
	free(r->str_off);
	free(r->strs);
	free(r->chunks);
	free(r->path);
	free(r);
}

int record_reader__next_second(struct record_reader *r, struct record_second *sec,
			       char *err, size_t errlen)
{
	int64_t before = 0;
	int rc;

	r->nrecs = 0;
	r->strs_len = 0;
	for (;;) {
		if (r->ended)
			return 0;
		rc = decode_until_mark(r, &before);
		if (rc == 1)
			break;
		if (rc < 0) {
			if (rc == -ENOMEM)
				snprintf(err, errlen, "out of memory");
			else
				snprintf(err, errlen, "%s is corrupt: a chunk ending at byte %llu holds "
					 "entries kvmscope does not write (read up to second %lld)",
					 r->path, (unsigned long long)r->offset, (long long)r->last_before);
			return rc;
		}
		rc = load_chunk(r, err, errlen);
		if (rc <= 0) {
			/* records after the last mark are of a second not complete */
			r->ended = rc == 0;
			return rc;
		}
	}
	if (r->nchunks)
		r->chunks[r->nchunks - 1].before = before;
	for (size_t i = 0; i < r->nrecs; i++)
		for (int f = 0; f < RECORD_MAX_FIELDS; f++)
			r->recs[i].str[f] = r->str_off[i][f] < 0 ? NULL : r->strs + r->str_off[i][f];
	/* one chunk per second from the writer: a file that starts with a
	 * rotation has no earlier mark, and its first mark closes one second */
	sec->from = r->last_before == INT64_MIN ? before - 1 : r->last_before;
	sec->before = before;
	sec->recs = r->recs;
	sec->nrecs = r->nrecs;
	memcpy(sec->drops, r->drops, sizeof(sec->drops));
	r->last_before = before;
	return 1;
}

const char *record_reader__hostname(const struct record_reader *r) { return r->hostname; }
int record_reader__version(const struct record_reader *r) { return r->version; }
int64_t record_reader__first(const struct record_reader *r) { return r->first; }
const json_t *record_reader__meta(const struct record_reader *r) { return r->meta; }

bool record_reader__has_metric(const struct record_reader *r, enum metric_id m)
{
	for (size_t i = 0; i < r->nmetrics; i++)
		if (r->metrics[i].id == (int)m)
			return true;
	return false;
}

bool record_reader__has_field(const struct record_reader *r, enum metric_id m, int f)
{
	return (unsigned int)m < METRIC__COUNT && f >= 0 && f < 64 &&
	       (r->has_field[m] & FIELD_BIT(f));
}

const json_t *record_reader__vms_at(const struct record_reader *r, int64_t t)
{
	return tables_at(&r->vms, t);
}

const json_t *record_reader__sources_at(const struct record_reader *r, int64_t t)
{
	return tables_at(&r->sources, t);
}

int record_reader__torn(const struct record_reader *r, uint64_t *offset)
{
	if (offset)
		*offset = r->torn_offset;
	return r->torn;
}

size_t record_reader__chunks(const struct record_reader *r, const struct record_chunk_info **out)
{
	*out = r->chunks;
	return r->nchunks;
}

const json_t *record_reader__vm_table(const struct record_reader *r, size_t i, int64_t *since)
{
	if (i >= r->vms.n)
		return NULL;
	if (since)
		*since = r->vms.v[i].time;
	return r->vms.v[i].json;
}
