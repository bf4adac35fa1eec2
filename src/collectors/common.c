/* Pieces every collector shares: the TAI offset, the per-CPU hash drain and
 * the BPF capability check. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "collectors/collector.h"
#include "common/log.h"

int64_t collector__tai_offset(void)
{
	struct timespec tai, real;

	/* TAI and UTC differ by whole seconds; round away the read skew. */
	clock_gettime(CLOCK_TAI, &tai);
	clock_gettime(CLOCK_REALTIME, &real);
	double d = (double)(tai.tv_sec - real.tv_sec) + (tai.tv_nsec - real.tv_nsec) / 1e9;
	return (int64_t)(d < 0 ? d - 0.5 : d + 0.5);
}

/* Keys are collected first and deleted after: deleting the cursor during a
 * bpf_map_get_next_key walk restarts the walk from the beginning. */
int collector__drain_percpu_hash(int map_fd, size_t key_size, size_t nvals,
				 uint32_t before_tai, percpu_entry_fn fn, void *ctx)
{
	int ncpus = libbpf_num_possible_cpus();
	size_t cap = 256, nkeys = 0;
	unsigned char *keys = NULL, *prev = NULL, *next = NULL;
	uint64_t *percpu = NULL, *sum = NULL;
	int err = 0, visited = 0, have_prev = 0;

	if (ncpus <= 0)
		return ncpus ? ncpus : -EINVAL;
	keys = malloc(cap * key_size);
	prev = malloc(key_size);
	next = malloc(key_size);
	percpu = calloc((size_t)ncpus * nvals, sizeof(uint64_t));
	sum = calloc(nvals, sizeof(uint64_t));
	if (!keys || !prev || !next || !percpu || !sum) {
		err = -ENOMEM;
		goto out;
	}
	while (bpf_map_get_next_key(map_fd, have_prev ? prev : NULL, next) == 0) {
		uint32_t sec;

		memcpy(&sec, next, sizeof(sec));
		if (sec < before_tai) {
			if (nkeys == cap) {
				unsigned char *bigger = realloc(keys, 2 * cap * key_size);

				if (!bigger) {
					err = -ENOMEM;
					goto out;
				}
				keys = bigger;
				cap *= 2;
			}
			memcpy(keys + nkeys++ * key_size, next, key_size);
		}
		memcpy(prev, next, key_size);
		have_prev = 1;
	}
	for (size_t i = 0; i < nkeys; i++) {
		const void *key = keys + i * key_size;

		if (bpf_map_lookup_elem(map_fd, key, percpu))
			continue;	/* deleted meanwhile: nothing to report */
		memset(sum, 0, nvals * sizeof(uint64_t));
		for (int c = 0; c < ncpus; c++)
			for (size_t v = 0; v < nvals; v++)
				sum[v] += percpu[(size_t)c * nvals + v];
		bpf_map_delete_elem(map_fd, key);
		visited++;
		err = fn(key, sum, ctx);
		if (err)
			goto out;
	}
	err = visited;
out:
	free(keys);
	free(prev);
	free(next);
	free(percpu);
	free(sum);
	return err;
}

int64_t collector__oldest_open_tai(int fd)
{
	int64_t oldest = FINAL_NONE_OPEN;
	__u32 key, next;
	__u64 began;
	int have = 0;

	while (bpf_map_get_next_key(fd, have ? &key : NULL, &next) == 0) {
		if (!bpf_map_lookup_elem(fd, &next, &began) &&
		    (int64_t)(began / 1000000000ull) < oldest)
			oldest = (int64_t)(began / 1000000000ull);
		key = next;
		have = 1;
	}
	return oldest;
}

int drain_emit__record(struct drain_emit *e, const struct record *rec)
{
	int err = e->sink(rec, e->ctx);

	if (!err)
		e->emitted++;
	return err;
}

int collector__drain_records(int map_fd, size_t key_size, size_t nvals, int64_t before,
			     struct drain_emit *e, percpu_entry_fn decode)
{
	int64_t before_tai = before + e->env->tai_offset;
	int err;

	if (before_tai <= 0)
		return 0;
	err = collector__drain_percpu_hash(map_fd, key_size, nvals,
					   before_tai > UINT32_MAX ? UINT32_MAX : (uint32_t)before_tai,
					   decode, e);
	return err < 0 ? err : e->emitted;
}

const char *collector__vcpu_label(const struct collector_env *env, uint32_t tgid, uint32_t tid,
				  int hint, char *buf, size_t len)
{
	int idx = hint;

	if (idx < 0 && tid && env->vms)
		idx = vmcache__vcpu(env->vms, (pid_t)tgid, (pid_t)tid);
	if (idx >= 0)
		snprintf(buf, len, "%d", idx);
	else
		snprintf(buf, len, "unknown");
	return buf;
}

uint64_t collector__percpu_counter(int map_fd)
{
	int ncpus = libbpf_num_possible_cpus();
	uint64_t *vals, total = 0;
	uint32_t zero = 0;

	if (ncpus <= 0 || !(vals = calloc((size_t)ncpus, sizeof(*vals))))
		return 0;
	if (!bpf_map_lookup_elem(map_fd, &zero, vals))
		for (int i = 0; i < ncpus; i++)
			total += vals[i];
	free(vals);
	return total;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libbpf's own lines are for developers: users get kvmscope's messages */
	if (level == LIBBPF_WARN && getenv("KVMSCOPE_DEBUG"))
		return vfprintf(stderr, fmt, ap);
	return 0;
}

void collector__quiet_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}

int collector__check_bpf(char *err, size_t errlen)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

	if (geteuid() != 0) {
		snprintf(err, errlen, "kvmscope needs root (CAP_BPF and CAP_PERFMON) to load BPF programs: run it with sudo");
		return -EPERM;
	}
	/* Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK. */
	setrlimit(RLIMIT_MEMLOCK, &rl);
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		snprintf(err, errlen, "this kernel has no BTF (/sys/kernel/btf/vmlinux): kvmscope needs CONFIG_DEBUG_INFO_BTF=y");
		return -ENOENT;
	}
	if (access("/sys/kernel/tracing/events/kvm", R_OK) &&
	    access("/sys/kernel/debug/tracing/events/kvm", R_OK)) {
		if (access("/sys/kernel/tracing/events", R_OK)) {
			snprintf(err, errlen, "tracefs is not mounted: run 'mount -t tracefs nodev /sys/kernel/tracing'");
			return -ENOENT;
		}
		snprintf(err, errlen, "no KVM tracepoints in tracefs: is KVM loaded ('modprobe kvm_intel' or 'kvm_amd')?");
		return -ENOENT;
	}
	return 0;
}

/* Whether struct `type` has member `field`, looking inside anonymous
 * structs and unions as C does. */
static int btf_has_member(const struct btf *btf, const struct btf_type *t, const char *field)
{
	const struct btf_member *m = btf_members(t);

	for (unsigned short i = 0; i < btf_vlen(t); i++, m++) {
		const char *name = btf__name_by_offset(btf, m->name_off);
		const struct btf_type *mt;

		if (name && *name) {
			if (!strcmp(name, field))
				return 1;
			continue;
		}
		mt = btf__type_by_id(btf, m->type);
		while (mt && (btf_is_mod(mt) || btf_is_typedef(mt)))
			mt = btf__type_by_id(btf, mt->type);
		if (mt && (btf_is_struct(mt) || btf_is_union(mt)) && btf_has_member(btf, mt, field))
			return 1;
	}
	return 0;
}

/* Why this kernel cannot run `prog`, or NULL when it can. */
static const char *prog_missing(const struct bpf_program *prog, const struct btf *btf,
				const struct collector_guard *guards, char *why, size_t len)
{
	const char *sec = bpf_program__section_name(prog), *name = bpf_program__name(prog);
	char path[256];

	if (btf && !strncmp(sec, "tp_btf/", 7)) {
		snprintf(path, sizeof(path), "btf_trace_%s", sec + 7);
		if (btf__find_by_name_kind(btf, path, BTF_KIND_TYPEDEF) < 0) {
			snprintf(why, len, "no tracepoint %s in the kernel's BTF", sec + 7);
			return why;
		}
	} else if (!strncmp(sec, "tracepoint/", 11)) {
		snprintf(path, sizeof(path), "/sys/kernel/tracing/events/%s", sec + 11);
		if (access(path, F_OK)) {
			snprintf(path, sizeof(path), "/sys/kernel/debug/tracing/events/%s", sec + 11);
			if (access(path, F_OK)) {
				snprintf(why, len, "no tracepoint %s", sec + 11);
				return why;
			}
		}
	}
	for (const struct collector_guard *g = guards; btf && g && g->prog; g++) {
		int id;

		if (strcmp(g->prog, name))
			continue;
		id = btf__find_by_name_kind(btf, g->type, BTF_KIND_STRUCT);
		if (id < 0 || (g->field && !btf_has_member(btf, btf__type_by_id(btf, id), g->field))) {
			snprintf(why, len, "this kernel has no %s%s%s", g->type, g->field ? "." : "",
				 g->field ? g->field : "");
			return why;
		}
	}
	return NULL;
}

/* Turn off the programs this kernel cannot run; -ENOENT when none is left. */
static int disable_missing(const struct collector_bpf *b, struct bpf_object *obj, char *err,
			   size_t errlen)
{
	struct btf *btf = btf__load_vmlinux_btf();
	struct bpf_program *prog;
	char why[160];
	int left = 0;

	if (!btf)
		log_warn("collector", "%s: cannot read the kernel's BTF (%s): programs are not checked "
			 "before loading", b->what, strerror(errno));
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__autoload(prog))
			continue;
		if (prog_missing(prog, btf, b->guards, why, sizeof(why))) {
			log_warn("collector", "%s: %s is not loaded: %s", b->what, bpf_program__name(prog),
				 why);
			bpf_program__set_autoload(prog, false);
			continue;
		}
		left++;
	}
	btf__free(btf);
	if (left)
		return 0;
	snprintf(err, errlen, "%s: this kernel has none of the hooks its BPF programs need", b->what);
	return -ENOENT;
}

int collector__bpf_bring_up(const struct collector_bpf *b, struct bpf_object_skeleton *s,
			    void *skel, void *ctx, char *err, size_t errlen)
{
	int rc;

	if (!s) {
		rc = errno ? -errno : -ENOMEM;
		snprintf(err, errlen, "%s: cannot open the BPF object: %s", b->what, strerror(-rc));
		return rc;
	}
	rc = disable_missing(b, *s->obj, err, errlen);
	if (rc)
		return rc;
	if (b->before_load && (rc = b->before_load(skel, ctx))) {
		snprintf(err, errlen, "%s: cannot configure the BPF programs: %s", b->what, strerror(-rc));
		return rc;
	}
	rc = bpf_object__load_skeleton(s);
	if (rc) {
		snprintf(err, errlen, "%s: cannot load the BPF programs: %s (is BPF enabled in this "
			 "kernel?)", b->what, strerror(-rc));
		return rc;
	}
	if (b->before_attach && (rc = b->before_attach(skel, ctx))) {
		snprintf(err, errlen, "%s: cannot configure the loaded BPF programs: %s", b->what,
			 strerror(-rc));
		return rc;
	}
	rc = bpf_object__attach_skeleton(s);
	if (rc) {
		snprintf(err, errlen, "%s: cannot attach the BPF programs: %s%s%s", b->what,
			 strerror(-rc), b->attach_hint ? " " : "", b->attach_hint ? b->attach_hint : "");
		return rc;
	}
	return 0;
}
