/* XOAUTH2 and OAUTHBEARER (RFC 7628) in memory against a temporary SQLite
 * store: valid tokens, every refusal, the error-JSON-then-FAIL sequence with
 * each client answer, malformed messages, and the client side. */
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
#include "sasl/jwt.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"
#include "store/cred.h"

static const uint8_t key32[32] = "0123456789abcdef0123456789abcdef";

struct fixture {
	char dir[64];
	char path[128];
	struct sg_cred_store *s;
	struct sg_sasl_config cfg;
	struct sg_sasl_server_env env;
};

static int setup(void **state)
{
	struct fixture *f = sg_calloc(1, sizeof(*f));
	const char *err = NULL;
	sg_strlcpy(f->dir, "/tmp/sg-oauth-XXXXXX", sizeof(f->dir));
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/cred.db", f->dir);
	if (sg_cred_open(f->path, &f->s, &err) != 0)
		return -1;
	struct sg_cred_params p = {.scram_iterations = 4096};
	if (sg_cred_add(f->s, "alice@example.com", "pw-alice", &p, &err) != 0 ||
	    sg_cred_add(f->s, "bob", "pw-bob", &p, &err) != 0 ||
	    sg_cred_add(f->s, "dora@example.com", "pw-dora", &p, &err) != 0 ||
	    sg_cred_set_disabled(f->s, "dora@example.com", true, &err) != 0) {
		fprintf(stderr, "store: %s\n", err);
		return -1;
	}
	f->cfg.oauth_hs256_secret = key32;
	f->cfg.oauth_hs256_secret_len = sizeof(key32);
	f->env.creds = f->s;
	f->env.cfg = &f->cfg;
	f->env.hostname = "mx.example.test";
	f->env.service = "smtp";
	f->env.tls = true;
	f->env.local_port = 587;
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

static char *tok(const char *sub, int64_t from_now)
{
	int64_t now = sg_time();
	/* minted 2 h ago with the given remaining lifetime */
	char *t = sg_jwt_mint_hs256(key32, sizeof(key32), sub, NULL, NULL, now - 7200,
				    (unsigned)(7200 + from_now));
	assert_non_null(t);
	return t;
}

static char *xo_msg(const char *user, const char *token)
{
	return sg_asprintf("user=%s\x01" "auth=Bearer %s\x01\x01", user, token);
}

/* A server exchange: steps through msgs (NULL entry = no initial response);
 * returns the last status; json_r gets the last challenge. */
struct run {
	enum sg_mech_status st[4];
	char chal[4][512];
	struct sg_mech_result res;
};

static void run(struct fixture *f, const struct sg_mech *m, const char *const *msgs,
		const size_t *lens, size_t n, struct run *r)
{
	memset(r, 0, sizeof(*r));
	void *st = m->server_start(&f->env);
	assert_non_null(st);
	for (size_t i = 0; i < n; i++) {
		struct sg_buf out;
		sg_buf_init(&out, 4096);
		r->st[i] = m->server_step(st, (const uint8_t *)msgs[i],
					  msgs[i] != NULL ? (lens != NULL ? lens[i] : strlen(msgs[i])) : 0,
					  &out, &r->res);
		sg_strlcpy(r->chal[i], sg_buf_str(&out), sizeof(r->chal[i]));
		sg_buf_free(&out);
	}
	m->server_free(st);
}

static enum sg_mech_status one(struct fixture *f, const struct sg_mech *m, const char *msg,
			       size_t len, struct run *r)
{
	const char *msgs[1] = {msg};
	size_t lens[1] = {len};
	run(f, m, msgs, lens, 1, r);
	return r->st[0];
}

/* ---- XOAUTH2 --------------------------------------------------------------------- */

static void test_xoauth2_valid(void **state)
{
	struct fixture *f = *state;
	struct run r;
	char *t = tok("alice@example.com", 600);
	char *m = xo_msg("alice@example.com", t);
	assert_int_equal(one(f, &sg_mech_xoauth2, m, strlen(m), &r), SG_MECH_OK);
	assert_string_equal(r.res.login, "alice@example.com");
	free(m);
	/* addresses compare case-insensitively; the login is the stored one */
	m = xo_msg("Alice@EXAMPLE.com", t);
	assert_int_equal(one(f, &sg_mech_xoauth2, m, strlen(m), &r), SG_MECH_OK);
	assert_string_equal(r.res.login, "alice@example.com");
	free(m);
	/* after an empty 334 */
	m = xo_msg("alice@example.com", t);
	const char *msgs[2] = {NULL, m};
	run(f, &sg_mech_xoauth2, msgs, NULL, 2, &r);
	assert_int_equal(r.st[0], SG_MECH_CONTINUE);
	assert_string_equal(r.chal[0], "");
	assert_int_equal(r.st[1], SG_MECH_OK);
	free(m);
	/* unknown keys are ignored; the scheme is case-insensitive */
	m = sg_asprintf("user=alice@example.com\x01" "foo=bar\x01" "auth=bearer %s\x01\x01", t);
	assert_int_equal(one(f, &sg_mech_xoauth2, m, strlen(m), &r), SG_MECH_OK);
	free(m);
	free(t);
	/* a bare login */
	t = tok("bob", 600);
	m = xo_msg("bob", t);
	assert_int_equal(one(f, &sg_mech_xoauth2, m, strlen(m), &r), SG_MECH_OK);
	assert_string_equal(r.res.login, "bob");
	free(m);
	/* ... is case-sensitive */
	m = xo_msg("Bob", t);
	assert_int_equal(one(f, &sg_mech_xoauth2, m, strlen(m), &r), SG_MECH_CONTINUE);
	assert_string_equal(r.res.reason, "wrong_subject");
	free(m);
	free(t);
}

static void expect_xo_refusal(struct fixture *f, const char *user, const char *token,
			      const char *reason)
{
	struct run r;
	char *m = xo_msg(user, token);
	static const char *const answers[] = {"", "\x01", "anything at all"};
	for (size_t i = 0; i < 3; i++) {
		const char *msgs[2] = {m, answers[i]};
		run(f, &sg_mech_xoauth2, msgs, NULL, 2, &r);
		assert_int_equal(r.st[0], SG_MECH_CONTINUE);
		assert_string_equal(r.chal[0],
				    "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":\"smtp\"}");
		assert_int_equal(r.st[1], SG_MECH_FAIL);
		assert_string_equal(r.res.reason, reason);
		assert_string_equal(r.res.login, user);
	}
	free(m);
}

static void test_xoauth2_refusals(void **state)
{
	struct fixture *f = *state;
	char *t = tok("alice@example.com", 600);
	expect_xo_refusal(f, "bob", t, "wrong_subject");
	free(t);
	t = tok("alice@example.com", -600);
	expect_xo_refusal(f, "alice@example.com", t, "expired_token");
	free(t);
	t = tok("zed@example.com", 600);
	expect_xo_refusal(f, "zed@example.com", t, "unknown_account");
	free(t);
	t = tok("dora@example.com", 600);
	expect_xo_refusal(f, "dora@example.com", t, "disabled");
	free(t);
	/* signed with another key */
	static const uint8_t other[32] = "ffffffffffffffffffffffffffffffff";
	t = sg_jwt_mint_hs256(other, sizeof(other), "bob", NULL, NULL, sg_time(), 600);
	expect_xo_refusal(f, "bob", t, "bad_signature");
	free(t);
	/* not a JWT at all (an opaque token) */
	expect_xo_refusal(f, "bob", "ya29.a0AfH6SMBx", "malformed_token");

	/* the scope comes from the config */
	struct run r;
	f->cfg.oauth_scope = "https://mail.example.test/";
	t = tok("bob", 600);
	char *m = xo_msg("alice@example.com", t);
	assert_int_equal(one(f, &sg_mech_xoauth2, m, strlen(m), &r), SG_MECH_CONTINUE);
	assert_string_equal(r.chal[0], "{\"status\":\"401\",\"schemes\":\"bearer\","
				       "\"scope\":\"https://mail.example.test/\"}");
	f->cfg.oauth_scope = NULL;
	free(m);
	free(t);
}

static void test_xoauth2_malformed(void **state)
{
	struct fixture *f = *state;
	char *t = tok("bob", 600);
	char *bad[] = {
		sg_strdup(""),
		sg_strdup("user=bob"),
		sg_asprintf("user=bob\x01" "auth=Bearer %s\x01", t),       /* one kvsep */
		sg_asprintf("user=bob\x01" "auth=Bearer %s", t),
		sg_asprintf("auth=Bearer %s\x01\x01", t),                   /* no user */
		sg_strdup("user=bob\x01\x01"),                              /* no auth */
		sg_asprintf("user=\x01" "auth=Bearer %s\x01\x01", t),       /* empty user */
		sg_asprintf("user=bob\x01" "auth=Basic %s\x01\x01", t),
		sg_strdup("user=bob\x01" "auth=Bearer \x01\x01"),
		sg_asprintf("user=bob\x01" "auth=Bearer%s\x01\x01", t),
		sg_asprintf("user=bob\x01" "auth=Bearer %s x\x01\x01", t),
		sg_asprintf("user=bob\x01user=bob\x01" "auth=Bearer %s\x01\x01", t), /* duplicate */
		sg_asprintf("user=bob\x01" "auth=Bearer %s\x01\x01trailing", t),
		sg_asprintf("user=bob\x01" "auth=Bearer %s\x01\x01\x01", t),
		sg_asprintf("=bob\x01" "auth=Bearer %s\x01\x01", t),
		sg_asprintf("us er=bob\x01" "auth=Bearer %s\x01\x01", t),
		sg_asprintf("user=b\x02ob\x01" "auth=Bearer %s\x01\x01", t),
		sg_strdup("\x01"),
	};
	struct run r;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum sg_mech_status s = one(f, &sg_mech_xoauth2, bad[i], strlen(bad[i]), &r);
		if (s != SG_MECH_MALFORMED)
			fail_msg("bad[%zu] gave %d", i, s);
		free(bad[i]);
	}
	/* an embedded NUL */
	char *m = xo_msg("bob", t);
	m[2] = '\0';
	size_t len = strlen(m + 3) + 3;
	assert_int_equal(one(f, &sg_mech_xoauth2, m, len, &r), SG_MECH_MALFORMED);
	free(m);
	/* "=" (empty initial response) */
	assert_int_equal(one(f, &sg_mech_xoauth2, "", 0, &r), SG_MECH_MALFORMED);
	free(t);
}

static void test_available(void **state)
{
	struct fixture *f = *state;
	assert_true(sg_mech_xoauth2.server_available(&f->env));
	assert_true(sg_mech_oauthbearer.server_available(&f->env));
	struct sg_sasl_config none;
	memset(&none, 0, sizeof(none));
	struct sg_sasl_server_env env = f->env;
	env.cfg = &none;
	assert_false(sg_mech_xoauth2.server_available(&env));
	assert_false(sg_mech_oauthbearer.server_available(&env));
	none.oauth_jwks_file = "/etc/smtpgate/jwks.json";
	assert_true(sg_mech_oauthbearer.server_available(&env));
	assert_ptr_equal(sg_mech_find("xoauth2"), &sg_mech_xoauth2);
	assert_ptr_equal(sg_mech_find("OAUTHBEARER"), &sg_mech_oauthbearer);
	assert_true(sg_mech_xoauth2.flags & SG_MECH_F_PLAINTEXT);
	assert_int_equal(sg_mech_oauthbearer.cred, SG_CRED_NONE);
}

/* ---- OAUTHBEARER ------------------------------------------------------------------ */

static void test_oauthbearer_valid(void **state)
{
	struct fixture *f = *state;
	struct run r;
	char *t = tok("alice@example.com", 600);
	char *m = sg_asprintf("n,a=alice@example.com,\x01host=mx.example.test\x01port=587\x01"
			      "auth=Bearer %s\x01\x01", t);
	assert_int_equal(one(f, &sg_mech_oauthbearer, m, strlen(m), &r), SG_MECH_OK);
	assert_string_equal(r.res.login, "alice@example.com");
	free(m);
	/* no authzid, no host, no port: the token names the account */
	m = sg_asprintf("n,,\x01" "auth=Bearer %s\x01\x01", t);
	assert_int_equal(one(f, &sg_mech_oauthbearer, m, strlen(m), &r), SG_MECH_OK);
	assert_string_equal(r.res.login, "alice@example.com");
	free(m);
	/* after an empty 334; 'y' flag; other local host names; unknown keys */
	static const char *const hosts[] = {"localhost", "127.0.0.1", "::1", "[::1]",
					    "MX.Example.Test", "mx.example.test."};
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		m = sg_asprintf("y,a=Alice@Example.com,\x01host=%s\x01mystery=1 2\x01"
				"auth=Bearer %s\x01\x01", hosts[i], t);
		const char *msgs[2] = {NULL, m};
		run(f, &sg_mech_oauthbearer, msgs, NULL, 2, &r);
		assert_int_equal(r.st[0], SG_MECH_CONTINUE);
		assert_string_equal(r.chal[0], "");
		if (r.st[1] != SG_MECH_OK)
			fail_msg("host %s: %d %s", hosts[i], r.st[1], r.res.reason);
		assert_string_equal(r.res.login, "alice@example.com");
		free(m);
	}
	free(t);
}

static void expect_ob_refusal(struct fixture *f, const char *msg, const char *reason,
			      const char *json)
{
	struct run r;
	static const char *const answers[] = {"\x01", "", "garbage"};
	for (size_t i = 0; i < 3; i++) {
		const char *msgs[2] = {msg, answers[i]};
		run(f, &sg_mech_oauthbearer, msgs, NULL, 2, &r);
		if (r.st[0] != SG_MECH_CONTINUE)
			fail_msg("expected the error challenge for %s, got %d (%s)", reason, r.st[0],
				 r.res.reason ? r.res.reason : "-");
		assert_string_equal(r.chal[0], json);
		assert_int_equal(r.st[1], SG_MECH_FAIL);
		assert_string_equal(r.res.reason, reason);
	}
}

static void test_oauthbearer_refusals(void **state)
{
	struct fixture *f = *state;
	static const char json[] = "{\"status\":\"invalid_token\",\"scope\":\"smtp\"}";
	char *t = tok("alice@example.com", 600);
	char *m = sg_asprintf("n,a=bob,\x01" "auth=Bearer %s\x01\x01", t);
	expect_ob_refusal(f, m, "wrong_subject", json);
	free(m);
	m = sg_asprintf("n,,\x01host=mail.evil.example\x01" "auth=Bearer %s\x01\x01", t);
	expect_ob_refusal(f, m, "wrong_host", json);
	free(m);
	m = sg_asprintf("n,,\x01port=25\x01" "auth=Bearer %s\x01\x01", t);
	expect_ob_refusal(f, m, "wrong_port", json);
	free(m);
	free(t);
	t = tok("alice@example.com", -3600);
	m = sg_asprintf("n,a=alice@example.com,\x01" "auth=Bearer %s\x01\x01", t);
	expect_ob_refusal(f, m, "expired_token", json);
	free(m);
	free(t);
	t = tok("zed", 600);
	m = sg_asprintf("n,,\x01" "auth=Bearer %s\x01\x01", t);
	expect_ob_refusal(f, m, "unknown_account", json);
	free(m);
	free(t);
	t = tok("dora@example.com", 600);
	m = sg_asprintf("n,a=dora@example.com,\x01" "auth=Bearer %s\x01\x01", t);
	/* openid-configuration is named when the issuer is a URL */
	f->cfg.oauth_issuer = "https://idp.example.test/";
	f->cfg.oauth_scope = "mail";
	expect_ob_refusal(f, m, "wrong_issuer",
			  "{\"status\":\"invalid_token\",\"scope\":\"mail\",\"openid-configuration\":"
			  "\"https://idp.example.test/.well-known/openid-configuration\"}");
	f->cfg.oauth_issuer = NULL;
	f->cfg.oauth_scope = NULL;
	expect_ob_refusal(f, m, "disabled", json);
	free(m);
	free(t);

	/* channel binding requested: plain failure, no JSON */
	struct run r;
	t = tok("bob", 600);
	m = sg_asprintf("p=tls-unique,,\x01" "auth=Bearer %s\x01\x01", t);
	assert_int_equal(one(f, &sg_mech_oauthbearer, m, strlen(m), &r), SG_MECH_FAIL);
	assert_string_equal(r.res.reason, "channel_binding_unsupported");
	free(m);
	free(t);
}

static void test_oauthbearer_malformed(void **state)
{
	struct fixture *f = *state;
	char *t = tok("bob", 600);
	char *bad[] = {
		sg_strdup(""),
		sg_strdup("\x01"), /* the error acknowledgement, as a first message */
		sg_asprintf("n,,auth=Bearer %s\x01\x01", t),                  /* no kvsep */
		sg_asprintf("n,,\x01" "auth=Bearer %s\x01", t),
		sg_asprintf("n,\x01" "auth=Bearer %s\x01\x01", t),            /* one comma */
		sg_asprintf("x,,\x01" "auth=Bearer %s\x01\x01", t),           /* bad flag */
		sg_asprintf("F,n,,\x01" "auth=Bearer %s\x01\x01", t),
		sg_asprintf("n,a=,\x01" "auth=Bearer %s\x01\x01", t),         /* empty authzid */
		sg_asprintf("n,a=b=ZZob,\x01" "auth=Bearer %s\x01\x01", t),   /* bad escape */
		sg_asprintf("n,a=bob=2,\x01" "auth=Bearer %s\x01\x01", t),
		sg_asprintf("n,a=bob\x01" "auth=Bearer %s\x01\x01", t),
		sg_asprintf("n,b=bob,\x01" "auth=Bearer %s\x01\x01", t),
		sg_strdup("n,,\x01\x01"),                                      /* no auth */
		sg_asprintf("n,,\x01" "auth=Basic %s\x01\x01", t),
		sg_asprintf("n,,\x01" "auth=Bearer %s\x01" "auth=Bearer %s\x01\x01", t, t),
		sg_asprintf("n,,\x01port=http\x01" "auth=Bearer %s\x01\x01", t),
		sg_asprintf("n,,\x01port=99999\x01" "auth=Bearer %s\x01\x01", t),
		sg_asprintf("n,,\x01h0st=x\x01" "auth=Bearer %s\x01\x01", t), /* key = 1*ALPHA */
		sg_asprintf("n,,\x01" "auth=Bearer %s\x01\x01\x01", t),
	};
	struct run r;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum sg_mech_status s = one(f, &sg_mech_oauthbearer, bad[i], strlen(bad[i]), &r);
		if (s != SG_MECH_MALFORMED)
			fail_msg("bad[%zu] gave %d", i, s);
		free(bad[i]);
	}
	/* a saslname escape that decodes: a=b=2Cob is "b,ob", not the token's "bob" */
	char *m = sg_asprintf("n,a=b=2Cob,\x01" "auth=Bearer %s\x01\x01", t);
	assert_int_equal(one(f, &sg_mech_oauthbearer, m, strlen(m), &r), SG_MECH_CONTINUE);
	assert_string_equal(r.res.reason, "wrong_subject");
	assert_string_equal(r.res.login, "b,ob");
	free(m);
	free(t);
}

/* ---- client side ------------------------------------------------------------------ */

/* Run client against server until both stop; returns the server's last status. */
static enum sg_mech_status pair(struct fixture *f, const struct sg_mech *m,
				const struct sg_sasl_client_env *cenv, const char **cerr,
				enum sg_mech_status *cst_r, struct sg_mech_result *res)
{
	const char *err = NULL;
	void *cs = m->client_start(cenv, &err);
	assert_non_null(cs);
	void *ss = m->server_start(&f->env);
	struct sg_buf c2s, s2c;
	sg_buf_init_secret(&c2s, 12288);
	sg_buf_init(&s2c, 12288);
	memset(res, 0, sizeof(*res));
	enum sg_mech_status cst = m->client_step(cs, NULL, 0, &c2s, &err);
	enum sg_mech_status sst = SG_MECH_MALFORMED;
	for (int round = 0; round < 4; round++) {
		sg_buf_reset(&s2c);
		sst = m->server_step(ss, c2s.data, c2s.len, &s2c, res);
		if (sst != SG_MECH_CONTINUE)
			break;
		sg_buf_reset(&c2s);
		cst = m->client_step(cs, s2c.data, s2c.len, &c2s, &err);
		if (cst == SG_MECH_FAIL) {
			/* the client's acknowledgement still goes to the server */
			sg_buf_reset(&s2c);
			sst = m->server_step(ss, c2s.data, c2s.len, &s2c, res);
			break;
		}
	}
	*cst_r = cst;
	*cerr = err != NULL ? sg_asprintf("%s", err) : NULL;
	m->client_free(cs);
	m->server_free(ss);
	sg_buf_free(&c2s);
	sg_buf_free(&s2c);
	return sst;
}

static void test_client(void **state)
{
	struct fixture *f = *state;
	char *t = tok("alice@example.com", 600);
	struct sg_sasl_client_env cenv;
	memset(&cenv, 0, sizeof(cenv));
	cenv.authcid = "alice@example.com";
	cenv.token = t;
	cenv.host = "mx.example.test";
	cenv.port = 587;

	/* the exact wire messages */
	const char *err = NULL;
	struct sg_buf out;
	sg_buf_init(&out, 12288);
	void *cs = sg_mech_oauthbearer.client_start(&cenv, &err);
	assert_int_equal(sg_mech_oauthbearer.client_step(cs, NULL, 0, &out, &err), SG_MECH_OK);
	char *want = sg_asprintf("n,a=alice@example.com,\x01host=mx.example.test\x01port=587\x01"
				 "auth=Bearer %s\x01\x01", t);
	assert_string_equal(sg_buf_str(&out), want);
	free(want);
	sg_mech_oauthbearer.client_free(cs);
	sg_buf_reset(&out);
	cs = sg_mech_xoauth2.client_start(&cenv, &err);
	assert_int_equal(sg_mech_xoauth2.client_step(cs, NULL, 0, &out, &err), SG_MECH_OK);
	want = sg_asprintf("user=alice@example.com\x01" "auth=Bearer %s\x01\x01", t);
	assert_string_equal(sg_buf_str(&out), want);
	free(want);
	sg_mech_xoauth2.client_free(cs);
	sg_buf_reset(&out);
	/* authcid escaped in a= */
	struct sg_sasl_client_env e2 = cenv;
	e2.authcid = "a,b=c";
	e2.host = NULL;
	e2.port = 0;
	cs = sg_mech_oauthbearer.client_start(&e2, &err);
	assert_int_equal(sg_mech_oauthbearer.client_step(cs, NULL, 0, &out, &err), SG_MECH_OK);
	want = sg_asprintf("n,a=a=2Cb=3Dc,\x01" "auth=Bearer %s\x01\x01", t);
	assert_string_equal(sg_buf_str(&out), want);
	free(want);
	sg_mech_oauthbearer.client_free(cs);
	sg_buf_free(&out);

	/* both mechanisms against the server */
	const struct sg_mech *mechs[] = {&sg_mech_oauthbearer, &sg_mech_xoauth2};
	for (size_t i = 0; i < 2; i++) {
		const struct sg_mech *m = mechs[i];
		struct sg_mech_result res;
		enum sg_mech_status cst;
		char *cerr = NULL;
		cenv.token = t;
		assert_int_equal(pair(f, m, &cenv, (const char **)&cerr, &cst, &res), SG_MECH_OK);
		assert_int_equal(cst, SG_MECH_OK);
		assert_string_equal(res.login, "alice@example.com");
		free(cerr);
		/* refused: the client acknowledges, reports the JSON, the server fails */
		char *bad = tok("alice@example.com", -600);
		cenv.token = bad;
		assert_int_equal(pair(f, m, &cenv, (const char **)&cerr, &cst, &res), SG_MECH_FAIL);
		assert_int_equal(cst, SG_MECH_FAIL);
		assert_string_equal(res.reason, "expired_token");
		assert_non_null(cerr);
		assert_string_equal(cerr, i == 0 ? "{\"status\":\"invalid_token\",\"scope\":\"smtp\"}"
						 : "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":\"smtp\"}");
		free(cerr);
		free(bad);
	}

	/* the acknowledgement bytes */
	struct sg_buf ack;
	sg_buf_init(&ack, 12288);
	static const char js[] = "{\"status\":\"invalid_token\"}";
	for (size_t i = 0; i < 2; i++) {
		cenv.token = t;
		cs = mechs[i]->client_start(&cenv, &err);
		assert_int_equal(mechs[i]->client_step(cs, NULL, 0, &ack, &err), SG_MECH_OK);
		sg_buf_reset(&ack);
		assert_int_equal(mechs[i]->client_step(cs, (const uint8_t *)js, strlen(js), &ack, &err),
				 SG_MECH_FAIL);
		assert_string_equal(err, js);
		if (i == 0) {
			assert_int_equal(ack.len, 1);
			assert_int_equal(ack.data[0], 0x01);
		} else {
			assert_int_equal(ack.len, 0);
		}
		mechs[i]->client_free(cs);
		sg_buf_reset(&ack);
	}
	sg_buf_free(&ack);

	/* client_start refusals */
	struct sg_sasl_client_env e3 = cenv;
	e3.token = NULL;
	assert_null(sg_mech_oauthbearer.client_start(&e3, &err));
	e3.token = "not a token";
	assert_null(sg_mech_xoauth2.client_start(&e3, &err));
	e3.token = t;
	e3.authcid = NULL;
	assert_null(sg_mech_xoauth2.client_start(&e3, &err));
	cs = sg_mech_oauthbearer.client_start(&e3, &err); /* a= is optional */
	assert_non_null(cs);
	sg_mech_oauthbearer.client_free(cs);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_xoauth2_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xoauth2_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xoauth2_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_available, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oauthbearer_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oauthbearer_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oauthbearer_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
