/*
 * DSN composition (src/relay/dsn.c): the structure RFC 3464 / RFC 6522 ask
 * for, read back with GMime (an independent MIME parser); the per-message
 * and per-recipient fields; RET=HDRS and the size cap; ORCPT and ENVID
 * pass-through; SMTPUTF8 addresses (RFC 6533); and header injection:
 * CR, LF and boundaries in every input field must not change the structure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "core/buf.h"
#include "core/util.h"
#include "relay/dsn.h"

static const char orig_msg[] = "From: Alice <alice@example.org>\r\n"
                               "To: bob@example.net, carol@example.net\r\n"
                               "Subject: the original\r\n"
                               "Message-ID: <orig-1@example.org>\r\n"
                               "\r\n"
                               "The body of the original.\r\n"
                               "SECRET-BODY-MARKER\r\n";

static const struct sg_dsn_rcpt two_rcpts[] = {
    {.orcpt = "rfc822;bob@example.net",
     .final_rcpt = "bob@example.net",
     .action = "failed",
     .status = "5.1.1",
     .remote_mta = "smarthost.example.net",
     .diagnostic = "smtp; 550 5.1.1 <bob@example.net>: user unknown",
     .last_attempt = 1796212800},
    {.final_rcpt = "carol@example.net",
     .action = "delayed",
     .status = "4.4.1",
     .remote_mta = "smarthost.example.net",
     .diagnostic = "smtp; 451 4.4.1 try again later",
     .last_attempt = 1796212800,
     .will_retry_until = 1796644800},
};

static struct sg_dsn_info base_info(void)
{
	return (struct sg_dsn_info){
	    .reporting_mta = "mail.example.org",
	    .envid = "QQ314159",
	    .from_addr = "alice@example.org",
	    .postmaster = "MAILER-DAEMON@mail.example.org",
	    .arrival = 1796209200,
	    .ret_hdrs = false,
	    .rcpts = two_rcpts,
	    .n_rcpts = 2,
	};
}

struct built {
	char *out;
	size_t len;
	struct sg_dsn_result res;
	GMimeMessage *msg;
	GMimeMultipart *mp;
};

static void build_ok(struct built *b, const struct sg_dsn_info *info, const char *orig,
                     size_t orig_len)
{
	const char *err = NULL;
	memset(b, 0, sizeof(*b));
	int r =
	    sg_dsn_build_ex(info, (const uint8_t *)orig, orig_len, &b->out, &b->len, &b->res, &err);
	if (r != 0)
		fail_msg("sg_dsn_build: %s", err);
	assert_int_equal(strlen(b->out), b->len);
	/* every line ends in CRLF, no bare CR or LF anywhere */
	for (size_t i = 0; i < b->len; i++) {
		if (b->out[i] == '\n')
			assert_true(i > 0 && b->out[i - 1] == '\r');
		if (b->out[i] == '\r')
			assert_true(i + 1 < b->len && b->out[i + 1] == '\n');
	}
	assert_true(b->len >= 2 && b->out[b->len - 2] == '\r' && b->out[b->len - 1] == '\n');
	GMimeStream *st = g_mime_stream_mem_new_with_buffer(b->out, b->len);
	GMimeParser *p = g_mime_parser_new_with_stream(st);
	b->msg = g_mime_parser_construct_message(p, NULL);
	g_object_unref(p);
	g_object_unref(st);
	assert_non_null(b->msg);
	GMimeObject *top = g_mime_message_get_mime_part(b->msg);
	assert_true(GMIME_IS_MULTIPART(top));
	GMimeContentType *ct = g_mime_object_get_content_type(top);
	assert_true(g_mime_content_type_is_type(ct, "multipart", "report"));
	assert_string_equal(g_mime_content_type_get_parameter(ct, "report-type"),
	                    "delivery-status");
	b->mp = (GMimeMultipart *)top;
}

static void built_free(struct built *b)
{
	if (b->msg != NULL)
		g_object_unref(b->msg);
	free(b->out);
}

static const char *header(struct built *b, const char *name)
{
	return g_mime_object_get_header((GMimeObject *)b->msg, name);
}

static GMimeObject *part(struct built *b, int i)
{
	assert_int_equal(g_mime_multipart_get_count(b->mp), 3);
	return g_mime_multipart_get_part(b->mp, i);
}

static void assert_type(GMimeObject *o, const char *type, const char *subtype)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	if (!g_mime_content_type_is_type(ct, type, subtype)) {
		char *t = g_mime_content_type_get_mime_type(ct);
		fail_msg("part is %s, not %s/%s", t, type, subtype);
	}
}

/* The content of a leaf part (decoded) or of a message part (as written). */
static char *part_text(GMimeObject *o)
{
	GMimeStream *mem = g_mime_stream_mem_new();
	if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *m = g_mime_message_part_get_message((GMimeMessagePart *)o);
		assert_non_null(m);
		g_mime_object_write_to_stream((GMimeObject *)m, NULL, mem);
	} else {
		assert_true(GMIME_IS_PART(o));
		GMimeDataWrapper *w = g_mime_part_get_content((GMimePart *)o);
		assert_non_null(w);
		g_mime_data_wrapper_write_to_stream(w, mem);
	}
	GByteArray *ba = g_mime_stream_mem_get_byte_array((GMimeStreamMem *)mem);
	char *s = sg_strndup((const char *)ba->data, ba->len);
	g_object_unref(mem);
	return s;
}

/* The delivery-status content, split into blocks of fields (RFC 3464 2.1):
 * block 0 is per-message, then one per recipient. Fields are checked by
 * "Name: value" lines inside a block. */
static char **status_blocks(struct built *b, size_t *n_r)
{
	char *s = part_text(part(b, 1));
	char **blocks = sg_calloc(64, sizeof(*blocks));
	size_t n = 0;
	/* drop leading line ends, then split at empty lines */
	char *p = s;
	while (*p == '\r' || *p == '\n')
		p++;
	while (*p != '\0' && n < 64) {
		char *end = strstr(p, "\r\n\r\n");
		if (end == NULL)
			end = strstr(p, "\n\n");
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		blocks[n++] = sg_asprintf("\r\n%.*s\r\n", (int)len, p);
		if (end == NULL)
			break;
		p = end;
		while (*p == '\r' || *p == '\n')
			p++;
	}
	free(s);
	*n_r = n;
	return blocks;
}

static void free_blocks(char **b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(b[i]);
	free(b);
}

static void assert_field(const char *block, const char *line)
{
	char *want = sg_asprintf("\r\n%s\r\n", line);
	if (strstr(block, want) == NULL)
		fail_msg("no line '%s' in block:%s", line, block);
	free(want);
}

static void test_structure(void **state)
{
	struct sg_dsn_info info = base_info();
	struct built b;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));

	assert_string_equal(header(&b, "Auto-Submitted"), "auto-replied");
	assert_non_null(strstr(header(&b, "To"), "alice@example.org"));
	assert_non_null(strstr(header(&b, "From"), "MAILER-DAEMON@mail.example.org"));
	assert_string_equal(header(&b, "Subject"), "Undelivered Mail Returned to Sender");
	assert_non_null(header(&b, "Date"));
	assert_string_equal(header(&b, "MIME-Version"), "1.0");
	const char *mid = g_mime_message_get_message_id(b.msg);
	assert_non_null(mid);
	assert_non_null(strstr(mid, "@mail.example.org"));
	assert_false(b.res.body_8bit);
	assert_false(b.res.smtputf8);
	assert_false(b.res.truncated);

	/* 1. human-readable */
	assert_type(part(&b, 0), "text", "plain");
	char *text = part_text(part(&b, 0));
	assert_non_null(strstr(text, "could not be delivered to <bob@example.net>"));
	assert_non_null(strstr(text, "550 5.1.1"));
	assert_non_null(strstr(text, "has not yet been delivered to <carol@example.net>"));
	free(text);

	/* 2. machine-readable */
	assert_type(part(&b, 1), "message", "delivery-status");
	size_t n;
	char **blk = status_blocks(&b, &n);
	assert_int_equal(n, 3);
	assert_field(blk[0], "Reporting-MTA: dns; mail.example.org");
	assert_field(blk[0], "Original-Envelope-Id: QQ314159");
	assert_field(blk[0], "Arrival-Date: Wed, 02 Dec 2026 11:00:00 +0000");
	assert_field(blk[1], "Original-Recipient: rfc822;bob@example.net");
	assert_field(blk[1], "Final-Recipient: rfc822;bob@example.net");
	assert_field(blk[1], "Action: failed");
	assert_field(blk[1], "Status: 5.1.1");
	assert_field(blk[1], "Remote-MTA: dns; smarthost.example.net");
	assert_field(blk[1], "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: user unknown");
	assert_field(blk[1], "Last-Attempt-Date: Wed, 02 Dec 2026 12:00:00 +0000");
	assert_null(strstr(blk[1], "Will-Retry-Until"));
	assert_null(strstr(blk[2], "Original-Recipient"));
	assert_field(blk[2], "Final-Recipient: rfc822;carol@example.net");
	assert_field(blk[2], "Action: delayed");
	assert_field(blk[2], "Status: 4.4.1");
	assert_field(blk[2], "Will-Retry-Until: Mon, 07 Dec 2026 12:00:00 +0000");
	free_blocks(blk, n);

	/* 3. the original, whole */
	assert_type(part(&b, 2), "message", "rfc822");
	assert_true(GMIME_IS_MESSAGE_PART(part(&b, 2)));
	GMimeMessage *o = g_mime_message_part_get_message((GMimeMessagePart *)part(&b, 2));
	assert_string_equal(g_mime_message_get_subject(o), "the original");
	char *orig = part_text(part(&b, 2));
	assert_non_null(strstr(orig, "SECRET-BODY-MARKER"));
	free(orig);
	/* the original is there byte for byte */
	assert_non_null(strstr(b.out, orig_msg));
	built_free(&b);

	/* two reports never share a Message-ID */
	struct built b2;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	build_ok(&b2, &info, orig_msg, strlen(orig_msg));
	assert_string_not_equal(g_mime_message_get_message_id(b.msg),
	                        g_mime_message_get_message_id(b2.msg));
	built_free(&b);
	built_free(&b2);
}

static void test_subjects_and_actions(void **state)
{
	struct sg_dsn_info info = base_info();
	struct sg_dsn_rcpt r = two_rcpts[1];
	info.rcpts = &r;
	info.n_rcpts = 1;
	struct built b;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	assert_string_equal(header(&b, "Subject"), "Delayed Mail (still being retried)");
	built_free(&b);
	r.action = "delivered";
	r.status = "2.0.0";
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	assert_string_equal(header(&b, "Subject"), "Successful Mail Delivery Report");
	built_free(&b);
	r.action = "relayed";
	r.diagnostic = NULL;
	r.remote_mta = NULL;
	r.last_attempt = 0;
	info.envid = NULL;
	info.arrival = 0;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	size_t n;
	char **blk = status_blocks(&b, &n);
	assert_int_equal(n, 2);
	assert_null(strstr(blk[0], "Original-Envelope-Id"));
	assert_null(strstr(blk[0], "Arrival-Date"));
	assert_null(strstr(blk[1], "Remote-MTA"));
	assert_null(strstr(blk[1], "Diagnostic-Code"));
	assert_null(strstr(blk[1], "Last-Attempt-Date"));
	/* Will-Retry-Until only for delayed */
	assert_null(strstr(blk[1], "Will-Retry-Until"));
	free_blocks(blk, n);
	built_free(&b);
	/* a diagnostic without a type gets "smtp;" */
	r.diagnostic = "550 no such user";
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	blk = status_blocks(&b, &n);
	assert_field(blk[1], "Diagnostic-Code: smtp; 550 no such user");
	free_blocks(blk, n);
	built_free(&b);
}

static void test_ret_hdrs_and_cap(void **state)
{
	struct sg_dsn_info info = base_info();
	info.ret_hdrs = true;
	struct built b;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	assert_type(part(&b, 2), "text", "rfc822-headers");
	char *h = part_text(part(&b, 2));
	assert_non_null(strstr(h, "Subject: the original\r\n"));
	assert_null(strstr(h, "SECRET-BODY-MARKER"));
	assert_null(strstr(b.out, "SECRET-BODY-MARKER"));
	free(h);
	assert_false(b.res.truncated);
	char *text = part_text(part(&b, 0));
	assert_non_null(strstr(text, "RET=HDRS"));
	free(text);
	built_free(&b);

	/* over the cap: headers only, said so, whatever RET says */
	info.ret_hdrs = false;
	struct sg_buf big;
	sg_buf_init(&big, 4 << 20);
	sg_buf_append_str(&big, "From: a@example.org\r\nSubject: big\r\n\r\n");
	while (big.len <= SG_DSN_MAX_ORIG)
		sg_buf_append_str(
		    &big, "SECRET-BODY-MARKER 0123456789012345678901234567890123456789\r\n");
	build_ok(&b, &info, sg_buf_str(&big), big.len);
	assert_true(b.res.truncated);
	assert_type(part(&b, 2), "text", "rfc822-headers");
	assert_null(strstr(b.out, "SECRET-BODY-MARKER"));
	text = part_text(part(&b, 0));
	assert_non_null(strstr(text, "only its header section"));
	free(text);
	assert_true(b.len < 16 * 1024);
	built_free(&b);
	/* just under the cap: whole */
	big.len = SG_DSN_MAX_ORIG;
	big.data[big.len] = '\0';
	build_ok(&b, &info, sg_buf_str(&big), big.len);
	assert_false(b.res.truncated);
	assert_type(part(&b, 2), "message", "rfc822");
	built_free(&b);
	sg_buf_free(&big);

	/* no original at all, and one with bare LF line ends */
	build_ok(&b, &info, NULL, 0);
	built_free(&b);
	/* NUL octets in the original are left out (build_ok: strlen == len) */
	static const char nul[] = "From: a@example.org\r\nSubject: n\0ul\r\n\r\nb\0ody\r\n";
	build_ok(&b, &info, nul, sizeof(nul) - 1);
	assert_non_null(strstr(b.out, "Subject: nul\r\n\r\nbody\r\n"));
	built_free(&b);
	const char *lf = "From: a@example.org\nSubject: lf\n\nline\n";
	build_ok(&b, &info, lf, strlen(lf));
	assert_non_null(strstr(b.out, "Subject: lf\r\n\r\nline\r\n"));
	built_free(&b);
}

static void test_orcpt_envid(void **state)
{
	struct sg_dsn_info info = base_info();
	struct sg_dsn_rcpt r = two_rcpts[0];
	info.rcpts = &r;
	info.n_rcpts = 1;
	/* decoded values (the queue keeps them so) pass through as they are */
	info.envid = "id+with=plus+2B";
	r.orcpt = "rfc822;first+last@example.net";
	struct built b;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	size_t n;
	char **blk = status_blocks(&b, &n);
	assert_field(blk[0], "Original-Envelope-Id: id+with=plus+2B");
	assert_field(blk[1], "Original-Recipient: rfc822;first+last@example.net");
	free_blocks(blk, n);
	built_free(&b);
	/* another address type is kept; a value without a type is rfc822 */
	r.orcpt = "x400;c=us;a=att";
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	blk = status_blocks(&b, &n);
	assert_field(blk[1], "Original-Recipient: x400;c=us;a=att");
	free_blocks(blk, n);
	built_free(&b);
	r.orcpt = "bob@example.net";
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	blk = status_blocks(&b, &n);
	assert_field(blk[1], "Original-Recipient: rfc822;bob@example.net");
	free_blocks(blk, n);
	built_free(&b);
	/* a type longer than any address type is not taken as one */
	char *longtype = sg_asprintf("%0100d;x@example.net", 0);
	r.orcpt = longtype;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	blk = status_blocks(&b, &n);
	char *want = sg_asprintf("Original-Recipient: rfc822;%s", longtype);
	assert_field(blk[1], want);
	free(want);
	free_blocks(blk, n);
	built_free(&b);
	free(longtype);
}

static void test_smtputf8(void **state)
{
	struct sg_dsn_info info = base_info();
	struct sg_dsn_rcpt r = two_rcpts[0];
	info.rcpts = &r;
	info.n_rcpts = 1;
	r.final_rcpt = "用户@例子.广告";
	r.orcpt = "utf-8;用户@例子.广告";
	info.from_addr = "δοκιμή@παράδειγμα.δοκιμή";
	const char *orig = "From: δοκιμή@παράδειγμα.δοκιμή\r\nSubject: Grüße\r\n\r\nHallo\r\n";
	struct built b;
	build_ok(&b, &info, orig, strlen(orig));
	assert_true(b.res.smtputf8);
	assert_true(b.res.body_8bit);
	assert_non_null(strstr(header(&b, "To"), "δοκιμή@παράδειγμα.δοκιμή"));
	assert_type(part(&b, 1), "message", "global-delivery-status");
	assert_type(part(&b, 2), "message", "global");
	size_t n;
	char **blk = status_blocks(&b, &n);
	assert_field(blk[1], "Final-Recipient: utf-8;用户@例子.广告");
	assert_field(blk[1], "Original-Recipient: utf-8;用户@例子.广告");
	free_blocks(blk, n);
	built_free(&b);

	/* an ASCII report with an 8-bit body: 8BITMIME, not SMTPUTF8 */
	info = base_info();
	orig = "From: a@example.org\r\nSubject: x\r\n\r\nGr\xc3\xbc\xc3\x9f"
	       "e\r\n";
	build_ok(&b, &info, orig, strlen(orig));
	assert_true(b.res.body_8bit);
	assert_false(b.res.smtputf8);
	assert_type(part(&b, 2), "message", "rfc822");
	built_free(&b);

	/* specials and invalid UTF-8 in a utf-8 address are \x{} escaped
	 * (RFC 6533 3 utf-8-addr-unitext) */
	info = base_info();
	info.rcpts = &r;
	info.n_rcpts = 1;
	r.orcpt = NULL;
	r.final_rcpt = "a+b=c\\d é\xff@example.org";
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	blk = status_blocks(&b, &n);
	assert_field(
	    blk[1],
	    "Final-Recipient: utf-8;a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}é\\x{FFFD}@example.org");
	free_blocks(blk, n);
	built_free(&b);

	/* escapes never make a line longer than RFC 5322 allows */
	char *wide = sg_malloc(2000);
	memset(wide, ' ', 1990);
	memcpy(wide + 1990, "\xc3\xa9@x.org", 9);
	r.final_rcpt = wide;
	r.orcpt = wide;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	for (const char *p = b.out; *p != '\0';) {
		const char *e = strstr(p, "\r\n");
		assert_true(e - p <= 998);
		p = e + 2;
	}
	built_free(&b);
	free(wide);
}

/* CR/LF, NUL-free control octets and boundary-like text in every field. */
static void test_injection(void **state)
{
	const char *evil = "x@y>, z@w <\r\nBcc: victim@example.com\r\n\r\n--=_sg-dsn-0\r\n"
	                   "Content-Type: text/html\nX-Evil: 1\rY";
	struct sg_dsn_rcpt r = {
	    .orcpt = evil,
	    .final_rcpt = evil,
	    .action = "failed",
	    .status = "5.0.0",
	    .remote_mta = evil,
	    .diagnostic = evil,
	    .last_attempt = 1,
	};
	struct sg_dsn_info info = {
	    .reporting_mta = evil,
	    .envid = evil,
	    .from_addr = evil,
	    .postmaster = evil,
	    .arrival = 1,
	    .rcpts = &r,
	    .n_rcpts = 1,
	};
	struct built b;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	/* no injected field starts a line, anywhere */
	assert_null(strstr(b.out, "\r\nBcc:"));
	assert_null(strstr(b.out, "\r\nX-Evil"));
	assert_null(strstr(b.out, "\r\nContent-Type: text/html"));
	assert_null(strstr(b.out, "\r\n--=_sg-dsn-0\r\n"));
	assert_null(header(&b, "Bcc"));
	/* one mailbox in To and From, whatever the address holds */
	InternetAddressList *to = g_mime_message_get_to(b.msg);
	assert_int_equal(internet_address_list_length(to), 1);
	InternetAddressList *from = g_mime_message_get_from(b.msg);
	assert_int_equal(internet_address_list_length(from), 1);
	/* the structure is intact: three parts of the right types, one
	 * recipient block */
	assert_type(part(&b, 0), "text", "plain");
	assert_type(part(&b, 1), "message", "delivery-status");
	assert_type(part(&b, 2), "message", "rfc822");
	size_t n;
	char **blk = status_blocks(&b, &n);
	assert_int_equal(n, 2);
	assert_field(blk[1], "Action: failed");
	free_blocks(blk, n);
	built_free(&b);
}

static void test_refusals(void **state)
{
	const char *err = NULL;
	char *out = (char *)"x";
	size_t len = 7;
	struct sg_dsn_info info = base_info();
	struct sg_dsn_rcpt r = two_rcpts[0];
	info.rcpts = &r;
	info.n_rcpts = 1;
	static const char *const bad_status[] = {"",         "5",    "5.1",  "3.1.1",  "5.1.1.1",
	                                         "5.1234.1", "5.1.", "5..1", "5.1.1 ", "x.1.1"};
	for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
		r.status = bad_status[i];
		assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
		assert_null(out);
		assert_int_equal(len, 0);
	}
	r.status = "5.123.456";
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), 0);
	free(out);
	r.action = "bounced";
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
	assert_non_null(strstr(err, "action"));
	r.action = NULL;
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
	r.action = "failed";
	r.final_rcpt = NULL;
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
	r.final_rcpt = "a@example.org";
	info.n_rcpts = 0;
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
	info.n_rcpts = SG_DSN_MAX_RCPTS + 1;
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
	info.n_rcpts = 1;
	info.from_addr = ""; /* null sender: never a bounce of a bounce */
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
	assert_non_null(strstr(err, "null sender"));
	info.from_addr = NULL;
	assert_int_equal(sg_dsn_build(&info, NULL, 0, &out, &len, &err), -1);
}

static void test_many_recipients(void **state)
{
	struct sg_dsn_rcpt *rs = sg_calloc(SG_DSN_MAX_RCPTS, sizeof(*rs));
	char **addrs = sg_calloc(SG_DSN_MAX_RCPTS, sizeof(*addrs));
	char *longdiag = sg_malloc(5000);
	memset(longdiag, 'd', 4999);
	longdiag[4999] = '\0';
	for (size_t i = 0; i < SG_DSN_MAX_RCPTS; i++) {
		addrs[i] = sg_asprintf("user%zu@example.net", i);
		rs[i] = (struct sg_dsn_rcpt){.final_rcpt = addrs[i],
		                             .action = "failed",
		                             .status = "5.1.1",
		                             .diagnostic = longdiag,
		                             .orcpt = addrs[i]};
	}
	struct sg_dsn_info info = base_info();
	info.rcpts = rs;
	info.n_rcpts = SG_DSN_MAX_RCPTS;
	struct built b;
	build_ok(&b, &info, orig_msg, strlen(orig_msg));
	assert_true(b.len <= SG_DSN_MAX_OUT);
	size_t n;
	char **blk = status_blocks(&b, &n);
	assert_int_equal(n, 64); /* status_blocks stops at 64 */
	free_blocks(blk, n);
	/* long fields are cut: no line over 998 octets (RFC 5322 2.1.1) */
	for (const char *p = b.out; *p != '\0';) {
		const char *e = strstr(p, "\r\n");
		assert_true(e - p <= 998);
		p = e + 2;
	}
	built_free(&b);
	for (size_t i = 0; i < SG_DSN_MAX_RCPTS; i++)
		free(addrs[i]);
	free(addrs);
	free(rs);
	free(longdiag);
}

int main(void)
{
	g_mime_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_structure),        cmocka_unit_test(test_subjects_and_actions),
	    cmocka_unit_test(test_ret_hdrs_and_cap), cmocka_unit_test(test_orcpt_envid),
	    cmocka_unit_test(test_smtputf8),         cmocka_unit_test(test_injection),
	    cmocka_unit_test(test_refusals),         cmocka_unit_test(test_many_recipients),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	g_mime_shutdown();
	return r;
}
