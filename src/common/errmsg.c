#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/errmsg.h"

int errmsg__invalid(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}
