/* The PLAIN/LOGIN auth cache: hits only for the same login and password, while
 * the store's generation is unchanged and the entry is young. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/auth_cache.h"
#include "store/cred.h"

static void test_hits_and_misses(void **state)
{
	struct sg_auth_cache *c = sg_auth_cache_new(60000, 64);
	struct sg_account a = {.id = 7, .login = "alice@example.test"};
	struct sg_account out;
	assert_false(sg_auth_cache_get(c, "alice@example.test", "s3cret", 1, &out));
	sg_auth_cache_put(c, "alice@example.test", "s3cret", 1, &a);
	assert_true(sg_auth_cache_get(c, "alice@example.test", "s3cret", 1, &out));
	assert_int_equal(out.id, 7);
	assert_false(sg_auth_cache_get(c, "alice@example.test", "wrong", 1, &out));
	assert_false(sg_auth_cache_get(c, "alice@example.tes", "ts3cret", 1, &out)); /* NUL separator */
	/* passwd / disable / del bump the generation: the entry is gone */
	assert_false(sg_auth_cache_get(c, "alice@example.test", "s3cret", 2, &out));
	assert_false(sg_auth_cache_get(c, "alice@example.test", "s3cret", 1, &out));
	sg_auth_cache_free(&c);
	assert_null(c);
}

static void test_ttl(void **state)
{
	struct sg_auth_cache *c = sg_auth_cache_new(50, 64);
	struct sg_account a = {.id = 1, .login = "bob"};
	struct sg_account out;
	sg_auth_cache_put(c, "bob", "pw", 3, &a);
	assert_true(sg_auth_cache_get(c, "bob", "pw", 3, &out));
	usleep(80 * 1000);
	assert_false(sg_auth_cache_get(c, "bob", "pw", 3, &out));
	sg_auth_cache_free(&c);
}

static void test_store_integration(void **state)
{
	char dir[] = "/tmp/sg-authcache-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/smtpgate.db", dir);
	struct sg_cred_store *s;
	const char *err;
	assert_int_equal(sg_cred_open(path, &s, &err), 0);
	struct sg_cred_params p = {.scram_iterations = 4096};
	assert_int_equal(sg_cred_add(s, "carol", "first-pw", &p, &err), 0);
	sg_cred_set_auth_cache(s, 60000, 64);
	struct sg_account acct;
	const char *reason;
	assert_int_equal(sg_cred_check_password(s, "carol", "first-pw", &acct, &reason), 1);
	assert_int_equal(sg_cred_check_password(s, "carol", "first-pw", &acct, &reason), 1); /* cached */
	/* a password change invalidates the cached success */
	assert_int_equal(sg_cred_set_password(s, "carol", "second-pw", &p, &err), 0);
	assert_int_equal(sg_cred_check_password(s, "carol", "first-pw", &acct, &reason), 0);
	assert_int_equal(sg_cred_check_password(s, "carol", "second-pw", &acct, &reason), 1);
	/* disabling too */
	assert_int_equal(sg_cred_set_disabled(s, "carol", true, &err), 0);
	assert_int_equal(sg_cred_check_password(s, "carol", "second-pw", &acct, &reason), 0);
	assert_string_equal(reason, "disabled");
	sg_cred_close(&s);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hits_and_misses),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_store_integration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
