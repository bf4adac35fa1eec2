/* The shared helpers of src/common: UTF-8 checks and the hash functions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "common/hash.h"
#include "common/utf8.h"

/* The checks agree with jansson's (what JSON output accepts), sequence by
 * sequence, on the edges RFC 3629 draws. */
static void test_utf8_valid_edges(void **state)
{
	static const struct {
		const char *s;
		size_t len;
		int valid;
	} cases[] = {
		{ "plain ascii", 11, 1 },
		{ "", 0, 1 },
		{ "caf\xc3\xa9", 5, 1 },			/* U+00E9 */
		{ "\xe2\x82\xac", 3, 1 },			/* U+20AC */
		{ "\xf0\x9f\x98\x80", 4, 1 },			/* U+1F600 */
		{ "\xf4\x8f\xbf\xbf", 4, 1 },			/* U+10FFFF */
		{ "\xf4\x90\x80\x80", 4, 0 },			/* past U+10FFFF */
		{ "\xc0\xaf", 2, 0 },				/* overlong '/' */
		{ "\xe0\x80\xaf", 3, 0 },			/* overlong */
		{ "\xed\xa0\x80", 3, 0 },			/* surrogate U+D800 */
		{ "\xed\x9f\xbf", 3, 1 },			/* U+D7FF */
		{ "b\xff" "ad", 4, 0 },
		{ "\xc3", 1, 0 },				/* cut short */
		{ "\xe2\x82", 2, 0 },
		{ "\x80", 1, 0 },				/* lone continuation */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = json_stringn(cases[i].s, cases[i].len);

		assert_int_equal(utf8__valid(cases[i].s, cases[i].len), cases[i].valid);
		assert_int_equal(j != NULL, cases[i].valid);
		json_decref(j);
	}
	/* a NUL-terminated string may offer 4 bytes: the check stops at the NUL */
	assert_int_equal(utf8__seq_len((const unsigned char *)"\xe2", 4), 0);
	assert_int_equal(utf8__seq_len((const unsigned char *)"\xe2\x82\xac", 4), 3);
	assert_int_equal(utf8__seq_len((const unsigned char *)"a", 4), 1);
	assert_int_equal(utf8__seq_len((const unsigned char *)"\xe2\x82\xac", 2), 0);
}

static void test_utf8_sanitize(void **state)
{
	char bad[] = "vm-\xc3\xa9-\xff!", good[] = "vm-\xc3\xa9";

	(void)state;
	assert_true(utf8__sanitize(bad, strlen(bad)));
	assert_string_equal(bad, "vm-?" "?-?!");
	assert_false(utf8__sanitize(good, strlen(good)));
	assert_string_equal(good, "vm-\xc3\xa9");
}

static void test_hash(void **state)
{
	(void)state;
	/* FNV-1a 64 reference values */
	assert_true(hash__bytes(HASH_SEED, "", 0) == 0xcbf29ce484222325ULL);
	assert_true(hash__bytes(HASH_SEED, "a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(hash__bytes(HASH_SEED, "foobar", 6) == 0x85944171f73967e8ULL);
	/* pieces fed in turn hash as the whole */
	assert_true(hash__bytes(hash__bytes(HASH_SEED, "foo", 3), "bar", 3) ==
		    hash__bytes(HASH_SEED, "foobar", 6));
	assert_true(hash__mix64(0) == 0);
	assert_true(hash__mix64(1) != hash__mix64(2));
	assert_true((hash__mix64(1ULL << 40) & 0xff) != (hash__mix64(2ULL << 40) & 0xff));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_valid_edges),
		cmocka_unit_test(test_utf8_sanitize),
		cmocka_unit_test(test_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
