/*
 * dsn.h: composition of delivery status notifications (RFC 3464, with the
 * DSN extension's fields of RFC 3461 and the utf-8 types of RFC 6533).
 *
 * sg_dsn_build writes one complete RFC 5322 message with CRLF line ends:
 *   From: <postmaster>, To: <from_addr>, Subject, Date, a fresh Message-ID,
 *   MIME-Version, Auto-Submitted: auto-replied (RFC 3834),
 *   Content-Type: multipart/report; report-type=delivery-status, with
 *   1. text/plain: a human-readable explanation, one line per recipient;
 *   2. message/delivery-status (RFC 3464 2.2): Reporting-MTA, Original-
 *      Envelope-Id (from envid), Arrival-Date; then one block per recipient
 *      with Original-Recipient (orcpt, passed through), Final-Recipient,
 *      Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date and,
 *      for delayed, Will-Retry-Until;
 *   3. the original message as message/rfc822, or only its header section
 *      as text/rfc822-headers when ret_hdrs is set or when orig_len exceeds
 *      SG_DSN_MAX_ORIG (the text part says so). Its line ends are made
 *      CRLF and NUL octets are left out; nothing else is changed.
 * The caller sends it with a null envelope sender (MAIL FROM:<>), so a
 * bounce never bounces (RFC 5321 6.1, RFC 3464 2.4).
 *
 * Addresses: an ASCII address is written as "rfc822;addr"; one with non-
 * ASCII octets as "utf-8;addr" (RFC 6533 3), and the delivery-status part is
 * then message/global-delivery-status (RFC 6533 6) and an attached original
 * with 8-bit headers message/global (RFC 6532 3.7). orcpt and envid are the
 * ESMTP parameters already decoded from xtext (RFC 3461 4), as the queue
 * envelope keeps them; they are written to Original-Recipient (addr-type
 * kept, RFC 3461 6.3) and Original-Envelope-Id. An orcpt without
 * "addr-type;" is taken as an rfc822 address.
 *
 * The output is 7-bit unless the original or an address has 8-bit octets:
 * then send it with BODY=8BITMIME, and with SMTPUTF8 when from_addr or a
 * header of the original is not ASCII (sg_dsn_build_ex reports both).
 *
 * Every input string is untrusted: CR, LF, NUL and other control octets are
 * replaced by a space (or, in addresses and status fields, refused by
 * replacement) so that no input can start a header line or a MIME part.
 * action must be one of failed|delayed|delivered|relayed|expanded and status
 * "d.d.d" with a class of 2, 4 or 5 (RFC 3463): otherwise -1.
 *
 * 0 with *out_r (malloc'd, NUL-terminated) and *out_len_r, or -1 with
 * *error_r set (no recipient, invalid action/status, output above
 * SG_DSN_MAX_OUT).
 */
#ifndef SG_RELAY_DSN_H
#define SG_RELAY_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Above this size the original is returned as headers only. */
#define SG_DSN_MAX_ORIG (256 * 1024)
/* At most this many recipients in one report, and this much output. */
#define SG_DSN_MAX_RCPTS 1000
#define SG_DSN_MAX_OUT   (8 * 1024 * 1024)
/* Longest address, diagnostic and other text field kept; longer is cut. */
#define SG_DSN_MAX_FIELD 900

struct sg_dsn_rcpt {
	const char *orcpt;        /* may be NULL; the ORCPT parameter decoded from
	                           * xtext: "addr-type;address" (RFC 3461 4.2) */
	const char *final_rcpt;   /* the address we tried */
	const char *action;       /* failed|delayed|delivered|relayed|expanded */
	const char *status;       /* 5.1.1 (RFC 3463) */
	const char *remote_mta;   /* may be NULL; the smarthost's host name */
	const char *diagnostic;   /* "smtp; 550 5.1.1 ..." may be NULL */
	int64_t last_attempt;     /* unix s; 0 = none */
	int64_t will_retry_until; /* for delayed, 0 = none */
};

struct sg_dsn_info {
	const char *reporting_mta; /* our host name */
	const char *envid;         /* may be NULL; the ENVID parameter decoded from
	                            * xtext (RFC 3461 4.4), as the queue keeps it */
	const char *from_addr;     /* the original envelope sender, the DSN's To */
	const char *postmaster;    /* From: of the bounce, e.g. MAILER-DAEMON@host */
	int64_t arrival;           /* unix s */
	bool ret_hdrs;             /* RET=HDRS: headers only */
	const struct sg_dsn_rcpt *rcpts;
	size_t n_rcpts;
};

int sg_dsn_build(const struct sg_dsn_info *info, const uint8_t *orig, size_t orig_len, char **out_r,
                 size_t *out_len_r, const char **error_r);

/* What the built message needs from the SMTP transaction that sends it. */
struct sg_dsn_result {
	bool body_8bit; /* send with BODY=8BITMIME (RFC 6152) */
	bool smtputf8;  /* send with SMTPUTF8 (RFC 6531); implies body_8bit */
	bool truncated; /* the original was returned as headers only by the cap */
};
/* sg_dsn_build, also filling *res (may be NULL). */
int sg_dsn_build_ex(const struct sg_dsn_info *info, const uint8_t *orig, size_t orig_len,
                    char **out_r, size_t *out_len_r, struct sg_dsn_result *res,
                    const char **error_r);

#endif
