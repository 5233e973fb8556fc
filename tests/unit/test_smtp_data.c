/* DATA reader: end of data, dot-unstuffing, and every smuggling form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/data.h"

struct run {
	bool done;
	size_t used;
	bool bare_lf, bare_cr, too_big;
	char out[512];
	size_t outlen;
};

/* Feed in pieces of `step` bytes to exercise state across chunk boundaries. */
static struct run feed(const char *in, size_t step, bool normalize, size_t max)
{
	struct sg_buf b;
	sg_buf_init(&b, 4096);
	struct sg_data_reader r;
	sg_data_init(&r, &b, max, normalize);
	size_t n = strlen(in), off = 0;
	while (off < n && !r.done) {
		size_t k = n - off < step ? n - off : step;
		off += sg_data_feed(&r, (const uint8_t *)in + off, k);
	}
	struct run res = {.done = r.done, .used = off, .bare_lf = r.bare_lf, .bare_cr = r.bare_cr,
			  .too_big = r.too_big, .outlen = b.len};
	memcpy(res.out, b.data != NULL ? (const char *)b.data : "", b.len < 511 ? b.len : 511);
	sg_buf_free(&b);
	return res;
}

static void test_end_and_unstuff(void **state)
{
	for (size_t step = 1; step <= 8; step++) {
		struct run r = feed("Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n", step, false, 1000);
		assert_true(r.done);
		assert_int_equal(r.used, strlen("Subject: x\r\n\r\n..dot\r\n.\r\n"));
		assert_string_equal(r.out, "Subject: x\r\n\r\n.dot\r\n");
		assert_false(r.bare_lf);
	}
	struct run empty = feed(".\r\n", 1, false, 1000);
	assert_true(empty.done);
	assert_int_equal(empty.outlen, 0);
}

static void test_smuggling(void **state)
{
	/* None of these may end the data; the real end comes later. */
	static const struct {
		const char *in;
		size_t len;
	} forms[] = {
#define F(s) {s, sizeof(s) - 1}
		F("a\n.\nMAIL FROM:<x@y>\r\n"),
		F("a\r.\rMAIL FROM:<x@y>\r\n"),
		F("a\n.\r\nMAIL FROM:<x@y>\r\n"),
		F("a\r\n.\nMAIL FROM:<x@y>\r\n"),
		F("a\r\n.\r\r\nMAIL FROM:<x@y>\r\n"),
		F("a\r\n\0.\r\nMAIL FROM:<x@y>\r\n"),
		F("a\r\n.\0\r\nMAIL FROM:<x@y>\r\n"),
#undef F
	};
	for (int normalize = 0; normalize <= 1; normalize++)
		for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
			for (size_t step = 1; step <= 4; step++) {
				struct sg_buf b;
				sg_buf_init(&b, 4096);
				struct sg_data_reader r;
				sg_data_init(&r, &b, 1000, normalize);
				for (size_t off = 0; off < forms[i].len && !r.done;) {
					size_t k = forms[i].len - off < step ? forms[i].len - off : step;
					off += sg_data_feed(&r, (const uint8_t *)forms[i].in + off, k);
				}
				if (r.done)
					fail_msg("form %zu ended the data (normalize=%d)", i, normalize);
				if (!normalize && i <= 3)
					assert_true(r.bare_lf || r.bare_cr);
				sg_buf_free(&b);
			}
}

static void test_normalize(void **state)
{
	struct run r = feed("a\nb\r\n.\r\n", 2, true, 1000);
	assert_true(r.done);
	assert_string_equal(r.out, "a\r\nb\r\n");
	assert_true(r.bare_lf);
	struct run r2 = feed("a\nb\r\n.\r\n", 2, false, 1000);
	assert_true(r2.done);
	assert_true(r2.bare_lf);
}

static void test_size(void **state)
{
	struct run r = feed("0123456789\r\n.\r\n", 4, false, 5);
	assert_true(r.done);
	assert_true(r.too_big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_end_and_unstuff),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
