/*
 * client/transcript.h: what was said on an SMTP client connection, line by
 * line: direction, the raw line as sent or received (secrets already masked
 * by whoever recorded it), and a decoded meaning (base64 SASL data rendered
 * readably, NTLM messages summarised), or NULL.
 *
 * Rendering is the caller's business: nothing here prints.
 */
#ifndef SG_CLIENT_TRANSCRIPT_H
#define SG_CLIENT_TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_tr_dir {
	SG_TR_CLIENT, /* C: */
	SG_TR_SERVER, /* S: */
	SG_TR_NOTE,   /* the client's own remark (TLS handshake done, ...) */
};

struct sg_tr_entry {
	enum sg_tr_dir dir;
	char *line;
	char *decoded; /* NULL when there is nothing to decode */
	uint64_t ms;   /* since the transcript began */
};

struct sg_transcript {
	struct sg_tr_entry *e;
	size_t n, alloc;
	uint64_t start_ms;
};

void sg_transcript_init(struct sg_transcript *t);
void sg_transcript_add(struct sg_transcript *t, enum sg_tr_dir dir, const char *line,
		       const char *decoded);
void sg_transcript_free(struct sg_transcript *t);

/* Render decoded SASL bytes readably into a new string: printable text as is
 * with \0, \x01 and other control octets escaped; NTLMSSP messages
 * summarised (type, user and domain of an AUTHENTICATE); other binary data as
 * a length and a hex prefix. Every occurrence of a non-empty string in
 * secrets (NULL-terminated list) is replaced with "****". */
char *sg_sasl_describe(const uint8_t *data, size_t len, const char *const *secrets);
/* True when one of the secrets occurs in data. */
bool sg_sasl_contains_secret(const uint8_t *data, size_t len, const char *const *secrets);

#endif
