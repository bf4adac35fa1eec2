/* Small string helpers shared by modules that copy optional strings. */
#ifndef KVMSCOPE_COMMON_STR_H
#define KVMSCOPE_COMMON_STR_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'ed copy of s, owned by the caller (free()), or NULL for a NULL
 * s. A failed copy returns NULL and sets *nomem, so that a caller copying
 * several can check once. */
static inline char *str__dup_or_null(const char *s, bool *nomem)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*nomem = true;
	return d;
}

#endif
