/*
 * md4.h: MD4 (RFC 1320), written here because OpenSSL 3 moved MD4 to the
 * legacy provider, and the NT hash built on it (MS-NLMP 3.3.1:
 * NTOWFv1(password) = MD4(UNICODE(password))).
 *
 * MD4 is broken as a general hash; it is used only where NTLM requires it.
 */
#ifndef SG_MD4_H
#define SG_MD4_H

#include <stddef.h>
#include <stdint.h>

struct sg_md4_ctx {
	uint32_t state[4];
	uint64_t count;        /* bytes processed */
	uint8_t block[64];
};

void sg_md4_init(struct sg_md4_ctx *c);
void sg_md4_update(struct sg_md4_ctx *c, const void *data, size_t len);
/* Writes the digest and wipes the context. */
void sg_md4_final(struct sg_md4_ctx *c, uint8_t out[16]);

/* One-shot MD4 of len bytes. */
void sg_md4(const void *data, size_t len, uint8_t out[16]);

/* NT hash: MD4 of the password converted from UTF-8 to UTF-16LE (code points
 * above U+FFFF become surrogate pairs). Returns 0, or -1 when the input is not
 * valid UTF-8 (overlong forms, surrogates encoded in UTF-8, values above
 * U+10FFFF, truncated sequences) or NULL. The UTF-16 copy is wiped. */
int sg_nt_hash(const char *password_utf8, uint8_t out[16]);

/* UTF-8 to UTF-16LE. out may be NULL to measure; returns the byte length
 * written/needed, or -1 for invalid UTF-8 or when outsize is too small.
 * Exposed for NTLM (user and domain names go on the wire as UTF-16LE). */
long sg_utf8_to_utf16le(const char *in, size_t inlen, uint8_t *out, size_t outsize);

#endif
