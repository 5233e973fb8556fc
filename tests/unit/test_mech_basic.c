/* PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195) against a real temporary
 * SQLite credential store; the registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/util.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"
#include "store/cred.h"
#include "store/verifier.h"

struct fixture {
	char dir[64];
	char path[128];
	struct sg_cred_store *s;
	struct sg_sasl_server_env env;
};

static int setup(void **state)
{
	struct fixture *f = sg_calloc(1, sizeof(*f));
	const char *err = NULL;
	sg_strlcpy(f->dir, "/tmp/sg-mech-XXXXXX", sizeof(f->dir));
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/cred.db", f->dir);
	if (sg_cred_open(f->path, &f->s, &err) != 0)
		return -1;
	struct sg_cred_params p = {.scram_iterations = 4096, .legacy = SG_LEGACY_NTLM | SG_LEGACY_CRAM_MD5};
	if (sg_cred_add(f->s, "tim", "tanstaaftanstaaf", &p, &err) != 0 ||
	    sg_cred_add(f->s, "dora", "tanstaaftanstaaf", &p, &err) != 0 ||
	    sg_cred_set_disabled(f->s, "dora", true, &err) != 0) {
		fprintf(stderr, "store: %s\n", err);
		return -1;
	}
	f->env.creds = f->s;
	f->env.hostname = "postoffice.example";
	f->env.service = "smtp";
	f->env.tls = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[160];
	sg_cred_close(&f->s);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* One server step on a fresh state. */
static enum sg_mech_status one_step(struct fixture *f, const struct sg_mech *m, const void *in,
				    size_t inlen, struct sg_mech_result *res)
{
	void *st = m->server_start(&f->env);
	struct sg_buf out;
	sg_buf_init(&out, 4096);
	memset(res, 0, sizeof(*res));
	enum sg_mech_status r = m->server_step(st, in, inlen, &out, res);
	m->server_free(st);
	sg_buf_free(&out);
	return r;
}

#define S(lit) lit, sizeof(lit) - 1

static void test_plain(void **state)
{
	struct fixture *f = *state;
	const struct sg_mech *m = &sg_mech_plain;
	struct sg_mech_result res;
	char big[300];
	memset(big, 'a', sizeof(big));

	static const struct {
		const char *in;
		size_t len;
		enum sg_mech_status want;
		const char *reason;
	} table[] = {
		/* RFC 4616 section 4 examples */
		{S("\0tim\0tanstaaftanstaaf"), SG_MECH_OK, NULL},
		{S("tim\0tim\0tanstaaftanstaaf"), SG_MECH_OK, NULL},
		{S("Ursel\0Kurt\0xipj3plmq"), SG_MECH_FAIL, "bad_authzid"},
		{S("bob\0tim\0tanstaaftanstaaf"), SG_MECH_FAIL, "bad_authzid"},
		{S("\0tim\0tanstaaftanstaafX"), SG_MECH_FAIL, "wrong_password"},
		{S("\0nobody\0tanstaaftanstaaf"), SG_MECH_FAIL, "unknown_account"},
		{S("\0dora\0tanstaaftanstaaf"), SG_MECH_FAIL, "disabled"},
		/* malformed */
		{S(""), SG_MECH_MALFORMED, NULL},
		{S("tim"), SG_MECH_MALFORMED, NULL},
		{S("\0tim"), SG_MECH_MALFORMED, NULL},
		{S("\0tim\0"), SG_MECH_MALFORMED, NULL},           /* empty password */
		{S("\0\0tanstaaftanstaaf"), SG_MECH_MALFORMED, NULL}, /* empty authcid */
		{S("\0tim\0pw\0"), SG_MECH_MALFORMED, NULL},       /* three NULs */
		{S("a\0b\0c\0d"), SG_MECH_MALFORMED, NULL},
		{S("\0\0"), SG_MECH_MALFORMED, NULL},
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		enum sg_mech_status r = one_step(f, m, table[i].in, table[i].len, &res);
		if (r != table[i].want)
			fail_msg("PLAIN case %zu: got %d want %d (%s)", i, r, table[i].want,
				 res.reason ? res.reason : "");
		if (table[i].reason != NULL)
			assert_string_equal(res.reason, table[i].reason);
		if (r == SG_MECH_OK)
			assert_string_equal(res.login, "tim");
	}

	/* 256-octet authcid, password and authzid: cannot match, fail as bad credentials */
	uint8_t buf[600];
	size_t n = 0;
	buf[n++] = 0;
	memcpy(buf + n, big, 256), n += 256;
	buf[n++] = 0;
	memcpy(buf + n, "pw", 2), n += 2;
	assert_int_equal(one_step(f, m, buf, n, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "too_long");
	n = 0;
	buf[n++] = 0;
	memcpy(buf + n, "tim", 3), n += 3;
	buf[n++] = 0;
	memcpy(buf + n, big, 256), n += 256;
	assert_int_equal(one_step(f, m, buf, n, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "too_long");
	n = 0;
	memcpy(buf + n, big, 256), n += 256;
	buf[n++] = 0;
	memcpy(buf + n, "tim\0pw", 6), n += 6;
	assert_int_equal(one_step(f, m, buf, n, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "too_long");
	/* 255 octets is allowed (and simply wrong here) */
	n = 0;
	buf[n++] = 0;
	memcpy(buf + n, "tim", 3), n += 3;
	buf[n++] = 0;
	memcpy(buf + n, big, 255), n += 255;
	assert_int_equal(one_step(f, m, buf, n, &res), SG_MECH_FAIL);

	/* no initial response: an empty challenge first */
	void *st = m->server_start(&f->env);
	struct sg_buf out;
	sg_buf_init(&out, 4096);
	memset(&res, 0, sizeof(res));
	assert_int_equal(m->server_step(st, NULL, 0, &out, &res), SG_MECH_CONTINUE);
	assert_int_equal(out.len, 0);
	assert_int_equal(m->server_step(st, (const uint8_t *)"\0tim\0tanstaaftanstaaf", 21, &out,
					&res),
			 SG_MECH_OK);
	m->server_free(st);

	/* client side produces the RFC 4616 message */
	struct sg_sasl_client_env cenv = {.authcid = "tim", .password = "tanstaaftanstaaf"};
	const char *err = NULL;
	void *cst = m->client_start(&cenv, &err);
	assert_non_null(cst);
	sg_buf_reset(&out);
	assert_int_equal(m->client_step(cst, NULL, 0, &out, &err), SG_MECH_OK);
	assert_int_equal(out.len, 21);
	assert_memory_equal(out.data, "\0tim\0tanstaaftanstaaf", 21);
	assert_int_equal(m->client_step(cst, (const uint8_t *)"", 0, &out, &err), SG_MECH_FAIL);
	m->client_free(cst);
	sg_buf_free(&out);
}

static void test_login(void **state)
{
	struct fixture *f = *state;
	const struct sg_mech *m = &sg_mech_login;
	struct sg_mech_result res;
	struct sg_buf out;
	sg_buf_init(&out, 4096);
	assert_true((m->flags & (SG_MECH_F_SERVER_FIRST | SG_MECH_F_IR_OK | SG_MECH_F_PLAINTEXT)) ==
		    (SG_MECH_F_SERVER_FIRST | SG_MECH_F_IR_OK | SG_MECH_F_PLAINTEXT));

	/* prompts, then success */
	void *st = m->server_start(&f->env);
	memset(&res, 0, sizeof(res));
	assert_int_equal(m->server_step(st, NULL, 0, &out, &res), SG_MECH_CONTINUE);
	assert_string_equal(sg_buf_str(&out), "Username:");
	sg_buf_reset(&out);
	assert_int_equal(m->server_step(st, (const uint8_t *)"tim", 3, &out, &res), SG_MECH_CONTINUE);
	assert_string_equal(sg_buf_str(&out), "Password:");
	sg_buf_reset(&out);
	assert_int_equal(m->server_step(st, (const uint8_t *)"tanstaaftanstaaf", 16, &out, &res),
			 SG_MECH_OK);
	assert_string_equal(res.login, "tim");
	assert_int_equal(m->server_step(st, (const uint8_t *)"x", 1, &out, &res), SG_MECH_MALFORMED);
	m->server_free(st);

	/* initial response = user; wrong password */
	st = m->server_start(&f->env);
	memset(&res, 0, sizeof(res));
	sg_buf_reset(&out);
	assert_int_equal(m->server_step(st, (const uint8_t *)"tim", 3, &out, &res), SG_MECH_CONTINUE);
	assert_string_equal(sg_buf_str(&out), "Password:");
	assert_int_equal(m->server_step(st, (const uint8_t *)"nope", 4, &out, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "wrong_password");
	assert_string_equal(res.login, "tim");
	m->server_free(st);

	/* unknown user, empty user, empty password, NUL in password */
	st = m->server_start(&f->env);
	sg_buf_reset(&out);
	assert_int_equal(m->server_step(st, (const uint8_t *)"ghost", 5, &out, &res), SG_MECH_CONTINUE);
	assert_int_equal(m->server_step(st, (const uint8_t *)"x", 1, &out, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "unknown_account");
	m->server_free(st);
	assert_int_equal(one_step(f, m, "", 0, &res), SG_MECH_MALFORMED);
	st = m->server_start(&f->env);
	assert_int_equal(m->server_step(st, (const uint8_t *)"tim", 3, &out, &res), SG_MECH_CONTINUE);
	assert_int_equal(m->server_step(st, (const uint8_t *)"", 0, &out, &res), SG_MECH_MALFORMED);
	m->server_free(st);
	st = m->server_start(&f->env);
	assert_int_equal(m->server_step(st, (const uint8_t *)"tim", 3, &out, &res), SG_MECH_CONTINUE);
	assert_int_equal(m->server_step(st, (const uint8_t *)"a\0b", 3, &out, &res),
			 SG_MECH_MALFORMED);
	m->server_free(st);

	/* client answers by position */
	struct sg_sasl_client_env cenv = {.authcid = "tim", .password = "tanstaaftanstaaf"};
	const char *err = NULL;
	void *cst = m->client_start(&cenv, &err);
	sg_buf_reset(&out);
	assert_int_equal(m->client_step(cst, (const uint8_t *)"Username:", 9, &out, &err),
			 SG_MECH_CONTINUE);
	assert_string_equal(sg_buf_str(&out), "tim");
	sg_buf_reset(&out);
	assert_int_equal(m->client_step(cst, (const uint8_t *)"Password:", 9, &out, &err),
			 SG_MECH_OK);
	assert_string_equal(sg_buf_str(&out), "tanstaaftanstaaf");
	assert_int_equal(m->client_step(cst, (const uint8_t *)"x", 1, &out, &err), SG_MECH_FAIL);
	m->client_free(cst);
	sg_buf_free(&out);
}

static void test_cram_md5_vector(void **state)
{
	struct fixture *f = *state;
	static const char challenge[] = "<1896.697170952@postoffice.reston.mci.net>";
	/* the stored key state gives the RFC 2195 digest */
	struct sg_account a;
	struct sg_verifier v;
	assert_int_equal(sg_cred_lookup(f->s, "tim", SG_CRED_CRAM_MD5, &a, &v), 1);
	assert_int_equal(v.kind, SG_CRED_CRAM_MD5);
	uint8_t mac[16];
	char hex[33];
	sg_cram_md5_response(&v, (const uint8_t *)challenge, strlen(challenge), mac);
	sg_hex(mac, 16, hex);
	assert_string_equal(hex, "b913a602c7eda7a495b4e6e7334d3890");

	/* the client side gives the RFC 2195 response */
	const struct sg_mech *m = &sg_mech_cram_md5;
	struct sg_sasl_client_env cenv = {.authcid = "tim", .password = "tanstaaftanstaaf"};
	const char *err = NULL;
	struct sg_buf out;
	sg_buf_init(&out, 4096);
	void *cst = m->client_start(&cenv, &err);
	assert_int_equal(m->client_step(cst, (const uint8_t *)challenge, strlen(challenge), &out, &err),
			 SG_MECH_OK);
	assert_string_equal(sg_buf_str(&out), "tim b913a602c7eda7a495b4e6e7334d3890");
	m->client_free(cst);
	sg_buf_free(&out);
}

/* Server challenge format, then the response computed for it. */
static enum sg_mech_status cram_run(struct fixture *f, const char *user, const char *password,
				    bool upper, const char *raw, struct sg_mech_result *res)
{
	const struct sg_mech *m = &sg_mech_cram_md5;
	struct sg_buf out, resp;
	sg_buf_init(&out, 4096);
	sg_buf_init(&resp, 4096);
	void *st = m->server_start(&f->env);
	memset(res, 0, sizeof(*res));
	assert_int_equal(m->server_step(st, NULL, 0, &out, res), SG_MECH_CONTINUE);
	const char *ch = sg_buf_str(&out);
	size_t hl = strlen("@postoffice.example>");
	assert_true(out.len > hl + 4 && ch[0] == '<' && strchr(ch, '.') != NULL);
	assert_string_equal(ch + out.len - hl, "@postoffice.example>");
	if (raw != NULL) {
		sg_buf_append_str(&resp, raw);
	} else {
		struct sg_sasl_client_env cenv = {.authcid = user, .password = password};
		const char *err = NULL;
		void *cst = m->client_start(&cenv, &err);
		assert_int_equal(m->client_step(cst, out.data, out.len, &resp, &err), SG_MECH_OK);
		m->client_free(cst);
		if (upper)
			for (size_t i = resp.len - 32; i < resp.len; i++)
				if (resp.data[i] >= 'a' && resp.data[i] <= 'f')
					resp.data[i] = (uint8_t)(resp.data[i] - 'a' + 'A');
	}
	sg_buf_reset(&out);
	enum sg_mech_status r = m->server_step(st, resp.data, resp.len, &out, res);
	m->server_free(st);
	sg_buf_free(&out);
	sg_buf_free(&resp);
	return r;
}

static void test_cram_md5_server(void **state)
{
	struct fixture *f = *state;
	struct sg_mech_result res;
	assert_int_equal(cram_run(f, "tim", "tanstaaftanstaaf", false, NULL, &res), SG_MECH_OK);
	assert_string_equal(res.login, "tim");
	assert_int_equal(cram_run(f, "tim", "tanstaaftanstaaf", true, NULL, &res), SG_MECH_OK);
	assert_int_equal(cram_run(f, "tim", "wrong", false, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "wrong_password");
	assert_int_equal(cram_run(f, "nobody", "tanstaaftanstaaf", false, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "unknown_account");
	assert_int_equal(cram_run(f, "dora", "tanstaaftanstaaf", false, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "disabled");
	static const char *const bad[] = {
		"",
		"tim",
		"tim b913a602c7eda7a495b4e6e7334d389",   /* 31 hex */
		"tim b913a602c7eda7a495b4e6e7334d38900", /* 33 hex */
		"tim  913a602c7eda7a495b4e6e7334d3890",
		"tim b913a602c7eda7a495b4e6e7334d389g",
		" b913a602c7eda7a495b4e6e7334d3890",    /* empty user */
		"b913a602c7eda7a495b4e6e7334d3890",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum sg_mech_status r = cram_run(f, NULL, NULL, false, bad[i], &res);
		if (r != SG_MECH_MALFORMED)
			fail_msg("CRAM-MD5 '%s': got %d", bad[i], r);
	}
	/* an initial response is refused */
	assert_int_equal(one_step(f, &sg_mech_cram_md5, "x", 1, &res), SG_MECH_MALFORMED);
}

static void test_registry(void **state)
{
	assert_ptr_equal(sg_mech_find("plain"), &sg_mech_plain);
	assert_ptr_equal(sg_mech_find("Cram-Md5"), &sg_mech_cram_md5);
	assert_ptr_equal(sg_mech_find("SCRAM-SHA-256-PLUS"), &sg_mech_scram_sha256_plus);
	assert_null(sg_mech_find("SCRAM-SHA-512"));
	assert_null(sg_mech_find(""));
	assert_null(sg_mech_find(NULL));
	/* strongest first, unique names */
	for (size_t i = 0; sg_mechs[i] != NULL; i++) {
		if (sg_mechs[i + 1] != NULL && sg_mechs[i]->strength < sg_mechs[i + 1]->strength)
			fail_msg("%s listed before the stronger %s", sg_mechs[i]->name,
				 sg_mechs[i + 1]->name);
		for (size_t j = i + 1; sg_mechs[j] != NULL; j++)
			assert_true(strcmp(sg_mechs[i]->name, sg_mechs[j]->name) != 0);
		assert_ptr_equal(sg_mech_find(sg_mechs[i]->name), sg_mechs[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cram_md5_vector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cram_md5_server, setup, teardown),
		cmocka_unit_test(test_registry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
