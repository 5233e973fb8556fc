/*
 * DKIM signing: RFC 6376 3.4.5 canonicalisation examples, the RFC 8463
 * appendix A ed25519 vector (body hash and signature, which Ed25519 makes
 * deterministic), the signature field we write checked back with OpenSSL's
 * verifier, and every refusal. Independent verification with dkimpy is in
 * tests/integration/test_dkim.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/b64.h"
#include "core/buf.h"
#include "core/util.h"
#include "relay/dkim.h"

static char tmpdir[] = "/tmp/sg-test-dkim-XXXXXX";

static char *tmp_path(const char *name)
{
	return sg_asprintf("%s/%s", tmpdir, name);
}

static char *write_file(const char *name, const char *text)
{
	char *p = tmp_path(name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static void sink_buf(void *ctx, const uint8_t *p, size_t n)
{
	assert_int_equal(sg_buf_append(ctx, p, n), 0);
}

static char *canon_body(const char *body, size_t len)
{
	struct sg_buf b;
	sg_buf_init(&b, 1 << 20);
	sg_dkim_canon_body((const uint8_t *)body, len, sink_buf, &b);
	char *s = sg_strndup(sg_buf_str(&b), b.len);
	sg_buf_free(&b);
	return s;
}

static char *canon_header(const char *field)
{
	struct sg_buf b;
	sg_buf_init(&b, 1 << 20);
	sg_dkim_canon_header((const uint8_t *)field, strlen(field), sink_buf, &b);
	char *s = sg_strndup(sg_buf_str(&b), b.len);
	sg_buf_free(&b);
	return s;
}

/* RFC 6376 3.4.5 */
static void test_rfc6376_examples(void **state)
{
	char *h = canon_header("A: X");
	assert_string_equal(h, "a:X\r\n");
	free(h);
	h = canon_header("B : Y\t\r\n\tZ  ");
	assert_string_equal(h, "b:Y Z\r\n");
	free(h);
	const char body[] = " C \r\nD \t E\r\n\r\n\r\n";
	char *c = canon_body(body, sizeof(body) - 1);
	assert_string_equal(c, " C\r\nD E\r\n");
	free(c);
}

static void test_body_edge_cases(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"", ""}, /* empty body: nothing (RFC 6376 3.4.4) */
	    {"\r\n", ""},
	    {"\r\n\r\n \t \r\n", ""}, /* only empty / blank lines */
	    {"abc", "abc\r\n"},       /* no final CRLF: one is added */
	    {"abc\r\n", "abc\r\n"},
	    {"a\nb\n", "a\r\nb\r\n"},            /* bare LF ends a line */
	    {"\r\n\r\nx\r\n", "\r\n\r\nx\r\n"},  /* leading empty lines stay */
	    {"x\r\n \t\r\ny", "x\r\n\r\ny\r\n"}, /* a blank line inside stays empty */
	    {"a\t\tb  \t", "a b\r\n"},
	    {"\tlead", " lead\r\n"},  /* leading WSP is one SP */
	    {"a\rb\r\n", "a\rb\r\n"}, /* a bare CR is an ordinary octet */
	    {"x\r\n\r\n\r\n\r\n", "x\r\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *c = canon_body(cases[i].in, strlen(cases[i].in));
		assert_string_equal(c, cases[i].out);
		free(c);
	}
	/* a long line (over any buffer) and many of them */
	size_t n = 100000;
	char *big = sg_malloc(n + 1);
	memset(big, 'x', n);
	for (size_t i = 500; i < n; i += 1000)
		big[i] = ' ';
	big[n] = '\0';
	char *c = canon_body(big, n);
	assert_int_equal(strlen(c), n + 2);
	assert_memory_equal(c, big, n);
	free(c);
	free(big);
}

static void test_header_edge_cases(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"Subject:", "subject:\r\n"},
	    {"SUBJECT:   \t ", "subject:\r\n"},
	    {"X-Y \t:\tv", "x-y:v\r\n"},
	    {"To: a,\r\n  b,\r\n\tc", "to:a, b, c\r\n"},
	    {"To: a,\n b", "to:a, b\r\n"},       /* bare LF fold */
	    {"Subject: a:b", "subject:a:b\r\n"}, /* only the first colon splits */
	    {"no colon here", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *c = canon_header(cases[i].in);
		assert_string_equal(c, cases[i].out);
		free(c);
	}
}

/* RFC 8463 appendix A: the key (A.1), the message (A.2) and the ed25519
 * signature of A.3, which verifies with that key (dkimpy agrees). */
static const char rfc8463_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";
static const char rfc8463_msg[] = "From: Joe SixPack <joe@football.example.com>\r\n"
                                  "To: Suzie Q <suzie@shopping.example.net>\r\n"
                                  "Subject: Is dinner ready?\r\n"
                                  "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
                                  "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
                                  "\r\n"
                                  "Hi.\r\n"
                                  "\r\n"
                                  "We lost the game.  Are you hungry yet?\r\n"
                                  "\r\n"
                                  "Joe.\r\n";
static const char rfc8463_sig_field[] =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=\r\n";
static const char rfc8463_b[] =
    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";

static void test_rfc8463_vector(void **state)
{
	char *keyfile = write_file("rfc8463.pem", rfc8463_key);
	struct sg_dkim_signer *s = NULL;
	const char *err = NULL;
	assert_int_equal(sg_dkim_signer_load(&s, "football.example.com", "brisbane", keyfile, &err),
	                 0);
	assert_string_equal(sg_dkim_signer_algorithm(s), "ed25519-sha256");

	static const char *const h[] = {"from",       "to",   "subject", "date",
	                                "message-id", "from", "subject", "date"};
	uint8_t hh[32], bh[32];
	assert_int_equal(sg_dkim_hashes((const uint8_t *)rfc8463_msg, strlen(rfc8463_msg), h, 8,
	                                rfc8463_sig_field, hh, bh, &err),
	                 0);
	char b64[200];
	sg_b64_encode(bh, 32, b64);
	assert_string_equal(b64, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");

	uint8_t sig[SG_DKIM_MAX_SIG];
	size_t sig_len = 0;
	assert_int_equal(sg_dkim_sign_hash(s, hh, sig, &sig_len, &err), 0);
	assert_int_equal(sig_len, 64);
	sg_b64_encode(sig, sig_len, b64);
	assert_string_equal(b64, rfc8463_b);

	/* the public key of A.2 */
	char *txt = NULL;
	assert_int_equal(sg_dkim_dns_record(s, &txt, &err), 0);
	assert_string_equal(txt,
	                    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
	free(txt);
	sg_dkim_signer_free(&s);
	assert_null(s);
	unlink(keyfile);
	free(keyfile);
}

/* ---- our own signature field, checked with OpenSSL's verifier ---- */

/* The value of tag `tag` in the unfolded field, whitespace removed. */
static char *tag_value(const char *field, const char *tag)
{
	struct sg_buf b;
	sg_buf_init(&b, 1 << 20);
	size_t tl = strlen(tag);
	const char *p = strchr(field, ':') + 1;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		const char *end = strchr(p, ';');
		if (end == NULL)
			end = p + strlen(p);
		if (strncmp(p, tag, tl) == 0 && p[tl] == '=') {
			for (const char *q = p + tl + 1; q < end; q++)
				if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
					sg_buf_append(&b, q, 1);
			char *v = sg_strdup(sg_buf_str(&b));
			sg_buf_free(&b);
			return v;
		}
		p = *end == ';' ? end + 1 : end;
	}
	sg_buf_free(&b);
	return NULL;
}

/* Verify `field` over `msg` with the public key of the signer, as a
 * verifier would: h= from the field, b= emptied, bh= compared. */
static bool verify_field(const struct sg_dkim_signer *s, const char *field, const char *msg)
{
	char *h = tag_value(field, "h"), *bh = tag_value(field, "bh"), *b = tag_value(field, "b");
	assert_non_null(h);
	assert_non_null(bh);
	assert_non_null(b);
	const char *names[64];
	size_t n = 0;
	for (char *tok = h, *colon; tok != NULL && n < 64; tok = colon) {
		colon = strchr(tok, ':');
		if (colon != NULL)
			*colon++ = '\0';
		names[n++] = tok;
	}
	/* the field with its b= value removed: b= is the last tag */
	const char *bpos = strstr(field, "b=");
	while (bpos != NULL && bpos != field && bpos[-1] != ' ' && bpos[-1] != '\t')
		bpos = strstr(bpos + 1, "b=");
	assert_non_null(bpos);
	char *empty = sg_strndup(field, (size_t)(bpos - field) + 2);
	uint8_t hh[32], bhv[32];
	const char *err;
	assert_int_equal(
	    sg_dkim_hashes((const uint8_t *)msg, strlen(msg), names, n, empty, hh, bhv, &err), 0);
	char bh64[64];
	sg_b64_encode(bhv, 32, bh64);
	bool ok = strcmp(bh64, bh) == 0;

	char *txt;
	assert_int_equal(sg_dkim_dns_record(s, &txt, &err), 0);
	char *p = strstr(txt, "p=") + 2;
	uint8_t pub[2048], sig[2048];
	size_t pub_len, sig_len;
	assert_int_equal(sg_b64_decode(p, strlen(p), pub, &pub_len), 0);
	assert_int_equal(sg_b64_decode(b, strlen(b), sig, &sig_len), 0);
	EVP_PKEY *key;
	if (strstr(txt, "k=ed25519") != NULL) {
		key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, pub_len);
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		ok = ok && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
		     EVP_DigestVerify(ctx, sig, sig_len, hh, 32) == 1;
		EVP_MD_CTX_free(ctx);
	} else {
		const unsigned char *pp = pub;
		key = d2i_PUBKEY(NULL, &pp, (long)pub_len);
		EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
		ok = ok && EVP_PKEY_verify_init(pctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) == 1 &&
		     EVP_PKEY_verify(pctx, sig, sig_len, hh, 32) == 1;
		EVP_PKEY_CTX_free(pctx);
	}
	assert_non_null(key);
	EVP_PKEY_free(key);
	free(txt);
	free(empty);
	free(h);
	free(bh);
	free(b);
	return ok;
}

static char *rsa_keyfile(const char *name, unsigned bits)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	assert_non_null(k);
	char *p = tmp_path(name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(k);
	return p;
}

static const char tricky_msg[] = "Received: from x by y; Wed, 2 Dec 2026 10:00:00 +0000\r\n"
                                 "From: \"Alice\" <alice@example.org>\r\n"
                                 "To: bob@example.net,\r\n"
                                 "\tcarol@example.net\r\n"
                                 "To: dave@example.net\r\n"
                                 "Subject:   spaced \t out   \r\n"
                                 "List-Id: <list.example.org>\r\n"
                                 "X-Not-Signed: whatever\r\n"
                                 "\r\n"
                                 "line with trailing space   \r\n"
                                 "\r\n"
                                 "  indented\ttab\r\n"
                                 "last line without CRLF";

static void check_field_shape(const char *field)
{
	assert_true(strncmp(field, "DKIM-Signature: v=1; ", 21) == 0);
	size_t n = strlen(field);
	assert_true(n > 2 && field[n - 2] == '\r' && field[n - 1] == '\n');
	/* lines of at most 78 octets, CRLF only, continuation lines folded */
	const char *line = field;
	while (*line != '\0') {
		const char *crlf = strstr(line, "\r\n");
		assert_non_null(crlf);
		assert_true(crlf - line <= 78);
		assert_null(memchr(line, '\n', (size_t)(crlf - line)));
		line = crlf + 2;
		if (*line != '\0')
			assert_true(*line == '\t' || *line == ' ');
	}
}

static void test_sign_and_verify(void **state)
{
	char *rsa = rsa_keyfile("rsa.pem", 1024); /* 2048: test_dkim.py */
	char *ed = write_file("ed.pem", rfc8463_key);
	const char *files[] = {rsa, ed};
	for (size_t k = 0; k < 2; k++) {
		struct sg_dkim_signer *s;
		const char *err = NULL;
		assert_int_equal(sg_dkim_signer_load(&s, "example.org", "sel", files[k], &err), 0);
		char *field = NULL;
		assert_int_equal(sg_dkim_sign_at(s, (const uint8_t *)tricky_msg, strlen(tricky_msg),
		                                 1700000000, &field, &err),
		                 0);
		check_field_shape(field);
		char *h = tag_value(field, "h");
		/* each instance once, From oversigned, unlisted fields left out */
		assert_string_equal(h, "from:from:to:to:subject:list-id");
		free(h);
		char *t = tag_value(field, "t");
		assert_string_equal(t, "1700000000");
		free(t);
		char *d = tag_value(field, "d");
		assert_string_equal(d, "example.org");
		free(d);
		char *a = tag_value(field, "a");
		assert_string_equal(a, k == 0 ? "rsa-sha256" : "ed25519-sha256");
		free(a);
		assert_true(verify_field(s, field, tricky_msg));

		/* a changed signed header, or a changed body, no longer verifies */
		char *bad = sg_strdup(tricky_msg);
		*strstr(bad, "spaced") = 'S';
		assert_false(verify_field(s, field, bad));
		free(bad);
		bad = sg_strdup(tricky_msg);
		*strstr(bad, "indented") = 'I';
		assert_false(verify_field(s, field, bad));
		free(bad);
		/* whitespace changes relaxed canonicalisation ignores still verify */
		const char *relaxed = "Received: from x by y; Wed, 2 Dec 2026 10:00:00 +0000\r\n"
		                      "From:   \"Alice\"   <alice@example.org>\r\n"
		                      "To: bob@example.net, carol@example.net\r\n"
		                      "To: dave@example.net\r\n"
		                      "Subject: spaced out\r\n"
		                      "List-Id: <list.example.org>\r\n"
		                      "X-Not-Signed: changed\r\n"
		                      "\r\n"
		                      "line with trailing space\r\n"
		                      "\r\n"
		                      " indented tab \r\n"
		                      "last line without CRLF\r\n\r\n\r\n";
		assert_true(verify_field(s, field, relaxed));
		free(field);

		/* empty body, no body at all */
		const char *empty = "From: a@example.org\r\n\r\n";
		assert_int_equal(
		    sg_dkim_sign_at(s, (const uint8_t *)empty, strlen(empty), 1, &field, &err), 0);
		char *bh = tag_value(field, "bh");
		assert_string_equal(bh, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
		free(bh);
		assert_true(verify_field(s, field, empty));
		free(field);
		const char *nobody = "From: a@example.org";
		assert_int_equal(
		    sg_dkim_sign_at(s, (const uint8_t *)nobody, strlen(nobody), 1, &field, &err),
		    0);
		assert_true(verify_field(s, field, nobody));
		free(field);
		sg_dkim_signer_free(&s);
	}
	unlink(rsa);
	unlink(ed);
	free(rsa);
	free(ed);
}

static void test_ed25519_deterministic(void **state)
{
	char *ed = write_file("ed2.pem", rfc8463_key);
	struct sg_dkim_signer *s;
	const char *err;
	assert_int_equal(sg_dkim_signer_load(&s, "football.example.com", "brisbane", ed, &err), 0);
	char *f1, *f2;
	assert_int_equal(sg_dkim_sign_at(s, (const uint8_t *)rfc8463_msg, strlen(rfc8463_msg),
	                                 1528637909, &f1, &err),
	                 0);
	assert_int_equal(sg_dkim_sign_at(s, (const uint8_t *)rfc8463_msg, strlen(rfc8463_msg),
	                                 1528637909, &f2, &err),
	                 0);
	assert_string_equal(f1, f2);
	char *bh = tag_value(f1, "bh");
	assert_string_equal(bh, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
	free(bh);
	char *h = tag_value(f1, "h");
	assert_string_equal(h, "from:from:to:subject:date:message-id");
	free(h);
	free(f1);
	free(f2);
	sg_dkim_signer_free(&s);
	unlink(ed);
	free(ed);
}

static void test_refused_messages(void **state)
{
	char *ed = write_file("ed3.pem", rfc8463_key);
	struct sg_dkim_signer *s;
	const char *err = NULL;
	char *field = (char *)"untouched";
	assert_int_equal(sg_dkim_signer_load(&s, "example.org", "sel", ed, &err), 0);
	const char *nofrom = "To: b@example.org\r\nSubject: x\r\n\r\nbody\r\n";
	assert_int_equal(sg_dkim_sign(s, (const uint8_t *)nofrom, strlen(nofrom), &field, &err),
	                 -1);
	assert_null(field);
	assert_non_null(strstr(err, "no From"));
	const char *twofrom = "From: a@example.org\r\nFrom: c@example.org\r\n\r\nbody\r\n";
	assert_int_equal(sg_dkim_sign(s, (const uint8_t *)twofrom, strlen(twofrom), &field, &err),
	                 -1);
	assert_non_null(strstr(err, "more than one From"));
	/* a From in the body is no From */
	const char *bodyfrom = "Subject: x\r\n\r\nFrom: a@example.org\r\n";
	assert_int_equal(sg_dkim_sign(s, (const uint8_t *)bodyfrom, strlen(bodyfrom), &field, &err),
	                 -1);

	/* header count cap */
	struct sg_buf m;
	sg_buf_init(&m, 64 << 20);
	sg_buf_append_str(&m, "From: a@example.org\r\n");
	for (int i = 0; i < SG_DKIM_MAX_HEADERS; i++)
		sg_buf_printf(&m, "X-H%d: v\r\n", i);
	sg_buf_append_str(&m, "\r\nbody\r\n");
	assert_int_equal(sg_dkim_sign(s, m.data, m.len, &field, &err), -1);
	assert_non_null(strstr(err, "header fields"));
	/* exactly at the cap is fine */
	sg_buf_reset(&m);
	sg_buf_append_str(&m, "From: a@example.org\r\n");
	for (int i = 0; i < SG_DKIM_MAX_HEADERS - 1; i++)
		sg_buf_printf(&m, "X-H%d: v\r\n", i);
	sg_buf_append_str(&m, "\r\nbody\r\n");
	assert_int_equal(sg_dkim_sign(s, m.data, m.len, &field, &err), 0);
	free(field);
	/* header size cap: one huge folded field */
	sg_buf_reset(&m);
	sg_buf_append_str(&m, "From: a@example.org\r\nX-Big: v");
	for (int i = 0; i < SG_DKIM_MAX_HEADER_BYTES / 60 + 1; i++)
		sg_buf_append_str(
		    &m, "\r\n\t0123456789012345678901234567890123456789012345678901234567");
	sg_buf_append_str(&m, "\r\n\r\nbody\r\n");
	assert_int_equal(sg_dkim_sign(s, m.data, m.len, &field, &err), -1);
	assert_non_null(strstr(err, "header section"));
	/* a large body is fine (streamed) */
	sg_buf_reset(&m);
	sg_buf_append_str(&m, "From: a@example.org\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		sg_buf_append_str(&m, "0123456789012345678901234567890123456789 \t \r\n");
	assert_int_equal(sg_dkim_sign(s, m.data, m.len, &field, &err), 0);
	assert_true(verify_field(s, field, sg_buf_str(&m)));
	free(field);
	sg_buf_free(&m);
	sg_dkim_signer_free(&s);
	unlink(ed);
	free(ed);
}

static void test_load_refusals(void **state)
{
	struct sg_dkim_signer *s = (struct sg_dkim_signer *)&s;
	const char *err = NULL;
	char *ed = write_file("ed4.pem", rfc8463_key);
	assert_int_equal(
	    sg_dkim_signer_load(&s, "example.org", "sel", "/nonexistent/key.pem", &err), -1);
	assert_null(s);
	assert_non_null(strstr(err, "cannot open"));
	assert_int_equal(sg_dkim_signer_load(&s, "example.org", "sel", tmpdir, &err), -1);
	assert_non_null(strstr(err, "not a regular file"));
	char *junk = write_file("junk.pem", "this is not a key\n");
	assert_int_equal(sg_dkim_signer_load(&s, "example.org", "sel", junk, &err), -1);
	assert_non_null(strstr(err, "no PEM private key"));
	/* an encrypted key is refused, never prompted for */
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	char *enc = tmp_path("enc.pem");
	FILE *f = fopen(enc, "w");
	assert_int_equal(
	    PEM_write_PrivateKey(f, k, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(k);
	assert_int_equal(sg_dkim_signer_load(&s, "example.org", "sel", enc, &err), -1);
	/* an X25519 key is neither RSA nor Ed25519 */
	k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	char *x = tmp_path("x25519.pem");
	f = fopen(x, "w");
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(k);
	assert_int_equal(sg_dkim_signer_load(&s, "example.org", "sel", x, &err), -1);
	assert_non_null(strstr(err, "neither RSA nor Ed25519"));
	/* RSA below 1024 bits (RFC 8301) */
	char *small = rsa_keyfile("small.pem", 768);
	assert_int_equal(sg_dkim_signer_load(&s, "example.org", "sel", small, &err), -1);
	assert_non_null(strstr(err, "768 bits"));
	/* names that could inject tags or are not domain names */
	static const char *const bad[] = {"",   "example.org; x=1", "a..b",        ".a",
	                                  "a.", "ex ample",         "exämple.org", "a\r\nb"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sg_dkim_signer_load(&s, bad[i], "sel", ed, &err), -1);
		assert_non_null(strstr(err, "invalid DKIM domain"));
		assert_int_equal(sg_dkim_signer_load(&s, "example.org", bad[i], ed, &err), -1);
		assert_non_null(strstr(err, "invalid DKIM selector"));
	}
	assert_true(sg_dkim_valid_name("xn--exmple-cua.org"));
	assert_true(sg_dkim_valid_name("2026-01.mail"));
	unlink(junk);
	unlink(enc);
	unlink(x);
	unlink(small);
	unlink(ed);
	free(junk);
	free(enc);
	free(x);
	free(small);
	free(ed);
}

static int setup(void **state)
{
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	return rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc6376_examples),  cmocka_unit_test(test_body_edge_cases),
	    cmocka_unit_test(test_header_edge_cases), cmocka_unit_test(test_rfc8463_vector),
	    cmocka_unit_test(test_sign_and_verify),   cmocka_unit_test(test_ed25519_deterministic),
	    cmocka_unit_test(test_refused_messages),  cmocka_unit_test(test_load_refusals),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
