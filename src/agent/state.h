/* Atomic file writes, as the agent's persistence does them. */
#ifndef KVMSCOPE_AGENT_STATE_H
#define KVMSCOPE_AGENT_STATE_H

#include <stddef.h>

/* Writes data atomically to path (tmp file, fsync, rename, fsync dir).
 * 0 or -errno. */
int state__write_atomic(const char *path, const char *data, size_t len);

#endif
