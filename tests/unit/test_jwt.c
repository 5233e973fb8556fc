/* JWT verification: RFC 7515 A.1 (HS256), RS256 and ES256 with keys made
 * here, claim checks, alg confusion, malformed tokens, JWKS and the sandbox
 * secret file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "core/b64.h"
#include "core/util.h"
#include "sasl/jwt.h"

/* RFC 7515 appendix A.1 */
static const char a1_key_b64[] =
	"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
static const char a1_token[] =
	"eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
	"."
	"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
	"."
	"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
#define A1_EXP 1300819380

static uint8_t a1_key[64 + 1]; /* sg_b64url_decode appends a NUL */
static size_t a1_keylen;

static const uint8_t key32[32] = "0123456789abcdef0123456789abcdef";
#define NOW 1700000000

static struct sg_sasl_config hs_cfg(const uint8_t *key, size_t len)
{
	struct sg_sasl_config c;
	memset(&c, 0, sizeof(c));
	c.oauth_hs256_secret = key;
	c.oauth_hs256_secret_len = len;
	return c;
}

static char *b64u(const void *p, size_t n)
{
	char *s = sg_malloc(SG_B64_ENCODED_LEN(n) + 1);
	sg_b64url_encode(p, n, s);
	return s;
}

/* header.payload, the signing input */
static char *signing_input(const char *header, const char *payload)
{
	char *h = b64u(header, strlen(header)), *p = b64u(payload, strlen(payload));
	char *s = sg_asprintf("%s.%s", h, p);
	free(h);
	free(p);
	return s;
}

static char *make_hs256(const uint8_t *key, size_t keylen, const char *header, const char *payload)
{
	char *in = signing_input(header, payload);
	uint8_t mac[32];
	unsigned maclen = 0;
	assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, (uint8_t *)in, strlen(in), mac, &maclen));
	char *sig = b64u(mac, maclen);
	char *t = sg_asprintf("%s.%s", in, sig);
	free(in);
	free(sig);
	return t;
}

static int verify(const struct sg_sasl_config *c, const char *tok, int64_t now, char *sub,
		  const char **reason)
{
	return sg_jwt_verify(c, tok, now, sub, SG_LOGIN_MAX + 1, reason);
}

static int setup(void **state)
{
	assert_int_equal(sg_b64url_decode(a1_key_b64, strlen(a1_key_b64), a1_key, &a1_keylen), 0);
	assert_int_equal(a1_keylen, 64);
	return 0;
}

static void test_rfc7515_a1(void **state)
{
	struct sg_sasl_config c = hs_cfg(a1_key, a1_keylen);
	char sub[256];
	const char *reason;
	/* The example has no "sub": signature and exp pass, the subject does not. */
	assert_int_equal(verify(&c, a1_token, A1_EXP - 100, sub, &reason), 0);
	assert_string_equal(reason, "missing_subject");
	c.oauth_login_claim = "iss";
	assert_int_equal(verify(&c, a1_token, A1_EXP - 100, sub, &reason), 1);
	assert_string_equal(sub, "joe");
	assert_null(reason);
	/* within the leeway */
	assert_int_equal(verify(&c, a1_token, A1_EXP + SG_JWT_LEEWAY - 1, sub, &reason), 1);
	/* expired */
	assert_int_equal(verify(&c, a1_token, A1_EXP + SG_JWT_LEEWAY, sub, &reason), 0);
	assert_string_equal(reason, "expired_token");
	assert_int_equal(verify(&c, a1_token, NOW, sub, &reason), 0);
	assert_string_equal(reason, "expired_token");
	/* issuer and audience checks */
	c.oauth_issuer = "joe";
	assert_int_equal(verify(&c, a1_token, A1_EXP - 100, sub, &reason), 1);
	c.oauth_issuer = "https://idp.example";
	assert_int_equal(verify(&c, a1_token, A1_EXP - 100, sub, &reason), 0);
	assert_string_equal(reason, "wrong_issuer");
	c.oauth_issuer = NULL;
	c.oauth_audience = "smtp";
	assert_int_equal(verify(&c, a1_token, A1_EXP - 100, sub, &reason), 0);
	assert_string_equal(reason, "wrong_audience");
	/* another key */
	struct sg_sasl_config c2 = hs_cfg(key32, sizeof(key32));
	c2.oauth_login_claim = "iss";
	assert_int_equal(verify(&c2, a1_token, A1_EXP - 100, sub, &reason), 0);
	assert_string_equal(reason, "bad_signature");
}

static void test_tampered(void **state)
{
	struct sg_sasl_config c = hs_cfg(a1_key, a1_keylen);
	c.oauth_login_claim = "iss";
	char sub[256];
	const char *reason;
	char *t = sg_strdup(a1_token);
	char *sig = strrchr(t, '.') + 1;
	sig[0] = sig[0] == 'd' ? 'e' : 'd';
	assert_int_equal(verify(&c, t, A1_EXP - 100, sub, &reason), 0);
	assert_string_equal(reason, "bad_signature");
	free(t);
	/* a payload byte changed */
	t = sg_strdup(a1_token);
	char *pl = strchr(t, '.') + 1;
	pl[5] = pl[5] == 'A' ? 'B' : 'A';
	assert_int_equal(verify(&c, t, A1_EXP - 100, sub, &reason), 0);
	assert_string_equal(reason, "bad_signature");
	free(t);
	/* a truncated signature */
	t = sg_strdup(a1_token);
	t[strlen(t) - 3] = '\0';
	assert_int_equal(verify(&c, t, A1_EXP - 100, sub, &reason), 0);
	assert_true(strcmp(reason, "bad_signature") == 0 || strcmp(reason, "malformed_token") == 0);
	free(t);
}

static void test_alg_none_and_unsupported(void **state)
{
	struct sg_sasl_config c = hs_cfg(key32, sizeof(key32));
	char sub[256];
	const char *reason;
	char *in = signing_input("{\"alg\":\"none\"}", "{\"sub\":\"alice\",\"exp\":1900000000}");
	char *t = sg_asprintf("%s.", in);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "unsupported_alg");
	free(t);
	/* none with a valid-looking HMAC */
	t = make_hs256(key32, sizeof(key32), "{\"alg\":\"none\"}",
		       "{\"sub\":\"alice\",\"exp\":1900000000}");
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "unsupported_alg");
	free(t);
	static const char *const algs[] = {"None", "NONE", "HS384", "HS512", "PS256", "RS512",
					   "ES384", "EdDSA", "hs256"};
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		char *h = sg_asprintf("{\"alg\":\"%s\"}", algs[i]);
		t = make_hs256(key32, sizeof(key32), h, "{\"sub\":\"alice\",\"exp\":1900000000}");
		assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
		assert_string_equal(reason, "unsupported_alg");
		free(t);
		free(h);
	}
	/* crit: an extension we do not understand */
	t = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\",\"crit\":[\"x\"],\"x\":1}",
		       "{\"sub\":\"alice\",\"exp\":1900000000}");
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	free(t);
	free(in);
	/* HS256 with no secret configured */
	struct sg_sasl_config none;
	memset(&none, 0, sizeof(none));
	t = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\"}",
		       "{\"sub\":\"alice\",\"exp\":1900000000}");
	assert_int_equal(verify(&none, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "no_key");
	free(t);
}

static void test_claims(void **state)
{
	struct sg_sasl_config c = hs_cfg(key32, sizeof(key32));
	char sub[256];
	const char *reason;
	static const struct {
		const char *payload;
		const char *iss, *aud, *claim;
		int want;
		const char *reason;
		const char *sub;
	} cases[] = {
		{"{\"sub\":\"alice\",\"exp\":1700000100}", NULL, NULL, NULL, 1, NULL, "alice"},
		{"{\"sub\":\"alice\",\"exp\":1700000100.5}", NULL, NULL, NULL, 1, NULL, "alice"},
		{"{\"sub\":\"alice\"}", NULL, NULL, NULL, 0, "missing_expiry", NULL},
		{"{\"sub\":\"alice\",\"exp\":\"1700000100\"}", NULL, NULL, NULL, 0, "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":1699999000}", NULL, NULL, NULL, 0, "expired_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"nbf\":1700000500}", NULL, NULL, NULL, 0,
		 "not_yet_valid", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"nbf\":1700000030}", NULL, NULL, NULL, 1, NULL,
		 "alice"},
		{"{\"sub\":\"alice\",\"exp\":1700009000,\"iat\":1700005000}", NULL, NULL, NULL, 0,
		 "not_yet_valid", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"nbf\":\"soon\"}", NULL, NULL, NULL, 0,
		 "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"iss\":\"https://a\"}", "https://a", NULL, NULL,
		 1, NULL, "alice"},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"iss\":\"https://b\"}", "https://a", NULL, NULL,
		 0, "wrong_issuer", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100}", "https://a", NULL, NULL, 0, "wrong_issuer",
		 NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"aud\":\"smtp\"}", NULL, "smtp", NULL, 1, NULL,
		 "alice"},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"aud\":[\"web\",\"smtp\"]}", NULL, "smtp",
		 NULL, 1, NULL, "alice"},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"aud\":[\"web\",\"imap\"]}", NULL, "smtp",
		 NULL, 0, "wrong_audience", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"aud\":\"smtps\"}", NULL, "smtp", NULL, 0,
		 "wrong_audience", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"aud\":[]}", NULL, "smtp", NULL, 0,
		 "wrong_audience", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100}", NULL, "smtp", NULL, 0, "wrong_audience", NULL},
		{"{\"sub\":\"x\",\"email\":\"Alice@Example.com\",\"exp\":1700000100}", NULL, NULL,
		 "email", 1, NULL, "Alice@Example.com"},
		{"{\"sub\":\"x\",\"exp\":1700000100}", NULL, NULL, "email", 0, "missing_subject", NULL},
		{"{\"sub\":\"\",\"exp\":1700000100}", NULL, NULL, NULL, 0, "missing_subject", NULL},
		{"{\"sub\":42,\"exp\":1700000100}", NULL, NULL, NULL, 0, "missing_subject", NULL},
		{"{\"sub\":\"a\\nb\",\"exp\":1700000100}", NULL, NULL, NULL, 0, "missing_subject", NULL},
		{"{\"sub\":\"alice\",\"sub\":\"bob\",\"exp\":1700000100}", NULL, NULL, NULL, 0,
		 "malformed_token", NULL},
		{"[\"sub\",\"alice\"]", NULL, NULL, NULL, 0, "malformed_token", NULL},
		/* issue 10 item 22: exp = -2^63 made now - exp overflow and was accepted;
		 * dates outside [epoch, end of year 9999] are refused */
		{"{\"sub\":\"alice\",\"exp\":-9223372036854775808}", NULL, NULL, NULL, 0,
		 "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":-1}", NULL, NULL, NULL, 0, "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":-1e300}", NULL, NULL, NULL, 0, "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":9223372036854775807}", NULL, NULL, NULL, 0,
		 "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":253402300800}", NULL, NULL, NULL, 0, "malformed_token",
		 NULL},
		{"{\"sub\":\"alice\",\"exp\":253402300799}", NULL, NULL, NULL, 1, NULL, "alice"},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"nbf\":-9223372036854775808}", NULL, NULL,
		 NULL, 0, "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"iat\":9223372036854775807}", NULL, NULL,
		 NULL, 0, "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100,\"iat\":1e19}", NULL, NULL, NULL, 0,
		 "malformed_token", NULL},
		{"{\"sub\":\"alice\",\"exp\":1700000100", NULL, NULL, NULL, 0, "malformed_token", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c.oauth_issuer = cases[i].iss;
		c.oauth_audience = cases[i].aud;
		c.oauth_login_claim = cases[i].claim;
		char *t = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
				     cases[i].payload);
		int r = verify(&c, t, NOW, sub, &reason);
		if (r != cases[i].want)
			fail_msg("case %zu (%s): got %d (%s)", i, cases[i].payload, r,
				 reason ? reason : "-");
		if (cases[i].reason != NULL)
			assert_string_equal(reason, cases[i].reason);
		if (cases[i].sub != NULL)
			assert_string_equal(sub, cases[i].sub);
		free(t);
	}
	/* extreme clocks do not overflow either */
	c.oauth_issuer = c.oauth_audience = c.oauth_login_claim = NULL;
	char *tx = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\"}",
			      "{\"sub\":\"alice\",\"exp\":1700000100,\"nbf\":0}");
	assert_int_equal(verify(&c, tx, INT64_MIN, sub, &reason), 0);
	assert_string_equal(reason, "not_yet_valid");
	assert_int_equal(verify(&c, tx, INT64_MAX, sub, &reason), 0);
	assert_string_equal(reason, "expired_token");
	free(tx);
	/* A subject too long for the caller's buffer is refused, never truncated. */
	c.oauth_issuer = c.oauth_audience = c.oauth_login_claim = NULL;
	char *t = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\"}",
			     "{\"sub\":\"alice@example.com\",\"exp\":1700000100}");
	char small[8];
	assert_int_equal(sg_jwt_verify(&c, t, NOW, small, sizeof(small), &reason), 0);
	assert_string_equal(reason, "missing_subject");
	free(t);
}

static void test_malformed(void **state)
{
	struct sg_sasl_config c = hs_cfg(key32, sizeof(key32));
	char sub[256];
	const char *reason;
	char *good = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\"}",
				"{\"sub\":\"alice\",\"exp\":1900000000}");
	assert_int_equal(verify(&c, good, NOW, sub, &reason), 1);
	char *padded = sg_asprintf("%s=", good);
	char *spaced = sg_asprintf(" %s", good);
	char *five = sg_asprintf("%s.%s", good, "AAAA.AAAA");
	char *hnotjson = make_hs256(key32, sizeof(key32), "alg=HS256", "{\"sub\":\"a\",\"exp\":1900000000}");
	char *harray = make_hs256(key32, sizeof(key32), "[\"HS256\"]", "{\"sub\":\"a\",\"exp\":1900000000}");
	char *algnum = make_hs256(key32, sizeof(key32), "{\"alg\":256}", "{\"sub\":\"a\",\"exp\":1900000000}");
	char *noalg = make_hs256(key32, sizeof(key32), "{\"typ\":\"JWT\"}", "{\"sub\":\"a\",\"exp\":1900000000}");
	char *dup = make_hs256(key32, sizeof(key32), "{\"alg\":\"none\",\"alg\":\"HS256\"}",
			       "{\"sub\":\"a\",\"exp\":1900000000}");
	char *kidnum = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\",\"kid\":1}",
				  "{\"sub\":\"a\",\"exp\":1900000000}");
	char *nul = make_hs256(key32, sizeof(key32), "{\"alg\":\"HS256\"}",
			       "{\"sub\":\"a\\u0000b\",\"exp\":1900000000}");
	char *huge = sg_malloc(SG_JWT_MAX + 2);
	memset(huge, 'A', SG_JWT_MAX + 1);
	huge[SG_JWT_MAX + 1] = '\0';
	huge[10] = '.';
	huge[20] = '.';
	const char *const bad[] = {
		"", "a", "a.b", "abc.def", "a.b.c.d", ".YQ.YQ", "YQ..YQ", "e30.e30.!!",
		"eyJhbGciOiJIUzI1NiJ9.e30.A", /* 4n+1 signature */
		"eyJhbGciOiJIUzI1NiJ9.e3=.AAAA", padded, spaced, five, hnotjson, harray, algnum, noalg,
		dup, kidnum, nul, huge,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		reason = NULL;
		int r = verify(&c, bad[i], NOW, sub, &reason);
		if (r != 0)
			fail_msg("bad[%zu] accepted (%d)", i, r);
		assert_non_null(reason);
		assert_string_not_equal(reason, "internal_error");
	}
	assert_int_equal(verify(&c, NULL, NOW, sub, &reason), 0);
	free(good);
	free(padded);
	free(spaced);
	free(five);
	free(hnotjson);
	free(harray);
	free(algnum);
	free(noalg);
	free(dup);
	free(kidnum);
	free(nul);
	free(huge);
}

static void test_mint(void **state)
{
	struct sg_sasl_config c = hs_cfg(key32, sizeof(key32));
	c.oauth_issuer = "smtpgate";
	c.oauth_audience = "smtp";
	char sub[256];
	const char *reason;
	char *t = sg_jwt_mint_hs256(key32, sizeof(key32), "alice@example.com", "smtpgate", "smtp",
				    NOW, 3600);
	assert_non_null(t);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 1);
	assert_string_equal(sub, "alice@example.com");
	c.oauth_login_claim = "email";
	assert_int_equal(verify(&c, t, NOW + 3000, sub, &reason), 1);
	assert_string_equal(sub, "alice@example.com");
	assert_int_equal(verify(&c, t, NOW + 3600 + SG_JWT_LEEWAY, sub, &reason), 0);
	assert_string_equal(reason, "expired_token");
	/* iat in the future (a clock far behind) */
	assert_int_equal(verify(&c, t, NOW - 3600, sub, &reason), 0);
	assert_string_equal(reason, "not_yet_valid");
	free(t);
	/* no email claim for a bare login */
	t = sg_jwt_mint_hs256(key32, sizeof(key32), "bob", NULL, NULL, NOW, 60);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "wrong_issuer");
	c.oauth_issuer = c.oauth_audience = NULL;
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "missing_subject");
	c.oauth_login_claim = NULL;
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 1);
	assert_string_equal(sub, "bob");
	free(t);
	assert_null(sg_jwt_mint_hs256(key32, sizeof(key32), "", NULL, NULL, NOW, 60));
	assert_null(sg_jwt_mint_hs256(key32, 0, "bob", NULL, NULL, NOW, 60));
	assert_null(sg_jwt_mint_hs256(key32, sizeof(key32), "bob", NULL, NULL, NOW, 0));
	assert_null(sg_jwt_mint_hs256(key32, sizeof(key32), "b\xff", NULL, NULL, NOW, 60));
}

/* ---- RS256 / ES256 ------------------------------------------------------------ */

static char *bn_b64u(const BIGNUM *bn, int pad)
{
	uint8_t buf[1024];
	int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	assert_true(n > 0);
	return b64u(buf, (size_t)n);
}

static char *rsa_jwk(EVP_PKEY *pk, const char *kid)
{
	BIGNUM *n = NULL, *e = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n), 1);
	assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e), 1);
	char *sn = bn_b64u(n, 0), *se = bn_b64u(e, 0);
	char *j = sg_asprintf("{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}",
			      kid, sn, se);
	free(sn);
	free(se);
	BN_free(n);
	BN_free(e);
	return j;
}

static char *ec_jwk(EVP_PKEY *pk, const char *kid)
{
	BIGNUM *x = NULL, *y = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
	assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
	char *sx = bn_b64u(x, 32), *sy = bn_b64u(y, 32);
	char *j = sg_asprintf(
		"{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"alg\":\"ES256\",\"x\":\"%s\",\"y\":\"%s\"}",
		kid, sx, sy);
	free(sx);
	free(sy);
	BN_free(x);
	BN_free(y);
	return j;
}

static char *sign_pkey(EVP_PKEY *pk, bool ec, const char *header, const char *payload)
{
	char *in = signing_input(header, payload);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t siglen = 0;
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk), 1);
	assert_int_equal(EVP_DigestSign(md, NULL, &siglen, (uint8_t *)in, strlen(in)), 1);
	uint8_t *sig = sg_malloc(siglen);
	assert_int_equal(EVP_DigestSign(md, sig, &siglen, (uint8_t *)in, strlen(in)), 1);
	EVP_MD_CTX_free(md);
	char *s;
	if (ec) {
		/* DER -> R || S (RFC 7518 section 3.4) */
		const uint8_t *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
		assert_non_null(es);
		uint8_t raw[64];
		assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
		assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
		ECDSA_SIG_free(es);
		s = b64u(raw, 64);
	} else {
		s = b64u(sig, siglen);
	}
	char *t = sg_asprintf("%s.%s", in, s);
	free(s);
	free(sig);
	free(in);
	return t;
}

struct pk_state {
	EVP_PKEY *rsa, *rsa2, *ec, *ec2;
	char path[64];
	void *jwks;
};

static int pk_setup(void **state)
{
	setup(state);
	struct pk_state *ps = sg_calloc(1, sizeof(*ps));
	ps->rsa = EVP_RSA_gen(2048);
	ps->rsa2 = EVP_RSA_gen(2048);
	ps->ec = EVP_EC_gen("P-256");
	ps->ec2 = EVP_EC_gen("P-256");
	assert_non_null(ps->rsa);
	assert_non_null(ps->ec);
	char *r = rsa_jwk(ps->rsa, "r1"), *e = ec_jwk(ps->ec, "e1");
	/* an unsupported key type and an encryption key are skipped */
	char *jwks = sg_asprintf("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"},%s,%s,"
				 "{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
				 r, e);
	snprintf(ps->path, sizeof(ps->path), "/tmp/sg-test-jwks-XXXXXX");
	int fd = mkstemp(ps->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, jwks, strlen(jwks)), (ssize_t)strlen(jwks));
	close(fd);
	const char *err = NULL;
	if (sg_jwks_load(ps->path, &ps->jwks, &err) < 0)
		fail_msg("sg_jwks_load: %s", err);
	free(r);
	free(e);
	free(jwks);
	*state = ps;
	return 0;
}

static int pk_teardown(void **state)
{
	struct pk_state *ps = *state;
	unlink(ps->path);
	sg_jwks_free(&ps->jwks);
	assert_null(ps->jwks);
	EVP_PKEY_free(ps->rsa);
	EVP_PKEY_free(ps->rsa2);
	EVP_PKEY_free(ps->ec);
	EVP_PKEY_free(ps->ec2);
	free(ps);
	return 0;
}

static const char pk_claims[] = "{\"sub\":\"carol@example.com\",\"exp\":1700000100}";

static void test_rs256(void **state)
{
	struct pk_state *ps = *state;
	struct sg_sasl_config c;
	memset(&c, 0, sizeof(c));
	c.oauth_jwks = ps->jwks;
	char sub[256];
	const char *reason;
	char *t = sign_pkey(ps->rsa, false, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 1);
	assert_string_equal(sub, "carol@example.com");
	/* expired through the same path */
	assert_int_equal(verify(&c, t, NOW + 1000, sub, &reason), 0);
	assert_string_equal(reason, "expired_token");
	/* no kid: every RSA key is tried */
	free(t);
	t = sign_pkey(ps->rsa, false, "{\"alg\":\"RS256\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 1);
	free(t);
	/* an unknown kid */
	t = sign_pkey(ps->rsa, false, "{\"alg\":\"RS256\",\"kid\":\"r9\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "unknown_key");
	free(t);
	/* signed by another key */
	t = sign_pkey(ps->rsa2, false, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "bad_signature");
	free(t);
	/* the EC key's kid with RS256: alg/key-type mismatch */
	t = sign_pkey(ps->rsa, false, "{\"alg\":\"RS256\",\"kid\":\"e1\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "unknown_key");
	free(t);
	/* loaded from cfg->oauth_jwks_file for the call */
	c.oauth_jwks = NULL;
	c.oauth_jwks_file = ps->path;
	t = sign_pkey(ps->rsa, false, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 1);
	c.oauth_jwks_file = "/nonexistent/jwks.json";
	assert_int_equal(verify(&c, t, NOW, sub, &reason), -1);
	assert_string_equal(reason, "internal_error");
	/* an RS256 token with only an HS256 secret */
	struct sg_sasl_config h = hs_cfg(key32, sizeof(key32));
	assert_int_equal(verify(&h, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "no_key");
	free(t);
}

static void test_es256(void **state)
{
	struct pk_state *ps = *state;
	struct sg_sasl_config c;
	memset(&c, 0, sizeof(c));
	c.oauth_jwks = ps->jwks;
	char sub[256];
	const char *reason;
	for (int i = 0; i < 20; i++) { /* r and s of varying lengths */
		char *t = sign_pkey(ps->ec, true, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", pk_claims);
		assert_int_equal(verify(&c, t, NOW, sub, &reason), 1);
		assert_string_equal(sub, "carol@example.com");
		free(t);
	}
	char *t = sign_pkey(ps->ec, true, "{\"alg\":\"ES256\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 1);
	free(t);
	t = sign_pkey(ps->ec2, true, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "bad_signature");
	free(t);
	/* the RSA key's kid with ES256 */
	t = sign_pkey(ps->ec, true, "{\"alg\":\"ES256\",\"kid\":\"r1\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "unknown_key");
	free(t);
	/* a DER signature instead of R || S */
	char *in = signing_input("{\"alg\":\"ES256\",\"kid\":\"e1\"}", pk_claims);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t der[80];
	size_t derlen = sizeof(der);
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ps->ec), 1);
	assert_int_equal(EVP_DigestSign(md, der, &derlen, (uint8_t *)in, strlen(in)), 1);
	EVP_MD_CTX_free(md);
	char *s = b64u(der, derlen);
	t = sg_asprintf("%s.%s", in, s);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "bad_signature");
	free(t);
	free(s);
	free(in);
	/* alg confusion: HS256 with the EC public key as the HMAC secret */
	uint8_t pub[65];
	size_t publen = 0;
	assert_int_equal(EVP_PKEY_get_octet_string_param(ps->ec, OSSL_PKEY_PARAM_PUB_KEY, pub,
							 sizeof(pub), &publen),
			 1);
	t = make_hs256(pub, publen, "{\"alg\":\"HS256\",\"kid\":\"e1\"}", pk_claims);
	assert_int_equal(verify(&c, t, NOW, sub, &reason), 0);
	assert_string_equal(reason, "no_key");
	free(t);
}

static void test_jwks_errors(void **state)
{
	void *j = NULL;
	const char *err = NULL;
	static const char *const bad[] = {
		"",
		"[]",
		"{\"keys\":{}}",
		"{\"keys\":[]}",
		"{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
		"{\"keys\":[1]}",
		"{\"keys\":[{\"n\":\"AQAB\"}]}",
		/* RSA shorter than 2048 bits */
		"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQABAQABAQABAQABAQABAQABAQABAQAB\",\"e\":\"AQAB\"}]}",
		/* EC point not on the curve */
		"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\",\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
		/* x too short */
		"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
		"{\"keys\":[{\"kty\":\"RSA\",\"kid\":5,\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (sg_jwks_parse(bad[i], strlen(bad[i]), &j, &err) == 0)
			fail_msg("bad JWKS %zu accepted", i);
		assert_null(j);
		assert_non_null(err);
	}
	assert_int_equal(sg_jwks_load("/nonexistent/jwks.json", &j, &err), -1);
	sg_jwks_free(&j); /* NULL is fine */
}

static void test_secret_file(void **state)
{
	char dir[] = "/tmp/sg-test-oauth-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *sub = sg_asprintf("%s/data", dir); /* created when missing */
	uint8_t *k1 = NULL, *k2 = NULL;
	size_t l1 = 0, l2 = 0;
	const char *err = NULL;
	assert_int_equal(sg_oauth_secret_load_or_create(sub, &k1, &l1, &err), 0);
	assert_int_equal(l1, SG_OAUTH_SECRET_LEN);
	assert_int_equal(sg_oauth_secret_load_or_create(sub, &k2, &l2, &err), 0);
	assert_int_equal(l2, l1);
	assert_memory_equal(k1, k2, l1);
	char *path = sg_asprintf("%s/%s", sub, SG_OAUTH_SECRET_FILE);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	uint8_t *k3 = NULL;
	size_t l3 = 0;
	assert_int_equal(sg_oauth_secret_load(path, &k3, &l3, &err), 0);
	assert_int_equal(l3, l1);
	assert_memory_equal(k1, k3, l1);
	sg_oauth_secret_free(&k3, l3);
	assert_int_equal(sg_oauth_secret_load("/nonexistent/key", &k3, &l3, &err), -1);
	/* a configured secret typed into an editor: the line end is not part of it */
	char *conf = sg_asprintf("%s/typed.key", dir);
	FILE *cf = fopen(conf, "w");
	assert_non_null(cf);
	fputs("correct horse battery staple\r\n", cf);
	fclose(cf);
	assert_int_equal(sg_oauth_secret_load(conf, &k3, &l3, &err), 0);
	assert_int_equal(l3, strlen("correct horse battery staple"));
	assert_memory_equal(k3, "correct horse battery staple", l3);
	sg_oauth_secret_free(&k3, l3);
	cf = fopen(conf, "w");
	fputs("short\n", cf);
	fclose(cf);
	assert_int_equal(sg_oauth_secret_load(conf, &k3, &l3, &err), -1);
	unlink(conf);
	free(conf);
	/* a token minted with it verifies with it */
	struct sg_sasl_config c = hs_cfg(k1, l1);
	char *t = sg_jwt_mint_hs256(k1, l1, "alice", NULL, NULL, NOW, 60);
	char s[256];
	const char *reason;
	assert_int_equal(verify(&c, t, NOW, s, &reason), 1);
	free(t);
	sg_oauth_secret_free(&k1, l1);
	sg_oauth_secret_free(&k2, l2);
	assert_null(k1);
	/* group-readable: refused */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(sg_oauth_secret_load_or_create(sub, &k1, &l1, &err), -1);
	assert_null(k1);
	/* too short */
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(truncate(path, 16), 0);
	assert_int_equal(sg_oauth_secret_load_or_create(sub, &k1, &l1, &err), -1);
	unlink(path);
	rmdir(sub);
	rmdir(dir);
	free(path);
	free(sub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_rfc7515_a1, setup),
		cmocka_unit_test_setup(test_tampered, setup),
		cmocka_unit_test(test_alg_none_and_unsupported),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_mint),
		cmocka_unit_test_setup_teardown(test_rs256, pk_setup, pk_teardown),
		cmocka_unit_test_setup_teardown(test_es256, pk_setup, pk_teardown),
		cmocka_unit_test(test_jwks_errors),
		cmocka_unit_test(test_secret_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
