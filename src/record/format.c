#include <zlib.h>

#include "record/format.h"

uint32_t record__chunk_crc(uint32_t stored, uint32_t raw, const void *data)
{
	unsigned char sizes[8];
	uLong crc = crc32(0L, Z_NULL, 0);

	record_le32_put(sizes, stored);
	record_le32_put(sizes + 4, raw);
	crc = crc32(crc, sizes, sizeof(sizes));
	return (uint32_t)crc32(crc, data, stored);
}
