#include "render/base64.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64__encoded_len(size_t len)
{
	return (len + 2) / 3 * 4;
}

int base64__encode(const void *data, size_t len, char **out)
{
	const uint8_t *p = data;
	size_t i, o = 0;
	char *s;

	if ((!data && len) || !out || len > (SIZE_MAX - 1) / 4 * 3 - 2)
		return -EINVAL;
	s = malloc(base64__encoded_len(len) + 1);
	if (!s)
		return -ENOMEM;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		s[o++] = alphabet[v >> 18];
		s[o++] = alphabet[(v >> 12) & 63];
		s[o++] = alphabet[(v >> 6) & 63];
		s[o++] = alphabet[v & 63];
	}
	if (i < len) {
		/* one or two bytes left: pad the quantum with '=' */
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);

		s[o++] = alphabet[v >> 18];
		s[o++] = alphabet[(v >> 12) & 63];
		s[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		s[o++] = '=';
	}
	s[o] = 0;
	*out = s;
	return 0;
}
