/* Growing arrays: one doubling helper instead of one per module. */
#ifndef KVMSCOPE_COMMON_GROW_H
#define KVMSCOPE_COMMON_GROW_H

#include <stddef.h>

/* Makes *p (an array of elem-sized items, capacity *cap, owned by the
 * caller) hold at least need items: doubles from 16, realloc keeps what it
 * held. On failure *p and *cap are unchanged. 0, -ENOMEM or -EOVERFLOW. */
int array__grow(void **p, size_t *cap, size_t need, size_t elem);

#endif
