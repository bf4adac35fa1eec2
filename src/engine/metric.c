/* The metric catalogue: static tables, and the CA catalogue built from them. */
#include <errno.h>
#include <string.h>

#include "engine/metric.h"

#define DISCRETE(n, l) \
	{ .name = n, .label = l, .ca_type = "string", .unit = "", \
	  .type = FIELD_DISCRETE, .bucketing = BUCKET_NONE }
#define LLQ(n, l, t, u, p) \
	{ .name = n, .label = l, .ca_type = t, .unit = u, \
	  .type = FIELD_NUMERIC, .bucketing = BUCKET_LLQ, .llq = p }

static const struct field_desc f_hostname = DISCRETE("hostname", "server hostname");
static const struct field_desc f_vm = DISCRETE("vm", "VM name");
static const struct field_desc f_uuid = DISCRETE("uuid", "VM UUID (QEMU -uuid)");
static const struct field_desc f_vmid = DISCRETE("vmid", "VM id (Proxmox VMID)");
static const struct field_desc f_vcpu = DISCRETE("vcpu", "vCPU index");
static const struct field_desc f_reason = DISCRETE("reason", "exit reason");
static const struct field_desc f_class = DISCRETE("class", "exit class");
static const struct field_desc f_vector = DISCRETE("vector", "interrupt vector");
static const struct field_desc f_source = DISCRETE("source", "interrupt source");
static const struct field_desc f_disk = DISCRETE("disk", "virtual disk");
static const struct field_desc f_optype = DISCRETE("optype", "operation type");
static const struct field_desc f_errno = DISCRETE("errno", "error number");
static const struct field_desc f_nic = DISCRETE("nic", "virtual NIC");
static const struct field_desc f_direction = DISCRETE("direction", "direction (guest's view)");
static const struct field_desc f_mmuctx = DISCRETE("mmuctx", "guest MMU context (CR3)");
static const struct field_desc f_latency = LLQ("latency", "latency", "time", "ns", LLQ_LATENCY);
static const struct field_desc f_size = LLQ("size", "size", "size", "bytes", LLQ_SIZE);
static const struct field_desc f_offset = LLQ("offset", "offset", "size", "bytes", LLQ_OFFSET);
static const struct field_desc f_subsecond = {
	.name = "subsecond", .label = "subsecond offset", .ca_type = "subsecond",
	.unit = "ms", .type = FIELD_NUMERIC, .bucketing = BUCKET_LINEAR,
	.linear_width = SUBSECOND_BUCKET_MS, .linear_max = 1000,
};

/* Field order is a contract with the collectors: never reorder, only append. */
static const struct metric_desc metrics[METRIC__COUNT] = {
	[METRIC_VM_EXITS] = {
		METRIC_VM_EXITS, "vm", "exits", "vm.exits", "VM exits", "exits", 9,
		{ &f_hostname, &f_vm, &f_vcpu, &f_reason, &f_class, &f_latency, &f_subsecond,
		  &f_uuid, &f_vmid },
	},
	[METRIC_VM_IRQS] = {
		METRIC_VM_IRQS, "vm", "irqs", "vm.irqs", "interrupts delivered into guests",
		"interrupts", 8,
		{ &f_hostname, &f_vm, &f_vcpu, &f_vector, &f_source, &f_subsecond, &f_uuid,
		  &f_vmid },
	},
	[METRIC_VM_DISK_OPS] = {
		METRIC_VM_DISK_OPS, "vm", "disk_ops", "vm.disk_ops", "virtual disk operations",
		"operations", 11,
		{ &f_hostname, &f_vm, &f_disk, &f_optype, &f_errno, &f_latency, &f_size,
		  &f_offset, &f_subsecond, &f_uuid, &f_vmid },
	},
	[METRIC_VM_DISK_BYTES] = {
		METRIC_VM_DISK_BYTES, "vm", "disk_bytes", "vm.disk_bytes",
		"bytes moved by virtual disk operations", "bytes", 6,
		{ &f_hostname, &f_vm, &f_disk, &f_optype, &f_uuid, &f_vmid },
	},
	[METRIC_VM_NIC_BYTES] = {
		METRIC_VM_NIC_BYTES, "vm", "nic_bytes", "vm.nic_bytes", "virtual NIC bytes",
		"bytes", 6,
		{ &f_hostname, &f_vm, &f_nic, &f_direction, &f_uuid, &f_vmid },
	},
	[METRIC_VM_NIC_PACKETS] = {
		METRIC_VM_NIC_PACKETS, "vm", "nic_packets", "vm.nic_packets",
		"virtual NIC packets", "packets", 6,
		{ &f_hostname, &f_vm, &f_nic, &f_direction, &f_uuid, &f_vmid },
	},
	[METRIC_VM_SAMPLES] = {
		METRIC_VM_SAMPLES, "vm", "samples", "vm.samples", "vCPU samples at 99 Hz",
		"samples", 7,
		{ &f_hostname, &f_vm, &f_vcpu, &f_mmuctx, &f_subsecond, &f_uuid, &f_vmid },
	},
};

const struct metric_desc *metric__get(enum metric_id id)
{
	if ((unsigned int)id >= METRIC__COUNT)
		return NULL;
	return &metrics[id];
}

const struct metric_desc *metric__by_name(const char *name)
{
	unsigned int i;

	if (!name)
		return NULL;
	for (i = 0; i < METRIC__COUNT; i++)
		if (!strcmp(metrics[i].name, name))
			return &metrics[i];
	return NULL;
}

const struct metric_desc *metric__by_module_stat(const char *module, const char *stat)
{
	unsigned int i;

	if (!module || !stat)
		return NULL;
	for (i = 0; i < METRIC__COUNT; i++)
		if (!strcmp(metrics[i].module, module) && !strcmp(metrics[i].stat, stat))
			return &metrics[i];
	return NULL;
}

int metric__field_index(const struct metric_desc *m, const char *field)
{
	unsigned int i;

	if (!m || !field)
		return -ENOENT;
	for (i = 0; i < m->nfields; i++)
		if (!strcmp(m->fields[i]->name, field))
			return (int)i;
	return -ENOENT;
}

uint64_t metric__bucket(const struct field_desc *f, uint64_t v, uint64_t *hi)
{
	uint64_t lo;

	switch (f->bucketing) {
	case BUCKET_LLQ:
		return llq__bucket(v, f->llq.base, f->llq.lo_mag, f->llq.hi_mag,
				   f->llq.nsteps, (unsigned long long *)hi);
	case BUCKET_LINEAR:
		if (v >= f->linear_max)
			v = f->linear_max - 1;
		lo = v - v % f->linear_width;
		*hi = lo + f->linear_width;
		return lo;
	case BUCKET_NONE:
	default:
		*hi = v + 1;
		return v;
	}
}

/* The log-linear layout, walked order by order exactly as llq__bucket()
 * does, so the index and the bucket bounds can never disagree. */
static uint64_t llq_pow(const struct llq_params *p, unsigned int mag)
{
	uint64_t pow = 1;
	unsigned int m;

	for (m = 0; m < BUCKET_MAX_MAG && m < mag; m++)
		pow *= p->base;
	return pow;
}

static uint64_t llq_step(const struct llq_params *p, uint64_t next)
{
	uint64_t step = next / p->nsteps;

	return step < 1 ? 1 : step;
}

unsigned int metric__nbuckets(const struct field_desc *f)
{
	uint64_t pow, next, step;
	unsigned int m, n = 2;	/* underflow + overflow */

	switch (f->bucketing) {
	case BUCKET_LLQ:
		pow = llq_pow(&f->llq, f->llq.lo_mag);
		for (m = f->llq.lo_mag; m < BUCKET_MAX_MAG && m < f->llq.hi_mag; m++) {
			next = pow * f->llq.base;
			step = llq_step(&f->llq, next);
			n += (unsigned int)((next - pow + step - 1) / step);
			pow = next;
		}
		return n;
	case BUCKET_LINEAR:
		return (f->linear_max + f->linear_width - 1) / f->linear_width;
	default:
		return 0;
	}
}

int metric__bucket_index(const struct field_desc *f, uint64_t v)
{
	uint64_t pow, next, step;
	unsigned int m, idx = 1;

	switch (f->bucketing) {
	case BUCKET_LLQ:
		pow = llq_pow(&f->llq, f->llq.lo_mag);
		if (v < pow)
			return 0;
		for (m = f->llq.lo_mag; m < BUCKET_MAX_MAG && m < f->llq.hi_mag; m++) {
			next = pow * f->llq.base;
			step = llq_step(&f->llq, next);
			if (v < next)
				return (int)(idx + (v - pow) / step);
			idx += (unsigned int)((next - pow + step - 1) / step);
			pow = next;
		}
		return (int)idx;
	case BUCKET_LINEAR:
		if (v >= f->linear_max)
			v = f->linear_max - 1;
		return (int)(v / f->linear_width);
	default:
		return -EINVAL;
	}
}

uint64_t metric__bucket_lo(const struct field_desc *f, unsigned int idx, uint64_t *hi)
{
	uint64_t pow, next, step, n;
	unsigned int m;

	switch (f->bucketing) {
	case BUCKET_LLQ:
		pow = llq_pow(&f->llq, f->llq.lo_mag);
		if (idx == 0) {
			*hi = pow;
			return 0;
		}
		idx--;
		for (m = f->llq.lo_mag; m < BUCKET_MAX_MAG && m < f->llq.hi_mag; m++) {
			next = pow * f->llq.base;
			step = llq_step(&f->llq, next);
			n = (next - pow + step - 1) / step;
			if (idx < n) {
				uint64_t lo = pow + idx * step;

				*hi = lo + step < next ? lo + step : next;
				return lo;
			}
			idx -= (unsigned int)n;
			pow = next;
		}
		*hi = UINT64_MAX;
		return pow;
	case BUCKET_LINEAR:
		*hi = (uint64_t)(idx + 1) * f->linear_width;
		return (uint64_t)idx * f->linear_width;
	default:
		*hi = idx + 1;
		return idx;
	}
}

uint64_t metric__json_hi(const struct field_desc *f, uint64_t lo, uint64_t hi)
{
	if (hi != UINT64_MAX)
		return hi;
	if (f->bucketing == BUCKET_LLQ && lo <= INT64_MAX / f->llq.base)
		return lo * f->llq.base;
	return INT64_MAX;
}

static json_t *field_json(const struct field_desc *f)
{
	json_t *o, *b = NULL;

	o = json_pack("{s:s, s:s}", "label", f->label, "type", f->ca_type);
	if (!o)
		return NULL;
	if (f->type == FIELD_NUMERIC) {
		if (f->bucketing == BUCKET_LLQ)
			b = json_pack("{s:s, s:i, s:i, s:i, s:i}", "method", "log-linear",
				      "base", (json_int_t)f->llq.base,
				      "min_order", (json_int_t)f->llq.lo_mag,
				      "max_order", (json_int_t)f->llq.hi_mag,
				      "steps", (json_int_t)f->llq.nsteps);
		else
			b = json_pack("{s:s, s:i, s:i, s:i}", "method", "linear", "min", 0,
				      "max", (json_int_t)f->linear_max,
				      "width", (json_int_t)f->linear_width);
		if (!b || json_object_set_new(o, "unit", json_string(f->unit)) ||
		    json_object_set_new(o, "bucketing", b)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* Types follow CA's catalogue: arity, the unit a value is in, and how to
 * scale it for display (value * base^power is in `unit`). */
static json_t *types_json(void)
{
	return json_pack("{s:{s:s, s:s}, s:{s:s, s:s, s:s, s:i, s:i}, "
			 "s:{s:s, s:s, s:s, s:i, s:i}, s:{s:s, s:s, s:s, s:i, s:i}, "
			 "s:{s:s, s:s}}",
			 "string", "arity", "discrete", "unit", "",
			 "time", "arity", "numeric", "unit", "seconds", "abbr", "s",
			 "base", 10, "power", -9,
			 "subsecond", "arity", "numeric", "unit", "seconds", "abbr", "s",
			 "base", 10, "power", -3,
			 "size", "arity", "numeric", "unit", "bytes", "abbr", "B",
			 "base", 2, "power", 0,
			 "number", "arity", "numeric", "unit", "");
}

/* Returns a new reference owned by the caller. */
json_t *metric__catalogue_json(int hide_hostname)
{
	json_t *cat, *mets, *fields, *m, *names;
	unsigned int i, j;

	cat = json_pack("{s:{s:{s:s}}, s:[], s:{}, s:o, s:{}}",
			"modules", "vm", "label", "Virtual Machines",
			"metrics", "fields", "types", types_json(), "transformations");
	if (!cat)
		return NULL;
	mets = json_object_get(cat, "metrics");
	fields = json_object_get(cat, "fields");
	for (i = 0; i < METRIC__COUNT; i++) {
		const struct metric_desc *md = &metrics[i];

		m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[]}", "module", md->module,
			      "stat", md->stat, "label", md->label, "interval", "interval",
			      "unit", md->unit, "fields");
		if (!m || json_array_append_new(mets, m))
			goto err;
		names = json_object_get(m, "fields");
		for (j = 0; j < md->nfields; j++) {
			const struct field_desc *f = md->fields[j];

			if (hide_hostname && f == &f_hostname)
				continue;
			if (json_array_append_new(names, json_string(f->name)))
				goto err;
			if (!json_object_get(fields, f->name) &&
			    json_object_set_new(fields, f->name, field_json(f)))
				goto err;
		}
	}
	return cat;
err:
	json_decref(cat);
	return NULL;
}
