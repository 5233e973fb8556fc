/* Every mechanism in sg_mechs that has both sides: the client against the
 * server in memory, with a temporary SQLite store (account "alice", password
 * "s3cret"). The right credential gives OK on both sides (the client's last
 * step OK = the server was verified where the mechanism allows it), a wrong
 * one gives FAIL. Mechanisms that cannot run in memory are skipped with a note.
 *
 * The loop below is the driver contract of mechs.h: client-first mechanisms
 * give an initial response; server-first ones start with server_step(NULL);
 * a client FAIL is answered with an empty line (the server must then fail). */
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
#include "sasl/scram.h"
#include "store/cred.h"

static const uint8_t fake_cb[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
				    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
				    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
				    0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
static const uint8_t oauth_secret[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t other_secret[32] = "fedcba9876543210fedcba9876543210";

struct fixture {
	char dir[64];
	char path[128];
	struct sg_cred_store *s;
	struct sg_sasl_config cfg;
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	char *good_token, *bad_token;
};

static int setup(void **state)
{
	struct fixture *f = sg_calloc(1, sizeof(*f));
	const char *err = NULL;
	sg_strlcpy(f->dir, "/tmp/sg-pair-XXXXXX", sizeof(f->dir));
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/cred.db", f->dir);
	struct sg_cred_params p = {.scram_iterations = 4096, .legacy = SG_LEGACY_NTLM | SG_LEGACY_CRAM_MD5};
	if (sg_cred_open(f->path, &f->s, &err) != 0 ||
	    sg_cred_add(f->s, "alice", "s3cret", &p, &err) != 0 ||
	    sg_cred_add_address(f->s, "alice", "alice@example.org", &err) != 0 ||
	    sg_cred_add(f->s, "dora", "s3cret", &p, &err) != 0 ||
	    sg_cred_set_disabled(f->s, "dora", true, &err) != 0) {
		fprintf(stderr, "store: %s\n", err);
		return -1;
	}
	f->cfg.scram_iterations = 4096;
	f->cfg.oauth_hs256_secret = oauth_secret;
	f->cfg.oauth_hs256_secret_len = sizeof(oauth_secret);
	f->good_token = sg_jwt_mint_hs256(oauth_secret, sizeof(oauth_secret), "alice", NULL, NULL,
					  sg_time(), 600);
	f->bad_token = sg_jwt_mint_hs256(other_secret, sizeof(other_secret), "alice", NULL, NULL,
					 sg_time(), 600);
	if (f->good_token == NULL || f->bad_token == NULL)
		return -1;

	f->senv.creds = f->s;
	f->senv.cfg = &f->cfg;
	f->senv.hostname = "mx.example.org";
	f->senv.service = "smtp";
	f->senv.tls = true;
	f->senv.cb_type = "tls-exporter";
	f->senv.cb_data = fake_cb;
	f->senv.cb_len = sizeof(fake_cb);
	f->senv.plus_offered = true;
	f->senv.cert_identity = "alice@example.org";
	f->senv.client_ip = "192.0.2.1";
	f->senv.local_port = 587;

	f->cenv.authcid = "alice";
	f->cenv.password = "s3cret";
	f->cenv.token = f->good_token;
	f->cenv.host = "mx.example.org";
	f->cenv.port = 587;
	f->cenv.service = "smtp";
	f->cenv.cb_type = "tls-exporter";
	f->cenv.cb_data = fake_cb;
	f->cenv.cb_len = sizeof(fake_cb);
	f->cenv.server_offers_plus = true;
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
	free(f->good_token);
	free(f->bad_token);
	free(f);
	return 0;
}

struct outcome {
	enum sg_mech_status server;
	enum sg_mech_status client; /* last client status */
	char login[SG_LOGIN_MAX + 1];
	const char *reason;
	const char *client_error;
};

static void pair_run(const struct sg_mech *m, const struct sg_sasl_server_env *senv,
		     const struct sg_sasl_client_env *cenv, struct outcome *o)
{
	struct sg_buf cout, sout;
	struct sg_mech_result res;
	const char *err = NULL;
	memset(o, 0, sizeof(*o));
	memset(&res, 0, sizeof(res));
	sg_buf_init(&cout, 12288);
	sg_buf_init(&sout, 12288);
	void *cst = m->client_start(cenv, &err);
	if (cst == NULL)
		fail_msg("%s: client_start: %s", m->name, err != NULL ? err : "?");
	void *sst = m->server_start(senv);
	assert_non_null(sst);
	bool have_in = false;
	enum sg_mech_status cs = SG_MECH_CONTINUE, sr = SG_MECH_MALFORMED;
	if (!(m->flags & SG_MECH_F_SERVER_FIRST)) {
		cs = m->client_step(cst, NULL, 0, &cout, &err);
		if (cs == SG_MECH_FAIL)
			fail_msg("%s: client initial response: %s", m->name, err);
		have_in = true;
	}
	for (int i = 0; i < 16; i++) {
		sg_buf_reset(&sout);
		sr = m->server_step(sst, have_in ? (cout.data != NULL ? cout.data : (const uint8_t *)"")
						 : NULL,
				    cout.len, &sout, &res);
		if (sr != SG_MECH_CONTINUE)
			break;
		sg_buf_reset(&cout);
		have_in = true;
		if (cs == SG_MECH_FAIL)
			continue; /* the client gave up: keep answering empty lines */
		cs = m->client_step(cst, sout.data != NULL ? sout.data : (const uint8_t *)"", sout.len,
				    &cout, &err);
		if (cs == SG_MECH_FAIL) {
			o->client_error = err;
			sg_buf_reset(&cout);
		}
	}
	o->server = sr;
	o->client = cs;
	o->reason = res.reason;
	sg_strlcpy(o->login, res.login, sizeof(o->login));
	m->server_free(sst);
	m->client_free(cst);
	sg_buf_free(&cout);
	sg_buf_free(&sout);
}

static const char *skip_reason(const struct sg_mech *m, const struct sg_sasl_server_env *senv)
{
	if (m->client_start == NULL || m->client_step == NULL || m->server_start == NULL ||
	    m->server_step == NULL)
		return "not both sides";
	if (strcmp(m->name, "GSSAPI") == 0)
		return "needs a KDC (tests/integration)";
	if (m->server_available != NULL && !m->server_available(senv))
		return "not available in this env";
	return NULL;
}

static bool is_oauth(const struct sg_mech *m)
{
	return strcmp(m->name, "XOAUTH2") == 0 || strcmp(m->name, "OAUTHBEARER") == 0;
}

static void test_all_pairs(void **state)
{
	struct fixture *f = *state;
	int ran = 0;
	for (size_t i = 0; sg_mechs[i] != NULL; i++) {
		const struct sg_mech *m = sg_mechs[i];
		const char *skip = skip_reason(m, &f->senv);
		if (skip != NULL) {
			print_message("skip %s: %s\n", m->name, skip);
			continue;
		}
		struct outcome o;
		pair_run(m, &f->senv, &f->cenv, &o);
		/* mutual authentication: the SCRAM client must have checked v= */
		bool mutual = strncmp(m->name, "SCRAM-", 6) == 0;
		if (o.server != SG_MECH_OK || o.client == SG_MECH_FAIL ||
		    (mutual && o.client != SG_MECH_OK))
			fail_msg("%s right credential: server %d client %d reason %s error %s",
				 m->name, o.server, o.client, o.reason ? o.reason : "-",
				 o.client_error ? o.client_error : "-");
		assert_string_equal(o.login, "alice");

		/* the wrong credential */
		struct sg_sasl_server_env senv = f->senv;
		struct sg_sasl_client_env cenv = f->cenv;
		if (strcmp(m->name, "EXTERNAL") == 0)
			senv.cert_identity = "mallory@example.org";
		else if (is_oauth(m))
			cenv.token = f->bad_token;
		else
			cenv.password = "wrong";
		pair_run(m, &senv, &cenv, &o);
		if (o.server != SG_MECH_FAIL)
			fail_msg("%s wrong credential: server %d (want FAIL) reason %s", m->name,
				 o.server, o.reason ? o.reason : "-");
		assert_non_null(o.reason);
		print_message("ok   %s (wrong credential: %s)\n", m->name, o.reason);
		ran++;
	}
	assert_true(ran >= 7);
}

/* Password mechanisms: unknown login and disabled account fail too. */
static void test_unknown_and_disabled(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; sg_mechs[i] != NULL; i++) {
		const struct sg_mech *m = sg_mechs[i];
		if (skip_reason(m, &f->senv) != NULL || m->cred == SG_CRED_NONE)
			continue;
		struct sg_sasl_client_env cenv = f->cenv;
		struct outcome o;
		cenv.authcid = "nobody";
		pair_run(m, &f->senv, &cenv, &o);
		if (o.server != SG_MECH_FAIL || o.reason == NULL ||
		    strcmp(o.reason, "unknown_account") != 0)
			fail_msg("%s unknown login: server %d reason %s", m->name, o.server,
				 o.reason ? o.reason : "-");
		cenv.authcid = "dora";
		pair_run(m, &f->senv, &cenv, &o);
		if (o.server != SG_MECH_FAIL || o.reason == NULL || strcmp(o.reason, "disabled") != 0)
			fail_msg("%s disabled: server %d reason %s", m->name, o.server,
				 o.reason ? o.reason : "-");
	}
}

/* SCRAM channel-binding policy through the descriptors. */
static void test_scram_binding(void **state)
{
	struct fixture *f = *state;
	struct outcome o;
	struct sg_sasl_server_env senv = f->senv;
	struct sg_sasl_client_env cenv = f->cenv;

	/* downgrade: the client thinks we offer no -PLUS and says 'y' */
	cenv.server_offers_plus = false;
	pair_run(&sg_mech_scram_sha256, &senv, &cenv, &o);
	assert_int_equal(o.server, SG_MECH_FAIL);
	assert_string_equal(o.reason, "cb_downgrade");
	/* 'y' is fine when we really did not offer -PLUS */
	senv.plus_offered = false;
	pair_run(&sg_mech_scram_sha256, &senv, &cenv, &o);
	assert_int_equal(o.server, SG_MECH_OK);

	/* -PLUS: different binding data (TLS terminated by someone else) */
	static const uint8_t other[32] = {1};
	senv = f->senv;
	cenv = f->cenv;
	cenv.cb_data = other;
	pair_run(&sg_mech_scram_sha1_plus, &senv, &cenv, &o);
	assert_int_equal(o.server, SG_MECH_FAIL);
	assert_string_equal(o.reason, "cb_mismatch");
	/* -PLUS: tls-unique when the connection has tls-exporter */
	cenv = f->cenv;
	cenv.cb_type = "tls-unique";
	pair_run(&sg_mech_scram_sha256_plus, &senv, &cenv, &o);
	assert_int_equal(o.server, SG_MECH_FAIL);
	/* tls-unique on a TLS 1.2 connection */
	senv.cb_type = "tls-unique";
	pair_run(&sg_mech_scram_sha256_plus, &senv, &cenv, &o);
	assert_int_equal(o.server, SG_MECH_OK);
	/* -PLUS is not offered without binding data */
	senv.cb_data = NULL;
	senv.cb_len = 0;
	assert_false(sg_mech_scram_sha256_plus.server_available(&senv));
	assert_true(sg_mech_scram_sha256_plus.server_available(&f->senv));

	/* a server that replies with a forged v= is refused by the client */
	const char *err = NULL;
	void *cst = sg_mech_scram_sha256.client_start(&f->cenv, &err);
	struct sg_buf out;
	sg_buf_init(&out, 4096);
	assert_int_equal(sg_mech_scram_sha256.client_step(cst, NULL, 0, &out, &err), SG_MECH_CONTINUE);
	assert_int_equal(sg_mech_scram_sha256.client_step(cst, (const uint8_t *)"e=invalid-proof",
							  15, &out, &err),
			 SG_MECH_FAIL);
	sg_mech_scram_sha256.client_free(cst);
	sg_buf_free(&out);
}

/* SCRAM: the fake salt of an unknown login is stable (no enumeration). */
static void test_scram_fake_salt(void **state)
{
	struct fixture *f = *state;
	const struct sg_mech *m = &sg_mech_scram_sha256;
	char first[2][512];
	for (int k = 0; k < 2; k++) {
		struct sg_buf out;
		struct sg_mech_result res;
		sg_buf_init(&out, 4096);
		memset(&res, 0, sizeof(res));
		void *st = m->server_start(&f->senv);
		const char *cf = "n,,n=ghost,r=abcdef";
		assert_int_equal(m->server_step(st, (const uint8_t *)cf, strlen(cf), &out, &res),
				 SG_MECH_CONTINUE);
		const char *s = strstr(sg_buf_str(&out), ",s=");
		assert_non_null(s);
		sg_strlcpy(first[k], s, sizeof(first[k]));
		assert_non_null(strstr(first[k], ",i=4096"));
		m->server_free(st);
		sg_buf_free(&out);
	}
	assert_string_equal(first[0], first[1]);
}

/* Issue 10 item 25: a wrong SCRAM proof ends the exchange at once (535),
 * with no "e=invalid-proof" server-final; only a channel-binding mismatch is
 * told to the client (e=channel-bindings-dont-match, then a failure). */
static enum sg_mech_status scram_final_step(const struct sg_mech *m,
					    const struct sg_sasl_server_env *senv,
					    const struct sg_sasl_client_env *cenv, struct sg_buf *sout,
					    struct sg_mech_result *res)
{
	struct sg_buf cout;
	const char *err = NULL;
	sg_buf_init(&cout, 4096);
	memset(res, 0, sizeof(*res));
	void *cst = m->client_start(cenv, &err);
	void *sst = m->server_start(senv);
	assert_non_null(cst);
	assert_non_null(sst);
	assert_int_equal(m->client_step(cst, NULL, 0, &cout, &err), SG_MECH_CONTINUE);
	assert_int_equal(m->server_step(sst, cout.data, cout.len, sout, res), SG_MECH_CONTINUE);
	sg_buf_reset(&cout);
	assert_int_equal(m->client_step(cst, sout->data, sout->len, &cout, &err), SG_MECH_CONTINUE);
	sg_buf_reset(sout);
	enum sg_mech_status r = m->server_step(sst, cout.data, cout.len, sout, res);
	if (r == SG_MECH_CONTINUE && res->reason != NULL) {
		/* the error challenge: whatever the client answers, it fails */
		struct sg_buf ack;
		struct sg_mech_result res2;
		sg_buf_init(&ack, 64);
		memset(&res2, 0, sizeof(res2));
		assert_int_equal(m->server_step(sst, (const uint8_t *)"", 0, &ack, &res2), SG_MECH_FAIL);
		assert_string_equal(res2.reason, res->reason);
		sg_buf_free(&ack);
	}
	m->server_free(sst);
	m->client_free(cst);
	sg_buf_free(&cout);
	return r;
}

static void test_scram_failure_replies(void **state)
{
	struct fixture *f = *state;
	static const uint8_t other_cb[32] = {1, 2, 3};
	const struct sg_mech *const plain[] = {&sg_mech_scram_sha1, &sg_mech_scram_sha256};
	const struct sg_mech *const plus[] = {&sg_mech_scram_sha1_plus, &sg_mech_scram_sha256_plus};
	struct sg_buf sout;
	struct sg_mech_result res;
	sg_buf_init(&sout, 4096);
	for (size_t i = 0; i < 2; i++) {
		const struct sg_mech *ms[] = {plain[i], plus[i]};
		for (size_t k = 0; k < 2; k++) {
			/* wrong password, and an unknown login: FAIL at once, no e= */
			struct sg_sasl_client_env cenv = f->cenv;
			cenv.password = "wrong";
			sg_buf_reset(&sout);
			assert_int_equal(scram_final_step(ms[k], &f->senv, &cenv, &sout, &res), SG_MECH_FAIL);
			assert_int_equal(sout.len, 0);
			assert_string_equal(res.reason, "wrong_password");
			cenv.authcid = "ghost";
			sg_buf_reset(&sout);
			assert_int_equal(scram_final_step(ms[k], &f->senv, &cenv, &sout, &res), SG_MECH_FAIL);
			assert_int_equal(sout.len, 0);
			assert_string_equal(res.reason, "unknown_account");
		}
		/* -PLUS over another TLS channel (a proxy in between): e= is sent */
		struct sg_sasl_client_env cenv = f->cenv;
		cenv.cb_data = other_cb;
		sg_buf_reset(&sout);
		assert_int_equal(scram_final_step(plus[i], &f->senv, &cenv, &sout, &res), SG_MECH_CONTINUE);
		assert_string_equal(sg_buf_str(&sout), "e=channel-bindings-dont-match");
		assert_string_equal(res.reason, "cb_mismatch");
	}
	sg_buf_free(&sout);
}

/* Issue 10 item 8: EXTERNAL maps a certificate by exact login or exact
 * address only; an @domain catch-all is never an identity. */
static void test_external_no_catchall(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	assert_int_equal(sg_cred_add_address(f->s, "alice", "@catch.example", &err), 0);
	char owner[64];
	assert_int_equal(sg_cred_find_owner(f->s, "dave@catch.example", owner, sizeof(owner)), 1);
	assert_string_equal(owner, "alice");
	assert_int_equal(sg_cred_find_exact_owner(f->s, "dave@catch.example", owner, sizeof(owner)), 0);
	assert_int_equal(sg_cred_find_exact_owner(f->s, "alice@Example.ORG", owner, sizeof(owner)), 1);
	assert_string_equal(owner, "alice");
	static const struct {
		const char *identity;
		enum sg_mech_status want;
		const char *reason;
	} cases[] = {
		{"alice", SG_MECH_OK, NULL},                   /* exact login */
		{"alice@example.org", SG_MECH_OK, NULL},       /* exact address */
		{"dave@catch.example", SG_MECH_FAIL, "no_account_for_certificate"},
		{"@catch.example", SG_MECH_FAIL, "no_account_for_certificate"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sg_sasl_server_env senv = f->senv;
		senv.cert_identity = cases[i].identity;
		struct outcome o;
		pair_run(&sg_mech_external, &senv, &f->cenv, &o);
		if (o.server != cases[i].want)
			fail_msg("EXTERNAL %s: server %d reason %s", cases[i].identity, o.server,
				 o.reason ? o.reason : "-");
		if (cases[i].reason != NULL)
			assert_string_equal(o.reason, cases[i].reason);
		else
			assert_string_equal(o.login, "alice");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_all_pairs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_and_disabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scram_binding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scram_fake_salt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scram_failure_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_external_no_catchall, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
