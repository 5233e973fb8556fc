/* Config file: defaults, keys, listener sections, and errors with file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/config.h"

static void test_defaults(void **state)
{
	struct sg_config c;
	sg_config_defaults(&c);
	sg_config_finish(&c);
	assert_int_equal(c.nlisteners, 3);
	assert_int_equal(c.listeners[0].role, SG_ROLE_MX);
	assert_int_equal(c.listeners[0].port, 2525);
	assert_int_equal(c.listeners[1].port, 2587);
	assert_int_equal(c.listeners[2].port, 2465);
	assert_true(c.listeners[1].sender_enforce);
	assert_int_equal(c.max_auth_attempts, 3);
	assert_string_equal(c.data_dir, "./smtpgate-data");
}

static void test_parse(void **state)
{
	struct sg_config c;
	sg_config_defaults(&c);
	char err[256];
	const char *text = "# comment\n"
			   "hostname = mx.example.test\n"
			   "max_message_size = 10M\n"
			   "auth_fail_delay_ms = 50\n"
			   "\n"
			   "[listener sub]\n"
			   "role = submission\n"
			   "listen = [::1]:10587\n"
			   "bare_lf = normalize\n"
			   "sender_policy = off\n"
			   "mechanisms = PLAIN CRAM-MD5\n";
	assert_int_equal(sg_config_parse(&c, text, "t.conf", err, sizeof(err)), 0);
	sg_config_finish(&c);
	assert_string_equal(c.hostname, "mx.example.test");
	assert_int_equal(c.max_message_size, 10 * 1024 * 1024);
	assert_int_equal(c.auth_fail_delay_ms, 50);
	assert_int_equal(c.nlisteners, 1);
	assert_int_equal(c.listeners[0].role, SG_ROLE_SUBMISSION);
	assert_string_equal(c.listeners[0].host, "::1");
	assert_int_equal(c.listeners[0].port, 10587);
	assert_true(c.listeners[0].bare_lf_normalize);
	assert_false(c.listeners[0].sender_enforce);
}

static void test_errors(void **state)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{"nosuchkey = 1\n", "t.conf:1: unknown key 'nosuchkey'"},
		{"\n\nmax_recipients = lots\n", "t.conf:3: bad value"},
		{"max_recipients = 0\n", "t.conf:1: bad value"},
		{"[server]\n", "t.conf:1: unknown section"},
		{"[listener a]\nlisten = nope\n", "t.conf:2: bad value"},
		{"[listener a]\nrole = relay\n", "t.conf:2: bad value"},
		{"[listener a]\n[listener a]\n", "t.conf:2: listener 'a' defined twice"},
		{"[listener a]\nmechanisms = PLAIN FOO\n", "t.conf:2: unknown mechanism 'FOO'"},
		{"just words\n", "t.conf:1: expected 'key = value'"},
		{"syslog = maybe\n", "t.conf:1: bad value"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sg_config c;
		sg_config_defaults(&c);
		char err[256] = "";
		assert_int_equal(sg_config_parse(&c, cases[i].text, "t.conf", err, sizeof(err)), -1);
		if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
			fail_msg("case %zu: got '%s', want prefix '%s'", i, err, cases[i].want);
	}
}

static void test_listen_flag(void **state)
{
	struct sg_config c;
	sg_config_defaults(&c);
	char err[256];
	assert_int_equal(sg_config_add_listen(&c, "submission=127.0.0.1:3000", err, sizeof(err)), 0);
	assert_int_equal(sg_config_add_listen(&c, "submission=127.0.0.1:3001", err, sizeof(err)), 0);
	assert_int_equal(sg_config_add_listen(&c, "relay=127.0.0.1:3002", err, sizeof(err)), -1);
	assert_int_equal(sg_config_add_listen(&c, "mx=127.0.0.1", err, sizeof(err)), -1);
	sg_config_finish(&c);
	assert_int_equal(c.nlisteners, 2);
	assert_string_equal(c.listeners[1].name, "submission2");
	assert_int_equal(c.listeners[1].port, 3001);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_listen_flag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
