/* The fleet's data on the bus: an agent's new slots of one instrumentation,
 * in a compact binary form of the engine's raw value (engine/merge.h), so
 * that aggregators decode them straight into values value__merge takes.
 *
 * A message (little-endian):
 *   0  u8  'K'             magic
 *   1  u8  1               version
 *   2  u16 flags           FLEET_WIRE_BACKFILL: an answer to a request
 *   4  u32 granularity     seconds per slot
 *   8  i64 from            the first second this host has data for
 *  16  i64 start           the first slot's start (a multiple of granularity)
 *  24  i64 drained_us      when the drain that completed the newest slot ended
 *                          (unix microseconds: the aggregator's latency clock)
 *  32  u32 nslots          consecutive slots that follow, 1..FLEET_WIRE_MAX_SLOTS
 *  36  values
 * A value is a tag byte and its body:
 *   0 integer              zigzag varint
 *   1 distribution         varint n, n x (zigzag lo, varint hi - lo, zigzag count)
 *   2 map of integers      varint n, n x (key, zigzag value)
 *   3 map of distributions varint n, n x (key, distribution body)
 * a key being varint length (at most FLEET_WIRE_MAX_KEY) then UTF-8 bytes.
 * Empty values keep their JSON type: 0, [] (tag 1, n 0), {} (tag 2, n 0).
 * Decoding refuses anything else: another magic or version, a length past
 * the end, bytes left over, a varint over 64 bits, a repeated key, a key
 * that is not UTF-8, a bucket with hi < lo, more keys than the caller allows.
 */
#ifndef KVMSCOPE_FLEET_WIRE_H
#define KVMSCOPE_FLEET_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define FLEET_WIRE_MAGIC	'K'
#define FLEET_WIRE_VERSION	1
#define FLEET_WIRE_HEADER	36
#define FLEET_WIRE_BACKFILL	1u
#define FLEET_WIRE_MAX_SLOTS	3600
#define FLEET_WIRE_MAX_KEY	1024

struct fleet_wire_header {
	uint16_t flags;
	uint32_t granularity;
	int64_t from, start, drained_us;
	uint32_t nslots;
};

/* A growing byte buffer; the caller owns data (free). */
struct fleet_buf {
	unsigned char *data;
	size_t len, cap;
};

/* Appends the header (nslots as given) to b. 0 or -ENOMEM. */
int fleet_wire__put_header(struct fleet_buf *b, const struct fleet_wire_header *h);
/* Appends one value (borrowed) to b. 0, -ENOMEM, or -EINVAL for a value
 * that is not a well-formed raw value (b is then as it was). */
int fleet_wire__put_value(struct fleet_buf *b, const json_t *v);

/* Decodes a message: *h its header, values[0..h->nslots) new references
 * owned by the caller (values must have FLEET_WIRE_MAX_SLOTS entries); at
 * most max_keys keys in all slots together (beyond: -E2BIG, nothing kept).
 * 0, -EINVAL (malformed, reason in err), -E2BIG or -ENOMEM. */
int fleet_wire__decode(const void *data, size_t len, size_t max_keys,
		       struct fleet_wire_header *h, json_t **values, char *err, size_t errlen);

#endif
