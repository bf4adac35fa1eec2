/* The fleet on NATS (fleet/fleet.h, docs/fleet.md).
 *
 * Four kinds of threads meet here, all under f->lock: the agent's tick
 * (publishing, taking events and requests), the NATS library's delivery
 * threads (slots, heartbeats, requests, read notes), the fleet's own
 * thread (the bucket: binding it, watching it, the queued puts and deletes;
 * the aggregator's requests for missing slots) and the publisher, which
 * empties the outbox onto the bus. No call into the NATS library is made
 * under f->lock: the library may hold its connection's lock for a whole
 * connection attempt while it reconnects, and the agent (under its own
 * lock) must never wait for that.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <nats/nats.h>

#include "common/str.h"
#include "common/grow.h"
#include "common/log.h"
#include "engine/instr.h"
#include "engine/merge.h"
#include "fleet/fleet.h"
#include "fleet/wire.h"

#define LAT_SAMPLES 4096

/* One host's slots of one instrumentation, on an aggregator. */
struct fring {
	int64_t from;			/* the host has data from this second */
	int64_t newest;			/* the newest slot received (INT64_MIN: none) */
	int64_t starts[FLEET_RING_SLOTS];
	json_t *vals[FLEET_RING_SLOTS];	/* owned; NULL: not received */
	uint32_t cells[FLEET_RING_SLOTS];	/* each value's keys and buckets */
	uint64_t cells_total;		/* FLEET_MAX_HOST_CELLS at most */
	uint64_t slots, refused;
	/* the range asked for last, when, how often */
	int64_t req_from, req_to, req_at_ms;
	int req_tries;
	int64_t given_up_before;	/* slots before this are not asked for again */
};

struct finstr {
	unsigned long id;
	json_t *record;			/* owned: the bucket's value */
	int gran;
	bool seen;			/* in the bucket since the watch (re)started */
	struct fring **rings;		/* owned, per host index; NULL: nothing yet */
	size_t nrings;
	int64_t last_read;		/* newest read any aggregator noted */
};

struct fhost {
	char name[256];			/* as in the subject: '.' written '~' */
	int64_t last_hb_ms, first_seen_ms;
	uint64_t msgs, bytes, refused, unknown;
	bool flooding;
	char last_refusal[160];
};

/* What this host publishes. */
struct fpub {
	unsigned long id;
	int64_t next;			/* the next slot to publish */
};

/* A message in the outbox. */
struct fout {
	char *subj;			/* owned */
	unsigned char *data;		/* owned */
	size_t len;
};

/* A bucket operation the fleet's thread still owes (put: record; delete: NULL). */
struct fkvop {
	unsigned long id;
	json_t *record;
};

struct fleet {
	struct fleet_config cfg;
	char *urls, *name, *host, *auth_file, *tls_ca, *tls_cert, *tls_key; /* owned copies */
	char host_token[256];
	char user[256], password[256], token[512];
	char subj_prefix[FLEET_NAME_MAX + 16];	/* "kvmscope.NAME." */
	char bucket[FLEET_NAME_MAX + 4];

	pthread_mutex_t lock;
	pthread_t thread, publisher;
	bool thread_started, publisher_started, stop;
	/* the bucket is to be watched again from the start: after a
	 * reconnect the library's watch may have lost its consumer (a server
	 * that held it went away) without saying so */
	bool rewatch;
	/* the outbox: what the publisher still has to hand the library,
	 * FLEET_OUTBOX_BYTES at most (beyond, dropped and counted) */
	pthread_cond_t out_cv;
	struct fout *outq;
	size_t nout, outq_cap, out_bytes;
	natsConnection *nc;
	natsSubscription *sub_slots, *sub_hb, *sub_req, *sub_touch;
	jsCtx *js;			/* the fleet thread's */
	kvStore *kv;			/* set once by the fleet thread, under lock */
	char kv_state[200];		/* "ready" or why not */
	char last_error[200];
	int64_t last_error_ms;
	uint64_t reconnects, disconnects, slow_consumer, outbox_dropped, published, publish_errors;
	uint64_t unknown_subjects;

	struct finstr *instrs;
	size_t ninstrs, instrs_cap;
	struct fhost *hosts;
	size_t nhosts, hosts_cap;
	struct fpub *pubs;
	size_t npubs, pubs_cap;
	struct fleet_event *events;
	size_t nevents, events_cap;
	struct fleet_request *reqs;
	size_t nreqs, reqs_cap;
	struct fkvop *kvops;
	size_t nkvops, kvops_cap;
	unsigned long *touched;
	size_t ntouched, touched_cap;

	int64_t lat_us[LAT_SAMPLES];
	size_t nlat, lat_next;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Caller holds f->lock. */
static void note_error(struct fleet *f, const char *fmt, const char *what)
{
	snprintf(f->last_error, sizeof(f->last_error), fmt, what);
	f->last_error_ms = now_ms();
}

/* Puts a message in the outbox, taking data (malloc'd, len bytes). Caller
 * holds f->lock. 0, -ENOBUFS (outbox full: dropped) or -ENOMEM. */
static int enqueue(struct fleet *f, const char *subj, void *data, size_t len)
{
	void *p = f->outq;
	char *sd;

	if (f->out_bytes + len > FLEET_OUTBOX_BYTES) {
		/* the bus is away or slower than the fleet: the aggregators
		 * ask for these slots when it is back */
		f->outbox_dropped++;
		free(data);
		return -ENOBUFS;
	}
	sd = strdup(subj);
	if (!sd || array__grow(&p, &f->outq_cap, f->nout + 1, sizeof(*f->outq))) {
		free(sd);
		free(data);
		return -ENOMEM;
	}
	f->outq = p;
	f->outq[f->nout++] = (struct fout){ sd, data, len };
	f->out_bytes += len;
	pthread_cond_signal(&f->out_cv);
	return 0;
}

static int enqueue_text(struct fleet *f, const char *subj, const char *text)
{
	char *d = strdup(text);

	return d ? enqueue(f, subj, d, strlen(d)) : -ENOMEM;
}

/* ---- configuration ---- */

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > FLEET_NAME_MAX)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* The host as one subject token: '.' -> '~'. -EINVAL for what a subject
 * cannot carry. */
static int host_to_token(const char *host, char *out, size_t outlen)
{
	size_t n = strlen(host);

	if (!n || n >= outlen || strpbrk(host, "~*> \t\r\n"))
		return -EINVAL;
	for (size_t i = 0; i <= n; i++)
		out[i] = host[i] == '.' ? '~' : host[i];
	return out[0] == '~' || out[n - 1] == '~' ? -EINVAL : 0;
}

/* nats://127.0.0.1:4222 and the like: is every server on this host? */
static bool urls_loopback(const char *urls)
{
	const char *p = urls;

	while (*p) {
		size_t len = strcspn(p, ",");
		char one[512], *h, *end;

		snprintf(one, sizeof(one), "%.*s", (int)len, p);
		h = strstr(one, "://");
		h = h ? h + 3 : one;
		if (strchr(h, '@'))
			h = strchr(h, '@') + 1;
		if (*h == '[') {
			end = strchr(h, ']');
			if (!end)
				return false;
			*end = '\0';
			h++;
		} else {
			h[strcspn(h, ":/")] = '\0';
		}
		if (strcmp(h, "localhost") && strncmp(h, "127.", 4) && strcmp(h, "::1"))
			return false;
		p += len;
		if (*p == ',')
			p++;
	}
	return true;
}

/* "user U" + "password P", or "token T"; the file must be the caller's and
 * readable by no one else. */
static int read_auth(struct fleet *f, char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	struct stat st;
	FILE *in;
	int rc = 0;

	in = fopen(f->auth_file, "re");
	if (!in) {
		snprintf(err, errlen, "--nats-auth-file %s: %s", f->auth_file, strerror(errno));
		return -EINVAL;
	}
	if (fstat(fileno(in), &st) || (st.st_mode & 077)) {
		snprintf(err, errlen, "--nats-auth-file %s: readable or writable by others (mode %03o): chmod 600 it",
			 f->auth_file, (unsigned)(st.st_mode & 0777));
		rc = -EINVAL;
		goto out;
	}
	while (!rc && getline(&line, &cap, in) > 0) {
		char *w = line + strspn(line, " \t"), *v;
		size_t klen;

		w[strcspn(w, "\r\n")] = '\0';
		if (!*w || *w == '#')
			continue;
		klen = strcspn(w, " \t");
		v = w + klen + strspn(w + klen, " \t");
		if (klen == 4 && !strncmp(w, "user", 4) && *v && strlen(v) < sizeof(f->user))
			strcpy(f->user, v);
		else if (klen == 8 && !strncmp(w, "password", 8) && *v && strlen(v) < sizeof(f->password))
			strcpy(f->password, v);
		else if (klen == 5 && !strncmp(w, "token", 5) && *v && strlen(v) < sizeof(f->token))
			strcpy(f->token, v);
		else {
			snprintf(err, errlen, "--nats-auth-file %s: want 'user NAME' and 'password WORD', or 'token WORD' lines, got '%.*s'",
				 f->auth_file, (int)klen, w);
			rc = -EINVAL;
		}
	}
	if (!rc && !f->token[0] && (!f->user[0] || !f->password[0])) {
		snprintf(err, errlen, "--nats-auth-file %s: neither a token nor a user with a password",
			 f->auth_file);
		rc = -EINVAL;
	}
	if (!rc && f->token[0] && f->user[0]) {
		snprintf(err, errlen, "--nats-auth-file %s: a token or a user, not both", f->auth_file);
		rc = -EINVAL;
	}
out:
	if (line)
		explicit_bzero(line, cap);
	free(line);
	fclose(in);
	return rc;
}

int fleet__new(const struct fleet_config *cfg, struct fleet **out, char *err, size_t errlen)
{
	struct fleet *f;
	bool nomem = false;
	int rc = -EINVAL;

	if (!cfg->urls || !*cfg->urls) {
		snprintf(err, errlen, "--nats: want nats://HOST:PORT[,...]");
		return -EINVAL;
	}
	if (!cfg->name || !name_ok(cfg->name)) {
		snprintf(err, errlen, "--fleet '%s': want 1..%d letters, digits, '_' or '-'",
			 cfg->name ? cfg->name : "", FLEET_NAME_MAX);
		return -EINVAL;
	}
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		snprintf(err, errlen, "--nats-tls-cert and --nats-tls-key go together");
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->out_cv, NULL);
	f->cfg = *cfg;
	f->urls = str__dup_or_null(cfg->urls, &nomem);
	f->name = str__dup_or_null(cfg->name, &nomem);
	f->host = str__dup_or_null(cfg->host, &nomem);
	f->auth_file = str__dup_or_null(cfg->auth_file, &nomem);
	f->tls_ca = str__dup_or_null(cfg->tls_ca, &nomem);
	f->tls_cert = str__dup_or_null(cfg->tls_cert, &nomem);
	f->tls_key = str__dup_or_null(cfg->tls_key, &nomem);
	if (nomem || !f->host) {
		snprintf(err, errlen, nomem ? "out of memory" : "a fleet member needs a host name");
		goto err_free;
	}
	if (host_to_token(f->host, f->host_token, sizeof(f->host_token))) {
		snprintf(err, errlen, "--hostname '%s': in a fleet it goes into NATS subjects: no '~', '*', '>', spaces, or '.' at either end",
			 f->host);
		goto err_free;
	}
	if (!urls_loopback(f->urls) && !f->auth_file) {
		snprintf(err, errlen, "--nats %s: a server off this host needs --nats-auth-file (anyone on the network could publish into the fleet)",
			 f->urls);
		goto err_free;
	}
	if (f->auth_file && read_auth(f, err, errlen))
		goto err_free;
	snprintf(f->subj_prefix, sizeof(f->subj_prefix), "kvmscope.%s.", f->name);
	snprintf(f->bucket, sizeof(f->bucket), "KS_%s", f->name);
	snprintf(f->kv_state, sizeof(f->kv_state), "not bound yet");
	*out = f;
	return 0;
err_free:
	fleet__free(f);
	return rc;
}

bool fleet__aggregating(const struct fleet *f)
{
	return f && f->cfg.aggregate;
}

/* ---- tables (caller holds f->lock) ---- */

static struct finstr *find_instr(struct fleet *f, unsigned long id)
{
	for (size_t i = 0; i < f->ninstrs; i++)
		if (f->instrs[i].id == id)
			return &f->instrs[i];
	return NULL;
}

/* Keys and buckets of a value: what it costs to keep. */
static size_t value_cells(const json_t *v)
{
	const char *k;
	json_t *e;
	size_t n = 0;

	if (json_is_array(v))
		return json_array_size(v) ? json_array_size(v) : 1;
	if (!json_is_object(v))
		return 1;
	json_object_foreach((json_t *)v, k, e)
		n += json_is_array(e) && json_array_size(e) ? json_array_size(e) : 1;
	return n ? n : 1;
}

static void ring_free(struct fring *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < FLEET_RING_SLOTS; i++)
		json_decref(r->vals[i]);
	free(r);
}

static void instr_clear(struct finstr *fi)
{
	for (size_t h = 0; h < fi->nrings; h++)
		ring_free(fi->rings[h]);
	free(fi->rings);
	json_decref(fi->record);
}

static void drop_instr(struct fleet *f, struct finstr *fi)
{
	instr_clear(fi);
	*fi = f->instrs[--f->ninstrs];
}

static struct fpub *find_pub(struct fleet *f, unsigned long id)
{
	for (size_t i = 0; i < f->npubs; i++)
		if (f->pubs[i].id == id)
			return &f->pubs[i];
	return NULL;
}

/* The host of that token, added when new (NULL: too many hosts, or no memory). */
static struct fhost *host_get(struct fleet *f, const char *token, size_t *idx)
{
	struct fhost *h;
	void *p = f->hosts;

	for (size_t i = 0; i < f->nhosts; i++)
		if (!strcmp(f->hosts[i].name, token)) {
			*idx = i;
			return &f->hosts[i];
		}
	if (f->nhosts >= FLEET_MAX_HOSTS || strlen(token) >= sizeof(h->name) ||
	    array__grow(&p, &f->hosts_cap, f->nhosts + 1, sizeof(*h)))
		return NULL;
	f->hosts = p;
	h = &f->hosts[f->nhosts];
	memset(h, 0, sizeof(*h));
	strcpy(h->name, token);
	h->first_seen_ms = now_ms();
	*idx = f->nhosts++;
	return h;
}

static bool host_alive(const struct fhost *h, int64_t now)
{
	return h->last_hb_ms && now - h->last_hb_ms <= FLEET_ALIVE_MS;
}

static int push_event(struct fleet *f, enum fleet_event_kind kind, unsigned long id, json_t *rec)
{
	void *p = f->events;

	if (array__grow(&p, &f->events_cap, f->nevents + 1, sizeof(*f->events))) {
		json_decref(rec);
		return -ENOMEM;
	}
	f->events = p;
	f->events[f->nevents++] = (struct fleet_event){ kind, id, rec };
	return 0;
}

static const char *conn_status_name(natsConnStatus s);

/* ---- the bucket's records ---- */

/* "i.<id>" -> id; 0 for another key. */
static unsigned long key_id(const char *key)
{
	char *end;
	unsigned long id;

	if (strncmp(key, "i.", 2) || !key[2] || key[2] == '0')
		return 0;
	errno = 0;
	id = strtoul(key + 2, &end, 10);
	return *end || errno ? 0 : id;
}

static int record_gran(const json_t *rec)
{
	json_int_t g = json_integer_value(json_object_get(rec, "granularity"));

	return g >= 1 && g <= 86400 ? (int)g : 0;
}

/* A record from the bucket (rec owned by the caller, taken). Caller holds
 * f->lock. */
static void bucket_put(struct fleet *f, unsigned long id, json_t *rec)
{
	struct finstr *fi = find_instr(f, id);
	void *p = f->instrs;

	if (!json_is_object(rec) || !json_is_object(json_object_get(rec, "spec")) ||
	    !json_is_string(json_object_get(rec, "owner")) || !record_gran(rec)) {
		log_warn("fleet", "bucket %s: key i.%lu holds no instrumentation record: ignored",
			 f->bucket, id);
		json_decref(rec);
		return;
	}
	if (fi && fi->gran != record_gran(rec)) {
		/* a granularity cannot change: this is another instrumentation */
		drop_instr(f, fi);
		push_event(f, FLEET_EV_DEL, id, NULL);
		fi = NULL;
	}
	if (!fi) {
		if (array__grow(&p, &f->instrs_cap, f->ninstrs + 1, sizeof(*fi))) {
			json_decref(rec);
			return;
		}
		f->instrs = p;
		fi = &f->instrs[f->ninstrs++];
		memset(fi, 0, sizeof(*fi));
		fi->id = id;
		fi->gran = record_gran(rec);
	}
	json_decref(fi->record);
	fi->record = json_incref(rec);
	fi->seen = true;
	push_event(f, FLEET_EV_PUT, id, rec);
}

static void bucket_del(struct fleet *f, unsigned long id)
{
	struct finstr *fi = find_instr(f, id);

	if (fi) {
		drop_instr(f, fi);
		push_event(f, FLEET_EV_DEL, id, NULL);
	}
}

int fleet__create(struct fleet *f, unsigned long id, const json_t *spec, const char *owner,
		  unsigned long owner_id, int granularity, int retention, char *err, size_t errlen)
{
	char key[32], *text = NULL;
	uint64_t rev = 0;
	natsConnStatus cs;
	natsStatus s;
	kvStore *kv;
	json_t *rec;
	int rc = 0;

	rec = json_pack("{s:O, s:s, s:I, s:i, s:i}", "spec", spec, "owner", owner,
			"owner_id", (json_int_t)owner_id, "granularity", granularity,
			"retention", retention);
	text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	if (!text) {
		json_decref(rec);
		return -ENOMEM;
	}
	snprintf(key, sizeof(key), "i.%lu", id);
	/* while the bus is away, say so now rather than after a timeout */
	cs = natsConnection_Status(f->nc);
	pthread_mutex_lock(&f->lock);
	kv = f->kv;
	if (!kv)
		snprintf(err, errlen, "the fleet's bucket %s is not reachable: %s", f->bucket, f->kv_state);
	if (kv && cs != NATS_CONN_STATUS_CONNECTED) {
		snprintf(err, errlen, "the NATS bus is %s", conn_status_name(cs));
		kv = NULL;
	}
	pthread_mutex_unlock(&f->lock);
	if (!kv) {
		rc = -EAGAIN;
		goto out;
	}
	/* kv lives as long as the fleet (only fleet__free destroys it) */
	s = kvStore_Create(&rev, kv, key, text, (int)strlen(text));
	if (s == NATS_OK) {
		pthread_mutex_lock(&f->lock);
		/* the watch brings it too; here already so that reads right
		 * after the creation find it */
		bucket_put(f, id, json_incref(rec));
		/* this host made it: its own copy is the creator's, not an event */
		if (f->nevents && f->events[f->nevents - 1].id == id) {
			json_decref(f->events[f->nevents - 1].record);
			f->nevents--;
		}
		pthread_mutex_unlock(&f->lock);
	} else if (s == NATS_ERR && strstr(nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "", "wrong last sequence")) {
		rc = -EEXIST;
	} else {
		const char *why = nats_GetLastError(NULL);

		snprintf(err, errlen, "bucket %s: %s", f->bucket, why && *why ? why : natsStatus_GetText(s));
		rc = -EAGAIN;
	}
out:
	free(text);
	json_decref(rec);
	return rc;
}

static void queue_kvop(struct fleet *f, unsigned long id, json_t *rec)
{
	void *p = f->kvops;

	if (array__grow(&p, &f->kvops_cap, f->nkvops + 1, sizeof(*f->kvops))) {
		log_error("fleet", "instrumentation %lu: out of memory: the bucket is not told", id);
		json_decref(rec);
		return;
	}
	f->kvops = p;
	f->kvops[f->nkvops++] = (struct fkvop){ id, rec };
}

void fleet__delete(struct fleet *f, unsigned long id)
{
	struct finstr *fi;

	pthread_mutex_lock(&f->lock);
	fi = find_instr(f, id);
	if (fi)
		drop_instr(f, fi);
	queue_kvop(f, id, NULL);
	pthread_mutex_unlock(&f->lock);
}

static const char *const changeable[] = { "retention-time", "idle-max", "persist-data" };

int fleet__change(struct fleet *f, unsigned long id, const json_t *changes, int retention)
{
	struct finstr *fi;
	json_t *rec, *spec;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	fi = find_instr(f, id);
	if (!fi) {
		rc = -ENOENT;
		goto out;
	}
	rec = json_deep_copy(fi->record);
	spec = json_object_get(rec, "spec");
	if (!rec || !spec) {
		json_decref(rec);
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sizeof(changeable) / sizeof(changeable[0]); i++) {
		json_t *v = json_object_get(changes, changeable[i]);

		if (v)
			json_object_set(spec, changeable[i], v);
	}
	json_object_set_new(rec, "retention", json_integer(retention));
	json_decref(fi->record);
	fi->record = json_incref(rec);
	queue_kvop(f, id, rec);
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

json_t *fleet__spec(struct fleet *f, unsigned long id)
{
	struct finstr *fi;
	json_t *s = NULL;

	pthread_mutex_lock(&f->lock);
	fi = find_instr(f, id);
	if (fi)
		s = json_deep_copy(json_object_get(fi->record, "spec"));
	pthread_mutex_unlock(&f->lock);
	return s;
}

int fleet__next_event(struct fleet *f, struct fleet_event *ev)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&f->lock);
	if (f->nevents) {
		*ev = f->events[0];
		memmove(f->events, f->events + 1, --f->nevents * sizeof(*ev));
		rc = 0;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

bool fleet__known(struct fleet *f, unsigned long id)
{
	bool known;

	pthread_mutex_lock(&f->lock);
	known = find_instr(f, id) != NULL;
	pthread_mutex_unlock(&f->lock);
	return known;
}

/* ---- publishing ---- */

void fleet__attach(struct fleet *f, unsigned long id, int64_t from)
{
	void *p;

	pthread_mutex_lock(&f->lock);
	p = f->pubs;
	if (!find_pub(f, id) && !array__grow(&p, &f->pubs_cap, f->npubs + 1, sizeof(*f->pubs))) {
		f->pubs = p;
		f->pubs[f->npubs++] = (struct fpub){ id, from };
	}
	pthread_mutex_unlock(&f->lock);
}

void fleet__detach(struct fleet *f, unsigned long id)
{
	struct fpub *fp;

	pthread_mutex_lock(&f->lock);
	fp = find_pub(f, id);
	if (fp)
		*fp = f->pubs[--f->npubs];
	pthread_mutex_unlock(&f->lock);
}

/* Publishes slots [start, start + n * gran) of in as one message. Caller
 * holds f->lock. */
static int publish_slots(struct fleet *f, unsigned long id, const struct instr *in, int64_t from,
			 int64_t start, size_t n, uint16_t flags)
{
	struct fleet_wire_header h = { flags, (uint32_t)instr__granularity(in), from, start, now_us(),
				       (uint32_t)n };
	struct fleet_buf b = { 0 };
	char subj[600];
	int rc = fleet_wire__put_header(&b, &h);

	for (size_t i = 0; !rc && i < n; i++) {
		json_t *v = instr__value(in, start + (int64_t)i * h.granularity);

		rc = v ? fleet_wire__put_value(&b, v) : -ENOMEM;
		json_decref(v);
	}
	if (rc)
		goto out;
	snprintf(subj, sizeof(subj), "%ss.%lu.%s", f->subj_prefix, id, f->host_token);
	rc = enqueue(f, subj, b.data, b.len);
	b.data = NULL;
out:
	free(b.data);
	return rc;
}

int fleet__publish(struct fleet *f, unsigned long id, const struct instr *in, int64_t from,
		   int64_t drained_to)
{
	int64_t g = instr__granularity(in), t;
	struct fpub *fp;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	fp = find_pub(f, id);
	if (!fp)
		goto out;
	t = fp->next > from ? fp->next : from;
	t -= t % g;
	/* never more than the retention holds; the rest waits for requests */
	if (t < drained_to - instr__retention(in))
		t = drained_to - instr__retention(in) - (drained_to - instr__retention(in)) % g;
	for (; !rc && t + g <= drained_to; t += g) {
		/* a slot that began before the data did is not complete here */
		if (t < from)
			continue;
		rc = publish_slots(f, id, in, from, t, 1, 0);
	}
	/* a slot dropped from the outbox is not sent again: it waits for a
	 * request, like one lost on the way */
	fp->next = t;
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int fleet__next_request(struct fleet *f, struct fleet_request *rq)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&f->lock);
	if (f->nreqs) {
		*rq = f->reqs[0];
		memmove(f->reqs, f->reqs + 1, --f->nreqs * sizeof(*rq));
		rc = 0;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int fleet__answer(struct fleet *f, const struct fleet_request *rq, const struct instr *in,
		  int64_t from, int64_t drained_to)
{
	int64_t g = instr__granularity(in), lo = rq->from, hi = rq->to;
	int64_t oldest = drained_to - instr__retention(in);
	int rc = 0;

	if (lo < from)
		lo = from;
	if (lo < oldest)
		lo = oldest;
	lo += (g - lo % g) % g;
	if (hi > drained_to)
		hi = drained_to;
	pthread_mutex_lock(&f->lock);
	/* in messages of at most 64 slots: a large answer must not be one
	 * message over the server's max_payload */
	while (!rc && lo + g <= hi) {
		size_t n = (size_t)((hi - lo) / g);

		if (n > 64)
			n = 64;
		rc = publish_slots(f, rq->id, in, from, lo, n, FLEET_WIRE_BACKFILL);
		lo += (int64_t)n * g;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

void fleet__heartbeat(struct fleet *f, int64_t now, size_t ninstrs)
{
	char subj[600], *text;
	json_t *hb;

	pthread_mutex_lock(&f->lock);
	hb = json_pack("{s:I, s:I, s:I, s:I}", "time", (json_int_t)now, "instrumentations",
		       (json_int_t)ninstrs, "published", (json_int_t)f->published,
		       "outbox_dropped", (json_int_t)f->outbox_dropped);
	text = hb ? json_dumps(hb, JSON_COMPACT) : NULL;
	snprintf(subj, sizeof(subj), "%sh.%s", f->subj_prefix, f->host_token);
	if (text)
		enqueue_text(f, subj, text);
	pthread_mutex_unlock(&f->lock);
	free(text);
	json_decref(hb);
}

/* ---- receiving ---- */

static struct fring *ring_get(struct finstr *fi, size_t hidx)
{
	void *p = fi->rings;
	size_t cap = fi->nrings;

	if (hidx >= fi->nrings) {
		if (array__grow(&p, &cap, hidx + 1, sizeof(*fi->rings)))
			return NULL;
		fi->rings = p;
		memset(fi->rings + fi->nrings, 0, (cap - fi->nrings) * sizeof(*fi->rings));
		fi->nrings = cap;
	}
	if (!fi->rings[hidx]) {
		fi->rings[hidx] = calloc(1, sizeof(struct fring));
		if (fi->rings[hidx])
			fi->rings[hidx]->newest = INT64_MIN;
	}
	return fi->rings[hidx];
}

/* Caller holds f->lock. */
static void refuse(struct fleet *f, struct fhost *h, struct fring *r, const char *why)
{
	h->refused++;
	if (r)
		r->refused++;
	if (strcmp(h->last_refusal, why))
		log_warn("fleet", "host %s: message refused: %s", h->name, why);
	snprintf(h->last_refusal, sizeof(h->last_refusal), "%s", why);
}

static void lat_add(struct fleet *f, int64_t us)
{
	f->lat_us[f->lat_next] = us;
	f->lat_next = (f->lat_next + 1) % LAT_SAMPLES;
	if (f->nlat < LAT_SAMPLES)
		f->nlat++;
}

/* kvmscope.NAME.s.<id>.<host> */
static void on_slots(struct fleet *f, const char *subj, const char *data, int len)
{
	const char *rest = subj + strlen(f->subj_prefix) + 2, *host;
	json_t *vals[FLEET_WIRE_MAX_SLOTS];
	struct fleet_wire_header h;
	struct finstr *fi;
	struct fhost *fh;
	struct fring *r;
	unsigned long id;
	char err[200], *end;
	size_t hidx;
	int rc;

	errno = 0;
	id = strtoul(rest, &end, 10);
	if (errno || end == rest || *end != '.' || !id) {
		f->unknown_subjects++;
		return;
	}
	host = end + 1;
	if (!strcmp(host, f->host_token))
		return;		/* this host's own: merged from its instrumentation */
	fh = host_get(f, host, &hidx);
	if (!fh)
		return;
	fh->msgs++;
	fh->bytes += (uint64_t)len;
	fi = find_instr(f, id);
	if (!fi) {
		fh->unknown++;	/* deleted meanwhile, or not in the bucket */
		return;
	}
	r = ring_get(fi, hidx);
	if (!r)
		return;
	rc = fleet_wire__decode(data, (size_t)len, FLEET_MAX_HOST_KEYS, &h, vals, err, sizeof(err));
	if (rc == -E2BIG) {
		fh->flooding = true;
		snprintf(err, sizeof(err), "more than %d keys in one message: the host floods keys",
			 FLEET_MAX_HOST_KEYS);
	}
	if (rc) {
		refuse(f, fh, r, err);
		return;
	}
	if ((int)h.granularity != fi->gran) {
		snprintf(err, sizeof(err), "instrumentation %lu: granularity %u, the bucket says %d",
			 id, h.granularity, fi->gran);
		refuse(f, fh, r, err);
		goto out;
	}
	r->from = h.from;
	for (uint32_t i = 0; i < h.nslots; i++) {
		int64_t t = h.start + (int64_t)i * fi->gran;
		size_t at = (size_t)((t / fi->gran) % FLEET_RING_SLOTS);

		size_t cells;

		if (r->vals[at] && r->starts[at] > t)
			continue;	/* older than what the ring holds */
		cells = value_cells(vals[i]);
		if (r->cells_total - r->cells[at] + cells > FLEET_MAX_HOST_CELLS) {
			/* kept whole or not at all: the slot is missing */
			fh->flooding = true;
			snprintf(err, sizeof(err), "instrumentation %lu: keeping slot %lld would take this host past %d keys and buckets",
				 id, (long long)t, FLEET_MAX_HOST_CELLS);
			refuse(f, fh, r, err);
			continue;
		}
		json_decref(r->vals[at]);
		r->cells_total = r->cells_total - r->cells[at] + cells;
		r->cells[at] = (uint32_t)cells;
		r->vals[at] = vals[i];
		vals[i] = NULL;
		r->starts[at] = t;
		r->slots++;
		if (t > r->newest)
			r->newest = t;
	}
	if (!(h.flags & FLEET_WIRE_BACKFILL))
		lat_add(f, now_us() - h.drained_us);
out:
	for (uint32_t i = 0; i < h.nslots; i++)
		json_decref(vals[i]);
}

static void on_heartbeat(struct fleet *f, const char *subj, const char *data, int len)
{
	const char *host = subj + strlen(f->subj_prefix) + 2;
	struct fhost *fh;
	size_t hidx;

	(void)data;
	(void)len;
	if (!strcmp(host, f->host_token) || strchr(host, '.'))
		return;
	fh = host_get(f, host, &hidx);
	if (fh)
		fh->last_hb_ms = now_ms();
}

/* {"id": N, "from": T, "to": T} on this host's request subject */
static void on_request(struct fleet *f, const char *data, int len)
{
	json_t *j = json_loadb(data, (size_t)len, 0, NULL);
	json_int_t id = json_integer_value(json_object_get(j, "id"));
	json_int_t lo = json_integer_value(json_object_get(j, "from"));
	json_int_t hi = json_integer_value(json_object_get(j, "to"));
	void *p = f->reqs;

	if (!json_is_integer(json_object_get(j, "id")) || id <= 0 || lo >= hi ||
	    hi - lo > (json_int_t)FLEET_RING_SLOTS * 86400 || f->nreqs >= 1024 ||
	    !find_pub(f, (unsigned long)id)) {
		json_decref(j);
		return;
	}
	if (!array__grow(&p, &f->reqs_cap, f->nreqs + 1, sizeof(*f->reqs))) {
		f->reqs = p;
		f->reqs[f->nreqs++] = (struct fleet_request){ (unsigned long)id, lo, hi };
	}
	json_decref(j);
}

/* {"ids": [N, ...], "time": T} from an aggregator */
static void on_touch(struct fleet *f, const char *data, int len)
{
	json_t *j = json_loadb(data, (size_t)len, 0, NULL), *v;
	json_int_t t = json_integer_value(json_object_get(j, "time"));
	size_t i;

	json_array_foreach(json_object_get(j, "ids"), i, v) {
		struct finstr *fi = find_instr(f, (unsigned long)json_integer_value(v));

		if (fi && t > fi->last_read)
			fi->last_read = t;
	}
	json_decref(j);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct fleet *f = closure;
	const char *subj = natsMsg_GetSubject(msg);

	(void)nc;
	pthread_mutex_lock(&f->lock);
	if (!f->stop && !strncmp(subj, f->subj_prefix, strlen(f->subj_prefix))) {
		if (sub == f->sub_slots)
			on_slots(f, subj, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
		else if (sub == f->sub_hb)
			on_heartbeat(f, subj, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
		else if (sub == f->sub_req)
			on_request(f, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
		else if (sub == f->sub_touch)
			on_touch(f, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
	}
	pthread_mutex_unlock(&f->lock);
	natsMsg_Destroy(msg);
}

/* ---- reading ---- */

/* Caller holds f->lock. */
static int merge_locked(struct fleet *f, struct finstr *fi, int64_t t, int64_t self_from,
			json_t *value)
{
	int n = t >= self_from;

	if (!fi)
		return n;
	for (size_t h = 0; h < fi->nrings; h++) {
		struct fring *r = fi->rings[h];
		size_t at;
		int rc;

		if (!r)
			continue;
		at = (size_t)((t / fi->gran) % FLEET_RING_SLOTS);
		if (!r->vals[at] || r->starts[at] != t)
			continue;
		rc = value__merge(value, r->vals[at]);
		if (rc == -ENOMEM)
			return rc;
		if (rc) {
			/* left out, and not counted as reporting: short, not wrong */
			refuse(f, &f->hosts[h], r, "a value of another shape than this host's");
			continue;
		}
		n++;
	}
	return n;
}

int fleet__merge_slot(struct fleet *f, unsigned long id, int64_t start, int64_t self_from,
		      json_t *value)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	rc = merge_locked(f, find_instr(f, id), start, self_from, value);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static int nsources_locked(const struct fleet *f)
{
	int64_t now = now_ms();
	int n = 1;

	for (size_t h = 0; h < f->nhosts; h++)
		n += host_alive(&f->hosts[h], now);
	return n;
}

int fleet__nsources(struct fleet *f)
{
	int n;

	pthread_mutex_lock(&f->lock);
	n = nsources_locked(f);
	pthread_mutex_unlock(&f->lock);
	return n;
}

static int annotate_point(struct fleet *f, struct finstr *fi, int64_t self_from, json_t *pt,
			  int nsources)
{
	json_t *v = json_object_get(pt, "value");
	json_int_t start = json_integer_value(json_object_get(pt, "start_time"));
	json_int_t dur = json_integer_value(json_object_get(pt, "duration"));
	int minrep = -1;

	if (!fi)
		return 0;	/* not a fleet instrumentation: local only */
	if (!v || dur < fi->gran)
		return -EINVAL;
	for (json_int_t t = start; t < start + dur; t += fi->gran) {
		int n = merge_locked(f, fi, t, self_from, v);

		if (n < 0)
			return n;
		if (minrep < 0 || n < minrep)
			minrep = n;
	}
	json_object_set_new(pt, "nsources", json_integer(nsources));
	json_object_set_new(pt, "minreporting", json_integer(minrep));
	return 0;
}

int fleet__annotate_raw(struct fleet *f, unsigned long id, int64_t self_from, json_t *raw)
{
	struct finstr *fi;
	int rc = 0, ns;

	pthread_mutex_lock(&f->lock);
	fi = find_instr(f, id);
	ns = nsources_locked(f);
	if (json_is_array(raw)) {
		size_t i;
		json_t *pt;

		json_array_foreach(raw, i, pt)
			if (!rc)
				rc = annotate_point(f, fi, self_from, pt, ns);
	} else {
		rc = annotate_point(f, fi, self_from, raw, ns);
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* the host's own name back from its subject token */
static void token_to_host(const char *tok, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", tok);
	for (char *c = out; *c; c++)
		if (*c == '~')
			*c = '.';
}

json_t *fleet__instr_status(struct fleet *f, unsigned long id)
{
	json_t *arr = json_array();
	struct finstr *fi;
	char name[256];

	pthread_mutex_lock(&f->lock);
	fi = find_instr(f, id);
	for (size_t h = 0; arr && fi && h < fi->nrings && h < f->nhosts; h++) {
		struct fring *r = fi->rings[h];

		if (!r)
			continue;
		token_to_host(f->hosts[h].name, name, sizeof(name));
		json_array_append_new(arr, json_pack("{s:s, s:I, s:o, s:I, s:I}", "host", name,
						     "from", (json_int_t)r->from, "newest",
						     r->newest == INT64_MIN ? json_null() :
						     json_integer(r->newest),
						     "slots", (json_int_t)r->slots,
						     "refused", (json_int_t)r->refused));
	}
	pthread_mutex_unlock(&f->lock);
	return arr;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static const char *conn_status_name(natsConnStatus s)
{
	switch (s) {
	case NATS_CONN_STATUS_DISCONNECTED: return "disconnected";
	case NATS_CONN_STATUS_CONNECTING: return "connecting";
	case NATS_CONN_STATUS_CONNECTED: return "connected";
	case NATS_CONN_STATUS_CLOSED: return "closed";
	case NATS_CONN_STATUS_RECONNECTING: return "reconnecting";
	case NATS_CONN_STATUS_DRAINING_SUBS:
	case NATS_CONN_STATUS_DRAINING_PUBS: return "draining";
	}
	return "unknown";
}

json_t *fleet__status_json(struct fleet *f)
{
	uint64_t in_msgs = 0, in_bytes = 0, out_msgs = 0, out_bytes = 0, reconnected = 0;
	natsStatistics *st = NULL;
	const char *status, *conn_err = NULL;
	char conn_error[256];
	json_t *bus, *hosts, *lat = json_null(), *o;
	char url[256] = "";
	int64_t now = now_ms(), *sorted = NULL;
	char name[256];

	/* the library first, without f->lock (see the top) */
	if (f->nc && natsStatistics_Create(&st) == NATS_OK &&
	    natsConnection_GetStats(f->nc, st) == NATS_OK)
		natsStatistics_GetCounts(st, &in_msgs, &in_bytes, &out_msgs, &out_bytes, &reconnected);
	natsStatistics_Destroy(st);
	if (f->nc && natsConnection_GetConnectedUrl(f->nc, url, sizeof(url)) != NATS_OK)
		url[0] = '\0';
	status = f->nc ? conn_status_name(natsConnection_Status(f->nc)) : "not started";
	if (f->nc && natsConnection_GetLastError(f->nc, &conn_err) == NATS_OK)
		conn_err = NULL;
	snprintf(conn_error, sizeof(conn_error), "%s", conn_err ? conn_err : "");
	pthread_mutex_lock(&f->lock);
	if (f->nlat && (sorted = malloc(f->nlat * sizeof(*sorted)))) {
		memcpy(sorted, f->lat_us, f->nlat * sizeof(*sorted));
		qsort(sorted, f->nlat, sizeof(*sorted), cmp_i64);
		lat = json_pack("{s:I, s:f, s:f, s:f}", "samples", (json_int_t)f->nlat,
				"p50_ms", sorted[f->nlat / 2] / 1000.0,
				"p99_ms", sorted[f->nlat * 99 / 100] / 1000.0,
				"max_ms", sorted[f->nlat - 1] / 1000.0);
		free(sorted);
	}
	bus = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:s, s:o}",
			"fleet", f->name, "host", f->host, "servers", f->urls,
			"status", status,
			"connected_url", url, "bucket", f->bucket, "aggregate", f->cfg.aggregate,
			"reconnects", (json_int_t)reconnected, "disconnects", (json_int_t)f->disconnects,
			"in_msgs", (json_int_t)in_msgs, "in_bytes", (json_int_t)in_bytes,
			"out_msgs", (json_int_t)out_msgs, "out_bytes", (json_int_t)out_bytes,
			"published", (json_int_t)f->published,
			"outbox_dropped", (json_int_t)f->outbox_dropped,
			"outbox_bytes", (json_int_t)f->out_bytes,
			"publish_errors", (json_int_t)f->publish_errors,
			"slow_consumer", (json_int_t)f->slow_consumer,
			"instrumentations", (json_int_t)f->ninstrs,
			"latency", lat, "bucket_state", f->kv_state,
			"last_error", f->last_error[0] ? json_string(f->last_error) : json_null());
	if (bus && f->last_error_ms)
		json_object_set_new(bus, "last_error_at", json_integer(f->last_error_ms / 1000));
	/* why the library cannot connect (refused, authorization, TLS) */
	if (bus)
		json_object_set_new(bus, "connection_error",
				    conn_error[0] ? json_string(conn_error) : json_null());
	hosts = json_array();
	for (size_t h = 0; hosts && h < f->nhosts; h++) {
		const struct fhost *fh = &f->hosts[h];

		token_to_host(fh->name, name, sizeof(name));
		json_array_append_new(hosts, json_pack("{s:s, s:b, s:o, s:I, s:I, s:I, s:I, s:b, s:o}",
			"host", name, "alive", host_alive(fh, now),
			"last_heartbeat", fh->last_hb_ms ? json_integer(fh->last_hb_ms / 1000) : json_null(),
			"msgs", (json_int_t)fh->msgs, "bytes", (json_int_t)fh->bytes,
			"refused", (json_int_t)fh->refused, "unknown", (json_int_t)fh->unknown,
			"flooding", fh->flooding,
			"last_refusal", fh->last_refusal[0] ? json_string(fh->last_refusal) : json_null()));
	}
	pthread_mutex_unlock(&f->lock);
	o = json_pack("{s:o, s:o}", "bus", bus ? bus : json_object(), "hosts", hosts ? hosts : json_array());
	return o;
}

void fleet__touch(struct fleet *f, unsigned long id, int64_t now)
{
	struct finstr *fi;
	void *p;

	pthread_mutex_lock(&f->lock);
	fi = find_instr(f, id);
	if (fi && now > fi->last_read)
		fi->last_read = now;
	p = f->touched;
	if (fi && !array__grow(&p, &f->touched_cap, f->ntouched + 1, sizeof(*f->touched))) {
		f->touched = p;
		size_t i;

		for (i = 0; i < f->ntouched && f->touched[i] != id; i++)
			;
		if (i == f->ntouched)
			f->touched[f->ntouched++] = id;
	}
	pthread_mutex_unlock(&f->lock);
}

int64_t fleet__last_read(struct fleet *f, unsigned long id)
{
	struct finstr *fi;
	int64_t t = 0;

	pthread_mutex_lock(&f->lock);
	fi = find_instr(f, id);
	if (fi)
		t = fi->last_read;
	pthread_mutex_unlock(&f->lock);
	return t;
}

/* ---- the fleet's thread ---- */

/* Messages of hosts' slots an aggregator lets wait for its callback before
 * the library drops them (a slow consumer: counted, the gaps asked for
 * again). KVMSCOPE_FLEET_SLOTS_PENDING lowers it, for the test that makes an
 * aggregator a slow consumer on purpose (tests/integration/fleet_slow.sh). */
static int slots_pending_limit(void)
{
	const char *v = getenv("KVMSCOPE_FLEET_SLOTS_PENDING");
	long n = v ? strtol(v, NULL, 10) : 0;

	return n >= 1 && n <= (1 << 20) ? (int)n : 1 << 20;
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	struct fleet *f = closure;

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&f->lock);
	if (err == NATS_SLOW_CONSUMER)
		f->slow_consumer++;	/* what was dropped is asked for again */
	note_error(f, "%s", natsStatus_GetText(err));
	pthread_mutex_unlock(&f->lock);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	struct fleet *f = closure;

	bool stopping;

	(void)nc;
	pthread_mutex_lock(&f->lock);
	f->disconnects++;
	note_error(f, "%s", "disconnected from the bus");
	stopping = f->stop;
	pthread_mutex_unlock(&f->lock);
	if (!stopping)
		log_warn("fleet", "disconnected from the NATS bus: reconnecting");
}

static void on_connected(natsConnection *nc, void *closure)
{
	char url[256] = "";

	(void)closure;
	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	log_info("fleet", "connected to the NATS bus at %s", url);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	struct fleet *f = closure;
	char url[256] = "";

	pthread_mutex_lock(&f->lock);
	f->rewatch = true;
	pthread_mutex_unlock(&f->lock);
	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	log_info("fleet", "reconnected to the NATS bus at %s", url);
}

/* Binds (or creates) the bucket. Runs unlocked; sets f->kv under lock. */
static void bind_bucket(struct fleet *f)
{
	jsOptions jo;
	kvConfig kc;
	kvStore *kv = NULL;
	natsStatus s;
	char why[200] = "";

	if (!f->js) {
		jsOptions_Init(&jo);
		jo.Wait = FLEET_KV_TIMEOUT_MS;
		if ((s = natsConnection_JetStream(&f->js, f->nc, &jo)) != NATS_OK) {
			snprintf(why, sizeof(why), "JetStream: %s", natsStatus_GetText(s));
			goto out;
		}
	}
	s = js_KeyValue(&kv, f->js, f->bucket);
	if (s == NATS_NOT_FOUND && f->cfg.aggregate) {
		int replicas = f->cfg.replicas ? f->cfg.replicas : 3;

		kvConfig_Init(&kc);
		kc.Bucket = f->bucket;
		kc.History = 1;
		kc.StorageType = js_FileStorage;
		kc.Replicas = replicas;
		s = js_CreateKeyValue(&kv, f->js, &kc);
		if (s != NATS_OK && !f->cfg.replicas) {
			/* a bus of one server cannot hold 3 copies */
			kc.Replicas = 1;
			s = js_CreateKeyValue(&kv, f->js, &kc);
			if (s == NATS_OK)
				log_warn("fleet", "bucket %s created with 1 replica: the bus refused 3", f->bucket);
		}
	}
	if (s != NATS_OK)
		snprintf(why, sizeof(why), "%s: %s", f->bucket,
			 s == NATS_NOT_FOUND ? "no such bucket yet (an aggregator creates it)" :
			 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
out:
	pthread_mutex_lock(&f->lock);
	if (kv) {
		f->kv = kv;
		snprintf(f->kv_state, sizeof(f->kv_state), "ready");
		log_info("fleet", "bucket %s bound", f->bucket);
	} else {
		snprintf(f->kv_state, sizeof(f->kv_state), "%s", why);
	}
	pthread_mutex_unlock(&f->lock);
}

/* The watch delivered every key: what was not among them is gone. */
static void watch_synced(struct fleet *f)
{
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->ninstrs;) {
		if (!f->instrs[i].seen) {
			unsigned long id = f->instrs[i].id;

			drop_instr(f, &f->instrs[i]);
			push_event(f, FLEET_EV_DEL, id, NULL);
		} else {
			i++;
		}
	}
	push_event(f, FLEET_EV_SYNCED, 0, NULL);
	pthread_mutex_unlock(&f->lock);
}

static void watch_entry(struct fleet *f, kvEntry *e)
{
	unsigned long id = key_id(kvEntry_Key(e));
	json_t *rec;

	if (!id)
		return;
	pthread_mutex_lock(&f->lock);
	if (kvEntry_Operation(e) == kvOp_Put) {
		rec = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
		bucket_put(f, id, rec);
	} else {
		bucket_del(f, id);
	}
	pthread_mutex_unlock(&f->lock);
}

/* The queued puts and deletes, unlocked around each bucket call. */
static void flush_kvops(struct fleet *f)
{
	struct fkvop op;
	char key[32], *text;
	uint64_t rev;
	natsStatus s;

	for (;;) {
		pthread_mutex_lock(&f->lock);
		if (!f->nkvops || !f->kv) {
			pthread_mutex_unlock(&f->lock);
			return;
		}
		op = f->kvops[0];
		pthread_mutex_unlock(&f->lock);
		snprintf(key, sizeof(key), "i.%lu", op.id);
		if (op.record) {
			text = json_dumps(op.record, JSON_COMPACT);
			s = text ? kvStore_PutString(&rev, f->kv, key, text) : NATS_NO_MEMORY;
			free(text);
		} else {
			s = kvStore_Delete(f->kv, key);
		}
		pthread_mutex_lock(&f->lock);
		if (s != NATS_OK) {
			note_error(f, "bucket: %s", natsStatus_GetText(s));
			pthread_mutex_unlock(&f->lock);
			log_warn("fleet", "bucket %s: %s of i.%lu not taken yet (%s): retried",
				 f->bucket, op.record ? "put" : "delete", op.id, natsStatus_GetText(s));
			return;		/* next time round */
		}
		json_decref(op.record);
		memmove(f->kvops, f->kvops + 1, --f->nkvops * sizeof(op));
		pthread_mutex_unlock(&f->lock);
	}
}

/* An aggregator asks each live host for the first range of slots it lacks
 * (between the host's first and its newest, within the ring). */
static void request_gaps(struct fleet *f)
{
	int64_t now = now_ms();
	char subj[600], body[128];

	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->ninstrs; i++) {
		struct finstr *fi = &f->instrs[i];

		for (size_t h = 0; h < fi->nrings && h < f->nhosts; h++) {
			struct fring *r = fi->rings[h];
			int64_t g = fi->gran, lo, t, gap_lo = 0, gap_hi = 0;

			if (!r || r->newest == INT64_MIN || !host_alive(&f->hosts[h], now) ||
			    now - r->req_at_ms < FLEET_REQUEST_EVERY_MS)
				continue;
			lo = r->newest - (int64_t)(FLEET_RING_SLOTS - 1) * g;
			if (lo < r->from)
				lo = r->from;
			if (lo < r->given_up_before)
				lo = r->given_up_before;
			lo += (g - lo % g) % g;
			for (t = lo; t < r->newest; t += g) {
				size_t at = (size_t)((t / g) % FLEET_RING_SLOTS);
				bool have = r->vals[at] && r->starts[at] == t;

				if (!have && !gap_hi)
					gap_lo = t, gap_hi = t + g;
				else if (!have && gap_hi == t)
					gap_hi = t + g;
				else if (have && gap_hi)
					break;
			}
			if (!gap_hi)
				continue;
			if (gap_lo == r->req_from && gap_hi == r->req_to) {
				if (++r->req_tries >= FLEET_REQUEST_TRIES) {
					/* the host does not have them: missing, for good */
					r->given_up_before = gap_hi;
					continue;
				}
			} else {
				r->req_tries = 0;
			}
			r->req_from = gap_lo;
			r->req_to = gap_hi;
			r->req_at_ms = now;
			snprintf(subj, sizeof(subj), "%sr.%s", f->subj_prefix, f->hosts[h].name);
			snprintf(body, sizeof(body), "{\"id\":%lu,\"from\":%lld,\"to\":%lld}", fi->id,
				 (long long)gap_lo, (long long)gap_hi);
			enqueue_text(f, subj, body);
		}
	}
	pthread_mutex_unlock(&f->lock);
}

static void send_touches(struct fleet *f)
{
	char subj[600];
	json_t *ids, *o;
	char *text = NULL;

	pthread_mutex_lock(&f->lock);
	if (f->ntouched) {
		ids = json_array();
		for (size_t i = 0; ids && i < f->ntouched; i++)
			json_array_append_new(ids, json_integer((json_int_t)f->touched[i]));
		o = json_pack("{s:o?, s:I}", "ids", ids, "time", (json_int_t)(now_ms() / 1000));
		text = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		f->ntouched = 0;
	}
	snprintf(subj, sizeof(subj), "%st", f->subj_prefix);
	if (text)
		enqueue_text(f, subj, text);
	pthread_mutex_unlock(&f->lock);
	free(text);
}

static void *fleet_thread(void *arg)
{
	struct fleet *f = arg;
	kvWatcher *w = NULL;
	int64_t last_periodic = 0;

	for (;;) {
		kvEntry *e = NULL;
		natsStatus s;
		bool stop, rewatch;

		pthread_mutex_lock(&f->lock);
		stop = f->stop;
		rewatch = f->rewatch;
		f->rewatch = false;
		pthread_mutex_unlock(&f->lock);
		if (stop)
			break;
		if (rewatch && w) {
			/* read whole again: what changed meanwhile, deletions
			 * included, comes out of the resync */
			kvWatcher_Destroy(w);
			w = NULL;
		}
		if (now_ms() - last_periodic >= 1000) {
			last_periodic = now_ms();
			flush_kvops(f);
			if (f->cfg.aggregate) {
				request_gaps(f);
				send_touches(f);
			}
		}
		if (!f->kv) {
			if (natsConnection_Status(f->nc) == NATS_CONN_STATUS_CONNECTED)
				bind_bucket(f);
			if (!f->kv)
				usleep(250000);
			continue;
		}
		if (!w) {
			s = kvStore_WatchAll(&w, f->kv, NULL);
			if (s != NATS_OK) {
				w = NULL;
				pthread_mutex_lock(&f->lock);
				snprintf(f->kv_state, sizeof(f->kv_state), "watch: %s", natsStatus_GetText(s));
				pthread_mutex_unlock(&f->lock);
				usleep(250000);
				continue;
			}
			pthread_mutex_lock(&f->lock);
			for (size_t i = 0; i < f->ninstrs; i++)
				f->instrs[i].seen = false;
			snprintf(f->kv_state, sizeof(f->kv_state), "ready");
			pthread_mutex_unlock(&f->lock);
		}
		s = kvWatcher_Next(&e, w, 250);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			/* watch again from the start: the bucket is read whole */
			kvWatcher_Destroy(w);
			w = NULL;
			continue;
		}
		if (!e) {
			watch_synced(f);
			continue;
		}
		watch_entry(f, e);
		kvEntry_Destroy(e);
	}
	if (w) {
		kvWatcher_Stop(w);
		kvWatcher_Destroy(w);
	}
	return NULL;
}

/* Empties the outbox onto the bus, without f->lock around the library. */
static void *publisher_thread(void *arg)
{
	struct fleet *f = arg;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct fout *q;
		size_t n, bytes = 0;
		uint64_t ok = 0, failed = 0;
		natsStatus last = NATS_OK;

		while (!f->stop && !f->nout)
			pthread_cond_wait(&f->out_cv, &f->lock);
		if (f->stop && !f->nout)
			break;	/* what was queued before the stop went out */
		q = f->outq;
		n = f->nout;
		f->outq = NULL;
		f->nout = f->outq_cap = 0;
		pthread_mutex_unlock(&f->lock);
		for (size_t i = 0; i < n; i++) {
			natsStatus s = natsConnection_Publish(f->nc, q[i].subj, q[i].data, (int)q[i].len);

			if (s == NATS_OK) {
				ok++;
			} else {
				failed++;
				last = s;
			}
			bytes += q[i].len;
			free(q[i].subj);
			free(q[i].data);
		}
		free(q);
		pthread_mutex_lock(&f->lock);
		f->out_bytes -= bytes;
		f->published += ok;
		if (failed) {
			/* the library's own buffer is full while it reconnects:
			 * lost like on the way, asked for again */
			f->publish_errors += failed;
			note_error(f, "publish: %s", natsStatus_GetText(last));
		}
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int fleet__start(struct fleet *f, char *err, size_t errlen)
{
	natsOptions *o = NULL;
	char subj[600], *servers[16], *urls = NULL, *save = NULL, *u;
	int nservers = 0, rc = -EINVAL;
	natsStatus s;

	urls = strdup(f->urls);
	if (!urls || natsOptions_Create(&o) != NATS_OK)
		goto nomem;
	for (u = strtok_r(urls, ",", &save); u && nservers < 16; u = strtok_r(NULL, ",", &save))
		servers[nservers++] = u;
	s = natsOptions_SetServers(o, (const char **)servers, nservers);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, f->host);
	if (s == NATS_OK)
		/* with a callback the first connection is made in the
		 * background: an agent starts (and stops) whatever the bus does */
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, f);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(o, FLEET_OUTBOX_BYTES);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, 1000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, 2);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, 1000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPendingMsgs(o, 65536);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_error, f);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, f);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_reconnected, f);
	if (s == NATS_OK && f->user[0])
		s = natsOptions_SetUserInfo(o, f->user, f->password);
	if (s == NATS_OK && f->token[0])
		s = natsOptions_SetToken(o, f->token);
	if (s == NATS_OK && (f->tls_ca || f->tls_cert))
		s = natsOptions_SetSecure(o, true);
	if (s == NATS_OK && f->tls_ca)
		s = natsOptions_LoadCATrustedCertificates(o, f->tls_ca);
	if (s == NATS_OK && f->tls_cert)
		s = natsOptions_LoadCertificatesChain(o, f->tls_cert, f->tls_key);
	if (s != NATS_OK) {
		snprintf(err, errlen, "--nats options: %s", nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
		goto out;
	}
	s = natsConnection_Connect(&f->nc, o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		snprintf(err, errlen, "--nats %s: %s", f->urls, nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
		f->nc = NULL;
		goto out;
	}
	if (s == NATS_NOT_YET_CONNECTED)
		log_warn("fleet", "NATS bus %s not reachable yet: retrying", f->urls);
	snprintf(subj, sizeof(subj), "%sr.%s", f->subj_prefix, f->host_token);
	s = natsConnection_Subscribe(&f->sub_req, f->nc, subj, on_msg, f);
	if (s == NATS_OK && f->cfg.aggregate) {
		snprintf(subj, sizeof(subj), "%ss.*.*", f->subj_prefix);
		s = natsConnection_Subscribe(&f->sub_slots, f->nc, subj, on_msg, f);
		if (s == NATS_OK)
			s = natsSubscription_SetPendingLimits(f->sub_slots, slots_pending_limit(), 256 << 20);
		snprintf(subj, sizeof(subj), "%sh.*", f->subj_prefix);
		if (s == NATS_OK)
			s = natsConnection_Subscribe(&f->sub_hb, f->nc, subj, on_msg, f);
		snprintf(subj, sizeof(subj), "%st", f->subj_prefix);
		if (s == NATS_OK)
			s = natsConnection_Subscribe(&f->sub_touch, f->nc, subj, on_msg, f);
	}
	if (s != NATS_OK) {
		const char *why = NULL;

		/* a server that refused us for good (credentials) closed it */
		if (natsConnection_GetLastError(f->nc, &why) == NATS_OK || !why)
			why = natsStatus_GetText(s);
		snprintf(err, errlen, "--nats %s: the servers refused this agent (credentials, TLS?): %s",
			 f->urls, why);
		goto out;
	}
	if (pthread_create(&f->thread, NULL, fleet_thread, f)) {
		snprintf(err, errlen, "cannot start the fleet's thread");
		rc = -EAGAIN;
		goto out;
	}
	f->thread_started = true;
	if (pthread_create(&f->publisher, NULL, publisher_thread, f)) {
		snprintf(err, errlen, "cannot start the fleet's publisher");
		rc = -EAGAIN;
		goto out;
	}
	f->publisher_started = true;
	log_info("fleet", "fleet %s on %s as %s%s", f->name, f->urls, f->host,
		 f->cfg.aggregate ? ", aggregating" : "");
	rc = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	rc = -ENOMEM;
out:
	natsOptions_Destroy(o);
	free(urls);
	return rc;
}

void fleet__free(struct fleet *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_broadcast(&f->out_cv);
	pthread_mutex_unlock(&f->lock);
	if (f->thread_started)
		pthread_join(f->thread, NULL);
	if (f->publisher_started)
		pthread_join(f->publisher, NULL);
	natsSubscription_Destroy(f->sub_slots);
	natsSubscription_Destroy(f->sub_hb);
	natsSubscription_Destroy(f->sub_req);
	natsSubscription_Destroy(f->sub_touch);
	kvStore_Destroy(f->kv);
	jsCtx_Destroy(f->js);
	if (f->nc) {
		/* what is still in the outbox goes out, briefly */
		natsConnection_FlushTimeout(f->nc, 500);
		natsConnection_Destroy(f->nc);
	}
	for (size_t i = 0; i < f->ninstrs; i++)
		instr_clear(&f->instrs[i]);
	for (size_t i = 0; i < f->nevents; i++)
		json_decref(f->events[i].record);
	for (size_t i = 0; i < f->nkvops; i++)
		json_decref(f->kvops[i].record);
	for (size_t i = 0; i < f->nout; i++) {
		free(f->outq[i].subj);
		free(f->outq[i].data);
	}
	free(f->outq);
	free(f->instrs);
	free(f->hosts);
	free(f->pubs);
	free(f->events);
	free(f->reqs);
	free(f->kvops);
	free(f->touched);
	explicit_bzero(f->password, sizeof(f->password));
	explicit_bzero(f->token, sizeof(f->token));
	free(f->urls);
	free(f->name);
	free(f->host);
	free(f->auth_file);
	free(f->tls_ca);
	free(f->tls_cert);
	free(f->tls_key);
	pthread_cond_destroy(&f->out_cv);
	pthread_mutex_destroy(&f->lock);
	free(f);
}
