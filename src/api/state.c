/* Persistence: the agent's instrumentations in STATE_DIR/state.json.
 *
 *   {"version": 1, "next_id": N, "saved": UNIX,
 *    "instrumentations": [{"id", "owner", "spec", "data"?}, ...]}
 *
 * Written whole and atomically (tmp file, fsync, rename, fsync of the
 * directory) so that a crash leaves either the old or the new file. "data"
 * is present for persist-data instrumentations only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "common/log.h"
#include "engine/instr.h"

#define STATE_VERSION 1

int state__write_atomic(const char *path, const char *data, size_t len)
{
	char tmp[4200], dir[4096], *slash;
	int fd, dfd, rc = 0;
	size_t off = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto err_close;
		}
		off += (size_t)n;
	}
	if (fsync(fd)) {
		rc = -errno;
		goto err_close;
	}
	close(fd);
	if (rename(tmp, path)) {
		rc = -errno;
		unlink(tmp);
		return rc;
	}
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
err_close:
	close(fd);
	unlink(tmp);
	return rc;
}

static int state_path(const struct agent *a, char *buf, size_t len)
{
	if (!a->cfg.state_dir)
		return -ENOENT;
	if (snprintf(buf, len, "%s/state.json", a->cfg.state_dir) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int state__save(struct agent *a)
{
	json_t *root, *arr;
	char path[4096], *text = NULL;
	int rc = 0;

	if (state_path(a, path, sizeof(path)))
		return 0;
	root = json_pack("{s:i, s:I, s:I, s:[]}", "version", STATE_VERSION,
			 "next_id", (json_int_t)a->next_id, "saved", (json_int_t)agent__now(),
			 "instrumentations");
	if (!root)
		return -ENOMEM;
	arr = json_object_get(root, "instrumentations");
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next) {
		json_t *o = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)ai->id, "owner", ai->owner,
				      "spec", instr__to_json(ai->in));

		if (!o) {
			rc = -ENOMEM;
			goto out;
		}
		if (instr__persist(ai->in))
			json_object_set_new(o, "data", instr__data_to_json(ai->in));
		json_array_append_new(arr, o);
	}
	text = json_dumps(root, JSON_COMPACT);
	if (!text) {
		rc = -ENOMEM;
		goto out;
	}
	rc = state__write_atomic(path, text, strlen(text));
	if (rc)
		log_error("state", "cannot write %s: %s", path, strerror(-rc));
	else {
		a->dirty = false;
		a->last_persist = agent__now();
	}
out:
	free(text);
	json_decref(root);
	return rc;
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
		struct principal who = { ROLE_OPERATOR, (char *)owner, NULL, 0 };
		struct agent_instr *ai;
		const char *code;
		char err[512];

		if (id <= 0 || !owner || !json_is_object(spec)) {
			log_error("state", "%s: instrumentation #%zu lacks id, owner or spec: skipped", path, i);
			continue;
		}
		/* The saved spec already carries the tenant's forced scope:
		 * restoring it as the operator keeps it unchanged. */
		if (agent__create(a, &who, spec, (unsigned long)id, owner, &ai, &code, err, sizeof(err))) {
			log_error("state", "%s: instrumentation %lld not restored: %s", path, (long long)id, err);
			continue;
		}
		if (data && instr__data_from_json(ai->in, data))
			log_error("state", "%s: data of instrumentation %lld not restored (mismatched)", path,
				  (long long)id);
		n++;
	}
	a->dirty = false;
	log_info("state", "restored %d instrumentations from %s", n, path);
out:
	json_decref(root);
	return n;
}
