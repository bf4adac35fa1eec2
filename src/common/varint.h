/* LEB128 unsigned varints, as the recording format and the fleet's wire
 * form write them: 7 bits a byte, low first, the top bit saying more. */
#ifndef KVMSCOPE_COMMON_VARINT_H
#define KVMSCOPE_COMMON_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define VARINT_MAX_BYTES 10

/* Writes v into out (VARINT_MAX_BYTES at most); returns the bytes used. */
static inline size_t varint__encode(unsigned char out[VARINT_MAX_BYTES], uint64_t v)
{
	size_t n = 0;

	do {
		out[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			out[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

#endif
