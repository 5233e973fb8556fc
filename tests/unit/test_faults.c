/* Fault rules: spec parsing, every firing mode (always, times N, every Nth,
 * probability 0 and 1), scoping by stage, listener and login, persistence
 * of counters, and a change made through a second handle (another process:
 * the CLI) reaching the first through PRAGMA data_version polling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/util.h"
#include "store/faults.h"

struct fx {
	char dir[64];
	struct sg_faults *f;
};

static int setup(void **state)
{
	struct fx *x = sg_calloc(1, sizeof(*x));
	snprintf(x->dir, sizeof(x->dir), "/tmp/sg-test-faults-XXXXXX");
	if (mkdtemp(x->dir) == NULL)
		return -1;
	const char *err = NULL;
	if (sg_faults_open(x->dir, &x->f, &err) != 0)
		return -1;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	sg_faults_close(&x->f);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
	if (system(cmd) != 0)
		return -1;
	free(x);
	return 0;
}

static long add(struct fx *x, const char *spec)
{
	struct sg_fault_rule r;
	const char *err = NULL;
	if (sg_faults_parse_spec(spec, &r, &err) < 0)
		fail_msg("parse '%s': %s", spec, err);
	long id = 0;
	assert_int_equal(sg_faults_add(x->f, &r, "cli", &id, &err), 0);
	assert_true(id > 0);
	return id;
}

static enum sg_fault_kind check(struct fx *x, enum sg_fault_stage st, const char *listener,
				const char *login)
{
	struct sg_fault_action a;
	sg_faults_check(x->f, st, listener, login, &a);
	return a.kind;
}

static void test_parse_spec(void **state)
{
	(void)state;
	struct sg_fault_rule r;
	const char *err = NULL;
	assert_int_equal(sg_faults_parse_spec("stage=auth reply=535 5.7.8 Authentication credentials invalid times=2",
					      &r, &err), 0);
	assert_int_equal(r.stage, SG_FAULT_AUTH);
	assert_int_equal(r.action.kind, SG_FAULT_REPLY);
	assert_int_equal(r.action.code, 535);
	assert_string_equal(r.action.enhanced, "5.7.8");
	assert_string_equal(r.action.text, "Authentication credentials invalid");
	assert_int_equal(r.when, SG_FAULT_TIMES);
	assert_int_equal(r.n, 2);

	assert_int_equal(sg_faults_parse_spec("stage=connect reply=421 4.7.0 Go away close listener=mx", &r, &err), 0);
	assert_int_equal(r.action.kind, SG_FAULT_REPLY_CLOSE);
	assert_string_equal(r.listener, "mx");
	assert_string_equal(r.action.text, "Go away");

	assert_int_equal(sg_faults_parse_spec("stage=mail delay=250", &r, &err), 0);
	assert_int_equal(r.action.kind, SG_FAULT_DELAY);
	assert_int_equal(r.action.delay_ms, 250);

	assert_int_equal(sg_faults_parse_spec("stage=rcpt drop every=3 login=a@b.test", &r, &err), 0);
	assert_int_equal(r.action.kind, SG_FAULT_DROP);
	assert_int_equal(r.when, SG_FAULT_EVERY);
	assert_string_equal(r.login, "a@b.test");

	assert_int_equal(sg_faults_parse_spec("stage=auth reply=454 probability=0.25", &r, &err), 0);
	assert_int_equal(r.action.code, 454);
	assert_string_equal(r.action.enhanced, "");
	assert_true(r.probability > 0.24 && r.probability < 0.26);

	/* refusals */
	const char *bad[] = {
		"reply=535 5.7.8 x",                      /* no stage */
		"stage=nope reply=535",                   /* unknown stage */
		"stage=auth",                             /* no action */
		"stage=auth reply=99 x",                  /* bad code */
		"stage=auth reply=535 4.7.8 x",           /* class mismatch */
		"stage=auth reply=535 5.7 x",             /* bad enhanced code */
		"stage=auth reply=535 x times=0",         /* N >= 1 */
		"stage=auth reply=535 x probability=1.5", /* 0..1 */
		"stage=auth reply=535 x times=2 every=3", /* one mode */
		"stage=auth close",                       /* close needs a reply */
		"bogus stage=auth reply=535",             /* stray word */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sg_faults_parse_spec(bad[i], &r, &err) == 0)
			fail_msg("accepted '%s'", bad[i]);
}

static void test_no_rules(void **state)
{
	struct fx *x = *state;
	for (int st = SG_FAULT_CONNECT; st <= SG_FAULT_DATA; st++)
		assert_int_equal(check(x, (enum sg_fault_stage)st, "mx", "a"), SG_FAULT_NONE);
}

static void test_always_and_stage(void **state)
{
	struct fx *x = *state;
	long id = add(x, "stage=auth reply=535 5.7.8 Authentication credentials invalid");
	struct sg_fault_action a;
	for (int i = 0; i < 5; i++) {
		sg_faults_check(x->f, SG_FAULT_AUTH, "submission", NULL, &a);
		assert_int_equal(a.kind, SG_FAULT_REPLY);
		assert_int_equal(a.code, 535);
		assert_int_equal(a.rule_id, id);
	}
	assert_int_equal(check(x, SG_FAULT_MAIL, "submission", NULL), SG_FAULT_NONE);
	assert_int_equal(sg_faults_delete(x->f, id, NULL), 1);
	assert_int_equal(sg_faults_delete(x->f, id, NULL), 0);
	assert_int_equal(check(x, SG_FAULT_AUTH, "submission", NULL), SG_FAULT_NONE);
}

static void test_times(void **state)
{
	struct fx *x = *state;
	add(x, "stage=auth reply=454 4.7.0 Temporary authentication failure times=2");
	assert_int_equal(check(x, SG_FAULT_AUTH, "mx", NULL), SG_FAULT_REPLY);
	assert_int_equal(check(x, SG_FAULT_AUTH, "mx", NULL), SG_FAULT_REPLY);
	for (int i = 0; i < 5; i++)
		assert_int_equal(check(x, SG_FAULT_AUTH, "mx", NULL), SG_FAULT_NONE);
	struct sg_fault_rule *rules = NULL;
	size_t n = 0;
	assert_int_equal(sg_faults_list(x->f, &rules, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rules[0].fired, 2);
	free(rules);
	/* the counter survives a restart: the rule stays used up */
	sg_faults_close(&x->f);
	assert_int_equal(sg_faults_open(x->dir, &x->f, NULL), 0);
	assert_int_equal(check(x, SG_FAULT_AUTH, "mx", NULL), SG_FAULT_NONE);
}

static void test_every(void **state)
{
	struct fx *x = *state;
	add(x, "stage=rcpt drop every=3");
	enum sg_fault_kind seen[9];
	for (int i = 0; i < 9; i++)
		seen[i] = check(x, SG_FAULT_RCPT, "mx", NULL);
	for (int i = 0; i < 9; i++)
		assert_int_equal(seen[i], (i % 3 == 2) ? SG_FAULT_DROP : SG_FAULT_NONE);
}

static void test_probability(void **state)
{
	struct fx *x = *state;
	long id0 = add(x, "stage=mail reply=451 4.3.0 never probability=0");
	for (int i = 0; i < 50; i++)
		assert_int_equal(check(x, SG_FAULT_MAIL, "mx", NULL), SG_FAULT_NONE);
	assert_int_equal(sg_faults_delete(x->f, id0, NULL), 1);
	add(x, "stage=mail reply=451 4.3.0 always probability=1");
	for (int i = 0; i < 50; i++)
		assert_int_equal(check(x, SG_FAULT_MAIL, "mx", NULL), SG_FAULT_REPLY);
}

static void test_scope(void **state)
{
	struct fx *x = *state;
	add(x, "stage=ehlo reply=421 4.7.0 bye close listener=submission");
	add(x, "stage=data reply=550 5.7.1 no login=alice@example.test");
	assert_int_equal(check(x, SG_FAULT_EHLO, "mx", NULL), SG_FAULT_NONE);
	assert_int_equal(check(x, SG_FAULT_EHLO, NULL, NULL), SG_FAULT_NONE);
	assert_int_equal(check(x, SG_FAULT_EHLO, "submission", NULL), SG_FAULT_REPLY_CLOSE);
	assert_int_equal(check(x, SG_FAULT_DATA, "mx", NULL), SG_FAULT_NONE);
	assert_int_equal(check(x, SG_FAULT_DATA, "mx", "bob@example.test"), SG_FAULT_NONE);
	assert_int_equal(check(x, SG_FAULT_DATA, "mx", "alice@example.test"), SG_FAULT_REPLY);
	/* one comparison rule for logins (issue 10 item 13): the local part is
	 * exact, the domain compared in lower case */
	assert_int_equal(check(x, SG_FAULT_DATA, "mx", "ALICE@example.test"), SG_FAULT_NONE);
	assert_int_equal(check(x, SG_FAULT_DATA, "mx", "alice@EXAMPLE.test"), SG_FAULT_REPLY);
}

static void test_other_handle(void **state)
{
	struct fx *x = *state;
	/* another handle stands for another process (the CLI) */
	struct sg_faults *cli = NULL;
	assert_int_equal(sg_faults_open(x->dir, &cli, NULL), 0);
	struct sg_fault_rule r;
	assert_int_equal(sg_faults_parse_spec("stage=connect drop", &r, NULL), 0);
	assert_int_equal(sg_faults_add(cli, &r, "cli", NULL, NULL), 0);
	bool seen = false;
	for (int i = 0; i < 40 && !seen; i++) { /* polled every 200 ms */
		seen = check(x, SG_FAULT_CONNECT, "mx", NULL) == SG_FAULT_DROP;
		if (!seen)
			usleep(50000);
	}
	assert_true(seen);
	size_t n = 0;
	assert_int_equal(sg_faults_clear(cli, NULL, &n, NULL), 0);
	assert_int_equal(n, 1);
	bool gone = false;
	for (int i = 0; i < 40 && !gone; i++) {
		gone = check(x, SG_FAULT_CONNECT, "mx", NULL) == SG_FAULT_NONE;
		if (!gone)
			usleep(50000);
	}
	assert_true(gone);
	sg_faults_close(&cli);
}

static void test_config_origin(void **state)
{
	struct fx *x = *state;
	add(x, "stage=auth drop");
	assert_int_equal(sg_faults_add_spec(x->f, "stage=mail drop", NULL), 0);
	assert_int_equal(sg_faults_add_spec(x->f, "stage=rcpt drop", NULL), 0);
	const char *err = NULL;
	assert_int_equal(sg_faults_add_spec(x->f, "stage=rcpt", &err), -1);
	assert_non_null(err);
	size_t n = 0;
	assert_int_equal(sg_faults_clear(x->f, "config", &n, NULL), 0);
	assert_int_equal(n, 2);
	struct sg_fault_rule *rules = NULL;
	assert_int_equal(sg_faults_list(x->f, &rules, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rules[0].origin, "cli");
	free(rules);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_spec),
		cmocka_unit_test_setup_teardown(test_no_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_always_and_stage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_times, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_handle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_origin, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
