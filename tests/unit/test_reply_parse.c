/* test_reply_parse.c: the SMTP reply parser on good and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/reply_parse.h"

struct good_case {
	const char *in;
	int code;
	const char *enh;
	size_t nlines;
	const char *last_text;
};

static const struct good_case good[] = {
	{"220 mx.example ESMTP\r\n", 220, "", 1, "mx.example ESMTP"},
	{"250 2.0.0 Ok\r\n", 250, "2.0.0", 1, "2.0.0 Ok"},
	{"250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n", 250, "", 3, "AUTH PLAIN LOGIN"},
	{"535 5.7.8 Authentication credentials invalid\r\n", 535, "5.7.8", 1,
	 "5.7.8 Authentication credentials invalid"},
	{"250\r\n", 250, "", 1, ""},                   /* bare code: 3 octets */
	{"334 \r\n", 334, "", 1, ""},                   /* empty challenge: 4 octets */
	{"250-\r\n250 \r\n", 250, "", 2, ""},           /* 4-octet lines */
	{"250-\r\n250\r\n", 250, "", 2, ""},
	{"220 bare lf\n", 220, "", 1, "bare lf"},
	{"454 4.7.0 Temporary authentication failure\r\n", 454, "4.7.0", 1,
	 "4.7.0 Temporary authentication failure"},
	{"250 5.1.1 wrong class is not an enhanced code\r\n", 250, "", 1,
	 "5.1.1 wrong class is not an enhanced code"},
	{"550 5.1.1234 too many digits\r\n", 550, "", 1, "5.1.1234 too many digits"},
	{"550 5.1.1x not followed by space\r\n", 550, "", 1, "5.1.1x not followed by space"},
	{"552 5.3.4\r\n", 552, "5.3.4", 1, "5.3.4"},
	{"553 5.7.1 Sender address not owned by user bob\r\n", 553, "5.7.1", 1,
	 "5.7.1 Sender address not owned by user bob"},
	{"334 VXNlcm5hbWU6\r\n", 334, "", 1, "VXNlcm5hbWU6"},
};

struct bad_case {
	const char *in;
	size_t len; /* 0 = strlen */
	const char *error;
};

static const struct bad_case bad[] = {
	{"25\r\n", 0, "reply line shorter than a reply code"},
	{"\r\n", 0, "reply line shorter than a reply code"},
	{"2\n", 0, "reply line shorter than a reply code"},
	{"abc hello\r\n", 0, "reply line does not start with a reply code"},
	{"150 one-digit class\r\n", 0, "reply line does not start with a reply code"},
	{"650 class 6\r\n", 0, "reply line does not start with a reply code"},
	{"2x0 hi\r\n", 0, "reply line does not start with a reply code"},
	{"250xhello\r\n", 0, "reply code not followed by a space or a hyphen"},
	{"250-a\r\n251 b\r\n", 0, "multiline reply changes its reply code"},
	{"250-a\r\n550 b\r\n", 0, "multiline reply changes its reply code"},
	{"250-a\r\nfoo\r\n", 0, "reply line does not start with a reply code"},
	{"250-a\r\n25\r\n", 0, "reply line shorter than a reply code"},
	{"250 a\0b\r\n", 9, "NUL octet in reply line"},
};

static void feed_all(struct sg_reply_parser *p, const char *in, size_t len,
		     enum sg_reply_status *st_r, size_t *used_r)
{
	*st_r = sg_reply_parser_feed(p, (const uint8_t *)in, len, used_r);
}

static void test_good_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct sg_reply_parser p;
		sg_reply_parser_init(&p);
		size_t used;
		enum sg_reply_status st;
		size_t len = strlen(good[i].in);
		feed_all(&p, good[i].in, len, &st, &used);
		if (st != SG_REPLY_DONE)
			fail_msg("case %zu (%s): status %d error %s", i, good[i].in, st,
				 p.error ? p.error : "");
		assert_int_equal(used, len);
		assert_int_equal(p.reply.code, good[i].code);
		assert_string_equal(p.reply.enh, good[i].enh);
		assert_int_equal(p.reply.nlines, good[i].nlines);
		assert_string_equal(sg_reply_text(&p.reply, p.reply.nlines - 1), good[i].last_text);
		sg_reply_parser_free(&p);

		/* Byte by byte gives the same result. */
		sg_reply_parser_init(&p);
		for (size_t k = 0; k < len; k++) {
			st = sg_reply_parser_feed(&p, (const uint8_t *)good[i].in + k, 1, &used);
			assert_int_equal(used, 1);
			if (k + 1 < len)
				assert_int_equal(st, SG_REPLY_MORE);
		}
		assert_int_equal(st, SG_REPLY_DONE);
		assert_int_equal(p.reply.code, good[i].code);
		assert_string_equal(p.reply.enh, good[i].enh);
		sg_reply_parser_free(&p);
	}
}

static void test_bad_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sg_reply_parser p;
		sg_reply_parser_init(&p);
		size_t used;
		size_t len = bad[i].len ? bad[i].len : strlen(bad[i].in);
		enum sg_reply_status st = sg_reply_parser_feed(&p, (const uint8_t *)bad[i].in, len, &used);
		if (st != SG_REPLY_ERROR)
			fail_msg("case %zu: status %d, expected an error", i, st);
		assert_string_equal(p.error, bad[i].error);
		/* stays failed */
		assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)"250 ok\r\n", 8, &used),
				 SG_REPLY_ERROR);
		sg_reply_parser_free(&p);
	}
}

static void test_two_replies_in_one_read(void **state)
{
	(void)state;
	const char *in = "250 first\r\n354 go ahead\r\n";
	struct sg_reply_parser p;
	sg_reply_parser_init(&p);
	size_t used;
	enum sg_reply_status st = sg_reply_parser_feed(&p, (const uint8_t *)in, strlen(in), &used);
	assert_int_equal(st, SG_REPLY_DONE);
	assert_int_equal(used, 11);
	assert_int_equal(p.reply.code, 250);
	st = sg_reply_parser_feed(&p, (const uint8_t *)in + used, strlen(in) - used, &used);
	assert_int_equal(st, SG_REPLY_DONE);
	assert_int_equal(p.reply.code, 354);
	assert_string_equal(sg_reply_line(&p.reply, 0), "354 go ahead");
	assert_string_equal(sg_reply_text_noenh(&p.reply, 0), "go ahead");
	sg_reply_parser_free(&p);
}

static void test_partial_then_more(void **state)
{
	(void)state;
	struct sg_reply_parser p;
	sg_reply_parser_init(&p);
	size_t used;
	assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)"250-a\r\n250", 10, &used),
			 SG_REPLY_MORE);
	assert_int_equal(used, 10);
	assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)" b\r", 3, &used), SG_REPLY_MORE);
	assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)"\n", 1, &used), SG_REPLY_DONE);
	assert_int_equal(p.reply.nlines, 2);
	assert_string_equal(sg_reply_text(&p.reply, 1), "b");
	assert_string_equal(sg_reply_text_noenh(&p.reply, 0), "a");
	sg_reply_parser_free(&p);
}

static void test_line_length_limits(void **state)
{
	(void)state;
	size_t n = SG_REPLY_LINE_MAX;
	char *l = malloc(n + 3);
	memset(l, 'x', n);
	memcpy(l, "250 ", 4);
	memcpy(l + n, "\r\n", 2);
	struct sg_reply_parser p;
	sg_reply_parser_init(&p);
	size_t used;
	/* exactly SG_REPLY_LINE_MAX octets: accepted */
	assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)l, n + 2, &used), SG_REPLY_DONE);
	assert_int_equal(strlen(sg_reply_line(&p.reply, 0)), n);
	sg_reply_parser_free(&p);

	/* one more: refused, whether the LF arrives or not */
	char *m = malloc(n + 4);
	memset(m, 'x', n + 1);
	memcpy(m, "250 ", 4);
	memcpy(m + n + 1, "\r\n", 2);
	sg_reply_parser_init(&p);
	assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)m, n + 3, &used), SG_REPLY_ERROR);
	assert_string_equal(p.error, "reply line too long");
	sg_reply_parser_free(&p);

	sg_reply_parser_init(&p);
	enum sg_reply_status st = SG_REPLY_MORE;
	for (int k = 0; k < 10 && st == SG_REPLY_MORE; k++)
		st = sg_reply_parser_feed(&p, (const uint8_t *)m, n, &used);
	assert_int_equal(st, SG_REPLY_ERROR);
	assert_string_equal(p.error, "reply line too long");
	sg_reply_parser_free(&p);
	free(l);
	free(m);
}

static void test_max_lines(void **state)
{
	(void)state;
	struct sg_reply_parser p;
	sg_reply_parser_init(&p);
	p.max_lines = 5;
	size_t used;
	enum sg_reply_status st = SG_REPLY_MORE;
	for (int i = 0; i < 10 && st == SG_REPLY_MORE; i++)
		st = sg_reply_parser_feed(&p, (const uint8_t *)"250-x\r\n", 7, &used);
	assert_int_equal(st, SG_REPLY_ERROR);
	assert_string_equal(p.error, "too many lines in one reply");
	sg_reply_parser_free(&p);

	/* the default cap: an endless stream of continuation lines is refused */
	sg_reply_parser_init(&p);
	st = SG_REPLY_MORE;
	int i;
	for (i = 0; i < 10000 && st == SG_REPLY_MORE; i++)
		st = sg_reply_parser_feed(&p, (const uint8_t *)"250-\r\n", 6, &used);
	assert_int_equal(st, SG_REPLY_ERROR);
	assert_int_equal(i, SG_REPLY_LINES_DEFAULT + 1);
	sg_reply_parser_free(&p);
}

static void test_enh(void **state)
{
	(void)state;
	char e[12];
	assert_int_equal(sg_reply_parse_enh("5.7.8 x", 7, '5', e), 5);
	assert_string_equal(e, "5.7.8");
	assert_int_equal(sg_reply_parse_enh("5.7.139 x", 9, '5', e), 7);
	assert_int_equal(sg_reply_parse_enh("2.0.0", 5, '2', e), 5);
	assert_int_equal(sg_reply_parse_enh("4.7.0", 5, '5', e), 0);
	assert_int_equal(sg_reply_parse_enh("3.0.0 x", 7, '3', e), 0);
	assert_int_equal(sg_reply_parse_enh("5..8 x", 6, '5', e), 0);
	assert_int_equal(sg_reply_parse_enh("5.7. x", 6, '5', e), 0);
	assert_int_equal(sg_reply_parse_enh("5.7", 3, '5', e), 0);
	assert_int_equal(sg_reply_parse_enh("5.1000.1", 8, '5', e), 0);
	/* length-bounded: does not read past len */
	assert_int_equal(sg_reply_parse_enh("5.7.8", 4, '5', e), 0);
}

static void test_reset_after_error(void **state)
{
	(void)state;
	struct sg_reply_parser p;
	sg_reply_parser_init(&p);
	size_t used;
	assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)"x\r\n", 3, &used), SG_REPLY_ERROR);
	sg_reply_parser_reset(&p);
	assert_int_equal(sg_reply_parser_feed(&p, (const uint8_t *)"221 bye\r\n", 9, &used),
			 SG_REPLY_DONE);
	assert_int_equal(p.reply.code, 221);
	sg_reply_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_table),
		cmocka_unit_test(test_bad_table),
		cmocka_unit_test(test_two_replies_in_one_read),
		cmocka_unit_test(test_partial_then_more),
		cmocka_unit_test(test_line_length_limits),
		cmocka_unit_test(test_max_lines),
		cmocka_unit_test(test_enh),
		cmocka_unit_test(test_reset_after_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
