/* Persistence: the agent's instrumentations under STATE_DIR.
 *
 *   state.json       {"version": 1, "next_id": N, "saved": UNIX,
 *                     "instrumentations": [{"id", "owner", "spec"}, ...]}
 *   data/<id>.json   the retained slots of a persist-data instrumentation,
 *                    as instr__data_to_json() shapes them
 *
 * An aggregator (--peers) also keeps each instrumentation's ids on its peers
 * ("peers": [{"address", "id", "crtime"}]) to take them back after a restart.
 *
 * Why the data lives apart, and why a thread of its own writes it: one
 * persist-data instrumentation of an hour can hold a million cells. Saved as
 * one JSON tree under the agent lock every AGENT_PERSIST_INTERVAL seconds, it
 * stalled every request for a second and more, and a restart parsed a tree
 * as large as all the data at once. Now the persister thread writes each
 * data file STATE_DUMP_SLOTS slots at a time, taking the lock for each batch
 * and writing to disk without it, and a restart parses one instrumentation's
 * data at a time. A state.json that still carries "data" inline (written by
 * earlier versions) is read as well.
 *
 * Every file is written whole and atomically (tmp file, fsync, rename, fsync
 * of the directory), data files before state.json, so that a crash leaves
 * either the old or the new version of each.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/state.h"
#include "common/log.h"
#include "engine/instr.h"
#include "fleet/fleet.h"

#define STATE_VERSION 1

/* Slots looked at per hold of the agent lock while a data file is written.
 * 64 slots of 200 cells take ~10 ms to format: under 50 clients the raw-value
 * p99 was 57 ms with 256 and 27 ms with 64 (bench/query.sh). */
#define STATE_DUMP_SLOTS	64

static int fsync_dir_of(const char *path)
{
	char dir[4096], *slash;
	int dfd, rc = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		/* the rename is durable only once the directory is */
		if (fsync(dfd))
			rc = -errno;
		close(dfd);
	}
	return rc;
}

/* Opens PATH.tmp for writing; *tmp receives its name. Caller owns *out and
 * ends it with atomic_commit() or atomic_abort(). 0 or -errno. */
static int atomic_open(const char *path, char *tmp, size_t tmplen, FILE **out)
{
	int fd;

	if (snprintf(tmp, tmplen, "%s.tmp", path) >= (int)tmplen)
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	*out = fdopen(fd, "w");
	if (!*out) {
		close(fd);
		unlink(tmp);
		return -ENOMEM;
	}
	return 0;
}

static void atomic_abort(FILE *f, const char *tmp)
{
	fclose(f);
	unlink(tmp);
}

/* Takes ownership of f: flushes, syncs and closes it, then renames tmp over
 * path. On any error tmp is removed and path left as it was. */
static int atomic_commit(FILE *f, const char *tmp, const char *path)
{
	int rc = 0;

	if (fflush(f) || ferror(f))
		rc = errno ? -errno : -EIO;
	else if (fsync(fileno(f)))
		rc = -errno;
	if (fclose(f) && !rc)
		rc = errno ? -errno : -EIO;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	return fsync_dir_of(path);
}

int state__write_atomic(const char *path, const char *data, size_t len)
{
	char tmp[4200];
	FILE *f;
	int rc;

	rc = atomic_open(path, tmp, sizeof(tmp), &f);
	if (rc)
		return rc;
	errno = 0;
	if (len && fwrite(data, 1, len, f) != len) {
		rc = errno ? -errno : -EIO;
		atomic_abort(f, tmp);
		return rc;
	}
	return atomic_commit(f, tmp, path);
}

static int state_path(const struct agent *a, char *buf, size_t len)
{
	if (!a->cfg.state_dir)
		return -ENOENT;
	if (snprintf(buf, len, "%s/state.json", a->cfg.state_dir) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

static int data_path(const struct agent *a, unsigned long id, char *buf, size_t len)
{
	int n = id ? snprintf(buf, len, "%s/data/%lu.json", a->cfg.state_dir, id)
		   : snprintf(buf, len, "%s/data", a->cfg.state_dir);

	return n >= (int)len ? -ENAMETOOLONG : 0;
}

/* Writes data/<id>.json in batches of slots, holding a->lock for each batch
 * only (caller does not hold it). Each batch goes through a memory buffer so
 * that no disk write happens under the lock. An instrumentation deleted
 * meanwhile leaves no file. 0 or -errno. */
static int save_data(struct agent *a, unsigned long id)
{
	char path[4096], tmp[4200], *buf = NULL;
	struct instr_dump d;
	struct agent_instr *ai;
	size_t len = 0;
	FILE *f, *mem;
	int rc, step = 1;

	rc = data_path(a, id, path, sizeof(path));
	if (rc)
		return rc;
	rc = atomic_open(path, tmp, sizeof(tmp), &f);
	if (rc)
		return rc;
	for (bool first = true; step == 1; first = false) {
		mem = open_memstream(&buf, &len);
		if (!mem) {
			rc = -ENOMEM;
			break;
		}
		pthread_mutex_lock(&a->lock);
		ai = agent__by_id(a, id);
		if (!ai || !instr__persist(ai->in))
			step = -ENOENT;
		else if (first)
			step = instr__dump_begin(ai->in, &d, mem);
		else
			step = instr__dump_step(ai->in, &d, mem, STATE_DUMP_SLOTS);
		if (first && step == 0)
			step = 1;	/* the head is written: the slots follow */
		pthread_mutex_unlock(&a->lock);
		if (fclose(mem) && step >= 0)
			step = -ENOMEM;
		errno = 0;
		if (step >= 0 && len && fwrite(buf, 1, len, f) != len)
			step = errno ? -errno : -EIO;
		free(buf);
		buf = NULL;
		if (step < 0)
			rc = step;
	}
	if (rc) {
		atomic_abort(f, tmp);
		return rc == -ENOENT ? 0 : rc;
	}
	return atomic_commit(f, tmp, path);
}

static bool id_listed(const unsigned long *ids, size_t n, unsigned long id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Removes the data files (and tmp files) of instrumentations that are gone
 * or no longer persist their data. Only the saving thread writes there. */
static void remove_stale_data(struct agent *a, const unsigned long *ids, size_t n)
{
	char dir[4096], path[4400];
	struct dirent *e;
	unsigned long id;
	DIR *dp;
	int used;

	if (data_path(a, 0, dir, sizeof(dir)) || !(dp = opendir(dir)))
		return;
	while ((e = readdir(dp))) {
		used = 0;
		if (sscanf(e->d_name, "%lu.json%n", &id, &used) != 1 || e->d_name[0] < '0' ||
		    e->d_name[0] > '9' || (!e->d_name[used] && id_listed(ids, n, id)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) && errno != ENOENT)
			log_warn("state", "cannot remove %s: %s", path, strerror(errno));
	}
	closedir(dp);
}

/* Under a->lock: the specs as state.json holds them, and the ids of the
 * persist-data instrumentations (*ids owned by the caller). */
static char *snapshot_specs(struct agent *a, unsigned long **ids, size_t *nids)
{
	json_t *root, *arr, *o;
	char *text = NULL;
	size_t n = 0;

	*ids = NULL;
	*nids = 0;
	root = json_pack("{s:i, s:I, s:I, s:[]}", "version", STATE_VERSION,
			 "next_id", (json_int_t)a->next_id, "saved", (json_int_t)agent__now(),
			 "instrumentations");
	if (!root)
		return NULL;
	arr = json_object_get(root, "instrumentations");
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		n++;
	if (n && !(*ids = calloc(n, sizeof(**ids))))
		goto out;
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next) {
		o = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)ai->id, "owner", ai->owner,
			      "spec", instr__to_json(ai->in));
		if (!o || json_array_append_new(arr, o))
			goto out;
		/* an aggregator keeps its peers' ids: after a restart it takes
		 * them back instead of creating a second copy on every peer */
		if (a->fleet && json_object_set_new(o, "peers", fleet__links_json(a->fleet, ai->id)))
			goto out;
		if (instr__persist(ai->in))
			(*ids)[(*nids)++] = ai->id;
	}
	text = json_dumps(root, JSON_COMPACT);
out:
	if (!text) {
		free(*ids);
		*ids = NULL;
		*nids = 0;
	}
	json_decref(root);
	return text;
}

int state__save(struct agent *a)
{
	char path[4096], dir[4096], *text;
	unsigned long *ids;
	size_t nids, i;
	int rc = 0, r;

	if (state_path(a, path, sizeof(path)) || data_path(a, 0, dir, sizeof(dir)))
		return 0;
	pthread_mutex_lock(&a->lock);
	text = snapshot_specs(a, &ids, &nids);
	if (text) {
		a->dirty = false;
		a->last_persist = agent__now();
	}
	pthread_mutex_unlock(&a->lock);
	if (!text) {
		log_error("state", "cannot save the state: out of memory");
		return -ENOMEM;
	}
	if (nids && mkdir(dir, 0700) && errno != EEXIST) {
		rc = -errno;
		log_error("state", "cannot create %s: %s", dir, strerror(errno));
	}
	for (i = 0; i < nids && !rc; i++) {
		r = save_data(a, ids[i]);
		if (r) {
			char dp[4096];

			data_path(a, ids[i], dp, sizeof(dp));
			log_error("state", "cannot write %s: %s", dp, strerror(-r));
			rc = r;
		}
	}
	r = state__write_atomic(path, text, strlen(text));
	if (r) {
		log_error("state", "cannot write %s: %s", path, strerror(-r));
		rc = r;
	}
	if (!rc)
		remove_stale_data(a, ids, nids);
	else {
		/* try again at the next tick */
		pthread_mutex_lock(&a->lock);
		a->dirty = true;
		pthread_mutex_unlock(&a->lock);
	}
	free(ids);
	free(text);
	return rc;
}

/* The persister: saves when state__request() asks, until state__stop(). */
static void *persister_main(void *arg)
{
	struct agent *a = arg;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (!a->persist_wanted && !a->persist_stop)
			pthread_cond_wait(&a->persist_cv, &a->lock);
		if (a->persist_stop)
			break;
		a->persist_wanted = false;
		a->persisting = true;
		pthread_mutex_unlock(&a->lock);
		state__save(a);
		pthread_mutex_lock(&a->lock);
		a->persisting = false;
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int state__start(struct agent *a)
{
	int rc;

	if (!a->cfg.state_dir)
		return 0;
	pthread_cond_init(&a->persist_cv, NULL);
	rc = -pthread_create(&a->persister, NULL, persister_main, a);
	if (!rc)
		a->persister_running = true;
	else
		pthread_cond_destroy(&a->persist_cv);
	return rc;
}

void state__request(struct agent *a)
{
	if (!a->persister_running || a->persisting)
		return;
	a->persist_wanted = true;
	pthread_cond_signal(&a->persist_cv);
}

void state__stop(struct agent *a)
{
	if (!a->persister_running)
		return;
	pthread_mutex_lock(&a->lock);
	a->persist_stop = true;
	pthread_cond_signal(&a->persist_cv);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->persister, NULL);
	pthread_cond_destroy(&a->persist_cv);
	a->persister_running = false;
}

static void set_aside(const char *path, const char *why)
{
	char bad[4200];

	snprintf(bad, sizeof(bad), "%s.bad-%lld", path, (long long)agent__now());
	if (rename(path, bad))
		log_error("state", "state file %s unusable (%s) and cannot be renamed: %s", path, why,
			  strerror(errno));
	else
		log_error("state", "state file %s unusable (%s): renamed to %s, starting without it",
			  path, why, bad);
}

static void restore_data(struct agent_instr *ai, const json_t *data, const char *from)
{
	if (instr__data_from_json(ai->in, data))
		log_error("state", "%s: data of instrumentation %lu not restored (mismatched)", from,
			  ai->id);
}

/* One instrumentation's data at a time: the parse tree is as large as the
 * data, so it is freed before the next file is read. */
static void load_data_file(struct agent *a, struct agent_instr *ai)
{
	char path[4096];
	json_error_t jerr;
	json_t *data;

	if (data_path(a, ai->id, path, sizeof(path)) || access(path, F_OK))
		return;
	data = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!data) {
		log_error("state", "%s: line %d column %d: %s: data of instrumentation %lu not restored",
			  path, jerr.line, jerr.column, jerr.text, ai->id);
		return;
	}
	restore_data(ai, data, path);
	json_decref(data);
}

int state__load(struct agent *a)
{
	char path[4096], why[512];
	json_error_t jerr;
	json_t *root, *arr, *o;
	size_t i;
	int n = 0;

	if (state_path(a, path, sizeof(path)) || access(path, F_OK))
		return 0;
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(why, sizeof(why), "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
		set_aside(path, why);
		return 0;
	}
	arr = json_object_get(root, "instrumentations");
	if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != STATE_VERSION ||
	    !json_is_array(arr)) {
		set_aside(path, "not a kvmscope state file of version 1");
		goto out;
	}
	if (json_integer_value(json_object_get(root, "next_id")) > 0)
		a->next_id = (unsigned long)json_integer_value(json_object_get(root, "next_id"));
	json_array_foreach(arr, i, o) {
		json_int_t id = json_integer_value(json_object_get(o, "id"));
		const char *owner = json_string_value(json_object_get(o, "owner"));
		json_t *spec = json_object_get(o, "spec"), *data = json_object_get(o, "data");
		struct agent_instr *ai;
		struct agent_error e;

		if (id <= 0 || !owner || !json_is_object(spec)) {
			log_error("state", "%s: instrumentation #%zu lacks id, owner or spec: skipped", path, i);
			continue;
		}
		/* The saved spec already carries the tenant's forced scope:
		 * restoring it as the operator keeps it unchanged. */
		if (agent__restore(a, spec, (unsigned long)id, owner, &ai, &e)) {
			log_error("state", "%s: instrumentation %lld not restored: %s", path, (long long)id, e.msg);
			continue;
		}
		if (a->fleet && json_is_array(json_object_get(o, "peers")))
			ai->restored_links = json_incref(json_object_get(o, "peers"));
		if (data)
			restore_data(ai, data, path);
		else if (instr__persist(ai->in))
			load_data_file(a, ai);
		n++;
	}
	a->dirty = false;
	/* what is on disk is what was just loaded: the next save is due in
	 * AGENT_PERSIST_INTERVAL, not at once */
	a->last_persist = agent__now();
	log_info("state", "restored %d instrumentations from %s", n, path);
out:
	json_decref(root);
	return n;
}
