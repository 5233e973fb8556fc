/*
 * reply_parse.h: a defensive, incremental parser of SMTP server replies.
 *
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *                   Reply-code [ SP textstring ] CRLF      (RFC 5321 section 4.2)
 *
 * Feed it bytes as they arrive; it returns one complete reply at a time. It is
 * pure (no I/O, no globals) so it can be fuzzed directly.
 *
 * What it refuses (SG_REPLY_ERROR, with a static message in p->error):
 *  - a line shorter than 3 octets, a code that is not [2-5][0-9][0-9], a 4th
 *    octet other than SP or "-". Lines of exactly 3 octets ("250") end a
 *    reply; lines of 4 octets ("250-", "250 ") have empty text. Nothing past
 *    the end of a line is ever read (OpenSMTPD CVE-2020-8794 read past a
 *    short line).
 *  - a line longer than SG_REPLY_LINE_MAX octets (CRLF excluded);
 *  - a NUL octet anywhere in a line;
 *  - continuation lines whose code differs from the first line's
 *    (RFC 5321 section 4.2.1: "the same code" on each line);
 *  - more than p->max_lines lines in one reply.
 * A bare LF is accepted as a line end (some servers send it); a CR before it
 * is stripped. After an error the parser is unusable until reset: the caller
 * must drop the connection, as the stream is out of step.
 *
 * Enhanced status codes (RFC 3463 section 2, RFC 2034 section 4): when the
 * text of the first line starts with class.subject.detail, where class equals
 * the first digit of the reply code and is 2, 4 or 5, subject and detail are
 * 1-3 digits, followed by SP or the end of the line, it is copied to r->enh.
 */
#ifndef SG_REPLY_PARSE_H
#define SG_REPLY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SG_REPLY_LINE_MAX 4096
#define SG_REPLY_LINES_DEFAULT 100
#define SG_REPLY_LINES_CAP 1000

struct sg_reply {
	int code;              /* 200..599 */
	char enh[12];          /* "5.7.8", or "" when absent */
	size_t nlines;
	/* Raw lines (CR/LF stripped), each NUL-terminated, back to back in buf. */
	struct sg_buf buf;
	size_t off[SG_REPLY_LINES_CAP];
};

enum sg_reply_status {
	SG_REPLY_MORE,  /* all input consumed, no complete reply yet */
	SG_REPLY_DONE,  /* p->reply is complete; feed the rest (data + *used) next */
	SG_REPLY_ERROR, /* p->error says why; the connection must be dropped */
};

struct sg_reply_parser {
	size_t max_lines;      /* 1..SG_REPLY_LINES_CAP; default SG_REPLY_LINES_DEFAULT */
	struct sg_reply reply;
	const char *error;
	/* internal */
	uint8_t line[SG_REPLY_LINE_MAX + 2];
	size_t line_len;
	bool done;
	bool failed;
};

void sg_reply_parser_init(struct sg_reply_parser *p);
/* Forget everything (including a previous error); keeps max_lines. */
void sg_reply_parser_reset(struct sg_reply_parser *p);
void sg_reply_parser_free(struct sg_reply_parser *p);
/* Consume input up to and including the end of one reply. *used_r is the
 * number of bytes consumed (always all of len on SG_REPLY_MORE). On
 * SG_REPLY_DONE the reply stays valid until the next feed or reset. */
enum sg_reply_status sg_reply_parser_feed(struct sg_reply_parser *p, const uint8_t *data,
					  size_t len, size_t *used_r);

/* Raw line i ("250-SIZE 100"), i < r->nlines. */
const char *sg_reply_line(const struct sg_reply *r, size_t i);
/* Text of line i after "250-" / "250 " ("" for a bare code). */
const char *sg_reply_text(const struct sg_reply *r, size_t i);
/* Text of line i without the enhanced status code and its space. */
const char *sg_reply_text_noenh(const struct sg_reply *r, size_t i);

/* Parse an enhanced status code at the start of s for reply class cls
 * ('2', '4', '5'); on success copy it to enh (>= 12 bytes) and return its
 * length, else 0. */
size_t sg_reply_parse_enh(const char *s, size_t len, char cls, char *enh);

#endif
