/* In-kernel aggregation helpers shared by the metric programs: a per-CPU
 * hash of counters keyed by (TAI second, ...), drained by user space once
 * the second is over, and a drop counter for when the hash is full. */
#ifndef KVMSCOPE_BPF_AGGREGATE_H
#define KVMSCOPE_BPF_AGGREGATE_H

#define E2BIG_ 7

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *d = bpf_map_lookup_elem(&drops, &zero);

	if (d)
		(*d)++;
}

/* *counter(map, key) += add, creating the entry; counts a drop when full. */
static __always_inline void aggregate__add(void *map, const void *key, __u64 add)
{
	__u64 *val = bpf_map_lookup_elem(map, key);

	if (!val) {
		__u64 zero = 0;

		if (bpf_map_update_elem(map, key, &zero, BPF_NOEXIST) == -E2BIG_) {
			count_drop();
			return;
		}
		val = bpf_map_lookup_elem(map, key);
		if (!val)
			return;
	}
	*val += add;
}

#endif
