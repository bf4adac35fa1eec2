/* The web UI's static files. The path is resolved with realpath and must
 * stay inside the web root: '..', symlinks pointing out and the like all
 * end as 404. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"

static const struct {
	const char *ext, *type;
} types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".mjs", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".json", "application/json" },
	{ ".svg", "image/svg+xml" },
	{ ".png", "image/png" },
	{ ".ico", "image/x-icon" },
	{ ".txt", "text/plain; charset=utf-8" },
	{ ".map", "application/json" },
	{ ".woff2", "font/woff2" },
};

static const char *content_type(const char *path)
{
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcasecmp(dot, types[i].ext))
			return types[i].type;
	return "application/octet-stream";
}

int routes_static__resolve_root(const char *dir, char *out, size_t outlen)
{
	char exe[PATH_MAX], cand[PATH_MAX + 32], res[PATH_MAX];
	ssize_t n;

	if (dir) {
		if (!realpath(dir, res))
			return -errno;
		snprintf(out, outlen, "%s", res);
		return 0;
	}
	/* build/bin/kvmscope -> web/ of the source tree it was built in */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(cand, sizeof(cand), "%s/../../web", exe);
		if (realpath(cand, res) && !access(res, R_OK)) {
			snprintf(out, outlen, "%s", res);
			return 0;
		}
	}
	if (realpath("/usr/share/kvmscope/web", res)) {
		snprintf(out, outlen, "%s", res);
		return 0;
	}
	return -ENOENT;
}

void routes_static__serve(const struct api_ctx *cx, const struct api_request *rq,
			  struct api_response *r)
{
	char want[PATH_MAX * 2], res[PATH_MAX], clean[256];
	size_t rootlen = strlen(cx->web_root);
	struct stat st;

	if (!rootlen) {
		api__error(r, 404, "ResourceNotFound", "no such resource: %s (no web UI directory)",
			   agent__clean(rq->path, clean, sizeof(clean)));
		return;
	}
	snprintf(want, sizeof(want), "%s%s", cx->web_root, rq->path);
	if (!stat(want, &st) && S_ISDIR(st.st_mode))
		strncat(want, "/index.html", sizeof(want) - strlen(want) - 1);
	if (!realpath(want, res) || strncmp(res, cx->web_root, rootlen) ||
	    (res[rootlen] != '/' && res[rootlen] != '\0') || stat(res, &st) || !S_ISREG(st.st_mode)) {
		api__error(r, 404, "ResourceNotFound", "no such resource: %s",
			   agent__clean(rq->path, clean, sizeof(clean)));
		return;
	}
	r->file_path = strdup(res);
	r->file_type = content_type(res);
	if (!r->file_path)
		api__error(r, 500, "InternalError", "out of memory");
}
