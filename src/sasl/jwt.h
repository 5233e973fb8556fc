/*
 * jwt.h: verification of OAuth 2.0 bearer tokens that are JWTs (RFC 7519)
 * in JWS compact serialisation (RFC 7515 section 7.1), for XOAUTH2 and
 * OAUTHBEARER; plus minting of HS256 tokens for the sandbox.
 *
 * Accepted algorithms (RFC 7518 section 3.1): HS256 (HMAC-SHA256 with
 * cfg->oauth_hs256_secret), RS256 (RSA >= 2048 bits) and ES256 (P-256) with
 * keys from a JWKS (RFC 7517). "none" and every other alg are refused, and so
 * is any alg/key mismatch (an RSA or EC key is never used as an HMAC secret).
 * A header with "crit" is refused (RFC 7515 section 4.1.11: we understand no
 * extension).
 *
 * Claims (RFC 7519 section 4.1): "exp" is required; "exp", "nbf" and "iat"
 * are checked with SG_JWT_LEEWAY seconds of clock skew, without overflow for
 * any "now"; a date before the epoch or after 9999-12-31 is malformed; "iss" must equal
 * cfg->oauth_issuer and "aud" (a string or an array of strings) must contain
 * cfg->oauth_audience, each only when configured. The subject is the claim
 * named by cfg->oauth_login_claim ("sub" by default, or "email").
 *
 * The signature is checked before any claim is looked at. Tokens longer than
 * SG_JWT_MAX octets are refused without decoding. Thread-safe: the parsed
 * JWKS is read-only after sg_jwks_load().
 */
#ifndef SG_JWT_H
#define SG_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sasl/mech.h"

#define SG_JWT_MAX 8192
#define SG_JWT_LEEWAY 60
#define SG_OAUTH_SECRET_LEN 32
#define SG_OAUTH_SECRET_FILE "oauth-hs256.key"

/*
 * Verify a token at time now (seconds since the epoch). Returns 1 and copies
 * the subject into subject_r (NUL-terminated); 0 when the token is refused,
 * with *reason_r one of "malformed_token", "unsupported_alg", "no_key" (no key
 * configured for this alg), "unknown_key" (no JWKS key with that kid/type),
 * "bad_signature", "expired_token", "not_yet_valid", "wrong_issuer",
 * "wrong_audience", "missing_expiry", "missing_subject" (claim absent, empty, too long for size
 * or with control characters); -1 on an internal error (JWKS file unreadable,
 * OpenSSL failure) with *reason_r "internal_error".
 *
 * Keys: cfg->oauth_hs256_secret for HS256; cfg->oauth_jwks (from
 * sg_jwks_load) for RS256/ES256, or, when that is NULL and
 * cfg->oauth_jwks_file is set, the file is loaded for this call only.
 */
int sg_jwt_verify(const struct sg_sasl_config *cfg, const char *token, int64_t now,
		  char *subject_r, size_t size, const char **reason_r);

/*
 * Load a JWKS file ({"keys":[...]}): kty "RSA" (n, e) and kty "EC" with crv
 * "P-256" (x, y); optional kid, alg (must fit the kty), use (must be "sig").
 * Other key types are skipped; a file without one usable key is an error.
 * Returns 0 and *jwks_r (free with sg_jwks_free), or -1 with *error_r (static).
 */
int sg_jwks_load(const char *path, void **jwks_r, const char **error_r);
/* Same from a JSON text in memory (tests). */
int sg_jwks_parse(const char *json, size_t len, void **jwks_r, const char **error_r);
void sg_jwks_free(void **jwks);

/*
 * Mint an HS256 token: header {"alg":"HS256","typ":"JWT"}, claims sub, email
 * (when sub contains '@'), iss and aud (when not NULL), iat = now,
 * exp = now + ttl. Returns a malloc'd string, NULL when an argument is bad.
 */
char *sg_jwt_mint_hs256(const uint8_t *key, size_t keylen, const char *sub, const char *iss,
			const char *aud, int64_t now, unsigned ttl);

/*
 * The sandbox's default HS256 secret: SG_OAUTH_SECRET_LEN random octets in
 * <data_dir>/oauth-hs256.key (mode 0600, created when missing; two processes
 * racing to create it end up with the same key). Used by "smtpgate token
 * issue" and by the server when no oauth secret or JWKS is configured.
 * Returns 0 with a malloc'd *key_r (release with sg_oauth_secret_free), or
 * -1 with *error_r (static text).
 */
int sg_oauth_secret_load_or_create(const char *data_dir, uint8_t **key_r, size_t *len_r,
				   const char **error_r);
/* The same for any random key kept in the data directory: <data_dir>/<name>,
 * exactly len (<= 64) random octets when created, mode 0600, opened with
 * O_NOFOLLOW; a file readable by others or shorter than len is refused. */
int sg_key_file_load_or_create(const char *data_dir, const char *name, size_t len,
			       uint8_t **key_r, size_t *len_r, const char **error_r);
/* Read a configured secret file (oauth_secret_file), as the server does: a
 * regular file of at most 1024 octets, trailing CR/LF removed, at least 16
 * octets left. 0 or -1. (The key_r buffer may be longer than *len_r: free
 * it with sg_oauth_secret_free(key, *len_r) all the same; the tail is only
 * line-end octets.) */
int sg_oauth_secret_load(const char *path, uint8_t **key_r, size_t *len_r, const char **error_r);
void sg_oauth_secret_free(uint8_t **key, size_t len);

/* ---- Shared by mech_xoauth2.c and mech_oauthbearer.c (defined in
 * mech_oauthbearer.c, so that jwt.c does not depend on the store) ---- */

/* The server side shared by XOAUTH2 and OAUTHBEARER: state, the error
 * challenge and its acknowledgement. check() parses one client message and
 * returns OK, MALFORMED, TEMPFAIL, FAIL (refused without an error challenge),
 * or CONTINUE meaning "token refused: send the error JSON" (res->reason and
 * res->login set); the driver then sends the JSON as a 334, and the next
 * step, whatever the client answers (RFC 7628 3.2.3), returns FAIL. */
struct sg_oauth_server {
	const struct sg_sasl_server_env *env;
	bool oauthbearer;              /* which error JSON */
	int stage;                     /* 0 start, 1 error sent, 2 done */
	const char *reason;
	char login[SG_LOGIN_MAX + 1];
	enum sg_mech_status (*check)(struct sg_oauth_server *st, char *msg, size_t len,
				     struct sg_mech_result *res);
};
void *sg_oauth_server_new(const struct sg_sasl_server_env *env, bool oauthbearer,
			  enum sg_mech_status (*check)(struct sg_oauth_server *st, char *msg, size_t len,
						       struct sg_mech_result *res));
enum sg_mech_status sg_oauth_server_step(void *st, const uint8_t *in, size_t inlen,
					 struct sg_buf *out, struct sg_mech_result *res);
void sg_oauth_server_free(void *st);

/* Subject comparison: exact, or ASCII case-insensitive when either side is
 * an address (contains '@'). */
bool sg_oauth_subject_eq(const char *a, const char *b);

/* One key=value pair of the RFC 7628 section 3.1 kvpair list; pointers into
 * the caller's (modified) buffer. */
struct sg_oauth_kv {
	const char *key;
	const char *value;
};
#define SG_OAUTH_KV_MAX 16

/*
 * Parse `*kvpair kvsep` (RFC 7628 section 3.1: key = 1*ALPHA, value =
 * *(VCHAR / SP / HTAB / CR / LF), kvsep = 0x01) from s[0..len), which must
 * end exactly after the final kvsep. Separators are overwritten with NULs.
 * Duplicate keys and more than SG_OAUTH_KV_MAX pairs are refused. 0 or -1.
 */
int sg_oauth_kvpairs(char *s, size_t len, struct sg_oauth_kv *kv, size_t *n_r);
const char *sg_oauth_kv_get(const struct sg_oauth_kv *kv, size_t n, const char *key);

/* auth-value = "Bearer" 1*SP b64token (RFC 7628 section 3.1, RFC 6750
 * section 2.1; the scheme is case-insensitive). Returns the token or NULL. */
const char *sg_oauth_bearer_token(const char *auth_value);

/*
 * Verify the token (sg_jwt_verify at sg_time()), check that its subject
 * equals user when user is not NULL, and find the account (enabled).
 * SG_MECH_OK: res->login = the account's login. SG_MECH_FAIL: res->reason
 * set ("wrong_subject", "unknown_account", "disabled" or a sg_jwt_verify
 * reason); the caller sends the error JSON. SG_MECH_TEMPFAIL: store or key
 * error.
 */
enum sg_mech_status sg_oauth_authenticate(const struct sg_sasl_server_env *env, const char *user,
					  const char *token, struct sg_mech_result *res);

/*
 * Append the RFC 7628 section 3.2.2 error JSON to out: XOAUTH2 (Google's
 * form) {"status":"401","schemes":"bearer","scope":S}, OAUTHBEARER
 * {"status":"invalid_token","scope":S[,"openid-configuration":U]}; S is
 * cfg->oauth_scope or "smtp"; U is <issuer>/.well-known/openid-configuration
 * when cfg->oauth_issuer is an http(s) URL. 0 or -1 (out is full).
 */
int sg_oauth_error_json(const struct sg_sasl_config *cfg, bool oauthbearer, struct sg_buf *out);

/* server_available for both: a verification key is configured (an HS256
 * secret, a parsed JWKS or a JWKS file). */
bool sg_oauth_server_available(const struct sg_sasl_server_env *env);

/* Client side of both mechanisms (the descriptors differ only in name).
 * The first step builds the message from env->authcid, env->token,
 * env->host and env->port (the last two for OAUTHBEARER) and returns
 * SG_MECH_OK (there is nothing of the server's to verify). A 334 after it is
 * the error JSON: the next step puts the acknowledgement in out (0x01 for
 * OAUTHBEARER, RFC 7628 section 3.2.3; nothing for XOAUTH2), returns
 * SG_MECH_FAIL and sets *error_r to the JSON text (valid until free). The
 * driver should send out when it is not empty (else "*" or an empty line)
 * and then read the 535. */
void *sg_oauth_client_start(const struct sg_sasl_client_env *env, bool oauthbearer,
			    const char **error_r);
enum sg_mech_status sg_oauth_client_step(void *st, const uint8_t *in, size_t inlen,
					 struct sg_buf *out, const char **error_r);
void sg_oauth_client_free(void *st);

/* Client side: copy a server's error challenge into a printable, bounded
 * string for *error_r (malloc'd). */
char *sg_oauth_error_text(const uint8_t *in, size_t inlen);

#endif
