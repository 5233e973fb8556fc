/* Command-line parsing: verbs, paths (RFC 5321 4.1.2), ESMTP parameters, xtext. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "smtp/cmd.h"

static void test_split(void **state)
{
	char verb[16];
	const char *args;
	assert_int_equal(sg_cmd_split("ehlo client.example", verb, &args), 0);
	assert_string_equal(verb, "EHLO");
	assert_string_equal(args, "client.example");
	assert_int_equal(sg_cmd_split("QUIT", verb, &args), 0);
	assert_string_equal(args, "");
	assert_int_equal(sg_cmd_split("", verb, &args), -1);
	assert_int_equal(sg_cmd_split(" MAIL", verb, &args), -1);
	assert_int_equal(sg_cmd_split("MA1L FROM:<>", verb, &args), -1);
	assert_int_equal(sg_cmd_split("ABCDEFGHIJKLMNOPQ x", verb, &args), -1);
}

static void test_paths(void **state)
{
	static const struct {
		const char *args;
		bool allow_empty;
		enum sg_path_err want;
		const char *path;
	} cases[] = {
		{"FROM:<alice@example.test>", true, SG_PATH_OK, "alice@example.test"},
		{"from: <alice@example.test>", true, SG_PATH_OK, "alice@example.test"},
		{"FROM:<>", true, SG_PATH_OK, ""},
		{"TO:<>", false, SG_PATH_BAD_ADDRESS, NULL},
		{"FROM:<;sleep 66;>", true, SG_PATH_BAD_ADDRESS, NULL},
		{"FROM:<a b@example.test>", true, SG_PATH_BAD_ADDRESS, NULL},
		{"FROM:<\"a b\"@example.test>", true, SG_PATH_OK, "\"a b\"@example.test"},
		{"FROM:<@relay.test:bob@example.test>", true, SG_PATH_OK, "bob@example.test"},
		{"FROM:<bob@[127.0.0.1]>", true, SG_PATH_OK, "bob@[127.0.0.1]"},
		{"FROM:<bob@-bad.test>", true, SG_PATH_BAD_ADDRESS, NULL},
		{"FROM:<bob..x@example.test>", true, SG_PATH_BAD_ADDRESS, NULL},
		{"FROM:<bob@example.test", true, SG_PATH_SYNTAX, NULL},
		{"FROM:bob@example.test", true, SG_PATH_SYNTAX, NULL},
		{"TO:<bob@example.test>", true, SG_PATH_SYNTAX, NULL},
		{"FROM:<bob@example.test>junk", true, SG_PATH_SYNTAX, NULL},
		{"FROM:<`id`@example.test>", true, SG_PATH_OK, "`id`@example.test"},
		{"FROM:<bob@exa$mple.test>", true, SG_PATH_BAD_ADDRESS, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%s", cases[i].args);
		struct sg_path_cmd pc;
		const char *prefix = strncasecmp(cases[i].args, "TO", 2) == 0 && cases[i].allow_empty == false
					     ? "TO:"
					     : "FROM:";
		enum sg_path_err r = sg_cmd_parse_path(buf, prefix, cases[i].allow_empty, &pc);
		if (r != cases[i].want)
			fail_msg("case %zu '%s': got %d want %d", i, cases[i].args, r, cases[i].want);
		if (cases[i].path != NULL)
			assert_string_equal(pc.path, cases[i].path);
	}
}

static void test_params(void **state)
{
	char buf[256] = "FROM:<a@example.test> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=<>";
	struct sg_path_cmd pc;
	assert_int_equal(sg_cmd_parse_path(buf, "FROM:", true, &pc), SG_PATH_OK);
	assert_int_equal(pc.nparams, 4);
	assert_string_equal(sg_path_param(&pc, "SIZE")->value, "1000");
	assert_string_equal(sg_path_param(&pc, "BODY")->value, "8BITMIME");
	assert_null(sg_path_param(&pc, "SMTPUTF8")->value);
	assert_string_equal(sg_path_param(&pc, "AUTH")->value, "<>");
	char bad[] = "FROM:<a@example.test> SIZE=1\x01";
	assert_int_equal(sg_cmd_parse_path(bad, "FROM:", true, &pc), SG_PATH_SYNTAX);
	char utf8[] = "FROM:<j\xc3\xb6rg@example.test> SMTPUTF8";
	assert_int_equal(sg_cmd_parse_path(utf8, "FROM:", true, &pc), SG_PATH_OK);
	assert_true(pc.utf8);
}

static void test_xtext(void **state)
{
	char out[64];
	assert_int_equal(sg_xtext_decode("alice+40example.test", out, sizeof(out)), 0);
	assert_string_equal(out, "alice@example.test");
	assert_int_equal(sg_xtext_decode("<>", out, sizeof(out)), 0);
	assert_int_equal(sg_xtext_decode("a+0D+0Ab", out, sizeof(out)), -1); /* CR LF hidden */
	assert_int_equal(sg_xtext_decode("a+0", out, sizeof(out)), -1);
	assert_int_equal(sg_xtext_decode("a+zz", out, sizeof(out)), -1);
	assert_int_equal(sg_xtext_decode("a=b", out, sizeof(out)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_xtext),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
