/*
 * dsn.c: delivery status notifications (RFC 3464, RFC 3461, RFC 6533).
 * See dsn.h for the contract.
 *
 * Every string from the caller passes through one of three writers before
 * it reaches the output: put_text (free text: control octets become a
 * space, invalid UTF-8 a '?', cut at SG_DSN_MAX_FIELD), put_addr (an
 * address: the same, as a raw address or RFC 6533 utf-8-addr-unitext) and
 * put_host (a host name: letters, digits, '-', '.', '[', ']', ':' only).
 * None of them can emit CR or LF, so no input can start a header field, a
 * MIME part or a boundary.
 */
#include "relay/dsn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/secret.h"
#include "core/util.h"

/* Longest header section returned for RET=HDRS or an oversized original. */
#define SG_DSN_MAX_ORIG_HDRS (64 * 1024)

/* ---- octet classes ---- */

static bool has_8bit(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

static bool str_8bit(const char *s)
{
	return s != NULL && has_8bit((const uint8_t *)s, strlen(s));
}

/* Length of the valid UTF-8 sequence (2 to 4 octets) at p, or 0 (RFC 3629
 * 4: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	size_t len;
	uint32_t min, cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		min = 0x80;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		min = 0x800;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		min = 0x10000;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* ---- writers ---- */

/* Free text. Control octets (CR, LF, NUL, TAB, DEL...) become a space;
 * 8-bit octets are kept when utf8 and they form valid UTF-8, else '?'. */
static void put_text(struct sg_buf *b, const char *s, bool utf8)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s), out = 0;
	for (size_t i = 0; i < n && out < SG_DSN_MAX_FIELD;) {
		uint8_t c = p[i];
		if (c < 0x20 || c == 0x7f) {
			sg_buf_append(b, " ", 1);
			i++;
			out++;
		} else if (c < 0x80) {
			sg_buf_append(b, &c, 1);
			i++;
			out++;
		} else {
			size_t k = utf8 ? utf8_seq(p + i, n - i) : 0;
			if (k > 0) {
				sg_buf_append(b, p + i, k);
				i += k;
				out += k;
			} else {
				sg_buf_append(b, "?", 1);
				i++;
				out++;
			}
		}
	}
}

/* RFC 5322 3.2.3 atext, '.' and '@': what an angle-addr of the From and
 * To fields may hold here. */
static bool addr_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~.@", c) != NULL);
}

/* An address as it is: control octets become '?'. In an angle-addr of the
 * From and To fields (in_angle) every ASCII octet that is not atext, '.' or
 * '@' becomes '?' too, so that an address cannot close the brackets, start
 * a group or add a mailbox (a quoted local part loses its quotes there; the
 * envelope, not these fields, decides where the report goes). */
static void put_addr_raw(struct sg_buf *b, const char *s, bool utf8, bool in_angle)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s), out = 0;
	for (size_t i = 0; i < n && out < SG_DSN_MAX_FIELD;) {
		uint8_t c = p[i];
		size_t k = 1;
		if (c < 0x20 || c == 0x7f || (in_angle && c < 0x80 && !addr_char(c)))
			sg_buf_append(b, "?", 1);
		else if (c < 0x80)
			sg_buf_append(b, &c, 1);
		else if (utf8 && (k = utf8_seq(p + i, n - i)) > 0)
			sg_buf_append(b, p + i, k);
		else {
			k = 1;
			sg_buf_append(b, "?", 1);
		}
		i += k;
		out += k;
	}
}

/* RFC 6533 3: utf-8-addr-unitext. QCHAR (printable ASCII except '\', '+',
 * '=') and valid UTF-8 as they are; everything else as \x{HEX}; an invalid
 * 8-bit octet as \x{FFFD}. */
static void put_addr_unitext(struct sg_buf *b, const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s), out = 0;
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		size_t k = 1;
		char esc[16];
		const void *piece = esc;
		size_t plen;
		if (c > 0x20 && c < 0x7f && c != '\\' && c != '+' && c != '=') {
			piece = p + i;
			plen = 1;
		} else if (c < 0x80) {
			plen = (size_t)snprintf(esc, sizeof(esc), "\\x{%X}", c);
		} else if ((k = utf8_seq(p + i, n - i)) > 0) {
			piece = p + i;
			plen = k;
		} else {
			k = 1;
			plen = (size_t)snprintf(esc, sizeof(esc), "\\x{FFFD}");
		}
		/* the output, escapes included, is cut at SG_DSN_MAX_FIELD */
		if (out + plen > SG_DSN_MAX_FIELD)
			break;
		sg_buf_append(b, piece, plen);
		out += plen;
		i += k;
	}
}

/* "rfc822;addr" for an ASCII address, "utf-8;unitext" otherwise
 * (RFC 3464 2.3.2, RFC 6533 3). */
static void put_typed_addr(struct sg_buf *b, const char *addr)
{
	if (str_8bit(addr)) {
		sg_buf_append_str(b, "utf-8;");
		put_addr_unitext(b, addr);
	} else {
		sg_buf_append_str(b, "rfc822;");
		put_addr_raw(b, addr, false, false);
	}
}

/* A host name for Reporting-MTA, Remote-MTA and the Message-ID: letters,
 * digits and "-._[]:" (an address literal); anything else is dropped. */
static void put_host(struct sg_buf *b, const char *s)
{
	size_t w = 0;
	for (const char *p = s; *p != '\0' && w < 255; p++) {
		char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '[' || c == ']' || c == ':') {
			sg_buf_append(b, &c, 1);
			w++;
		}
	}
	if (w == 0)
		sg_buf_append_str(b, "localhost");
}

/* RFC 5322 3.3 date-time, always in UTC. */
static void put_date(struct sg_buf *b, int64_t t)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;
	if (t < 0 || gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	sg_buf_printf(b, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
	              months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- validation ---- */

static bool valid_action(const char *a)
{
	static const char *const actions[] = {"failed", "delayed", "delivered", "relayed",
	                                      "expanded"};
	if (a == NULL)
		return false;
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (strcmp(a, actions[i]) == 0)
			return true;
	return false;
}

/* RFC 3463 3.1: class "." subject "." detail; class 2, 4 or 5; subject
 * and detail 1 to 3 digits. */
static bool valid_status(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	const char *p = s + 2;
	for (int part = 0; part < 2; part++) {
		int digits = 0;
		while (*p >= '0' && *p <= '9') {
			p++;
			if (++digits > 3)
				return false;
		}
		if (digits == 0)
			return false;
		if (part == 0 && *p++ != '.')
			return false;
	}
	return *p == '\0';
}

/* ---- the original ---- */

/* Length of the header section of m (up to and including the line end of
 * its last line, without the empty line), cut at a line end at most max
 * octets in. */
static size_t header_section_len(const uint8_t *m, size_t n, size_t max)
{
	size_t pos = 0, last_good = 0;
	while (pos < n) {
		const uint8_t *nl = memchr(m + pos, '\n', n - pos);
		size_t next = nl != NULL ? (size_t)(nl - m) + 1 : n;
		size_t content = next - pos;
		if (nl != NULL)
			content -= (content >= 2 && m[next - 2] == '\r') ? 2 : 1;
		if (content == 0 || next > max)
			break;
		pos = next;
		last_good = pos;
	}
	return last_good;
}

/* Copy with every line end made CRLF (a bare LF or bare CR too) and NUL
 * octets left out (RFC 5322 2.3 allows none; the report is a C string); the
 * copy always ends with CRLF unless it is empty. */
static void put_crlf_text(struct sg_buf *b, const uint8_t *p, size_t n)
{
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\0') {
			sg_buf_append(b, p + run, i - run);
			run = i + 1;
			continue;
		}
		if (p[i] != '\r' && p[i] != '\n')
			continue;
		sg_buf_append(b, p + run, i - run);
		sg_buf_append(b, "\r\n", 2);
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		run = i + 1;
	}
	sg_buf_append(b, p + run, n - run);
	if (n > 0 && p[n - 1] != '\n' && p[n - 1] != '\r')
		sg_buf_append(b, "\r\n", 2);
}

/* ---- composition ---- */

static const char *subject_for(const struct sg_dsn_info *info)
{
	bool failed = false, delayed = false;
	for (size_t i = 0; i < info->n_rcpts; i++) {
		failed |= strcmp(info->rcpts[i].action, "failed") == 0;
		delayed |= strcmp(info->rcpts[i].action, "delayed") == 0;
	}
	if (failed)
		return "Undelivered Mail Returned to Sender";
	if (delayed)
		return "Delayed Mail (still being retried)";
	return "Successful Mail Delivery Report";
}

static void put_human(struct sg_buf *b, const struct sg_dsn_info *info, bool utf8, bool truncated)
{
	sg_buf_append_str(b, "This is the mail system at host ");
	put_host(b, info->reporting_mta);
	sg_buf_append_str(b, ".\r\n\r\n");
	for (size_t i = 0; i < info->n_rcpts; i++) {
		const struct sg_dsn_rcpt *r = &info->rcpts[i];
		const char *what =
		    strcmp(r->action, "failed") == 0      ? "could not be delivered to"
		    : strcmp(r->action, "delayed") == 0   ? "has not yet been delivered to"
		    : strcmp(r->action, "delivered") == 0 ? "was delivered to"
		    : strcmp(r->action, "relayed") == 0 ? "was relayed, without further notice, to"
		                                        : "was delivered to a list including";
		sg_buf_append_str(b, "Your message ");
		sg_buf_append_str(b, what);
		sg_buf_append_str(b, " <");
		put_addr_raw(b, r->final_rcpt, utf8, false);
		sg_buf_printf(b, "> (status %s).\r\n", r->status);
		if (r->diagnostic != NULL) {
			sg_buf_append_str(b, "    ");
			put_text(b, r->diagnostic, utf8);
			sg_buf_append_str(b, "\r\n");
		}
		if (strcmp(r->action, "delayed") == 0 && r->will_retry_until > 0) {
			sg_buf_append_str(b, "    The mail system will keep trying until ");
			put_date(b, r->will_retry_until);
			sg_buf_append_str(b, ".\r\n");
		}
	}
	sg_buf_append_str(b, "\r\n");
	if (truncated)
		sg_buf_printf(b,
		              "The message was larger than %d KiB: only its header section is "
		              "returned.\r\n",
		              SG_DSN_MAX_ORIG / 1024);
	else if (info->ret_hdrs)
		sg_buf_append_str(b, "As requested (RET=HDRS), only the header section of the "
		                     "message is returned.\r\n");
	else
		sg_buf_append_str(b, "The message is returned below.\r\n");
}

/* RFC 3464 2.2 and 2.3: per-message fields, then one block per recipient. */
static void put_status(struct sg_buf *b, const struct sg_dsn_info *info, bool utf8)
{
	sg_buf_append_str(b, "Reporting-MTA: dns; ");
	put_host(b, info->reporting_mta);
	sg_buf_append_str(b, "\r\n");
	if (info->envid != NULL && info->envid[0] != '\0') {
		sg_buf_append_str(b, "Original-Envelope-Id: ");
		put_text(b, info->envid, utf8);
		sg_buf_append_str(b, "\r\n");
	}
	if (info->arrival > 0) {
		sg_buf_append_str(b, "Arrival-Date: ");
		put_date(b, info->arrival);
		sg_buf_append_str(b, "\r\n");
	}
	for (size_t i = 0; i < info->n_rcpts; i++) {
		const struct sg_dsn_rcpt *r = &info->rcpts[i];
		sg_buf_append_str(b, "\r\n");
		if (r->orcpt != NULL && r->orcpt[0] != '\0') {
			/* RFC 3461 6.3: the ORCPT address type and address. */
			const char *o = r->orcpt;
			const char *semi = strchr(o, ';');
			bool typed = semi != NULL && semi > o && semi - o <= 32;
			for (const char *p = o; typed && p < semi; p++)
				typed = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				        (*p >= '0' && *p <= '9') || *p == '-';
			sg_buf_append_str(b, "Original-Recipient: ");
			if (typed && !str_8bit(semi + 1)) {
				sg_buf_append(b, o, (size_t)(semi - o) + 1);
				put_addr_raw(b, semi + 1, false, false);
			} else {
				put_typed_addr(b, typed ? semi + 1 : o);
			}
			sg_buf_append_str(b, "\r\n");
		}
		sg_buf_append_str(b, "Final-Recipient: ");
		put_typed_addr(b, r->final_rcpt);
		sg_buf_printf(b, "\r\nAction: %s\r\nStatus: %s\r\n", r->action, r->status);
		if (r->remote_mta != NULL && r->remote_mta[0] != '\0') {
			sg_buf_append_str(b, "Remote-MTA: dns; ");
			put_host(b, r->remote_mta);
			sg_buf_append_str(b, "\r\n");
		}
		if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
			/* diagnostic-type ";" *text (RFC 3464 2.3.6) */
			const char *semi = strchr(r->diagnostic, ';');
			bool typed =
			    semi != NULL && semi > r->diagnostic && semi - r->diagnostic <= 32;
			for (const char *p = r->diagnostic; typed && p < semi; p++)
				typed = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				        (*p >= '0' && *p <= '9') || *p == '-';
			sg_buf_append_str(b,
			                  typed ? "Diagnostic-Code: " : "Diagnostic-Code: smtp; ");
			put_text(b, r->diagnostic, utf8);
			sg_buf_append_str(b, "\r\n");
		}
		if (r->last_attempt > 0) {
			sg_buf_append_str(b, "Last-Attempt-Date: ");
			put_date(b, r->last_attempt);
			sg_buf_append_str(b, "\r\n");
		}
		if (strcmp(r->action, "delayed") == 0 && r->will_retry_until > 0) {
			sg_buf_append_str(b, "Will-Retry-Until: ");
			put_date(b, r->will_retry_until);
			sg_buf_append_str(b, "\r\n");
		}
	}
}

int sg_dsn_build_ex(const struct sg_dsn_info *info, const uint8_t *orig, size_t orig_len,
                    char **out_r, size_t *out_len_r, struct sg_dsn_result *res,
                    const char **error_r)
{
	*out_r = NULL;
	*out_len_r = 0;
	if (info->reporting_mta == NULL || info->postmaster == NULL || info->from_addr == NULL) {
		sg_set_err(error_r, "DSN: reporting MTA, postmaster and sender are required");
		return -1;
	}
	if (info->from_addr[0] == '\0') {
		/* RFC 3461 6.2 / RFC 5321 6.1: never a bounce of a bounce. */
		sg_set_err(error_r, "DSN: the message had a null sender; no DSN is sent");
		return -1;
	}
	if (info->n_rcpts == 0 || info->n_rcpts > SG_DSN_MAX_RCPTS || info->rcpts == NULL) {
		sg_set_err(error_r, sg_errf("DSN: 1 to %d recipients needed", SG_DSN_MAX_RCPTS));
		return -1;
	}
	for (size_t i = 0; i < info->n_rcpts; i++) {
		const struct sg_dsn_rcpt *r = &info->rcpts[i];
		if (r->final_rcpt == NULL || !valid_action(r->action) || !valid_status(r->status)) {
			sg_set_err(
			    error_r,
			    sg_errf(
			        "DSN: recipient %zu needs an address, an action "
			        "(failed|delayed|delivered|relayed|expanded) and a status d.d.d",
			        i + 1));
			return -1;
		}
	}
	if (orig == NULL)
		orig_len = 0;

	/* What the original contributes. */
	size_t hdr_len = header_section_len(orig, orig_len, SG_DSN_MAX_ORIG_HDRS);
	bool truncated = orig_len > SG_DSN_MAX_ORIG;
	bool headers_only = info->ret_hdrs || truncated;
	/* 8-bit headers in what is attached: the cut header section, or all
	 * of the header section of a message attached whole */
	bool orig_hdr_8bit =
	    has_8bit(orig, headers_only ? hdr_len : header_section_len(orig, orig_len, orig_len));
	bool orig_8bit = headers_only ? orig_hdr_8bit : has_8bit(orig, orig_len);

	/* RFC 6533: any non-ASCII address or original header section makes
	 * this an internationalised DSN with the message/global* types. */
	bool utf8 = orig_hdr_8bit || str_8bit(info->from_addr) || str_8bit(info->postmaster);
	for (size_t i = 0; i < info->n_rcpts && !utf8; i++)
		utf8 = str_8bit(info->rcpts[i].final_rcpt) || str_8bit(info->rcpts[i].orcpt);

	/* A boundary that occurs nowhere in the original (RFC 2046 5.1.1). */
	char boundary[64];
	for (int tries = 0;; tries++) {
		uint8_t rnd[12];
		char hex[25];
		sg_random(rnd, sizeof(rnd));
		sg_hex(rnd, sizeof(rnd), hex);
		snprintf(boundary, sizeof(boundary), "=_sg-dsn-%s", hex);
		if (orig_len == 0 || memmem(orig, orig_len, boundary, strlen(boundary)) == NULL)
			break;
		if (tries == 8) {
			sg_set_err(error_r, "DSN: no usable MIME boundary");
			return -1;
		}
	}

	/* Every field is cut at SG_DSN_MAX_FIELD and there are at most
	 * SG_DSN_MAX_RCPTS recipients, so the report stays well below the
	 * buffer's cap (no append can fail half-way); its size is checked
	 * against SG_DSN_MAX_OUT at the end. */
	struct sg_buf b;
	sg_buf_init(&b, 4 * (size_t)SG_DSN_MAX_OUT);
	uint8_t rnd[12];
	char hex[25];
	sg_random(rnd, sizeof(rnd));
	sg_hex(rnd, sizeof(rnd), hex);
	int64_t now = sg_time();

	sg_buf_append_str(&b, "From: Mail Delivery System <");
	put_addr_raw(&b, info->postmaster, utf8, true);
	sg_buf_append_str(&b, ">\r\nTo: <");
	put_addr_raw(&b, info->from_addr, utf8, true);
	sg_buf_printf(&b, ">\r\nSubject: %s\r\nDate: ", subject_for(info));
	put_date(&b, now);
	sg_buf_printf(&b, "\r\nMessage-ID: <%s.%lld@", hex, (long long)now);
	put_host(&b, info->reporting_mta);
	sg_buf_append_str(&b, ">\r\nMIME-Version: 1.0\r\n"
	                      "Auto-Submitted: auto-replied\r\n");
	sg_buf_printf(&b,
	              "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	              "\tboundary=\"%s\"\r\n",
	              boundary);
	if (utf8 || orig_8bit)
		sg_buf_append_str(&b, "Content-Transfer-Encoding: 8bit\r\n");
	sg_buf_append_str(&b, "\r\nThis is a MIME-encapsulated message.\r\n");

	/* 1. human-readable (RFC 3462 / 6522 2: the first part) */
	sg_buf_printf(&b,
	              "\r\n--%s\r\nContent-Description: Notification\r\n"
	              "Content-Type: text/plain; charset=%s\r\n",
	              boundary, utf8 ? "utf-8" : "us-ascii");
	if (utf8)
		sg_buf_append_str(&b, "Content-Transfer-Encoding: 8bit\r\n");
	sg_buf_append_str(&b, "\r\n");
	put_human(&b, info, utf8, truncated);

	/* 2. machine-readable (RFC 3464 2.1, RFC 6533 6.2) */
	sg_buf_printf(&b,
	              "\r\n--%s\r\nContent-Description: Delivery report\r\n"
	              "Content-Type: message/%s\r\n",
	              boundary, utf8 ? "global-delivery-status" : "delivery-status");
	if (utf8)
		sg_buf_append_str(&b, "Content-Transfer-Encoding: 8bit\r\n");
	sg_buf_append_str(&b, "\r\n");
	put_status(&b, info, utf8);

	/* 3. the original (RFC 3462 / 6522 2, RFC 6533 6.3 and 6.4) */
	if (headers_only) {
		sg_buf_printf(&b,
		              "\r\n--%s\r\nContent-Description: Undelivered Message Headers\r\n"
		              "Content-Type: %s\r\n",
		              boundary,
		              orig_hdr_8bit ? "message/global-headers" : "text/rfc822-headers");
		if (orig_hdr_8bit)
			sg_buf_append_str(&b, "Content-Transfer-Encoding: 8bit\r\n");
		sg_buf_append_str(&b, "\r\n");
		put_crlf_text(&b, orig, hdr_len);
	} else {
		sg_buf_printf(&b,
		              "\r\n--%s\r\nContent-Description: Undelivered Message\r\n"
		              "Content-Type: %s\r\n",
		              boundary, orig_hdr_8bit ? "message/global" : "message/rfc822");
		if (orig_8bit)
			sg_buf_append_str(&b, "Content-Transfer-Encoding: 8bit\r\n");
		sg_buf_append_str(&b, "\r\n");
		put_crlf_text(&b, orig, orig_len);
	}
	if (sg_buf_printf(&b, "\r\n--%s--\r\n", boundary) < 0 || b.len > SG_DSN_MAX_OUT) {
		sg_buf_free(&b);
		sg_set_err(error_r, sg_errf("DSN: report larger than %d octets", SG_DSN_MAX_OUT));
		return -1;
	}
	if (res != NULL) {
		res->smtputf8 = utf8;
		res->body_8bit = utf8 || orig_8bit;
		res->truncated = truncated;
	}
	*out_len_r = b.len;
	*out_r = (char *)b.data;
	return 0;
}

int sg_dsn_build(const struct sg_dsn_info *info, const uint8_t *orig, size_t orig_len, char **out_r,
                 size_t *out_len_r, const char **error_r)
{
	return sg_dsn_build_ex(info, orig, orig_len, out_r, out_len_r, NULL, error_r);
}
