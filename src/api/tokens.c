/* Access tokens: parsing the token file and constant-time lookup. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/tokens.h"
#include "common/log.h"

struct token_entry {
	char *token;
	size_t len;
	struct principal who;
};

struct token_set {
	struct token_entry *v;
	size_t n;
};

static struct principal anonymous = { ROLE_OPERATOR, "operator", NULL, 0 };

const struct principal *tokens__anonymous_operator(void)
{
	return &anonymous;
}

static void entry_free(struct token_entry *e)
{
	free(e->token);
	free(e->who.owner);
	for (size_t i = 0; i < e->who.nvms; i++)
		free(e->who.vms[i]);
	free(e->who.vms);
}

void tokens__free(struct token_set *ts)
{
	if (!ts)
		return;
	for (size_t i = 0; i < ts->n; i++)
		entry_free(&ts->v[i]);
	free(ts->v);
	free(ts);
}

size_t tokens__count(const struct token_set *ts)
{
	return ts ? ts->n : 0;
}

/* Splits the VM list into e->who.vms (owned by e). */
static int parse_vms(struct token_entry *e, const char *list, char *err, size_t errlen,
		     const char *where)
{
	const char *p = list;

	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char **nv;

		if (len == 0 || len > 255) {
			snprintf(err, errlen, "%s: empty or overlong VM name in '%s'", where, list);
			return -EINVAL;
		}
		nv = realloc(e->who.vms, (e->who.nvms + 1) * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		e->who.vms = nv;
		nv[e->who.nvms] = strndup(p, len);
		if (!nv[e->who.nvms])
			return -ENOMEM;
		e->who.nvms++;
		p += len;
		if (*p == ',')
			p++;
	}
	if (e->who.nvms == 0) {
		snprintf(err, errlen, "%s: tenant without VMs (want 'TOKEN tenant VM1,VM2')", where);
		return -EINVAL;
	}
	return 0;
}

/* Parses one non-empty line into *e (e's strings owned by e even on error). */
static int parse_line(char *line, struct token_entry *e, char *err, size_t errlen,
		      const char *where)
{
	char *save = NULL, *tok, *role, *vms, *extra;

	tok = strtok_r(line, " \t", &save);
	role = strtok_r(NULL, " \t", &save);
	vms = strtok_r(NULL, " \t", &save);
	extra = strtok_r(NULL, " \t", &save);
	if (!tok || !role) {
		snprintf(err, errlen, "%s: want 'TOKEN operator' or 'TOKEN tenant VM1,VM2'", where);
		return -EINVAL;
	}
	e->len = strlen(tok);
	if (e->len < TOKEN_MIN_LEN || e->len > TOKEN_MAX_LEN) {
		snprintf(err, errlen, "%s: token of %zu characters (want %d..%d)", where, e->len,
			 TOKEN_MIN_LEN, TOKEN_MAX_LEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < e->len; i++)
		if ((unsigned char)tok[i] < 0x21 || (unsigned char)tok[i] > 0x7e) {
			snprintf(err, errlen, "%s: token has a non-printable or non-ASCII character", where);
			return -EINVAL;
		}
	e->token = strdup(tok);
	if (!e->token)
		return -ENOMEM;
	if (!strcmp(role, "operator")) {
		if (vms) {
			snprintf(err, errlen, "%s: unexpected '%s' after 'operator'", where, vms);
			return -EINVAL;
		}
		e->who.role = ROLE_OPERATOR;
		e->who.owner = strdup("operator");
		return e->who.owner ? 0 : -ENOMEM;
	}
	if (strcmp(role, "tenant")) {
		snprintf(err, errlen, "%s: unknown role '%s' (want operator or tenant)", where, role);
		return -EINVAL;
	}
	if (!vms) {
		snprintf(err, errlen, "%s: tenant without VMs (want 'TOKEN tenant VM1,VM2')", where);
		return -EINVAL;
	}
	if (extra) {
		snprintf(err, errlen, "%s: unexpected '%s' after the VM list", where, extra);
		return -EINVAL;
	}
	e->who.role = ROLE_TENANT;
	if (asprintf(&e->who.owner, "tenant:%s", vms) < 0) {
		e->who.owner = NULL;
		return -ENOMEM;
	}
	return parse_vms(e, vms, err, errlen, where);
}

/* On success the caller owns *out; nothing is left allocated on error. */
int tokens__parse(const char *buf, size_t len, const char *name, struct token_set **out,
		  char *err, size_t errlen)
{
	struct token_set *ts;
	size_t pos = 0, lineno = 0;
	int rc = 0;

	ts = calloc(1, sizeof(*ts));
	if (!ts)
		return -ENOMEM;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		char where[300], *line, *p;
		struct token_entry e = { 0 }, *nv;

		lineno++;
		snprintf(where, sizeof(where), "%s:%zu", name, lineno);
		if (memchr(buf + pos, '\0', l)) {
			snprintf(err, errlen, "%s: NUL byte in line", where);
			rc = -EINVAL;
			goto err_free;
		}
		line = strndup(buf + pos, l);
		pos += l + 1;
		if (!line) {
			rc = -ENOMEM;
			goto err_free;
		}
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		if (!*p || *p == '#' || *p == '\r') {
			free(line);
			continue;
		}
		p[strcspn(p, "\r")] = '\0';
		rc = parse_line(p, &e, err, errlen, where);
		free(line);
		if (rc) {
			entry_free(&e);
			goto err_free;
		}
		nv = realloc(ts->v, (ts->n + 1) * sizeof(*nv));
		if (!nv) {
			entry_free(&e);
			rc = -ENOMEM;
			goto err_free;
		}
		ts->v = nv;
		ts->v[ts->n++] = e;
	}
	if (ts->n == 0) {
		snprintf(err, errlen, "%s: no tokens", name);
		rc = -EINVAL;
		goto err_free;
	}
	*out = ts;
	return 0;
err_free:
	tokens__free(ts);
	return rc;
}

/* Opens the token file for reading (*f the caller's): a regular file that
 * only root or this user owns and no one else may write, since whoever may
 * write it may grant themselves the operator's role. One that others may
 * read is accepted with a warning. 0 or -errno with the reason in err. */
static int open_checked(const char *path, FILE **f, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc = 0;

	/* O_NONBLOCK: a FIFO planted there must not hang the start */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st)) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
	} else if (st.st_uid != 0 && st.st_uid != geteuid()) {
		rc = -EPERM;
		snprintf(err, errlen, "%s: owned by uid %u, not by root or this agent's uid %u: refused",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
	} else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		rc = -EPERM;
		snprintf(err, errlen, "%s: writable by %s (mode %04o): refused (chmod go-w it)", path,
			 st.st_mode & S_IWOTH ? "others" : "its group", (unsigned)(st.st_mode & 07777));
	}
	if (!rc && (st.st_mode & S_IROTH))
		log_warn("tokens", "token file %s is readable by others (mode %04o): chmod o-r it",
			 path, (unsigned)(st.st_mode & 07777));
	if (!rc) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		*f = fdopen(fd, "r");
		if (!*f)
			rc = -ENOMEM;
	}
	if (rc && !(*f))
		close(fd);
	return rc;
}

/* On success the caller owns *out. */
int tokens__load(const char *path, struct token_set **out, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t cap = 0, len = 0;
	FILE *f = NULL;
	int rc;

	rc = open_checked(path, &f, err, errlen);
	if (rc)
		return rc;
	for (;;) {
		size_t got;

		if (len == cap) {
			char *nb;

			if (cap >= (1u << 20)) {
				snprintf(err, errlen, "%s: larger than 1 MiB", path);
				rc = -EFBIG;
				goto out;
			}
			nb = realloc(buf, cap ? cap * 2 : 4096);
			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = cap ? cap * 2 : 4096;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		rc = -EIO;
		goto out;
	}
	rc = tokens__parse(buf ? buf : "", len, path, out, err, errlen);
out:
	free(buf);
	fclose(f);
	return rc;
}

/* Compares a candidate against every token without early exit: the time
 * taken depends on the number and length of tokens, not on their bytes. */
const struct principal *tokens__lookup(const struct token_set *ts, const char *token, size_t len)
{
	const struct principal *found = NULL;

	if (!ts || !token)
		return NULL;
	for (size_t i = 0; i < ts->n; i++) {
		const struct token_entry *e = &ts->v[i];
		unsigned int diff = (unsigned int)(e->len ^ len);

		for (size_t k = 0; k < e->len; k++) {
			unsigned char c = k < len ? (unsigned char)token[k] : 0;

			diff |= (unsigned char)e->token[k] ^ c;
		}
		/* branch-free select */
		uintptr_t mask = (uintptr_t)0 - (uintptr_t)(diff == 0);

		found = (const struct principal *)(((uintptr_t)&e->who & mask) |
						   ((uintptr_t)found & ~mask));
	}
	return found;
}
