/* Finality (engine/finality.h): the rules, the vm.exits collector's use of
 * the kernel's open exits, and the engine taking an exit booked late into a
 * second it already holds.
 *
 * The collector test writes SYNTHETIC entries into the real, loaded
 * exits_open map (what bpf/exit_logic.h's sched_switch program leaves for a
 * vCPU thread blocked inside an exit) for thread ids no thread has, and
 * drains through the real collector: the user-space half. The kernel half is
 * covered with real guests in tests/integration/exits_finality.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collectors/collector.h"
#include "engine/finality.h"
#include "engine/instr.h"
#include "exits_types.h"
#include "exits.skel.h"

static void test_advance(void **state)
{
	(void)state;
	/* nothing open: every drained second is final */
	assert_int_equal(finality__advance(0, 1000, FINAL_NONE_OPEN, 3), 1000);
	/* an exit open since second 998 holds 998 and later */
	assert_int_equal(finality__advance(0, 1000, 998, 3), 998);
	/* one that began in the second being drained holds nothing drained */
	assert_int_equal(finality__advance(0, 1000, 1000, 3), 1000);
	assert_int_equal(finality__advance(0, 1000, 1005, 3), 1000);
	/* the cap: a second is final at most 3 s after its end */
	assert_int_equal(finality__advance(0, 1000, 990, 3), 997);
	assert_int_equal(finality__advance(0, 1000, 997, 3), 997);
	/* never back: a thread blocked earlier than the last final second
	 * (seen only now) does not reopen it */
	assert_int_equal(finality__advance(999, 1000, 998, 3), 999);
	assert_int_equal(finality__advance(1000, 1000, FINAL_NONE_OPEN, 3), 1000);
}

static void test_point(void **state)
{
	int64_t delay = -1;

	(void)state;
	/* [999, 1000) under final_until 1000: final */
	assert_false(finality__point(1000, 1000, 1000, 1000500, &delay));
	assert_int_equal(delay, 0);
	/* not drained yet, asked 30 ms after its end: at the drain, 1 s at most */
	assert_true(finality__point(1000, 1000, 1001, 1001030, &delay));
	assert_int_equal(delay, 1);
	/* the current second, 0.5 s in: 0.65 s to its drain, rounded up */
	assert_true(finality__point(1000, 1000, 1001, 1000500, &delay));
	assert_int_equal(delay, 1);
	/* a point 2 s ahead */
	assert_true(finality__point(1000, 1000, 1003, 1000500, &delay));
	assert_int_equal(delay, 3);
	/* drained but held by an open exit: until the cap at the latest */
	assert_true(finality__point(998, 1000, 1000, 1000200, &delay));
	assert_int_equal(delay, 3);	/* 1000 + 3 + 0.15 - 1000.2 = 2.95 */
	/* past every estimate (a stalled agent): still >= 1 */
	assert_true(finality__point(990, 1000, 995, 1010000, &delay));
	assert_int_equal(delay, 1);
}

static void test_default_start(void **state)
{
	(void)state;
	/* CA's default (now - duration - granularity) is final: the newer
	 * final point wins when every drained second is final */
	assert_int_equal(finality__default_start(998, 1000, 1, 1, 1), 999);
	/* held by an open exit: CA's default is not final, the newest final is */
	assert_int_equal(finality__default_start(998, 997, 1, 1, 1), 996);
	/* equal */
	assert_int_equal(finality__default_start(998, 999, 1, 1, 1), 998);
	/* duration 60 */
	assert_int_equal(finality__default_start(939, 1000, 60, 1, 1), 940);
	/* granularity 5, duration 3 (rounded up to 5): points on the grid */
	assert_int_equal(finality__default_start(990, 1000, 3, 1, 5), 995);
	assert_int_equal(finality__default_start(990, 997, 3, 1, 5), 990);
	/* ndatapoints 3: the three end at final_until */
	assert_int_equal(finality__default_start(998, 1000, 1, 3, 1), 997);
	/* nothing known yet: CA's */
	assert_int_equal(finality__default_start(998, 0, 1, 1, 1), 998);
}

/* An exit booked in its start second after that second was drained (and
 * copied into the engine) adds to the slot: the value grows until final. */
static void test_engine_late_booking(void **state)
{
	json_t *spec = json_pack("{s:s, s:[s]}", "metric", "vm.exits", "decomposition", "reason");
	struct record rec = { .metric = METRIC_VM_EXITS, .value = 1 };
	char err[256];
	struct instr *in = NULL;
	int64_t t = time(NULL) - 5;
	json_t *v;

	(void)state;
	assert_int_equal(instr__new(spec, &in, err, sizeof(err)), 0);
	rec.str[F_HOSTNAME] = "h";
	rec.str[F_VM] = "vm1";
	rec.str[F_EXITS_REASON] = "HLT";
	rec.time = t;
	assert_int_equal(instr__ingest(in, &rec), 0);
	/* the next second's drain moves the ring on */
	rec.str[F_EXITS_REASON] = "MMIO";
	rec.time = t + 1;
	assert_int_equal(instr__ingest(in, &rec), 0);
	/* a halt that began in t, booked there when it ended in t + 1 */
	rec.str[F_EXITS_REASON] = "HLT";
	rec.time = t;
	assert_int_equal(instr__ingest(in, &rec), 0);
	v = instr__value(in, t);
	assert_int_equal(json_integer_value(json_object_get(v, "HLT")), 2);
	json_decref(v);
	v = instr__value(in, t + 1);
	assert_null(json_object_get(v, "HLT"));
	assert_int_equal(json_integer_value(json_object_get(v, "MMIO")), 1);
	json_decref(v);
	instr__free(in);
	json_decref(spec);
}

static int sink(const struct record *rec, void *ctx)
{
	(void)rec;
	(void)ctx;
	return 0;
}

static void test_collector_open_exits(void **state)
{
	struct collector c = { .ops = &collector_exits_ops };
	uint64_t fields[METRIC__COUNT] = { 0 };
	struct exits_bpf *skel;
	__u32 tid = 0x7ffffff0, tid2 = 0x7ffffff1;
	__u64 began;
	int64_t now = time(NULL);
	int fd;

	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: loading BPF programs needs root (CI runs as root)\n");
		skip();
	}
	fields[METRIC_VM_EXITS] = FIELD_BIT(F_VM) | FIELD_BIT(F_EXITS_REASON);
	assert_int_equal(c.ops->start(&c, fields), 0);
	struct collector_env env = { NULL, "testhost", collector__tai_offset() };

	skel = *(struct exits_bpf **)c.priv;	/* first member of the backend */
	fd = bpf_map__fd(skel->maps.exits_open);
	/* guests running on the host at the same time have entries too:
	 * drain first without ours; theirs can only hold it lower */
	assert_true(c.ops->drain(&c, now - 20, &env, sink, NULL) >= 0);
	/* a thread blocked in an exit that began 2 s before `now` */
	began = (__u64)(now - 2 + env.tai_offset) * 1000000000ull + 300000000ull;
	assert_int_equal(bpf_map_update_elem(fd, &tid, &began, BPF_ANY), 0);
	assert_true(c.ops->drain(&c, now, &env, sink, NULL) >= 0);
	assert_true(c.ops->final_until(&c) <= now - 2);
	assert_true(c.ops->final_until(&c) >= now - COLLECTOR_FINAL_WAIT_MAX_S);
	/* the kernel books late exits of final seconds in their end second,
	 * and those of the seconds held in their start second */
	assert_int_equal(skel->bss->exits_cfg.final_before,
			 (__u32)(c.ops->final_until(&c) + env.tai_offset));
	/* an older one: the cap */
	began -= 10 * 1000000000ull;
	assert_int_equal(bpf_map_update_elem(fd, &tid2, &began, BPF_ANY), 0);
	assert_true(c.ops->drain(&c, now + 1, &env, sink, NULL) >= 0);
	assert_int_equal(c.ops->final_until(&c), now + 1 - COLLECTOR_FINAL_WAIT_MAX_S);
	/* both ended: the next drain has everything drained final (unless a
	 * real guest holds a second of its own) */
	assert_int_equal(bpf_map_delete_elem(fd, &tid), 0);
	assert_int_equal(bpf_map_delete_elem(fd, &tid2), 0);
	assert_true(c.ops->drain(&c, now + 2, &env, sink, NULL) >= 0);
	assert_true(c.ops->final_until(&c) >= now + 2 - COLLECTOR_FINAL_WAIT_MAX_S);
	assert_true(c.ops->final_until(&c) <= now + 2);
	/* and it never went back */
	assert_true(c.ops->final_until(&c) >= now + 1 - COLLECTOR_FINAL_WAIT_MAX_S);
	c.ops->stop(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_advance),
		cmocka_unit_test(test_point),
		cmocka_unit_test(test_default_start),
		cmocka_unit_test(test_engine_late_booking),
		cmocka_unit_test(test_collector_open_exits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
