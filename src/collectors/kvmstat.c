/* Loader and drain for bpf/kvmstat.bpf.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collectors/collector.h"
#include "collectors/kvmstat.h"
#include "kvmstat.skel.h"

struct kvmstat {
	struct kvmstat_bpf *skel;
	int64_t tai_offset;
	int64_t final_until;	/* unix: every second before it is final */
};

/* emulated instructions are counted per vCPU index, read unguarded */
static const struct collector_guard kvmstat_guards[] = {
	{ "btf_kvm_emulate_insn", "kvm_vcpu", "vcpu_idx" },
	{ NULL, NULL, NULL },
};

static const struct collector_bpf kvmstat_bpf_life = {
	.what = "kvmscope stat",
	.guards = kvmstat_guards,
	.attach_hint = "(is tracefs mounted ('mount -t tracefs nodev /sys/kernel/tracing') and KVM "
		       "loaded?)",
};

/* Caller owns *out. */
int kvmstat__open(struct kvmstat **out, char *err, size_t errlen)
{
	struct kvmstat *ks = NULL;
	int rc;

	rc = collector__check_bpf(err, errlen);
	if (rc)
		return rc;
	collector__quiet_libbpf();
	ks = calloc(1, sizeof(*ks));
	if (!ks)
		return -ENOMEM;
	ks->tai_offset = collector__tai_offset();
	rc = collector__bpf_start(kvmstat_bpf, &ks->skel, &kvmstat_bpf_life, NULL, err, errlen);
	if (rc) {
		free(ks);
		return rc;
	}
	*out = ks;
	return 0;
}

struct drain_ctx {
	struct kvmstat *ks;
	kvmstat_entry_fn fn;
	void *ctx;
};

static int drain_one(const void *key, const uint64_t *vals, void *ctx)
{
	const struct kvmstat_key *k = key;
	struct drain_ctx *dc = ctx;
	struct kvmstat_entry e = {
		.time = (int64_t)k->sec - dc->ks->tai_offset,
		.pid = (pid_t)k->tgid,
		.tid = (pid_t)k->tid,
		.vcpu = k->vcpu,
	};

	memcpy(e.v, vals, sizeof(e.v));
	return dc->fn(&e, dc->ctx);
}

int kvmstat__drain(struct kvmstat *ks, int64_t before, kvmstat_entry_fn fn, void *ctx)
{
	struct drain_ctx dc = { ks, fn, ctx };
	int64_t open = collector__oldest_open_tai(bpf_map__fd(ks->skel->maps.exits_open));
	int64_t cap = time(NULL) - COLLECTOR_FINAL_WAIT_MAX_S, final_tai;

	/* as the vm.exits collector (exits.c), but `stat` drains the same
	 * interval again while it waits: the cap counts from the wall clock */
	if (open != FINAL_NONE_OPEN)
		open -= ks->tai_offset;
	if (open < cap)
		open = cap;
	ks->final_until = finality__advance(ks->final_until, before, open,
					    COLLECTOR_FINAL_WAIT_MAX_S);
	final_tai = ks->final_until + ks->tai_offset;
	if (final_tai > 0 && final_tai <= UINT32_MAX &&
	    (uint32_t)final_tai > ks->skel->bss->kvmstat_final_before)
		ks->skel->bss->kvmstat_final_before = (uint32_t)final_tai;

	return collector__drain_percpu_hash(bpf_map__fd(ks->skel->maps.counters),
					    sizeof(struct kvmstat_key), KVMSTAT__N,
					    (uint32_t)(before + ks->tai_offset), drain_one, &dc);
}

int64_t kvmstat__final_until(const struct kvmstat *ks)
{
	return ks->final_until;
}

uint64_t kvmstat__drops(struct kvmstat *ks)
{
	return collector__percpu_counter(bpf_map__fd(ks->skel->maps.drops));
}

void kvmstat__close(struct kvmstat *ks)
{
	if (!ks)
		return;
	collector__bpf_stop(kvmstat_bpf, &ks->skel);
	free(ks);
}
