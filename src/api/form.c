/* application/x-www-form-urlencoded, as CA clients post instrumentations. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/utf8.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool utf8_ok(const char *k)
{
	return utf8__valid(k, strlen(k));
}

/* Decodes s[0..len) into a new string owned by the caller (*out). */
static int decode(const char *s, size_t len, char **out, char *err, size_t errlen)
{
	char *d = malloc(len + 1);
	size_t j = 0;

	if (!d)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '+') {
			d[j++] = ' ';
		} else if (s[i] == '%') {
			int hi = i + 1 < len ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < len ? hexval(s[i + 2]) : -1;

			if (hi < 0 || lo < 0) {
				snprintf(err, errlen, "bad %%-escape at byte %zu", i);
				free(d);
				return -EINVAL;
			}
			d[j++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			d[j++] = s[i];
		}
	}
	d[j] = '\0';
	if (memchr(d, '\0', j)) {
		snprintf(err, errlen, "NUL byte (%%00) in a form field");
		free(d);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

/* On success the caller owns *out. */
int form__parse(const char *buf, size_t len, json_t **out, char *err, size_t errlen)
{
	json_t *o = json_object();
	size_t pos = 0;
	int rc = 0;

	if (!o)
		return -ENOMEM;
	while (pos < len) {
		const char *amp = memchr(buf + pos, '&', len - pos);
		size_t l = amp ? (size_t)(amp - (buf + pos)) : len - pos;
		const char *eq = memchr(buf + pos, '=', l);
		size_t kl = eq ? (size_t)(eq - (buf + pos)) : l;
		char *k = NULL, *v = NULL;
		json_t *jv, *old;

		if (l == 0 || (l == 2 && !memcmp(buf + pos, "\r\n", 2))) {
			pos += l + 1;
			continue;
		}
		rc = decode(buf + pos, kl, &k, err, errlen);
		if (!rc)
			rc = eq ? decode(eq + 1, l - kl - 1, &v, err, errlen) : (v = strdup(""), v ? 0 : -ENOMEM);
		if (rc)
			goto err_kv;
		jv = json_string(v);
		if (!jv) {
			snprintf(err, errlen, "form field '%s' is not valid UTF-8", k);
			rc = -EINVAL;
			goto err_kv;
		}
		if (!*k || !utf8_ok(k)) {
			json_decref(jv);
			snprintf(err, errlen, "form field name is empty or not valid UTF-8");
			rc = -EINVAL;
			goto err_kv;
		}
		old = json_object_get(o, k);
		if (!old) {
			json_object_set_new(o, k, jv);
		} else if (json_is_array(old)) {
			json_array_append_new(old, jv);
		} else {
			json_t *arr = json_pack("[O,o]", old, jv);

			json_object_set_new(o, k, arr);
		}
		free(k);
		free(v);
		pos += l + 1;
		continue;
err_kv:
		free(k);
		free(v);
		json_decref(o);
		return rc;
	}
	*out = o;
	return 0;
}
