/* MD4: the RFC 1320 appendix A.5 test suite; NT hash: MS-NLMP 4.2.2.1.2 and
 * the UTF-8 -> UTF-16LE conversion (surrogate pairs, invalid input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/md4.h"
#include "core/util.h"

static void hexeq(const uint8_t d[16], const char *want)
{
	char h[33];
	sg_hex(d, 16, h);
	assert_string_equal(h, want);
}

static void test_rfc1320(void **state)
{
	static const char *const in[] = {
		"",
		"a",
		"abc",
		"message digest",
		"abcdefghijklmnopqrstuvwxyz",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		"1234567890123456789012345678901234567890123456789012345678901234567890"
		"1234567890",
	};
	static const char *const out[] = {
		"31d6cfe0d16ae931b73c59d7e0c089c0", "bde52cb31de33e46245e05fbdbd6fb24",
		"a448017aaf21d8525fc10ae87aa6729d", "d9130a8164549fe818874806e1c7014b",
		"d79e1c308aa5bbcdeea8ed63df412da9", "043f8582f241db351ce627e153e7f0e4",
		"e33b4ddc9c38f2199c3e7b164fcc0536",
	};
	for (size_t i = 0; i < 7; i++) {
		uint8_t d[16];
		sg_md4(in[i], strlen(in[i]), d);
		hexeq(d, out[i]);
	}
}

/* Feeding the data in pieces of every size gives the same digest. */
static void test_incremental(void **state)
{
	const char *s = "1234567890123456789012345678901234567890123456789012345678901234567890"
			"1234567890";
	size_t n = strlen(s);
	for (size_t step = 1; step <= n; step++) {
		struct sg_md4_ctx c;
		sg_md4_init(&c);
		for (size_t i = 0; i < n; i += step)
			sg_md4_update(&c, s + i, (n - i < step) ? n - i : step);
		uint8_t d[16];
		sg_md4_final(&c, d);
		hexeq(d, "e33b4ddc9c38f2199c3e7b164fcc0536");
	}
	/* lengths around the padding boundary (55, 56, 63, 64 bytes) */
	uint8_t buf[130];
	memset(buf, 'a', sizeof(buf));
	for (size_t len = 50; len < 130; len++) {
		uint8_t d1[16], d2[16];
		sg_md4(buf, len, d1);
		struct sg_md4_ctx c;
		sg_md4_init(&c);
		sg_md4_update(&c, buf, 1);
		sg_md4_update(&c, buf + 1, len - 1);
		sg_md4_final(&c, d2);
		assert_memory_equal(d1, d2, 16);
	}
}

static void test_nt_hash(void **state)
{
	uint8_t d[16];
	/* MS-NLMP 4.2.2.1.2 */
	assert_int_equal(sg_nt_hash("Password", d), 0);
	hexeq(d, "a4f49c406510bdcab6824ee7c30fd852");
	assert_int_equal(sg_nt_hash("", d), 0);
	hexeq(d, "31d6cfe0d16ae931b73c59d7e0c089c0");

	/* U+00E9 and U+1F600 (surrogate pair D83D DE00) */
	uint8_t want[16];
	static const uint8_t u16[] = {0xe9, 0x00, 0x3d, 0xd8, 0x00, 0xde, 0x41, 0x00};
	sg_md4(u16, sizeof(u16), want);
	assert_int_equal(sg_nt_hash("\xc3\xa9\xf0\x9f\x98\x80" "A", d), 0);
	assert_memory_equal(d, want, 16);
}

static void test_utf16(void **state)
{
	uint8_t out[16];
	assert_int_equal(sg_utf8_to_utf16le("\xe2\x82\xac", 3, out, sizeof(out)), 2);
	assert_int_equal(out[0], 0xac);
	assert_int_equal(out[1], 0x20);
	assert_int_equal(sg_utf8_to_utf16le("\xf4\x8f\xbf\xbf", 4, out, sizeof(out)), 4);
	assert_memory_equal(out, "\xff\xdb\xff\xdf", 4);
	assert_int_equal(sg_utf8_to_utf16le("abc", 3, NULL, 0), 6);
	assert_int_equal(sg_utf8_to_utf16le("abc", 3, out, 4), -1); /* too small */

	static const char *const bad[] = {
		"\x80",             /* lone continuation */
		"\xc0\xaf",         /* overlong '/' */
		"\xc1\xbf",         /* overlong */
		"\xe0\x80\xaf",     /* overlong 3-byte */
		"\xf0\x80\x80\xaf", /* overlong 4-byte */
		"\xed\xa0\x80",     /* UTF-8 encoded surrogate D800 */
		"\xf4\x90\x80\x80", /* above U+10FFFF */
		"\xf5\x80\x80\x80",
		"\xc3",             /* truncated */
		"\xe2\x82",
		"a\xe2\x28\xa1",    /* bad continuation */
		"\xff",
	};
	uint8_t d[16];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sg_nt_hash(bad[i], d), -1);
	assert_int_equal(sg_nt_hash(NULL, d), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc1320),
		cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_nt_hash),
		cmocka_unit_test(test_utf16),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
