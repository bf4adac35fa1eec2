/* Atomic file writes, as the agent's persistence does them. */
#ifndef KVMSCOPE_AGENT_STATE_H
#define KVMSCOPE_AGENT_STATE_H

#include <stddef.h>

/* A larger state.json is set aside unread: it cannot be one the agent wrote
 * (64 per owner of specs under 2 KiB each is far below), and parsing it would
 * hold the start for seconds and the memory of its tree. */
#define STATE_JSON_MAX	(64 << 20)

/* Writes data atomically to path (tmp file, fsync, rename, fsync dir).
 * 0 or -errno. */
int state__write_atomic(const char *path, const char *data, size_t len);

#endif
