/* The fleet: forwarding instrumentations to peers, fetching their values
 * once a second, merging them on reads. See fleet.h for the model.
 *
 * One thread runs a tick per second (at +500 ms, after the peers' drains at
 * +150 ms): under the lock it turns the state into a list of HTTP jobs, runs
 * them all at once with curl multi without the lock, then applies the
 * answers under the lock. Nothing here ever waits on a peer while holding
 * the lock, so the API handlers calling in are never stalled by a hung peer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "common/log.h"
#include "engine/merge.h"
#include "fleet/fleet.h"
#include "fleet/fleet_plan.h"

#define RESP_MAX (64u << 20)
#define TICK_OFFSET_NS 500000000L
#define INSTR_POINTS_MAX 3600	/* a peer's value/raw ndatapoints limit */

enum peer_state { PEER_UNKNOWN, PEER_UP, PEER_DOWN };
static const char *const state_names[] = { "unknown", "up", "down" };

struct slot {
	int64_t start;
	json_t *value;		/* owned; NULL: not reported */
	size_t cells;		/* what value holds, counted by value_cells() */
};

/* Cells (a key's count, or one bucket of a distribution) one peer's answers
 * may keep for one instrumentation, over its whole retention: about 100 MiB
 * of parsed JSON. A peer answering 20 000 keys a slot grew the aggregator by
 * 2.5 MB/s; beyond this bound its slots are dropped (and reported as
 * missing, with the reason in GET /ca/peers), never merged in part. */
#define FLEET_LINK_CELLS_MAX	1000000

/* One instrumentation on one peer. */
struct link {
	unsigned long peer_id;	/* 0: not created there (yet) */
	int64_t crtime;		/* the peer's, to recognise it after an outage */
	int64_t first;		/* first slot the peer has */
	int64_t next;		/* next slot to fetch */
	int64_t retry_at;
	bool verify;		/* the peer came back: is peer_id still ours? */
	bool put_pending;
	char err[200];
	struct slot *ring;	/* nslots, indexed by start / gran % nslots */
	size_t cells;		/* sum of the ring's slot cells */
};

struct finstr {
	unsigned long id;
	json_t *spec;		/* forwarded on creation */
	json_t *put;		/* pending changeable properties, or NULL */
	char *token;
	int gran, nslots;
	struct link *links;	/* one per peer */
	struct finstr *next;
};

struct pending_delete {
	unsigned long peer_id;
	char *token;
	struct pending_delete *next;
};

struct peer {
	char *addr;		/* as given: HOST:PORT */
	char base[300];		/* http://HOST:PORT */
	enum peer_state state;
	char err[256];
	int64_t last_ok, down_since;
	struct pending_delete *dels;
};

struct fleet {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool started, stop, kick;
	char *token;
	struct peer *peers;
	size_t npeers;
	struct finstr *instrs;
};

enum job_kind { JOB_PROBE, JOB_CREATE, JOB_PUT, JOB_DELETE, JOB_FETCH, JOB_VERIFY };

struct job {
	enum job_kind kind;
	size_t peer;
	unsigned long id, peer_id;
	int64_t from, to;		/* fetch: slot starts [from, to] */
	int64_t sent_at;
	char url[512];
	char *body;			/* owned */
	char *auth;			/* owned: "Authorization: Bearer ..." */
	CURL *h;
	struct curl_slist *hdrs;
	char *resp;			/* owned */
	size_t len;
	long status;
	CURLcode cc;
	char curlerr[CURL_ERROR_SIZE];
};

static int64_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

size_t fleet__npeers(const struct fleet *f)
{
	return f->npeers;
}

/* ---- set-up ---- */

static int parse_peer(struct peer *p, const char *s, size_t len, char *err, size_t errlen)
{
	const char *colon, *end = s + len;
	char *e;
	long port;

	if (!len || len > 255) {
		snprintf(err, errlen, "--peers: empty or overlong entry (want HOST:PORT,HOST:PORT)");
		return -EINVAL;
	}
	colon = memrchr(s, ':', len);
	if (!colon || colon == s || colon + 1 == end) {
		snprintf(err, errlen, "--peers: '%.*s' is not HOST:PORT", (int)len, s);
		return -EINVAL;
	}
	if (*s == '[' && colon[-1] != ']') {
		snprintf(err, errlen, "--peers: '%.*s': IPv6 wants [ADDR]:PORT", (int)len, s);
		return -EINVAL;
	}
	if (*s != '[' && memchr(s, ':', (size_t)(colon - s))) {
		snprintf(err, errlen, "--peers: '%.*s': IPv6 wants [ADDR]:PORT", (int)len, s);
		return -EINVAL;
	}
	for (const char *c = s; c < colon; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '/' || *c == '@' ||
		    *c == '?' || *c == '#') {
			snprintf(err, errlen, "--peers: '%.*s': bad character in the host", (int)len, s);
			return -EINVAL;
		}
	errno = 0;
	port = strtol(colon + 1, &e, 10);
	if (e != end || errno || port < 1 || port > 65535) {
		snprintf(err, errlen, "--peers: '%.*s': port must be 1..65535", (int)len, s);
		return -EINVAL;
	}
	p->addr = strndup(s, len);
	if (!p->addr)
		return -ENOMEM;
	snprintf(p->base, sizeof(p->base), "http://%s", p->addr);
	return 0;
}

/* On success the caller owns *out. */
int fleet__new(const char *peers, const char *token, struct fleet **out, char *err,
	       size_t errlen)
{
	struct fleet *f;
	const char *p = peers;
	int rc = -EINVAL;

	if (!peers || !*peers) {
		snprintf(err, errlen, "--peers: empty list (want HOST:PORT,HOST:PORT)");
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->peers = calloc(FLEET_MAX_PEERS, sizeof(*f->peers));
	if (!f->peers) {
		rc = -ENOMEM;
		goto err_free;
	}
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (f->npeers == FLEET_MAX_PEERS) {
			snprintf(err, errlen, "--peers: more than %d peers", FLEET_MAX_PEERS);
			goto err_free;
		}
		rc = parse_peer(&f->peers[f->npeers], p, len, err, errlen);
		if (rc)
			goto err_free;
		for (size_t i = 0; i < f->npeers; i++)
			if (!strcmp(f->peers[i].addr, f->peers[f->npeers].addr)) {
				snprintf(err, errlen, "--peers: '%s' given twice", f->peers[i].addr);
				f->npeers++;
				rc = -EINVAL;
				goto err_free;
			}
		f->npeers++;
		p += len;
		if (*p == ',' && !*++p) {
			snprintf(err, errlen, "--peers: trailing ','");
			rc = -EINVAL;
			goto err_free;
		}
	}
	if (token && !(f->token = strdup(token))) {
		rc = -ENOMEM;
		goto err_free;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		snprintf(err, errlen, "libcurl failed to initialise");
		rc = -EIO;
		goto err_free;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	*out = f;
	return 0;
err_free:
	for (size_t i = 0; f->peers && i < f->npeers; i++)
		free(f->peers[i].addr);
	free(f->peers);
	free(f);
	return rc;
}

static void ring_clear(struct finstr *fi, struct link *l)
{
	for (int s = 0; l->ring && s < fi->nslots; s++) {
		json_decref(l->ring[s].value);
		l->ring[s].value = NULL;
		l->ring[s].cells = 0;
	}
	l->cells = 0;
}

static void finstr_free(struct fleet *f, struct finstr *fi)
{
	for (size_t p = 0; fi->links && p < f->npeers; p++) {
		ring_clear(fi, &fi->links[p]);
		free(fi->links[p].ring);
	}
	free(fi->links);
	json_decref(fi->spec);
	json_decref(fi->put);
	free(fi->token);
	free(fi);
}

static void *fleet_thread(void *arg);

int fleet__start(struct fleet *f)
{
	int rc = pthread_create(&f->thread, NULL, fleet_thread, f);

	if (rc)
		return -rc;
	f->started = true;
	return 0;
}

void fleet__free(struct fleet *f)
{
	if (!f)
		return;
	if (f->started) {
		pthread_mutex_lock(&f->lock);
		f->stop = true;
		pthread_cond_signal(&f->cond);
		pthread_mutex_unlock(&f->lock);
		pthread_join(f->thread, NULL);
	}
	while (f->instrs) {
		struct finstr *n = f->instrs->next;

		finstr_free(f, f->instrs);
		f->instrs = n;
	}
	for (size_t i = 0; i < f->npeers; i++) {
		while (f->peers[i].dels) {
			struct pending_delete *d = f->peers[i].dels;

			f->peers[i].dels = d->next;
			free(d->token);
			free(d);
		}
		free(f->peers[i].addr);
	}
	free(f->peers);
	free(f->token);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	curl_global_cleanup();
	free(f);
}

/* ---- the instrumentations (API side) ---- */

static struct finstr *find(struct fleet *f, unsigned long id)
{
	for (struct finstr *fi = f->instrs; fi; fi = fi->next)
		if (fi->id == id)
			return fi;
	return NULL;
}

/* The first slot of fi that starts after second t: what a peer that took
 * the instrumentation (back) at t reports from. */
static int64_t first_slot_after(const struct finstr *fi, int64_t t)
{
	return (t + 1 + fi->gran - 1) / fi->gran * fi->gran;
}

static int alloc_rings(struct fleet *f, struct finstr *fi)
{
	for (size_t p = 0; p < f->npeers; p++) {
		fi->links[p].ring = calloc((size_t)fi->nslots, sizeof(struct slot));
		if (!fi->links[p].ring)
			return -ENOMEM;
	}
	return 0;
}

int fleet__track(struct fleet *f, unsigned long id, const json_t *spec, const char *token,
		 int granularity, int retention)
{
	struct finstr *fi;
	int rc = -ENOMEM;

	if (granularity < 1 || retention < granularity)
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	if (find(f, id)) {
		rc = -EEXIST;
		goto out;
	}
	fi = calloc(1, sizeof(*fi));
	if (!fi)
		goto out;
	fi->id = id;
	fi->gran = granularity;
	fi->nslots = retention / granularity;
	fi->spec = json_deep_copy(spec);
	fi->links = calloc(f->npeers, sizeof(*fi->links));
	if (token)
		fi->token = strdup(token);
	else if (f->token)
		fi->token = strdup(f->token);
	if (!fi->spec || !fi->links || ((token || f->token) && !fi->token) || alloc_rings(f, fi)) {
		finstr_free(f, fi);
		goto out;
	}
	/* properties the aggregator sets itself mean nothing to a peer */
	json_object_del(fi->spec, "id");
	json_object_del(fi->spec, "uri");
	json_object_del(fi->spec, "uris");
	json_object_del(fi->spec, "crtime");
	fi->next = f->instrs;
	f->instrs = fi;
	f->kick = true;
	pthread_cond_signal(&f->cond);
	rc = 0;
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static void queue_delete(struct peer *p, unsigned long peer_id, const char *token)
{
	struct pending_delete *d = calloc(1, sizeof(*d));

	if (!d || (token && !(d->token = strdup(token)))) {
		free(d);
		log_error("fleet", "out of memory: instrumentation %lu left on peer %s", peer_id,
			  p->addr);
		return;
	}
	d->peer_id = peer_id;
	d->next = p->dels;
	p->dels = d;
}

void fleet__forget(struct fleet *f, unsigned long id)
{
	struct finstr **pp, *fi;

	pthread_mutex_lock(&f->lock);
	for (pp = &f->instrs; *pp && (*pp)->id != id; pp = &(*pp)->next)
		;
	fi = *pp;
	if (fi) {
		*pp = fi->next;
		for (size_t p = 0; p < f->npeers; p++)
			if (fi->links[p].peer_id)
				queue_delete(&f->peers[p], fi->links[p].peer_id, fi->token);
		finstr_free(f, fi);
		f->kick = true;
		pthread_cond_signal(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
}

int fleet__update(struct fleet *f, unsigned long id, const json_t *body, int retention)
{
	static const char *const changeable[] = { "retention-time", "idle-max", "persist-data" };
	struct finstr *fi;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	fi = find(f, id);
	if (!fi)
		goto out;
	if (!fi->put && !(fi->put = json_object())) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sizeof(changeable) / sizeof(changeable[0]); i++) {
		json_t *v = json_object_get(body, changeable[i]);

		if (v) {
			json_object_set(fi->put, changeable[i], v);
			json_object_set(fi->spec, changeable[i], v);
		}
	}
	if (retention / fi->gran != fi->nslots) {
		for (size_t p = 0; p < f->npeers; p++) {
			ring_clear(fi, &fi->links[p]);
			free(fi->links[p].ring);
			fi->links[p].ring = NULL;
		}
		fi->nslots = retention / fi->gran;
		if (alloc_rings(f, fi)) {
			rc = -ENOMEM;
			fi->nslots = 0;
			goto out;
		}
	}
	for (size_t p = 0; p < f->npeers; p++)
		fi->links[p].put_pending = true;
	f->kick = true;
	pthread_cond_signal(&f->cond);
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

json_t *fleet__spec(struct fleet *f, unsigned long id)
{
	struct finstr *fi;
	json_t *s = NULL;

	pthread_mutex_lock(&f->lock);
	fi = find(f, id);
	if (fi)
		s = json_deep_copy(fi->spec);
	pthread_mutex_unlock(&f->lock);
	return s;
}

/* ---- reads ---- */

static int merge_locked(struct fleet *f, struct finstr *fi, int64_t start, json_t *value)
{
	int n = 1, rc = 0;

	for (size_t p = 0; fi && fi->nslots && p < f->npeers; p++) {
		struct slot *s = &fi->links[p].ring[(size_t)(start / fi->gran) % (size_t)fi->nslots];
		int mrc;

		if (!s->value || s->start != start)
			continue;
		mrc = value__merge(value, s->value);
		if (mrc) {
			log_warn("fleet", "instrumentation %lu: value of peer %s for %lld not merged: %s",
				 fi->id, f->peers[p].addr, (long long)start, strerror(-mrc));
			rc = mrc;
			continue;
		}
		n++;
	}
	return rc ? rc : n;
}

int fleet__merge_slot(struct fleet *f, unsigned long id, int64_t start, json_t *value)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	rc = merge_locked(f, find(f, id), start, value);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static int nsources_locked(const struct fleet *f)
{
	int n = 1;

	for (size_t p = 0; p < f->npeers; p++)
		n += f->peers[p].state == PEER_UP;
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

static int annotate_point(struct fleet *f, struct finstr *fi, json_t *pt, int nsources)
{
	json_t *v = json_object_get(pt, "value");
	json_int_t start = json_integer_value(json_object_get(pt, "start_time"));
	json_int_t dur = json_integer_value(json_object_get(pt, "duration"));
	int minrep = -1;

	if (!fi)
		return 0;	/* not forwarded (see fleet__track's caller): local only */
	if (!v || dur < fi->gran)
		return -EINVAL;
	for (json_int_t t = start; t < start + dur; t += fi->gran) {
		int n = merge_locked(f, fi, t, v);

		if (n < 0)
			return n;
		if (minrep < 0 || n < minrep)
			minrep = n;
	}
	json_object_set_new(pt, "nsources", json_integer(nsources));
	json_object_set_new(pt, "minreporting", json_integer(minrep));
	return 0;
}

int fleet__annotate_raw(struct fleet *f, unsigned long id, json_t *raw)
{
	struct finstr *fi;
	int rc = 0, ns;

	pthread_mutex_lock(&f->lock);
	fi = find(f, id);
	ns = nsources_locked(f);
	if (json_is_array(raw)) {
		size_t i;
		json_t *pt;

		json_array_foreach(raw, i, pt)
			if (!rc)
				rc = annotate_point(f, fi, pt, ns);
	} else {
		rc = annotate_point(f, fi, raw, ns);
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static json_t *time_or_null(int64_t t)
{
	return t ? json_integer(t) : json_null();
}

json_t *fleet__instr_status(struct fleet *f, unsigned long id)
{
	json_t *arr = json_array();
	struct finstr *fi;

	pthread_mutex_lock(&f->lock);
	fi = find(f, id);
	for (size_t p = 0; arr && fi && p < f->npeers; p++) {
		const struct link *l = &fi->links[p];
		const struct peer *pe = &f->peers[p];
		char idbuf[32];

		snprintf(idbuf, sizeof(idbuf), "%lu", l->peer_id);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:o, s:o}", "address", pe->addr,
						     "state", state_names[pe->state],
						     "id", l->peer_id && !l->verify ? json_string(idbuf) : json_null(),
						     "since", l->peer_id && !l->verify ? json_integer(l->first) : json_null(),
						     "last_error", l->err[0] ? json_string(l->err)
									     : pe->state == PEER_DOWN ? json_string(pe->err)
									     : json_null()));
	}
	pthread_mutex_unlock(&f->lock);
	return arr;
}

json_t *fleet__links_json(struct fleet *f, unsigned long id)
{
	json_t *arr = json_array();
	struct finstr *fi;

	if (!arr)
		return NULL;
	pthread_mutex_lock(&f->lock);
	fi = find(f, id);
	for (size_t p = 0; fi && p < f->npeers; p++) {
		const struct link *l = &fi->links[p];

		if (l->peer_id && json_array_append_new(arr, json_pack("{s:s, s:I, s:I}",
			"address", f->peers[p].addr, "id", (json_int_t)l->peer_id,
			"crtime", (json_int_t)l->crtime))) {
			json_decref(arr);
			arr = NULL;
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return arr;
}

int fleet__adopt(struct fleet *f, unsigned long id, const json_t *links)
{
	struct finstr *fi;
	const json_t *e;
	int64_t now = now_s();
	size_t i, p;
	int rc = 0;

	if (!json_is_array(links))
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	fi = find(f, id);
	if (!fi) {
		rc = -ENOENT;
		goto out;
	}
	json_array_foreach(links, i, e) {
		const char *addr = json_string_value(json_object_get(e, "address"));
		json_int_t pid = json_integer_value(json_object_get(e, "id"));

		if (!addr || pid <= 0 || !json_is_integer(json_object_get(e, "crtime"))) {
			rc = -EINVAL;
			continue;
		}
		for (p = 0; p < f->npeers && strcmp(f->peers[p].addr, addr); p++)
			;
		if (p == f->npeers) {
			log_warn("fleet", "instrumentation %lu was %lld on %s, no longer a peer: left to its idle-max there",
				 id, (long long)pid, addr);
			continue;
		}
		fi->links[p].peer_id = (unsigned long)pid;
		fi->links[p].crtime = json_integer_value(json_object_get(e, "crtime"));
		fi->links[p].verify = true;
		fi->links[p].next = first_slot_after(fi, now);
		fi->links[p].first = fi->links[p].next;
	}
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

json_t *fleet__peers_json(struct fleet *f)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&f->lock);
	for (size_t p = 0; arr && p < f->npeers; p++) {
		const struct peer *pe = &f->peers[p];
		size_t ninstr = 0, ndel = 0;

		for (struct finstr *fi = f->instrs; fi; fi = fi->next)
			ninstr += fi->links[p].peer_id != 0;
		for (struct pending_delete *d = pe->dels; d; d = d->next)
			ndel++;
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:o, s:o, s:I, s:I}",
						     "address", pe->addr, "state", state_names[pe->state],
						     "last_error", pe->err[0] ? json_string(pe->err) : json_null(),
						     "last_success", time_or_null(pe->last_ok),
						     "down_since", time_or_null(pe->state == PEER_DOWN ? pe->down_since : 0),
						     "instrumentations", (json_int_t)ninstr,
						     "pending_deletes", (json_int_t)ndel));
	}
	pthread_mutex_unlock(&f->lock);
	return arr;
}

/* ---- the thread: jobs ---- */

struct fleet_jobs {
	struct job *v;
	size_t n, cap;
};

/* Appends a job; its strings are owned by the list. NULL when out of memory. */
static struct job *job_add(struct fleet_jobs *js, enum job_kind kind, size_t peer, const char *token)
{
	struct job *j;

	if (js->n == js->cap) {
		size_t cap = js->cap ? js->cap * 2 : 16;
		struct job *nv = realloc(js->v, cap * sizeof(*nv));

		if (!nv)
			return NULL;
		js->v = nv;
		js->cap = cap;
	}
	j = &js->v[js->n];
	memset(j, 0, sizeof(*j));
	j->kind = kind;
	j->peer = peer;
	/* until an answer says otherwise */
	j->cc = CURLE_COULDNT_CONNECT;
	snprintf(j->curlerr, sizeof(j->curlerr), "no answer");
	if (token && asprintf(&j->auth, "Authorization: Bearer %s", token) < 0)
		return NULL;
	js->n++;
	return j;
}

static void jobs_free(struct fleet_jobs *js)
{
	for (size_t i = 0; i < js->n; i++) {
		free(js->v[i].body);
		free(js->v[i].auth);
		free(js->v[i].resp);
	}
	free(js->v);
}

static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "GET", "GET" };

/* Turns the state into this tick's requests. Caller holds f->lock. */
static int plan(struct fleet *f, struct fleet_jobs *js, int64_t now)
{
	struct job *j;

	for (size_t p = 0; p < f->npeers; p++) {
		struct peer *pe = &f->peers[p];

		if (!(j = job_add(js, JOB_PROBE, p, f->token)))
			return -ENOMEM;
		snprintf(j->url, sizeof(j->url), "%s/ca", pe->base);
		if (pe->state == PEER_DOWN)
			continue;
		for (struct pending_delete *d = pe->dels; d; d = d->next) {
			if (!(j = job_add(js, JOB_DELETE, p, d->token)))
				return -ENOMEM;
			j->peer_id = d->peer_id;
			snprintf(j->url, sizeof(j->url), "%s/ca/instrumentations/%lu", pe->base, d->peer_id);
		}
	}
	for (struct finstr *fi = f->instrs; fi; fi = fi->next) {
		for (size_t p = 0; p < f->npeers; p++) {
			struct peer *pe = &f->peers[p];
			struct link *l = &fi->links[p];
			int64_t last = now / fi->gran * fi->gran - fi->gran;
			enum job_kind k;

			if (pe->state == PEER_DOWN)
				continue;
			if (!l->peer_id)
				k = now >= l->retry_at ? JOB_CREATE : JOB_PROBE;
			else if (l->verify)
				k = JOB_VERIFY;
			else if (l->put_pending && fi->put)
				k = JOB_PUT;
			else
				k = l->next <= last ? JOB_FETCH : JOB_PROBE;
			if (k == JOB_PROBE)
				continue;
			if (!(j = job_add(js, k, p, fi->token)))
				return -ENOMEM;
			j->id = fi->id;
			j->peer_id = l->peer_id;
			j->sent_at = now;
			if (k == JOB_CREATE) {
				snprintf(j->url, sizeof(j->url), "%s/ca/instrumentations", pe->base);
				j->body = json_dumps(fi->spec, JSON_COMPACT);
			} else if (k == JOB_PUT) {
				snprintf(j->url, sizeof(j->url), "%s/ca/instrumentations/%lu", pe->base,
					 l->peer_id);
				j->body = json_dumps(fi->put, JSON_COMPACT);
			} else if (k == JOB_VERIFY) {
				snprintf(j->url, sizeof(j->url), "%s/ca/instrumentations/%lu", pe->base,
					 l->peer_id);
			} else {
				int64_t keep = fi->nslots < INSTR_POINTS_MAX ? fi->nslots : INSTR_POINTS_MAX;
				int64_t from = l->next, lo = last - (FLEET_REFETCH_SLOTS - 1) * fi->gran;

				if (from > lo)
					from = lo;
				/* never before the peer had it: those slots are not reported */
				if (from < l->first)
					from = l->first;
				if (from < last - (keep - 1) * fi->gran)
					from = last - (keep - 1) * fi->gran;
				j->from = from;
				j->to = last;
				snprintf(j->url, sizeof(j->url),
					 "%s/ca/instrumentations/%lu/value/raw?start_time=%lld&duration=%d&ndatapoints=%lld",
					 pe->base, l->peer_id, (long long)from, fi->gran,
					 (long long)((last - from) / fi->gran + 1));
			}
			if ((k == JOB_CREATE || k == JOB_PUT) && !j->body)
				return -ENOMEM;
		}
	}
	return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx)
{
	struct job *j = ctx;
	size_t n = size * nmemb;
	char *nb;

	if (j->len + n > RESP_MAX)
		return 0;
	nb = realloc(j->resp, j->len + n + 1);
	if (!nb)
		return 0;
	memcpy(nb + j->len, ptr, n);
	j->len += n;
	nb[j->len] = '\0';
	j->resp = nb;
	return n;
}

/* Runs every job concurrently; each ends with a status or a curl error. */
static void run_jobs(struct fleet_jobs *js)
{
	CURLM *m = curl_multi_init();
	int running = 0;

	if (!m) {
		for (size_t i = 0; i < js->n; i++)
			js->v[i].cc = CURLE_OUT_OF_MEMORY;
		return;
	}
	for (size_t i = 0; i < js->n; i++) {
		struct job *j = &js->v[i];

		j->h = curl_easy_init();
		if (!j->h) {
			j->cc = CURLE_OUT_OF_MEMORY;
			continue;
		}
		j->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
		if (j->auth)
			j->hdrs = curl_slist_append(j->hdrs, j->auth);
		curl_easy_setopt(j->h, CURLOPT_URL, j->url);
		curl_easy_setopt(j->h, CURLOPT_CUSTOMREQUEST, methods[j->kind]);
		if (j->body)
			curl_easy_setopt(j->h, CURLOPT_POSTFIELDS, j->body);
		curl_easy_setopt(j->h, CURLOPT_HTTPHEADER, j->hdrs);
		curl_easy_setopt(j->h, CURLOPT_CONNECTTIMEOUT_MS, (long)FLEET_CONNECT_MS);
		curl_easy_setopt(j->h, CURLOPT_TIMEOUT_MS, (long)FLEET_TIMEOUT_MS);
		curl_easy_setopt(j->h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(j->h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(j->h, CURLOPT_WRITEDATA, j);
		j->curlerr[0] = '\0';
		curl_easy_setopt(j->h, CURLOPT_ERRORBUFFER, j->curlerr);
		curl_easy_setopt(j->h, CURLOPT_PROTOCOLS_STR, "http");
		curl_easy_setopt(j->h, CURLOPT_PRIVATE, j);
		curl_multi_add_handle(m, j->h);
	}
	do {
		CURLMcode mc = curl_multi_perform(m, &running);

		if (mc == CURLM_OK && running)
			mc = curl_multi_poll(m, NULL, 0, 100, NULL);
		if (mc != CURLM_OK)
			break;
	} while (running);
	for (;;) {
		int left;
		CURLMsg *msg = curl_multi_info_read(m, &left);
		struct job *j;

		if (!msg)
			break;
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		j->cc = msg->data.result;
		if (j->cc == CURLE_OK)
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &j->status);
	}
	for (size_t i = 0; i < js->n; i++) {
		struct job *j = &js->v[i];

		if (!j->h)
			continue;
		curl_multi_remove_handle(m, j->h);
		curl_easy_cleanup(j->h);
		curl_slist_free_all(j->hdrs);
	}
	curl_multi_cleanup(m);
}

/* The peer's error message, or the curl error, into buf. */
static void job_error(const struct job *j, const char *what, char *buf, size_t len)
{
	json_t *o;

	if (j->cc != CURLE_OK) {
		snprintf(buf, len, "%s: %.200s", what, j->curlerr[0] ? j->curlerr : curl_easy_strerror(j->cc));
		return;
	}
	o = j->resp ? json_loads(j->resp, 0, NULL) : NULL;
	if (json_string_value(json_object_get(o, "message")))
		snprintf(buf, len, "%s: HTTP %ld: %s", what, j->status,
			 json_string_value(json_object_get(o, "message")));
	else
		snprintf(buf, len, "%s: HTTP %ld", what, j->status);
	json_decref(o);
}

static size_t value_cells(const json_t *v)
{
	const char *k;
	json_t *e;
	size_t n = 0;

	if (json_is_array(v))
		return json_array_size(v);
	if (!json_is_object(v))
		return 1;
	json_object_foreach((json_t *)v, k, e)
		n += value_cells(e);
	return n;
}

static void store_point(struct finstr *fi, struct link *l, const json_t *pt, int64_t from,
			int64_t to)
{
	json_int_t start = json_integer_value(json_object_get(pt, "start_time"));
	json_t *v = json_object_get(pt, "value");
	struct slot *s;
	size_t cells;

	if (!fi->nslots || !v || value__check(v) || start < from || start > to || start % fi->gran)
		return;
	s = &l->ring[(size_t)(start / fi->gran) % (size_t)fi->nslots];
	json_decref(s->value);
	s->value = NULL;
	l->cells -= s->cells;
	s->cells = 0;
	s->start = start;
	cells = value_cells(v);
	if (l->cells + cells > FLEET_LINK_CELLS_MAX) {
		snprintf(l->err, sizeof(l->err),
			 "slot %lld dropped: its %zu cells would take this peer past %d cells kept for the instrumentation",
			 (long long)start, cells, FLEET_LINK_CELLS_MAX);
		return;
	}
	s->value = json_deep_copy(v);
	if (s->value) {
		/* peers write CA's inclusive [lo, hi]; slots are kept half-open */
		value__shift_hi(s->value, +1);
		s->cells = cells;
		l->cells += cells;
	}
}

static void peer_down(struct fleet *f, struct peer *pe, const struct job *j, int64_t now)
{
	if (pe->state != PEER_DOWN) {
		pe->down_since = now;
		log_warn("fleet", "peer %s is down: %s", pe->addr, j->curlerr[0] ? j->curlerr : curl_easy_strerror(j->cc));
	}
	pe->state = PEER_DOWN;
	job_error(j, "unreachable", pe->err, sizeof(pe->err));
}

static void peer_up(struct fleet *f, size_t p, int64_t now)
{
	struct peer *pe = &f->peers[p];

	if (pe->state == PEER_DOWN) {
		log_info("fleet", "peer %s is back after %lld s", pe->addr, (long long)(now - pe->down_since));
		/* it may have restarted and reused our ids for something else */
		for (struct finstr *fi = f->instrs; fi; fi = fi->next) {
			struct link *l = &fi->links[p];
			int64_t cur = (now - 1) / fi->gran * fi->gran - fi->gran;

			l->verify = l->peer_id != 0;
			/* slots of the outage stay unreported: a restarted peer would
			 * answer zeros for them */
			if (l->next < cur)
				l->next = cur;
		}
	}
	pe->state = PEER_UP;
	pe->last_ok = now;
	pe->err[0] = '\0';
}

/* Applies one answer. Caller holds f->lock. */
static void apply(struct fleet *f, struct job *j, int64_t now)
{
	struct peer *pe = &f->peers[j->peer];
	struct finstr *fi = j->id ? find(f, j->id) : NULL;
	struct link *l = fi ? &fi->links[j->peer] : NULL;
	json_t *o = NULL;

	log_debug("fleet", "%s %s -> %ld %s", methods[j->kind], j->url, j->status,
		  j->cc == CURLE_OK ? "" : curl_easy_strerror(j->cc));
	if (j->kind == JOB_PROBE) {
		if (j->cc != CURLE_OK)
			peer_down(f, pe, j, now);
		else
			peer_up(f, j->peer, now);
		return;
	}
	if (j->cc != CURLE_OK) {
		if (l)
			job_error(j, "request failed", l->err, sizeof(l->err));
		return;
	}
	if (j->kind == JOB_DELETE) {
		if (j->status == 204 || j->status == 404 || j->status == 401 || j->status == 403) {
			struct pending_delete **pp = &pe->dels, *d;

			if (j->status != 204 && j->status != 404)
				log_warn("fleet", "peer %s refused to delete instrumentation %lu (HTTP %ld): left to its idle-max",
					 pe->addr, j->peer_id, j->status);
			while (*pp && (*pp)->peer_id != j->peer_id)
				pp = &(*pp)->next;
			if ((d = *pp)) {
				*pp = d->next;
				free(d->token);
				free(d);
			}
		}
		return;
	}
	if (!l) {
		/* forgotten while the request was out: do not leave it behind */
		if (j->kind == JOB_CREATE && j->status == 201 && (o = json_loads(j->resp, 0, NULL))) {
			const char *pid = json_string_value(json_object_get(o, "id"));

			if (pid)
				queue_delete(pe, strtoul(pid, NULL, 10), NULL);
		}
		json_decref(o);
		return;
	}
	if (j->status == 404 && j->kind != JOB_CREATE && l->peer_id == j->peer_id) {
		snprintf(l->err, sizeof(l->err), "instrumentation %lu vanished on the peer: creating it again",
			 j->peer_id);
		log_warn("fleet", "peer %s: %s", pe->addr, l->err);
		l->peer_id = 0;
		l->verify = false;
		return;
	}
	if (j->status < 200 || j->status > 299) {
		job_error(j, j->kind == JOB_CREATE ? "creation refused" : "request refused", l->err,
			  sizeof(l->err));
		if (j->kind == JOB_CREATE) {
			l->retry_at = now + FLEET_RETRY_S;
			log_warn("fleet", "peer %s, instrumentation %lu: %s", pe->addr, fi->id, l->err);
		}
		return;
	}
	o = j->resp ? json_loads(j->resp, 0, NULL) : NULL;
	if (!o) {
		snprintf(l->err, sizeof(l->err), "answer is not JSON");
		return;
	}
	switch (j->kind) {
	case JOB_CREATE: {
		const char *pid = json_string_value(json_object_get(o, "id"));

		if (!pid) {
			snprintf(l->err, sizeof(l->err), "creation answer lacks an id");
			break;
		}
		l->peer_id = strtoul(pid, NULL, 10);
		l->crtime = json_integer_value(json_object_get(o, "crtime"));
		/* the peer drops what happened before its next second */
		l->next = first_slot_after(fi, j->sent_at);
		l->first = l->next;
		l->err[0] = '\0';
		l->put_pending = false;
		log_info("fleet", "instrumentation %lu is %lu on peer %s", fi->id, l->peer_id, pe->addr);
		break;
	}
	case JOB_VERIFY:
		l->verify = false;
		if (json_integer_value(json_object_get(o, "crtime")) != l->crtime) {
			snprintf(l->err, sizeof(l->err), "peer restarted: instrumentation %lu there is another one now; creating ours again",
				 l->peer_id);
			l->peer_id = 0;
		} else {
			log_info("fleet", "instrumentation %lu is still %lu on peer %s", fi->id, l->peer_id,
				 pe->addr);
		}
		break;
	case JOB_PUT:
		l->put_pending = false;
		l->crtime = json_integer_value(json_object_get(o, "crtime"));
		l->err[0] = '\0';
		break;
	case JOB_FETCH:
		/* cleared first: store_point says why it dropped a slot */
		l->err[0] = '\0';
		if (json_is_array(o)) {
			size_t i;
			json_t *pt;

			json_array_foreach(o, i, pt)
				store_point(fi, l, pt, j->from, j->to);
		} else {
			store_point(fi, l, o, j->from, j->to);
		}
		if (j->to + fi->gran > l->next)
			l->next = j->to + fi->gran;
		break;
	default:
		break;
	}
	json_decref(o);
}

/* Applies every answer of js, probes first: the others' answers are judged
 * by the peer's state. Caller holds f->lock. */
static void apply_all(struct fleet *f, struct fleet_jobs *js, int64_t now)
{
	for (size_t i = 0; i < js->n; i++)
		if (js->v[i].kind == JOB_PROBE)
			apply(f, &js->v[i], now);
	for (size_t i = 0; i < js->n; i++)
		if (js->v[i].kind != JOB_PROBE && f->peers[js->v[i].peer].state != PEER_DOWN)
			apply(f, &js->v[i], now);
}

static void tick(struct fleet *f)
{
	struct fleet_jobs js = { 0 };
	int64_t now = now_s();

	pthread_mutex_lock(&f->lock);
	if (plan(f, &js, now))
		log_error("fleet", "out of memory planning the peers' requests");
	pthread_mutex_unlock(&f->lock);
	run_jobs(&js);
	pthread_mutex_lock(&f->lock);
	apply_all(f, &js, now);
	pthread_mutex_unlock(&f->lock);
	jobs_free(&js);
}

/* ---- a tick in steps, without the network (fleet_plan.h) ---- */

/* On success the caller owns *out (fleet_jobs__free). */
int fleet__plan(struct fleet *f, int64_t now, struct fleet_jobs **out)
{
	struct fleet_jobs *js = calloc(1, sizeof(*js));
	int rc;

	if (!js)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	rc = plan(f, js, now);
	pthread_mutex_unlock(&f->lock);
	if (rc) {
		fleet_jobs__free(js);
		return rc;
	}
	*out = js;
	return 0;
}

void fleet__apply(struct fleet *f, struct fleet_jobs *js, int64_t now)
{
	pthread_mutex_lock(&f->lock);
	apply_all(f, js, now);
	pthread_mutex_unlock(&f->lock);
}

size_t fleet_jobs__count(const struct fleet_jobs *js)
{
	return js->n;
}

int fleet_jobs__request(const struct fleet_jobs *js, size_t i, struct fleet_request *out)
{
	const struct job *j;

	if (i >= js->n)
		return -ENOENT;
	j = &js->v[i];
	*out = (struct fleet_request){ j->peer, methods[j->kind], j->url, j->body, j->auth };
	return 0;
}

int fleet_jobs__answer(struct fleet_jobs *js, size_t i, long status, const char *body)
{
	struct job *j;

	if (i >= js->n)
		return -ENOENT;
	j = &js->v[i];
	free(j->resp);
	j->resp = NULL;
	j->len = 0;
	if (body && !(j->resp = strdup(body)))
		return -ENOMEM;
	j->len = body ? strlen(body) : 0;
	j->cc = CURLE_OK;
	j->status = status;
	return 0;
}

int fleet_jobs__unreachable(struct fleet_jobs *js, size_t i, const char *why)
{
	struct job *j;

	if (i >= js->n)
		return -ENOENT;
	j = &js->v[i];
	j->cc = CURLE_COULDNT_CONNECT;
	snprintf(j->curlerr, sizeof(j->curlerr), "%s", why);
	return 0;
}

void fleet_jobs__free(struct fleet_jobs *js)
{
	if (!js)
		return;
	jobs_free(js);
	free(js);
}

static void *fleet_thread(void *arg)
{
	struct fleet *f = arg;

	for (;;) {
		struct timespec at;

		clock_gettime(CLOCK_REALTIME, &at);
		at.tv_sec += at.tv_nsec >= TICK_OFFSET_NS ? 1 : 0;
		at.tv_nsec = TICK_OFFSET_NS;
		pthread_mutex_lock(&f->lock);
		while (!f->stop && !f->kick)
			if (pthread_cond_timedwait(&f->cond, &f->lock, &at) == ETIMEDOUT)
				break;
		f->kick = false;
		if (f->stop) {
			pthread_mutex_unlock(&f->lock);
			break;
		}
		pthread_mutex_unlock(&f->lock);
		tick(f);
	}
	return NULL;
}
