/*
 * fuzz_dkim: DKIM signing (src/relay/dkim.h): the header-section parser, the
 * relaxed canonicalisations and the signature field writer.
 * Input: data[0] flags (bit 0: sign with a 1024-bit RSA key instead of the
 * RFC 8463 Ed25519 key; bit 1: skip signing, canonicalisation only), then the
 * message. Checked besides ASan/UBSan/leaks:
 *  - sign: 0 with a field, or -1 with an error and no field; the field starts
 *    "DKIM-Signature: v=1; a=", every line ends CRLF and has at most 78
 *    octets, continuation lines start with a TAB, h= starts with "from", and
 *    the signature is the same when the message is signed again (Ed25519 is
 *    deterministic; RSA PKCS#1 v1.5 too);
 *  - canon_body (the whole input as a body): no WSP before a line end, no WSP
 *    run, no empty line at the end, a CRLF at the end unless empty, no bare
 *    LF, and idempotent;
 *  - canon_header (the input as one field, when its name is on its first
 *    line): "name:value" CRLF with a lower-case name, no line end, no WSP run
 *    nor WSP at either end of the value, and idempotent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/buf.h"
#include "fuzz_common.h"
#include "relay/dkim.h"

static struct sg_dkim_signer *ed, *rsa;

static const char ed_key[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
                             "-----END PRIVATE KEY-----\n";

static struct sg_dkim_signer *load(const char *pem_text, EVP_PKEY *k)
{
	char path[] = "/tmp/sg-fuzz-dkim-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		sg_fuzz_fail("mkstemp");
	FILE *f = fdopen(fd, "w");
	if (pem_text != NULL)
		fputs(pem_text, f);
	else if (PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1)
		sg_fuzz_fail("PEM_write_PrivateKey");
	fclose(f);
	struct sg_dkim_signer *s;
	const char *err = NULL;
	if (sg_dkim_signer_load(&s, "example.org", "fuzz", path, &err) < 0)
		sg_fuzz_fail("signer_load: %s", err);
	unlink(path);
	return s;
}

static void cleanup(void)
{
	sg_dkim_signer_free(&ed);
	sg_dkim_signer_free(&rsa);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	ed = load(ed_key, NULL);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	if (k == NULL)
		sg_fuzz_fail("RSA keygen");
	rsa = load(NULL, k);
	EVP_PKEY_free(k);
	atexit(cleanup);
	return 0;
}

static void sink_buf(void *ctx, const uint8_t *p, size_t n)
{
	if (sg_buf_append(ctx, p, n) < 0)
		sg_fuzz_fail("canonical form larger than its buffer");
}

static bool wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static void check_field(const char *f)
{
	if (strncmp(f, "DKIM-Signature: v=1; a=", 23) != 0)
		sg_fuzz_fail("sign: field starts \"%.30s\"", f);
	if (strstr(f, "h=from:") == NULL && strstr(f, "h=from;") == NULL)
		sg_fuzz_fail("sign: h= does not start with from");
	const char *line = f;
	while (*line != '\0') {
		const char *crlf = strstr(line, "\r\n");
		if (crlf == NULL)
			sg_fuzz_fail("sign: field does not end with CRLF");
		if (crlf - line > 78)
			sg_fuzz_fail("sign: line of %td octets", crlf - line);
		if (memchr(line, '\n', (size_t)(crlf - line)) != NULL ||
		    memchr(line, '\r', (size_t)(crlf - line)) != NULL)
			sg_fuzz_fail("sign: bare CR or LF in the field");
		line = crlf + 2;
		if (*line != '\0' && *line != '\t')
			sg_fuzz_fail("sign: continuation line without TAB");
	}
}

static void check_body(const uint8_t *in, size_t n)
{
	struct sg_buf a, b;
	sg_buf_init(&a, 4 * n + 16);
	sg_buf_init(&b, 4 * n + 16);
	sg_dkim_canon_body(in, n, sink_buf, &a);
	const uint8_t *p = a.data;
	for (size_t i = 0; i < a.len; i++) {
		if (p[i] == '\t')
			sg_fuzz_fail("body: TAB kept");
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			sg_fuzz_fail("body: bare LF");
		if (p[i] == ' ' && i + 1 < a.len && (p[i + 1] == ' ' || p[i + 1] == '\r') &&
		    !(p[i + 1] == '\r' && (i + 2 >= a.len || p[i + 2] != '\n')))
			sg_fuzz_fail("body: WSP run or WSP before a line end at %zu", i);
	}
	if (a.len > 0 && (a.len < 2 || p[a.len - 2] != '\r' || p[a.len - 1] != '\n'))
		sg_fuzz_fail("body: no final CRLF");
	if (a.len >= 4 && memcmp(p + a.len - 4, "\r\n\r\n", 4) == 0)
		sg_fuzz_fail("body: empty line at the end");
	if (a.len == 2)
		sg_fuzz_fail("body: a lone CRLF (an empty body is empty)");
	sg_dkim_canon_body(a.data, a.len, sink_buf, &b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len) != 0))
		sg_fuzz_fail("body: not idempotent");
	sg_buf_free(&a);
	sg_buf_free(&b);
}

static void check_header(const uint8_t *in, size_t n)
{
	const uint8_t *colon = memchr(in, ':', n);
	if (colon == NULL)
		return;
	for (const uint8_t *q = in; q < colon; q++)
		if (*q == '\r' || *q == '\n')
			return; /* never a field from parse_headers */
	struct sg_buf a, b;
	sg_buf_init(&a, n + 16);
	sg_buf_init(&b, n + 16);
	sg_dkim_canon_header(in, n, sink_buf, &a);
	if (a.len < 3 || a.data[a.len - 2] != '\r' || a.data[a.len - 1] != '\n')
		sg_fuzz_fail("header: no final CRLF");
	const uint8_t *c = memchr(a.data, ':', a.len);
	if (c == NULL)
		sg_fuzz_fail("header: no colon");
	for (const uint8_t *q = a.data; q < c; q++)
		if (*q >= 'A' && *q <= 'Z')
			sg_fuzz_fail("header: upper-case name");
	const uint8_t *v = c + 1, *end = a.data + a.len - 2;
	if (end > v && (wsp(v[0]) || wsp(end[-1])))
		sg_fuzz_fail("header: WSP at an end of the value");
	for (const uint8_t *q = v; q < end; q++) {
		if (*q == '\t' || *q == '\n' || (*q == ' ' && q + 1 < end && q[1] == ' '))
			sg_fuzz_fail("header: TAB, LF or WSP run in the value");
		if (*q == '\r' && q + 1 < end && q[1] == '\n')
			sg_fuzz_fail("header: CRLF in the value");
	}
	sg_dkim_canon_header(a.data, a.len - 2, sink_buf, &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		sg_fuzz_fail("header: not idempotent");
	sg_buf_free(&a);
	sg_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	size_t n = size - 1;
	/* an exact-size copy, so that a read past the end is caught */
	uint8_t *msg = malloc(n > 0 ? n : 1);
	memcpy(msg, data + 1, n);
	if (!(flags & 2)) {
		const struct sg_dkim_signer *s = (flags & 1) ? rsa : ed;
		char *f1 = NULL, *f2 = NULL;
		const char *err = NULL;
		int r = sg_dkim_sign_at(s, msg, n, 1700000000, &f1, &err);
		if (r == 0) {
			if (f1 == NULL)
				sg_fuzz_fail("sign: 0 without a field");
			check_field(f1);
			if (sg_dkim_sign_at(s, msg, n, 1700000000, &f2, &err) != 0 ||
			    strcmp(f1, f2) != 0)
				sg_fuzz_fail("sign: a second signature differs");
		} else if (r != -1 || f1 != NULL || err == NULL) {
			sg_fuzz_fail("sign: %d with field %p, error %p", r, (void *)f1,
			             (const void *)err);
		}
		free(f1);
		free(f2);
	}
	check_body(msg, n);
	check_header(msg, n);
	free(msg);
	return 0;
}
