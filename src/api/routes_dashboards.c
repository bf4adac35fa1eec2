/* Named dashboards of the web UI (see routes_dashboards.h): small JSON
 * objects the UI saves and loads, one file each under the agent's state
 * directory, per owner, so that a tenant never sees the operator's or
 * another tenant's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/state.h"
#include "api/routes_dashboards.h"
#include "common/hash.h"

/* Serialises the dashboards' files: HTTP requests run on several threads,
 * and a count-then-write must not race another PUT. */
static pthread_mutex_t dashboards_lock = PTHREAD_MUTEX_INITIALIZER;

static bool name_valid(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > DASHBOARD_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* The caller's directory, "STATE/dashboards/OWNER": the operator's is
 * "operator", a tenant's "t-" and the hash of its owner string (a tenant's
 * owner names VMs, which may hold any character). The owner is stored in
 * every file too, and checked on reading. With create, the directories are
 * made (0700). 0, -ENODEV without a state directory, or -errno. */
static int owner_dir(const struct api_ctx *cx, const struct api_request *rq, bool create,
		     char *out, size_t outlen)
{
	const char *state = agent__state_dir(cx->agent);
	const char *owner = rq->who->owner;
	char leaf[32];

	if (!state || !*state)
		return -ENODEV;
	if (!strcmp(owner, "operator"))
		snprintf(leaf, sizeof(leaf), "operator");
	else
		snprintf(leaf, sizeof(leaf), "t-%016" PRIx64, hash__bytes(HASH_SEED, owner, strlen(owner)));
	if (snprintf(out, outlen, "%s/dashboards", state) >= (int)outlen)
		return -ENAMETOOLONG;
	if (create && mkdir(out, 0700) && errno != EEXIST)
		return -errno;
	if (snprintf(out, outlen, "%s/dashboards/%s", state, leaf) >= (int)outlen)
		return -ENAMETOOLONG;
	if (create && mkdir(out, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Sets r for a failure of owner_dir or of the file system. */
static void io_error(struct api_response *r, int rc, const char *what)
{
	if (rc == -ENODEV)
		api__error(r, 503, "ServiceUnavailable",
			   "dashboards are kept in the agent's state directory and this agent runs without one (--state-dir none)");
	else
		api__error(r, 500, "InternalError", "%s: %s", what, strerror(-rc));
}

/* The name of the request's dashboard, or NULL with r set to 400. */
static const char *request_name(const struct api_request *rq, struct api_response *r)
{
	const char *name = rq->params[0];

	if (!name || !name_valid(name)) {
		api__error(r, 400, "InvalidArgument",
			   "dashboard name must be 1..%d of A-Z a-z 0-9 _ - . and not start with '.'",
			   DASHBOARD_NAME_MAX);
		return NULL;
	}
	return name;
}

/* Reads dir/name.json whole. Caller owns *out (the stored wrapper object).
 * 0, -ENOENT when absent (or another owner's), -errno. */
static int read_dashboard(const char *dir, const char *name, const char *owner, json_t **out)
{
	char path[4200], *buf = NULL;
	struct stat st;
	ssize_t got = 0;
	json_t *j = NULL, *o;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOENT : -errno;
	/* a file larger than any PUT accepts is not one written here */
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > DASHBOARD_MAX + 1024) {
		rc = -EINVAL;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)(st.st_size - got));

		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += n;
	}
	j = json_loadb(buf, (size_t)got, JSON_REJECT_DUPLICATES, NULL);
	o = j ? json_object_get(j, "owner") : NULL;
	if (!j || !json_is_string(o) || !json_is_object(json_object_get(j, "dashboard"))) {
		rc = -EINVAL;
		goto out;
	}
	if (strcmp(json_string_value(o), owner)) {
		rc = -ENOENT;
		goto out;
	}
	*out = j;
	j = NULL;
out:
	json_decref(j);
	free(buf);
	close(fd);
	return rc;
}

/* The caller's dashboard names, sorted, into *out (caller owns it). */
static int list_names(const char *dir, json_t **out)
{
	struct dirent **ents = NULL;
	json_t *arr = json_array();
	int n, rc = 0;

	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0) {
		rc = errno == ENOENT ? 0 : -errno;
		n = 0;
	}
	for (int i = 0; i < n; i++) {
		char name[DASHBOARD_NAME_MAX + 8];
		size_t len = strlen(ents[i]->d_name);

		/* committed files only: NAME.json, never a NAME.json.tmp */
		if (arr && len > 5 && len - 5 <= DASHBOARD_NAME_MAX &&
		    !strcmp(ents[i]->d_name + len - 5, ".json")) {
			memcpy(name, ents[i]->d_name, len - 5);
			name[len - 5] = '\0';
			if (name_valid(name))
				json_array_append_new(arr, json_string(name));
		}
		free(ents[i]);
	}
	free(ents);
	if (!arr)
		return -ENOMEM;
	if (rc) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

void routes_dashboards__list(const struct api_ctx *cx, const struct api_request *rq,
			     struct api_response *r)
{
	char dir[4096];
	json_t *names = NULL;
	int rc;

	pthread_mutex_lock(&dashboards_lock);
	rc = owner_dir(cx, rq, false, dir, sizeof(dir));
	if (!rc)
		rc = list_names(dir, &names);
	pthread_mutex_unlock(&dashboards_lock);
	if (rc) {
		io_error(r, rc, "listing the dashboards");
		return;
	}
	r->json = json_pack("{s:o, s:i, s:i}", "dashboards", names, "max", DASHBOARDS_PER_OWNER,
			    "max_bytes", DASHBOARD_MAX);
	if (!r->json)
		api__error(r, 500, "InternalError", "out of memory");
}

void routes_dashboards__get(const struct api_ctx *cx, const struct api_request *rq,
			    struct api_response *r)
{
	const char *name = request_name(rq, r);
	char dir[4096];
	json_t *stored = NULL;
	int rc;

	if (!name)
		return;
	pthread_mutex_lock(&dashboards_lock);
	rc = owner_dir(cx, rq, false, dir, sizeof(dir));
	if (!rc)
		rc = read_dashboard(dir, name, rq->who->owner, &stored);
	pthread_mutex_unlock(&dashboards_lock);
	if (rc == -ENOENT) {
		api__error(r, 404, "ResourceNotFound", "no dashboard named %s", name);
		return;
	}
	if (rc) {
		io_error(r, rc, "reading the dashboard");
		return;
	}
	r->json = json_incref(json_object_get(stored, "dashboard"));
	json_decref(stored);
}

/* The body as a JSON object no larger than DASHBOARD_MAX, or NULL with r set. */
static json_t *dashboard_body(const struct api_request *rq, struct api_response *r)
{
	json_error_t jerr;
	json_t *j;

	if (!rq->body_len) {
		api__error(r, 400, "InvalidArgument", "body: a dashboard (JSON object) is required");
		return NULL;
	}
	if (rq->body_len > DASHBOARD_MAX) {
		api__error(r, 413, "PayloadTooLarge", "a dashboard is at most %d bytes, got %zu",
			   DASHBOARD_MAX, rq->body_len);
		return NULL;
	}
	if (strlen(rq->body) != rq->body_len) {
		api__error(r, 400, "InvalidArgument", "body: NUL byte in JSON");
		return NULL;
	}
	j = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!j) {
		api__error(r, 400, "InvalidArgument", "body is not valid JSON: %s (line %d, column %d)",
			   jerr.text, jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		api__error(r, 400, "InvalidArgument", "body must be a JSON object, got %s",
			   json_is_array(j) ? "an array" : "a scalar");
		json_decref(j);
		return NULL;
	}
	return j;
}

void routes_dashboards__put(const struct api_ctx *cx, const struct api_request *rq,
			    struct api_response *r)
{
	const char *name = request_name(rq, r);
	char dir[4096], path[4200], *text = NULL;
	json_t *body = NULL, *names = NULL, *wrap = NULL;
	bool exists = false;
	size_t i;
	json_t *v;
	int rc;

	if (!name || !(body = dashboard_body(rq, r)))
		return;
	pthread_mutex_lock(&dashboards_lock);
	rc = owner_dir(cx, rq, true, dir, sizeof(dir));
	if (!rc)
		rc = list_names(dir, &names);
	if (rc) {
		io_error(r, rc, "saving the dashboard");
		goto out;
	}
	json_array_foreach(names, i, v)
		exists |= !strcmp(json_string_value(v), name);
	if (!exists && json_array_size(names) >= DASHBOARDS_PER_OWNER) {
		api__error(r, 409, "Conflict", "at most %d dashboards per owner: delete one first",
			   DASHBOARDS_PER_OWNER);
		goto out;
	}
	wrap = json_pack("{s:s, s:s, s:O}", "owner", rq->who->owner, "name", name, "dashboard", body);
	text = wrap ? json_dumps(wrap, JSON_COMPACT) : NULL;
	if (!text) {
		api__error(r, 500, "InternalError", "out of memory");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	rc = state__write_atomic(path, text, strlen(text));
	if (rc) {
		io_error(r, rc, "saving the dashboard");
		goto out;
	}
	r->status = exists ? 200 : 201;
	r->json = json_pack("{s:s, s:b}", "name", name, "created", !exists);
out:
	pthread_mutex_unlock(&dashboards_lock);
	free(text);
	json_decref(wrap);
	json_decref(names);
	json_decref(body);
}

void routes_dashboards__delete(const struct api_ctx *cx, const struct api_request *rq,
			       struct api_response *r)
{
	const char *name = request_name(rq, r);
	char dir[4096], path[4200];
	json_t *stored = NULL;
	int rc;

	if (!name)
		return;
	pthread_mutex_lock(&dashboards_lock);
	rc = owner_dir(cx, rq, false, dir, sizeof(dir));
	/* read first: a file of another owner (a hash collision) stays */
	if (!rc)
		rc = read_dashboard(dir, name, rq->who->owner, &stored);
	if (!rc) {
		snprintf(path, sizeof(path), "%s/%s.json", dir, name);
		rc = unlink(path) ? -errno : 0;
	}
	pthread_mutex_unlock(&dashboards_lock);
	json_decref(stored);
	if (rc == -ENOENT)
		api__error(r, 404, "ResourceNotFound", "no dashboard named %s", name);
	else if (rc)
		io_error(r, rc, "deleting the dashboard");
	else
		r->status = 204;
}
