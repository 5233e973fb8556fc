#include "smtp/reply_parse.h"

#include <string.h>

void sg_reply_parser_init(struct sg_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->max_lines = SG_REPLY_LINES_DEFAULT;
	sg_buf_init(&p->reply.buf, SG_REPLY_LINES_CAP * (SG_REPLY_LINE_MAX + 1));
}

static void reply_clear(struct sg_reply *r)
{
	r->code = 0;
	r->enh[0] = '\0';
	r->nlines = 0;
	sg_buf_reset(&r->buf);
}

void sg_reply_parser_reset(struct sg_reply_parser *p)
{
	reply_clear(&p->reply);
	p->line_len = 0;
	p->done = false;
	p->failed = false;
	p->error = NULL;
}

void sg_reply_parser_free(struct sg_reply_parser *p)
{
	sg_buf_free(&p->reply.buf);
	p->line_len = 0;
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

size_t sg_reply_parse_enh(const char *s, size_t len, char cls, char *enh)
{
	/* status-code = class "." subject "." detail; class = "2"/"4"/"5";
	 * subject = 1*3digit; detail = 1*3digit   (RFC 3463 section 2) */
	if (len < 5 || (cls != '2' && cls != '4' && cls != '5') || s[0] != cls || s[1] != '.')
		return 0;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && i - start < 4 && is_digit((uint8_t)s[i]))
			i++;
		size_t n = i - start;
		if (n < 1 || n > 3)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	/* at most 1+1+3+1+3 = 9 octets */
	memcpy(enh, s, i);
	enh[i] = '\0';
	return i;
}

static enum sg_reply_status fail(struct sg_reply_parser *p, const char *why)
{
	p->failed = true;
	p->error = why;
	return SG_REPLY_ERROR;
}

/* One complete line (without CR/LF) in p->line[0..line_len). */
static enum sg_reply_status take_line(struct sg_reply_parser *p)
{
	const uint8_t *l = p->line;
	size_t n = p->line_len;
	struct sg_reply *r = &p->reply;

	if (memchr(l, '\0', n) != NULL)
		return fail(p, "NUL octet in reply line");
	if (n < 3)
		return fail(p, "reply line shorter than a reply code");
	/* RFC 5321 section 4.2: first digit 2-5 (1yz is never used in SMTP). */
	if (l[0] < '2' || l[0] > '5' || !is_digit(l[1]) || !is_digit(l[2]))
		return fail(p, "reply line does not start with a reply code");
	bool last;
	if (n == 3)
		last = true;
	else if (l[3] == ' ')
		last = true;
	else if (l[3] == '-')
		last = false;
	else
		return fail(p, "reply code not followed by a space or a hyphen");
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (r->nlines == 0) {
		r->code = code;
	} else if (code != r->code) {
		/* RFC 5321 section 4.2.1: each line of a multiline reply has the same code. */
		return fail(p, "multiline reply changes its reply code");
	}
	if (r->nlines >= p->max_lines || r->nlines >= SG_REPLY_LINES_CAP)
		return fail(p, "too many lines in one reply");
	r->off[r->nlines] = r->buf.len;
	if (sg_buf_append(&r->buf, l, n) < 0 || sg_buf_append(&r->buf, "", 1) < 0)
		return fail(p, "reply too large");
	if (r->nlines == 0 && n > 4)
		sg_reply_parse_enh((const char *)l + 4, n - 4, (char)l[0], r->enh);
	r->nlines++;
	p->line_len = 0;
	if (last) {
		p->done = true;
		return SG_REPLY_DONE;
	}
	return SG_REPLY_MORE;
}

enum sg_reply_status sg_reply_parser_feed(struct sg_reply_parser *p, const uint8_t *data,
					  size_t len, size_t *used_r)
{
	*used_r = 0;
	if (p->failed)
		return SG_REPLY_ERROR;
	if (p->done) {
		reply_clear(&p->reply);
		p->done = false;
	}
	if (p->max_lines == 0 || p->max_lines > SG_REPLY_LINES_CAP)
		p->max_lines = SG_REPLY_LINES_DEFAULT;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];
		if (c == '\n') {
			if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
				p->line_len--;
			if (p->line_len > SG_REPLY_LINE_MAX) {
				*used_r = i + 1;
				return fail(p, "reply line too long");
			}
			enum sg_reply_status st = take_line(p);
			*used_r = i + 1;
			if (st != SG_REPLY_MORE)
				return st;
			continue;
		}
		/* room for the line plus a trailing CR */
		if (p->line_len >= SG_REPLY_LINE_MAX + 1) {
			*used_r = i + 1;
			return fail(p, "reply line too long");
		}
		p->line[p->line_len++] = c;
	}
	*used_r = len;
	return SG_REPLY_MORE;
}

const char *sg_reply_line(const struct sg_reply *r, size_t i)
{
	if (i >= r->nlines)
		return "";
	return (const char *)r->buf.data + r->off[i];
}

const char *sg_reply_text(const struct sg_reply *r, size_t i)
{
	const char *l = sg_reply_line(r, i);
	size_t n = strlen(l);
	return n >= 4 ? l + 4 : l + n;
}

const char *sg_reply_text_noenh(const struct sg_reply *r, size_t i)
{
	const char *t = sg_reply_text(r, i);
	char enh[12];
	const char *l = sg_reply_line(r, i);
	size_t k = sg_reply_parse_enh(t, strlen(t), l[0], enh);
	if (k == 0)
		return t;
	t += k;
	while (*t == ' ')
		t++;
	return t;
}
