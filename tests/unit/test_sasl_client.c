/* test_sasl_client.c: the SMTP AUTH client driver (src/client/sasl_client.c) and the
 * transcript's SASL rendering, with the real PLAIN, LOGIN and CRAM-MD5 client sides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/sasl_client.h"
#include "client/transcript.h"
#include "sasl/mech.h"
#include "smtp/reply_parse.h"

static struct sg_reply_parser parser;

static const struct sg_reply *reply(const char *wire)
{
	size_t used;
	sg_reply_parser_reset(&parser);
	enum sg_reply_status st =
		sg_reply_parser_feed(&parser, (const uint8_t *)wire, strlen(wire), &used);
	assert_int_equal(st, SG_REPLY_DONE);
	return &parser.reply;
}

static struct sg_sasl_client_env env_pw(const char *user, const char *pw)
{
	struct sg_sasl_client_env e;
	memset(&e, 0, sizeof(e));
	e.authcid = user;
	e.password = pw;
	e.host = "localhost";
	e.port = 587;
	e.service = "smtp";
	return e;
}

static void test_plain_initial_response_masked(void **state)
{
	(void)state;
	struct sg_sasl_client_env env = env_pw("tim", "tanstaaftanstaaf");
	struct sg_saslc c;
	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("PLAIN"), &env, false), 0);
	/* RFC 4616 section 4 example */
	assert_string_equal(sg_buf_str(&c.line), "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	assert_string_equal(c.display, "AUTH PLAIN ****");
	assert_string_equal(c.decoded, "\\0tim\\0****");
	assert_int_equal(sg_saslc_reply(&c, reply("235 2.7.0 ok\r\n")), SG_SASLC_OK);
	sg_saslc_free(&c);

	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("PLAIN"), &env, true), 0);
	assert_string_equal(c.display, "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	assert_string_equal(c.decoded, "\\0tim\\0tanstaaftanstaaf");
	assert_int_equal(sg_saslc_reply(&c, reply("535 5.7.8 no\r\n")), SG_SASLC_REFUSED);
	assert_false(c.aborted);
	sg_saslc_free(&c);
}

static void test_login_prompts(void **state)
{
	(void)state;
	struct sg_sasl_client_env env = env_pw("alice", "pw-1");
	struct sg_saslc c;
	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("LOGIN"), &env, false), 0);
	assert_string_equal(sg_buf_str(&c.line), "AUTH LOGIN");
	assert_int_equal(sg_saslc_reply(&c, reply("334 VXNlcm5hbWU6\r\n")), SG_SASLC_SEND);
	assert_string_equal(sg_buf_str(&c.line), "YWxpY2U=");
	assert_string_equal(c.decoded, "alice");
	assert_int_equal(sg_saslc_reply(&c, reply("334 UGFzc3dvcmQ6\r\n")), SG_SASLC_SEND);
	assert_string_equal(sg_buf_str(&c.line), "cHctMQ==");
	assert_string_equal(c.display, "****");
	assert_string_equal(c.decoded, "****");
	assert_int_equal(sg_saslc_reply(&c, reply("235 ok\r\n")), SG_SASLC_OK);
	sg_saslc_free(&c);
}

static void test_cram_md5_vector(void **state)
{
	(void)state;
	struct sg_sasl_client_env env = env_pw("tim", "tanstaaftanstaaf");
	struct sg_saslc c;
	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("CRAM-MD5"), &env, false), 0);
	assert_string_equal(sg_buf_str(&c.line), "AUTH CRAM-MD5");
	/* RFC 2195 section 2 */
	assert_int_equal(sg_saslc_reply(&c, reply("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n")),
			 SG_SASLC_SEND);
	assert_string_equal(c.decoded, "tim b913a602c7eda7a495b4e6e7334d3890");
	assert_string_equal(sg_buf_str(&c.line), "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
	sg_saslc_free(&c);
}

static void test_bad_base64_cancels(void **state)
{
	(void)state;
	struct sg_sasl_client_env env = env_pw("tim", "x");
	struct sg_saslc c;
	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("CRAM-MD5"), &env, false), 0);
	assert_int_equal(sg_saslc_reply(&c, reply("334 abc!\r\n")), SG_SASLC_SEND);
	assert_string_equal(sg_buf_str(&c.line), "*");
	assert_true(c.aborted);
	assert_string_equal(c.client_error, "the server's challenge is not valid base64");
	assert_int_equal(sg_saslc_reply(&c, reply("501 5.7.0 Authentication aborted\r\n")),
			 SG_SASLC_REFUSED);
	sg_saslc_free(&c);
}

static void test_multiline_334_cancels(void **state)
{
	(void)state;
	struct sg_sasl_client_env env = env_pw("tim", "x");
	struct sg_saslc c;
	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("LOGIN"), &env, false), 0);
	assert_int_equal(sg_saslc_reply(&c, reply("334-VXNl\r\n334 cm5hbWU6\r\n")), SG_SASLC_SEND);
	assert_string_equal(sg_buf_str(&c.line), "*");
	sg_saslc_free(&c);
}

static void test_long_initial_response_held_back(void **state)
{
	(void)state;
	/* RFC 4954 section 4: an AUTH line over 512 octets goes without the initial response */
	char pw[250], user[250];
	memset(pw, 'p', sizeof(pw) - 1);
	pw[sizeof(pw) - 1] = '\0';
	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	struct sg_sasl_client_env env = env_pw(user, pw);
	struct sg_saslc c;
	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("PLAIN"), &env, false), 0);
	assert_string_equal(sg_buf_str(&c.line), "AUTH PLAIN");
	assert_int_equal(sg_saslc_reply(&c, reply("334 \r\n")), SG_SASLC_SEND);
	assert_true(c.line.len > 500);
	assert_string_equal(c.display, "****");
	sg_saslc_free(&c);
}

static void test_missing_password(void **state)
{
	(void)state;
	struct sg_sasl_client_env env = env_pw("tim", NULL);
	struct sg_saslc c;
	assert_int_equal(sg_saslc_begin(&c, sg_mech_find("PLAIN"), &env, false), -1);
	assert_non_null(c.client_error);
	sg_saslc_free(&c);
}

static void test_describe(void **state)
{
	(void)state;
	const char *secrets[] = {"s3cret", NULL};
	char *d = sg_sasl_describe((const uint8_t *)"user=a\x01" "auth=Bearer s3cret\x01\x01", 27,
				   secrets);
	assert_string_equal(d, "user=a\\x01auth=Bearer ****\\x01\\x01");
	free(d);
	static const uint8_t ntlm1[] = {'N', 'T', 'L', 'M', 'S', 'S', 'P', 0, 1, 0, 0, 0,
					7, 0x82, 8, 0};
	d = sg_sasl_describe(ntlm1, sizeof(ntlm1), NULL);
	assert_string_equal(d, "NTLM NEGOTIATE message (type 1, 16 octets)");
	free(d);
	/* a type 3 whose user buffer points outside the message */
	uint8_t ntlm3[64] = {'N', 'T', 'L', 'M', 'S', 'S', 'P', 0, 3, 0, 0, 0};
	ntlm3[36] = 10;          /* user len */
	ntlm3[40] = 0xf0;        /* user offset 240 > 64 */
	d = sg_sasl_describe(ntlm3, sizeof(ntlm3), NULL);
	assert_non_null(strstr(d, "user out of bounds"));
	free(d);
	static const uint8_t bin[] = {0x60, 0x82, 0x02, 0x10, 0x06, 0x09, 0x2a, 0x86,
				      0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01};
	d = sg_sasl_describe(bin, sizeof(bin), NULL);
	assert_non_null(strstr(d, "16 octets of binary data: 60 82"));
	free(d);
	d = sg_sasl_describe((const uint8_t *)"hello \x1b[2J world", 16, NULL);
	assert_string_equal(d, "hello \\x1b[2J world");
	free(d);
}

static int setup(void **state)
{
	(void)state;
	sg_reply_parser_init(&parser);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sg_reply_parser_free(&parser);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_initial_response_masked),
		cmocka_unit_test(test_login_prompts),
		cmocka_unit_test(test_cram_md5_vector),
		cmocka_unit_test(test_bad_base64_cancels),
		cmocka_unit_test(test_multiline_334_cancels),
		cmocka_unit_test(test_long_initial_response_held_back),
		cmocka_unit_test(test_missing_password),
		cmocka_unit_test(test_describe),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
