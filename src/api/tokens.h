/* Access tokens for the agent's API.
 *
 * Token file format, one token per line (blank lines and '#' comments
 * ignored):
 *   TOKEN operator
 *   TOKEN tenant VM1,VM2,...
 * TOKEN is 16..256 printable non-space ASCII characters. An operator sees and
 * manages everything; a tenant sees only the VMs listed (its
 * instrumentations get a forced VM predicate) and only its own
 * instrumentations. Tenants listing the same VMs (in the same order) share
 * an owner: rotating a tenant's token keeps its instrumentations.
 */
#ifndef KVMSCOPE_API_TOKENS_H
#define KVMSCOPE_API_TOKENS_H

#include <stddef.h>

#include "agent/agent.h"	/* struct principal */

#define TOKEN_MIN_LEN 16
#define TOKEN_MAX_LEN 256

struct token_set;

/* Parses the file at path. On success *out is owned by the caller
 * (tokens__free). -EINVAL with "FILE:LINE: reason" in err for a malformed
 * line, -errno when the file cannot be read. */
int tokens__load(const char *path, struct token_set **out, char *err, size_t errlen);
/* The same from a buffer (tests, fuzzing); `name` labels messages. */
int tokens__parse(const char *buf, size_t len, const char *name, struct token_set **out,
		  char *err, size_t errlen);
void tokens__free(struct token_set *ts);
size_t tokens__count(const struct token_set *ts);

/* The principal holding `token` (borrowed from ts), or NULL. Every stored
 * token is compared in constant time so that timing reveals nothing. */
const struct principal *tokens__lookup(const struct token_set *ts, const char *token, size_t len);

/* The principal used when no token file is configured (loopback only). */
const struct principal *tokens__anonymous_operator(void);

#endif
