#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static int level_from_env_done;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log__set_level(enum log_level level)
{
	min_level = level;
	level_from_env_done = 1;
}

void log__printf(enum log_level level, const char *sub, const char *fmt, ...)
{
	char msg[1024], stamp[32];
	struct tm tm;
	time_t now = time(NULL);
	va_list ap;

	if (!level_from_env_done) {
		const char *env = getenv("KVMSCOPE_DEBUG");

		if (env && *env && *env != '0')
			min_level = LOG_DEBUG;
		level_from_env_done = 1;
	}
	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* One write per line so concurrent threads do not interleave. */
	fprintf(stderr, "%s kvmscope[%d] level=%s sub=%s msg=\"%s\"\n", stamp, (int)getpid(),
		level_names[level], sub, msg);
}
