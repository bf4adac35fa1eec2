/* UTF-8 checks for text that comes from guests, VMMs and HTTP clients and
 * goes out as JSON or OpenMetrics, which carry only valid UTF-8: the RFC 3629
 * rules, as jansson applies them (no overlong forms, no surrogates, nothing
 * past U+10FFFF). */
#ifndef KVMSCOPE_COMMON_UTF8_H
#define KVMSCOPE_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of the valid sequence at p (at most avail of them are looked at,
 * and none after a byte that breaks the sequence, so a NUL-terminated
 * string may pass 4): 1..4, or 0 when p does not start one. */
size_t utf8__seq_len(const unsigned char *p, size_t avail);

/* Is s[0..len) valid UTF-8? (NUL bytes count as ASCII.) */
bool utf8__valid(const char *s, size_t len);

/* When s[0..len) is not valid UTF-8, every byte outside ASCII becomes '?',
 * in place: the value keeps its length and its ASCII, and shows where the
 * other bytes were, rather than being lost. Returns whether s changed. */
bool utf8__sanitize(char *s, size_t len);

#endif
