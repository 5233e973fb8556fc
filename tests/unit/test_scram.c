/* SCRAM engine: RFC 5802 (SHA-1) and RFC 7677 (SHA-256) exchanges with the
 * RFC nonces, channel binding, and tables of malformed messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/b64.h"
#include "core/buf.h"
#include "core/util.h"
#include "sasl/scram.h"
#include "store/cred.h"

struct vector {
	enum sg_scram_hash hash;
	enum sg_cred_kind kind;
	const char *password;
	const char *salt64;
	const char *cnonce, *snonce;
	const char *client_first, *server_first, *client_final, *server_final;
};

static const struct vector rfc5802 = {
	SG_SCRAM_H_SHA1, SG_CRED_SCRAM_SHA1, "pencil", "QSXCR+Q6sek8bf92",
	"fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j",
	"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
	"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
	"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
	"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

static const struct vector rfc7677 = {
	SG_SCRAM_H_SHA256, SG_CRED_SCRAM_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==",
	"rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
	"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
	"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

static const uint8_t fake_cb[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
				    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void derive(const struct vector *t, const char *password, struct sg_verifier *v)
{
	uint8_t salt[64];
	size_t salt_len;
	assert_int_equal(sg_b64_decode(t->salt64, strlen(t->salt64), salt, &salt_len), 0);
	assert_int_equal(sg_verifier_derive_scram(t->kind, password, salt, salt_len, 4096, v), 0);
}

/* Runs the server engine up to server-first; returns the parse status. */
static enum sg_mech_status server_to_first(struct sg_scram_server *s, const struct vector *t,
					   const struct sg_scram_cb *cb, const char *client_first,
					   const struct sg_verifier *v, struct sg_buf *out)
{
	const char *reason = NULL;
	sg_scram_server_init(s, t->hash, cb);
	enum sg_mech_status r = sg_scram_server_parse_first(
		s, (const uint8_t *)client_first, strlen(client_first), &reason);
	if (r != SG_MECH_OK) {
		assert_non_null(reason);
		return r;
	}
	sg_scram_test_server_nonce = t->snonce;
	assert_int_equal(sg_scram_server_make_first(s, v->u.scram.salt, v->u.scram.salt_len,
						    v->u.scram.iterations, v->u.scram.stored_key,
						    v->u.scram.server_key, out),
			 0);
	sg_scram_test_server_nonce = NULL;
	return r;
}

static void run_server_vector(const struct vector *t)
{
	struct sg_verifier v;
	derive(t, t->password, &v);
	struct sg_scram_server s;
	struct sg_buf out;
	sg_buf_init(&out, 4096);
	assert_int_equal(server_to_first(&s, t, NULL, t->client_first, &v, &out), SG_MECH_OK);
	assert_string_equal(s.user, "user");
	assert_string_equal(sg_buf_str(&out), t->server_first);
	sg_buf_reset(&out);
	const char *reason = NULL;
	assert_int_equal(sg_scram_server_final(&s, (const uint8_t *)t->client_final,
					       strlen(t->client_final), &out, &reason),
			 SG_MECH_OK);
	assert_string_equal(sg_buf_str(&out), t->server_final);
	sg_scram_server_clear(&s);
	sg_buf_free(&out);
}

static void run_client_vector(const struct vector *t)
{
	struct sg_scram_client c;
	struct sg_buf out;
	const char *err = NULL;
	sg_buf_init(&out, 4096);
	sg_scram_test_client_nonce = t->cnonce;
	assert_int_equal(sg_scram_client_first(&c, t->hash, "user", NULL, 'n', NULL, NULL, 0, &out,
					       &err),
			 0);
	sg_scram_test_client_nonce = NULL;
	assert_string_equal(sg_buf_str(&out), t->client_first);
	sg_buf_reset(&out);
	assert_int_equal(sg_scram_client_final(&c, t->password, (const uint8_t *)t->server_first,
					       strlen(t->server_first), &out, &err),
			 0);
	assert_string_equal(sg_buf_str(&out), t->client_final);
	assert_int_equal(sg_scram_client_verify(&c, (const uint8_t *)t->server_final,
						strlen(t->server_final), &err),
			 0);
	sg_scram_client_clear(&c);
	sg_buf_free(&out);
}

static void test_rfc5802_server(void **state)
{
	run_server_vector(&rfc5802);
}
static void test_rfc5802_client(void **state)
{
	run_client_vector(&rfc5802);
}
static void test_rfc7677_server(void **state)
{
	run_server_vector(&rfc7677);
}
static void test_rfc7677_client(void **state)
{
	run_client_vector(&rfc7677);
}

static void test_rfc7677_keys(void **state)
{
	struct sg_verifier v;
	derive(&rfc7677, "pencil", &v);
	char b[64];
	sg_b64_encode(v.u.scram.stored_key, 32, b);
	assert_string_equal(b, "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=");
	sg_b64_encode(v.u.scram.server_key, 32, b);
	assert_string_equal(b, "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
}

/* A client that knows the wrong password: a plain failure, no e= (issue 10
 * item 25: GNU SASL clients cannot parse e=invalid-proof and hide the 535). */
static void test_wrong_proof(void **state)
{
	const struct vector *t = &rfc7677;
	struct sg_verifier v;
	derive(t, t->password, &v);
	struct sg_scram_server s;
	struct sg_scram_client c;
	struct sg_buf out;
	const char *err = NULL, *reason = NULL;
	sg_buf_init(&out, 4096);
	assert_int_equal(sg_scram_client_first(&c, t->hash, "user", NULL, 'n', NULL, NULL, 0, &out,
					       &err),
			 0);
	char cf[256];
	sg_strlcpy(cf, sg_buf_str(&out), sizeof(cf));
	sg_buf_reset(&out);
	assert_int_equal(server_to_first(&s, t, NULL, cf, &v, &out), SG_MECH_OK);
	char sf[256];
	sg_strlcpy(sf, sg_buf_str(&out), sizeof(sf));
	sg_buf_reset(&out);
	assert_int_equal(sg_scram_client_final(&c, "pencil2", (const uint8_t *)sf, strlen(sf), &out,
					       &err),
			 0);
	char cfin[512];
	sg_strlcpy(cfin, sg_buf_str(&out), sizeof(cfin));
	sg_buf_reset(&out);
	assert_int_equal(
		sg_scram_server_final(&s, (const uint8_t *)cfin, strlen(cfin), &out, &reason),
		SG_MECH_FAIL);
	assert_int_equal(out.len, 0);
	assert_string_equal(reason, "wrong_password");
	sg_scram_client_clear(&c);
	sg_scram_server_clear(&s);
	sg_buf_free(&out);
}

/* Full in-memory exchange through both engines with a given cb setup. */
static enum sg_mech_status exchange(char flag, const char *client_cb_type,
				    const uint8_t *client_cb, const struct sg_scram_cb *server_cb,
				    const char *authzid, const char *user, struct sg_buf *last)
{
	const struct vector *t = &rfc7677;
	struct sg_verifier v;
	derive(t, t->password, &v);
	struct sg_scram_server s;
	struct sg_scram_client c;
	struct sg_buf out;
	const char *err = NULL, *reason = NULL;
	sg_buf_init(&out, 4096);
	assert_int_equal(sg_scram_client_first(&c, t->hash, user, authzid, flag, client_cb_type,
					       client_cb, client_cb ? 32 : 0, &out, &err),
			 0);
	char cf[1024];
	sg_strlcpy(cf, sg_buf_str(&out), sizeof(cf));
	sg_buf_reset(&out);
	enum sg_mech_status r = server_to_first(&s, t, server_cb, cf, &v, &out);
	if (r == SG_MECH_OK) {
		char sf[512];
		sg_strlcpy(sf, sg_buf_str(&out), sizeof(sf));
		sg_buf_reset(&out);
		assert_int_equal(sg_scram_client_final(&c, "pencil", (const uint8_t *)sf,
						       strlen(sf), &out, &err),
				 0);
		char cfin[1024];
		sg_strlcpy(cfin, sg_buf_str(&out), sizeof(cfin));
		sg_buf_reset(&out);
		r = sg_scram_server_final(&s, (const uint8_t *)cfin, strlen(cfin), &out, &reason);
		if (r == SG_MECH_OK)
			assert_int_equal(sg_scram_client_verify(&c, out.data, out.len, &err), 0);
		sg_buf_append(last, out.data, out.len);
	}
	sg_scram_client_clear(&c);
	sg_scram_server_clear(&s);
	sg_buf_free(&out);
	return r;
}

static void test_channel_binding(void **state)
{
	uint8_t other_cb[32];
	memset(other_cb, 0x55, sizeof(other_cb));
	struct sg_scram_cb plus = {true, true, "tls-exporter", fake_cb, 32};
	struct sg_scram_cb plus_unique = {true, true, "tls-unique", fake_cb, 32};
	struct sg_scram_cb nonplus_offered = {false, true, "tls-exporter", fake_cb, 32};
	struct sg_scram_cb nonplus_not_offered = {false, false, NULL, NULL, 0};
	struct sg_buf last;
	sg_buf_init(&last, 1024);

	/* -PLUS with matching binding */
	assert_int_equal(exchange('p', "tls-exporter", fake_cb, &plus, NULL, "user", &last),
			 SG_MECH_OK);
	/* tls-unique accepted when that is what the connection has */
	assert_int_equal(exchange('p', "tls-unique", fake_cb, &plus_unique, NULL, "user", &last),
			 SG_MECH_OK);
	/* binding data differ (a MITM terminating TLS) */
	sg_buf_reset(&last);
	assert_int_equal(exchange('p', "tls-exporter", other_cb, &plus, NULL, "user", &last),
			 SG_MECH_FAIL);
	assert_string_equal(sg_buf_str(&last), "e=channel-bindings-dont-match");
	/* wrong type */
	assert_int_equal(exchange('p', "tls-unique", fake_cb, &plus, NULL, "user", &last),
			 SG_MECH_FAIL);
	/* -PLUS mechanism without p= */
	assert_int_equal(exchange('n', NULL, NULL, &plus, NULL, "user", &last), SG_MECH_FAIL);
	/* downgrade: 'y' while -PLUS was offered (RFC 5802 section 6) */
	assert_int_equal(exchange('y', NULL, NULL, &nonplus_offered, NULL, "user", &last),
			 SG_MECH_FAIL);
	/* 'y' when we did not offer -PLUS is fine */
	assert_int_equal(exchange('y', NULL, NULL, &nonplus_not_offered, NULL, "user", &last),
			 SG_MECH_OK);
	/* p= on a non-PLUS mechanism */
	assert_int_equal(
		exchange('p', "tls-exporter", fake_cb, &nonplus_offered, NULL, "user", &last),
		SG_MECH_MALFORMED);
	/* authzid equal to the user is fine, different is refused */
	assert_int_equal(exchange('n', NULL, NULL, NULL, "user", "user", &last), SG_MECH_OK);
	assert_int_equal(exchange('n', NULL, NULL, NULL, "admin", "user", &last), SG_MECH_FAIL);
	sg_buf_free(&last);
}

static void test_escaping(void **state)
{
	struct sg_scram_server s;
	const char *reason;
	const char *in = "n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=abc";
	sg_scram_server_init(&s, SG_SCRAM_H_SHA256, NULL);
	assert_int_equal(sg_scram_server_parse_first(&s, (const uint8_t *)in, strlen(in), &reason),
			 SG_MECH_OK);
	assert_string_equal(s.user, "a,b=c");
	assert_string_equal(s.authzid, "a,b=c");
	sg_scram_server_clear(&s);

	/* the client escapes */
	struct sg_scram_client c;
	struct sg_buf out;
	const char *err;
	sg_buf_init(&out, 1024);
	sg_scram_test_client_nonce = "xyz";
	assert_int_equal(
		sg_scram_client_first(&c, SG_SCRAM_H_SHA1, "a,b=c", NULL, 'n', NULL, NULL, 0, &out, &err),
		0);
	sg_scram_test_client_nonce = NULL;
	assert_string_equal(sg_buf_str(&out), "n,,n=a=2Cb=3Dc,r=xyz");
	sg_scram_client_clear(&c);
	sg_buf_free(&out);
}

static void test_malformed_client_first(void **state)
{
	static const struct {
		const char *in;
		enum sg_mech_status want;
	} table[] = {
		{"", SG_MECH_MALFORMED},
		{"n", SG_MECH_MALFORMED},
		{"n,", SG_MECH_MALFORMED},
		{"n,,", SG_MECH_MALFORMED},
		{"x,,n=user,r=abc", SG_MECH_MALFORMED},       /* bad gs2 flag */
		{"n,,n=user", SG_MECH_MALFORMED},             /* no nonce */
		{"n,,n=user,r=", SG_MECH_MALFORMED},          /* empty nonce */
		{"n,,n=,r=abc", SG_MECH_MALFORMED},           /* empty user */
		{"n,,r=abc,n=user", SG_MECH_MALFORMED},       /* order */
		{"n,,n=us=er,r=abc", SG_MECH_MALFORMED},      /* bad escape */
		{"n,,n=us=2c,r=abc", SG_MECH_MALFORMED},      /* lower-case escape */
		{"n,,n=user=,r=abc", SG_MECH_MALFORMED},      /* truncated escape */
		{"n,,m=ext,n=user,r=abc", SG_MECH_MALFORMED}, /* reserved m= */
		{"n,,n=user,r=ab c", SG_MECH_MALFORMED},      /* non-printable nonce */
		{"n,b=x,n=user,r=abc", SG_MECH_MALFORMED},    /* unknown gs2 field */
		{"n,a=,n=user,r=abc", SG_MECH_MALFORMED},     /* empty authzid */
		{"p=,,n=user,r=abc", SG_MECH_MALFORMED},      /* empty cb name */
		{"p=tls_unique,,n=user,r=abc", SG_MECH_MALFORMED},
		{"p=tls-exporter,,n=user,r=abc", SG_MECH_MALFORMED}, /* p= on non-PLUS */
		{"y,,n=user,r=abc", SG_MECH_FAIL},            /* downgrade (plus offered) */
		{"n,a=bob,n=user,r=abc", SG_MECH_FAIL},       /* authzid != user */
		{"n,,n=user,r=abc", SG_MECH_OK},
		{"n,,n=user,r=abc,x=ext", SG_MECH_OK},        /* extensions ignored */
	};
	struct sg_scram_cb cb = {false, true, "tls-exporter", fake_cb, 32};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		struct sg_scram_server s;
		const char *reason = NULL;
		sg_scram_server_init(&s, SG_SCRAM_H_SHA256, &cb);
		enum sg_mech_status r = sg_scram_server_parse_first(
			&s, (const uint8_t *)table[i].in, strlen(table[i].in), &reason);
		if (r != table[i].want)
			fail_msg("client-first '%s': got %d want %d", table[i].in, r, table[i].want);
		sg_scram_server_clear(&s);
	}
	/* embedded NUL */
	struct sg_scram_server s;
	const char *reason;
	sg_scram_server_init(&s, SG_SCRAM_H_SHA256, &cb);
	assert_int_equal(sg_scram_server_parse_first(&s, (const uint8_t *)"n,,n=us\0er,r=abc", 16,
						     &reason),
			 SG_MECH_MALFORMED);
	sg_scram_server_clear(&s);
}

static void test_malformed_client_final(void **state)
{
	const struct vector *t = &rfc7677;
	const char *N = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
	char buf[16][256];
	static const struct {
		const char *fmt;
		enum sg_mech_status want;
	} table[] = {
		{"", SG_MECH_MALFORMED},
		{"c=biws,r=%s", SG_MECH_MALFORMED},                        /* no proof */
		{"c=biws,r=%s,p=", SG_MECH_MALFORMED},                     /* empty proof */
		{"c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ", SG_MECH_MALFORMED},
		{"c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgs", SG_MECH_MALFORMED}, /* short */
		{"c=biws,r=%sX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SG_MECH_MALFORMED},
		{"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=%.0s",
		 SG_MECH_MALFORMED}, /* client nonce only */
		{"r=%s,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SG_MECH_MALFORMED},
		{"c=bi*s,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SG_MECH_MALFORMED},
		{"c=eSws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SG_MECH_FAIL}, /* y,, */
		{"c=biws,r=%s,p=AHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SG_MECH_FAIL},
		{"c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SG_MECH_OK},
	};
	struct sg_verifier v;
	derive(t, t->password, &v);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		snprintf(buf[i], sizeof(buf[i]), table[i].fmt, N);
		struct sg_scram_server s;
		struct sg_buf out;
		const char *reason = NULL;
		sg_buf_init(&out, 4096);
		assert_int_equal(server_to_first(&s, t, NULL, t->client_first, &v, &out), SG_MECH_OK);
		sg_buf_reset(&out);
		enum sg_mech_status r = sg_scram_server_final(&s, (const uint8_t *)buf[i],
							      strlen(buf[i]), &out, &reason);
		if (r != table[i].want)
			fail_msg("client-final '%s': got %d want %d", buf[i], r, table[i].want);
		/* e= only for a channel-binding mismatch, never for a wrong proof */
		if (r == SG_MECH_FAIL && strcmp(reason, "cb_mismatch") == 0)
			assert_string_equal(sg_buf_str(&out), "e=channel-bindings-dont-match");
		else if (r == SG_MECH_FAIL)
			assert_int_equal(out.len, 0);
		/* a second final is refused */
		assert_int_equal(sg_scram_server_final(&s, (const uint8_t *)buf[i], strlen(buf[i]),
						       &out, &reason),
				 SG_MECH_MALFORMED);
		sg_scram_server_clear(&s);
		sg_buf_free(&out);
	}
}

static void test_client_refuses(void **state)
{
	static const char *const bad_server_first[] = {
		"",
		"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",      /* nonce not extended */
		"r=XXXX+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",  /* not our prefix */
		"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=0",
		"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=x",
		"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf9,i=4096",   /* bad base64 */
		"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=,i=4096",
		"r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096",
		"m=x,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
	};
	for (size_t i = 0; i < sizeof(bad_server_first) / sizeof(bad_server_first[0]); i++) {
		struct sg_scram_client c;
		struct sg_buf out;
		const char *err = NULL;
		sg_buf_init(&out, 4096);
		sg_scram_test_client_nonce = rfc5802.cnonce;
		assert_int_equal(sg_scram_client_first(&c, SG_SCRAM_H_SHA1, "user", NULL, 'n', NULL,
						       NULL, 0, &out, &err),
				 0);
		sg_scram_test_client_nonce = NULL;
		sg_buf_reset(&out);
		const char *m = bad_server_first[i];
		if (sg_scram_client_final(&c, "pencil", (const uint8_t *)m, strlen(m), &out, &err) == 0)
			fail_msg("client accepted server-first '%s'", m);
		assert_non_null(err);
		sg_scram_client_clear(&c);
		sg_buf_free(&out);
	}
	/* forged v= (a server that does not know the verifier) */
	struct sg_scram_client c;
	struct sg_buf out;
	const char *err = NULL;
	sg_buf_init(&out, 4096);
	sg_scram_test_client_nonce = rfc5802.cnonce;
	sg_scram_client_first(&c, SG_SCRAM_H_SHA1, "user", NULL, 'n', NULL, NULL, 0, &out, &err);
	sg_scram_test_client_nonce = NULL;
	assert_int_equal(sg_scram_client_final(&c, "pencil", (const uint8_t *)rfc5802.server_first,
					       strlen(rfc5802.server_first), &out, &err),
			 0);
	const char *forged = "v=AmF9pqV8S7suAoZWja4dJRkFsKQ=";
	assert_int_equal(sg_scram_client_verify(&c, (const uint8_t *)forged, strlen(forged), &err),
			 -1);
	sg_scram_client_clear(&c);
	sg_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc5802_server),
		cmocka_unit_test(test_rfc5802_client),
		cmocka_unit_test(test_rfc7677_server),
		cmocka_unit_test(test_rfc7677_client),
		cmocka_unit_test(test_rfc7677_keys),
		cmocka_unit_test(test_wrong_proof),
		cmocka_unit_test(test_channel_binding),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_malformed_client_first),
		cmocka_unit_test(test_malformed_client_final),
		cmocka_unit_test(test_client_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
