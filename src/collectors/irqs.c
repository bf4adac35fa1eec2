/* vm.irqs collector: loads bpf/irqs.bpf.c, drains it once per second. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "collectors/collector.h"
#include "collectors/exit_reasons.h"
#include "common/log.h"
#include "exit_logic_user.h"
#include "irqs.skel.h"

struct irqs_priv {
	struct irqs_bpf *skel;
};

/* Hardware virtualization (VMX/SVM) fires kvm_inj_virq at every injection:
 * knowing it before attaching keeps even a VM's first interrupt from being
 * counted at the irqchip as well (bpf/irq_rules.h). */
static int host_injects_in_hardware(void)
{
	return access("/sys/module/kvm_intel", F_OK) == 0 || access("/sys/module/kvm_amd", F_OK) == 0;
}

static void set_config(struct irqs_bpf *skel, const uint64_t *fields)
{
	uint64_t f = fields[METRIC_VM_IRQS];

	skel->bss->irqs_cfg.want_thread = !!(f & FIELD_BIT(F_IRQS_VCPU));
	skel->bss->irqs_cfg.want_vector = !!(f & FIELD_BIT(F_IRQS_VECTOR));
	skel->bss->irqs_cfg.want_source = !!(f & FIELD_BIT(F_IRQS_SOURCE));
	skel->bss->irqs_cfg.want_subsecond = !!(f & FIELD_BIT(F_IRQS_SUBSECOND));
}

static int irqs_before_load(void *skel, void *ctx)
{
	struct irqs_bpf *s = skel;
	const uint64_t *fields = ctx;

	/* The PIC base is only needed to name PIC vectors. */
	if (!(fields[METRIC_VM_IRQS] & FIELD_BIT(F_IRQS_VECTOR)))
		bpf_program__set_autoload(s->progs.irqs_learn_pic, false);
	return 0;
}

static int irqs_before_attach(void *skel, void *ctx)
{
	struct irqs_bpf *s = skel;

	set_config(s, ctx);
	s->bss->hw_irqs_host = host_injects_in_hardware();
	return 0;
}

static const struct collector_bpf irqs_bpf_life = {
	.what = "vm.irqs",
	.attach_hint = "(is KVM loaded and tracefs mounted at /sys/kernel/tracing?)",
	.before_load = irqs_before_load,
	.before_attach = irqs_before_attach,
};

/* On success c->priv owns the loaded skeleton until stop(). */
static int irqs_start(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct irqs_priv *p = calloc(1, sizeof(*p));
	char msg[256];
	int err;

	if (!p)
		return -ENOMEM;
	err = collector__bpf_start(irqs_bpf, &p->skel, &irqs_bpf_life, (void *)fields, msg,
				   sizeof(msg));
	if (err) {
		log_error("collector", "%s", msg);
		free(p);
		return err;
	}
	c->priv = p;
	c->source = p->skel->bss->hw_irqs_host
		? "kvm_inj_virq (hardware virtualization)"
		: "kvm_inj_virq where it fires, else kvm_set_irq, kvm_pic_set_irq, "
		  "kvm_ioapic_set_irq, kvm_msi_set_irq (KVM's kernel workers booked to their VM)";
	return 0;
}

static int irqs_reconfigure(struct collector *c, const uint64_t fields[METRIC__COUNT])
{
	struct irqs_priv *p = c->priv;

	/* learning PIC bases needs a reload; only the key shape changes here */
	set_config(p->skel, fields);
	return 0;
}

static int irqs_entry(const void *key, const uint64_t *vals, void *ctx)
{
	const struct irqs_key *k = key;
	struct drain_emit *e = ctx;
	char vm[VM_NAME_MAX + 16], vcpu[16], vector[16];
	struct record rec = { .metric = METRIC_VM_IRQS, .value = vals[0] };

	rec.time = (int64_t)k->sec - e->env->tai_offset;
	rec.str[F_HOSTNAME] = e->env->hostname;
	rec.str[F_VM] = vmcache__vm_name(e->env->vms, (pid_t)k->tgid, vm, sizeof(vm));
	rec.str[F_IRQS_VCPU] = collector__vcpu_label(e->env, k->tgid, k->tid, k->vcpu, vcpu,
						    sizeof(vcpu));
	if (k->vector == IRQ_VECTOR_UNKNOWN)
		snprintf(vector, sizeof(vector), "unknown");
	else
		snprintf(vector, sizeof(vector), "0x%02x", k->vector);
	rec.str[F_IRQS_VECTOR] = vector;
	rec.str[F_IRQS_SOURCE] = irq_source__name(k->source);
	rec.num[F_IRQS_SUBSECOND] = k->subsecond;
	return drain_emit__record(e, &rec);
}

static int irqs_drain(struct collector *c, int64_t before, const struct collector_env *env,
		      record_sink_fn sink, void *ctx)
{
	struct irqs_priv *p = c->priv;
	struct drain_emit e = { p, env, sink, ctx, 0 };

	return collector__drain_records(bpf_map__fd(p->skel->maps.irqs), sizeof(struct irqs_key),
					1, before, &e, irqs_entry);
}

static uint64_t irqs_drops(struct collector *c)
{
	struct irqs_priv *p = c->priv;

	return collector__percpu_counter(bpf_map__fd(p->skel->maps.drops));
}

static void irqs_stop(struct collector *c)
{
	struct irqs_priv *p = c->priv;

	if (!p)
		return;
	collector__bpf_stop(irqs_bpf, &p->skel);
	free(p);
	c->priv = NULL;
}

const struct collector_ops collector_irqs_ops = {
	.name = "irqs",
	.uses_bpf = 1,
	.metrics = 1u << METRIC_VM_IRQS,
	.start = irqs_start,
	.reconfigure = irqs_reconfigure,
	.drain = irqs_drain,
	.stop = irqs_stop,
	.drops = irqs_drops,
};
