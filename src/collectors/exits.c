/* vm.exits collector: loads bpf/exits.bpf.c, drains it once per second. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "collectors/collector.h"
#include "collectors/exit_reasons.h"
#include "common/log.h"
#include "exit_logic_user.h"
#include "exits.skel.h"

struct exits_priv {
	struct exits_bpf *skel;
	uint64_t drops_base;
	int64_t final_until;	/* unix: every second before it is final */
};

static void set_config(struct exits_bpf *skel, const uint64_t *fields)
{
	uint64_t f = fields[METRIC_VM_EXITS];

	skel->bss->exits_cfg.want_thread = !!(f & FIELD_BIT(F_EXITS_VCPU));
	skel->bss->exits_cfg.want_reason =
		!!(f & (FIELD_BIT(F_EXITS_REASON) | FIELD_BIT(F_EXITS_CLASS)));
	skel->bss->exits_cfg.want_latency = !!(f & FIELD_BIT(F_EXITS_LATENCY));
	skel->bss->exits_cfg.want_subsecond = !!(f & FIELD_BIT(F_EXITS_SUBSECOND));
}

static int exits_before_attach(void *skel, void *ctx)
{
	set_config(skel, ctx);
	return 0;
}

static const struct collector_bpf exits_bpf_life = {
	.what = "vm.exits",
	.attach_hint = "(is KVM loaded and tracefs mounted at /sys/kernel/tracing?)",
	.before_attach = exits_before_attach,
};

/* On success c->priv owns the loaded skeleton until stop(). */
static int exits_start(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct exits_priv *p = calloc(1, sizeof(*p));
	char msg[256];
	int err;

	if (!p)
		return -ENOMEM;
	err = collector__bpf_start(exits_bpf, &p->skel, &exits_bpf_life, (void *)fields, msg,
				   sizeof(msg));
	if (err) {
		log_error("collector", "%s", msg);
		free(p);
		return err;
	}
	c->priv = p;
	c->source = "kvm_exit/kvm_entry where they fire, else kvm_pio, kvm_mmio, kvm_vcpu_wakeup, "
		    "kvm_userspace_exit";
	return 0;
}

static int exits_reconfigure(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct exits_priv *p = c->priv;

	set_config(p->skel, fields);
	return 0;
}

static int exits_entry(const void *key, const uint64_t *vals, void *ctx)
{
	const struct exits_key *k = key;
	struct drain_emit *e = ctx;
	char vm[VM_NAME_MAX + 16], vcpu[16], reason[48];
	struct record rec = { .metric = METRIC_VM_EXITS, .value = vals[0] };

	rec.time = (int64_t)k->sec - e->env->tai_offset;
	rec.str[F_HOSTNAME] = e->env->hostname;
	rec.str[F_VM] = vmcache__vm_name(e->env->vms, (pid_t)k->tgid, vm, sizeof(vm));
	rec.str[F_EXITS_VCPU] = collector__vcpu_label(e->env, k->tgid, k->tid, k->vcpu, vcpu,
						     sizeof(vcpu));
	rec.str[F_EXITS_REASON] = exit_reason__name(k->isa, k->reason, reason, sizeof(reason));
	rec.str[F_EXITS_CLASS] = exit_class__name(k->class);
	if (k->latency == EXIT_LATENCY_UNKNOWN)
		rec.num_absent |= 1u << F_EXITS_LATENCY;
	else
		rec.num[F_EXITS_LATENCY] = k->latency;
	rec.num[F_EXITS_SUBSECOND] = k->subsecond;
	return drain_emit__record(e, &rec);
}

static int exits_drain(struct collector *c, int64_t before, const struct collector_env *env,
		       record_sink_fn sink, void *ctx)
{
	struct exits_priv *p = c->priv;
	struct drain_emit e = { p, env, sink, ctx, 0 };
	int64_t open = collector__oldest_open_tai(bpf_map__fd(p->skel->maps.exits_open)), final_tai;

	/* A second with an exit still open stays open (up to the cap): the
	 * exit is booked in it when it ends, and a later drain takes it. The
	 * kernel's bound is set before the walk: from here on an exit of a
	 * final second completing late is booked in its completion second,
	 * which this drain does not take. */
	if (open != FINAL_NONE_OPEN)
		open -= env->tai_offset;
	p->final_until = finality__advance(p->final_until, before, open,
					   COLLECTOR_FINAL_WAIT_MAX_S);
	final_tai = p->final_until + env->tai_offset;
	if (final_tai > 0 && final_tai <= UINT32_MAX &&
	    (uint32_t)final_tai > p->skel->bss->exits_cfg.final_before)
		p->skel->bss->exits_cfg.final_before = (uint32_t)final_tai;
	return collector__drain_records(bpf_map__fd(p->skel->maps.exits), sizeof(struct exits_key),
					1, before, &e, exits_entry);
}

static int64_t exits_final_until(struct collector *c)
{
	struct exits_priv *p = c->priv;

	return p->final_until;
}

static uint64_t exits_drops(struct collector *c)
{
	struct exits_priv *p = c->priv;

	return collector__percpu_counter(bpf_map__fd(p->skel->maps.drops));
}

static void exits_stop(struct collector *c)
{
	struct exits_priv *p = c->priv;

	if (!p)
		return;
	collector__bpf_stop(exits_bpf, &p->skel);
	free(p);
	c->priv = NULL;
}

const struct collector_ops collector_exits_ops = {
	.name = "exits",
	.uses_bpf = 1,
	.metrics = 1u << METRIC_VM_EXITS,
	.start = exits_start,
	.reconfigure = exits_reconfigure,
	.drain = exits_drain,
	.stop = exits_stop,
	.drops = exits_drops,
	.final_until = exits_final_until,
};
