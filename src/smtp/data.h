/*
 * data.h: the DATA phase reader (RFC 5321 4.1.1.4, 4.5.2), pure and fuzzable.
 *
 * Only CRLF "." CRLF ends the data, where the CRLF before the dot is a real
 * CRLF (or the start of the data). A bare LF or bare CR is never a line end
 * for that purpose, so "\n.\n", "\r.\r", "\n.\r\n" and "\r\n.\n" never end
 * the message (SMTP smuggling, CVE-2023-51764 family). By default a bare LF or
 * CR is recorded and the message refused after its end; with normalize_lf a
 * bare LF is stored as CRLF (Postfix's smtpd_forbid_bare_newline = normalize),
 * still never ending the data. A leading dot is removed from every line
 * (dot-unstuffing, 4.5.2). Bytes past max_size are counted, not stored.
 */
#ifndef SG_DATA_H
#define SG_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct sg_data_reader {
	int st;
	bool bol_crlf;
	bool normalize_lf;
	bool bare_lf;
	bool bare_cr;
	bool too_big;
	bool done;
	bool eightbit;
	size_t size;      /* message octets after unstuffing, stored or not */
	size_t max_size;
	struct sg_buf *out;
};

void sg_data_init(struct sg_data_reader *r, struct sg_buf *out, size_t max_size, bool normalize_lf);
/* Is the reader inside a line (some of it read, its CRLF not yet)? For the
 * per-line deadline: a line must be complete within the data timeout. */
bool sg_data_mid_line(const struct sg_data_reader *r);
/* Consume input; returns how many bytes were used. When r->done is set, the
 * rest of the input (not consumed) belongs to the next command. */
size_t sg_data_feed(struct sg_data_reader *r, const uint8_t *p, size_t n);

#endif
