/*
 * fuzz_dsn: DSN composition (src/relay/dsn.h) from hostile fields.
 * Input: data[0] flags (bit 0: RET=HDRS; bits 1-2: 1 to 4 recipients, each
 * a copy of the one recipient below), then NUL-separated fields:
 * reporting_mta, envid, from_addr, postmaster, orcpt, final_rcpt, action,
 * status, remote_mta, diagnostic; everything after the tenth NUL is the
 * original message. A missing optional field is NULL; a missing required
 * one is "". Checked besides ASan/UBSan/leaks: 0 with output, or -1 with an
 * error and no output; on success every line ends with CRLF, no line is
 * longer than 998 octets outside the original, the top-level header has only
 * the fields we write, From and To hold one mailbox each, the boundary delimits exactly three parts
 * and closes once at the end, and every field line of the delivery-status part is one of RFC 3464's
 * (no input starts a line of its own).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "relay/dsn.h"

static bool known_status_field(const char *l, size_t n)
{
	static const char *const names[] = {"Reporting-MTA: ",   "Original-Envelope-Id: ",
	                                    "Arrival-Date: ",    "Original-Recipient: ",
	                                    "Final-Recipient: ", "Action: ",
	                                    "Status: ",          "Remote-MTA: ",
	                                    "Diagnostic-Code: ", "Last-Attempt-Date: ",
	                                    "Will-Retry-Until: "};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (n >= strlen(names[i]) && strncmp(l, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

static bool known_top_field(const char *l, size_t n)
{
	static const char *const names[] = {
	    "From: ",           "To: ",           "Subject: ",
	    "Date: ",           "Message-ID: ",   "MIME-Version: ",
	    "Auto-Submitted: ", "Content-Type: ", "Content-Transfer-Encoding: ",
	    "\tboundary=\""};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (n >= strlen(names[i]) && strncmp(l, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

static void check(const char *out, size_t len, size_t n_rcpts)
{
	if (strlen(out) != len)
		sg_fuzz_fail("dsn: NUL inside the output");
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			sg_fuzz_fail("dsn: bare LF at %zu", i);
		if (out[i] == '\r' && (i + 1 >= len || out[i + 1] != '\n'))
			sg_fuzz_fail("dsn: bare CR at %zu", i);
	}
	/* the top-level header */
	const char *p = out, *hend = strstr(out, "\r\n\r\n");
	if (hend == NULL)
		sg_fuzz_fail("dsn: no header end");
	while (p < hend + 2) {
		const char *e = strstr(p, "\r\n");
		if (!known_top_field(p, (size_t)(e - p)))
			sg_fuzz_fail("dsn: unexpected header line \"%.40s\"", p);
		/* From and To: one mailbox, no group, whatever the addresses hold */
		if (strncmp(p, "From: ", 6) == 0 || strncmp(p, "To: ", 4) == 0) {
			const char *v = strchr(p, ':') + 1;
			size_t lt = 0, gt = 0, other = 0;
			for (const char *q = v; q < e; q++) {
				lt += *q == '<';
				gt += *q == '>';
				other += *q == ',' || *q == ':' || *q == ';' || *q == '"';
			}
			if (lt != 1 || gt != 1 || other != 0 || e[-1] != '>')
				sg_fuzz_fail("dsn: not one mailbox: \"%.*s\"", (int)(e - p), p);
		}
		p = e + 2;
	}
	/* the Content-Type continuation line (input never starts a line) */
	const char *bp = strstr(out, "\r\n\tboundary=\"");
	if (bp == NULL || bp > hend)
		sg_fuzz_fail("dsn: no boundary");
	bp += 13;
	const char *bq = strchr(bp, '"');
	char delim[128], close[128];
	size_t bl = (size_t)(bq - bp);
	if (bl == 0 || bl > 70)
		sg_fuzz_fail("dsn: boundary length %zu", bl);
	snprintf(delim, sizeof(delim), "\r\n--%.*s\r\n", (int)bl, bp);
	snprintf(close, sizeof(close), "\r\n--%.*s--\r\n", (int)bl, bp);
	const char *parts[4];
	size_t np = 0;
	for (const char *q = strstr(out, delim); q != NULL; q = strstr(q + 1, delim)) {
		if (np == 3)
			sg_fuzz_fail("dsn: more than three parts");
		parts[np++] = q;
	}
	const char *c = strstr(out, close);
	if (np != 3 || c == NULL || c + strlen(close) != out + len)
		sg_fuzz_fail("dsn: %zu parts, close %s", np, c == NULL ? "missing" : "misplaced");
	parts[3] = c;
	/* lines outside the original are short (RFC 5322 2.1.1) */
	for (p = out; p < parts[2];) {
		const char *e = strstr(p, "\r\n");
		if (e - p > 998)
			sg_fuzz_fail("dsn: line of %td octets", e - p);
		p = e + 2;
	}
	/* the delivery-status part: its header, then only known fields */
	const char *s = strstr(parts[1] + 2, "\r\n\r\n");
	if (s == NULL || s > parts[2])
		sg_fuzz_fail("dsn: status part without a body");
	size_t actions = 0;
	for (p = s + 4; p < parts[2];) {
		const char *e = strstr(p, "\r\n");
		if (e > p && !known_status_field(p, (size_t)(e - p)))
			sg_fuzz_fail("dsn: unexpected status line \"%.40s\"", p);
		if (strncmp(p, "Action: ", 8) == 0)
			actions++;
		p = e + 2;
	}
	if (actions != n_rcpts)
		sg_fuzz_fail("dsn: %zu Action lines for %zu recipients", actions, n_rcpts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	/* split the rest at the first ten NULs; copies are NUL-terminated */
	char *f[10] = {0};
	size_t off = 1, nf = 0;
	while (nf < 10 && off <= size) {
		const uint8_t *z = off < size ? memchr(data + off, 0, size - off) : NULL;
		if (z == NULL)
			break;
		size_t n = (size_t)(z - (data + off));
		f[nf] = malloc(n + 1);
		memcpy(f[nf], data + off, n);
		f[nf][n] = '\0';
		nf++;
		off += n + 1;
	}
	size_t orig_len = nf == 10 ? size - off : 0;
	uint8_t *orig = malloc(orig_len > 0 ? orig_len : 1);
	if (orig_len > 0)
		memcpy(orig, data + off, orig_len);

	struct sg_dsn_rcpt r[4];
	size_t n_rcpts = 1 + ((flags >> 1) & 3);
	for (size_t i = 0; i < n_rcpts; i++)
		r[i] = (struct sg_dsn_rcpt){
		    .orcpt = f[4],
		    .final_rcpt = f[5] != NULL ? f[5] : "",
		    .action = f[6] != NULL ? f[6] : "failed",
		    .status = f[7] != NULL ? f[7] : "5.0.0",
		    .remote_mta = f[8],
		    .diagnostic = f[9],
		    .last_attempt = 1700000000 + (int64_t)i,
		    .will_retry_until = 1700400000,
		};
	struct sg_dsn_info info = {
	    .reporting_mta = f[0] != NULL ? f[0] : "",
	    .envid = f[1],
	    .from_addr = f[2] != NULL ? f[2] : "x@example.org",
	    .postmaster = f[3] != NULL ? f[3] : "",
	    .arrival = 1700000000,
	    .ret_hdrs = flags & 1,
	    .rcpts = r,
	    .n_rcpts = n_rcpts,
	};
	char *out = NULL;
	size_t len = 0;
	const char *err = NULL;
	int rc = sg_dsn_build(&info, orig, orig_len, &out, &len, &err);
	if (rc == 0) {
		if (out == NULL)
			sg_fuzz_fail("dsn: 0 without output");
		check(out, len, n_rcpts);
	} else if (rc != -1 || out != NULL || err == NULL) {
		sg_fuzz_fail("dsn: %d with output %p, error %p", rc, (void *)out,
		             (const void *)err);
	}
	free(out);
	free(orig);
	for (size_t i = 0; i < nf; i++)
		free(f[i]);
	return 0;
}
