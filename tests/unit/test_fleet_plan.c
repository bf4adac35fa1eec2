/* Unit tests of the fleet's tick without the network (fleet/fleet_plan.h):
 * what it plans to send the peers, and what it makes of their answers. The
 * peers' answers here are written by the test, shaped as a kvmscope agent's
 * (tests/integration/fleet.sh runs real peers). */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fleet/fleet.h"
#include "fleet/fleet_plan.h"

#define P1 "127.0.0.1:17001"
#define P2 "127.0.0.1:17002"
#define T0 1800000000LL		/* a second some time in 2027 */

static struct fleet *new_fleet(void)
{
	struct fleet *f = NULL;
	char err[256];

	if (fleet__new(P1 "," P2, "0123456789abcdef-peers", &f, err, sizeof(err)))
		fail_msg("fleet__new: %s", err);
	return f;
}

/* The index of the request `method url` to peer p in js, or -1. */
static long find_req(const struct fleet_jobs *js, size_t p, const char *method, const char *url)
{
	struct fleet_request rq;

	for (size_t i = 0; i < fleet_jobs__count(js); i++) {
		assert_int_equal(fleet_jobs__request(js, i, &rq), 0);
		if (rq.peer == p && !strcmp(rq.method, method) && !strcmp(rq.url, url))
			return (long)i;
	}
	return -1;
}

static size_t count_method(const struct fleet_jobs *js, size_t p, const char *method)
{
	struct fleet_request rq;
	size_t n = 0;

	for (size_t i = 0; i < fleet_jobs__count(js); i++) {
		assert_int_equal(fleet_jobs__request(js, i, &rq), 0);
		n += rq.peer == p && !strcmp(rq.method, method);
	}
	return n;
}

/* Answers every probe 200 and every creation 201 with id peer_id[p]. */
static void answer_all(struct fleet_jobs *js, const unsigned long *peer_id, long long crtime)
{
	struct fleet_request rq;
	char body[128];

	for (size_t i = 0; i < fleet_jobs__count(js); i++) {
		assert_int_equal(fleet_jobs__request(js, i, &rq), 0);
		if (!strcmp(rq.method, "POST"))
			snprintf(body, sizeof(body), "{\"id\":\"%lu\",\"crtime\":%lld}", peer_id[rq.peer],
				 crtime);
		else
			snprintf(body, sizeof(body), "{}");
		assert_int_equal(fleet_jobs__answer(js, i, !strcmp(rq.method, "POST") ? 201 : 200, body), 0);
	}
}

/* Tracks instrumentation 1 (vm.exits, granularity 1) and has both peers
 * create it: peer 0 as 7, peer 1 as 9. */
static void track_and_create(struct fleet *f)
{
	static const unsigned long ids[] = { 7, 9 };
	json_t *spec = json_pack("{s:s, s:s}", "module", "vm", "stat", "exits");
	struct fleet_jobs *js = NULL;
	struct fleet_request rq;
	long i;

	assert_int_equal(fleet__track(f, 1, spec, "caller-token-0123456789", 1, 60), 0);
	assert_int_equal(fleet__track(f, 1, spec, NULL, 1, 60), -EEXIST);
	assert_int_equal(fleet__plan(f, T0, &js), 0);
	for (size_t p = 0; p < 2; p++) {
		char url[128];

		snprintf(url, sizeof(url), "http://%s/ca", p ? P2 : P1);
		assert_true(find_req(js, p, "GET", url) >= 0);
		snprintf(url, sizeof(url), "http://%s/ca/instrumentations", p ? P2 : P1);
		i = find_req(js, p, "POST", url);
		assert_true(i >= 0);
		assert_int_equal(fleet_jobs__request(js, (size_t)i, &rq), 0);
		/* the spec as the caller sent it, with the caller's token */
		assert_string_equal(rq.body, "{\"module\":\"vm\",\"stat\":\"exits\"}");
		assert_string_equal(rq.auth, "Authorization: Bearer caller-token-0123456789");
	}
	assert_int_equal(fleet_jobs__count(js), 4);
	answer_all(js, ids, 1234);
	fleet__apply(f, js, T0);
	fleet_jobs__free(js);
	json_decref(spec);
}

static void test_create_then_fetch(void **state)
{
	struct fleet *f = new_fleet();
	struct fleet_jobs *js = NULL;
	json_t *links, *peers, *v;
	char url[256];
	long i;

	track_and_create(f);
	links = fleet__links_json(f, 1);
	assert_int_equal(json_array_size(links), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(links, 0), "address")), P1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(links, 0), "id")), 7);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(links, 1), "id")), 9);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(links, 1), "crtime")), 1234);
	json_decref(links);
	peers = fleet__peers_json(f);
	assert_string_equal(json_string_value(json_object_get(json_array_get(peers, 0), "state")), "up");
	json_decref(peers);
	assert_int_equal(fleet__nsources(f), 3);

	/* the peers drop what came before their next second: the first slot
	 * is T0 + 1, complete once T0 + 2 has begun */
	assert_int_equal(fleet__plan(f, T0 + 1, &js), 0);
	assert_int_equal(count_method(js, 0, "GET"), 1);	/* the probe only */
	fleet_jobs__free(js);
	assert_int_equal(fleet__plan(f, T0 + 2, &js), 0);
	snprintf(url, sizeof(url),
		 "http://" P1 "/ca/instrumentations/7/value/raw?start_time=%lld&duration=1&ndatapoints=1",
		 T0 + 1);
	i = find_req(js, 0, "GET", url);
	if (i < 0)
		fail_msg("no fetch of %s", url);
	for (size_t k = 0; k < fleet_jobs__count(js); k++) {
		struct fleet_request rq;
		char body[128];

		assert_int_equal(fleet_jobs__request(js, k, &rq), 0);
		if (strstr(rq.url, "/value/raw")) {
			/* peer 0 counted 5 exits in that second, peer 1 counted 2 */
			snprintf(body, sizeof(body), "[{\"start_time\":%lld,\"duration\":1,\"value\":%d}]",
				 T0 + 1, rq.peer ? 2 : 5);
			assert_int_equal(fleet_jobs__answer(js, k, 200, body), 0);
		} else {
			assert_int_equal(fleet_jobs__answer(js, k, 200, "{}"), 0);
		}
	}
	fleet__apply(f, js, T0 + 2);
	fleet_jobs__free(js);
	/* merged into this host's 1: 8, reported by all three sources */
	v = json_integer(1);
	assert_int_equal(fleet__merge_slot(f, 1, T0 + 1, v), 3);
	assert_int_equal(json_integer_value(v), 8);
	json_decref(v);
	/* a slot nobody fetched is this host's alone */
	v = json_integer(1);
	assert_int_equal(fleet__merge_slot(f, 1, T0 + 5, v), 1);
	assert_int_equal(json_integer_value(v), 1);
	json_decref(v);
	fleet__free(f);
}

/* An unreachable peer is down: only probed until it answers; on its return
 * each mapping is verified, and one the peer no longer has (another
 * crtime) is created again. */
static void test_down_then_back(void **state)
{
	struct fleet *f = new_fleet();
	struct fleet_jobs *js = NULL;
	json_t *peers;
	long i;

	track_and_create(f);
	assert_int_equal(fleet__plan(f, T0 + 3, &js), 0);
	for (size_t k = 0; k < fleet_jobs__count(js); k++) {
		struct fleet_request rq;

		assert_int_equal(fleet_jobs__request(js, k, &rq), 0);
		if (rq.peer == 1)
			assert_int_equal(fleet_jobs__unreachable(js, k, "Connection refused"), 0);
		else
			assert_int_equal(fleet_jobs__answer(js, k, 200, "[]"), 0);
	}
	fleet__apply(f, js, T0 + 3);
	fleet_jobs__free(js);
	peers = fleet__peers_json(f);
	assert_string_equal(json_string_value(json_object_get(json_array_get(peers, 1), "state")), "down");
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(peers, 1), "last_error")),
			       "Connection refused"));
	json_decref(peers);
	assert_int_equal(fleet__nsources(f), 2);

	assert_int_equal(fleet__plan(f, T0 + 4, &js), 0);
	assert_int_equal(count_method(js, 1, "GET"), 1);	/* down: the probe only */
	assert_int_equal(count_method(js, 1, "POST"), 0);
	answer_all(js, (const unsigned long[]){ 0, 0 }, 0);	/* it is back */
	fleet__apply(f, js, T0 + 4);
	fleet_jobs__free(js);

	/* back: its instrumentation 9 is verified before it is read again */
	assert_int_equal(fleet__plan(f, T0 + 5, &js), 0);
	i = find_req(js, 1, "GET", "http://" P2 "/ca/instrumentations/9");
	assert_true(i >= 0);
	for (size_t k = 0; k < fleet_jobs__count(js); k++)
		/* the peer restarted: its 9 is another instrumentation */
		assert_int_equal(fleet_jobs__answer(js, k, 200,
						    (long)k == i ? "{\"id\":\"9\",\"crtime\":999}" : "[]"), 0);
	fleet__apply(f, js, T0 + 5);
	fleet_jobs__free(js);
	assert_int_equal(fleet__plan(f, T0 + 6, &js), 0);
	assert_true(find_req(js, 1, "POST", "http://" P2 "/ca/instrumentations") >= 0);
	assert_true(find_req(js, 0, "POST", "http://" P1 "/ca/instrumentations") < 0);
	fleet_jobs__free(js);
	fleet__free(f);
}

/* Forgetting deletes on every peer, and keeps asking until they answer. */
static void test_forget_deletes(void **state)
{
	struct fleet *f = new_fleet();
	struct fleet_jobs *js = NULL;
	long i;

	track_and_create(f);
	fleet__forget(f, 1);
	assert_null(fleet__spec(f, 1));
	assert_int_equal(fleet__plan(f, T0 + 2, &js), 0);
	assert_true(find_req(js, 0, "DELETE", "http://" P1 "/ca/instrumentations/7") >= 0);
	i = find_req(js, 1, "DELETE", "http://" P2 "/ca/instrumentations/9");
	assert_true(i >= 0);
	/* peer 0 deletes it; peer 1 fails with a 500 */
	for (size_t k = 0; k < fleet_jobs__count(js); k++) {
		struct fleet_request rq;

		assert_int_equal(fleet_jobs__request(js, k, &rq), 0);
		assert_int_equal(fleet_jobs__answer(js, k, !strcmp(rq.method, "DELETE") ?
							   (rq.peer ? 500 : 204) : 200, NULL), 0);
	}
	fleet__apply(f, js, T0 + 2);
	fleet_jobs__free(js);
	assert_int_equal(fleet__plan(f, T0 + 3, &js), 0);
	assert_int_equal(count_method(js, 0, "DELETE"), 0);
	assert_true(find_req(js, 1, "DELETE", "http://" P2 "/ca/instrumentations/9") >= 0);
	assert_int_equal(count_method(js, 0, "GET"), 1);	/* nothing left to fetch */
	fleet_jobs__free(js);
	fleet__free(f);
}

/* A PUT is sent on as the changeable properties; a creation the peer
 * refuses is retried after FLEET_RETRY_S, not at once. */
static void test_put_and_refused_create(void **state)
{
	struct fleet *f = new_fleet();
	json_t *body = json_pack("{s:i}", "retention-time", 120), *spec;
	struct fleet_jobs *js = NULL;
	struct fleet_request rq;
	long i;

	track_and_create(f);
	assert_int_equal(fleet__update(f, 1, body, 120), 0);
	assert_int_equal(fleet__plan(f, T0 + 1, &js), 0);
	i = find_req(js, 0, "PUT", "http://" P1 "/ca/instrumentations/7");
	assert_true(i >= 0);
	assert_int_equal(fleet_jobs__request(js, (size_t)i, &rq), 0);
	assert_string_equal(rq.body, "{\"retention-time\":120}");
	fleet_jobs__free(js);
	fleet__free(f);
	json_decref(body);

	f = new_fleet();
	spec = json_pack("{s:s}", "metric", "vm.exits");
	assert_int_equal(fleet__track(f, 2, spec, NULL, 1, 60), 0);
	assert_int_equal(fleet__plan(f, T0, &js), 0);
	for (size_t k = 0; k < fleet_jobs__count(js); k++) {
		assert_int_equal(fleet_jobs__request(js, k, &rq), 0);
		assert_int_equal(fleet_jobs__answer(js, k, !strcmp(rq.method, "POST") ? 422 : 200,
						    !strcmp(rq.method, "POST") ?
						    "{\"code\":\"InvalidArgument\",\"message\":\"unknown metric\"}" : "{}"), 0);
	}
	fleet__apply(f, js, T0);
	fleet_jobs__free(js);
	assert_int_equal(fleet__plan(f, T0 + 1, &js), 0);
	assert_int_equal(count_method(js, 0, "POST"), 0);
	fleet_jobs__free(js);
	assert_int_equal(fleet__plan(f, T0 + FLEET_RETRY_S, &js), 0);
	assert_int_equal(count_method(js, 0, "POST"), 1);
	fleet_jobs__free(js);
	json_decref(spec);
	fleet__free(f);
}

/* A peer flooding keys (answers written by the test: 1 000 001 keys in one
 * slot) is bounded: its slot is dropped whole and the reason is in the
 * instrumentation's status; the other peer's slot is merged as ever. */
static void test_flooding_peer_bounded(void **state)
{
	struct fleet *f = new_fleet();
	struct fleet_jobs *js = NULL;
	json_t *v, *st;
	char *big;
	size_t len = 0, cap = 32u << 20;
	int nkeys = 1000001;

	(void)state;
	track_and_create(f);
	assert_int_equal(fleet__plan(f, T0 + 1, &js), 0);
	fleet_jobs__free(js);
	assert_int_equal(fleet__plan(f, T0 + 2, &js), 0);
	assert_int_equal(count_method(js, 0, "GET"), 2);	/* probe and fetch */
	big = malloc(cap);
	assert_non_null(big);
	len += (size_t)snprintf(big, cap, "[{\"start_time\":%lld,\"duration\":1,\"value\":{", T0 + 1);
	for (int k = 0; k < nkeys; k++)
		len += (size_t)snprintf(big + len, cap - len, "%s\"k%d\":1", k ? "," : "", k);
	snprintf(big + len, cap - len, "}}]");
	for (size_t k = 0; k < fleet_jobs__count(js); k++) {
		struct fleet_request rq;

		assert_int_equal(fleet_jobs__request(js, k, &rq), 0);
		if (strstr(rq.url, "/value/raw")) {
			char small[128];

			snprintf(small, sizeof(small), "[{\"start_time\":%lld,\"duration\":1,\"value\":2}]",
				 T0 + 1);
			assert_int_equal(fleet_jobs__answer(js, k, 200, rq.peer ? small : big), 0);
		} else {
			assert_int_equal(fleet_jobs__answer(js, k, 200, "{}"), 0);
		}
	}
	free(big);
	fleet__apply(f, js, T0 + 2);
	fleet_jobs__free(js);
	v = json_integer(1);
	assert_int_equal(fleet__merge_slot(f, 1, T0 + 1, v), 2);	/* this host and peer 1 */
	assert_int_equal(json_integer_value(v), 3);
	json_decref(v);
	st = fleet__instr_status(f, 1);
	assert_non_null(json_string_value(json_object_get(json_array_get(st, 0), "last_error")));
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(st, 0), "last_error")),
			       "dropped"));
	assert_true(json_is_null(json_object_get(json_array_get(st, 1), "last_error")));
	json_decref(st);
	fleet__free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_then_fetch),
		cmocka_unit_test(test_down_then_back),
		cmocka_unit_test(test_forget_deletes),
		cmocka_unit_test(test_put_and_refused_create),
		cmocka_unit_test(test_flooding_peer_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
