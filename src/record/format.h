/* The recording format (docs/recording.md is the full description).
 *
 *   file    = header chunk*
 *   header  = magic "\x89KVMREC\n" (8 bytes), u32 version, u32 header size (16)
 *   chunk   = u32 "KCHK", u32 stored size, u32 raw size, u32 CRC-32,
 *             stored size bytes of zstd-compressed payload
 *   payload = entry*, each a tag byte and its body (RECORD_TAG_*)
 *
 * Integers in headers are little-endian; in payloads they are LEB128 varints
 * (signed ones zigzag-encoded). The CRC (zlib's crc32) covers the two sizes
 * and the stored bytes, so a chunk that a crash left half-written, or that a
 * disk bit flip touched, is recognised before it is decompressed.
 *
 * The file is append-only: the writer emits one chunk per drained second in
 * one write(2). A chunk that ends the file and is incomplete or fails its CRC
 * is a torn tail (the recorder died while writing it) and is ignored; a bad
 * chunk with data after it is corruption and an error.
 */
#ifndef KVMSCOPE_RECORD_FORMAT_H
#define KVMSCOPE_RECORD_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define RECORD_FILE_MAGIC	"\x89KVMREC\n"
#define RECORD_FILE_MAGIC_LEN	8
#define RECORD_FILE_VERSION	1
#define RECORD_FILE_HEADER_SIZE	16
#define RECORD_CHUNK_MAGIC	"KCHK"
#define RECORD_CHUNK_HEADER_SIZE 16
/* A second of one busy host is a few hundred KiB raw at most: anything
 * claiming more than this is not a chunk the writer made. */
#define RECORD_CHUNK_MAX	(64u << 20)

enum record_tag {
	/* JSON object: format, version, hostname, created, first (the first
	 * complete second), metrics: [{name, fields: [names]}] (the order
	 * RECORD entries index them by). First entry of every file. */
	RECORD_TAG_META = 1,
	/* svarint time, varint length, JSON array (kvmscope vms -j): the host's
	 * VMs from that second on */
	RECORD_TAG_VMS = 2,
	/* svarint time, varint length, JSON object {metric: source} */
	RECORD_TAG_SOURCES = 3,
	/* u8 metric (index into META's metrics), svarint time, varint value,
	 * varint num_absent, then per recorded field of the metric: discrete:
	 * varint length + 1 (0 = unknown) and the bytes; numeric: varint */
	RECORD_TAG_RECORD = 4,
	/* svarint before: every record of a second < before has been written.
	 * Then varint n and n x (u8 metric, varint events lost in the kernel
	 * since the recorder started) */
	RECORD_TAG_MARK = 5,
};

static inline void record_le32_put(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t record_le32_get(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* CRC-32 of a chunk: its two sizes, then the stored bytes. */
uint32_t record__chunk_crc(uint32_t stored, uint32_t raw, const void *data);

#endif
