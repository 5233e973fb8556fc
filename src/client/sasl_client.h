/*
 * client/sasl_client.h: the client side of SMTP AUTH (RFC 4954), around any
 * mechanism of sasl/mech.h. Pure: it turns server replies into the lines to
 * send; the caller does the I/O.
 *
 * It owns the wire rules the mechanisms never see:
 *  - base64 both ways (core/b64.h, strict: a server challenge that is not
 *    valid base64 is answered with "*", RFC 4954 section 4);
 *  - the initial response for client-first mechanisms, "=" when it is empty;
 *    when "AUTH <mech> <ir>" would pass 512 octets the initial response is
 *    held back and sent after the first (empty) 334 (RFC 4954 section 4);
 *  - "*" to cancel when the mechanism fails on the client side;
 *  - 235 ends the exchange with success, any other final reply with refusal.
 * Each line comes with a display form for the transcript: secrets (the
 * password, the token) masked unless show_secrets, and the decoded meaning.
 */
#ifndef SG_CLIENT_SASL_CLIENT_H
#define SG_CLIENT_SASL_CLIENT_H

#include <stdbool.h>

#include "core/buf.h"
#include "sasl/mech.h"
#include "smtp/reply_parse.h"

enum sg_saslc_status {
	SG_SASLC_SEND,   /* send line; display/decoded describe it */
	SG_SASLC_OK,     /* 235: authenticated */
	SG_SASLC_REFUSED /* a final non-235 reply (after our "*" too: see aborted) */
};

struct sg_saslc {
	const struct sg_mech *mech;
	const struct sg_sasl_client_env *env;
	void *st;
	bool show_secrets;
	bool aborted;             /* we sent "*" */
	const char *client_error; /* why (static or from the mechanism) */
	bool mech_done;           /* the mechanism returned SG_MECH_OK */
	unsigned steps;
	struct sg_buf pending_ir; /* held-back initial response */
	bool have_pending_ir;
	/* the line to send and how to show it */
	struct sg_buf line;
	char *display;
	char *decoded;
};

/* Start: fills c->line with "AUTH <MECH> [ir]". -1 when the mechanism cannot
 * start (c->client_error says why: missing password, no TLS for -PLUS, ...). */
int sg_saslc_begin(struct sg_saslc *c, const struct sg_mech *mech,
		   const struct sg_sasl_client_env *env, bool show_secrets);
enum sg_saslc_status sg_saslc_reply(struct sg_saslc *c, const struct sg_reply *r);
void sg_saslc_free(struct sg_saslc *c);

#endif
