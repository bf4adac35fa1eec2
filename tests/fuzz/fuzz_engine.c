/* libFuzzer target for the engine's input parsing:
 *   tests/fuzz/build.sh build fuzz_engine
 *   build/fuzz/fuzz_engine -max_total_time=60 tests/fuzz/corpus/fuzz_engine
 * Bytes are parsed as JSON and used as an instrumentation spec, as a
 * predicate for every metric, and as a raw value to merge; whatever parses is
 * exercised against a few records and its values are read back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/instr.h"
#include "engine/merge.h"
#include "engine/metric.h"
#include "engine/predicate.h"

static int64_t fixed_now(void *ctx)
{
	(void)ctx;
	return 1700000100;
}

static void feed(struct instr *in, const struct metric_desc *m)
{
	static const char *vals[] = { "web1", "0", "HLT", NULL, "", "a,b" };
	struct record r = { .metric = m->id, .value = 3 };
	unsigned int i, k;

	for (k = 0; k < 8; k++) {
		r.time = 1700000000 + k * 97 % 700;
		for (i = 0; i < m->nfields; i++) {
			r.str[i] = vals[(i + k) % 6];
			r.num[i] = (uint64_t)k * 123456789ULL * (i + 1);
		}
		instr__ingest(in, &r);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL), *v, *d;
	struct predicate *p;
	struct instr *in, *in2;
	char err[256];
	unsigned int i;

	if (!j)
		return 0;
	if (instr__new(j, &in, err, sizeof(err)) == 0) {
		instr__set_clock(in, fixed_now, NULL);
		feed(in, instr__metric(in));
		v = instr__value_raw(in, -1, 0, 3, 1700000100);
		json_decref(v);
		d = instr__data_to_json(in);
		/* the GET form of an instrumentation is a valid spec */
		v = instr__to_json(in);
		if (instr__new(v, &in2, err, sizeof(err)))
			abort();
		/* and its saved data loads into a twin */
		if (instr__data_from_json(in2, d))
			abort();
		instr__free(in2);
		json_decref(v);
		json_decref(d);
		instr__free(in);
	}
	for (i = 0; i < METRIC__COUNT; i++) {
		const struct metric_desc *m = metric__get(i);
		struct record r = { .metric = m->id, .time = 1700000000, .value = 1 };

		if (predicate__parse(j, m, &p, err, sizeof(err)))
			continue;
		r.str[1] = "web1";
		r.num[m->nfields - 1] = 500;
		predicate__eval(p, &r);
		predicate__fields_used(p);
		v = predicate__to_json(p);
		json_decref(v);
		predicate__free(p);
	}
	/* as a raw value: merging with itself must succeed iff it is well formed */
	v = json_deep_copy(j);
	if (v && value__merge(v, j) == 0 && value__check(v) != 0)
		abort();
	json_decref(v);
	json_decref(j);
	return 0;
}
