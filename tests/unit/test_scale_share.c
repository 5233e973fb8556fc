/* What several nodes share through PostgreSQL, without a database: the
 * throttle's observer and remote_ functions (two throttles standing for two
 * nodes, wired as throttle_pg.c wires them), and the events payload parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/util.h"
#include "store/events_int.h"
#include "store/throttle.h"

/* the throttle reads the clock itself on a success: the tests use it too */
#define T0 sg_now_ms()

static const struct sg_throttle_cfg cfg = {
	.ip_threshold = 4,
	.account_threshold = 100,
	.window_ms = 60000,
	.cooloff_ms = 60000,
	.base_delay_ms = 10,
	.max_delay_ms = 100,
	.max_entries = 1000,
	.repeat_window_ms = 300000,
};

struct seen {
	unsigned failed, ok;
	char addr[64], account[64];
	struct sg_throttle *peer;  /* the other node: gets what this one counted */
};

static void observe(void *ctx, bool failed, const char *addr_key, const char *account)
{
	struct seen *s = ctx;
	if (failed)
		s->failed++;
	else
		s->ok++;
	snprintf(s->addr, sizeof(s->addr), "%s", addr_key);
	snprintf(s->account, sizeof(s->account), "%s", account);
	if (s->peer != NULL) {
		if (failed)
			sg_throttle_remote_failed(s->peer, addr_key, account, sg_now_ms());
		else
			sg_throttle_remote_ok(s->peer, addr_key, account);
	}
}

/* Guesses alternating between two nodes are refused after the threshold in
 * all, as on one node. */
static void test_two_nodes_one_threshold(void **state)
{
	struct sg_throttle *a = sg_throttle_new(&cfg), *b = sg_throttle_new(&cfg);
	struct seen sa = {.peer = b}, sb = {.peer = a};
	sg_throttle_set_observer(a, observe, &sa);
	sg_throttle_set_observer(b, observe, &sb);
	uint8_t tag[SG_THROTTLE_TAG_LEN];
	for (int i = 0; i < 4; i++) {
		struct sg_throttle *t = i % 2 == 0 ? a : b;
		assert_true(sg_throttle_auth_allowed(t, "192.0.2.7", T0 + 0, NULL));
		char guess[16];
		snprintf(guess, sizeof(guess), "guess-%d", i);
		sg_throttle_secret_tag(t, NULL, guess, strlen(guess), tag);
		sg_throttle_auth_failed(t, "192.0.2.7", "victim", tag, T0 + 0);
	}
	assert_int_equal(sa.failed, 2);
	assert_int_equal(sb.failed, 2);
	assert_string_equal(sa.addr, "192.0.2.7");
	assert_string_equal(sa.account, "victim");
	assert_false(sg_throttle_auth_allowed(a, "192.0.2.7", T0 + 1, NULL));
	assert_false(sg_throttle_auth_allowed(b, "192.0.2.7", T0 + 1, NULL));
	assert_true(sg_throttle_auth_allowed(b, "192.0.2.8", T0 + 1, NULL));
	sg_throttle_free(&a);
	sg_throttle_free(&b);
}

/* A repeated secret is not counted, so it is not published either; a
 * success is published only when it forgave something; remote events are
 * not echoed back to the observer. */
static void test_observer_only_on_changes(void **state)
{
	struct sg_throttle *a = sg_throttle_new(&cfg);
	struct seen sa = {0};
	sg_throttle_set_observer(a, observe, &sa);
	uint8_t tag[SG_THROTTLE_TAG_LEN];
	sg_throttle_secret_tag(a, NULL, "typo", 4, tag);
	sg_throttle_auth_failed(a, "192.0.2.9", "alice", tag, T0 + 0);
	sg_throttle_auth_failed(a, "192.0.2.9", "alice", tag, T0 + 1);
	assert_int_equal(sa.failed, 1);
	sg_throttle_auth_ok(a, "192.0.2.10", "alice"); /* nothing to forgive */
	assert_int_equal(sa.ok, 0);
	sg_throttle_auth_ok(a, "192.0.2.9", "alice");
	assert_int_equal(sa.ok, 1);
	sg_throttle_remote_failed(a, "192.0.2.11", "bob", T0 + 2);
	sg_throttle_remote_ok(a, "192.0.2.11", "bob");
	assert_int_equal(sa.failed, 1);
	assert_int_equal(sa.ok, 1);
	/* a success elsewhere forgives what the address charged to the account */
	for (int i = 0; i < 3; i++)
		sg_throttle_remote_failed(a, "192.0.2.12", "carol", T0 + 3);
	sg_throttle_remote_ok(a, "192.0.2.12", "carol");
	sg_throttle_remote_failed(a, "192.0.2.12", "carol", T0 + 4);
	assert_true(sg_throttle_auth_allowed(a, "192.0.2.12", T0 + 5, NULL));
	sg_throttle_free(&a);
}

static void test_events_payload(void **state)
{
	const char *type = NULL, *json = NULL;
	char tb[16];
	assert_int_equal(sg_events_pg_parse("n2\tauth\t{\"a\":1}", "n1", &type, &json, tb, sizeof(tb)), 1);
	assert_string_equal(type, "auth");
	assert_string_equal(json, "{\"a\":1}");
	assert_int_equal(sg_events_pg_parse("n2\tmessage\t{}", "n1", &type, &json, tb, sizeof(tb)), 1);
	assert_string_equal(type, "message");
	/* our own */
	assert_int_equal(sg_events_pg_parse("n1\tauth\t{}", "n1", &type, &json, tb, sizeof(tb)), 0);
	/* malformed: no tabs, unknown type, a type longer than the buffer */
	assert_int_equal(sg_events_pg_parse("n2 auth {}", "n1", &type, &json, tb, sizeof(tb)), -1);
	assert_int_equal(sg_events_pg_parse("n2\tauth", "n1", &type, &json, tb, sizeof(tb)), -1);
	assert_int_equal(sg_events_pg_parse("n2\tnope\t{}", "n1", &type, &json, tb, sizeof(tb)), -1);
	assert_int_equal(sg_events_pg_parse("n2\tabcdefghijklmnopqrstuvwxyz\t{}", "n1", &type, &json, tb, sizeof(tb)),
			 -1);
	/* a node id that only starts like ours is another node */
	assert_int_equal(sg_events_pg_parse("n10\tauth\t{}", "n1", &type, &json, tb, sizeof(tb)), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_nodes_one_threshold),
		cmocka_unit_test(test_observer_only_on_changes),
		cmocka_unit_test(test_events_payload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
