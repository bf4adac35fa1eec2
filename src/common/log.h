/* Logging: one greppable line per event on stderr.
 *   2026-11-27T03:01:02Z kvmscope[123] level=warn sub=collector msg="..."
 * Operators grep by level= and sub=; keep messages free of newlines. */
#ifndef KVMSCOPE_COMMON_LOG_H
#define KVMSCOPE_COMMON_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped (default LOG_INFO; KVMSCOPE_DEBUG=1 lowers it). */
void log__set_level(enum log_level level);
void log__printf(enum log_level level, const char *sub, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(sub, ...) log__printf(LOG_DEBUG, sub, __VA_ARGS__)
#define log_info(sub, ...)  log__printf(LOG_INFO, sub, __VA_ARGS__)
#define log_warn(sub, ...)  log__printf(LOG_WARN, sub, __VA_ARGS__)
#define log_error(sub, ...) log__printf(LOG_ERROR, sub, __VA_ARGS__)

#endif
