/* vm.samples: user side of bpf/samples.bpf.c.
 *
 * One software cpu-clock perf event per online CPU at 99 Hz (not 100, so the
 * sampler does not run in lock-step with periodic guest or host activity)
 * feeds a BPF perf_event program; it keeps the ticks that land on vCPU
 * threads. User space seeds the set of vCPU threads from discovery, so that
 * a vCPU counts from its first tick even before a KVM tracepoint told the
 * kernel side which struct kvm_vcpu it runs (its mmuctx is "unavailable"
 * until then), and prunes threads that have exited.
 */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collectors/collector.h"
#include "common/clock.h"
#include "common/log.h"
#include "samples.h"
#include "samples.skel.h"

#define SUB "samples"

#define MAX_CPUS 4096
#define MAX_PRUNE 1024

struct samples_priv {
	struct samples_bpf *skel;
	uint32_t want;
	struct bpf_link **links;	/* one perf link per online CPU; each owns its perf fd */
	size_t nlinks;
	struct timespec last_sync;
};

static uint32_t want_of(const uint64_t fields[METRIC__COUNT])
{
	uint64_t f = fields[METRIC_VM_SAMPLES];
	uint32_t want = 0;

	if (f & FIELD_BIT(F_VM))
		want |= SAMPLES_WANT_VM;
	if (f & FIELD_BIT(F_SAMPLES_VCPU))
		want |= SAMPLES_WANT_VCPU;
	if (f & FIELD_BIT(F_SAMPLES_MMUCTX))
		want |= SAMPLES_WANT_MMUCTX;
	if (f & FIELD_BIT(F_SAMPLES_SUBSECOND))
		want |= SAMPLES_WANT_SUBSEC;
	return want;
}

/* Parse a CPU list like "0-3,6,8-9" (sysfs "online") into online[]. Returns
 * the number of CPUs set or -EINVAL naming nothing: the caller says which
 * file was malformed. */
static int parse_cpu_list(const char *s, unsigned char *online, size_t n)
{
	int count = 0;

	while (*s && *s != '\n') {
		char *end;
		unsigned long lo = strtoul(s, &end, 10), hi = lo;

		if (end == s)
			return -EINVAL;
		s = end;
		if (*s == '-') {
			hi = strtoul(s + 1, &end, 10);
			if (end == s + 1 || hi < lo)
				return -EINVAL;
			s = end;
		}
		for (unsigned long c = lo; c <= hi && c < n; c++)
			if (!online[c]) {
				online[c] = 1;
				count++;
			}
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return -EINVAL;
	}
	return count;
}

static int online_cpus(unsigned char *online, size_t n)
{
	const char *path = "/sys/devices/system/cpu/online";
	char buf[4096];
	FILE *f = fopen(path, "r");
	int ret;

	if (!f) {
		ret = -errno;
		log_error(SUB, "cannot read %s: %s", path, strerror(-ret));
		return ret;
	}
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		log_error(SUB, "%s is empty", path);
		return -EINVAL;
	}
	fclose(f);
	ret = parse_cpu_list(buf, online, n);
	if (ret <= 0) {
		log_error(SUB, "cannot parse the CPU list in %s: '%.64s'", path, buf);
		return -EINVAL;
	}
	return ret;
}

/* Open a cpu-clock event on each online CPU and attach the sampler to it.
 * On success p->links owns the links (and through them the perf fds). */
static int attach_perf(struct samples_priv *p)
{
	unsigned char *online = calloc(MAX_CPUS, 1);
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.freq = 1,
		.sample_freq = SAMPLES_HZ,
	};
	int n, err = 0;

	if (!online)
		return -ENOMEM;
	n = online_cpus(online, MAX_CPUS);
	if (n < 0) {
		err = n;
		goto out;
	}
	p->links = calloc((size_t)n, sizeof(*p->links));
	if (!p->links) {
		err = -ENOMEM;
		goto out;
	}
	for (int cpu = 0; cpu < MAX_CPUS && p->nlinks < (size_t)n; cpu++) {
		struct bpf_link *link;
		int fd;

		if (!online[cpu])
			continue;
		fd = (int)syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd < 0) {
			err = -errno;
			/* went offline since we read the list: nothing runs there */
			if (err == -ENODEV) {
				err = 0;
				continue;
			}
			log_error(SUB, "perf_event_open(cpu-clock, %d Hz) on CPU %d failed: %s%s", SAMPLES_HZ,
				  cpu, strerror(-err),
				  err == -EACCES || err == -EPERM ? " (needs CAP_PERFMON; check kernel.perf_event_paranoid)"
								  : "");
			goto out;
		}
		link = bpf_program__attach_perf_event(p->skel->progs.samples_tick, fd);
		if (!link) {
			err = -errno;
			close(fd);
			log_error(SUB, "attaching the sampler to the cpu-clock event of CPU %d failed: %s", cpu,
				  strerror(-err));
			goto out;
		}
		p->links[p->nlinks++] = link;
	}
out:
	free(online);
	return err;
}

/* Seed the vCPU threads of `list` (keeping what the kernel side already
 * learned about them) and forget threads that no longer exist. */
static void sync_threads(struct samples_priv *p, const struct vm_list *list)
{
	int fd = bpf_map__fd(p->skel->maps.vcpu_threads);
	uint32_t gone[MAX_PRUNE], cur, next;
	size_t ngone = 0;
	int have = 0;

	for (size_t v = 0; v < list->nvms; v++) {
		const struct vm_info *vm = &list->vms[v];

		for (size_t i = 0; i < vm->nvcpus; i++) {
			struct samples_thread t = { .vcpu = 0, .tgid = (uint32_t)vm->pid, .idx = -1 };
			uint32_t tid = (uint32_t)vm->vcpus[i].tid;

			if (!tid)
				continue;
			if (bpf_map_update_elem(fd, &tid, &t, BPF_NOEXIST) && errno != EEXIST)
				log_warn(SUB, "cannot watch vCPU %d (thread %u) of VM %s: %s", vm->vcpus[i].index,
					 tid, vm->name, strerror(errno));
		}
	}
	while (ngone < MAX_PRUNE && !bpf_map_get_next_key(fd, have ? &cur : NULL, &next)) {
		struct samples_thread t;

		/* tgkill with signal 0 only checks that the thread still exists */
		if (!bpf_map_lookup_elem(fd, &next, &t) &&
		    syscall(SYS_tgkill, (pid_t)t.tgid, (pid_t)next, 0) && errno == ESRCH)
			gone[ngone++] = next;
		cur = next;
		have = 1;
	}
	for (size_t i = 0; i < ngone; i++)
		bpf_map_delete_elem(fd, &gone[i]);
	clock_gettime(CLOCK_MONOTONIC, &p->last_sync);
}

static void priv_free(struct samples_priv *p)
{
	if (!p)
		return;
	/* links first: nothing may run the program while the maps go away */
	for (size_t i = 0; i < p->nlinks; i++)
		bpf_link__destroy(p->links[i]);
	free(p->links);
	collector__bpf_stop(samples_bpf, &p->skel);
	free(p);
}

static int samples_before_attach(void *skel, void *ctx)
{
	struct samples_priv *p = ctx;
	struct vm_list list = { 0 };

	p->skel = skel;
	p->skel->bss->samples_want = p->want;
	/* seed before sampling starts so the first second counts every vCPU */
	if (!discovery__scan("/proc", &list)) {
		sync_threads(p, &list);
		discovery__free(&list);
	}
	return 0;
}

static const struct collector_bpf samples_bpf_life = {
	.what = "vm.samples",
	.attach_hint = "(tp_btf kvm_entry, kvm_exit and kvm_emulate_insn: is KVM loaded and its BTF "
		       "available?)",
	.before_attach = samples_before_attach,
};

/* On success c->priv owns the loaded skeleton, its tracepoint links and the
 * per-CPU perf links until samples_stop. */
static int samples_start(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct samples_priv *p = calloc(1, sizeof(*p));
	char msg[256];
	int err;

	if (!p)
		return -ENOMEM;
	err = collector__check_bpf(msg, sizeof(msg));
	if (err) {
		log_error(SUB, "%s", msg);
		goto err_free;
	}
	p->want = want_of(fields);
	err = collector__bpf_start(samples_bpf, &p->skel, &samples_bpf_life, p, msg, sizeof(msg));
	if (err) {
		p->skel = NULL;		/* destroyed by collector__bpf_start */
		log_error(SUB, "%s", msg);
		goto err_free;
	}
	err = attach_perf(p);
	if (err)
		goto err_free;
	c->priv = p;
	c->source = "cpu-clock perf event at 99 Hz per CPU; vCPU from tp_btf kvm_entry/kvm_exit/kvm_emulate_insn";
	return 0;
err_free:
	priv_free(p);
	return err;
}

static void samples_stop(struct collector *c)
{
	priv_free(c->priv);
	c->priv = NULL;
}

/* The key's fields are chosen in the kernel at run time (samples_want) and
 * each key records its mask: no reload, so no undrained second is lost. */
static int samples_reconfigure(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct samples_priv *p = c->priv;

	if (!p)
		return -EINVAL;
	p->want = want_of(fields);
	p->skel->bss->samples_want = p->want;
	return 0;
}

static int emit_one(const void *k, const uint64_t *vals, void *ctx)
{
	const struct samples_key *key = k;
	struct drain_emit *e = ctx;
	struct record rec;
	char vm[VM_NAME_MAX], vcpu[16], mmuctx[24];
	int idx = -1, err;

	if (!vals[0])
		return 0;
	memset(&rec, 0, sizeof(rec));
	rec.metric = METRIC_VM_SAMPLES;
	rec.time = (int64_t)key->sec - e->env->tai_offset;
	rec.value = vals[0];
	rec.str[F_HOSTNAME] = e->env->hostname;
	if (key->want & (SAMPLES_WANT_VM | SAMPLES_WANT_VCPU)) {
		if (e->env->vms)
			rec.str[F_VM] = vmcache__vm_name(e->env->vms, (pid_t)key->tgid, vm, sizeof(vm));
		else
			rec.str[F_VM] = (snprintf(vm, sizeof(vm), "pid:%u", key->tgid), vm);
	}
	if (key->want & SAMPLES_WANT_VCPU) {
		/* discovery's index is the VMM's; the kernel's is the fallback */
		if (e->env->vms)
			idx = vmcache__vcpu(e->env->vms, (pid_t)key->tgid, (pid_t)key->tid);
		if (idx < 0)
			idx = key->idx;
		if (idx >= 0) {
			snprintf(vcpu, sizeof(vcpu), "%d", idx);
			rec.str[F_SAMPLES_VCPU] = vcpu;
		}
	}
	if (key->want & SAMPLES_WANT_MMUCTX) {
		if (key->cr3 == SAMPLES_CR3_UNAVAILABLE)
			snprintf(mmuctx, sizeof(mmuctx), "unavailable");
		else
			snprintf(mmuctx, sizeof(mmuctx), "0x%llx", (unsigned long long)key->cr3);
		rec.str[F_SAMPLES_MMUCTX] = mmuctx;
	}
	rec.num[F_SAMPLES_SUBSECOND] = key->subsec;
	err = drain_emit__record(e, &rec);
	if (err)
		return err;
	return 0;
}

static int samples_drain(struct collector *c, int64_t before, const struct collector_env *env,
			 record_sink_fn sink, void *ctx)
{
	struct samples_priv *p = c->priv;
	struct drain_emit e = { p, env, sink, ctx, 0 };

	if (!p)
		return -EINVAL;
	/* new VMs, new vCPU threads, exited ones: about once a second */
	if (env->vms && clock__ms_since(&p->last_sync) >= 900 && !vmcache__refresh(env->vms))
		sync_threads(p, vmcache__list(env->vms));
	return collector__drain_records(bpf_map__fd(p->skel->maps.samples), sizeof(struct samples_key), 1,
					before, &e, emit_one);
}

static uint64_t samples_drops(struct collector *c)
{
	struct samples_priv *p = c->priv;

	return p ? collector__percpu_counter(bpf_map__fd(p->skel->maps.drops)) : 0;
}

const struct collector_ops collector_samples_ops = {
	.name = "samples",
	.uses_bpf = 1,
	.metrics = 1u << METRIC_VM_SAMPLES,
	.start = samples_start,
	.reconfigure = samples_reconfigure,
	.drain = samples_drain,
	.stop = samples_stop,
	.drops = samples_drops,
};
