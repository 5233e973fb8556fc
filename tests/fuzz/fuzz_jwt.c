/*
 * fuzz_jwt: bearer token verification (src/sasl/jwt.h) with a fixed HS256
 * key and a fixed JWKS (one RS256, one ES256 key), issuer and audience set,
 * at a fixed time. Input: data[0] bit 0 picks the login claim ("sub" or
 * "email"), bit 1 drops the issuer/audience checks; the rest is the token.
 * Bit 2 ("sign mode"): the rest is header JSON, NUL, claims JSON; the target
 * builds the JWS and signs it with the HS256 key, so the fuzzer reaches the
 * header and claim checks behind the signature.
 * Checked: the verdict is -1/0/1 with a reason on refusal, the subject is
 * terminated, non-empty and free of control characters on success; the
 * reason is one of the documented ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/b64.h"
#include "core/util.h"
#include "fuzz_common.h"
#include "sasl/jwt.h"

#define FUZZ_NOW 1767225600 /* 2026-01-01 */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	sg_fuzz_init();
	return 0;
}

static const char *const reasons[] = {
	"malformed_token", "unsupported_alg", "no_key", "unknown_key", "bad_signature",
	"expired_token", "not_yet_valid", "wrong_issuer", "wrong_audience", "missing_expiry",
	"missing_subject", "internal_error", NULL,
};

/* header "." claims "." HMAC-SHA256, all base64url (RFC 7515 7.1). */
static char *sign_hs256(const uint8_t *p, size_t n)
{
	const uint8_t *nul = memchr(p, '\0', n);
	size_t hl = nul != NULL ? (size_t)(nul - p) : n;
	const uint8_t *c = nul != NULL ? nul + 1 : (const uint8_t *)"";
	size_t cl = nul != NULL ? n - hl - 1 : 0;
	char *tok = sg_malloc(SG_B64_ENCODED_LEN(hl) + SG_B64_ENCODED_LEN(cl) + 64);
	size_t o = sg_b64url_encode(p, hl, tok);
	tok[o++] = '.';
	o += sg_b64url_encode(c, cl, tok + o);
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned ml = 0;
	if (HMAC(EVP_sha256(), sg_fuzz_hs256_key, sizeof(sg_fuzz_hs256_key), (const uint8_t *)tok, o,
		 mac, &ml) == NULL)
		sg_fuzz_fail("jwt: HMAC");
	tok[o++] = '.';
	o += sg_b64url_encode(mac, ml, tok + o);
	tok[o] = '\0';
	return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct sg_sasl_config cfg = *sg_fuzz_cfg();
	if (data[0] & 1)
		cfg.oauth_login_claim = "email";
	if (data[0] & 2) {
		cfg.oauth_issuer = NULL;
		cfg.oauth_audience = NULL;
	}
	char *tok;
	if ((data[0] & 4) != 0) {
		tok = sign_hs256(data + 1, size - 1);
	} else {
		tok = malloc(size);
		memcpy(tok, data + 1, size - 1);
		tok[size - 1] = '\0';
	}
	char subject[SG_LOGIN_MAX + 1];
	memset(subject, 'x', sizeof(subject));
	const char *reason = NULL;
	int r = sg_jwt_verify(&cfg, tok, FUZZ_NOW, subject, sizeof(subject), &reason);
	if (getenv("SG_FUZZ_DEBUG") != NULL) /* seed checking: print the verdict */
		fprintf(stderr, "jwt: %d %s\n", r, r == 1 ? subject : reason);
	if (r == 1) {
		size_t n = strnlen(subject, sizeof(subject));
		if (n == 0 || n == sizeof(subject))
			sg_fuzz_fail("jwt: subject length %zu", n);
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)subject[i] < 0x20 || subject[i] == 0x7f)
				sg_fuzz_fail("jwt: control character in subject");
	} else if (r == 0 || r == -1) {
		if (reason == NULL)
			sg_fuzz_fail("jwt: refused without a reason");
		bool known = false;
		for (size_t i = 0; reasons[i] != NULL; i++)
			known |= strcmp(reason, reasons[i]) == 0;
		if (!known)
			sg_fuzz_fail("jwt: undocumented reason \"%s\"", reason);
	} else {
		sg_fuzz_fail("jwt: sg_jwt_verify returned %d", r);
	}
	free(tok);
	return 0;
}
