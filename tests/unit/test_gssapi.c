/*
 * GSSAPI (RFC 4752) and EXTERNAL (RFC 4422 appendix A): client side against
 * server side in memory, with an in-test credential store.
 *
 * The GSSAPI cases need a KDC: meson runs this binary under
 * tests/integration/krb5_realm.py --run, which exports SG_TEST_KRB5_KEYTAB
 * (smtp/localhost + imap/localhost), SG_TEST_KRB5_REALM and SG_TEST_KRB5_DIR
 * (cc.alice, cc.bob, cc.carol, cc.alice_admin: one ccache per principal).
 * Without them the GSSAPI cases are skipped and EXTERNAL still runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef SG_HAVE_GSSAPI
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_krb5.h>
#endif

#include "core/buf.h"
#include "core/util.h"
#include "sasl/mechs.h"

/* ------------------------------------------------ in-test credential store */

struct fake_acct {
	const char *login;
	bool disabled;
	const char *address; /* an address the account owns */
};

static const struct fake_acct fake_accts[] = {
	{"alice", false, "alias@example.org"},
	{"bob", true, "bob@example.org"},
	{"alice@example.org", false, NULL},
	{"dave@example.org", false, NULL},
	{"erin", false, "erin@example.org"},
};
static bool fake_store_down;

int sg_cred_lookup(struct sg_cred_store *s, const char *login, enum sg_cred_kind kind,
		   struct sg_account *acct, struct sg_verifier *v);
int sg_cred_find_owner(struct sg_cred_store *s, const char *address, char *login_r, size_t size);
int sg_cred_find_exact_owner(struct sg_cred_store *s, const char *address, char *login_r,
			     size_t size);

int sg_cred_lookup(struct sg_cred_store *s, const char *login, enum sg_cred_kind kind,
		   struct sg_account *acct, struct sg_verifier *v)
{
	assert_int_equal(kind, SG_CRED_NONE);
	if (fake_store_down)
		return -1;
	for (size_t i = 0; i < sizeof(fake_accts) / sizeof(fake_accts[0]); i++) {
		if (strcmp(fake_accts[i].login, login) == 0) {
			memset(acct, 0, sizeof(*acct));
			acct->id = (int64_t)i + 1;
			sg_strlcpy(acct->login, fake_accts[i].login, sizeof(acct->login));
			acct->disabled = fake_accts[i].disabled;
			if (v != NULL)
				v->kind = SG_CRED_NONE;
			return 1;
		}
	}
	return 0;
}

int sg_cred_find_owner(struct sg_cred_store *s, const char *address, char *login_r, size_t size)
{
	if (fake_store_down)
		return -1;
	for (size_t i = 0; i < sizeof(fake_accts) / sizeof(fake_accts[0]); i++) {
		if (fake_accts[i].address != NULL && strcasecmp(fake_accts[i].address, address) == 0) {
			sg_strlcpy(login_r, fake_accts[i].login, size);
			return 1;
		}
	}
	return 0;
}

/* These owners are exact addresses only: the same answer without catch-alls. */
int sg_cred_find_exact_owner(struct sg_cred_store *s, const char *address, char *login_r,
			     size_t size)
{
	return sg_cred_find_owner(s, address, login_r, size);
}

/* ------------------------------------------------------------ the exchange */

struct pair_result {
	enum sg_mech_status server;  /* last server status */
	enum sg_mech_status client;  /* last client status */
	struct sg_mech_result res;
	const char *client_error;
	int rounds;
};

/* Runs client against server as the two drivers would: the client's first
 * output is the initial response (or, with no_ir, the server first gets
 * in == NULL and must answer an empty challenge). */
static void run_pair(const struct sg_mech *m, const struct sg_sasl_server_env *senv,
		     const struct sg_sasl_client_env *cenv, bool no_ir, struct pair_result *pr)
{
	memset(pr, 0, sizeof(*pr));
	const char *err = NULL;
	void *c = m->client_start(cenv, &err);
	assert_non_null(c);
	void *s = m->server_start(senv);
	assert_non_null(s);
	struct sg_buf cout, sout;
	sg_buf_init(&cout, 12288);
	sg_buf_init(&sout, 12288);

	pr->client = m->client_step(c, NULL, 0, &cout, &err);
	if (no_ir) {
		assert_int_equal(m->server_step(s, NULL, 0, &sout, &pr->res), SG_MECH_CONTINUE);
		assert_int_equal(sout.len, 0);
	}
	while (pr->client == SG_MECH_CONTINUE || pr->client == SG_MECH_OK) {
		pr->rounds++;
		assert_true(pr->rounds < 10);
		sg_buf_reset(&sout);
		pr->server = m->server_step(s, cout.data != NULL ? cout.data : (const uint8_t *)"",
					    cout.len, &sout, &pr->res);
		if (pr->server != SG_MECH_CONTINUE)
			break;
		if (pr->client == SG_MECH_OK) {
			/* A 334 after the client finished: its next step fails. */
			sg_buf_reset(&cout);
			pr->client = m->client_step(c, sout.data, sout.len, &cout, &err);
			assert_int_equal(pr->client, SG_MECH_FAIL);
			break;
		}
		sg_buf_reset(&cout);
		pr->client = m->client_step(c, sout.data != NULL ? sout.data : (const uint8_t *)"",
					    sout.len, &cout, &err);
	}
	pr->client_error = err;
	m->server_free(s);
	m->client_free(c);
	sg_buf_free(&cout);
	sg_buf_free(&sout);
}

/* ------------------------------------------------------------------ EXTERNAL */

static void ext_env(struct sg_sasl_server_env *env, const char *identity)
{
	memset(env, 0, sizeof(*env));
	env->hostname = "localhost";
	env->service = "smtp";
	env->tls = true;
	env->cert_identity = identity;
}

static enum sg_mech_status ext_server(const char *identity, const char *msg, size_t len,
				      struct sg_mech_result *res)
{
	struct sg_sasl_server_env env;
	ext_env(&env, identity);
	memset(res, 0, sizeof(*res));
	void *s = sg_mech_external.server_start(&env);
	struct sg_buf out;
	sg_buf_init(&out, 1024);
	enum sg_mech_status st = sg_mech_external.server_step(s, (const uint8_t *)msg, len, &out, res);
	assert_int_equal(out.len, 0);
	/* a second message is a protocol error */
	struct sg_mech_result r2;
	memset(&r2, 0, sizeof(r2));
	if (st == SG_MECH_OK || st == SG_MECH_FAIL)
		assert_int_equal(sg_mech_external.server_step(s, (const uint8_t *)"", 0, &out, &r2),
				 SG_MECH_MALFORMED);
	sg_mech_external.server_free(s);
	sg_buf_free(&out);
	return st;
}

static void test_external_available(void **state)
{
	struct sg_sasl_server_env env;
	ext_env(&env, NULL);
	assert_false(sg_mech_external.server_available(&env));
	env.cert_identity = "";
	assert_false(sg_mech_external.server_available(&env));
	env.cert_identity = "alice";
	assert_true(sg_mech_external.server_available(&env));
}

static void test_external_server(void **state)
{
	struct sg_mech_result res;
	/* identity is a login; empty authzid derives it (RFC 4422 A.1) */
	assert_int_equal(ext_server("alice", "", 0, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	assert_int_equal(ext_server("alice", "alice", 5, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	/* identity is an address the account owns */
	assert_int_equal(ext_server("alias@example.org", "", 0, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	assert_int_equal(ext_server("ALIAS@example.org", "alice", 5, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	/* identity is an address-form login */
	assert_int_equal(ext_server("dave@example.org", "dave@example.org", 16, &res), SG_MECH_OK);
	assert_string_equal(res.login, "dave@example.org");
	/* authzid other than the derived login: no proxy authorization */
	assert_int_equal(ext_server("alice", "erin", 4, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "bad_authzid");
	assert_int_equal(ext_server("alias@example.org", "alias@example.org", 17, &res),
			 SG_MECH_FAIL);
	assert_string_equal(res.reason, "bad_authzid");
	assert_int_equal(ext_server("alice", "alicex", 6, &res), SG_MECH_FAIL);
	assert_int_equal(ext_server("alice", "alic", 4, &res), SG_MECH_FAIL);
	/* unknown identity, disabled account (login or via its address) */
	assert_int_equal(ext_server("mallory@example.org", "", 0, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "no_account_for_certificate");
	assert_int_equal(ext_server("bob", "", 0, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "disabled");
	assert_int_equal(ext_server("bob@example.org", "", 0, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "disabled");
	/* no certificate at all (the mechanism was not offered, but AUTH came anyway) */
	assert_int_equal(ext_server(NULL, "", 0, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "no_account_for_certificate");
	/* NUL inside the authzid */
	assert_int_equal(ext_server("alice", "al\0ce", 5, &res), SG_MECH_MALFORMED);
	/* store down */
	fake_store_down = true;
	assert_int_equal(ext_server("alice", "", 0, &res), SG_MECH_TEMPFAIL);
	fake_store_down = false;
}

static void test_external_pair(void **state)
{
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	struct pair_result pr;
	ext_env(&senv, "alias@example.org");
	memset(&cenv, 0, sizeof(cenv));
	for (int no_ir = 0; no_ir < 2; no_ir++) {
		cenv.authzid = NULL;
		run_pair(&sg_mech_external, &senv, &cenv, no_ir, &pr);
		assert_int_equal(pr.server, SG_MECH_OK);
		assert_int_equal(pr.client, SG_MECH_OK);
		assert_string_equal(pr.res.login, "alice");
		cenv.authzid = "alice";
		run_pair(&sg_mech_external, &senv, &cenv, no_ir, &pr);
		assert_int_equal(pr.server, SG_MECH_OK);
		cenv.authzid = "erin";
		run_pair(&sg_mech_external, &senv, &cenv, no_ir, &pr);
		assert_int_equal(pr.server, SG_MECH_FAIL);
		assert_string_equal(pr.res.reason, "bad_authzid");
	}
	/* the client refuses a non-empty challenge and a second one */
	const char *err = NULL;
	cenv.authzid = NULL;
	void *c = sg_mech_external.client_start(&cenv, &err);
	struct sg_buf out;
	sg_buf_init(&out, 100);
	assert_int_equal(sg_mech_external.client_step(c, (const uint8_t *)"x", 1, &out, &err),
			 SG_MECH_FAIL);
	sg_mech_external.client_free(c);
	c = sg_mech_external.client_start(&cenv, &err);
	assert_int_equal(sg_mech_external.client_step(c, NULL, 0, &out, &err), SG_MECH_OK);
	assert_int_equal(out.len, 0);
	assert_int_equal(sg_mech_external.client_step(c, (const uint8_t *)"", 0, &out, &err),
			 SG_MECH_FAIL);
	sg_mech_external.client_free(c);
	sg_buf_free(&out);
}

/* ------------------------------------------------------------------- GSSAPI */

#ifdef SG_HAVE_GSSAPI

static struct sg_sasl_config gss_cfg;

static int gss_setup(void **state)
{
	if (getenv("SG_TEST_KRB5_KEYTAB") == NULL || getenv("SG_TEST_KRB5_DIR") == NULL)
		return 0;
	memset(&gss_cfg, 0, sizeof(gss_cfg));
	gss_cfg.gss_keytab = getenv("SG_TEST_KRB5_KEYTAB");
	return 0;
}

#define NEED_KDC()                                                             \
	do {                                                                   \
		if (getenv("SG_TEST_KRB5_KEYTAB") == NULL) {                   \
			print_message("no test KDC (run under krb5_realm.py --run)\n"); \
			skip();                                                \
		}                                                              \
	} while (0)

/* Use this principal's ccache for the following gss_init_sec_context calls. */
static void use_ccache(const char *user)
{
	char path[1024];
	snprintf(path, sizeof(path), "FILE:%s/cc.%s", getenv("SG_TEST_KRB5_DIR"), user);
	OM_uint32 minor;
	assert_false(GSS_ERROR(gss_krb5_ccache_name(&minor, path, NULL)));
}

static void gss_env(struct sg_sasl_server_env *senv, struct sg_sasl_client_env *cenv,
		    const char *hostname)
{
	memset(senv, 0, sizeof(*senv));
	senv->cfg = &gss_cfg;
	senv->hostname = hostname;
	senv->service = "smtp";
	memset(cenv, 0, sizeof(*cenv));
	cenv->host = "localhost";
	cenv->service = "smtp";
}

/* Issue 10 item 26: without gss_realm only the keytab's realm maps (the
 * caller passes it as realm_allowed); no KDC needed for the pure mapping. */
static void test_gssapi_map_principal(void **state)
{
	static const struct {
		const char *principal, *realm, *domain;
		enum sg_mech_status want;
		const char *login_or_reason;
	} cases[] = {
		{"alice@EXAMPLE.TEST", "EXAMPLE.TEST", NULL, SG_MECH_OK, "alice"},
		{"alice@EXAMPLE.TEST", "EXAMPLE.TEST", "example.org", SG_MECH_OK, "alice@example.org"},
		/* a principal of another realm the KDC trusts is not the local alice */
		{"alice@OTHER.TEST", "EXAMPLE.TEST", NULL, SG_MECH_FAIL, "wrong_realm"},
		{"alice@example.test", "EXAMPLE.TEST", NULL, SG_MECH_FAIL, "wrong_realm"},
		{"alice@EXAMPLE.TEST.EVIL", "EXAMPLE.TEST", NULL, SG_MECH_FAIL, "wrong_realm"},
		/* no realm known (no keytab realm, no gss_realm): nothing maps */
		{"alice@EXAMPLE.TEST", NULL, NULL, SG_MECH_FAIL, "wrong_realm"},
		{"alice@EXAMPLE.TEST", "", NULL, SG_MECH_FAIL, "wrong_realm"},
		{"alice/admin@EXAMPLE.TEST", "EXAMPLE.TEST", NULL, SG_MECH_FAIL, "unknown_principal"},
		{"a\\@b@EXAMPLE.TEST", "EXAMPLE.TEST", NULL, SG_MECH_FAIL, "unknown_principal"},
		{"@EXAMPLE.TEST", "EXAMPLE.TEST", NULL, SG_MECH_FAIL, "unknown_principal"},
		{"alice", "EXAMPLE.TEST", NULL, SG_MECH_FAIL, "unknown_principal"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char login[256];
		const char *reason = NULL;
		enum sg_mech_status r = sg_gss_map_principal(cases[i].principal, cases[i].realm,
							     cases[i].domain, login, sizeof(login), &reason);
		if (r != cases[i].want)
			fail_msg("case %zu %s: got %d (%s)", i, cases[i].principal, r, reason ? reason : "-");
		if (r == SG_MECH_OK)
			assert_string_equal(login, cases[i].login_or_reason);
		else
			assert_string_equal(reason, cases[i].login_or_reason);
	}
	/* a login too long for the buffer is refused, not truncated */
	char small[8];
	const char *reason = NULL;
	assert_int_equal(sg_gss_map_principal("alice@R", "R", "example.org", small, sizeof(small),
					      &reason),
			 SG_MECH_FAIL);
}

static void test_gssapi_available(void **state)
{
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	struct sg_sasl_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	gss_env(&senv, &cenv, "localhost");
	senv.cfg = &cfg;
	assert_false(sg_mech_gssapi.server_available(&senv));
	cfg.gss_keytab = "/nonexistent/smtp.keytab";
	assert_false(sg_mech_gssapi.server_available(&senv));
	/* not configured or keytab gone: a temporary failure, not a 535 */
	void *s = sg_mech_gssapi.server_start(&senv);
	struct sg_buf out;
	sg_buf_init(&out, 100);
	struct sg_mech_result res;
	memset(&res, 0, sizeof(res));
	assert_int_equal(sg_mech_gssapi.server_step(s, (const uint8_t *)"\x60\x01", 2, &out, &res),
			 SG_MECH_TEMPFAIL);
	sg_mech_gssapi.server_free(s);
	sg_buf_free(&out);
	NEED_KDC();
	senv.cfg = &gss_cfg;
	assert_true(sg_mech_gssapi.server_available(&senv));
}

static void test_gssapi_ok(void **state)
{
	NEED_KDC();
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	struct pair_result pr;
	gss_env(&senv, &cenv, "localhost");
	use_ccache("alice");
	for (int no_ir = 0; no_ir < 2; no_ir++) {
		run_pair(&sg_mech_gssapi, &senv, &cenv, no_ir, &pr);
		assert_int_equal(pr.server, SG_MECH_OK);
		assert_int_equal(pr.client, SG_MECH_OK);
		assert_string_equal(pr.res.login, "alice");
		/* AP-REQ, AP-REP + empty, wrapped offer + wrapped answer */
		assert_int_equal(pr.rounds, 3);
	}
	/* authzid equal to the mapped login */
	cenv.authzid = "alice";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_OK);
	assert_string_equal(pr.res.login, "alice");
	/* the realm, when configured, must match */
	cenv.authzid = NULL;
	gss_cfg.gss_realm = getenv("SG_TEST_KRB5_REALM");
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_OK);
	gss_cfg.gss_realm = NULL;
}

static void test_gssapi_refused(void **state)
{
	NEED_KDC();
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	struct pair_result pr;
	gss_env(&senv, &cenv, "localhost");

	use_ccache("alice");
	cenv.authzid = "erin";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "bad_authzid");
	cenv.authzid = NULL;

	gss_cfg.gss_realm = "OTHER.TEST";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "wrong_realm");
	gss_cfg.gss_realm = NULL;

	fake_store_down = true;
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_TEMPFAIL);
	fake_store_down = false;

	use_ccache("bob");
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "disabled");
	assert_string_equal(pr.res.login, "bob");

	use_ccache("carol");
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "unknown_principal");

	/* a two-component principal is not the user "alice" */
	use_ccache("alice_admin");
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "unknown_principal");
}

static void test_gssapi_map_domain(void **state)
{
	NEED_KDC();
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	struct pair_result pr;
	gss_env(&senv, &cenv, "localhost");
	gss_cfg.gss_map_domain = "example.org";
	use_ccache("alice");
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_OK);
	assert_string_equal(pr.res.login, "alice@example.org");
	cenv.authzid = "alice";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "bad_authzid");
	cenv.authzid = "alice@example.org";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_OK);
	use_ccache("carol"); /* carol@example.org has no account */
	cenv.authzid = NULL;
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "unknown_principal");
	gss_cfg.gss_map_domain = NULL;
}

/* Our name is not in the keytab (clients reach us by another name): any key
 * in the keytab is accepted, but only for our service. */
static void test_gssapi_acceptor_name(void **state)
{
	NEED_KDC();
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	struct pair_result pr;
	use_ccache("alice");
	gss_env(&senv, &cenv, "mx1.example.org");
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_OK);
	assert_string_equal(pr.res.login, "alice");
	/* a ticket for imap/localhost (in the same keytab) is refused */
	cenv.service = "imap";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "gss_error");
	/* and with our own name in the keytab, the library refuses it */
	gss_env(&senv, &cenv, "localhost");
	cenv.service = "imap";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_FAIL);
	assert_string_equal(pr.res.reason, "gss_error");
	/* cfg->gss_service overrides env->service */
	gss_cfg.gss_service = "imap";
	run_pair(&sg_mech_gssapi, &senv, &cenv, false, &pr);
	assert_int_equal(pr.server, SG_MECH_OK);
	gss_cfg.gss_service = NULL;
}

/* A hand-driven client: establishes the context with server state s, then
 * sends payload wrapped (or raw). Returns the server's last status. If
 * first_token is not NULL, the first client token is copied there. */
static enum sg_mech_status raw_exchange(void *s, const uint8_t *payload, size_t plen, bool wrap,
					struct sg_mech_result *res, struct sg_buf *first_token)
{
	OM_uint32 major, minor;
	gss_name_t target;
	gss_buffer_desc nb = {strlen("smtp@localhost"), (void *)"smtp@localhost"};
	assert_false(GSS_ERROR(gss_import_name(&minor, &nb, GSS_C_NT_HOSTBASED_SERVICE, &target)));
	gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
	struct sg_buf sout;
	sg_buf_init(&sout, 12288);
	gss_buffer_desc in = GSS_C_EMPTY_BUFFER, out = GSS_C_EMPTY_BUFFER;
	enum sg_mech_status st;
	int round = 0;
	memset(res, 0, sizeof(*res));
	for (;;) {
		major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &ctx, target,
					     (gss_OID)gss_mech_krb5,
					     GSS_C_MUTUAL_FLAG | GSS_C_INTEG_FLAG, 0, NULL,
					     round == 0 ? GSS_C_NO_BUFFER : &in, NULL, &out, NULL,
					     NULL);
		assert_false(GSS_ERROR(major));
		if (round == 0 && first_token != NULL)
			assert_int_equal(sg_buf_append(first_token, out.value, out.length), 0);
		round++;
		sg_buf_reset(&sout);
		st = sg_mech_gssapi.server_step(s, out.length ? out.value : (void *)"", out.length,
						&sout, res);
		gss_release_buffer(&minor, &out);
		if (st != SG_MECH_CONTINUE)
			goto done;
		in.value = sout.data;
		in.length = sout.len;
		if (!(major & GSS_S_CONTINUE_NEEDED))
			break;
	}
	/* the server's offer */
	gss_buffer_desc un = GSS_C_EMPTY_BUFFER;
	int conf = 1;
	assert_false(GSS_ERROR(gss_unwrap(&minor, ctx, &in, &un, &conf, NULL)));
	assert_int_equal(conf, 0);
	assert_int_equal(un.length, 4);
	assert_memory_equal(un.value, "\x01\x00\x00\x00", 4);
	gss_release_buffer(&minor, &un);
	gss_buffer_desc pl = {plen, (void *)payload};
	gss_buffer_desc w = GSS_C_EMPTY_BUFFER;
	if (wrap) {
		assert_false(GSS_ERROR(gss_wrap(&minor, ctx, 0, GSS_C_QOP_DEFAULT, &pl, NULL, &w)));
		st = sg_mech_gssapi.server_step(s, w.value, w.length, &sout, res);
		gss_release_buffer(&minor, &w);
	} else {
		st = sg_mech_gssapi.server_step(s, payload, plen, &sout, res);
	}
done:
	gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
	gss_release_name(&minor, &target);
	sg_buf_free(&sout);
	return st;
}

static enum sg_mech_status layer_case(const char *payload, size_t plen, bool wrap,
				      struct sg_mech_result *res)
{
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	gss_env(&senv, &cenv, "localhost");
	void *s = sg_mech_gssapi.server_start(&senv);
	enum sg_mech_status st = raw_exchange(s, (const uint8_t *)payload, plen, wrap, res, NULL);
	sg_mech_gssapi.server_free(s);
	return st;
}

static void test_gssapi_layer_message(void **state)
{
	NEED_KDC();
	struct sg_mech_result res;
	use_ccache("alice");
	assert_int_equal(layer_case("\x01\x00\x00\x00", 4, true, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	assert_int_equal(layer_case("\x01\x00\x00\x00" "alice", 9, true, &res), SG_MECH_OK);
	/* a max buffer means nothing without a layer: ignored */
	assert_int_equal(layer_case("\x01\x01\x00\x00", 4, true, &res), SG_MECH_OK);
	/* shorter than 4 octets (GNU SASL CVE-2022-2469) */
	for (size_t n = 0; n < 4; n++) {
		assert_int_equal(layer_case("\x01\x00\x00", n, true, &res), SG_MECH_MALFORMED);
		assert_string_equal(res.reason, "bad_layer");
	}
	/* a layer we did not offer (integrity, confidentiality), or none chosen */
	assert_int_equal(layer_case("\x02\x00\x10\x00", 4, true, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "bad_layer");
	assert_int_equal(layer_case("\x04\x00\x10\x00", 4, true, &res), SG_MECH_FAIL);
	assert_int_equal(layer_case("\x00\x00\x00\x00", 4, true, &res), SG_MECH_FAIL);
	assert_int_equal(layer_case("\x07\x00\x00\x00", 4, true, &res), SG_MECH_FAIL);
	/* authzid with a NUL, or someone else */
	assert_int_equal(layer_case("\x01\x00\x00\x00" "al\0ce", 9, true, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "bad_authzid");
	assert_int_equal(layer_case("\x01\x00\x00\x00" "bob", 7, true, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "bad_authzid");
	/* not wrapped */
	assert_int_equal(layer_case("\x01\x00\x00\x00", 4, false, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "gss_error");
}

static void test_gssapi_bad_tokens(void **state)
{
	NEED_KDC();
	struct sg_sasl_server_env senv;
	struct sg_sasl_client_env cenv;
	struct sg_mech_result res;
	struct sg_buf out, tok;
	gss_env(&senv, &cenv, "localhost");
	use_ccache("alice");
	sg_buf_init(&out, 12288);
	sg_buf_init(&tok, 12288);

	static const char *const garbage[] = {"hello", "\x60", "\x60\x82\xff\xff\x06\x09",
					      "\x00\x00\x00\x00"};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		void *s = sg_mech_gssapi.server_start(&senv);
		memset(&res, 0, sizeof(res));
		size_t n = strlen(garbage[i]) > 0 ? strlen(garbage[i]) : 4;
		assert_int_equal(sg_mech_gssapi.server_step(s, (const uint8_t *)garbage[i], n, &out,
							    &res),
				 SG_MECH_FAIL);
		assert_string_equal(res.reason, "gss_error");
		/* after a failure the state stays failed */
		assert_int_not_equal(sg_mech_gssapi.server_step(s, (const uint8_t *)"", 0, &out,
								&res),
				     SG_MECH_OK);
		sg_mech_gssapi.server_free(s);
	}

	/* a real AP-REQ, then replayed to a new exchange */
	void *s = sg_mech_gssapi.server_start(&senv);
	assert_int_equal(raw_exchange(s, (const uint8_t *)"\x01\x00\x00\x00", 4, true, &res, &tok),
			 SG_MECH_OK);
	sg_mech_gssapi.server_free(s);
	s = sg_mech_gssapi.server_start(&senv);
	memset(&res, 0, sizeof(res));
	sg_buf_reset(&out);
	assert_int_equal(sg_mech_gssapi.server_step(s, tok.data, tok.len, &out, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "gss_error");
	sg_mech_gssapi.server_free(s);

	/* a flipped byte near the end of the AP-REQ (inside the authenticator) */
	tok.data[tok.len - 10] ^= 0x40;
	s = sg_mech_gssapi.server_start(&senv);
	memset(&res, 0, sizeof(res));
	assert_int_equal(sg_mech_gssapi.server_step(s, tok.data, tok.len, &out, &res), SG_MECH_FAIL);
	sg_mech_gssapi.server_free(s);

	/* truncated AP-REQ */
	s = sg_mech_gssapi.server_start(&senv);
	memset(&res, 0, sizeof(res));
	assert_int_equal(sg_mech_gssapi.server_step(s, tok.data, tok.len / 2, &out, &res),
			 SG_MECH_FAIL);
	sg_mech_gssapi.server_free(s);

	/* an empty message where a context token is due */
	s = sg_mech_gssapi.server_start(&senv);
	assert_int_equal(sg_mech_gssapi.server_step(s, NULL, 0, &out, &res), SG_MECH_CONTINUE);
	assert_int_equal(sg_mech_gssapi.server_step(s, (const uint8_t *)"", 0, &out, &res),
			 SG_MECH_MALFORMED);
	sg_mech_gssapi.server_free(s);

	/* abandoned mid-exchange (client "*"): free must release everything */
	s = sg_mech_gssapi.server_start(&senv);
	sg_mech_gssapi.server_free(s);
	sg_buf_free(&out);
	sg_buf_free(&tok);
}

static void test_gssapi_client_errors(void **state)
{
	NEED_KDC();
	struct sg_sasl_client_env cenv;
	memset(&cenv, 0, sizeof(cenv));
	const char *err = NULL;
	assert_null(sg_mech_gssapi.client_start(&cenv, &err));
	assert_non_null(err);
	/* no ticket for that principal's ccache */
	use_ccache("nobody");
	cenv.host = "localhost";
	void *c = sg_mech_gssapi.client_start(&cenv, &err);
	assert_non_null(c);
	struct sg_buf out;
	sg_buf_init(&out, 12288);
	assert_int_equal(sg_mech_gssapi.client_step(c, NULL, 0, &out, &err), SG_MECH_FAIL);
	assert_non_null(strstr(err, "GSSAPI init_sec_context"));
	sg_mech_gssapi.client_free(c);
	/* unknown service principal */
	use_ccache("alice");
	cenv.host = "nohost.example";
	c = sg_mech_gssapi.client_start(&cenv, &err);
	assert_int_equal(sg_mech_gssapi.client_step(c, NULL, 0, &out, &err), SG_MECH_FAIL);
	sg_mech_gssapi.client_free(c);
	sg_buf_free(&out);
}

#endif /* SG_HAVE_GSSAPI */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_external_available),
		cmocka_unit_test(test_external_server),
		cmocka_unit_test(test_external_pair),
#ifdef SG_HAVE_GSSAPI
		cmocka_unit_test_setup(test_gssapi_available, gss_setup),
		cmocka_unit_test_setup(test_gssapi_ok, gss_setup),
		cmocka_unit_test_setup(test_gssapi_refused, gss_setup),
		cmocka_unit_test_setup(test_gssapi_map_domain, gss_setup),
		cmocka_unit_test(test_gssapi_map_principal),
		cmocka_unit_test_setup(test_gssapi_acceptor_name, gss_setup),
		cmocka_unit_test_setup(test_gssapi_layer_message, gss_setup),
		cmocka_unit_test_setup(test_gssapi_bad_tokens, gss_setup),
		cmocka_unit_test_setup(test_gssapi_client_errors, gss_setup),
#endif
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
