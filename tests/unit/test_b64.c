/* Strict base64: RFC 4648 section 10 vectors and every refusal rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/b64.h"

static void test_rfc4648_vectors(void **state)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		char out[16];
		sg_b64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
		assert_string_equal(out, enc[i]);
		uint8_t dec[16];
		size_t n = 99;
		assert_int_equal(sg_b64_decode(enc[i], strlen(enc[i]), dec, &n), 0);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(dec, plain[i], n);
	}
}

static void test_refusals(void **state)
{
	static const char *const bad[] = {
		"Zg=",      /* length not a multiple of 4 */
		"Zg",       /* missing padding */
		"Z===",     /* too much padding */
		"Zm=v",     /* '=' in the middle */
		"Zh==",     /* non-zero pad bits */
		"Zm9v Yg==", /* whitespace */
		"Zm9v\r\n", /* CR LF */
		"Zm9-",     /* url alphabet */
		"=Zg=",
		"AAAAA",    /* 4n+1 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t dec[16];
		size_t n;
		assert_int_equal(sg_b64_decode(bad[i], strlen(bad[i]), dec, &n), -1);
	}
}

static void test_url(void **state)
{
	const uint8_t in[] = {0xfb, 0xff, 0xbf};
	char out[8];
	sg_b64url_encode(in, 3, out);
	assert_string_equal(out, "-_-_");
	uint8_t dec[8];
	size_t n;
	assert_int_equal(sg_b64url_decode("eyJhIjoxfQ", 10, dec, &n), 0);
	assert_int_equal(n, 7);
	assert_memory_equal(dec, "{\"a\":1}", 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
