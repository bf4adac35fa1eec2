/* The one interface between collectors and the engine.
 *
 * Collectors aggregate in the kernel, drain once per second and hand the engine
 * *records*: "this many events, with these field values, in this wall-clock
 * second". The engine knows nothing of BPF; tests and replays feed it records
 * directly.
 *
 * Field values are indexed by the field's position in the metric's field list
 * (see engine/metric.h: metric__field_index()). Discrete fields are strings,
 * numeric fields are u64 in the field's unit (ns, bytes, ms). A numeric value
 * that the kernel already bucketed is passed as the bucket's lower bound, which
 * the engine's bucketing maps back to the same bucket (bucket.h is shared with
 * the BPF side for exactly this reason).
 */
#ifndef KVMSCOPE_ENGINE_RECORD_H
#define KVMSCOPE_ENGINE_RECORD_H

#include <stdint.h>

enum metric_id {
	METRIC_VM_EXITS,
	METRIC_VM_IRQS,
	METRIC_VM_DISK_OPS,
	METRIC_VM_DISK_BYTES,
	METRIC_VM_NIC_BYTES,
	METRIC_VM_NIC_PACKETS,
	METRIC_VM_SAMPLES,
	METRIC__COUNT
};

/* Field positions, per metric (the catalogue in engine/metric.c lists the
 * fields in this order). */
enum { F_HOSTNAME = 0, F_VM = 1 };
enum { F_EXITS_VCPU = 2, F_EXITS_REASON, F_EXITS_CLASS, F_EXITS_LATENCY, F_EXITS_SUBSECOND };
enum { F_IRQS_VCPU = 2, F_IRQS_VECTOR, F_IRQS_SOURCE, F_IRQS_SUBSECOND };
enum { F_DISK_DISK = 2, F_DISK_OPTYPE, F_DISK_ERRNO, F_DISK_LATENCY, F_DISK_SIZE, F_DISK_OFFSET,
       F_DISK_SUBSECOND };
enum { F_NIC_NIC = 2, F_NIC_DIRECTION };
enum { F_SAMPLES_VCPU = 2, F_SAMPLES_MMUCTX, F_SAMPLES_SUBSECOND };

#define FIELD_BIT(f) (1ull << (f))

#define RECORD_MAX_FIELDS 12

struct record {
	enum metric_id metric;
	int64_t time;			/* unix second the events happened in */
	uint64_t value;			/* events, or bytes for *_bytes metrics */
	const char *str[RECORD_MAX_FIELDS];	/* discrete fields; NULL = unknown */
	uint64_t num[RECORD_MAX_FIELDS];	/* numeric fields */
	/* bit i set: numeric field i is not measurable for these events (e.g.
	 * the latency of an exit completed inside the kernel on the fallback
	 * source). Instrumentations that use the field skip the record. */
	uint32_t num_absent;
};

/* Collectors call this for each drained record; the pointer and the strings
 * it references are only valid during the call. Return 0 or -errno (stops
 * the drain). */
typedef int (*record_sink_fn)(const struct record *rec, void *ctx);

#endif
