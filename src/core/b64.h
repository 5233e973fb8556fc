/*
 * b64.h: strict base64 (RFC 4648 section 4, the alphabet SMTP AUTH uses).
 *
 * Decoding refuses anything a conforming encoder cannot produce: characters
 * outside the alphabet (whitespace included), a length that is not a multiple
 * of 4, '=' anywhere but the last one or two positions, and non-zero pad bits.
 * RFC 4954 section 4: "the client ... MUST reject ... invalid base64".
 */
#ifndef SG_B64_H
#define SG_B64_H

#include <stddef.h>
#include <stdint.h>

#define SG_B64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)
#define SG_B64_DECODED_MAX(n) (((n) / 4) * 3)

/* Encode n bytes into out (room for SG_B64_ENCODED_LEN(n) + 1). Returns the length. */
size_t sg_b64_encode(const uint8_t *in, size_t n, char *out);
/* Decode; out needs SG_B64_DECODED_MAX(n) bytes (+1: a NUL is appended for
 * convenience and not counted). Returns 0, or -1 for invalid input. */
int sg_b64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);
/* Same, with base64url (RFC 4648 section 5) and optional padding (JWT):
 * unpadded input decodes to up to SG_B64URL_DECODED_MAX(n) bytes (+1). */
#define SG_B64URL_DECODED_MAX(n) ((((n) + 3) / 4) * 3)
int sg_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);
size_t sg_b64url_encode(const uint8_t *in, size_t n, char *out);

#endif
