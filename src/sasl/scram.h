/*
 * scram.h: the SCRAM engine (RFC 5802; SHA-256 from RFC 7677; channel
 * binding tls-unique RFC 5929 and tls-exporter RFC 9266). Pure: messages in,
 * messages out, no store, no base64 framing of whole messages, no I/O.
 * mech_scram.c wraps it into the four mechanism descriptors.
 *
 * Server:  sg_scram_server_init -> sg_scram_server_parse_first (client-first)
 *          -> sg_scram_server_make_first (server-first, with the verifier)
 *          -> sg_scram_server_final (client-final -> "v=...", "e=..." for
 *             a channel-binding mismatch, or a plain failure)
 *          -> sg_scram_server_clear (wipes).
 * Client:  sg_scram_client_first -> sg_scram_client_final (server-first ->
 *          client-final) -> sg_scram_client_verify (server-final) ->
 *          sg_scram_client_clear.
 *
 * Not done: SASLprep (RFC 4013) of usernames and passwords; they are used
 * as given (ASCII in practice). Same on both sides and in the store.
 */
#ifndef SG_SCRAM_H
#define SG_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "sasl/mech.h"

enum sg_scram_hash { SG_SCRAM_H_SHA1, SG_SCRAM_H_SHA256 };

#define SG_SCRAM_NONCE_MAX 256  /* c-nonce and s-nonce, each */
#define SG_SCRAM_CB_NAME_MAX 32
#define SG_SCRAM_ITER_LIMIT 10000000u

size_t sg_scram_hash_len(enum sg_scram_hash h);

/* Test hook: when non-NULL, used instead of random nonces (RFC vectors).
 * Only tests set these. */
extern const char *sg_scram_test_server_nonce;
extern const char *sg_scram_test_client_nonce;

/* What the server knows about channel binding on this connection. Borrowed. */
struct sg_scram_cb {
	bool plus;               /* the mechanism is -PLUS */
	bool plus_offered;       /* a -PLUS mechanism was advertised */
	const char *type;        /* "tls-exporter" / "tls-unique" / NULL */
	const uint8_t *data;
	size_t len;
};

struct sg_scram_server {
	enum sg_scram_hash hash;
	size_t hlen;
	struct sg_scram_cb cb;
	int state;               /* 0 first, 1 final, 2 done */
	char gs2_flag;           /* 'n', 'y' or 'p' */
	char gs2_header[3 + SG_SCRAM_CB_NAME_MAX + 3 * SG_LOGIN_MAX + 8];
	char user[SG_LOGIN_MAX + 1];    /* unescaped */
	char authzid[SG_LOGIN_MAX + 1]; /* unescaped, may be empty */
	char nonce[2 * SG_SCRAM_NONCE_MAX + 1]; /* c-nonce + s-nonce */
	size_t cnonce_len;
	struct sg_buf auth_message;
	uint8_t stored_key[SG_SCRAM_KEY_MAX];
	uint8_t server_key[SG_SCRAM_KEY_MAX];
};

void sg_scram_server_init(struct sg_scram_server *s, enum sg_scram_hash h,
			  const struct sg_scram_cb *cb);
/* Parse client-first (RFC 5802 section 7). Returns SG_MECH_OK (s->user,
 * s->authzid filled), SG_MECH_MALFORMED (syntax, m= extension, p= on a
 * non-PLUS mechanism) or SG_MECH_FAIL (channel-binding policy: downgrade 'y'
 * while -PLUS is offered, no or unknown binding on -PLUS); *reason_r says why. */
enum sg_mech_status sg_scram_server_parse_first(struct sg_scram_server *s, const uint8_t *in,
						size_t inlen, const char **reason_r);
/* Produce server-first "r=...,s=...,i=..." into out and remember the keys.
 * The s-nonce is random (printable, no ',') unless the test hook is set. */
int sg_scram_server_make_first(struct sg_scram_server *s, const uint8_t *salt, size_t salt_len,
			       unsigned iterations, const uint8_t *stored_key,
			       const uint8_t *server_key, struct sg_buf *out);
/* Check client-final. SG_MECH_OK: out = "v=<ServerSignature>".
 * SG_MECH_FAIL with out empty: wrong proof (answer 535 at once, PROTOCOL.md).
 * SG_MECH_FAIL with out = "e=channel-bindings-dont-match": the client needs
 * the reason (its TLS channel was not ours: a proxy in between); send it as
 * a server-final, then fail. SG_MECH_MALFORMED: out untouched. */
enum sg_mech_status sg_scram_server_final(struct sg_scram_server *s, const uint8_t *in,
					  size_t inlen, struct sg_buf *out, const char **reason_r);
void sg_scram_server_clear(struct sg_scram_server *s);

struct sg_scram_client {
	enum sg_scram_hash hash;
	size_t hlen;
	int state;
	char gs2_header[3 + SG_SCRAM_CB_NAME_MAX + 3 * SG_LOGIN_MAX + 8];
	const uint8_t *cb_data;  /* borrowed */
	size_t cb_len;
	char cnonce[SG_SCRAM_NONCE_MAX + 1];
	struct sg_buf auth_message;
	uint8_t server_signature[SG_SCRAM_KEY_MAX];
};

/* gs2_flag 'n', 'y' or 'p' (then cb_name and cb_data are required).
 * Writes client-first into out. 0, or -1 with *error_r. */
int sg_scram_client_first(struct sg_scram_client *c, enum sg_scram_hash h, const char *user,
			  const char *authzid, char gs2_flag, const char *cb_name,
			  const uint8_t *cb_data, size_t cb_len, struct sg_buf *out,
			  const char **error_r);
/* Server-first in, client-final (with proof) out. */
int sg_scram_client_final(struct sg_scram_client *c, const char *password, const uint8_t *in,
			  size_t inlen, struct sg_buf *out, const char **error_r);
/* Server-final in: 0 when v= is the expected ServerSignature (mutual
 * authentication), -1 otherwise (e=..., or a forged v=). */
int sg_scram_client_verify(struct sg_scram_client *c, const uint8_t *in, size_t inlen,
			   const char **error_r);
void sg_scram_client_clear(struct sg_scram_client *c);

#endif
