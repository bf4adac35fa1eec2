/* Collectors: the kernel side of each metric family, and its drain.
 *
 * A collector is a table of function pointers (kvmtool-style backend). It
 * loads and attaches its BPF programs only in start() — nothing is attached
 * while no instrumentation needs it — aggregates in the kernel keyed by the
 * fields active instrumentations need (plus the wall-clock second), and
 * drain() turns every *complete* second into engine records.
 *
 * Kernel-side keys carry the TAI second of the event (bpf_ktime_get_tai_ns);
 * collector_env.tai_offset converts it to unix time. Draining only seconds
 * that have ended means no lost or double-counted increments, without
 * double buffering.
 */
#ifndef KVMSCOPE_COLLECTORS_COLLECTOR_H
#define KVMSCOPE_COLLECTORS_COLLECTOR_H

#include <stdint.h>

#include "engine/finality.h"
#include "engine/record.h"
#include "collectors/vmcache.h"

/* A second is declared final at most this long after its end, even if an
 * exit that began in it is still open (engine/finality.h). */
#define COLLECTOR_FINAL_WAIT_MAX_S FINAL_WAIT_MAX_S

struct collector_env {
	struct vmcache *vms;		/* pid/tid -> VM name, vCPU index, disks, NICs */
	const char *hostname;
	int64_t tai_offset;		/* TAI seconds - unix seconds (whole seconds) */
};

struct collector;

struct collector_ops {
	const char *name;
	uint32_t metrics;		/* bit (1u << metric_id) per metric fed */
	int uses_bpf;			/* needs root, BTF and tracefs to start */
	/* fields[m] = bitmask of field indexes of metric m that instrumentations need */
	int (*start)(struct collector *c, const uint64_t fields[METRIC__COUNT]);
	int (*reconfigure)(struct collector *c, const uint64_t fields[METRIC__COUNT]);
	/* emit records of all seconds < before (unix); returns records emitted or -errno */
	int (*drain)(struct collector *c, int64_t before, const struct collector_env *env,
		     record_sink_fn sink, void *ctx);
	void (*stop)(struct collector *c);
	/* events lost in the kernel (map full) since start */
	uint64_t (*drops)(struct collector *c);
	/* unix second before which every second is final (finality.h), as of
	 * the last drain; NULL: every drained second is final */
	int64_t (*final_until)(struct collector *c);
};

struct collector {
	const struct collector_ops *ops;
	void *priv;			/* owned by the backend between start and stop */
	const char *source;		/* what the data comes from, for users ("kvm_exit", ...) */
};

extern const struct collector_ops collector_exits_ops;	/* vm.exits */
extern const struct collector_ops collector_irqs_ops;	/* vm.irqs */
extern const struct collector_ops collector_disk_ops;	/* vm.disk_ops, vm.disk_bytes */
struct vm_disk;
/* Where vm.disk_* counts disk d of a VM (the rule of sync_watched, for the
 * VM list): "vmm" (the VMM's own operations on its fd: syscall, aio or
 * io_uring, as the collector's source line says per disk), "rq" (a block
 * device it does not hold open: its requests), "bio" (the same, bio-based)
 * or "none" (an image named on the command line, not open: nothing to see). */
const char *disk__counted_at(const struct vm_disk *d);
extern const struct collector_ops collector_nic_ops;	/* vm.nic_bytes, vm.nic_packets */
extern const struct collector_ops collector_samples_ops;	/* vm.samples */

/* TAI - unix offset in whole seconds, read now. */
int64_t collector__tai_offset(void);

/* Drain helper for BPF per-CPU hashes whose key begins with `__u32 sec` (TAI
 * seconds) and whose value is an array of `nvals` __u64 counters: for every
 * entry with sec < before_tai, sums the counters over CPUs, calls fn, and
 * deletes the entry. Returns entries visited or -errno. */
typedef int (*percpu_entry_fn)(const void *key, const uint64_t *vals, void *ctx);
int collector__drain_percpu_hash(int map_fd, size_t key_size, size_t nvals,
				 uint32_t before_tai, percpu_entry_fn fn, void *ctx);

/* The TAI second the oldest exit still open began in, from an exits_open
 * map (bpf/exit_logic.h: tid -> TAI ns); FINAL_NONE_OPEN when none is. */
int64_t collector__oldest_open_tai(int map_fd);

/* What a BPF collector's drain passes to its per-entry decoder. */
struct drain_emit {
	void *priv;			/* the backend's state */
	const struct collector_env *env;
	record_sink_fn sink;
	void *ctx;
	int emitted;
};

/* Hand one decoded record to the sink and count it. */
int drain_emit__record(struct drain_emit *e, const struct record *rec);

/* collector__drain_percpu_hash() for the seconds before unix time `before`,
 * with `decode` turning each entry into records through drain_emit__record.
 * Returns records emitted or -errno. */
int collector__drain_records(int map_fd, size_t key_size, size_t nvals, int64_t before,
			     struct drain_emit *e, percpu_entry_fn decode);

/* The vCPU label of a record: the kernel's index when it knew it (hint >= 0),
 * else the index of thread tid in process tgid from discovery, else
 * "unknown". Writes into buf and returns it. */
const char *collector__vcpu_label(const struct collector_env *env, uint32_t tgid, uint32_t tid,
				  int hint, char *buf, size_t len);

/* Sum over CPUs of slot 0 of a per-CPU array of __u64 (drop counters). */
uint64_t collector__percpu_counter(int map_fd);

/* A BPF program that reads a kernel field its kernel may lack without a
 * bpf_core_field_exists() of its own: where `type` has no member `field`
 * (or no `type` at all, field NULL) in the running kernel's BTF, the
 * program is not loaded and the rest of the object still is. */
struct collector_guard {
	const char *prog;		/* program (function) name in the object */
	const char *type;		/* struct name */
	const char *field;		/* member of it, or NULL */
};

/* How collector__bpf_start brings up one collector's BPF object. */
struct collector_bpf {
	const char *what;		/* metric family, for messages ("vm.exits") */
	const char *attach_hint;	/* what the user can check when attaching fails */
	const struct collector_guard *guards;	/* ends with prog NULL; may be NULL */
	/* after open, before load: .rodata, autoload of optional programs */
	int (*before_load)(void *skel, void *ctx);
	/* after load, before attach: .bss config, map seeding */
	int (*before_attach)(void *skel, void *ctx);
};

struct bpf_object_skeleton;

/* The one lifecycle of every BPF collector, after its skeleton `s` of
 * `skel` was opened (s NULL: the open failed with errno): turns off the
 * programs whose hook or guarded field this kernel lacks (tp_btf/NAME
 * without btf_trace_NAME, tracepoint/CAT/NAME absent from tracefs, a
 * collector_guard), then before_load, load, before_attach, attach. On
 * failure writes a message for users into err; the caller still owns and
 * destroys skel. */
int collector__bpf_bring_up(const struct collector_bpf *b, struct bpf_object_skeleton *s,
			    void *skel, void *ctx, char *err, size_t errlen);

/* Open skeleton type `name` (exits_bpf, ...) and bring it up; on success
 * *(skelp) owns it until collector__bpf_stop, on failure nothing is left.
 * Evaluates to 0 or -errno. */
#define collector__bpf_start(name, skelp, b, ctx, err, errlen)					\
	({											\
		struct name *skel_ = name##__open();						\
		int rc_ = collector__bpf_bring_up((b), skel_ ? skel_->skeleton : NULL, skel_,	\
						  (ctx), (err), (errlen));			\
		if (rc_)									\
			name##__destroy(skel_);							\
		else										\
			*(skelp) = skel_;							\
		rc_;										\
	})

/* Detach and free what collector__bpf_start brought up; *(skelp) becomes NULL. */
#define collector__bpf_stop(name, skelp)							\
	do {											\
		name##__destroy(*(skelp));							\
		*(skelp) = NULL;								\
	} while (0)

/* Keep libbpf's diagnostics off stderr unless KVMSCOPE_DEBUG is set. */
void collector__quiet_libbpf(void);

/* Raise RLIMIT_MEMLOCK where needed and check we may use BPF; on failure
 * writes a message telling the user what to do. */
int collector__check_bpf(char *err, size_t errlen);

#endif
