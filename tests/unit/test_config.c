/* Config file: defaults, keys, listener sections, and errors with file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
			   "legacy_verifiers = cram-md5\n"
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
		/* issue 16: mechanism lists are checked, with file:line */
		{"auth_mechanisms = PLAIN SCRAM-SHA-512\n", "t.conf:1: unknown mechanism 'SCRAM-SHA-512'"},
		{"[listener a]\nauth_mechanisms = PLAIN,BOGUS\n", "t.conf:2: unknown mechanism 'BOGUS'"},
		{"[listener a]\nchannel_binding = perhaps\n", "t.conf:2: bad value"},
		{"legacy_verifiers = ntlm lm\n", "t.conf:1: legacy_verifiers: unknown verifier 'lm'"},
		/* issue 10 item 23: a listed mechanism without its verifier */
		{"auth_mechanisms = PLAIN CRAM-MD5\n", "t.conf:1: CRAM-MD5 needs its legacy verifier"},
		{"legacy_verifiers = cram-md5\n[listener a]\nmechanisms = NTLM\n",
		 "t.conf:3: NTLM needs its legacy verifier"},
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

static size_t offered(const struct sg_listener_cfg *l, char *out, size_t size)
{
	size_t n = 0, len = 0;
	out[0] = '\0';
	for (size_t i = 0; sg_mechs[i] != NULL; i++)
		if (sg_listener_offers(l, sg_mechs[i])) {
			int w = snprintf(out + len, size - len, "%s%s", n > 0 ? " " : "", sg_mechs[i]->name);
			assert_true(w > 0 && (size_t)w < size - len);
			len += (size_t)w;
			n++;
		}
	return n;
}

/* Issue 16 item 1: -PLUS is opt-in; the list is a per-listener choice with a
 * global default; legacy mechanisms follow legacy_verifiers. */
static void test_mechanism_lists(void **state)
{
	struct sg_config c;
	char err[256], got[1024];
	sg_config_defaults(&c);
	const char *text = "legacy_verifiers = ntlm\n"
			   "auth_mechanisms = SCRAM-SHA-256 PLAIN\n"
			   "[listener inherit]\n"
			   "role = submission\n"
			   "[listener deflt]\n"
			   "auth_mechanisms =\n"
			   "[listener cb]\n"
			   "auth_mechanisms =\n"
			   "channel_binding = yes\n"
			   "[listener cblist]\n"
			   "mechanisms = SCRAM-SHA-1 LOGIN\n"
			   "channel_binding = yes\n"
			   "[listener explicit]\n"
			   "auth_mechanisms = SCRAM-SHA-256-PLUS, XOAUTH2\n";
	assert_int_equal(sg_config_parse(&c, text, "t.conf", err, sizeof(err)), 0);
	sg_config_finish(&c);
	assert_int_equal(c.nlisteners, 5);
	offered(&c.listeners[0], got, sizeof(got));
	assert_string_equal(got, "SCRAM-SHA-256 PLAIN");
	offered(&c.listeners[1], got, sizeof(got));
	assert_null(strstr(got, "-PLUS"));
	assert_null(strstr(got, "CRAM-MD5"));
	assert_non_null(strstr(got, "NTLM"));
	assert_non_null(strstr(got, "SCRAM-SHA-256 SCRAM-SHA-1"));
	offered(&c.listeners[2], got, sizeof(got));
	assert_non_null(strstr(got, "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256"));
	offered(&c.listeners[3], got, sizeof(got));
	assert_string_equal(got, "SCRAM-SHA-1-PLUS SCRAM-SHA-1 LOGIN");
	offered(&c.listeners[4], got, sizeof(got));
	assert_string_equal(got, "SCRAM-SHA-256-PLUS XOAUTH2");

	/* the built-in default: no -PLUS, no NTLM/CRAM-MD5 */
	sg_config_defaults(&c);
	sg_config_finish(&c);
	assert_int_equal(c.nlisteners, 3);
	size_t n = offered(&c.listeners[1], got, sizeof(got));
	assert_true(n >= 6);
	assert_null(strstr(got, "-PLUS"));
	assert_null(strstr(got, "CRAM-MD5"));
	assert_null(strstr(got, "NTLM"));
	assert_non_null(strstr(got, "SCRAM-SHA-256"));
	assert_non_null(strstr(got, "PLAIN"));
	/* global channel_binding and legacy_verifiers reach --listen listeners */
	sg_config_defaults(&c);
	assert_int_equal(sg_config_parse(&c, "channel_binding = yes\nlegacy_verifiers = ntlm cram-md5\n",
					 "t.conf", err, sizeof(err)), 0);
	assert_int_equal(sg_config_add_listen(&c, "submission=127.0.0.1:3000", err, sizeof(err)), 0);
	sg_config_finish(&c);
	offered(&c.listeners[0], got, sizeof(got));
	assert_non_null(strstr(got, "SCRAM-SHA-256-PLUS"));
	assert_non_null(strstr(got, "NTLM"));
	assert_non_null(strstr(got, "CRAM-MD5"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_listen_flag),
		cmocka_unit_test(test_mechanism_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
