#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include "common/varint.h"
#include "common/grow.h"
#include "engine/metric.h"
#include "record/format.h"
#include "record/writer.h"

struct buf {
	unsigned char *p;
	size_t len, cap;
	int failed;		/* an allocation failed: the chunk is lost, said at mark */
};

static void buf_reserve(struct buf *b, size_t more)
{
	if (!b->failed && array__grow((void **)&b->p, &b->cap, b->len + more, 1))
		b->failed = 1;
}

static void buf_put(struct buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (b->failed)
		return;
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void buf_byte(struct buf *b, unsigned char c)
{
	buf_put(b, &c, 1);
}

static void buf_varint(struct buf *b, uint64_t v)
{
	unsigned char tmp[VARINT_MAX_BYTES];

	buf_put(b, tmp, varint__encode(tmp, v));
}

static void buf_svarint(struct buf *b, int64_t v)
{
	buf_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void buf_text(struct buf *b, const char *s)
{
	size_t len = strlen(s);

	buf_varint(b, len);
	buf_put(b, s, len);
}

struct record_writer {
	char *path;
	int fd;
	uint64_t file_size;
	uint64_t chunks_in_file;
	struct record_writer_opts opts;
	enum metric_id *metrics;
	uint64_t *fields;
	int slot_of[METRIC__COUNT];	/* metric id -> index in metrics, -1 */
	char *meta;			/* META JSON, written at the start of every file */
	char *vms, *sources;		/* the last ones written, repeated after a rotation */
	int64_t vms_time, sources_time;
	struct buf payload;
	unsigned char *zbuf;
	size_t zcap;
	ZSTD_CCtx *zctx;
	struct record_writer_stats st;
};

/* New reference owned by the caller: the META entry's JSON. */
static char *meta_json(const struct record_writer_opts *o)
{
	json_t *m = json_object(), *metrics = json_array();
	char *text = NULL;

	if (!m || !metrics)
		goto out;
	json_object_set_new(m, "format", json_string("kvmscope recording"));
	json_object_set_new(m, "version", json_integer(RECORD_FILE_VERSION));
	json_object_set_new(m, "hostname", json_string(o->hostname ? o->hostname : ""));
	json_object_set_new(m, "created", json_integer((json_int_t)time(NULL)));
	json_object_set_new(m, "first", json_integer((json_int_t)o->first));
	for (size_t i = 0; i < o->nmetrics; i++) {
		const struct metric_desc *md = metric__get(o->metrics[i]);
		json_t *fields = json_array(), *numeric = json_array();

		for (unsigned int f = 0; f < md->nfields; f++) {
			if (!(o->fields[i] & FIELD_BIT(f)))
				continue;
			json_array_append_new(fields, json_string(md->fields[f]->name));
			if (md->fields[f]->type == FIELD_NUMERIC)
				json_array_append_new(numeric, json_string(md->fields[f]->name));
		}
		json_array_append_new(metrics, json_pack("{s:s, s:o, s:o}", "name", md->name,
							 "fields", fields, "numeric", numeric));
	}
	json_object_set(m, "metrics", metrics);
	text = json_dumps(m, JSON_COMPACT);
out:
	json_decref(metrics);
	json_decref(m);
	return text;
}

static void put_vms(struct buf *b, int64_t t, const char *json)
{
	buf_byte(b, RECORD_TAG_VMS);
	buf_svarint(b, t);
	buf_text(b, json);
}

static void put_sources(struct buf *b, int64_t t, const char *json)
{
	buf_byte(b, RECORD_TAG_SOURCES);
	buf_svarint(b, t);
	buf_text(b, json);
}

/* The entries every file starts with: META, then the VM table and sources
 * in force, so that each file of a rotated recording reads on its own. */
static void start_payload(struct record_writer *w)
{
	buf_byte(&w->payload, RECORD_TAG_META);
	buf_text(&w->payload, w->meta);
	if (w->vms)
		put_vms(&w->payload, w->vms_time, w->vms);
	if (w->sources)
		put_sources(&w->payload, w->sources_time, w->sources);
}

static int write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int open_file(struct record_writer *w, char *err, size_t errlen)
{
	unsigned char head[RECORD_FILE_HEADER_SIZE];
	int rc;

	w->fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %s: %s", w->path, strerror(errno));
		return rc;
	}
	memcpy(head, RECORD_FILE_MAGIC, RECORD_FILE_MAGIC_LEN);
	record_le32_put(head + 8, RECORD_FILE_VERSION);
	record_le32_put(head + 12, RECORD_FILE_HEADER_SIZE);
	rc = write_all(w->fd, head, sizeof(head));
	if (rc) {
		snprintf(err, errlen, "cannot write %s: %s", w->path, strerror(-rc));
		return rc;
	}
	w->file_size = sizeof(head);
	w->chunks_in_file = 0;
	w->st.bytes += sizeof(head);
	return 0;
}

/* path -> path.1 -> ... -> path.keep (the oldest goes), then a new path. */
static int rotate(struct record_writer *w, char *err, size_t errlen)
{
	size_t n = strlen(w->path) + 16;
	char *from = malloc(n), *to = malloc(n);
	int rc = -ENOMEM;

	if (!from || !to) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	close(w->fd);
	w->fd = -1;
	for (unsigned int i = w->opts.keep; i >= 1; i--) {
		snprintf(to, n, "%s.%u", w->path, i);
		if (i > 1)
			snprintf(from, n, "%s.%u", w->path, i - 1);
		else
			snprintf(from, n, "%s", w->path);
		if (rename(from, to) && errno != ENOENT) {
			rc = -errno;
			snprintf(err, errlen, "cannot rotate %s to %s: %s", from, to, strerror(errno));
			goto out;
		}
	}
	if (!w->opts.keep)
		unlink(w->path);
	rc = open_file(w, err, errlen);
	if (!rc)
		w->st.rotations++;
out:
	free(from);
	free(to);
	return rc;
}

/* Takes ownership of nothing; *out is the caller's. */
int record_writer__open(const char *path, const struct record_writer_opts *opts,
			struct record_writer **out, char *err, size_t errlen)
{
	struct record_writer *w = calloc(1, sizeof(*w));
	int rc = -ENOMEM;

	*out = NULL;
	if (!w)
		goto fail_msg;
	w->fd = -1;
	w->opts = *opts;
	w->path = strdup(path);
	w->metrics = calloc(opts->nmetrics ? opts->nmetrics : 1, sizeof(*w->metrics));
	w->fields = calloc(opts->nmetrics ? opts->nmetrics : 1, sizeof(*w->fields));
	w->zctx = ZSTD_createCCtx();
	if (!w->path || !w->metrics || !w->fields || !w->zctx)
		goto fail_msg;
	for (int m = 0; m < METRIC__COUNT; m++)
		w->slot_of[m] = -1;
	for (size_t i = 0; i < opts->nmetrics; i++) {
		if ((unsigned int)opts->metrics[i] >= METRIC__COUNT || w->slot_of[opts->metrics[i]] >= 0) {
			rc = -EINVAL;
			snprintf(err, errlen, "metric %d not known or given twice", (int)opts->metrics[i]);
			goto fail;
		}
		w->metrics[i] = opts->metrics[i];
		w->fields[i] = opts->fields[i];
		w->slot_of[opts->metrics[i]] = (int)i;
	}
	w->opts.metrics = w->metrics;
	w->opts.fields = w->fields;
	w->opts.hostname = NULL;
	w->meta = meta_json(opts);
	if (!w->meta)
		goto fail_msg;
	if (opts->level)
		ZSTD_CCtx_setParameter(w->zctx, ZSTD_c_compressionLevel, opts->level);
	rc = open_file(w, err, errlen);
	if (rc)
		goto fail;
	start_payload(w);
	*out = w;
	return 0;
fail_msg:
	snprintf(err, errlen, "out of memory");
fail:
	record_writer__close(w);
	return rc;
}

int record_writer__record(struct record_writer *w, const struct record *rec)
{
	const struct metric_desc *md;
	struct buf *b = &w->payload;
	int slot;

	if ((unsigned int)rec->metric >= METRIC__COUNT || (slot = w->slot_of[rec->metric]) < 0)
		return -EINVAL;
	md = metric__get(rec->metric);
	buf_byte(b, RECORD_TAG_RECORD);
	buf_byte(b, (unsigned char)slot);
	buf_svarint(b, rec->time);
	buf_varint(b, rec->value);
	buf_varint(b, rec->num_absent);
	for (unsigned int f = 0; f < md->nfields; f++) {
		if (!(w->fields[slot] & FIELD_BIT(f)))
			continue;
		if (md->fields[f]->type == FIELD_NUMERIC) {
			buf_varint(b, rec->num[f]);
		} else if (!rec->str[f]) {
			buf_varint(b, 0);
		} else {
			size_t len = strlen(rec->str[f]);

			buf_varint(b, len + 1);
			buf_put(b, rec->str[f], len);
		}
	}
	w->st.records++;
	return b->failed ? -ENOMEM : 0;
}

/* *last (owned by w) becomes a copy of json when it differs. 1 changed, 0 same, -ENOMEM. */
static int remember(char **last, const char *json)
{
	char *copy;

	if (*last && !strcmp(*last, json))
		return 0;
	copy = strdup(json);
	if (!copy)
		return -ENOMEM;
	free(*last);
	*last = copy;
	return 1;
}

int record_writer__vms(struct record_writer *w, int64_t t, const char *json)
{
	int rc = remember(&w->vms, json);

	if (rc <= 0)
		return rc;
	w->vms_time = t;
	put_vms(&w->payload, t, json);
	return w->payload.failed ? -ENOMEM : 0;
}

int record_writer__sources(struct record_writer *w, int64_t t, const char *json)
{
	int rc = remember(&w->sources, json);

	if (rc <= 0)
		return rc;
	w->sources_time = t;
	put_sources(&w->payload, t, json);
	return w->payload.failed ? -ENOMEM : 0;
}

/* Compresses w->payload into w->zbuf behind a chunk header; returns the
 * chunk's size or -errno. */
static long build_chunk(struct record_writer *w, char *err, size_t errlen)
{
	size_t bound = ZSTD_compressBound(w->payload.len) + RECORD_CHUNK_HEADER_SIZE, n;
	unsigned char *h;

	if (bound > w->zcap) {
		unsigned char *p = realloc(w->zbuf, bound);

		if (!p) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		w->zbuf = p;
		w->zcap = bound;
	}
	n = ZSTD_compress2(w->zctx, w->zbuf + RECORD_CHUNK_HEADER_SIZE,
			   w->zcap - RECORD_CHUNK_HEADER_SIZE, w->payload.p, w->payload.len);
	if (ZSTD_isError(n)) {
		snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(n));
		return -EIO;
	}
	h = w->zbuf;
	memcpy(h, RECORD_CHUNK_MAGIC, 4);
	record_le32_put(h + 4, (uint32_t)n);
	record_le32_put(h + 8, (uint32_t)w->payload.len);
	record_le32_put(h + 12, record__chunk_crc((uint32_t)n, (uint32_t)w->payload.len,
						   w->zbuf + RECORD_CHUNK_HEADER_SIZE));
	return (long)(n + RECORD_CHUNK_HEADER_SIZE);
}

int record_writer__mark(struct record_writer *w, int64_t before, const uint64_t *drops,
			char *err, size_t errlen)
{
	struct buf *b = &w->payload;
	long size;
	int rc;

	buf_byte(b, RECORD_TAG_MARK);
	buf_svarint(b, before);
	buf_varint(b, w->opts.nmetrics);
	for (size_t i = 0; i < w->opts.nmetrics; i++) {
		buf_byte(b, (unsigned char)i);
		buf_varint(b, drops ? drops[i] : 0);
	}
	if (b->failed || b->len > RECORD_CHUNK_MAX) {
		if (b->failed)
			snprintf(err, errlen, "out of memory: the records before second %lld are lost",
				 (long long)before);
		else
			snprintf(err, errlen, "more than %u bytes in one second: the records before second %lld are lost",
				 RECORD_CHUNK_MAX, (long long)before);
		rc = b->failed ? -ENOMEM : -E2BIG;
		goto out;
	}
	size = build_chunk(w, err, errlen);
	if (size < 0) {
		rc = (int)size;
		goto out;
	}
	if (w->opts.max_size && w->chunks_in_file &&
	    w->file_size + (uint64_t)size > w->opts.max_size) {
		/* the chunk is in this file's terms; the next file starts with
		 * META and the tables, so build it again after them */
		size_t body = b->len;
		unsigned char *saved = malloc(body);

		if (!saved) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		memcpy(saved, b->p, body);
		rc = rotate(w, err, errlen);
		b->len = 0;
		start_payload(w);
		buf_put(b, saved, body);
		free(saved);
		if (rc)
			goto out;
		size = build_chunk(w, err, errlen);
		if (size < 0) {
			rc = (int)size;
			goto out;
		}
	}
	rc = write_all(w->fd, w->zbuf, (size_t)size);
	if (rc) {
		snprintf(err, errlen, "cannot write %s: %s", w->path, strerror(-rc));
		goto out;
	}
	w->file_size += (uint64_t)size;
	w->chunks_in_file++;
	w->st.chunks++;
	w->st.raw_bytes += b->len;
	w->st.bytes += (uint64_t)size;
out:
	b->len = 0;
	b->failed = 0;
	return rc;
}

void record_writer__stats(const struct record_writer *w, struct record_writer_stats *st)
{
	*st = w->st;
}

void record_writer__close(struct record_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	ZSTD_freeCCtx(w->zctx);
	free(w->zbuf);
	free(w->payload.p);
	free(w->meta);
	free(w->vms);
	free(w->sources);
	free(w->metrics);
	free(w->fields);
	free(w->path);
	free(w);
}
