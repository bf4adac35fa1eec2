/* The hash functions of kvmscope's tables (interned keys, bucket lookups,
 * distinct values, OpenMetrics series): one byte-string hash and one
 * integer mixer, so that every table hashes alike. */
#ifndef KVMSCOPE_COMMON_HASH_H
#define KVMSCOPE_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a, 64 bits: start from HASH_SEED, feed pieces in turn. */
#define HASH_SEED 0xcbf29ce484222325ULL

static inline uint64_t hash__bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* MurmurHash3's 64-bit finaliser: every input bit moves every output bit,
 * so that keys differing only in high bits (bucket indexes under key ids,
 * whole-number doubles) spread over a power-of-two table. */
static inline uint64_t hash__mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

#endif
