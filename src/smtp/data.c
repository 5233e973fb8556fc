#include "smtp/data.h"

enum { DR_BOL, DR_DOT, DR_DOT_CR, DR_TEXT, DR_CR };

void sg_data_init(struct sg_data_reader *r, struct sg_buf *out, size_t max_size, bool normalize_lf)
{
	*r = (struct sg_data_reader){
		.st = DR_BOL,
		.bol_crlf = true, /* the CRLF of the DATA command line itself */
		.normalize_lf = normalize_lf,
		.max_size = max_size,
		.out = out,
	};
}

static void emit(struct sg_data_reader *r, const void *p, size_t n)
{
	size_t before = r->size;
	r->size += n;
	if (r->too_big)
		return;
	if (r->size > r->max_size) {
		/* keep what fits, octet for octet as a byte-wise feed would */
		(void)sg_buf_append(r->out, p, r->max_size - before);
		r->too_big = true;
		return;
	}
	if (sg_buf_append(r->out, p, n) < 0)
		r->too_big = true;
}

/* One octet of line content (not the first dot). */
static void text(struct sg_data_reader *r, uint8_t c)
{
	if (c == '\r') {
		r->st = DR_CR;
	} else if (c == '\n') {
		r->bare_lf = true;
		if (r->normalize_lf) {
			emit(r, "\r\n", 2);
			r->st = DR_BOL;
			r->bol_crlf = false; /* a line start, never an end-of-data start */
		} else {
			emit(r, "\n", 1);
			r->st = DR_TEXT;
		}
	} else {
		if (c >= 0x80)
			r->eightbit = true;
		emit(r, &c, 1);
		r->st = DR_TEXT;
	}
}

bool sg_data_mid_line(const struct sg_data_reader *r)
{
	return r->st != DR_BOL;
}

size_t sg_data_feed(struct sg_data_reader *r, const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n && !r->done) {
		uint8_t c = p[i++];
		switch (r->st) {
		case DR_BOL:
			if (c == '.')
				r->st = DR_DOT;
			else
				text(r, c);
			break;
		case DR_DOT:
			if (c == '\r')
				r->st = DR_DOT_CR;
			else
				text(r, c); /* the leading dot is dropped (4.5.2) */
			break;
		case DR_DOT_CR:
			if (c == '\n' && r->bol_crlf) {
				r->done = true;
			} else if (c == '\n') {
				/* "<bare LF>.\r\n": an empty line, not the end */
				emit(r, "\r\n", 2);
				r->st = DR_BOL;
				r->bol_crlf = true;
			} else {
				r->bare_cr = true;
				emit(r, "\r", 1);
				text(r, c);
			}
			break;
		case DR_TEXT: {
			if (c == '\r' || c == '\n') {
				text(r, c);
				break;
			}
			/* Fast path: the run of ordinary octets up to the next CR or LF
			 * goes into the buffer in one append. */
			size_t start = i - 1, end = i;
			while (end < n && p[end] != '\r' && p[end] != '\n')
				end++;
			for (size_t k = start; k < end && !r->eightbit; k++)
				if (p[k] >= 0x80)
					r->eightbit = true;
			emit(r, p + start, end - start);
			i = end;
			break;
		}
		case DR_CR:
			if (c == '\n') {
				emit(r, "\r\n", 2);
				r->st = DR_BOL;
				r->bol_crlf = true;
			} else {
				r->bare_cr = true;
				emit(r, "\r", 1);
				text(r, c);
			}
			break;
		}
	}
	return i;
}
