/* The shared throttle (store/throttle.h): a success clears only its own
 * account's failures from the address, IPv6 counted per prefix, a full table
 * still throttles new keys (LRU eviction), the same failed secret counts once,
 * canonical account keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/cred.h"
#include "store/throttle.h"

static const struct sg_throttle_cfg base = {
	.ip_threshold = 5,
	.account_threshold = 100,
	.window_ms = 60000,
	.cooloff_ms = 60000,
	.base_delay_ms = 10,
	.max_delay_ms = 100,
	.max_entries = 1000,
	.repeat_window_ms = 300000,
};

static const uint8_t *tag(struct sg_throttle *t, const char *secret, uint8_t out[SG_THROTTLE_TAG_LEN])
{
	sg_throttle_secret_tag(t, NULL, secret, strlen(secret), out);
	return out;
}

/* issue 10 item 5: an attacker holding one account alternates guesses against
 * a victim with logins of its own: the address still reaches the threshold. */
static void test_success_clears_only_own_account(void **state)
{
	struct sg_throttle *t = sg_throttle_new(&base);
	uint64_t now = 1000;
	for (int round = 0; round < 4; round++) {
		assert_true(sg_throttle_auth_allowed(t, "192.0.2.1", now, NULL));
		sg_throttle_auth_failed(t, "192.0.2.1", "victim@example.test", NULL, now++);
		sg_throttle_auth_ok(t, "192.0.2.1", "attacker@example.test");
	}
	sg_throttle_auth_failed(t, "192.0.2.1", "victim@example.test", NULL, now++);
	uint64_t retry = 0;
	assert_false(sg_throttle_auth_allowed(t, "192.0.2.1", now, &retry));
	assert_true(retry > 0 && retry <= 60000);
	/* the owner's own mistakes are forgiven by the owner's success */
	struct sg_throttle *t2 = sg_throttle_new(&base);
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 4; i++)
			sg_throttle_auth_failed(t2, "192.0.2.2", "bob", NULL, now++);
		sg_throttle_auth_ok(t2, "192.0.2.2", "bob");
		assert_true(sg_throttle_auth_allowed(t2, "192.0.2.2", now, NULL));
	}
	sg_throttle_free(&t);
	sg_throttle_free(&t2);
	assert_null(t);
}

/* item 7: a /64 is one client for every per-address limit */
static void test_ipv6_prefix(void **state)
{
	struct sg_throttle *t = sg_throttle_new(&base);
	char k[128];
	sg_throttle_addr_key(t, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", k, sizeof(k));
	assert_string_equal(k, "2001:db8:1:2::/64");
	sg_throttle_addr_key(t, "::ffff:192.0.2.7", k, sizeof(k));
	assert_string_equal(k, "192.0.2.7");
	sg_throttle_addr_key(t, "192.0.2.7", k, sizeof(k));
	assert_string_equal(k, "192.0.2.7");
	assert_int_equal(sg_throttle_conn_add(t, "2001:db8:1:2::1"), 1);
	assert_int_equal(sg_throttle_conn_add(t, "2001:db8:1:2:ffff::9"), 2);
	assert_int_equal(sg_throttle_conn_add(t, "2001:db8:1:3::1"), 1);
	sg_throttle_conn_del(t, "2001:db8:1:2::77");
	assert_int_equal(sg_throttle_conn_add(t, "2001:db8:1:2::1"), 2);
	uint64_t now = 1000;
	for (unsigned i = 0; i < 5; i++) {
		char ip[64];
		snprintf(ip, sizeof(ip), "2001:db8:9:9::%x", i + 1);
		assert_true(sg_throttle_auth_allowed(t, ip, now, NULL));
		sg_throttle_auth_failed(t, ip, "x", NULL, now++);
	}
	assert_false(sg_throttle_auth_allowed(t, "2001:db8:9:9:1234::1", now, NULL));
	assert_true(sg_throttle_auth_allowed(t, "2001:db8:9:a::1", now, NULL));
	sg_throttle_free(&t);
	/* a configured /48 */
	struct sg_throttle_cfg c48 = base;
	c48.ipv6_prefix = 48;
	t = sg_throttle_new(&c48);
	sg_throttle_addr_key(t, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", k, sizeof(k));
	assert_string_equal(k, "2001:db8:1::/48");
	sg_throttle_free(&t);
}

/* item 26: past the capacity new keys are still counted and throttled */
static void test_full_table_still_throttles(void **state)
{
	struct sg_throttle_cfg c = base;
	c.max_entries = 64;
	struct sg_throttle *t = sg_throttle_new(&c);
	uint64_t now = 1000;
	char ip[64];
	for (unsigned i = 0; i < 500; i++) {
		snprintf(ip, sizeof(ip), "10.0.%u.%u", i / 250, i % 250);
		sg_throttle_auth_failed(t, ip, "someone", NULL, now++);
	}
	assert_true(sg_throttle_entries(t) <= 64);
	for (unsigned i = 0; i < 5; i++) {
		assert_true(sg_throttle_auth_allowed(t, "198.51.100.9", now, NULL));
		sg_throttle_auth_failed(t, "198.51.100.9", "victim", NULL, now++);
	}
	assert_false(sg_throttle_auth_allowed(t, "198.51.100.9", now, NULL));
	/* a connection count is never evicted while the connection lives */
	assert_int_equal(sg_throttle_conn_add(t, "203.0.113.1"), 1);
	for (unsigned i = 0; i < 500; i++) {
		snprintf(ip, sizeof(ip), "10.1.%u.%u", i / 250, i % 250);
		sg_throttle_auth_failed(t, ip, NULL, NULL, now++);
	}
	assert_int_equal(sg_throttle_conn_add(t, "203.0.113.1"), 2);
	sg_throttle_free(&t);
}

/* issue 16 item 2: the same failed secret again counts once; different ones each count */
static void test_same_secret_counts_once(void **state)
{
	struct sg_throttle *t = sg_throttle_new(&base);
	uint8_t a[SG_THROTTLE_TAG_LEN], b[SG_THROTTLE_TAG_LEN];
	uint64_t now = 1000;
	for (int i = 0; i < 50; i++)
		sg_throttle_auth_failed(t, "192.0.2.3", "alice", tag(t, "typo", a), now++);
	assert_true(sg_throttle_auth_allowed(t, "192.0.2.3", now, NULL));
	for (int i = 0; i < 4; i++) {
		char pw[16];
		snprintf(pw, sizeof(pw), "guess%d", i);
		sg_throttle_auth_failed(t, "192.0.2.3", "alice", tag(t, pw, b), now++);
	}
	assert_false(sg_throttle_auth_allowed(t, "192.0.2.3", now, NULL));
	/* the same secret for another account, or after the window, counts */
	struct sg_throttle_cfg c2 = base;
	c2.window_ms = 600000;
	struct sg_throttle *t2 = sg_throttle_new(&c2);
	sg_throttle_auth_failed(t2, "192.0.2.4", "alice", tag(t2, "typo", a), now);
	sg_throttle_auth_failed(t2, "192.0.2.4", "bob", tag(t2, "typo", a), now);
	sg_throttle_auth_failed(t2, "192.0.2.4", "alice", tag(t2, "typo", a), now + 300001);
	sg_throttle_auth_failed(t2, "192.0.2.4", "carol", NULL, now + 300002);
	sg_throttle_auth_failed(t2, "192.0.2.4", "carol", NULL, now + 300003);
	assert_false(sg_throttle_auth_allowed(t2, "192.0.2.4", now + 300004, NULL));
	/* tags are keyed: another process (key) gives another tag */
	uint8_t a2[SG_THROTTLE_TAG_LEN];
	tag(t, "typo", a);
	tag(t2, "typo", a2);
	assert_memory_not_equal(a, a2, sizeof(a));
	sg_throttle_free(&t);
	sg_throttle_free(&t2);
}

/* item 6: one key per account whatever the case of the domain */
static void test_canonical_login(void **state)
{
	char dir[] = "/tmp/sg-throttle-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/c.db", dir);
	struct sg_cred_store *s = NULL;
	const char *err = NULL;
	assert_int_equal(sg_cred_open(path, &s, &err), 0);
	struct sg_cred_params p = {.scram_iterations = 4096};
	assert_int_equal(sg_cred_add(s, "u11@many.test", "pw-u11-xyz", &p, &err), 0);
	char out[256];
	assert_int_equal(sg_throttle_canonical_login(s, "u11@MaNy.TeSt", out, sizeof(out)), 1);
	assert_string_equal(out, "u11@many.test");
	assert_int_equal(sg_throttle_canonical_login(s, "Ghost@ExAmPle.TEST", out, sizeof(out)), 0);
	assert_string_equal(out, "Ghost@example.test");
	assert_int_equal(sg_throttle_canonical_login(NULL, "NoDomain", out, sizeof(out)), 0);
	assert_string_equal(out, "NoDomain");
	sg_cred_close(&s);
	unlink(path);
	char wal[300];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	unlink(wal);
	snprintf(wal, sizeof(wal), "%s-shm", path);
	unlink(wal);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_clears_only_own_account),
		cmocka_unit_test(test_ipv6_prefix),
		cmocka_unit_test(test_full_table_still_throttles),
		cmocka_unit_test(test_same_secret_counts_once),
		cmocka_unit_test(test_canonical_login),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
