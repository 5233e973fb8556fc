/*
 * mech_cram_md5.c: CRAM-MD5 (RFC 2195), server and client.
 *
 *   S: 334 base64("<" random-decimal "." unix-time "@" hostname ">")
 *   C: base64(user SP 32 hex digits of HMAC-MD5(secret, challenge))
 *
 * The server never holds the secret: the store keeps the HMAC-MD5 inner and
 * outer key states, and sg_cram_md5_response() finishes the HMAC from them.
 * An unknown login runs the same work against a dummy verifier.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"
#include "store/cred.h"
#include "store/verifier.h"

#define CRAM_CHALLENGE_MAX 320


struct cram_server {
	const struct sg_sasl_server_env *env;
	int state; /* 0: send challenge, 1: wait response, 2: done */
	char challenge[CRAM_CHALLENGE_MAX];
	size_t challenge_len;
};

static void *cram_server_start(const struct sg_sasl_server_env *env)
{
	struct cram_server *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	return st;
}

static enum sg_mech_status cram_verify(struct cram_server *st, const char *user,
				       const uint8_t digest[16], struct sg_mech_result *res)
{
	static const struct sg_verifier dummy = {
		.kind = SG_CRED_CRAM_MD5,
		.u.cram = {.inner = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u},
			   .outer = {0x10325476u, 0x98badcfeu, 0xefcdab89u, 0x67452301u}},
	};
	struct sg_account acct;
	struct sg_verifier v;
	memset(&acct, 0, sizeof(acct));
	memset(&v, 0, sizeof(v));
	int r = sg_cred_lookup(st->env->creds, user, SG_CRED_CRAM_MD5, &acct, &v);
	if (r < 0) {
		sg_wipe(&v, sizeof(v));
		res->reason = "store_error";
		return SG_MECH_TEMPFAIL;
	}
	bool usable = r == 1 && v.kind == SG_CRED_CRAM_MD5;
	uint8_t expect[16];
	sg_cram_md5_response(usable ? &v : &dummy, (const uint8_t *)st->challenge,
			     st->challenge_len, expect);
	bool match = sg_ct_eq(expect, digest, sizeof(expect));
	sg_wipe(expect, sizeof(expect));
	sg_wipe(&v, sizeof(v));
	if (r == 0) {
		res->reason = "unknown_account";
		return SG_MECH_FAIL;
	}
	if (!usable) {
		res->reason = "no_verifier";
		return SG_MECH_FAIL;
	}
	if (!match) {
		res->reason = "wrong_password";
		return SG_MECH_FAIL;
	}
	if (acct.disabled) { /* as sg_cred_check_password: only after a match */
		res->reason = "disabled";
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, acct.login, sizeof(res->login));
	return SG_MECH_OK;
}

static enum sg_mech_status cram_server_step(void *vst, const uint8_t *in, size_t inlen,
					    struct sg_buf *out, struct sg_mech_result *res)
{
	struct cram_server *st = vst;
	if (st->state == 0) {
		/* RFC 2195 section 2: "the presumptively arbitrary string of
		 * data MUST be unique"; 64 random bits and the time. */
		if (in != NULL) {
			/* An initial response is refused (the driver replies 501 5.7.0). */
			st->state = 2;
			res->reason = "initial_response";
			return SG_MECH_MALFORMED;
		}
		uint64_t rnd;
		sg_random(&rnd, sizeof(rnd));
		const char *host = st->env->hostname != NULL && st->env->hostname[0] != '\0'
					   ? st->env->hostname
					   : "localhost";
		int n = snprintf(st->challenge, sizeof(st->challenge), "<%" PRIu64 ".%" PRId64 "@%.255s>",
				 rnd, sg_time(), host);
		if (n < 0 || (size_t)n >= sizeof(st->challenge))
			return SG_MECH_TEMPFAIL;
		st->challenge_len = (size_t)n;
		if (sg_buf_append(out, st->challenge, st->challenge_len) < 0)
			return SG_MECH_TEMPFAIL;
		st->state = 1;
		return SG_MECH_CONTINUE;
	}
	if (st->state != 1 || in == NULL) {
		st->state = 2;
		res->reason = "protocol";
		return SG_MECH_MALFORMED;
	}
	st->state = 2;

	/* user SP digest; the digest is the part after the last space. */
	if (inlen < 34 || memchr(in, '\0', inlen) != NULL || in[inlen - 33] != ' ')
		goto malformed;
	size_t ulen = inlen - 33;
	if (ulen == 0 || ulen > SG_LOGIN_MAX)
		goto malformed;
	char user[SG_LOGIN_MAX + 1];
	memcpy(user, in, ulen);
	user[ulen] = '\0';
	sg_strlcpy(res->login, user, sizeof(res->login));
	char hex[33];
	memcpy(hex, in + ulen + 1, 32);
	hex[32] = '\0';
	uint8_t digest[16];
	/* RFC 2195 says lower case; sg_unhex also accepts upper case. */
	if (sg_unhex(hex, digest, sizeof(digest)) < 0)
		goto malformed;
	return cram_verify(st, user, digest, res);

malformed:
	res->reason = "malformed";
	return SG_MECH_MALFORMED;
}

static void cram_server_free(void *st)
{
	free(st);
}

struct cram_client {
	const struct sg_sasl_client_env *env;
	bool done;
};

static void *cram_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	if (env->authcid == NULL || env->authcid[0] == '\0' || env->password == NULL ||
	    strlen(env->authcid) > SG_LOGIN_MAX) {
		*error_r = "CRAM-MD5 needs a login and a password";
		return NULL;
	}
	struct cram_client *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	return st;
}

static enum sg_mech_status cram_client_step(void *vst, const uint8_t *in, size_t inlen,
					    struct sg_buf *out, const char **error_r)
{
	struct cram_client *st = vst;
	if (st->done || in == NULL || inlen == 0) {
		*error_r = "CRAM-MD5: missing or unexpected challenge";
		return SG_MECH_FAIL;
	}
	st->done = true;
	uint8_t mac[16];
	unsigned maclen = sizeof(mac);
	const char *pw = st->env->password;
	if (HMAC(EVP_md5(), pw, (int)strlen(pw), in, inlen, mac, &maclen) == NULL ||
	    maclen != sizeof(mac)) {
		*error_r = "CRAM-MD5: HMAC-MD5 unavailable";
		return SG_MECH_FAIL;
	}
	char hex[33];
	sg_hex(mac, sizeof(mac), hex);
	sg_wipe(mac, sizeof(mac));
	int r = sg_buf_printf(out, "%s %s", st->env->authcid, hex);
	sg_wipe(hex, sizeof(hex));
	if (r < 0) {
		*error_r = "CRAM-MD5 response too long";
		return SG_MECH_FAIL;
	}
	return SG_MECH_OK;
}

static void cram_client_free(void *st)
{
	free(st);
}

const struct sg_mech sg_mech_cram_md5 = {
	.name = "CRAM-MD5",
	.flags = SG_MECH_F_SERVER_FIRST,
	.strength = 30,
	.cred = SG_CRED_CRAM_MD5,
	.server_start = cram_server_start,
	.server_step = cram_server_step,
	.server_free = cram_server_free,
	.client_start = cram_client_start,
	.client_step = cram_client_step,
	.client_free = cram_client_free,
};
