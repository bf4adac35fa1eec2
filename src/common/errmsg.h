/* Error messages into a caller's buffer, for the -EINVAL paths of parsers. */
#ifndef KVMSCOPE_COMMON_ERRMSG_H
#define KVMSCOPE_COMMON_ERRMSG_H

#include <stddef.h>

/* Writes the formatted message into err[errlen] (if err is given) and
 * returns -EINVAL, so that a parser can `return errmsg__invalid(...)`. */
int errmsg__invalid(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
