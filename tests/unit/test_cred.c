/* Credential store on SQLite: accounts, passwords, verifiers, addresses,
 * generation across handles, file mode, concurrent lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/util.h"
#include "store/cred.h"
#include "store/verifier.h"

struct fx {
	char dir[64];
	char path[128];
	struct sg_cred_store *s;
};

static int setup(void **state)
{
	struct fx *f = sg_calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/sg-test-cred-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/smtpgate.db", f->dir);
	const char *err = NULL;
	if (sg_cred_open(f->path, &f->s, &err) != 0) {
		fprintf(stderr, "open: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sg_cred_close(&f->s);
	char *cmd = sg_asprintf("rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	free(cmd);
	free(f);
	return 0;
}

struct list_acc {
	int n;
	char buf[512];
};

static void list_cb(void *ctx, const struct sg_account *a, const char *addresses)
{
	struct list_acc *acc = ctx;
	size_t used = strlen(acc->buf);
	snprintf(acc->buf + used, sizeof(acc->buf) - used, "%s%s[%s];", a->login,
		 a->disabled ? "!" : "", addresses);
	acc->n++;
}

static void test_open_mode(void **state)
{
	struct fx *f = *state;
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* the directory must exist */
	struct sg_cred_store *s = NULL;
	const char *err = NULL;
	assert_int_equal(sg_cred_open("/nonexistent-dir-sg/x.db", &s, &err), -1);
	assert_null(s);
	assert_non_null(err);
}

/* Issue 10 item 23: NT hash and CRAM-MD5 state only when asked for; passwd
 * without them removes those kept before. */
static void test_legacy_verifiers_opt_in(void **state)
{
	struct fx *f = *state;
	const char *err = NULL;
	struct sg_account a;
	struct sg_verifier v;
	assert_int_equal(sg_cred_add(f->s, "plain", "pw-1", NULL, &err), 0);
	assert_int_equal(sg_cred_lookup(f->s, "plain", SG_CRED_NT, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_NONE);
	assert_int_equal(sg_cred_lookup(f->s, "plain", SG_CRED_CRAM_MD5, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_NONE);
	assert_int_equal(sg_cred_lookup(f->s, "plain", SG_CRED_SCRAM_SHA256, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_SCRAM_SHA256);
	/* a non-UTF-8 password is refused even without the NT hash */
	assert_int_equal(sg_cred_add(f->s, "bad", "\xff\xfe", NULL, &err), -1);

	struct sg_cred_params only_nt = {.legacy = SG_LEGACY_NTLM};
	assert_int_equal(sg_cred_set_password(f->s, "plain", "pw-2", &only_nt, &err), 0);
	assert_int_equal(sg_cred_lookup(f->s, "plain", SG_CRED_NT, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_NT);
	assert_int_equal(sg_cred_lookup(f->s, "plain", SG_CRED_CRAM_MD5, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_NONE);
	assert_int_equal(sg_cred_set_password(f->s, "plain", "pw-3", NULL, &err), 0);
	assert_int_equal(sg_cred_lookup(f->s, "plain", SG_CRED_NT, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_NONE);
	memset(&v, 0, sizeof(v));

	unsigned bits = 99;
	const char *bad = NULL;
	assert_int_equal(sg_cred_legacy_parse("ntlm, CRAM-MD5", &bits, &bad), 0);
	assert_int_equal(bits, SG_LEGACY_NTLM | SG_LEGACY_CRAM_MD5);
	assert_int_equal(sg_cred_legacy_parse("none", &bits, &bad), 0);
	assert_int_equal(bits, 0);
	assert_int_equal(sg_cred_legacy_parse("", &bits, &bad), 0);
	assert_int_equal(bits, 0);
	assert_int_equal(sg_cred_legacy_parse("ntlm md4", &bits, &bad), -1);
	assert_string_equal(bad, "md4");
}

static void test_add_lookup_check(void **state)
{
	struct fx *f = *state;
	const char *err = NULL, *reason = NULL;
	struct sg_cred_params p = {.scram_iterations = 4096, .legacy = SG_LEGACY_NTLM | SG_LEGACY_CRAM_MD5};
	assert_int_equal(sg_cred_add(f->s, "alice", "wonderland", &p, &err), 0);
	assert_int_equal(sg_cred_add(f->s, "alice", "other", NULL, &err), -1);
	assert_string_equal(err, "account 'alice' already exists");

	struct sg_account a;
	struct sg_verifier v;
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_NONE, &a, NULL), 1);
	assert_string_equal(a.login, "alice");
	assert_false(a.disabled);
	assert_int_equal(sg_cred_lookup(f->s, "Alice", SG_CRED_NONE, &a, NULL), 0);
	assert_int_equal(sg_cred_lookup(f->s, "bob", SG_CRED_NT, &a, &v), 0);

	/* every verifier kind was derived */
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_PASSWORD_HASH, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_PASSWORD_HASH);
	assert_int_equal(strncmp(v.u.crypt, "$y$", 3), 0);
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_CRAM_MD5, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_CRAM_MD5);
	{
		struct sg_verifier w;
		uint8_t r1[16], r2[16];
		sg_verifier_derive(SG_CRED_CRAM_MD5, "wonderland", 0, &w);
		sg_cram_md5_response(&v, (const uint8_t *)"<x@y>", 5, r1);
		sg_cram_md5_response(&w, (const uint8_t *)"<x@y>", 5, r2);
		assert_memory_equal(r1, r2, 16);
	}
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_SCRAM_SHA1, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_SCRAM_SHA1);
	assert_int_equal(v.u.scram.key_len, 20);
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_SCRAM_SHA256, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_SCRAM_SHA256);
	assert_int_equal(v.u.scram.iterations, 4096);
	{
		struct sg_verifier w;
		assert_int_equal(sg_verifier_derive_scram(SG_CRED_SCRAM_SHA256, "wonderland", v.u.scram.salt,
							  v.u.scram.salt_len, 4096, &w), 0);
		assert_memory_equal(w.u.scram.stored_key, v.u.scram.stored_key, 32);
	}
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_NT, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_NT);

	assert_int_equal(sg_cred_check_password(f->s, "alice", "wonderland", &a, &reason), 1);
	assert_string_equal(a.login, "alice");
	assert_int_equal(sg_cred_check_password(f->s, "alice", "wonderlanD", &a, &reason), 0);
	assert_string_equal(reason, "wrong_password");
	assert_int_equal(sg_cred_check_password(f->s, "nobody", "wonderland", &a, &reason), 0);
	assert_string_equal(reason, "unknown_account");
	assert_int_equal(sg_cred_check_password(f->s, "", "x", &a, &reason), 0);
	assert_string_equal(reason, "unknown_account");

	/* disabled: refused even with the right password; enable again */
	assert_int_equal(sg_cred_set_disabled(f->s, "alice", true, &err), 0);
	assert_int_equal(sg_cred_check_password(f->s, "alice", "wonderland", &a, &reason), 0);
	assert_string_equal(reason, "disabled");
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_NONE, &a, NULL), 1);
	assert_true(a.disabled);
	assert_int_equal(sg_cred_set_disabled(f->s, "alice", false, &err), 0);
	assert_int_equal(sg_cred_check_password(f->s, "alice", "wonderland", &a, &reason), 1);
	assert_int_equal(sg_cred_set_disabled(f->s, "zed", true, &err), -1);
	assert_string_equal(err, "account 'zed' does not exist");

	/* new password */
	assert_int_equal(sg_cred_set_password(f->s, "alice", "looking-glass", &p, &err), 0);
	assert_int_equal(sg_cred_check_password(f->s, "alice", "wonderland", &a, &reason), 0);
	assert_int_equal(sg_cred_check_password(f->s, "alice", "looking-glass", &a, &reason), 1);
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_NT, &a, &v), 1);
	{
		struct sg_verifier w;
		sg_verifier_derive(SG_CRED_NT, "looking-glass", 0, &w);
		assert_memory_equal(w.u.nt, v.u.nt, 16);
	}
	assert_int_equal(sg_cred_set_password(f->s, "zed", "x", NULL, &err), -1);
	assert_int_equal(sg_cred_set_password(f->s, "alice", "", NULL, &err), -1);
	assert_int_equal(sg_cred_set_password(f->s, "alice", "\xff", NULL, &err), -1);

	/* delete */
	assert_int_equal(sg_cred_delete(f->s, "alice", &err), 0);
	assert_int_equal(sg_cred_lookup(f->s, "alice", SG_CRED_NONE, &a, NULL), 0);
	assert_int_equal(sg_cred_check_password(f->s, "alice", "looking-glass", &a, &reason), 0);
	assert_string_equal(reason, "unknown_account");
	assert_int_equal(sg_cred_delete(f->s, "alice", &err), -1);
	assert_string_equal(err, "account 'alice' does not exist");
}

static void test_validation(void **state)
{
	struct fx *f = *state;
	const char *err;
	char big[300];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	static const char *const bad_logins[] = {"", ".", "..", "a b", "a/b", "a\tb", "a\x7f"};
	for (size_t i = 0; i < sizeof(bad_logins) / sizeof(bad_logins[0]); i++) {
		err = NULL;
		assert_int_equal(sg_cred_add(f->s, bad_logins[i], "pw", NULL, &err), -1);
		assert_non_null(err);
	}
	assert_int_equal(sg_cred_add(f->s, big, "pw", NULL, &err), -1);
	big[255] = '\0';
	assert_int_equal(sg_cred_validate_login(big, &err), 0);
	assert_int_equal(sg_cred_add(f->s, "ok", "", NULL, &err), -1);
	assert_string_equal(err, "password must not be empty");

	static const char *const bad_addr[] = {"", "a", "a@", "a@b@c", "@", "a b@c", "a@b\r"};
	for (size_t i = 0; i < sizeof(bad_addr) / sizeof(bad_addr[0]); i++)
		assert_int_equal(sg_cred_validate_address(bad_addr[i], &err), -1);
	assert_int_equal(sg_cred_validate_address("a@b", &err), 0);
	assert_int_equal(sg_cred_validate_address("@b.example", &err), 0);
}

static void test_addresses(void **state)
{
	struct fx *f = *state;
	const char *err = NULL;
	char owner[256];
	assert_int_equal(sg_cred_add(f->s, "bob", "pw1", NULL, &err), 0);
	assert_int_equal(sg_cred_add(f->s, "carol@Example.ORG", "pw2", NULL, &err), 0);
	assert_int_equal(sg_cred_add(f->s, "dave", "pw3", NULL, &err), 0);

	/* login that is an address: domain case-folded, implicitly owned */
	struct sg_account a;
	assert_int_equal(sg_cred_lookup(f->s, "carol@example.org", SG_CRED_NONE, &a, NULL), 1);
	assert_string_equal(a.login, "carol@example.org");
	assert_int_equal(sg_cred_lookup(f->s, "carol@EXAMPLE.org", SG_CRED_NONE, &a, NULL), 1);
	assert_int_equal(sg_cred_lookup(f->s, "Carol@example.org", SG_CRED_NONE, &a, NULL), 0);
	assert_int_equal(sg_cred_owns_address(f->s, "carol@example.org", "carol@EXAMPLE.org"), 1);
	assert_int_equal(sg_cred_find_owner(f->s, "carol@example.ORG", owner, sizeof(owner)), 1);
	assert_string_equal(owner, "carol@example.org");
	assert_int_equal(sg_cred_domain_is_local(f->s, "Example.Org"), 1);

	assert_int_equal(sg_cred_add_address(f->s, "bob", "bob@Example.COM", &err), 0);
	assert_int_equal(sg_cred_add_address(f->s, "bob", "bob@example.com", &err), -1);
	assert_string_equal(err, "account 'bob' already has address 'bob@example.com'");
	assert_int_equal(sg_cred_add_address(f->s, "dave", "bob@example.com", &err), -1);
	assert_string_equal(err, "address 'bob@example.com' already belongs to account 'bob'");
	assert_int_equal(sg_cred_add_address(f->s, "dave", "carol@example.org", &err), -1);
	assert_int_equal(sg_cred_add_address(f->s, "nobody", "x@y", &err), -1);
	assert_string_equal(err, "account 'nobody' does not exist");
	assert_int_equal(sg_cred_add_address(f->s, "bob", "bad", &err), -1);
	assert_int_equal(sg_cred_add_address(f->s, "dave", "@Catch.Example", &err), 0);
	/* a new login equal to an existing address is refused */
	assert_int_equal(sg_cred_add(f->s, "bob@example.com", "pw", NULL, &err), -1);

	assert_int_equal(sg_cred_owns_address(f->s, "bob", "bob@example.com"), 1);
	assert_int_equal(sg_cred_owns_address(f->s, "bob", "bob@EXAMPLE.com"), 1);
	assert_int_equal(sg_cred_owns_address(f->s, "bob", "other@example.com"), 0);
	assert_int_equal(sg_cred_owns_address(f->s, "dave", "bob@example.com"), 0);
	assert_int_equal(sg_cred_owns_address(f->s, "dave", "anyone@catch.example"), 1);
	assert_int_equal(sg_cred_owns_address(f->s, "dave", "anyone@CATCH.example"), 1);
	assert_int_equal(sg_cred_owns_address(f->s, "bob", "anyone@catch.example"), 0);
	assert_int_equal(sg_cred_owns_address(f->s, "bob", ""), 0);
	assert_int_equal(sg_cred_owns_address(f->s, "nobody", "bob@example.com"), 0);

	assert_int_equal(sg_cred_find_owner(f->s, "bob@example.com", owner, sizeof(owner)), 1);
	assert_string_equal(owner, "bob");
	assert_int_equal(sg_cred_find_owner(f->s, "zz@catch.example", owner, sizeof(owner)), 1);
	assert_string_equal(owner, "dave");
	assert_int_equal(sg_cred_find_owner(f->s, "zz@example.com", owner, sizeof(owner)), 0);
	assert_int_equal(sg_cred_find_owner(f->s, "", owner, sizeof(owner)), 0);
	assert_int_equal(sg_cred_find_owner(f->s, "@catch.example", owner, sizeof(owner)), 0);

	assert_int_equal(sg_cred_domain_is_local(f->s, "example.com"), 1);
	assert_int_equal(sg_cred_domain_is_local(f->s, "CATCH.example"), 1);
	assert_int_equal(sg_cred_domain_is_local(f->s, "elsewhere.example"), 0);
	assert_int_equal(sg_cred_domain_is_local(f->s, ""), 0);

	/* list */
	struct list_acc acc = {0};
	assert_int_equal(sg_cred_set_disabled(f->s, "dave", true, &err), 0);
	assert_int_equal(sg_cred_list(f->s, list_cb, &acc, &err), 0);
	assert_int_equal(acc.n, 3);
	assert_string_equal(acc.buf, "bob[bob@example.com];carol@example.org[];dave![@catch.example];");

	/* delete an address, then the account with its addresses */
	assert_int_equal(sg_cred_del_address(f->s, "bob", "bob@example.COM", &err), 0);
	assert_int_equal(sg_cred_del_address(f->s, "bob", "bob@example.com", &err), -1);
	assert_string_equal(err, "account 'bob' has no address 'bob@example.com'");
	assert_int_equal(sg_cred_find_owner(f->s, "bob@example.com", owner, sizeof(owner)), 0);
	assert_int_equal(sg_cred_domain_is_local(f->s, "example.com"), 0);
	assert_int_equal(sg_cred_delete(f->s, "dave", &err), 0);
	assert_int_equal(sg_cred_find_owner(f->s, "zz@catch.example", owner, sizeof(owner)), 0);
	/* the address is free again */
	assert_int_equal(sg_cred_add_address(f->s, "bob", "@catch.example", &err), 0);
}

static void test_generation(void **state)
{
	struct fx *f = *state;
	const char *err = NULL;
	struct sg_cred_store *other = NULL;
	assert_int_equal(sg_cred_open(f->path, &other, &err), 0);
	uint64_t g0 = sg_cred_generation(other), h0 = sg_cred_generation(f->s);
	assert_int_equal(g0, h0);
	assert_int_equal(sg_cred_add(f->s, "erin", "pw", NULL, &err), 0);
	uint64_t g1 = sg_cred_generation(other);
	assert_true(g1 > g0);
	assert_int_equal(sg_cred_generation(f->s), g1);
	assert_int_equal(sg_cred_set_password(other, "erin", "pw2", NULL, &err), 0);
	uint64_t g2 = sg_cred_generation(f->s);
	assert_true(g2 > g1);
	assert_int_equal(sg_cred_set_disabled(f->s, "erin", true, &err), 0);
	assert_true(sg_cred_generation(other) > g2);
	uint64_t g3 = sg_cred_generation(other);
	/* failed changes and lookups do not bump it */
	assert_int_equal(sg_cred_delete(f->s, "nobody", &err), -1);
	struct sg_account a;
	assert_int_equal(sg_cred_lookup(f->s, "erin", SG_CRED_NONE, &a, NULL), 1);
	assert_int_equal(sg_cred_generation(other), g3);
	assert_int_equal(sg_cred_delete(other, "erin", &err), 0);
	assert_true(sg_cred_generation(f->s) > g3);
	sg_cred_close(&other);
	assert_null(other);

	/* another process (as `smtpgate user passwd` would be) */
	uint64_t g4 = sg_cred_generation(f->s);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sg_cred_store *c = NULL;
		const char *e = NULL;
		int ok = sg_cred_open(f->path, &c, &e) == 0 &&
			 sg_cred_add(c, "frank", "pw", NULL, &e) == 0;
		sg_cred_close(&c);
		_exit(ok ? 0 : 1);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(sg_cred_generation(f->s) > g4);
	assert_int_equal(sg_cred_lookup(f->s, "frank", SG_CRED_NONE, &a, NULL), 1);
}

#define N_THREADS 8
#define N_LOOKUPS 300

struct thr {
	struct sg_cred_store *s;
	int failures;
};

static void *lookup_thread(void *arg)
{
	struct thr *t = arg;
	for (int i = 0; i < N_LOOKUPS; i++) {
		struct sg_account a;
		struct sg_verifier v;
		char login[32];
		snprintf(login, sizeof(login), "user%d", i % 5);
		if (sg_cred_lookup(t->s, login, SG_CRED_SCRAM_SHA256, &a, &v) != 1 ||
		    v.kind != SG_CRED_SCRAM_SHA256 || strcmp(a.login, login) != 0)
			t->failures++;
		if (sg_cred_lookup(t->s, "missing", SG_CRED_NT, &a, &v) != 0)
			t->failures++;
		if (sg_cred_domain_is_local(t->s, "threads.example") != 1)
			t->failures++;
	}
	const char *reason;
	struct sg_account a;
	if (sg_cred_check_password(t->s, "user1", "pw1", &a, &reason) != 1)
		t->failures++;
	return NULL;
}

static void test_threads(void **state)
{
	struct fx *f = *state;
	const char *err = NULL;
	struct sg_cred_params p = {.scram_iterations = 64};
	for (int i = 0; i < 5; i++) {
		char login[32], pw[32];
		snprintf(login, sizeof(login), "user%d", i);
		snprintf(pw, sizeof(pw), "pw%d", i);
		assert_int_equal(sg_cred_add(f->s, login, pw, &p, &err), 0);
	}
	assert_int_equal(sg_cred_add_address(f->s, "user0", "@threads.example", &err), 0);
	pthread_t th[N_THREADS];
	struct thr t[N_THREADS];
	for (int i = 0; i < N_THREADS; i++) {
		t[i].s = f->s;
		t[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, lookup_thread, &t[i]), 0);
	}
	/* a writer at the same time */
	for (int i = 0; i < 5; i++)
		assert_int_equal(sg_cred_set_disabled(f->s, "user4", i % 2 == 0, &err), 0);
	for (int i = 0; i < N_THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].failures, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_lookup_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_verifiers_opt_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
