/* Engine unit tests: catalogue and bucketing, predicates, instrumentation
 * config, slot ring, value shapes, value merging, persistence.
 * Everything here runs on synthetic records, so it covers both exit paths
 * (kvm_exit on VMX/SVM hosts and the userspace-exit fallback) alike. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/instr.h"
#include "engine/merge.h"
#include "engine/metric.h"
#include "engine/predicate.h"

#define T0 1700000000LL

static int64_t fixed_now(void *ctx)
{
	return *(int64_t *)ctx;
}

static json_t *J(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, JSON_DECODE_ANY, &e);

	if (!j)
		fail_msg("bad test JSON %s: %s", s, e.text);
	return j;
}

static void assert_json_eq(json_t *got, const char *want)
{
	json_t *w = J(want);

	if (!got || !json_equal(got, w)) {
		char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

		print_error("got  %s\nwant %s\n", g ? g : "NULL", want);
		free(g);
		json_decref(w);
		fail();
	}
	json_decref(w);
}

static struct instr *mk(const char *spec, int64_t *now)
{
	char err[256] = "";
	struct instr *in = NULL;
	json_t *j = J(spec);
	int ret = instr__new(j, &in, err, sizeof(err));

	json_decref(j);
	if (ret)
		fail_msg("instr__new(%s) = %d: %s", spec, ret, err);
	if (now)
		instr__set_clock(in, fixed_now, now);
	return in;
}

static struct record exit_rec(int64_t t, uint64_t n, const char *vm, const char *vcpu,
			      const char *reason, uint64_t latency, uint64_t subsec)
{
	struct record r = { .metric = METRIC_VM_EXITS, .time = t, .value = n };

	r.str[0] = "host1";
	r.str[1] = vm;
	r.str[2] = vcpu;
	r.str[3] = reason;
	r.str[4] = "iox";
	r.num[5] = latency;
	r.num[6] = subsec;
	return r;
}

static void ingest(struct instr *in, struct record r)
{
	assert_int_equal(instr__ingest(in, &r), 0);
}

/* ---- catalogue and bucketing ----------------------------------------- */

static void test_catalogue_lookup(void **state)
{
	const struct metric_desc *m = metric__by_name("vm.exits");

	assert_non_null(m);
	assert_ptr_equal(m, metric__by_module_stat("vm", "exits"));
	assert_ptr_equal(m, metric__get(METRIC_VM_EXITS));
	assert_null(metric__by_name("vm.nope"));
	assert_null(metric__get(METRIC__COUNT));
	assert_int_equal(metric__field_index(m, "hostname"), 0);
	assert_int_equal(metric__field_index(m, "class"), 4);
	assert_int_equal(metric__field_index(m, "latency"), 5);
	assert_int_equal(metric__field_index(m, "subsecond"), 6);
	assert_int_equal(metric__field_index(m, "size"), -ENOENT);
	m = metric__get(METRIC_VM_DISK_OPS);
	assert_int_equal(metric__field_index(m, "offset"), 7);
	assert_int_equal(metric__field_index(m, "subsecond"), 8);
	for (int i = 0; i < METRIC__COUNT; i++) {
		m = metric__get(i);
		assert_int_equal(m->id, i);
		assert_string_equal(m->fields[0]->name, "hostname");
		assert_true(m->nfields <= RECORD_MAX_FIELDS);
	}
}

static void test_catalogue_json(void **state)
{
	json_t *c = metric__catalogue_json(0), *c2 = metric__catalogue_json(1), *m;
	size_t i;

	assert_non_null(c);
	assert_int_equal(json_array_size(json_object_get(c, "metrics")), METRIC__COUNT);
	json_array_foreach(json_object_get(c, "metrics"), i, m) {
		const struct metric_desc *md = metric__get((enum metric_id)i);

		assert_string_equal(json_string_value(json_object_get(m, "stat")), md->stat);
		assert_string_equal(json_string_value(json_object_get(m, "unit")), md->unit);
		assert_int_equal(json_array_size(json_object_get(m, "fields")), md->nfields);
	}
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(json_object_get(c, "fields"), "latency"), "type")), "time");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
		json_object_get(json_object_get(c, "fields"), "latency"), "bucketing"), "steps")), 20);
	assert_non_null(json_object_get(json_object_get(c, "types"), "size"));
	assert_non_null(json_object_get(json_object_get(c, "modules"), "vm"));
	assert_non_null(json_object_get(json_object_get(c, "fields"), "hostname"));
	assert_null(json_object_get(json_object_get(c2, "fields"), "hostname"));
	m = json_array_get(json_object_get(c2, "metrics"), 0);
	assert_int_equal(json_array_size(json_object_get(m, "fields")),
			 metric__get(METRIC_VM_EXITS)->nfields - 1);
	json_decref(c);
	json_decref(c2);
}

static uint64_t ipow(uint64_t b, unsigned int e)
{
	uint64_t p = 1;

	while (e--)
		p *= b;
	return p;
}

static void check_bucket(const struct field_desc *f, uint64_t v, uint64_t lo, uint64_t hi)
{
	uint64_t h, h2, l;
	int idx;

	l = metric__bucket(f, v, &h);
	if (l != lo || h != hi)
		fail_msg("%s: v=%llu -> [%llu,%llu), want [%llu,%llu)", f->name,
			 (unsigned long long)v, (unsigned long long)l, (unsigned long long)h,
			 (unsigned long long)lo, (unsigned long long)hi);
	idx = metric__bucket_index(f, v);
	assert_true(idx >= 0 && (unsigned int)idx < metric__nbuckets(f));
	assert_int_equal(metric__bucket_lo(f, (unsigned int)idx, &h2), lo);
	assert_int_equal(h2, hi);
}

static void llq_edges(const struct field_desc *f)
{
	const struct llq_params *p = &f->llq;
	uint64_t pow, next, step, prev_lo, h, lo;
	unsigned int m, i;

	pow = ipow(p->base, p->lo_mag);
	check_bucket(f, 0, 0, pow);
	if (pow > 1)
		check_bucket(f, pow - 1, 0, pow);
	for (m = p->lo_mag; m < p->hi_mag; m++) {
		next = pow * p->base;
		step = next / p->nsteps ? next / p->nsteps : 1;
		check_bucket(f, pow, pow, pow + step < next ? pow + step : next);
		check_bucket(f, pow + step - 1, pow, pow + step < next ? pow + step : next);
		if (pow + step < next)
			check_bucket(f, pow + step, pow + step,
				     pow + 2 * step < next ? pow + 2 * step : next);
		/* the last bucket of the order ends exactly at base^(m+1) */
		lo = metric__bucket(f, next - 1, &h);
		assert_int_equal(h, next);
		assert_true(lo >= pow && lo < next);
		pow = next;
	}
	check_bucket(f, pow - 1, metric__bucket(f, pow - 1, &h), pow);
	check_bucket(f, pow, pow, UINT64_MAX);
	check_bucket(f, UINT64_MAX, pow, UINT64_MAX);
	assert_int_equal(metric__json_hi(f, pow, UINT64_MAX), pow * p->base);
	/* buckets tile the line: each hi is the next lo */
	prev_lo = metric__bucket_lo(f, 0, &h);
	assert_int_equal(prev_lo, 0);
	for (i = 1; i < metric__nbuckets(f); i++) {
		uint64_t ph = h;

		lo = metric__bucket_lo(f, i, &h);
		assert_int_equal(lo, ph);
		assert_true(lo > prev_lo);
		prev_lo = lo;
	}
	assert_int_equal(h, UINT64_MAX);
}

static void test_bucket_llq_edges(void **state)
{
	const struct metric_desc *d = metric__get(METRIC_VM_DISK_OPS);

	llq_edges(d->fields[metric__field_index(d, "latency")]);
	llq_edges(d->fields[metric__field_index(d, "size")]);
	llq_edges(d->fields[metric__field_index(d, "offset")]);
	/* spot values stated in the catalogue: latency 10..15 ns is the first step */
	check_bucket(d->fields[5], 10, 10, 15);
	check_bucket(d->fields[5], 9, 0, 10);
	check_bucket(d->fields[5], 1234567, 1000000, 1500000);
	/* size has 1-byte steps below 10 */
	check_bucket(d->fields[6], 7, 7, 8);
	check_bucket(d->fields[6], 0, 0, 1);
	assert_int_equal(metric__nbuckets(d->fields[5]), 1 + 9 * 18 + 1);
}

static void test_bucket_subsecond(void **state)
{
	const struct metric_desc *m = metric__get(METRIC_VM_EXITS);
	const struct field_desc *f = m->fields[6];

	check_bucket(f, 0, 0, 10);
	check_bucket(f, subsecond__bucket_ms(9999999), 0, 10);	/* 9.999 ms */
	check_bucket(f, 9, 0, 10);
	check_bucket(f, subsecond__bucket_ms(10000000), 10, 20);	/* 10 ms */
	check_bucket(f, 999, 990, 1000);
	check_bucket(f, subsecond__bucket_ms(999999999), 990, 1000);
	check_bucket(f, 5000, 990, 1000);	/* out of range clamps to the last */
	assert_int_equal(subsecond__bucket_ms(1500000000ULL), 990);
	assert_int_equal(metric__nbuckets(f), 100);
}

/* ---- predicates -------------------------------------------------------- */

static struct predicate *P(const char *s, const struct metric_desc *m)
{
	struct predicate *p = NULL;
	char err[256];
	json_t *j = J(s);

	if (predicate__parse(j, m, &p, err, sizeof(err)))
		fail_msg("predicate %s: %s", s, err);
	json_decref(j);
	return p;
}

static bool eval(const char *pred, struct record r)
{
	struct predicate *p = P(pred, metric__get(r.metric));
	bool b = predicate__eval(p, &r);

	predicate__free(p);
	return b;
}

static void test_predicate_ops(void **state)
{
	struct record r = exit_rec(T0, 1, "web1", "3", "IO_INSTRUCTION", 1500, 250);

	assert_true(eval("{}", r));
	assert_true(eval("{\"eq\": [\"vm\", \"web1\"]}", r));
	assert_false(eval("{\"eq\": [\"vm\", \"web2\"]}", r));
	assert_true(eval("{\"ne\": [\"vm\", \"web2\"]}", r));
	assert_false(eval("{\"ne\": [\"vm\", \"web1\"]}", r));
	assert_true(eval("{\"eq\": [\"vcpu\", 3]}", r));	/* number for a discrete field */
	assert_false(eval("{\"eq\": [\"vcpu\", 30]}", r));
	assert_true(eval("{\"eq\": [\"latency\", 1500]}", r));
	assert_true(eval("{\"ne\": [\"latency\", 1501]}", r));
	assert_true(eval("{\"lt\": [\"latency\", 1501]}", r));
	assert_false(eval("{\"lt\": [\"latency\", 1500]}", r));
	assert_true(eval("{\"le\": [\"latency\", 1500]}", r));
	assert_false(eval("{\"le\": [\"latency\", 1499]}", r));
	assert_true(eval("{\"gt\": [\"latency\", 1499]}", r));
	assert_false(eval("{\"gt\": [\"latency\", 1500]}", r));
	assert_true(eval("{\"ge\": [\"latency\", 1500]}", r));
	assert_false(eval("{\"ge\": [\"latency\", 1501]}", r));
	assert_true(eval("{\"gt\": [\"latency\", -5]}", r));
	assert_false(eval("{\"lt\": [\"latency\", -5]}", r));
	assert_true(eval("{\"lt\": [\"latency\", 1500.5]}", r));
	assert_true(eval("{\"and\": [{\"eq\": [\"vm\", \"web1\"]}, {\"ge\": [\"subsecond\", 250]}]}", r));
	assert_false(eval("{\"and\": [{\"eq\": [\"vm\", \"web1\"]}, {\"gt\": [\"subsecond\", 250]}]}", r));
	assert_true(eval("{\"or\": [{\"eq\": [\"vm\", \"x\"]}, {\"eq\": [\"reason\", \"IO_INSTRUCTION\"]}]}", r));
	assert_false(eval("{\"or\": [{\"eq\": [\"vm\", \"x\"]}, {\"eq\": [\"reason\", \"HLT\"]}]}", r));
	assert_true(eval("{\"or\": [{\"and\": [{\"eq\": [\"vm\", \"x\"]}]}, "
			 "{\"and\": [{\"or\": [{\"eq\": [\"vcpu\", \"3\"]}]}, {\"lt\": [\"latency\", 2000]}]}]}", r));
	r.str[1] = NULL;	/* unresolved VM: equals nothing */
	assert_false(eval("{\"eq\": [\"vm\", \"web1\"]}", r));
	assert_true(eval("{\"ne\": [\"vm\", \"web1\"]}", r));
}

static void test_predicate_string_form_and_fields(void **state)
{
	const struct metric_desc *m = metric__get(METRIC_VM_EXITS);
	struct predicate *p = NULL;
	char err[256];
	json_t *s = json_string("{\"and\": [{\"eq\": [\"vm\", \"a\"]}, {\"gt\": [\"latency\", 5]}]}");
	json_t *back;

	assert_int_equal(predicate__parse(s, m, &p, err, sizeof(err)), 0);
	assert_int_equal(predicate__fields_used(p), (1u << 1) | (1u << 5));
	assert_false(predicate__is_true(p));
	back = predicate__to_json(p);
	assert_json_eq(back, "{\"and\": [{\"eq\": [\"vm\", \"a\"]}, {\"gt\": [\"latency\", 5]}]}");
	json_decref(back);
	predicate__free(p);
	json_decref(s);
	s = json_string("  ");
	assert_int_equal(predicate__parse(s, m, &p, err, sizeof(err)), 0);
	assert_true(predicate__is_true(p));
	assert_int_equal(predicate__fields_used(p), 0);
	predicate__free(p);
	json_decref(s);
}

static void test_predicate_invalid(void **state)
{
	static const struct { const char *pred; const char *err; } cases[] = {
		{ "[]", "must be a JSON object, got an array" },
		{ "5", "must be a JSON object, got an integer" },
		{ "{\"eq\": [\"foo\", 1]}", "unknown field \"foo\" for metric vm.exits" },
		{ "{\"lt\": [\"vm\", 1]}", "\"lt\" needs a numeric field, \"vm\" is discrete" },
		{ "{\"ge\": [\"reason\", \"a\"]}", "\"ge\" needs a numeric field, \"reason\" is discrete" },
		{ "{\"eq\": [\"latency\", \"fast\"]}", "numeric field \"latency\" must be a number, got a string" },
		{ "{\"eq\": [\"vm\", true]}", "discrete field \"vm\" must be a string or an integer, got true" },
		{ "{\"eq\": [\"vm\", 1.5]}", "must be a string or an integer, got a real number" },
		{ "{\"eq\": [\"vm\", null]}", "got null" },
		{ "{\"eq\": [\"vm\"]}", "\"eq\" needs an array of [field, value], got 1 elements" },
		{ "{\"eq\": \"vm\"}", "\"eq\" needs an array of [field, value], got a string" },
		{ "{\"eq\": [1, 2]}", "field name must be a string, got an integer" },
		{ "{\"and\": []}", "\"and\" needs a non-empty array of predicates, got an empty array" },
		{ "{\"or\": {}}", "\"or\" needs a non-empty array of predicates, got an object" },
		{ "{\"xor\": [1]}", "unknown predicate operator \"xor\"" },
		{ "{\"eq\": [\"vm\", \"a\"], \"ne\": [\"vm\", \"b\"]}", "exactly one operator, got 2 keys" },
		{ "{\"and\": [{\"eq\": [\"vm\", \"a\"]}, 3]}", "must be a JSON object, got an integer" },
		{ "{\"or\": [{\"lt\": [\"nope\", 1]}]}", "unknown field \"nope\"" },
		{ "\"{\\\"eq\\\": [\"", "predicate string is not valid JSON" },
		{ "\"[1]\"", "must be a JSON object, got an array" },
	};
	const struct metric_desc *m = metric__get(METRIC_VM_EXITS);
	char deep[2048] = "", err[256];
	struct predicate *p;
	size_t i;
	json_t *j;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		j = J(cases[i].pred);
		p = NULL;
		err[0] = 0;
		/* a field the metric lacks, or asked for what its type cannot
		 * give, is well-formed but meaningless: -EDOM */
		assert_int_equal(predicate__parse(j, m, &p, err, sizeof(err)),
				 strstr(cases[i].err, "unknown field") || strstr(cases[i].err, "is discrete") ||
				 strstr(cases[i].err, "numeric field") ? -EDOM : -EINVAL);
		assert_null(p);
		if (!strstr(err, cases[i].err))
			fail_msg("predicate %s: error \"%s\" lacks \"%s\"", cases[i].pred, err,
				 cases[i].err);
		json_decref(j);
	}
	/* nesting limit */
	for (i = 0; i < PREDICATE_MAX_DEPTH + 2; i++)
		strcat(deep, "{\"and\": [");
	strcat(deep, "{}");
	for (i = 0; i < PREDICATE_MAX_DEPTH + 2; i++)
		strcat(deep, "]}");
	j = J(deep);
	assert_int_equal(predicate__parse(j, m, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "nested deeper than"));
	json_decref(j);
	/* field valid for one metric, not another */
	j = J("{\"eq\": [\"disk\", \"vda\"]}");
	assert_int_equal(predicate__parse(j, m, &p, err, sizeof(err)), -EDOM);
	assert_non_null(strstr(err, "unknown field \"disk\" for metric vm.exits"));
	assert_int_equal(predicate__parse(j, metric__get(METRIC_VM_DISK_OPS), &p, err,
					  sizeof(err)), 0);
	predicate__free(p);
	json_decref(j);
}

/* ---- instrumentation config ------------------------------------------- */

static void test_instr_config_ok(void **state)
{
	struct instr *in = mk("{\"module\": \"vm\", \"stat\": \"exits\", "
			      "\"decomposition\": \"vm,latency\", \"granularity\": \"5\", "
			      "\"predicate\": \"{\\\"eq\\\": [\\\"reason\\\", \\\"HLT\\\"]}\", "
			      "\"persist-data\": true}", NULL);
	json_t *j;

	assert_int_equal(instr__arity(in), INSTR_DISCRETE_NUMERIC);
	assert_int_equal(instr__granularity(in), 5);
	assert_int_equal(instr__retention(in), 600);
	assert_int_equal(instr__idle_max(in), 3600);
	assert_true(instr__persist(in));
	assert_int_equal(instr__fields_needed(in), (1u << 1) | (1u << 3) | (1u << 5));
	assert_int_equal(instr__set_id(in, "7", "/ca/instrumentations/7"), 0);
	j = instr__to_json(in);
	assert_string_equal(json_string_value(json_object_get(j, "value-arity")),
			    "numeric-decomposition");
	assert_int_equal(json_integer_value(json_object_get(j, "value-dimension")), 3);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "7");
	assert_string_equal(json_string_value(json_object_get(j, "value-scope")), "interval");
	assert_json_eq(json_object_get(j, "decomposition"), "[\"vm\", \"latency\"]");
	assert_json_eq(json_object_get(j, "predicate"), "{\"eq\": [\"reason\", \"HLT\"]}");
	/* CA's uris, in CA's order */
	assert_json_eq(json_object_get(j, "uris"),
		       "[{\"uri\": \"/ca/instrumentations/7/value/heatmap/image\", \"name\": \"value_heatmap\"},"
		       " {\"uri\": \"/ca/instrumentations/7/value/heatmap/details\", \"name\": \"details_heatmap\"},"
		       " {\"uri\": \"/ca/instrumentations/7/value/raw\", \"name\": \"value_raw\"}]");
	assert_true(json_is_true(json_object_get(j, "enabled")));
	assert_json_eq(json_object_get(j, "transformations"), "{}");
	assert_int_equal(json_integer_value(json_object_get(j, "nsources")), 1);
	assert_true(json_integer_value(json_object_get(j, "crtime")) > T0 * 1000);
	/* a GET result can be sent back as a spec */
	{
		struct instr *in2 = NULL;
		char err[256];
		json_t *j2;

		assert_int_equal(instr__new(j, &in2, err, sizeof(err)), 0);
		j2 = instr__to_json(in2);
		json_object_del(j, "id");
		json_object_del(j, "uri");
		json_object_del(j, "uris");
		json_object_del(j, "crtime");
		json_object_del(j2, "crtime");
		assert_true(json_equal(j, j2));
		json_decref(j2);
		instr__free(in2);
	}
	json_decref(j);
	instr__free(in);

	in = mk("{\"metric\": \"vm.irqs\", \"granularity\": 35}", NULL);
	assert_int_equal(instr__retention(in), 630);	/* 600 rounded up to a multiple */
	assert_int_equal(instr__arity(in), INSTR_SCALAR);
	j = instr__to_json(in);
	assert_int_equal(json_integer_value(json_object_get(j, "value-dimension")), 1);
	assert_string_equal(json_string_value(json_object_get(j, "value-arity")), "scalar");
	json_decref(j);
	instr__free(in);
}

static void test_instr_config_invalid(void **state)
{
	static const struct { const char *spec; const char *err; } cases[] = {
		{ "[]", "must be a JSON object" },
		{ "{}", "missing \"module\" and \"stat\"" },
		{ "{\"module\": \"vm\"}", "\"module\" given without \"stat\"" },
		{ "{\"module\": \"vm\", \"stat\": \"nope\"}", "unknown metric: module \"vm\", stat \"nope\"" },
		{ "{\"metric\": \"vm.nope\"}", "unknown metric \"vm.nope\"" },
		{ "{\"metric\": 5}", "\"metric\" must be a string" },
		{ "{\"metric\": \"vm.irqs\", \"module\": \"vm\", \"stat\": \"exits\"}", "disagrees" },
		{ "{\"metric\": \"vm.exits\", \"decomposition\": [\"foo\"]}",
		  "decomposition: unknown field \"foo\" for metric vm.exits" },
		{ "{\"metric\": \"vm.exits\", \"decomposition\": \"vm,,vcpu\"}", "empty field name" },
		{ "{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\", \"subsecond\"]}",
		  "at most one numeric field, got \"latency\" and \"subsecond\"" },
		{ "{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"vm\"]}", "\"vm\" given twice" },
		{ "{\"metric\": \"vm.exits\", \"decomposition\": [1]}", "element 0 must be a field name" },
		{ "{\"metric\": \"vm.exits\", \"decomposition\": 3}", "\"decomposition\" must be an array" },
		{ "{\"metric\": \"vm.exits\", \"granularity\": 0}", "\"granularity\" must be between 1 and 3600, got 0" },
		{ "{\"metric\": \"vm.exits\", \"granularity\": 3601}", "between 1 and 3600, got 3601" },
		{ "{\"metric\": \"vm.exits\", \"granularity\": \"5s\"}", "\"granularity\" must be an integer, got \"5s\"" },
		{ "{\"metric\": \"vm.exits\", \"granularity\": 1.5}", "must be an integer, got a real number" },
		{ "{\"metric\": \"vm.exits\", \"granularity\": 10, \"retention-time\": 25}",
		  "\"retention-time\" (25) must be a multiple of \"granularity\" (10)" },
		{ "{\"metric\": \"vm.exits\", \"granularity\": 10, \"retention-time\": 5}",
		  "\"retention-time\" must be between 10 and" },
		{ "{\"metric\": \"vm.exits\", \"retention-time\": 99999999}", "\"retention-time\" must be between" },
		{ "{\"metric\": \"vm.exits\", \"retention-time\": 90000}", "exceeds 86400 slots" },
		{ "{\"metric\": \"vm.exits\", \"idle-max\": -1}", "\"idle-max\" must be between 0" },
		/* CA's limits */
		{ "{\"metric\": \"vm.exits\", \"granularity\": 7}",
		  "value 7 for field \"granularity\" is invalid: must be divisible by 5" },
		{ "{\"metric\": \"vm.exits\", \"retention-time\": 5}",
		  "value 5 for field \"retention-time\" is invalid: minimum is 10" },
		{ "{\"metric\": \"vm.exits\", \"idle-max\": 604801}", "\"idle-max\" must be between 0 and 604800" },
		{ "{\"metric\": \"vm.exits\", \"enabled\": false}",
		  "value false for field \"enabled\" is invalid: unsupported value" },
		{ "{\"metric\": \"vm.exits\", \"persist-data\": \"yes\"}", "\"persist-data\" must be true or false" },
		{ "{\"metric\": \"vm.exits\", \"predicate\": {\"eq\": [\"disk\", \"a\"]}}",
		  "predicate: unknown field \"disk\" for metric vm.exits" },
		{ "{\"metric\": \"vm.exits\", \"predicate\": \"{bad\"}", "predicate: predicate string is not valid JSON" },
		{ "{\"metric\": \"vm.exits\", \"colour\": \"red\"}", "unknown instrumentation property \"colour\"" },
	};
	struct instr *in;
	char err[256];
	size_t i;
	json_t *j;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		j = J(cases[i].spec);
		in = NULL;
		err[0] = 0;
		/* unknown metrics and fields are well-formed but meaningless */
		assert_int_equal(instr__new(j, &in, err, sizeof(err)),
				 (strstr(cases[i].err, "unknown") && !strstr(cases[i].err, "property")) ||
				 strstr(cases[i].err, "disagrees") || strstr(cases[i].err, "numeric field")
				 ? -EDOM : -EINVAL);
		assert_null(in);
		if (!strstr(err, cases[i].err))
			fail_msg("spec %s: error \"%s\" lacks \"%s\"", cases[i].spec, err,
				 cases[i].err);
		json_decref(j);
	}
}

/* ---- ring and values --------------------------------------------------- */

static void test_ring_wraparound(void **state)
{
	int64_t now = T0 + 1000, t;
	struct instr *in = mk("{\"metric\": \"vm.exits\", \"retention-time\": 10}", &now);
	struct instr_stats st;
	json_t *v;

	for (t = T0; t < T0 + 25; t++)
		ingest(in, exit_rec(t, (uint64_t)(t - T0 + 1), "a", "0", "HLT", 100, 0));
	for (t = T0; t < T0 + 15; t++) {
		v = instr__value(in, t);
		assert_int_equal(json_integer_value(v), 0);	/* recycled */
		json_decref(v);
	}
	for (t = T0 + 15; t < T0 + 25; t++) {
		v = instr__value(in, t);
		assert_int_equal(json_integer_value(v), t - T0 + 1);
		json_decref(v);
	}
	instr__stats(in, &st);
	assert_int_equal(st.records, 25);
	assert_int_equal(st.dropped_old, 0);
	ingest(in, exit_rec(T0 + 14, 5, "a", "0", "HLT", 100, 0));	/* just out of the window */
	ingest(in, exit_rec(T0 + 15, 5, "a", "0", "HLT", 100, 0));	/* oldest still held */
	ingest(in, exit_rec(now + INSTR_FUTURE_MAX + 1, 5, "a", "0", "HLT", 100, 0));
	instr__stats(in, &st);
	assert_int_equal(st.dropped_old, 1);
	assert_int_equal(st.dropped_future, 1);
	v = instr__value(in, T0 + 15);
	assert_int_equal(json_integer_value(v), 16 + 5);
	json_decref(v);
	/* a record at the edge of the future is kept and moves the ring on */
	ingest(in, exit_rec(now + INSTR_FUTURE_MAX, 2, "a", "0", "HLT", 100, 0));
	instr__stats(in, &st);
	assert_int_equal(st.dropped_future, 1);
	v = instr__value(in, T0 + 24);
	assert_int_equal(json_integer_value(v), 0);
	json_decref(v);
	v = instr__value(in, now + INSTR_FUTURE_MAX);
	assert_int_equal(json_integer_value(v), 2);
	json_decref(v);
	instr__free(in);
}

static void test_ring_granularity(void **state)
{
	int64_t now = T0 + 1000;
	struct instr *in = mk("{\"metric\": \"vm.exits\", \"granularity\": 10, "
			      "\"retention-time\": 30, \"decomposition\": [\"vm\"]}", &now);
	struct instr_stats st;
	json_t *v;

	ingest(in, exit_rec(T0 + 0, 1, "a", "0", "HLT", 0, 0));
	ingest(in, exit_rec(T0 + 9, 2, "a", "0", "HLT", 0, 0));
	ingest(in, exit_rec(T0 + 10, 4, "b", "0", "HLT", 0, 0));
	v = instr__value(in, T0 + 5);	/* any time within the slot */
	assert_json_eq(v, "{\"a\": 3}");
	json_decref(v);
	v = instr__value_raw(in, T0, 20, 1, now);
	assert_json_eq(json_object_get(v, "value"), "{\"a\": 3, \"b\": 4}");
	assert_int_equal(json_integer_value(json_object_get(v, "duration")), 20);
	json_decref(v);
	/* keys are released when the last slot holding them is recycled */
	instr__stats(in, &st);
	assert_int_equal(st.keys, 2);
	ingest(in, exit_rec(T0 + 30, 1, "c", "0", "HLT", 0, 0));
	instr__stats(in, &st);
	assert_int_equal(st.keys, 2);	/* window T0+10..T0+30 holds b and c */
	ingest(in, exit_rec(T0 + 100, 1, "c", "0", "HLT", 0, 0));
	instr__stats(in, &st);
	assert_int_equal(st.keys, 1);
	instr__free(in);
}

/* instr__window (the typed copy heatmaps are drawn from) holds exactly what
 * the CA raw values say, slot by slot: same keys, buckets and counts. */
/* Cells keep 32-bit counts; a count beyond that moves to an overflow table
 * and must read back exactly, survive a save and restore, and go when its
 * slot is recycled. */
static void test_count_beyond_32_bits(void **state)
{
	int64_t now = T0 + 10;
	struct instr *in = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"latency\"], \"retention-time\": 10}", &now);
	struct instr *back = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"latency\"], \"retention-time\": 10}", &now);
	const uint64_t big = 3000000000ULL;
	json_t *v, *data;
	struct instr_stats st;
	uint64_t v0, v1;

	(void)state;
	ingest(in, exit_rec(T0, big, "web1", "0", "HLT", 12, 0));
	v0 = instr__slot_version(in, T0);
	assert_true(v0 != 0);
	ingest(in, exit_rec(T0, big, "web1", "0", "HLT", 12, 0));	/* 6e9: wide */
	ingest(in, exit_rec(T0, 5, "db2", "0", "HLT", 12, 0));
	v1 = instr__slot_version(in, T0);
	assert_true(v1 != v0);
	assert_int_equal(instr__slot_version(in, T0 + 1), 0);	/* never written */
	ingest(in, exit_rec(T0, UINT32_MAX, "web1", "0", "HLT", 12, 0));
	v = instr__value(in, T0);
	assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(v, "web1"), 0), 1)),
			 2 * big + UINT32_MAX);
	assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(v, "db2"), 0), 1)), 5);
	data = instr__data_to_json(in);
	assert_non_null(data);
	assert_int_equal(instr__data_from_json(back, data), 0);
	assert_true(json_equal(v, json_object_get(json_array_get(json_object_get(data, "slots"), 0), "value")));
	json_decref(v);
	v = instr__value(back, T0);
	assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(v, "web1"), 0), 1)),
			 2 * big + UINT32_MAX);
	json_decref(v);
	json_decref(data);
	/* the ring moves past T0: the overflow goes with the slot */
	ingest(in, exit_rec(T0 + 10, 1, "web1", "0", "HLT", 12, 0));
	assert_int_equal(instr__slot_version(in, T0), 0);
	now = T0 + 20;
	ingest(in, exit_rec(T0 + 20, 2, "web1", "0", "HLT", 12, 0));
	v = instr__value(in, T0 + 20);
	assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(v, "web1"), 0), 1)), 2);
	json_decref(v);
	instr__stats(in, &st);
	assert_true(st.bytes > 0);
	assert_true(instr__uid(in) != instr__uid(back));
	instr__free(in);
	instr__free(back);
}

/* The data file written a few slots at a time, straight from the cells, is
 * byte for byte the JSON tree instr__data_to_json() gives, for every arity
 * and for keys JSON must escape or cannot carry. */
static void test_dump_equals_tree(void **state)
{
	static const char *const specs[] = {
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"latency\"]}",
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\"]}",
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"vcpu\"]}",
		"{\"metric\": \"vm.exits\"}",
	};
	int64_t now = T0 + 100;
	size_t k;

	(void)state;
	for (k = 0; k < sizeof(specs) / sizeof(specs[0]); k++) {
		struct instr *in = mk(specs[k], &now);
		struct instr_dump d;
		char *buf = NULL, *tree;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		json_t *data;
		int rc;

		ingest(in, exit_rec(T0, 3, "web1", "0", "HLT", 12, 0));
		ingest(in, exit_rec(T0, 4, "we\"b\\1\n", "1", "HLT", 2000, 0));
		ingest(in, exit_rec(T0 + 1, 5, "db2", "1", "HLT", 20000000000ULL, 0));
		ingest(in, exit_rec(T0 + 3, 6, "web1", "0", "HLT", 14, 0));
		ingest(in, exit_rec(T0 + 3, 7, "caf\xc3\xa9", "0", "HLT", 14, 0));
		ingest(in, exit_rec(T0 + 4, 1, "b\xff" "ad", "0", "HLT", 300, 0));
		ingest(in, exit_rec(T0 + 4, 2, "web1", "0", "HLT", 300, 0));
		assert_non_null(f);
		assert_int_equal(instr__dump_begin(in, &d, f), 0);
		while ((rc = instr__dump_step(in, &d, f, 2)) == 1)
			;
		assert_int_equal(rc, 0);
		assert_int_equal(fclose(f), 0);
		data = instr__data_to_json(in);
		tree = json_dumps(data, JSON_COMPACT);
		assert_non_null(tree);
		assert_string_equal(buf, tree);
		free(tree);
		free(buf);
		json_decref(data);
		instr__free(in);
	}
}

static void test_window_matches_value(void **state)
{
	int64_t now = T0 + 100;
	struct instr *dn = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\", \"vm\"]}", &now);
	struct instr *nu = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\"]}", &now);
	struct instr *di = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"]}", &now);
	struct instr *both[] = { dn, nu };
	struct record recs[] = {
		exit_rec(T0, 3, "web1", "0", "HLT", 12, 0),
		exit_rec(T0, 4, "web1", "0", "HLT", 14, 0),
		exit_rec(T0, 5, "db2", "1", "HLT", 2000, 0),
		exit_rec(T0 + 2, 6, "web1", "1", "HLT", 20000000000ULL, 0),
		exit_rec(T0 + 2, 7, "b\xff" "ad", "1", "HLT", 300, 0),	/* not UTF-8 */
		exit_rec(T0 + 3, 1, "db2", "1", "HLT", 10, 0),
	};
	struct dist_window typed, viajson;
	char err[128];
	size_t i, k, c;

	for (k = 0; k < 2; k++) {
		for (i = 0; i < sizeof(recs) / sizeof(recs[0]); i++)
			ingest(both[k], recs[i]);
		assert_int_equal(instr__window(both[k], T0 - 1, 6, &typed), 0);
		assert_int_equal(dist_window__finish(&typed), 0);
		dist_window__init(&viajson, T0 - 1, 1);
		for (i = 0; i < 6; i++) {
			json_t *v = instr__value(both[k], T0 - 1 + (int64_t)i);

			assert_int_equal(dist_window__add_json(&viajson, v, err, sizeof(err)), 0);
			json_decref(v);
		}
		assert_int_equal(dist_window__finish(&viajson), 0);
		assert_int_equal(typed.start, T0 - 1);
		assert_int_equal(typed.nslots, 6);
		assert_int_equal(typed.decomposed, k == 0);
		assert_int_equal(typed.nkeys, k == 0 ? 3 : 0);
		assert_int_equal(typed.nkeys, viajson.nkeys);
		for (i = 0; i < typed.nkeys; i++)
			assert_string_equal(typed.keys[i], viajson.keys[i]);
		if (k == 0)
			assert_string_equal(typed.keys[0], "b?ad");
		assert_int_equal(typed.ncells, viajson.ncells);
		assert_int_equal(typed.ncells, 5);
		for (i = 0; i <= 6; i++)
			assert_int_equal(typed.slot_off[i], viajson.slot_off[i]);
		for (c = 0; c < typed.ncells; c++) {
			const struct dist_cell *a = &typed.cells[c], *b = &viajson.cells[c];

			assert_int_equal(a->key, b->key);
			assert_true(typed.buckets[a->bucket].lo == viajson.buckets[b->bucket].lo);
			assert_true(typed.buckets[a->bucket].hi == viajson.buckets[b->bucket].hi);
			assert_true(a->count == b->count);
		}
		/* in pieces of at most 2 cells (a slot with more still comes
		 * whole): the same window */
		dist_window__free(&viajson);
		dist_window__init(&viajson, T0 - 1, 1);
		for (i = 0; i < 6;) {
			long got = instr__window_append(both[k], T0 - 1 + (int64_t)i, 6 - i, 2, &viajson);

			assert_true(got >= 1);
			i += (size_t)got;
		}
		assert_int_equal(viajson.nslots, 6);
		assert_int_equal(dist_window__finish(&viajson), 0);
		assert_int_equal(viajson.ncells, typed.ncells);
		assert_int_equal(viajson.nkeys, typed.nkeys);
		assert_memory_equal(viajson.slot_off, typed.slot_off, 7 * sizeof(size_t));
		assert_memory_equal(viajson.cells, typed.cells, typed.ncells * sizeof(*typed.cells));
		/* a piece must start where the window ends */
		assert_int_equal(instr__window_append(both[k], T0, 1, 0, &viajson), -EINVAL);
		dist_window__free(&typed);
		dist_window__free(&viajson);
	}
	assert_int_equal(instr__window(di, T0, 3, &typed), -EINVAL);
	dist_window__free(&typed);
	instr__free(dn);
	instr__free(nu);
	instr__free(di);
}

static void test_value_shapes(void **state)
{
	int64_t now = T0 + 100;
	struct instr *sc = mk("{\"metric\": \"vm.exits\"}", &now);
	struct instr *di = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"]}", &now);
	struct instr *nu = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\"]}", &now);
	struct instr *dn = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\", \"vm\"]}", &now);
	struct instr *all[] = { sc, di, nu, dn };
	const char *empty[] = { "0", "{}", "[]", "{}" };
	struct record recs[] = {
		exit_rec(T0, 3, "web1", "0", "HLT", 12, 0),
		exit_rec(T0, 4, "web1", "0", "HLT", 14, 0),
		exit_rec(T0, 5, "db2", "1", "HLT", 2000, 0),
		exit_rec(T0, 6, "web1", "1", "HLT", 20000000000ULL, 0),	/* overflow bucket */
		exit_rec(T0, 0, "zero", "1", "HLT", 1, 0),		/* no events: no key */
	};
	json_t *v;
	size_t i, k;

	for (k = 0; k < 4; k++) {
		v = instr__value(all[k], T0);
		assert_json_eq(v, empty[k]);
		json_decref(v);
		for (i = 0; i < sizeof(recs) / sizeof(recs[0]); i++)
			ingest(all[k], recs[i]);
		v = instr__value(all[k], T0 + 1);
		assert_json_eq(v, empty[k]);
		json_decref(v);
	}
	v = instr__value(sc, T0);
	assert_json_eq(v, "18");
	json_decref(v);
	v = instr__value(di, T0);
	assert_json_eq(v, "{\"web1\": 13, \"db2\": 5}");
	json_decref(v);
	v = instr__value(nu, T0);
	assert_json_eq(v, "[[[10,15],7],[[2000,2500],5],[[10000000000,100000000000],6]]");
	json_decref(v);
	v = instr__value(dn, T0);
	assert_json_eq(v, "{\"web1\": [[[10,15],7],[[10000000000,100000000000],6]], "
			  "\"db2\": [[[2000,2500],5]]}");
	json_decref(v);
	/* a record of another metric is refused */
	{
		struct record r = recs[0];

		r.metric = METRIC_VM_IRQS;
		assert_int_equal(instr__ingest(sc, &r), -EINVAL);
	}
	for (k = 0; k < 4; k++)
		instr__free(all[k]);
}

static void test_multikey(void **state)
{
	int64_t now = T0 + 100;
	struct instr *a = mk("{\"metric\": \"vm.exits\", \"decomposition\": \"vm,vcpu\"}", &now);
	struct instr *b = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vcpu\", \"subsecond\", \"reason\"], "
			     "\"predicate\": {\"ne\": [\"vm\", \"skip\"]}}", &now);
	struct instr_stats st;
	json_t *v;
	int i;

	for (i = 0; i < 100; i++) {
		ingest(a, exit_rec(T0, 1, "web1", i % 2 ? "1" : "0", "HLT", 0, (uint64_t)i * 10));
		ingest(b, exit_rec(T0, 1, "web1", i % 2 ? "1" : "0", "HLT", 0, (uint64_t)i * 10));
	}
	ingest(a, exit_rec(T0, 2, NULL, "0", "HLT", 0, 0));
	ingest(a, exit_rec(T0, 1, "\xff\xfe" "bad", "0", "HLT", 0, 0));	/* not UTF-8 */
	ingest(b, exit_rec(T0, 2, "skip", "0", "HLT", 0, 0));
	v = instr__value(a, T0);
	assert_json_eq(v, "{\"web1,0\": 50, \"web1,1\": 50, \"unknown,0\": 2, \"??bad,0\": 1}");
	json_decref(v);
	v = instr__value(b, T0);
	assert_int_equal(json_object_size(v), 2);
	assert_int_equal(json_array_size(json_object_get(v, "0,HLT")), 50);
	assert_json_eq(json_array_get(json_object_get(v, "1,HLT"), 0), "[[10,20],1]");
	json_decref(v);
	instr__stats(b, &st);
	assert_int_equal(st.filtered, 1);
	assert_int_equal(instr__fields_needed(b), (1u << 1) | (1u << 2) | (1u << 3) | (1u << 6));
	instr__free(a);
	instr__free(b);
}

static void test_value_raw(void **state)
{
	int64_t now = T0 + 10;
	struct instr *in = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"subsecond\"]}", &now);
	json_t *v, *p;
	int i;

	for (i = 0; i < 10; i++)
		ingest(in, exit_rec(T0 + i, (uint64_t)i + 1, "a", "0", "HLT", 0, 500));
	/* default: the last complete slot, T0 + 9 */
	v = instr__value_raw(in, -1, 0, 0, now);
	assert_int_equal(json_integer_value(json_object_get(v, "start_time")), T0 + 9);
	assert_int_equal(json_integer_value(json_object_get(v, "duration")), 1);
	assert_int_equal(json_integer_value(json_object_get(v, "nsources")), 1);
	assert_int_equal(json_integer_value(json_object_get(v, "minreporting")), 1);
	assert_json_eq(json_object_get(v, "transformations"), "{}");
	assert_json_eq(json_object_get(v, "value"), "[[[500,510],10]]");
	json_decref(v);
	v = instr__value_raw(in, T0, 2, 3, now);
	assert_int_equal(json_array_size(v), 3);
	for (i = 0; i < 3; i++) {
		char want[64];

		p = json_array_get(v, i);
		assert_int_equal(json_integer_value(json_object_get(p, "start_time")), T0 + 2 * i);
		snprintf(want, sizeof(want), "[[[500,510],%d]]", (2 * i + 1) + (2 * i + 2));
		assert_json_eq(json_object_get(p, "value"), want);
	}
	json_decref(v);
	v = instr__value_raw(in, -1, 1, 4, now);
	assert_int_equal(json_array_size(v), 4);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(v, 0), "start_time")), T0 + 6);
	json_decref(v);
	instr__free(in);
}

/* ---- merge ------------------------------------------------------------- */

static unsigned int rng_state = 12345;

static unsigned int rnd(unsigned int n)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return (rng_state >> 8) % n;
}

static json_t *rand_dist(void)
{
	const struct field_desc *f = metric__get(METRIC_VM_EXITS)->fields[5];
	json_t *raw = json_array(), *norm = json_array();
	unsigned int i, n = rnd(5);

	for (i = 0; i < n; i++) {
		uint64_t hi, lo = metric__bucket_lo(f, rnd(12) * 7, &hi);

		json_array_append_new(raw, json_pack("[[I,I],I]", (json_int_t)lo,
						     (json_int_t)metric__json_hi(f, lo, hi),
						     (json_int_t)rnd(1000)));
	}
	assert_int_equal(value__merge(norm, raw), 0);	/* normalized: sorted, combined */
	json_decref(raw);
	return norm;
}

static json_t *rand_value(int shape)
{
	static const char *keys[] = { "web1", "db2", "a,b", "x" };
	json_t *v;
	unsigned int i, n;

	switch (shape) {
	case 0:
		return json_integer(rnd(100000));
	case 1:
		return rand_dist();
	default:
		v = json_object();
		n = rnd(4);
		for (i = 0; i < n; i++)
			json_object_set_new(v, keys[rnd(4)], shape == 2 ? json_integer(rnd(50)) :
								      rand_dist());
		return v;
	}
}

static json_t *merged(const json_t *a, const json_t *b)
{
	json_t *r = json_deep_copy(a);

	assert_int_equal(value__merge(r, b), 0);
	return r;
}

static void test_merge_laws(void **state)
{
	static const char *empties[] = { "0", "[]", "{}", "{}" };
	int trial, shape;

	for (trial = 0; trial < 2000; trial++) {
		shape = trial % 4;
		json_t *a = rand_value(shape), *b = rand_value(shape), *c = rand_value(shape);
		json_t *ab = merged(a, b), *ba = merged(b, a);
		json_t *ab_c = merged(ab, c), *bc = merged(b, c), *a_bc = merged(a, bc);
		json_t *e = J(empties[shape]), *ae = merged(a, e), *ea = merged(e, a);

		assert_true(json_equal(ab, ba));
		assert_true(json_equal(ab_c, a_bc));
		assert_true(json_equal(ae, a));
		assert_true(json_equal(ea, a));
		json_decref(a); json_decref(b); json_decref(c); json_decref(ab); json_decref(ba);
		json_decref(ab_c); json_decref(bc); json_decref(a_bc); json_decref(e);
		json_decref(ae); json_decref(ea);
	}
}

static void test_merge_values(void **state)
{
	static const struct { const char *a, *b, *sum; } ok[] = {
		{ "5", "7", "12" },
		{ "{\"a\": 1}", "{\"a\": 2, \"b\": 3}", "{\"a\": 3, \"b\": 3}" },
		{ "[[[10,15],1],[[20,25],2]]", "[[[0,10],4],[[20,25],3]]",
		  "[[[0,10],4],[[10,15],1],[[20,25],5]]" },
		{ "{\"a\": [[[10,15],1]]}", "{\"a\": [[[10,15],2]], \"b\": [[[0,10],1]]}",
		  "{\"a\": [[[10,15],3]], \"b\": [[[0,10],1]]}" },
		{ "{}", "{\"a\": [[[10,15],1]]}", "{\"a\": [[[10,15],1]]}" },
	};
	static const struct { const char *a, *b; } bad[] = {
		{ "5", "{}" }, { "[]", "{}" }, { "{\"a\": 1}", "{\"a\": [[[0,1],1]]}" },
		{ "{\"a\": 1}", "{\"b\": [[[0,1],1]]}" }, { "[]", "[[1,2]]" }, { "[]", "[[[5,1],1]]" },
		{ "1", "1.5" }, { "1", "\"x\"" }, { "{\"a\": \"x\"}", "{}" }, { "{}", "{\"a\": 1, \"b\": []}" },
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		json_t *a = J(ok[i].a), *b = J(ok[i].b);

		assert_int_equal(value__merge(a, b), 0);
		assert_json_eq(a, ok[i].sum);
		json_decref(a);
		json_decref(b);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *a = J(bad[i].a), *b = J(bad[i].b), *a0 = json_deep_copy(a);

		if (value__merge(a, b) != -EINVAL)
			fail_msg("merge %s + %s accepted", bad[i].a, bad[i].b);
		assert_true(json_equal(a, a0));		/* untouched */
		json_decref(a);
		json_decref(a0);
		json_decref(b);
	}
}

/* Slot aggregates merged through value__merge equal ingesting everything
 * into one slot: the engine's and the fleet's sums agree. */
static void test_merge_matches_ingest(void **state)
{
	int64_t now = T0 + 100;
	struct instr *split = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"latency\"]}", &now);
	struct instr *one = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"latency\"], "
			       "\"granularity\": 5, \"retention-time\": 600}", &now);
	static const char *vms[] = { "a", "b", "c" };
	json_t *sum = json_object(), *v;
	int i;

	for (i = 0; i < 500; i++) {
		struct record r = exit_rec(T0 + rnd(5), 1 + rnd(3), vms[rnd(3)], "0", "HLT",
					   rnd(100000), 0);

		ingest(split, r);
		ingest(one, r);
	}
	for (i = 0; i < 5; i++) {
		v = instr__value(split, T0 + i);
		assert_int_equal(value__merge(sum, v), 0);
		json_decref(v);
	}
	v = instr__value(one, T0);
	assert_true(json_equal(v, sum));
	json_decref(v);
	json_decref(sum);
	instr__free(split);
	instr__free(one);
}

/* ---- persistence ------------------------------------------------------- */

/* instr__dump_begin/step into memory, max slots a step, parsed back.
 * Between steps `between` (if any) runs, as other threads do in the agent. */
static json_t *dump_streamed_with(struct instr *in, unsigned int max,
				  void (*between)(struct instr *, int step))
{
	struct instr_dump d;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	json_t *j;
	int r, steps = 0;

	assert_non_null(f);
	assert_int_equal(instr__dump_begin(in, &d, f), 0);
	do {
		if (between)
			between(in, steps);
		r = instr__dump_step(in, &d, f, max);
		assert_true(r == 0 || r == 1);
		steps++;
	} while (r == 1);
	assert_int_equal(fclose(f), 0);
	j = J(buf);
	free(buf);
	return j;
}

static json_t *dump_streamed(struct instr *in, unsigned int max)
{
	return dump_streamed_with(in, max, NULL);
}

static void roundtrip(const char *spec)
{
	int64_t now = T0 + 100, t;
	struct instr *a = mk(spec, &now), *b = mk(spec, &now);
	json_t *d, *d2, *va, *vb;
	int i;

	for (i = 0; i < 300; i++)
		ingest(a, exit_rec(T0 + rnd(20), 1 + rnd(9), rnd(2) ? "web1" : "db2",
				   rnd(2) ? "0" : "1", "HLT", rnd(1000000), rnd(1000)));
	d = instr__data_to_json(a);
	/* through text, as it is stored */
	{
		char *s = json_dumps(d, JSON_COMPACT);

		json_decref(d);
		d = J(s);
		free(s);
	}
	assert_int_equal(instr__data_from_json(b, d), 0);
	for (t = T0 - 1; t < T0 + 21; t++) {
		va = instr__value(a, t);
		vb = instr__value(b, t);
		assert_true(json_equal(va, vb));
		json_decref(va);
		json_decref(vb);
	}
	d2 = instr__data_to_json(b);
	assert_true(json_equal(d, d2));
	/* the streamed form, a few slots a step, says the same */
	{
		json_t *streamed = dump_streamed(a, 3);

		assert_true(json_equal(d, streamed));
		json_decref(streamed);
	}
	json_decref(d);
	json_decref(d2);
	instr__free(a);
	instr__free(b);
}

static void test_persist_roundtrip(void **state)
{
	roundtrip("{\"metric\": \"vm.exits\"}");
	roundtrip("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"vcpu\"]}");
	roundtrip("{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\"]}");
	roundtrip("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\", \"subsecond\"], \"granularity\": 5}");
}

/* After the first step (slots T0..T0+2 written), a record for T0+15 moves
 * a 10-slot ring on: T0..T0+5 are dropped, T0+15 is new. */
static void move_ring(struct instr *in, int step)
{
	if (step == 1)
		ingest(in, exit_rec(T0 + 15, 7, "late", "0", "HLT", 0, 0));
}

static void test_persist_dump_while_moving(void **state)
{
	int64_t now = T0 + 100;
	struct instr *a = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"], "
			     "\"retention-time\": 10}", &now);
	struct instr *empty = mk("{\"metric\": \"vm.exits\"}", &now);
	json_t *j, *e;
	size_t i;
	static const int64_t want[] = { 0, 1, 2, 6, 7, 8, 9, 15 };

	for (int t = 0; t < 10; t++)
		ingest(a, exit_rec(T0 + t, 1 + (uint64_t)t, "vm", "0", "HLT", 0, 0));
	j = dump_streamed_with(a, 3, move_ring);
	assert_int_equal(json_array_size(json_object_get(j, "slots")), sizeof(want) / sizeof(want[0]));
	json_array_foreach(json_object_get(j, "slots"), i, e)
		assert_int_equal(json_integer_value(json_object_get(e, "start_time")), T0 + want[i]);
	/* what it wrote loads back: the ring keeps T0+6.. as before */
	{
		struct instr *b = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"], "
				     "\"retention-time\": 10}", &now);
		json_t *v;

		assert_int_equal(instr__data_from_json(b, j), 0);
		v = instr__value(b, T0 + 15);
		assert_json_eq(v, "{\"late\": 7}");
		json_decref(v);
		v = instr__value(b, T0 + 6);
		assert_json_eq(v, "{\"vm\": 7}");
		json_decref(v);
		instr__free(b);
	}
	json_decref(j);
	/* nothing retained: a valid, empty object */
	j = dump_streamed(empty, 3);
	assert_int_equal(json_array_size(json_object_get(j, "slots")), 0);
	assert_string_equal(json_string_value(json_object_get(j, "metric")), "vm.exits");
	json_decref(j);
	instr__free(a);
	instr__free(empty);
}

static void test_persist_rejects(void **state)
{
	int64_t now = T0 + 100;
	struct instr *a = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"]}", &now);
	static const char *bad[] = {
		"[]",
		"{\"metric\": \"vm.irqs\", \"decomposition\": [\"vm\"], \"granularity\": 1, \"slots\": []}",
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"vcpu\"], \"granularity\": 1, \"slots\": []}",
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"], \"granularity\": 2, \"slots\": []}",
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"], \"granularity\": 1, "
		"\"slots\": [{\"start_time\": 5, \"value\": 3}]}",
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"], \"granularity\": 1, "
		"\"slots\": [{\"start_time\": 5, \"value\": {\"a\": -1}}]}",
		"{\"metric\": \"vm.exits\", \"decomposition\": [\"vm\"], \"granularity\": 1, "
		"\"slots\": [{\"value\": {\"a\": 1}}]}",
	};
	json_t *v;
	size_t i;

	ingest(a, exit_rec(T0, 4, "keep", "0", "HLT", 0, 0));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = J(bad[i]);

		if (instr__data_from_json(a, j) != -EINVAL)
			fail_msg("data accepted: %s", bad[i]);
		json_decref(j);
	}
	v = instr__value(a, T0);	/* what was held is kept */
	assert_json_eq(v, "{\"keep\": 4}");
	json_decref(v);
	instr__free(a);
	{
		struct instr *n = mk("{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\"]}", &now);
		json_t *j = J("{\"metric\": \"vm.exits\", \"decomposition\": [\"latency\"], "
			      "\"granularity\": 1, \"slots\": [{\"start_time\": 5, \"value\": [[[11,15],1]]}]}");

		assert_int_equal(instr__data_from_json(n, j), -EINVAL);	/* 11 is no bucket bound */
		json_decref(j);
		instr__free(n);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catalogue_lookup),
		cmocka_unit_test(test_catalogue_json),
		cmocka_unit_test(test_bucket_llq_edges),
		cmocka_unit_test(test_bucket_subsecond),
		cmocka_unit_test(test_predicate_ops),
		cmocka_unit_test(test_predicate_string_form_and_fields),
		cmocka_unit_test(test_predicate_invalid),
		cmocka_unit_test(test_instr_config_ok),
		cmocka_unit_test(test_instr_config_invalid),
		cmocka_unit_test(test_ring_wraparound),
		cmocka_unit_test(test_ring_granularity),
		cmocka_unit_test(test_value_shapes),
		cmocka_unit_test(test_multikey),
		cmocka_unit_test(test_value_raw),
		cmocka_unit_test(test_merge_laws),
		cmocka_unit_test(test_merge_values),
		cmocka_unit_test(test_merge_matches_ingest),
		cmocka_unit_test(test_persist_roundtrip),
		cmocka_unit_test(test_persist_dump_while_moving),
		cmocka_unit_test(test_persist_rejects),
		cmocka_unit_test(test_window_matches_value),
		cmocka_unit_test(test_count_beyond_32_bits),
		cmocka_unit_test(test_dump_equals_tree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
