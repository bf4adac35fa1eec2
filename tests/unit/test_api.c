/* Unit tests of the agent's pure parts: tokens, forms, routes, listen
 * addresses, atomic state writes. */
#include <errno.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/state.h"
#include "api/api.h"
#include "api/tokens.h"

#define OPTOK "0123456789abcdef-operator"
#define TENTOK "fedcba9876543210-tenant"

static void test_tokens_parse(void **state)
{
	const char *buf = "# comment\n\n" OPTOK " operator\n  " TENTOK " tenant web1,db2\r\n";
	struct token_set *ts = NULL;
	const struct principal *p;
	char err[256];

	assert_int_equal(tokens__parse(buf, strlen(buf), "t", &ts, err, sizeof(err)), 0);
	assert_int_equal(tokens__count(ts), 2);
	p = tokens__lookup(ts, OPTOK, strlen(OPTOK));
	assert_non_null(p);
	assert_int_equal(p->role, ROLE_OPERATOR);
	p = tokens__lookup(ts, TENTOK, strlen(TENTOK));
	assert_non_null(p);
	assert_int_equal(p->role, ROLE_TENANT);
	assert_int_equal(p->nvms, 2);
	assert_string_equal(p->vms[1], "db2");
	assert_string_equal(p->owner, "tenant:web1,db2");
	/* prefixes, extensions and near misses are strangers */
	assert_null(tokens__lookup(ts, OPTOK, strlen(OPTOK) - 1));
	assert_null(tokens__lookup(ts, OPTOK "x", strlen(OPTOK) + 1));
	assert_null(tokens__lookup(ts, "", 0));
	tokens__free(ts);
}

static void test_tokens_errors(void **state)
{
	static const struct { const char *in, *want; } cases[] = {
		{ "short operator\n", "t:1: token of 5 characters" },
		{ OPTOK " admin\n", "t:1: unknown role 'admin'" },
		{ "\n" OPTOK " tenant\n", "t:2: tenant without VMs" },
		{ OPTOK " tenant a,,b\n", "t:1: empty or overlong VM name" },
		{ OPTOK " operator extra\n", "t:1: unexpected 'extra'" },
		{ OPTOK "\n", "t:1: want" },
		{ "# only a comment\n", "t: no tokens" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct token_set *ts = NULL;

		err[0] = '\0';
		assert_int_equal(tokens__parse(cases[i].in, strlen(cases[i].in), "t", &ts, err,
					       sizeof(err)), -EINVAL);
		assert_null(ts);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
	}
}

static void test_form(void **state)
{
	const char *in = "module=vm&stat=irqs&decomposition=vm&decomposition=subsecond&predicate=%7B%22eq%22%3A%5B%22vm%22%2C%22a+b%22%5D%7D&empty";
	json_t *o = NULL;
	char err[128];

	assert_int_equal(form__parse(in, strlen(in), &o, err, sizeof(err)), 0);
	assert_string_equal(json_string_value(json_object_get(o, "module")), "vm");
	assert_int_equal(json_array_size(json_object_get(o, "decomposition")), 2);
	assert_string_equal(json_string_value(json_object_get(o, "predicate")), "{\"eq\":[\"vm\",\"a b\"]}");
	assert_string_equal(json_string_value(json_object_get(o, "empty")), "");
	json_decref(o);
	assert_int_equal(form__parse("a=%4", 4, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad %-escape"));
	assert_int_equal(form__parse("a=%ff", 5, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "UTF-8"));
	assert_int_equal(form__parse("a=%00", 5, &o, err, sizeof(err)), -EINVAL);
}

static void test_route_match(void **state)
{
	const char *params[4] = { 0 };
	char buf[128];

	assert_true(route__match("/ca", "/ca", params, 4, buf, sizeof(buf)));
	assert_true(route__match("/ca", "/ca/", params, 4, buf, sizeof(buf)));
	assert_false(route__match("/ca", "/cat", params, 4, buf, sizeof(buf)));
	assert_true(route__match("/ca/instrumentations/:id/value/raw",
				 "/ca/instrumentations/42/value/raw", params, 4, buf, sizeof(buf)));
	assert_string_equal(params[0], "42");
	assert_false(route__match("/ca/instrumentations/:id", "/ca/instrumentations/", params, 4,
				  buf, sizeof(buf)));
	assert_false(route__match("/ca/instrumentations/:id", "/ca/instrumentations/1/x", params, 4,
				  buf, sizeof(buf)));
}

static void test_listen(void **state)
{
	char addr[64];
	int port;
	bool lo;

	assert_int_equal(server__parse_listen("127.0.0.1:7134", addr, sizeof(addr), &port, &lo), AF_INET);
	assert_int_equal(port, 7134);
	assert_true(lo);
	assert_int_equal(server__parse_listen("0.0.0.0:80", addr, sizeof(addr), &port, &lo), AF_INET);
	assert_false(lo);
	assert_int_equal(server__parse_listen("[::1]:8080", addr, sizeof(addr), &port, &lo), AF_INET6);
	assert_true(lo);
	assert_string_equal(addr, "::1");
	assert_true(server__parse_listen("localhost:80", addr, sizeof(addr), &port, &lo) < 0);
	assert_true(server__parse_listen("127.0.0.1:99999", addr, sizeof(addr), &port, &lo) < 0);
	assert_true(server__parse_listen("127.0.0.1", addr, sizeof(addr), &port, &lo) < 0);
	assert_true(server__parse_listen("127.0.0.1:", addr, sizeof(addr), &port, &lo) < 0);
}

static void test_atomic_write(void **state)
{
	char dir[] = "/tmp/kvmscope-test-api.XXXXXX", path[128], tmp[160], buf[64];
	FILE *f;
	size_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state.json", dir);
	assert_int_equal(state__write_atomic(path, "{\"a\":1}", 7), 0);
	assert_int_equal(state__write_atomic(path, "{\"b\":2}", 7), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_string_equal(buf, "{\"b\":2}");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_not_equal(access(tmp, F_OK), 0);	/* no leftover */
	unlink(path);
	rmdir(dir);
	assert_int_equal(state__write_atomic("/nonexistent-dir/x/state.json", "{}", 2), -ENOENT);
}

static void test_clean(void **state)
{
	char out[16];

	assert_string_equal(agent__clean("a\"b\\c\xff\n", out, sizeof(out)), "a?b?c??");
	assert_string_equal(agent__clean("0123456789abcdefghij", out, 8), "0123456");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens_parse),
		cmocka_unit_test(test_tokens_errors),
		cmocka_unit_test(test_form),
		cmocka_unit_test(test_route_match),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_clean),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
