/* sg_log_value: peer bytes are logged on one line, quoted when needed, with
 * control characters and bytes that are not well-formed UTF-8 escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/log.h"

static const char *v(const char *in)
{
	static char out[300];
	return sg_log_value(in, out, sizeof(out));
}

static void test_plain_and_quoted(void **state)
{
	assert_string_equal(v("alice@example.test"), "alice@example.test");
	assert_string_equal(v(""), "\"\"");
	assert_string_equal(v("a b"), "\"a b\"");
	assert_string_equal(v("x=\"y\\"), "\"x=\\\"y\\\\\"");
	assert_string_equal(v("a\r\nfake event=auth"), "\"a\\x0d\\x0afake event=auth\"");
}

/* issue 10 item 24: a login with 0xFF 0xFE is escaped, not written raw */
static void test_invalid_utf8_escaped(void **state)
{
	assert_string_equal(v("u\xff\xfe@x"), "\"u\\xff\\xfe@x\"");
	/* valid UTF-8 stays as it is */
	assert_string_equal(v("j\xc3\xbcrgen@b\xc3\xbc" "cher.test"), "j\xc3\xbcrgen@b\xc3\xbc" "cher.test");
	assert_string_equal(v("\xf0\x9f\x93\xa7"), "\xf0\x9f\x93\xa7");
	/* overlong, surrogate, beyond U+10FFFF, truncated, stray continuation */
	assert_string_equal(v("\xc0\xaf"), "\"\\xc0\\xaf\"");
	assert_string_equal(v("\xe0\x80\xaf"), "\"\\xe0\\x80\\xaf\"");
	assert_string_equal(v("\xed\xa0\x80"), "\"\\xed\\xa0\\x80\"");
	assert_string_equal(v("\xf4\x90\x80\x80"), "\"\\xf4\\x90\\x80\\x80\"");
	assert_string_equal(v("a\xe2\x82"), "\"a\\xe2\\x82\"");
	assert_string_equal(v("\x80x"), "\"\\x80x\"");
	/* C1 controls and U+2028 are escaped although well-formed */
	assert_string_equal(v("a\xc2\x85" "b"), "\"a\\xc2\\x85b\"");
	assert_string_equal(v("a\xe2\x80\xa8" "b"), "\"a\\xe2\\x80\\xa8b\"");
}

static void test_truncation_keeps_sequences_whole(void **state)
{
	char in[400];
	size_t n = 0;
	while (n + 2 < sizeof(in) - 1) {
		in[n++] = (char)0xc3;
		in[n++] = (char)0xbc;
	}
	in[n] = '\0';
	char out[64];
	sg_log_value(in, out, sizeof(out));
	size_t len = strlen(out);
	assert_true(len < sizeof(out));
	assert_string_equal(out + len - 2, "..");
	/* every ü is whole */
	for (size_t i = 0; i + 2 < len; i += 2) {
		assert_int_equal((unsigned char)out[i], 0xc3);
		assert_int_equal((unsigned char)out[i + 1], 0xbc);
	}
	char bad[400];
	memset(bad, 0xff, sizeof(bad) - 1);
	bad[sizeof(bad) - 1] = '\0';
	sg_log_value(bad, out, sizeof(out));
	assert_true(strlen(out) < sizeof(out));
	assert_int_equal(out[0], '"');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_quoted),
		cmocka_unit_test(test_invalid_utf8_escaped),
		cmocka_unit_test(test_truncation_keeps_sequences_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
