/*
 * dkim.h: DKIM signing of outgoing mail (RFC 6376, RFC 8463).
 *
 * A signer holds one private key for one (domain, selector). The key type
 * comes from the PEM file: an RSA key signs with rsa-sha256, an Ed25519 key
 * with ed25519-sha256 (RFC 8463). Canonicalisation is relaxed/relaxed
 * (RFC 6376 3.4.2 and 3.4.4), done once per message: sign the message once,
 * before it is sent to any recipient.
 *
 * Signed headers (the list is data, dkim.c sg_dkim_signed_headers): From,
 * To, Cc, Subject, Date, Message-ID, Reply-To, In-Reply-To, References,
 * MIME-Version, Content-Type, Content-Transfer-Encoding and the List-*
 * headers, each as often as it occurs in the message, plus one more "from"
 * in h= (oversigning, RFC 6376 8.15) so that no From can be added after
 * signing. A message without a From header is refused (RFC 6376 5.4: From
 * must be signed; RFC 5322 requires one), as is one with more than one
 * From.
 *
 * Bounds: the header section may hold at most SG_DKIM_MAX_HEADERS fields
 * and SG_DKIM_MAX_HEADER_BYTES octets; more is refused with an error. The
 * body is hashed in one streaming pass with constant extra memory. The
 * message is read, never modified.
 *
 * Thread safety: a loaded signer is immutable; sg_dkim_sign may run on
 * several threads at once with the same signer.
 */
#ifndef SG_RELAY_DKIM_H
#define SG_RELAY_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_DKIM_MAX_HEADERS      1000
#define SG_DKIM_MAX_HEADER_BYTES (1024 * 1024)

struct sg_dkim_signer;

/* Load the PEM private key in keyfile (PKCS#8 or traditional RSA) for
 * domain and selector. The file must be a regular file; the key must be
 * RSA of at least 1024 bits or Ed25519. 0 or -1 with *error_r set. */
int sg_dkim_signer_load(struct sg_dkim_signer **s_r, const char *domain, const char *selector,
                        const char *keyfile, const char **error_r);
/* A valid domain or selector: dot-separated labels of letters, digits and
 * hyphens, at most 63 octets each and 253 in all (A-labels for IDNs). */
bool sg_dkim_valid_name(const char *s);
/* Free a signer (the key is freed by OpenSSL, which wipes it); *s = NULL. */
void sg_dkim_signer_free(struct sg_dkim_signer **s);

/* Sign the message msg (len octets: header section, empty line, body; CRLF
 * line ends; a bare LF is treated as a line end too). On success *header_r
 * is a malloc'd NUL-terminated "DKIM-Signature: ...\r\n" field, folded to
 * lines of at most 78 octets, to prepend to the message unchanged. 0, or -1
 * with *error_r set (no From, too many headers, signing failure). */
int sg_dkim_sign(const struct sg_dkim_signer *s, const uint8_t *msg, size_t len, char **header_r,
                 const char **error_r);

/* Same with an explicit signature time (t=), for tests; sg_dkim_sign uses
 * the current time. */
int sg_dkim_sign_at(const struct sg_dkim_signer *s, const uint8_t *msg, size_t len, int64_t now,
                    char **header_r, const char **error_r);

/* The signer's domain and selector (for log lines). */
const char *sg_dkim_signer_domain(const struct sg_dkim_signer *s);
const char *sg_dkim_signer_selector(const struct sg_dkim_signer *s);
/* "rsa-sha256" or "ed25519-sha256". */
const char *sg_dkim_signer_algorithm(const struct sg_dkim_signer *s);
/* The value of the DNS TXT record at SELECTOR._domainkey.DOMAIN that
 * publishes the signer's public key (RFC 6376 3.6.1, RFC 8463 4.2):
 * "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or "v=DKIM1;
 * k=ed25519; p=<base64 of the 32-octet key>". Malloc'd; 0 or -1. */
int sg_dkim_dns_record(const struct sg_dkim_signer *s, char **txt_r, const char **error_r);

/*
 * The steps of signing, exposed for the unit tests (RFC vectors) and the
 * fuzz target. A sink receives canonical octets in pieces.
 */
typedef void sg_dkim_sink(void *ctx, const uint8_t *p, size_t n);
/* Relaxed header canonicalisation (RFC 6376 3.4.2) of one raw field
 * ("Name: value" with its folds, without the final line end): writes
 * "name:value\r\n". A field without a colon writes nothing. */
void sg_dkim_canon_header(const uint8_t *field, size_t len, sg_dkim_sink *sink, void *ctx);
/* Relaxed body canonicalisation (RFC 6376 3.4.4), streaming, constant
 * memory. CRLF or a bare LF ends a line. An empty body (or one of empty
 * lines only) canonicalises to nothing. */
void sg_dkim_canon_body(const uint8_t *body, size_t len, sg_dkim_sink *sink, void *ctx);
/* The SHA-256 that is signed (RFC 6376 3.7): the relaxed canonical form of
 * the header fields named in h_names (n_names names, lower case, each
 * occurrence of a name taking the next instance from the bottom, RFC 6376
 * 5.4.2), then the canonical sig_field (the whole "DKIM-Signature: ..."
 * field with an empty b= value) without its trailing CRLF. Also returns the
 * body hash (bh=) in bh_r when not NULL. 0 or -1 with *error_r (header
 * section over the caps). */
int sg_dkim_hashes(const uint8_t *msg, size_t len, const char *const *h_names, size_t n_names,
                   const char *sig_field, uint8_t hh_r[32], uint8_t bh_r[32], const char **error_r);
/* Sign a SHA-256 header hash with the signer's key: RSASSA-PKCS1-v1_5 with
 * SHA-256, or Ed25519 over the 32 hash octets (RFC 8463 3). sig needs
 * SG_DKIM_MAX_SIG octets. 0 or -1. */
#define SG_DKIM_MAX_SIG 1024
int sg_dkim_sign_hash(const struct sg_dkim_signer *s, const uint8_t hh[32], uint8_t *sig,
                      size_t *sig_len, const char **error_r);

#endif
