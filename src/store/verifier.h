/*
 * verifier.h: helpers that use the verifiers declared in cred.h.
 *
 * Text forms stored in the database (sg_verifier_format / sg_verifier_parse):
 *   PASSWORD_HASH  the crypt(3) string itself, e.g. "$y$j9T$...$..."
 *   CRAM_MD5       "cram-md5:" + 64 lower-case hex digits: the HMAC-MD5 outer
 *                  state words A,B,C,D then the inner state words A,B,C,D, each
 *                  word little-endian (the byte order of Dovecot's {CRAM-MD5}
 *                  scheme, which also puts the outer context first)
 *   SCRAM_SHA1     "scram-sha-1:<iterations>:<b64 salt>:<b64 StoredKey>:<b64 ServerKey>"
 *   SCRAM_SHA256   "scram-sha-256:<iterations>:<b64 salt>:<b64 StoredKey>:<b64 ServerKey>"
 *   NT             "nt:" + 32 lower-case hex digits
 * Base64 is standard with padding (RFC 4648 section 4). The parser is strict:
 * wrong prefix, wrong length, bad hex/base64, iterations outside
 * [1, SG_SCRAM_ITER_MAX], key length not the hash size: -1.
 *
 * Every verifier except PASSWORD_HASH is password-equivalent for its own
 * mechanism (RFC 5802 section 9 for SCRAM's StoredKey/ServerKey is the
 * exception: they do not allow impersonation without a replay); callers wipe
 * struct sg_verifier with sg_wipe after use.
 */
#ifndef SG_VERIFIER_H
#define SG_VERIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "store/cred.h"

#define SG_SCRAM_ITER_DEFAULT 4096
#define SG_SCRAM_ITER_MAX 10000000u
/* Large enough for any sg_verifier_format output. */
#define SG_VERIFIER_TEXT_MAX 512

/* CRAM-MD5 (RFC 2195): resume the stored HMAC-MD5 key states (RFC 2104) to
 * compute HMAC-MD5(password, challenge) into out. v->kind must be CRAM_MD5. */
void sg_cram_md5_response(const struct sg_verifier *v, const uint8_t *challenge, size_t n,
			  uint8_t out[16]);

/* PASSWORD_HASH: run crypt_rn(password, hash) and compare the result with the
 * hash using sg_ct_eq. 1 match, 0 no match (or an unusable hash), -1 error. */
int sg_verifier_check_crypt(const char *hash, const char *password);

/* The hash length for a SCRAM kind: 20 (SHA-1), 32 (SHA-256), 0 otherwise. */
size_t sg_verifier_scram_key_len(enum sg_cred_kind kind);

/* Short name of a kind for logs and the database: "password_hash", "cram_md5",
 * "scram_sha1", "scram_sha256", "nt"; NULL for NONE/unknown. */
const char *sg_cred_kind_name(enum sg_cred_kind kind);

#endif
