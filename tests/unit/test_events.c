/* Auth event log: events are persisted by the background thread and
 * queryable (filters: login, result, "failed", before, limit), a reopened
 * log keeps them, and live subscribers get JSON for auth and message
 * events until they unsubscribe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/util.h"
#include "store/events.h"

struct fx {
	char dir[64];
	struct sg_events *ev;
};

static int setup(void **state)
{
	struct fx *x = sg_calloc(1, sizeof(*x));
	snprintf(x->dir, sizeof(x->dir), "/tmp/sg-test-events-XXXXXX");
	if (mkdtemp(x->dir) == NULL)
		return -1;
	if (sg_events_open(x->dir, &x->ev, NULL) != 0)
		return -1;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	sg_events_close(&x->ev);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
	if (system(cmd) != 0)
		return -1;
	free(x);
	return 0;
}

static void emit(struct sg_events *ev, int64_t t, const char *login, const char *mech,
		 const char *result, const char *reason, bool injected)
{
	struct sg_auth_event e;
	memset(&e, 0, sizeof(e));
	e.time_ms = t;
	sg_strlcpy(e.session, "s1", sizeof(e.session));
	sg_strlcpy(e.client_ip, "127.0.0.1", sizeof(e.client_ip));
	sg_strlcpy(e.listener, "submission", sizeof(e.listener));
	e.tls = true;
	sg_strlcpy(e.tls_version, "TLSv1.3", sizeof(e.tls_version));
	sg_strlcpy(e.mech, mech, sizeof(e.mech));
	sg_strlcpy(e.login, login, sizeof(e.login));
	sg_strlcpy(e.result, result, sizeof(e.result));
	sg_strlcpy(e.reason, reason, sizeof(e.reason));
	e.injected = injected;
	sg_events_auth(ev, &e);
}

static size_t query(struct sg_events *ev, const char *login, const char *result, int64_t before,
		    size_t limit, struct sg_auth_event_row **rows)
{
	struct sg_events_filter f = {.login = login, .result = result, .before_id = before, .limit = limit};
	size_t n = 0;
	const char *err = NULL;
	if (sg_events_query(ev, &f, rows, &n, &err) != 0)
		fail_msg("query: %s", err);
	return n;
}

static void test_persist_and_query(void **state)
{
	struct fx *x = *state;
	emit(x->ev, 1000, "alice", "PLAIN", "ok", "", false);
	emit(x->ev, 2000, "alice", "PLAIN", "fail", "wrong_password", false);
	emit(x->ev, 3000, "bob", "SCRAM-SHA-256", "fail", "unknown_account", false);
	emit(x->ev, 4000, "alice", "LOGIN", "fail", "injected", true);
	emit(x->ev, 5000, "bob", "CRAM-MD5", "tempfail", "store_error", false);

	struct sg_auth_event_row *rows = NULL;
	size_t n = query(x->ev, NULL, NULL, 0, 0, &rows);
	assert_int_equal(n, 5);
	assert_int_equal(rows[0].e.time_ms, 5000); /* newest first */
	assert_int_equal(rows[4].e.time_ms, 1000);
	assert_true(rows[0].id > rows[1].id);
	assert_string_equal(rows[1].e.reason, "injected");
	assert_true(rows[1].e.injected);
	assert_true(rows[0].e.tls);
	assert_string_equal(rows[0].e.tls_version, "TLSv1.3");
	int64_t second = rows[1].id;
	free(rows);

	n = query(x->ev, "alice", NULL, 0, 0, &rows);
	assert_int_equal(n, 3);
	free(rows);
	n = query(x->ev, "alice", "fail", 0, 0, &rows);
	assert_int_equal(n, 2);
	assert_string_equal(rows[1].e.reason, "wrong_password");
	free(rows);
	n = query(x->ev, NULL, "failed", 0, 0, &rows);
	assert_int_equal(n, 4);
	free(rows);
	n = query(x->ev, NULL, NULL, 0, 2, &rows);
	assert_int_equal(n, 2);
	free(rows);
	n = query(x->ev, NULL, NULL, second, 0, &rows);
	assert_int_equal(n, 3);
	assert_int_equal(rows[0].e.time_ms, 3000);
	free(rows);
	n = query(x->ev, "nobody", NULL, 0, 0, &rows);
	assert_int_equal(n, 0);
	assert_null(rows);

	/* reopen: still there */
	sg_events_close(&x->ev);
	assert_int_equal(sg_events_open(x->dir, &x->ev, NULL), 0);
	n = query(x->ev, NULL, NULL, 0, 0, &rows);
	assert_int_equal(n, 5);
	free(rows);
}

static void test_many(void **state)
{
	struct fx *x = *state;
	for (int i = 0; i < 3000; i++)
		emit(x->ev, 10000 + i, i % 2 ? "a" : "b", "PLAIN", i % 3 ? "ok" : "fail", "", false);
	struct sg_auth_event_row *rows = NULL;
	size_t n = query(x->ev, NULL, NULL, 0, 1000, &rows);
	assert_int_equal(n, 1000);
	assert_int_equal(rows[0].e.time_ms, 10000 + 2999);
	free(rows);
}

struct got {
	int auth, message;
	char last[2048];
};

static void on_event(void *ctx, const char *type, const char *json)
{
	struct got *g = ctx;
	if (strcmp(type, "auth") == 0)
		g->auth++;
	else if (strcmp(type, "message") == 0)
		g->message++;
	sg_strlcpy(g->last, json, sizeof(g->last));
}

static void test_subscribe(void **state)
{
	struct fx *x = *state;
	struct got g;
	memset(&g, 0, sizeof(g));
	int h = sg_events_subscribe(x->ev, on_event, &g);
	assert_true(h >= 0);
	emit(x->ev, 1795800000123, "alice\"x", "PLAIN", "fail", "wrong_password", true);
	assert_int_equal(g.auth, 1);
	assert_non_null(strstr(g.last, "\"login\":\"alice\\\"x\""));
	assert_non_null(strstr(g.last, "\"injected\":true"));
	assert_non_null(strstr(g.last, "\"reason\":\"wrong_password\""));
	assert_non_null(strstr(g.last, "\"time\":\"2026-"));
	struct sg_msg_event m;
	memset(&m, 0, sizeof(m));
	m.time_ms = 1;
	sg_strlcpy(m.login, "bob", sizeof(m.login));
	sg_strlcpy(m.id, "1.0123456789abcdef", sizeof(m.id));
	m.size = 42;
	sg_events_message(x->ev, &m);
	assert_int_equal(g.message, 1);
	assert_non_null(strstr(g.last, "\"size\":42"));
	sg_events_unsubscribe(x->ev, h);
	emit(x->ev, 1, "a", "PLAIN", "ok", "", false);
	assert_int_equal(g.auth, 1);

	/* bounded */
	struct got many[SG_EVENTS_MAX_SUBSCRIBERS + 1];
	int hs[SG_EVENTS_MAX_SUBSCRIBERS + 1];
	for (int i = 0; i < SG_EVENTS_MAX_SUBSCRIBERS; i++) {
		hs[i] = sg_events_subscribe(x->ev, on_event, &many[i]);
		assert_true(hs[i] >= 0);
	}
	assert_int_equal(sg_events_subscribe(x->ev, on_event, &many[SG_EVENTS_MAX_SUBSCRIBERS]), -1);
	for (int i = 0; i < SG_EVENTS_MAX_SUBSCRIBERS; i++)
		sg_events_unsubscribe(x->ev, hs[i]);
}

static void test_invalid_utf8(void **state)
{
	struct fx *x = *state;
	struct sg_auth_event e;
	memset(&e, 0, sizeof(e));
	sg_strlcpy(e.login, "\xff\xfe", sizeof(e.login));
	sg_strlcpy(e.result, "malformed", sizeof(e.result));
	char *j = sg_auth_event_json(&e, 7);
	assert_non_null(strstr(j, "\"id\":7"));
	assert_non_null(strstr(j, "\"login\":\"(invalid UTF-8)\""));
	free(j);
	(void)x;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_persist_and_query, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_utf8, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
