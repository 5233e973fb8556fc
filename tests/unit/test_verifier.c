/* Verifiers: RFC 2195 (CRAM-MD5), RFC 5802 / RFC 7677 (SCRAM keys checked
 * against the RFCs' proofs and signatures), MS-NLMP (NT), yescrypt, and the
 * text form round trip plus malformed stored strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/b64.h"
#include "core/util.h"
#include "store/verifier.h"

static void test_cram_rfc2195(void **state)
{
	struct sg_verifier v;
	assert_int_equal(sg_verifier_derive(SG_CRED_CRAM_MD5, "tanstaaftanstaaf", 0, &v), 0);
	assert_int_equal(v.kind, SG_CRED_CRAM_MD5);
	const char *ch = "<1896.697170952@postoffice.reston.mci.net>";
	uint8_t out[16];
	char hex[33];
	sg_cram_md5_response(&v, (const uint8_t *)ch, strlen(ch), out);
	sg_hex(out, 16, hex);
	assert_string_equal(hex, "b913a602c7eda7a495b4e6e7334d3890");

	/* through the text form */
	char text[SG_VERIFIER_TEXT_MAX];
	struct sg_verifier w;
	assert_int_equal(sg_verifier_format(&v, text, sizeof(text)), 0);
	assert_int_equal(strncmp(text, "cram-md5:", 9), 0);
	assert_int_equal(strlen(text), 9 + 64);
	assert_int_equal(sg_verifier_parse(SG_CRED_CRAM_MD5, text, &w), 0);
	sg_cram_md5_response(&w, (const uint8_t *)ch, strlen(ch), out);
	sg_hex(out, 16, hex);
	assert_string_equal(hex, "b913a602c7eda7a495b4e6e7334d3890");
}

/* Keys longer than 64 bytes are hashed first (RFC 2104 section 2); compare
 * with OpenSSL's HMAC for a range of key and message lengths. */
static void test_cram_vs_hmac(void **state)
{
	char key[200];
	uint8_t msg[150];
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7);
	for (size_t kl = 0; kl < sizeof(key) - 1; kl += 7) {
		memset(key, 'k', kl);
		key[kl] = '\0';
		struct sg_verifier v;
		assert_int_equal(sg_verifier_derive(SG_CRED_CRAM_MD5, key, 0, &v), 0);
		for (size_t ml = 0; ml < sizeof(msg); ml += 13) {
			uint8_t a[16], b[EVP_MAX_MD_SIZE];
			unsigned int bl;
			sg_cram_md5_response(&v, msg, ml, a);
			assert_non_null(HMAC(EVP_md5(), key, (int)kl, msg, ml, b, &bl));
			assert_int_equal(bl, 16);
			assert_memory_equal(a, b, 16);
		}
	}
}

/* Check StoredKey/ServerKey against an RFC exchange: ClientKey = proof XOR
 * HMAC(StoredKey, AuthMessage), H(ClientKey) == StoredKey, and
 * HMAC(ServerKey, AuthMessage) == the server signature. */
static void check_exchange(const struct sg_verifier *v, const EVP_MD *md, const char *auth_msg,
			   const char *proof_b64, const char *sig_b64)
{
	uint8_t proof[64], sig[64], cs[EVP_MAX_MD_SIZE], ck[64], h[EVP_MAX_MD_SIZE];
	size_t pl, sl;
	unsigned int l;
	size_t kl = v->u.scram.key_len;
	assert_int_equal(sg_b64_decode(proof_b64, strlen(proof_b64), proof, &pl), 0);
	assert_int_equal(sg_b64_decode(sig_b64, strlen(sig_b64), sig, &sl), 0);
	assert_int_equal(pl, kl);
	assert_int_equal(sl, kl);
	assert_non_null(HMAC(md, v->u.scram.stored_key, (int)kl, (const uint8_t *)auth_msg,
			     strlen(auth_msg), cs, &l));
	for (size_t i = 0; i < kl; i++)
		ck[i] = proof[i] ^ cs[i];
	assert_int_equal(EVP_Digest(ck, kl, h, &l, md, NULL), 1);
	assert_memory_equal(h, v->u.scram.stored_key, kl);
	assert_non_null(HMAC(md, v->u.scram.server_key, (int)kl, (const uint8_t *)auth_msg,
			     strlen(auth_msg), cs, &l));
	assert_memory_equal(cs, sig, kl);
}

static void test_scram_rfc7677(void **state)
{
	uint8_t salt[32];
	size_t sl;
	const char *salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
	assert_int_equal(sg_b64_decode(salt_b64, strlen(salt_b64), salt, &sl), 0);
	struct sg_verifier v;
	assert_int_equal(sg_verifier_derive_scram(SG_CRED_SCRAM_SHA256, "pencil", salt, sl, 4096, &v), 0);
	char b[64];
	sg_b64_encode(v.u.scram.stored_key, 32, b);
	assert_string_equal(b, "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=");
	sg_b64_encode(v.u.scram.server_key, 32, b);
	assert_string_equal(b, "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
	check_exchange(&v, EVP_sha256(),
		       "n=user,r=rOprNGfwEbeRWgbNEkqO,"
		       "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
		       "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
		       "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		       "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		       "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");

	char text[SG_VERIFIER_TEXT_MAX];
	assert_int_equal(sg_verifier_format(&v, text, sizeof(text)), 0);
	assert_string_equal(text, "scram-sha-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:"
				  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
				  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
	struct sg_verifier w;
	assert_int_equal(sg_verifier_parse(SG_CRED_SCRAM_SHA256, text, &w), 0);
	assert_int_equal(w.u.scram.iterations, 4096);
	assert_int_equal(w.u.scram.salt_len, 16);
	assert_int_equal(w.u.scram.key_len, 32);
	assert_memory_equal(w.u.scram.salt, salt, 16);
	assert_memory_equal(w.u.scram.stored_key, v.u.scram.stored_key, 32);
	assert_memory_equal(w.u.scram.server_key, v.u.scram.server_key, 32);
	/* the SHA-256 text is not a SHA-1 verifier */
	assert_int_equal(sg_verifier_parse(SG_CRED_SCRAM_SHA1, text, &w), -1);
}

static void test_scram_rfc5802(void **state)
{
	uint8_t salt[32];
	size_t sl;
	const char *salt_b64 = "QSXCR+Q6sek8bf92";
	assert_int_equal(sg_b64_decode(salt_b64, strlen(salt_b64), salt, &sl), 0);
	struct sg_verifier v;
	assert_int_equal(sg_verifier_derive_scram(SG_CRED_SCRAM_SHA1, "pencil", salt, sl, 4096, &v), 0);
	assert_int_equal(v.u.scram.key_len, 20);
	char b[64];
	sg_b64_encode(v.u.scram.stored_key, 20, b);
	assert_string_equal(b, "6dlGYMOdZcOPutkcNY8U2g7vK9Y=");
	sg_b64_encode(v.u.scram.server_key, 20, b);
	assert_string_equal(b, "D+CSWLOshSulAsxiupA+qs2/fTE=");
	check_exchange(&v, EVP_sha1(),
		       "n=user,r=fyko+d2lbbFgONRv9qkxdawL,"
		       "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,"
		       "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
		       "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
	char text[SG_VERIFIER_TEXT_MAX];
	struct sg_verifier w;
	assert_int_equal(sg_verifier_format(&v, text, sizeof(text)), 0);
	assert_int_equal(sg_verifier_parse(SG_CRED_SCRAM_SHA1, text, &w), 0);
	assert_memory_equal(&w.u.scram.stored_key, v.u.scram.stored_key, 20);
}

static void test_scram_random_salt(void **state)
{
	struct sg_verifier a, b;
	assert_int_equal(sg_verifier_derive(SG_CRED_SCRAM_SHA256, "pw", 0, &a), 0);
	assert_int_equal(sg_verifier_derive(SG_CRED_SCRAM_SHA256, "pw", 4097, &b), 0);
	assert_int_equal(a.u.scram.iterations, 4096);
	assert_int_equal(b.u.scram.iterations, 4097);
	assert_int_equal(a.u.scram.salt_len, SG_SCRAM_SALT_LEN);
	assert_memory_not_equal(a.u.scram.salt, b.u.scram.salt, SG_SCRAM_SALT_LEN);
	assert_int_equal(sg_verifier_derive(SG_CRED_SCRAM_SHA1, "pw", 0, &a), 0);
	assert_int_equal(a.kind, SG_CRED_SCRAM_SHA1);
	assert_int_equal(a.u.scram.key_len, 20);
	/* bad parameters */
	uint8_t s[1] = {0};
	assert_int_equal(sg_verifier_derive_scram(SG_CRED_SCRAM_SHA1, "pw", s, 0, 4096, &a), -1);
	assert_int_equal(sg_verifier_derive_scram(SG_CRED_SCRAM_SHA1, "pw", s, 1, 0, &a), -1);
	assert_int_equal(sg_verifier_derive_scram(SG_CRED_NT, "pw", s, 1, 1, &a), -1);
}

static void test_nt(void **state)
{
	struct sg_verifier v, w;
	char text[SG_VERIFIER_TEXT_MAX];
	assert_int_equal(sg_verifier_derive(SG_CRED_NT, "Password", 0, &v), 0);
	assert_int_equal(sg_verifier_format(&v, text, sizeof(text)), 0);
	assert_string_equal(text, "nt:a4f49c406510bdcab6824ee7c30fd852");
	assert_int_equal(sg_verifier_parse(SG_CRED_NT, text, &w), 0);
	assert_memory_equal(w.u.nt, v.u.nt, 16);
	assert_int_equal(sg_verifier_derive(SG_CRED_NT, "\xc3\x28", 0, &v), -1);
}

static void test_password_hash(void **state)
{
	struct sg_verifier v, w;
	char text[SG_VERIFIER_TEXT_MAX];
	assert_int_equal(sg_verifier_derive(SG_CRED_PASSWORD_HASH, "s3cret", 0, &v), 0);
	assert_int_equal(strncmp(v.u.crypt, "$y$", 3), 0);
	assert_int_equal(sg_verifier_check_crypt(v.u.crypt, "s3cret"), 1);
	assert_int_equal(sg_verifier_check_crypt(v.u.crypt, "s3cres"), 0);
	assert_int_equal(sg_verifier_check_crypt(v.u.crypt, ""), 0);
	assert_int_equal(sg_verifier_format(&v, text, sizeof(text)), 0);
	assert_string_equal(text, v.u.crypt);
	assert_int_equal(sg_verifier_parse(SG_CRED_PASSWORD_HASH, text, &w), 0);
	assert_string_equal(w.u.crypt, v.u.crypt);
	assert_int_equal(sg_verifier_check_crypt("*0", "x"), 0);
	assert_int_equal(sg_verifier_check_crypt("", "x"), 0);
	/* two derivations use different salts */
	assert_int_equal(sg_verifier_derive(SG_CRED_PASSWORD_HASH, "s3cret", 0, &w), 0);
	assert_string_not_equal(w.u.crypt, v.u.crypt);
}

static void test_parse_refusals(void **state)
{
	static const struct {
		enum sg_cred_kind kind;
		const char *text;
	} bad[] = {
		{SG_CRED_PASSWORD_HASH, ""},
		{SG_CRED_PASSWORD_HASH, "plain"},
		{SG_CRED_CRAM_MD5, "cram-md5:00"},
		{SG_CRED_CRAM_MD5, "cram-md5:zz00000000000000000000000000000000000000000000000000000000000000"},
		{SG_CRED_CRAM_MD5, "0000000000000000000000000000000000000000000000000000000000000000"},
		{SG_CRED_NT, "nt:a4f49c406510bdcab6824ee7c30fd85"},
		{SG_CRED_NT, "nt:a4f49c406510bdcab6824ee7c30fd8520"},
		{SG_CRED_NT, "a4f49c406510bdcab6824ee7c30fd852"},
		{SG_CRED_SCRAM_SHA1, "scram-sha-1:4096:QSXCR+Q6sek8bf92:6dlGYMOdZcOPutkcNY8U2g7vK9Y="},
		{SG_CRED_SCRAM_SHA1, "scram-sha-1:0:QSXCR+Q6sek8bf92:6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE="},
		{SG_CRED_SCRAM_SHA1, "scram-sha-1:-1:QSXCR+Q6sek8bf92:6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE="},
		{SG_CRED_SCRAM_SHA1, "scram-sha-1:4096::6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE="},
		{SG_CRED_SCRAM_SHA1, "scram-sha-1:4096:QSXCR+Q6sek8bf92:6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=:"},
		{SG_CRED_SCRAM_SHA1, "scram-sha-1:4096:QSXCR+Q6sek8bf92:6dlGYMOdZcOPutkcNY8U2g7v:D+CSWLOshSulAsxiupA+qs2/fTE="},
		{SG_CRED_SCRAM_SHA1, "scram-sha-1:4096:QSXCR+Q6sek8bf9:6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE="},
		{SG_CRED_SCRAM_SHA256, "scram-sha-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE="},
		{SG_CRED_NONE, "x"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sg_verifier v;
		if (sg_verifier_parse(bad[i].kind, bad[i].text, &v) != -1)
			fail_msg("accepted: %s", bad[i].text);
		assert_int_equal(v.kind, SG_CRED_NONE);
	}
	/* format refuses a too-small buffer */
	struct sg_verifier v;
	char small[10];
	assert_int_equal(sg_verifier_derive(SG_CRED_NT, "x", 0, &v), 0);
	assert_int_equal(sg_verifier_format(&v, small, sizeof(small)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cram_rfc2195),
		cmocka_unit_test(test_cram_vs_hmac),
		cmocka_unit_test(test_scram_rfc7677),
		cmocka_unit_test(test_scram_rfc5802),
		cmocka_unit_test(test_scram_random_salt),
		cmocka_unit_test(test_nt),
		cmocka_unit_test(test_password_hash),
		cmocka_unit_test(test_parse_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
