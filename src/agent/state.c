/* Persistence: the agent's instrumentations under STATE_DIR.
 *
 *   state.json       {"version": 1, "next_id": N, "saved": UNIX,
 *                     "owner_next": {OWNER: N, ...},
 *                     "instrumentations": [{"id", "owner", "owner_id", "spec"}, ...],
 *                     "duplicates": [...]}
 *   data/<id>.log    the slots of a persist-data instrumentation, one JSON
 *                    text per line: the head ({"metric", "decomposition",
 *                    "granularity"}), then {"start_time", "value"} per slot
 *   data/<id>.json   the same as one object (instr__data_to_json()), as
 *                    earlier versions wrote it: read when there is no .log
 *   lock             held (flock) by the agent using the dir; holds its pid
 *
 * A fleet instrumentation (--nats) also keeps its id in the fleet's bucket
 * ("fleet_id"): after a restart the bucket's watch finds it again instead
 * of making a second copy, and deletes it if the bucket no longer holds it.
 *
 * Why the data lives apart, and why a thread of its own writes it: one
 * persist-data instrumentation of an hour can hold a million cells. Saved as
 * one JSON tree under the agent lock every AGENT_PERSIST_INTERVAL seconds, it
 * stalled every request for a second and more, and a restart parsed a tree
 * as large as all the data at once. Rewriting every data file every save
 * still cost CPU in proportion to all the data held, each 10 s. Now the
 * persister thread appends to data/<id>.log the slots completed since its
 * last save, one line each, and rewrites the file (atomically,
 * STATE_DUMP_SLOTS slots per hold of the agent lock, writing to disk without
 * it) only at its first save and when the expired records in it outnumber
 * the live ones. A restart parses one instrumentation's data at a time and
 * ignores a torn last line (a crash in an append). A state.json that still carries "data" inline (written by
 * earlier versions) is read as well. state.json itself is small: a request
 * that creates or deletes writes it before it answers (state__commit), so
 * that an answer survives a crash right after it.
 *
 * Every file is written whole and atomically (tmp file, fsync, rename, fsync
 * of the directory), data files before state.json, so that a crash leaves
 * either the old or the new version of each.
 *
 * The dir is someone's to attack: every file is opened relative to the dir's
 * fd, never through a link (O_NOFOLLOW), temporary files are created afresh
 * (O_EXCL, after removing whatever stands at their name), what is read must
 * be a regular file (fstat; O_NONBLOCK so that a FIFO does not hang the
 * start) and state.json no larger than STATE_JSON_MAX. A dir or data/ that
 * others can write, or that someone else owns, is refused.
 *
 * Nothing is lost: an entry that cannot be restored (a lowered limit, a
 * collector that fails, a spec this version refuses) is kept as it was and
 * written back on every save, so a later restart tries again; an entry whose
 * id came before is kept under "duplicates"; a damaged state.json is set
 * aside (state.json.bad-<unix time>) and no data file is removed but those of
 * instrumentations deleted while this agent runs. Ids are never reused: the
 * next one is above every id seen in state.json, in a damaged one, and in
 * data/'s names.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/state.h"
#include "common/log.h"
#include "engine/instr.h"

#define STATE_VERSION 1

/* Slots looked at per hold of the agent lock while a data file is written.
 * 64 slots of 200 cells take ~10 ms to format: under 50 clients the raw-value
 * p99 was 57 ms with 256 and 27 ms with 64 (bench/query.sh). */
#define STATE_DUMP_SLOTS	64

/* Entries of one kind of failure logged one by one at a restore; the rest
 * are counted in one line, so that a state.json of thousands does not flood
 * the log. */
#define STATE_LOG_EACH		5

#define O_STATE_READ	(O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

/* ---- files relative to a dir fd ---- */

/* Creates name.tmp in dfd for writing, never through what stands there (a
 * link, a FIFO: removed first). *tmp receives its name. Caller owns *out and
 * ends it with atomic_commit() or atomic_abort(). 0 or -errno. */
static int atomic_open(int dfd, const char *name, char *tmp, size_t tmplen, FILE **out)
{
	int fd = -1;

	if (snprintf(tmp, tmplen, "%s.tmp", name) >= (int)tmplen)
		return -ENAMETOOLONG;
	for (int tries = 0; fd < 0 && tries < 2; tries++) {
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		/* a stale tmp of a crash, or something planted: it goes */
		if (fd < 0 && (errno != EEXIST || unlinkat(dfd, tmp, 0)))
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	*out = fdopen(fd, "w");
	if (!*out) {
		close(fd);
		unlinkat(dfd, tmp, 0);
		return -ENOMEM;
	}
	return 0;
}

static void atomic_abort(int dfd, FILE *f, const char *tmp)
{
	fclose(f);
	unlinkat(dfd, tmp, 0);
}

/* Takes ownership of f: flushes, syncs and closes it, then renames tmp over
 * name. On any error tmp is removed and name left as it was. */
static int atomic_commit(int dfd, FILE *f, const char *tmp, const char *name)
{
	int rc = 0;

	if (fflush(f) || ferror(f))
		rc = errno ? -errno : -EIO;
	else if (fsync(fileno(f)))
		rc = -errno;
	if (fclose(f) && !rc)
		rc = errno ? -errno : -EIO;
	if (!rc && renameat(dfd, tmp, dfd, name))
		rc = -errno;
	if (rc) {
		unlinkat(dfd, tmp, 0);
		return rc;
	}
	/* the rename is durable only once the directory is */
	return fsync(dfd) ? -errno : 0;
}

static int write_atomic_at(int dfd, const char *name, const char *data, size_t len)
{
	char tmp[512];
	FILE *f;
	int rc;

	rc = atomic_open(dfd, name, tmp, sizeof(tmp), &f);
	if (rc)
		return rc;
	errno = 0;
	if (len && fwrite(data, 1, len, f) != len) {
		rc = errno ? -errno : -EIO;
		atomic_abort(dfd, f, tmp);
		return rc;
	}
	return atomic_commit(dfd, f, tmp, name);
}

int state__write_atomic(const char *path, const char *data, size_t len)
{
	char dir[4096];
	const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	int dfd, rc;

	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	else
		snprintf(dir, sizeof(dir), ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	rc = write_atomic_at(dfd, name, data, len);
	close(dfd);
	return rc;
}

/* Opens name in dfd for reading: a regular file, not a link, and no FIFO's
 * wait. *why says what else it is. fd or -errno. */
static int open_regular(int dfd, const char *name, struct stat *st, const char **why)
{
	int fd = openat(dfd, name, O_STATE_READ);

	*why = NULL;
	if (fd < 0) {
		if (errno == ELOOP)
			*why = "a symbolic link, not a regular file";
		return errno == ELOOP ? -ELOOP : -errno;
	}
	if (fstat(fd, st)) {
		close(fd);
		return -errno;
	}
	if (!S_ISREG(st->st_mode)) {
		*why = S_ISFIFO(st->st_mode) ? "a FIFO, not a regular file" :
		       S_ISDIR(st->st_mode) ? "a directory, not a regular file" :
					      "not a regular file";
		close(fd);
		return -EINVAL;
	}
	/* reads from here on may wait for the disk as they should */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

/* Refuses a dir that group or others may write, or that neither root nor
 * this process's user owns: whoever may write there may plant links and
 * states. 0 or -EPERM with the reason in err. */
static int check_dir(int dfd, const char *what, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(dfd, &st)) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		return -errno;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s: owned by uid %u, not by root or this agent's uid %u: refused",
			 what, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: writable by %s (mode %04o): refused (chmod go-w it)", what,
			 st.st_mode & S_IWOTH ? "others" : "its group", (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

static int mkdir_p(const char *dir)
{
	char buf[4096];

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* data/ in the state dir, created when absent and checked as the dir is.
 * fd (the caller's) or -errno, the reason in err. */
static int open_data_dir(int dfd, const char *state_dir, bool create, char *err, size_t errlen)
{
	char what[4200];
	int fd, rc;

	snprintf(what, sizeof(what), "--state-dir %s: data/", state_dir);
	if (create && mkdirat(dfd, "data", 0700) && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		return rc;
	}
	fd = openat(dfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", what, rc == -ENOTDIR || rc == -ELOOP ?
			 "not a directory" : strerror(errno));
		return rc;
	}
	rc = check_dir(fd, what, err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

/* Takes the lock of the dir dfd: *lockfd (the caller's) holds it. 0, -EBUSY
 * when another agent holds it, or -errno; the reason in err. */
static int take_lock(int dfd, const char *state_dir, int *lockfd, char *err, size_t errlen)
{
	char pid[32] = "";
	struct stat st;
	ssize_t n;
	int fd, rc = 0;

	fd = openat(dfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "--state-dir %s: lock: %s", state_dir, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "--state-dir %s: lock is not a regular file", state_dir);
		rc = -EINVAL;
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? strcspn(pid, "\n") : 0] = '\0';
		if (rc == -EBUSY)
			snprintf(err, errlen, "state dir %s is in use by another kvmscope agent (pid %s)",
				 state_dir, pid[0] ? pid : "unknown");
		else
			snprintf(err, errlen, "--state-dir %s: lock: %s", state_dir, strerror(-rc));
		goto out;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) || pwrite(fd, pid, n, 0) != n)
		log_warn("state", "--state-dir %s: cannot write the pid into lock: %s", state_dir,
			 strerror(errno));
out:
	if (rc)
		close(fd);
	else
		*lockfd = fd;
	return rc;
}

void state__init(struct agent *a)
{
	a->state_dfd = -1;
	a->state_lockfd = -1;
	pthread_mutex_init(&a->state_io, NULL);
}

/* Opens and checks the dir and takes its lock into a's fds (closing the
 * ones held before). 0 or -errno with the reason in err. */
static int open_state_dir(struct agent *a, char *err, size_t errlen)
{
	char what[4200];
	int dfd, lockfd = -1, datafd, rc;

	rc = mkdir_p(a->cfg.state_dir);
	if (rc) {
		snprintf(err, errlen, "--state-dir %s: %s", a->cfg.state_dir, strerror(-rc));
		return rc;
	}
	dfd = open(a->cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "--state-dir %s: %s", a->cfg.state_dir, strerror(errno));
		return rc;
	}
	snprintf(what, sizeof(what), "--state-dir %s", a->cfg.state_dir);
	rc = check_dir(dfd, what, err, errlen);
	if (!rc)
		rc = take_lock(dfd, a->cfg.state_dir, &lockfd, err, errlen);
	if (rc)
		goto out;
	/* data/ is checked now: a bad one refuses the start, not a save */
	datafd = open_data_dir(dfd, a->cfg.state_dir, false, err, errlen);
	if (datafd >= 0)
		close(datafd);
	else if (datafd != -ENOENT)
		rc = datafd;
out:
	if (rc) {
		if (lockfd >= 0)
			close(lockfd);
		close(dfd);
		return rc;
	}
	if (a->state_lockfd >= 0)
		close(a->state_lockfd);
	if (a->state_dfd >= 0)
		close(a->state_dfd);
	a->state_dfd = dfd;
	a->state_lockfd = lockfd;
	return 0;
}

int state__open(struct agent *a, char *err, size_t errlen)
{
	if (!a->cfg.state_dir)
		return 0;
	return open_state_dir(a, err, errlen);
}

void state__close(struct agent *a)
{
	if (a->state_lockfd >= 0)
		close(a->state_lockfd);
	if (a->state_dfd >= 0)
		close(a->state_dfd);
	a->state_dfd = a->state_lockfd = -1;
	json_decref(a->state_kept);
	json_decref(a->state_duplicates);
	a->state_kept = a->state_duplicates = NULL;
	free(a->state_deleted);
	a->state_deleted = NULL;
	a->state_ndeleted = a->state_deleted_cap = 0;
	pthread_mutex_destroy(&a->state_io);
}

/* Under a->state_io: the state dir, recreated (and locked again) when it was
 * removed while the agent ran. 0 or -errno, logged. */
static int state_dir_ready(struct agent *a)
{
	struct stat st;
	char err[512];
	int rc;

	if (a->state_dfd < 0)
		return -ENOENT;
	if (!fstat(a->state_dfd, &st) && st.st_nlink > 0)
		return 0;
	log_warn("state", "state dir %s was removed: creating it again", a->cfg.state_dir);
	rc = open_state_dir(a, err, sizeof(err));
	if (rc)
		log_error("state", "%s", err);
	return rc;
}

/* ---- saving ---- */

/* Formats into mem the slots of ai from *t on, up to end (exclusive) and at
 * most max of them, one line each; empty slots are skipped. Caller holds
 * a->lock. Returns the records written, -ENOMEM or -EIO. */
static long format_slots(struct agent_instr *ai, int64_t *t, int64_t end, unsigned int max,
			 FILE *mem)
{
	int64_t gran = instr__granularity(ai->in);
	long n = 0;

	for (unsigned int k = 0; k < max && *t < end; k++, *t += gran) {
		json_t *v = instr__value(ai->in, *t);
		bool empty = !v || (json_is_integer(v) && !json_integer_value(v)) ||
			     (json_is_object(v) && !json_object_size(v)) ||
			     (json_is_array(v) && !json_array_size(v));
		int bad = 0;

		if (!v)
			return -ENOMEM;
		if (!empty)
			bad = fprintf(mem, "{\"start_time\":%lld,\"value\":", (long long)*t) < 0 ||
			      json_dumpf(v, mem, JSON_COMPACT | JSON_ENCODE_ANY) ||
			      fputs("}\n", mem) == EOF;
		json_decref(v);
		if (bad)
			return -EIO;
		n += !empty;
	}
	return n;
}

/* The head line of ai's log: instr__dump_begin()'s head with the slots
 * array left out. Caller holds a->lock. 0, -ENOMEM or -EIO. */
static int format_head(struct agent_instr *ai, FILE *mem)
{
	static const char tail[] = ",\"slots\":[";
	char *buf = NULL;
	size_t len = 0;
	struct instr_dump d;
	FILE *h = open_memstream(&buf, &len);
	int rc;

	if (!h)
		return -ENOMEM;
	rc = instr__dump_begin(ai->in, &d, h);
	if (fclose(h) && !rc)
		rc = -ENOMEM;
	if (!rc && (len < sizeof(tail) || memcmp(buf + len - (sizeof(tail) - 1), tail, sizeof(tail) - 1)))
		rc = -EIO;
	if (!rc && (fwrite(buf, 1, len - (sizeof(tail) - 1), mem) != len - (sizeof(tail) - 1) ||
		    fputs("}\n", mem) == EOF))
		rc = -EIO;
	free(buf);
	return rc;
}

/* The slots of instrumentation id to write: those before *end, *first the
 * oldest it retains. While the agent runs, the complete ones (a slot is
 * appended once, whole); at the last save, the one being filled as well
 * (the next start writes the file whole again). Before the first drain what
 * it holds was restored: complete as far as it goes. Caller holds a->lock. */
static struct agent_instr *log_window(struct agent *a, unsigned long id, int64_t *first,
				      int64_t *end, size_t *live)
{
	struct agent_instr *ai = agent__by_id(a, id);
	int64_t gran, drained = a->drained_to ? a->drained_to : agent__now();

	if (!ai || !instr__persist(ai->in))
		return NULL;
	gran = instr__granularity(ai->in);
	*live = (size_t)(instr__retention(ai->in) / gran);
	if (!*live)
		*live = 1;
	*end = drained - drained % gran;
	if (a->persist_stop && drained % gran)
		*end += gran;
	*first = *end - (int64_t)*live * gran;
	return ai;
}

/* Writes data/<id>.log whole, STATE_DUMP_SLOTS slots per hold of a->lock
 * (caller does not hold it), and removes an earlier version's data/<id>.json.
 * An instrumentation deleted or replaced meanwhile leaves no file. 0 or
 * -errno. */
static int rewrite_log(struct agent *a, int datafd, unsigned long id)
{
	char name[64], tmp[128], old[64], *buf = NULL;
	struct agent_instr *ai, *was = NULL;
	int64_t t = 0, end = 0, first;
	size_t len = 0, live, records = 0;
	long step = 1;
	FILE *f, *mem;
	int rc;

	snprintf(name, sizeof(name), "%lu.log", id);
	rc = atomic_open(datafd, name, tmp, sizeof(tmp), &f);
	if (rc)
		return rc;
	for (bool head = true; !rc && (head || t < end); head = false) {
		mem = open_memstream(&buf, &len);
		if (!mem) {
			rc = -ENOMEM;
			break;
		}
		pthread_mutex_lock(&a->lock);
		ai = log_window(a, id, &first, head ? &end : &(int64_t){ 0 }, &live);
		if (!ai || (was && ai != was)) {
			step = -ENOENT;
		} else if (head) {
			was = ai;
			t = first;
			step = format_head(ai, mem);
		} else {
			step = format_slots(ai, &t, end, STATE_DUMP_SLOTS, mem);
		}
		pthread_mutex_unlock(&a->lock);
		if (fclose(mem) && step >= 0)
			step = -ENOMEM;
		errno = 0;
		if (step >= 0 && len && fwrite(buf, 1, len, f) != len)
			step = errno ? -errno : -EIO;
		free(buf);
		buf = NULL;
		if (step < 0)
			rc = (int)step;
		else if (!head)
			records += (size_t)step;
	}
	if (rc) {
		atomic_abort(datafd, f, tmp);
		return rc == -ENOENT ? 0 : rc;
	}
	rc = atomic_commit(datafd, f, tmp, name);
	if (rc)
		return rc;
	snprintf(old, sizeof(old), "%lu.json", id);
	unlinkat(datafd, old, 0);
	pthread_mutex_lock(&a->lock);
	if (agent__by_id(a, id) == was) {
		was->log_next = end;
		was->log_records = records;
	}
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* Appends to data/<id>.log the slots completed since the last save (caller
 * does not hold a->lock): the persister's work grows with the new data, not
 * with all the data held. 1 when the file is to be written whole instead,
 * 0 or -errno. */
static int append_log(struct agent *a, int datafd, unsigned long id)
{
	char name[64], *buf = NULL;
	struct agent_instr *ai;
	int64_t t, end, first;
	size_t len = 0, live;
	long n = 0;
	struct stat st;
	FILE *mem;
	int fd, rc = 0;

	pthread_mutex_lock(&a->lock);
	ai = log_window(a, id, &first, &end, &live);
	if (!ai) {
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	/* a first save, the last one, or a file whose expired records
	 * outnumber the live ones */
	if (!ai->log_next || ai->log_records > 2 * live || a->persist_stop) {
		pthread_mutex_unlock(&a->lock);
		return 1;
	}
	t = ai->log_next > first ? ai->log_next : first;
	mem = open_memstream(&buf, &len);
	/* the few slots of one interval: formatted in one hold of the lock */
	n = mem ? format_slots(ai, &t, end, UINT32_MAX, mem) : -ENOMEM;
	if (mem && fclose(mem) && n >= 0)
		n = -ENOMEM;
	if (n >= 0) {
		ai->log_next = end;
		ai->log_records += (size_t)n;
	}
	pthread_mutex_unlock(&a->lock);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	if (!len)
		goto out;
	snprintf(name, sizeof(name), "%lu.log", id);
	fd = openat(datafd, name, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = 1;		/* gone or replaced by something else: written whole */
	} else {
		errno = 0;
		if (write(fd, buf, len) != (ssize_t)len || fdatasync(fd))
			rc = errno ? -errno : -EIO;
	}
	if (fd >= 0)
		close(fd);
out:
	if (rc) {
		/* a torn tail is ignored at a restore; the next save writes the
		 * file whole */
		pthread_mutex_lock(&a->lock);
		ai = agent__by_id(a, id);
		if (ai)
			ai->log_next = 0;
		pthread_mutex_unlock(&a->lock);
	}
	free(buf);
	return rc;
}

/* data/<id>.log up to date, by an append or whole. 0 or -errno. */
static int save_data(struct agent *a, int datafd, unsigned long id)
{
	int rc = append_log(a, datafd, id);

	return rc == 1 ? rewrite_log(a, datafd, id) : rc;
}

/* Removes the data files of instrumentations deleted while the agent ran,
 * and of live ones that no longer persist their data: never those of ids
 * this agent did not restore. Only the persister thread writes data/. */
static void remove_data_files(struct agent *a, int datafd, const unsigned long *ids, size_t n)
{
	static const char *const suffixes[] = { ".log", ".log.tmp", ".json", ".json.tmp" };
	char name[64];

	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++) {
			snprintf(name, sizeof(name), "%lu%s", ids[i], suffixes[k]);
			if (unlinkat(datafd, name, 0) && errno != ENOENT)
				log_warn("state", "cannot remove %s/data/%s: %s", a->cfg.state_dir, name,
					 strerror(errno));
		}
}

void state__deleted(struct agent *a, unsigned long id)
{
	unsigned long *nv;

	if (a->state_dfd < 0)
		return;
	if (a->state_ndeleted == a->state_deleted_cap) {
		size_t cap = a->state_deleted_cap ? 2 * a->state_deleted_cap : 16;

		nv = realloc(a->state_deleted, cap * sizeof(*nv));
		if (!nv) {
			/* the file stays behind: harmless, its id is never reused */
			log_warn("state", "out of memory: data/%lu.json stays", id);
			return;
		}
		a->state_deleted = nv;
		a->state_deleted_cap = cap;
	}
	a->state_deleted[a->state_ndeleted++] = id;
}

/* Under a->lock: the specs as state.json holds them (the kept entries too),
 * and, when ids is not NULL, the ids of the persist-data instrumentations
 * (*ids) and of the data files to remove (*gone), both owned by the
 * caller. */
static char *snapshot_specs(struct agent *a, unsigned long **ids, size_t *nids,
			    unsigned long **gone, size_t *ngone)
{
	json_t *root, *arr, *o;
	char *text = NULL;
	size_t n = 0, i;

	if (ids) {
		*ids = *gone = NULL;
		*nids = *ngone = 0;
	}
	root = json_pack("{s:i, s:I, s:I, s:O, s:[]}", "version", STATE_VERSION,
			 "next_id", (json_int_t)a->next_id, "saved", (json_int_t)agent__now(),
			 "owner_next", a->owner_next, "instrumentations");
	if (!root)
		return NULL;
	arr = json_object_get(root, "instrumentations");
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		n++;
	if (ids && n && !(*ids = calloc(n * 2, sizeof(**ids))))
		goto out;
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next) {
		o = json_pack("{s:I, s:s, s:I, s:o}", "id", (json_int_t)ai->id, "owner", ai->owner,
			      "owner_id", (json_int_t)ai->owner_id, "spec", instr__to_json(ai->in));
		if (!o || json_array_append_new(arr, o))
			goto out;
		if (ai->fleet_id && json_object_set_new(o, "fleet_id", json_integer((json_int_t)ai->fleet_id)))
			goto out;
		if (ids && instr__persist(ai->in))
			(*ids)[(*nids)++] = ai->id;
		else if (ids)
			(*ids)[n + (*ngone)++] = ai->id;
	}
	json_array_foreach(a->state_kept, i, o)
		if (json_array_append(arr, o))
			goto out;
	if (json_array_size(a->state_duplicates) &&
	    json_object_set(root, "duplicates", a->state_duplicates))
		goto out;
	if (ids) {
		/* the live ones that do not persist, then the deleted ones */
		size_t total = *ngone + a->state_ndeleted;

		*gone = malloc((total ? total : 1) * sizeof(**gone));
		if (!*gone)
			goto out;
		if (*ngone)
			memcpy(*gone, *ids + n, *ngone * sizeof(**gone));
		if (a->state_ndeleted)
			memcpy(*gone + *ngone, a->state_deleted, a->state_ndeleted * sizeof(**gone));
		*ngone = total;
	}
	text = json_dumps(root, JSON_COMPACT);
	if (text && ids)
		a->state_ndeleted = 0;	/* taken by the caller */
out:
	if (!text && ids) {
		free(*ids);
		free(*gone);
		*ids = *gone = NULL;
		*nids = *ngone = 0;
	}
	json_decref(root);
	return text;
}

/* state.json from what a holds now. When ids is not NULL, see
 * snapshot_specs(). Takes a->state_io and a->lock. 0 or -errno, logged. */
static int save_specs(struct agent *a, unsigned long **ids, size_t *nids, unsigned long **gone,
		      size_t *ngone)
{
	char *text;
	int rc;

	pthread_mutex_lock(&a->state_io);
	rc = state_dir_ready(a);
	if (rc)
		goto out;
	pthread_mutex_lock(&a->lock);
	text = snapshot_specs(a, ids, nids, gone, ngone);
	/* a request's write leaves the change for the persister too: the
	 * data files and the removal of a deleted one's follow within a tick */
	if (text && ids) {
		a->dirty = false;
		a->last_persist = agent__now();
	}
	pthread_mutex_unlock(&a->lock);
	if (!text) {
		log_error("state", "cannot save the state: out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = write_atomic_at(a->state_dfd, "state.json", text, strlen(text));
	if (rc)
		log_error("state", "cannot write %s/state.json: %s", a->cfg.state_dir, strerror(-rc));
	free(text);
out:
	if (rc) {
		/* try again at the next tick */
		pthread_mutex_lock(&a->lock);
		a->dirty = true;
		pthread_mutex_unlock(&a->lock);
	}
	pthread_mutex_unlock(&a->state_io);
	return rc;
}

int state__commit(struct agent *a, struct agent_error *e)
{
	int rc;

	if (!a->cfg.state_dir)
		return 0;
	rc = save_specs(a, NULL, NULL, NULL, NULL);
	if (rc) {
		e->kind = AGENT_EINTERNAL;
		snprintf(e->msg, sizeof(e->msg), "cannot save the state to %s/state.json: %s",
			 a->cfg.state_dir, strerror(-rc));
	}
	return rc;
}

/* Under a->state_io: data/, created when needed; fd (the caller's) or
 * -errno, logged. */
static int data_dir(struct agent *a)
{
	char err[512];
	int rc, fd;

	rc = state_dir_ready(a);
	if (rc)
		return rc;
	fd = open_data_dir(a->state_dfd, a->cfg.state_dir, true, err, sizeof(err));
	if (fd < 0)
		log_error("state", "%s", err);
	return fd;
}

int state__save(struct agent *a)
{
	unsigned long *ids = NULL, *gone = NULL, *want = NULL;
	size_t nids = 0, ngone = 0, nwant = 0;
	int rc = 0, r, datafd = -1;

	if (!a->cfg.state_dir)
		return 0;
	/* which files to write: the state.json written after them may list
	 * more (created meanwhile: written at the next save), never fewer */
	pthread_mutex_lock(&a->lock);
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next)
		nwant += instr__persist(ai->in);
	want = nwant ? calloc(nwant, sizeof(*want)) : NULL;
	nwant = 0;
	for (struct agent_instr *ai = a->instrs; want && ai; ai = ai->next)
		if (instr__persist(ai->in))
			want[nwant++] = ai->id;
	pthread_mutex_unlock(&a->lock);
	if (nwant) {
		pthread_mutex_lock(&a->state_io);
		datafd = data_dir(a);
		pthread_mutex_unlock(&a->state_io);
		if (datafd < 0)
			rc = datafd;
	}
	for (size_t i = 0; i < nwant && !rc; i++) {
		r = save_data(a, datafd, want[i]);
		if (r) {
			log_error("state", "cannot write %s/data/%lu.log: %s", a->cfg.state_dir,
				  want[i], strerror(-r));
			rc = r;
		}
	}
	r = save_specs(a, &ids, &nids, &gone, &ngone);
	if (r && !rc)
		rc = r;
	if (!r && ngone) {
		if (datafd < 0) {
			pthread_mutex_lock(&a->state_io);
			datafd = state_dir_ready(a) ? -1 :
				 openat(a->state_dfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			pthread_mutex_unlock(&a->state_io);
		}
		if (datafd >= 0)
			remove_data_files(a, datafd, gone, ngone);
	} else if (r && ngone) {
		/* state.json still lists them: remove their files next time */
		pthread_mutex_lock(&a->lock);
		for (size_t i = 0; i < ngone; i++)
			state__deleted(a, gone[i]);
		pthread_mutex_unlock(&a->lock);
	}
	if (rc) {
		pthread_mutex_lock(&a->lock);
		a->dirty = true;
		pthread_mutex_unlock(&a->lock);
	}
	if (datafd >= 0)
		close(datafd);
	free(want);
	free(ids);
	free(gone);
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

/* ---- restoring ---- */

/* The highest instrumentation id a text mentions, read as text: a damaged
 * or oversized state.json still tells which ids were given out ("id": N, and
 * "next_id": N for N - 1). */
static unsigned long max_id_in_text(const char *p, size_t n)
{
	const char *end = p + n, *q = p;
	unsigned long best = 0;

	while ((q = memmem(q, (size_t)(end - q), "id\"", 3))) {
		bool next = q - p >= 6 && !memcmp(q - 6, "\"next_", 6);
		const char *s = q + 3;
		unsigned long v = 0;
		int digits = 0;

		q += 3;
		if (!next && (q - 3 == p || q[-4] != '"'))
			continue;
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
			s++;
		if (s >= end || *s++ != ':')
			continue;
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
			s++;
		for (; s < end && *s >= '0' && *s <= '9' && digits < 15; s++, digits++)
			v = v * 10 + (unsigned long)(*s - '0');
		if (next && v)
			v--;
		if (v > best)
			best = v;
	}
	return best;
}

/* The same for a file too large to hold: read in pieces that overlap by more
 * than one "next_id": N. */
static unsigned long max_id_in_fd(int fd)
{
	enum { PIECE = 1 << 20, OVERLAP = 64 };
	char *buf = malloc(PIECE + OVERLAP);
	unsigned long best = 0, v;
	size_t have = 0;
	off_t off = 0;
	ssize_t got;

	if (!buf)
		return 0;
	while ((got = pread(fd, buf + have, PIECE, off)) > 0) {
		off += got;
		have += (size_t)got;
		v = max_id_in_text(buf, have);
		if (v > best)
			best = v;
		if (have > OVERLAP) {
			memmove(buf, buf + have - OVERLAP, OVERLAP);
			have = OVERLAP;
		}
	}
	free(buf);
	return best;
}

/* The highest id among data/'s file names (N.json, N.log). */
static unsigned long max_id_in_data(int datafd)
{
	unsigned long best = 0, id;
	struct dirent *e;
	DIR *dp;
	int fd;

	fd = dup(datafd);
	if (fd < 0 || !(dp = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((e = readdir(dp))) {
		int used = 0;

		/* committed files only: a .tmp may be anyone's leftover */
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9' &&
		    sscanf(e->d_name, "%lu%n", &id, &used) == 1 &&
		    (!strcmp(e->d_name + used, ".json") || !strcmp(e->d_name + used, ".log")) &&
		    id > best)
			best = id;
	}
	closedir(dp);
	return best;
}

static void raise_next_id(struct agent *a, unsigned long seen)
{
	if (seen >= a->next_id)
		a->next_id = seen + 1;
}

/* Renames name in dfd aside to name.bad-<unix time> and says why. */
static void set_aside(struct agent *a, const char *name, const char *why)
{
	char bad[256];
	int rc = -1;

	for (int n = 0; rc && n < 100; n++) {
		if (n)
			snprintf(bad, sizeof(bad), "%s.bad-%lld-%d", name, (long long)agent__now(), n);
		else
			snprintf(bad, sizeof(bad), "%s.bad-%lld", name, (long long)agent__now());
		rc = renameat2(a->state_dfd, name, a->state_dfd, bad, RENAME_NOREPLACE);
		if (rc && errno != EEXIST)
			break;
	}
	if (rc)
		log_error("state", "%s/%s unusable (%s) and cannot be renamed: %s", a->cfg.state_dir,
			  name, why, strerror(errno));
	else
		log_error("state", "%s/%s unusable (%s): renamed to %s, starting without it",
			  a->cfg.state_dir, name, why, bad);
}

static void restore_data(struct agent_instr *ai, const json_t *data, const char *from)
{
	if (instr__data_from_json(ai->in, data))
		log_error("state", "%s: data of instrumentation %lu not restored (mismatched)", from,
			  ai->id);
}

/* data/<id>.log as one object, as instr__data_from_json() takes it (new
 * reference owned by the caller; NULL, with the reason in why, when even its
 * head is unreadable). A torn last line is what a crash in an append
 * leaves: ignored, as is everything after a damaged line (reported). */
static json_t *read_log(int fd, const char *path, char *why, size_t whylen)
{
	json_t *data = NULL, *slots = NULL, *rec;
	json_error_t jerr;
	struct stat st;
	size_t len = 0, pos, lineno = 1;
	ssize_t got;
	char *buf = NULL, *nl;

	if (fstat(fd, &st) || !(buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		snprintf(why, whylen, "%s", errno ? strerror(errno) : "out of memory");
		return NULL;
	}
	while (len < (size_t)st.st_size && (got = read(fd, buf + len, (size_t)st.st_size - len)) > 0)
		len += (size_t)got;
	nl = memchr(buf, '\n', len);
	data = nl ? json_loadb(buf, (size_t)(nl - buf), 0, &jerr) : NULL;
	slots = json_array();
	if (!json_is_object(data) || !slots || json_object_set(data, "slots", slots)) {
		snprintf(why, whylen, "no head line");
		json_decref(data);
		data = NULL;
		goto out;
	}
	for (pos = (size_t)(nl - buf) + 1; pos < len; pos = (size_t)(nl - buf) + 1) {
		lineno++;
		nl = memchr(buf + pos, '\n', len - pos);
		if (!nl) {
			log_warn("state", "%s: line %zu torn (%zu bytes, no end of line): ignored", path,
				 lineno, len - pos);
			break;
		}
		rec = json_loadb(buf + pos, (size_t)(nl - (buf + pos)), 0, &jerr);
		if (!json_is_object(rec) || json_array_append_new(slots, rec)) {
			if (!json_is_object(rec))
				json_decref(rec);
			log_error("state", "%s: line %zu damaged: it and the %s after it ignored", path,
				  lineno, "lines");
			break;
		}
	}
out:
	json_decref(slots);
	free(buf);
	return data;
}

/* One instrumentation's data at a time: the parse tree is as large as the
 * data, so it is freed before the next file is read. data/<id>.log first,
 * else an earlier version's data/<id>.json. */
static void load_data_file(struct agent *a, int datafd, struct agent_instr *ai)
{
	char name[64], path[4200], why[256];
	json_error_t jerr;
	const char *what;
	struct stat st;
	json_t *data;
	bool log = true;
	int fd;

	snprintf(name, sizeof(name), "%lu.log", ai->id);
	fd = datafd < 0 ? -ENOENT : open_regular(datafd, name, &st, &what);
	if (fd == -ENOENT && datafd >= 0) {
		log = false;
		snprintf(name, sizeof(name), "%lu.json", ai->id);
		fd = open_regular(datafd, name, &st, &what);
	}
	snprintf(path, sizeof(path), "%s/data/%s", a->cfg.state_dir, name);
	if (fd < 0) {
		if (fd != -ENOENT)
			log_error("state", "%s: %s: data of instrumentation %lu not restored", path,
				  what ? what : strerror(-fd), ai->id);
		return;
	}
	if (log) {
		data = read_log(fd, path, why, sizeof(why));
		if (!data)
			log_error("state", "%s: %s: data of instrumentation %lu not restored", path, why,
				  ai->id);
	} else {
		data = json_loadfd(fd, JSON_REJECT_DUPLICATES, &jerr);
		if (!data)
			log_error("state", "%s: line %d column %d: %s: data of instrumentation %lu not restored",
				  path, jerr.line, jerr.column, jerr.text, ai->id);
	}
	close(fd);
	if (data)
		restore_data(ai, data, path);
	json_decref(data);
}

/* Logs an entry kept instead of restored: STATE_LOG_EACH one by one, the
 * others counted for one line at the end. */
struct kept_log {
	size_t n;
	long long first, last;
};

static void kept_note(struct kept_log *k, const char *path, long long id, const char *why)
{
	if (k->n++ < STATE_LOG_EACH) {
		log_warn("state", "%s: instrumentation %lld not restored: %s; kept in state.json", path,
			 id, why);
		return;
	}
	if (k->n == STATE_LOG_EACH + 1)
		k->first = id;
	k->last = id;
}

static void kept_summary(const struct kept_log *k, const char *path)
{
	if (k->n > STATE_LOG_EACH)
		log_warn("state", "%s: %zu more instrumentations not restored (ids %lld to %lld, for the same kinds of reasons); kept in state.json",
			 path, k->n - STATE_LOG_EACH, k->first, k->last);
}

struct id_at {
	json_int_t id;
	size_t index;
};

static int id_at_cmp(const void *x, const void *y)
{
	const struct id_at *a = x, *b = y;

	if (a->id != b->id)
		return a->id < b->id ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

/* Which entries of arr repeat an id an earlier entry has: *dup (the
 * caller's) flags them. 0 or -ENOMEM. */
static int find_duplicates(const json_t *arr, bool **dup)
{
	size_t n = json_array_size(arr), i;
	struct id_at *v;
	json_t *o;

	*dup = calloc(n ? n : 1, sizeof(**dup));
	v = calloc(n ? n : 1, sizeof(*v));
	if (!*dup || !v) {
		free(*dup);
		free(v);
		*dup = NULL;
		return -ENOMEM;
	}
	json_array_foreach(arr, i, o) {
		v[i].id = json_integer_value(json_object_get(o, "id"));
		v[i].index = i;
	}
	qsort(v, n, sizeof(*v), id_at_cmp);
	for (i = 1; i < n; i++)
		if (v[i].id > 0 && v[i].id == v[i - 1].id)
			(*dup)[v[i].index] = true;
	free(v);
	return 0;
}

/* Each owner's next number. A state.json from before owners numbered their
 * own has none: each tenant then goes on from the host-wide next id, above
 * every id it was shown, so that none is shown twice. */
static void restore_owner_next(struct agent *a, const json_t *root)
{
	const json_t *saved = json_object_get(root, "owner_next"), *v, *o;
	const char *owner;
	size_t i;

	if (!json_is_object(saved)) {
		json_array_foreach(json_object_get(root, "instrumentations"), i, o) {
			owner = json_string_value(json_object_get(o, "owner"));
			if (owner && !strncmp(owner, "tenant:", strlen("tenant:")))
				json_object_set_new(a->owner_next, owner,
						    json_integer((json_int_t)a->next_id));
		}
		return;
	}
	json_object_foreach((json_t *)saved, owner, v)
		if (json_integer_value(v) > 0)
			json_object_set_new(a->owner_next, owner, json_incref((json_t *)v));
}

/* An entry's owner_id; one written before owners numbered their own was
 * shown by its id. */
static unsigned long saved_owner_id(const json_t *o, json_int_t id)
{
	json_int_t n = json_integer_value(json_object_get(o, "owner_id"));

	return (unsigned long)(n > 0 ? n : id);
}

/* Restores the entries of a parsed state.json; keeps those that cannot be.
 * Caller holds a->lock. Returns the instrumentations restored. */
static int restore_entries(struct agent *a, json_t *root, const char *path, int datafd)
{
	json_t *arr = json_object_get(root, "instrumentations"), *o;
	struct kept_log kept = { 0 };
	size_t i, ndup = 0;
	bool *dup = NULL;
	char dupids[256] = "";
	int n = 0;

	if (json_integer_value(json_object_get(root, "next_id")) > 0)
		raise_next_id(a, (unsigned long)json_integer_value(json_object_get(root, "next_id")) - 1);
	restore_owner_next(a, root);
	a->state_kept = json_array();
	a->state_duplicates = json_is_array(json_object_get(root, "duplicates")) ?
			      json_incref(json_object_get(root, "duplicates")) : json_array();
	json_array_foreach(a->state_duplicates, i, o)
		if (json_integer_value(json_object_get(o, "id")) > 0)
			raise_next_id(a, (unsigned long)json_integer_value(json_object_get(o, "id")));
	if (!a->state_kept || !a->state_duplicates || find_duplicates(arr, &dup)) {
		log_error("state", "%s: out of memory: nothing restored", path);
		return 0;
	}
	json_array_foreach(arr, i, o) {
		json_int_t id = json_integer_value(json_object_get(o, "id"));
		const char *owner = json_string_value(json_object_get(o, "owner"));
		json_t *spec = json_object_get(o, "spec"), *data = json_object_get(o, "data");
		struct agent_instr *ai;
		struct agent_error e;

		if (id > 0)
			raise_next_id(a, (unsigned long)id);
		if (dup[i]) {
			size_t used = strlen(dupids);

			if (ndup++ < 8 && used < sizeof(dupids) - 24)
				snprintf(dupids + used, sizeof(dupids) - used, "%s%lld", used ? ", " : "",
					 (long long)id);
			json_array_append(a->state_duplicates, o);
			continue;
		}
		if (id <= 0 || !owner || !json_is_object(spec)) {
			kept_note(&kept, path, id, "it lacks an id, an owner or a spec");
			json_array_append(a->state_kept, o);
			continue;
		}
		if (agent__restore(a, spec, (unsigned long)id, owner, saved_owner_id(o, id), &ai,
				   &e)) {
			kept_note(&kept, path, id, e.msg);
			json_array_append(a->state_kept, o);
			continue;
		}
		/* a fleet's own only while this agent is in a fleet; the bucket
		 * decides what becomes of it (agent.c, fleet_apply) */
		if (a->fleet && json_integer_value(json_object_get(o, "fleet_id")) > 0)
			ai->fleet_id = (unsigned long)json_integer_value(json_object_get(o, "fleet_id"));
		if (data)
			restore_data(ai, data, path);
		else if (instr__persist(ai->in))
			load_data_file(a, datafd, ai);
		n++;
	}
	kept_summary(&kept, path);
	if (ndup)
		log_warn("state", "%s: %zu entries repeat the id of an earlier one (duplicate ids %s%s): the first of each is restored, the others kept under \"duplicates\"",
			 path, ndup, dupids, ndup > 8 ? ", ..." : "");
	free(dup);
	return n;
}

int state__load(struct agent *a)
{
	char path[4200], why[512];
	const char *what;
	json_error_t jerr;
	json_t *root = NULL;
	struct stat st;
	char *buf = NULL;
	int fd, datafd, n = 0;
	ssize_t got;
	size_t len = 0;

	if (a->state_dfd < 0)
		return 0;
	snprintf(path, sizeof(path), "%s/state.json", a->cfg.state_dir);
	datafd = openat(a->state_dfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (datafd >= 0)
		raise_next_id(a, max_id_in_data(datafd));
	fd = open_regular(a->state_dfd, "state.json", &st, &what);
	if (fd < 0) {
		if (fd != -ENOENT) {
			snprintf(why, sizeof(why), "%s", what ? what : strerror(-fd));
			set_aside(a, "state.json", why);
		}
		goto out;
	}
	if (st.st_size > STATE_JSON_MAX) {
		snprintf(why, sizeof(why), "%lld bytes, larger than the %d MiB a state.json may have",
			 (long long)st.st_size, STATE_JSON_MAX >> 20);
		raise_next_id(a, max_id_in_fd(fd));
		set_aside(a, "state.json", why);
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	while (buf && len < (size_t)st.st_size &&
	       (got = read(fd, buf + len, (size_t)st.st_size - len)) > 0)
		len += (size_t)got;
	if (!buf) {
		log_error("state", "%s: out of memory: nothing restored", path);
		goto out;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		raise_next_id(a, max_id_in_text(buf, len));
		snprintf(why, sizeof(why), "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
		set_aside(a, "state.json", why);
		goto out;
	}
	/* its parse tree holds what matters from here */
	free(buf);
	buf = NULL;
	if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != STATE_VERSION ||
	    !json_is_array(json_object_get(root, "instrumentations"))) {
		set_aside(a, "state.json", "not a kvmscope state file of version 1");
		goto out;
	}
	n = restore_entries(a, root, path, datafd);
	a->dirty = false;
	/* what is on disk is what was just loaded: the next save is due in
	 * AGENT_PERSIST_INTERVAL, not at once */
	a->last_persist = agent__now();
	log_info("state", "restored %d instrumentations from %s", n, path);
out:
	if (fd >= 0)
		close(fd);
	if (datafd >= 0)
		close(datafd);
	free(buf);
	json_decref(root);
	return n;
}
