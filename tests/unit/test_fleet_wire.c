/* Unit tests of the fleet's binary slot messages (fleet/wire.h): every
 * shape of raw value survives the round trip exactly (as value__merge sees
 * it), and malformed messages are refused with a reason, never half-kept.
 * And the fleet's configuration checks (fleet__new, no bus needed): names
 * that go into subjects, servers off this host, the auth file's mode and
 * contents. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fleet/fleet.h"

#include "engine/merge.h"
#include "fleet/wire.h"

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);

	if (!j)
		fail_msg("bad JSON in the test: %s: %s", text, je.text);
	return j;
}

/* A message of the given values (JSON texts), slots from start. Caller
 * frees b->data. */
static void encode(struct fleet_buf *b, int64_t start, uint32_t gran, size_t n, const char **texts)
{
	struct fleet_wire_header h = { 0, gran, start - 5, start, 1234567, (uint32_t)n };

	memset(b, 0, sizeof(*b));
	assert_int_equal(fleet_wire__put_header(b, &h), 0);
	for (size_t i = 0; i < n; i++) {
		json_t *v = J(texts[i]);

		assert_int_equal(fleet_wire__put_value(b, v), 0);
		json_decref(v);
	}
}

static void test_round_trip_every_shape(void **state)
{
	const char *vals[] = {
		"0", "573", "-3", "9223372036854775807", "-9223372036854775808",
		"[]", "[[[0,1],7]]", "[[[-100,-50],1],[[0,9223372036854775807],2]]",
		"{}", "{\"web1\":120,\"db2\":7}", "{\"\":1}",
		"{\"vm-\\u00e9\":[[[10,20],3],[[20,30],4]],\"b\":[]}",
	};
	json_t *out[FLEET_WIRE_MAX_SLOTS];
	struct fleet_wire_header h;
	struct fleet_buf b;
	char err[200];

	(void)state;
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		json_t *want = J(vals[i]);

		encode(&b, 1800000000, 1, 1, &vals[i]);
		assert_int_equal(fleet_wire__decode(b.data, b.len, 1000, &h, out, err, sizeof(err)), 0);
		assert_int_equal(h.nslots, 1);
		assert_int_equal(h.granularity, 1);
		assert_int_equal(h.start, 1800000000);
		assert_int_equal(h.from, 1800000000 - 5);
		assert_int_equal(h.drained_us, 1234567);
		if (!json_equal(out[0], want)) {
			char *got = json_dumps(out[0], JSON_ENCODE_ANY);

			fail_msg("%s came back as %s", vals[i], got);
		}
		json_decref(out[0]);
		json_decref(want);
		free(b.data);
	}
}

/* several slots in one message (a backfill answer), and the decoded values
 * merge as the originals do */
static void test_several_slots_merge(void **state)
{
	const char *vals[] = { "{\"a\":1}", "{}", "{\"a\":2,\"b\":5}" };
	json_t *out[FLEET_WIRE_MAX_SLOTS], *sum = J("{}");
	struct fleet_wire_header h;
	struct fleet_buf b;
	char err[200];

	(void)state;
	encode(&b, 1800000010, 10, 3, vals);
	assert_int_equal(fleet_wire__decode(b.data, b.len, 1000, &h, out, err, sizeof(err)), 0);
	assert_int_equal(h.nslots, 3);
	assert_int_equal(h.granularity, 10);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(value__merge(sum, out[i]), 0);
		json_decref(out[i]);
	}
	{
		json_t *want = J("{\"a\":3,\"b\":5}");

		assert_true(json_equal(sum, want));
		json_decref(want);
	}
	json_decref(sum);
	free(b.data);
}

static void test_bad_values_not_encoded(void **state)
{
	const char *bad[] = { "1.5", "\"x\"", "[[[2,1],1]]", "{\"a\":1,\"b\":[]}", "null", "true" };
	struct fleet_buf b = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *v = J(bad[i]);

		assert_int_equal(fleet_wire__put_value(&b, v), -EINVAL);
		assert_int_equal(b.len, 0);
		json_decref(v);
	}
	free(b.data);
}

/* decode must fail with -EINVAL and a reason containing `why` */
static void expect_bad(const void *data, size_t len, const char *why)
{
	json_t *out[FLEET_WIRE_MAX_SLOTS];
	struct fleet_wire_header h;
	char err[200];

	assert_int_equal(fleet_wire__decode(data, len, 1000, &h, out, err, sizeof(err)), -EINVAL);
	if (!strstr(err, why))
		fail_msg("reason '%s' does not say '%s'", err, why);
}

static void test_malformed_refused(void **state)
{
	const char *one[] = { "{\"web1\":120,\"db2\":7}" };
	const char *dist[] = { "[[[0,10],3]]" };
	struct fleet_buf b;
	unsigned char *m;

	(void)state;
	expect_bad("", 0, "shorter than the 36-byte header");
	encode(&b, 1800000000, 1, 1, one);
	m = malloc(b.len + 16);
	/* every truncation of a good message */
	for (size_t n = FLEET_WIRE_HEADER; n < b.len; n++) {
		json_t *out[FLEET_WIRE_MAX_SLOTS];
		struct fleet_wire_header h;
		char err[200];

		assert_int_equal(fleet_wire__decode(b.data, n, 1000, &h, out, err, sizeof(err)), -EINVAL);
		assert_true(err[0] != '\0');
	}
	memcpy(m, b.data, b.len);
	m[b.len] = 0;
	expect_bad(m, b.len + 1, "bytes after the last value");
	memcpy(m, b.data, b.len);
	m[0] = 'X';
	expect_bad(m, b.len, "not a version 1 slot message");
	memcpy(m, b.data, b.len);
	m[1] = 2;
	expect_bad(m, b.len, "not a version 1 slot message");
	memcpy(m, b.data, b.len);
	m[4] = 0;	/* granularity 0 */
	expect_bad(m, b.len, "granularity 0");
	memcpy(m, b.data, b.len);
	m[32] = 0;	/* no slots */
	expect_bad(m, b.len, "0 slots");
	memcpy(m, b.data, b.len);
	m[4] = 7;	/* 1800000000 is no multiple of 7 */
	expect_bad(m, b.len, "not a multiple of the granularity");
	memcpy(m, b.data, b.len);
	m[FLEET_WIRE_HEADER] = 9;	/* unknown tag */
	expect_bad(m, b.len, "unknown value tag 9");
	memcpy(m, b.data, b.len);
	m[FLEET_WIRE_HEADER + 1] = 0x7f;	/* 127 keys in a few bytes */
	expect_bad(m, b.len, "past the end");
	{
		/* bodies written by hand: {"db2":1,"db2":2}, a key that is not
		 * UTF-8, one with a NUL, a varint of 11 bytes, a bucket whose
		 * hi overflows */
		struct fleet_wire_header h = { 0, 1, 0, 1800000000, 0, 1 };
		struct fleet_buf d = { 0 };
		const unsigned char body[] = { 2, 2, 3, 'd', 'b', '2', 0x02, 3, 'd', 'b', '2', 0x04 };
		const unsigned char badutf[] = { 2, 1, 2, 0xc3, 0x28, 0x02 };
		const unsigned char nul[] = { 2, 1, 2, 'a', 0, 0x02 };
		const unsigned char longvar[] = { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
						  0xff, 0x7f };
		const unsigned char span[] = { 1, 1, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					       0xff, 0x7f, 0x02 };

		assert_int_equal(fleet_wire__put_header(&d, &h), 0);
		memcpy(m, d.data, d.len);
		memcpy(m + d.len, body, sizeof(body));
		expect_bad(m, d.len + sizeof(body), "key 'db2' twice");
		memcpy(m + d.len, badutf, sizeof(badutf));
		expect_bad(m, d.len + sizeof(badutf), "not UTF-8");
		memcpy(m + d.len, nul, sizeof(nul));
		expect_bad(m, d.len + sizeof(nul), "not UTF-8");
		memcpy(m + d.len, longvar, sizeof(longvar));
		expect_bad(m, d.len + sizeof(longvar), "over 64 bits");
		memcpy(m + d.len, span, sizeof(span));
		expect_bad(m, d.len + sizeof(span), "upper bound past 2^63");
		free(d.data);
	}
	free(b.data);
	/* slots of different shapes: no one instrumentation's */
	{
		const char *mixed[] = { "{\"a\":1}", "[[[0,1],1]]" };

		encode(&b, 1800000000, 1, 2, mixed);
		expect_bad(b.data, b.len, "another shape than slot 0");
		free(b.data);
	}
	encode(&b, 1800000000, 1, 1, dist);
	assert_true(b.len > FLEET_WIRE_HEADER);
	free(b.data);
	free(m);
}

/* a host flooding keys: past max_keys the message is refused whole */
static void test_key_bound(void **state)
{
	json_t *big = json_object(), *out[FLEET_WIRE_MAX_SLOTS];
	struct fleet_wire_header h = { 0, 1, 0, 1800000000, 0, 2 }, got;
	struct fleet_buf b = { 0 };
	char key[32], err[200];

	(void)state;
	for (int i = 0; i < 600; i++) {
		snprintf(key, sizeof(key), "vm%d", i);
		json_object_set_new(big, key, json_integer(i));
	}
	assert_int_equal(fleet_wire__put_header(&b, &h), 0);
	assert_int_equal(fleet_wire__put_value(&b, big), 0);
	assert_int_equal(fleet_wire__put_value(&b, big), 0);
	/* 1200 keys in all */
	assert_int_equal(fleet_wire__decode(b.data, b.len, 1000, &got, out, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "more than 1000 keys"));
	assert_int_equal(fleet_wire__decode(b.data, b.len, 1200, &got, out, err, sizeof(err)), 0);
	assert_true(json_equal(out[0], big) && json_equal(out[1], big));
	json_decref(out[0]);
	json_decref(out[1]);
	json_decref(big);
	free(b.data);
}

/* random bytes after a good header never crash, leak or pass as garbage */
static void test_random_bodies(void **state)
{
	struct fleet_wire_header h = { 0, 1, 0, 1800000000, 0, 1 }, got;
	unsigned char m[FLEET_WIRE_HEADER + 64];
	json_t *out[FLEET_WIRE_MAX_SLOTS];
	struct fleet_buf b = { 0 };
	unsigned seed = 12345;
	char err[200];

	(void)state;
	assert_int_equal(fleet_wire__put_header(&b, &h), 0);
	memcpy(m, b.data, FLEET_WIRE_HEADER);
	for (int round = 0; round < 20000; round++) {
		size_t n = 1 + (size_t)(rand_r(&seed) % 64);
		int rc;

		for (size_t i = 0; i < n; i++)
			m[FLEET_WIRE_HEADER + i] = (unsigned char)(rand_r(&seed) % 8 < 5 ? rand_r(&seed) % 8 : rand_r(&seed));
		rc = fleet_wire__decode(m, FLEET_WIRE_HEADER + n, 1000, &got, out, err, sizeof(err));
		if (rc == 0) {
			/* what decodes is a well-formed value */
			assert_int_equal(value__check(out[0]), 0);
			json_decref(out[0]);
		} else {
			assert_true(rc == -EINVAL || rc == -E2BIG);
		}
	}
	free(b.data);
}

/* fleet__new with cfg must fail with -EINVAL and a reason containing why */
static void expect_refused(const struct fleet_config *cfg, const char *why)
{
	struct fleet *f = NULL;
	char err[512] = "";

	assert_int_equal(fleet__new(cfg, &f, err, sizeof(err)), -EINVAL);
	assert_null(f);
	if (!strstr(err, why))
		fail_msg("reason '%s' does not say '%s'", err, why);
}

static char auth_path[64];

static void write_auth(const char *text, mode_t mode)
{
	FILE *out;

	snprintf(auth_path, sizeof(auth_path), "/tmp/kvmscope-fleet-auth.XXXXXX");
	close(mkstemp(auth_path));
	out = fopen(auth_path, "w");
	assert_non_null(out);
	fputs(text, out);
	fclose(out);
	assert_int_equal(chmod(auth_path, mode), 0);
}

static void test_config_checks(void **state)
{
	struct fleet_config ok = { "nats://127.0.0.1:4222", "prod", "web1.example", NULL, NULL, NULL,
				   NULL, false, 0 }, c;
	struct fleet *f = NULL;
	char err[512];

	(void)state;
	assert_int_equal(fleet__new(&ok, &f, err, sizeof(err)), 0);
	fleet__free(f);
	c = ok, c.name = "a.b";
	expect_refused(&c, "--fleet 'a.b'");
	c = ok, c.name = "";
	expect_refused(&c, "--fleet ''");
	c = ok, c.host = "a~b";
	expect_refused(&c, "--hostname 'a~b'");
	c = ok, c.host = "web*";
	expect_refused(&c, "goes into NATS subjects");
	c = ok, c.host = "trailing.";
	expect_refused(&c, "goes into NATS subjects");
	c = ok, c.urls = "nats://10.1.2.3:4222";
	expect_refused(&c, "a server off this host needs --nats-auth-file");
	c = ok, c.urls = "nats://127.0.0.1:4222,nats://[::1]:4222,nats://db.example:4222";
	expect_refused(&c, "a server off this host needs --nats-auth-file");
	c = ok, c.tls_cert = "cert.pem";
	expect_refused(&c, "--nats-tls-cert and --nats-tls-key go together");

	write_auth("token 0123456789abcdef\n", 0644);
	c = ok, c.auth_file = auth_path;
	expect_refused(&c, "readable or writable by others (mode 644)");
	unlink(auth_path);
	write_auth("user kvms\n", 0600);
	c = ok, c.auth_file = auth_path;
	expect_refused(&c, "neither a token nor a user with a password");
	unlink(auth_path);
	write_auth("token abc\nuser kvms\npassword pw\n", 0600);
	c = ok, c.auth_file = auth_path;
	expect_refused(&c, "a token or a user, not both");
	unlink(auth_path);
	write_auth("secret abc\n", 0600);
	c = ok, c.auth_file = auth_path;
	expect_refused(&c, "got 'secret'");
	unlink(auth_path);
	/* comments and blank lines are fine; with credentials a server off
	 * this host is too */
	write_auth("# the bus\n\nuser kvms\npassword  pw\n", 0600);
	c = ok, c.auth_file = auth_path, c.urls = "nats://10.1.2.3:4222";
	assert_int_equal(fleet__new(&c, &f, err, sizeof(err)), 0);
	fleet__free(f);
	unlink(auth_path);
	c = ok, c.auth_file = "/nonexistent/kvmscope-auth";
	expect_refused(&c, "--nats-auth-file /nonexistent/kvmscope-auth: No such file");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_shape),
		cmocka_unit_test(test_several_slots_merge),
		cmocka_unit_test(test_bad_values_not_encoded),
		cmocka_unit_test(test_malformed_refused),
		cmocka_unit_test(test_key_bound),
		cmocka_unit_test(test_random_bodies),
		cmocka_unit_test(test_config_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
