/*
 * client/smtpc.h: one asynchronous SMTP client connection on libevent 2.
 *
 * The owner drives it with a single callback: each operation (connect, send a
 * command and wait for its reply, TLS handshake) ends in exactly one event.
 * Every operation has a timer (the connection's timeout_ms): resolution and
 * connect, the greeting, each reply, the TLS handshake. Replies go through the
 * defensive parser (smtp/reply_parse.h). Everything said is recorded in the
 * transcript.
 *
 * Security rules enforced here:
 *  - RFC 3207 section 4.2 / CVE-2011-0411 class: when the TLS handshake starts
 *    no plaintext byte may be waiting after the 220 to STARTTLS (the server or
 *    a man in the middle injected it): that is a protocol error.
 *  - only one reply is expected at a time (no pipelining); bytes that arrive
 *    while nothing is expected stay buffered and count for the next command.
 */
#ifndef SG_CLIENT_SMTPC_H
#define SG_CLIENT_SMTPC_H

#include <stdbool.h>
#include <stddef.h>

#include "client/tls.h"
#include "client/transcript.h"
#include "smtp/reply_parse.h"

struct event_base;
struct sg_smtpc;

enum sg_smtpc_event {
	SG_SMTPC_CONNECTED, /* TCP connected */
	SG_SMTPC_REPLY,     /* a complete reply (the argument) */
	SG_SMTPC_TLS_READY, /* handshake done; see sg_smtpc_tls_info() */
	SG_SMTPC_FAILED,    /* see sg_smtpc_error(); the connection is dead */
};

enum sg_smtpc_err {
	SG_SMTPC_E_NONE,
	SG_SMTPC_E_RESOLVE,  /* host name did not resolve */
	SG_SMTPC_E_CONNECT,  /* refused, unreachable */
	SG_SMTPC_E_TIMEOUT,
	SG_SMTPC_E_CLOSED,   /* the server closed the connection */
	SG_SMTPC_E_TLS,      /* handshake failed */
	SG_SMTPC_E_PROTOCOL, /* unparseable reply, injected data */
	SG_SMTPC_E_IO,
};

typedef void sg_smtpc_cb(struct sg_smtpc *c, enum sg_smtpc_event ev, const struct sg_reply *r,
			 void *arg);

struct sg_smtpc *sg_smtpc_new(struct event_base *base, struct sg_transcript *tr,
			      unsigned timeout_ms, sg_smtpc_cb *cb, void *arg);
void sg_smtpc_free(struct sg_smtpc **c);
/* Change the timer for the next operations (the relay uses the RFC 5321
 * 4.5.3.2 value of each phase). */
void sg_smtpc_set_timeout(struct sg_smtpc *c, unsigned timeout_ms);

/* Resolve host (each address is tried in turn) and connect. */
void sg_smtpc_connect(struct sg_smtpc *c, const char *host, unsigned port);
/* Wait for a reply without sending (the greeting). */
void sg_smtpc_expect(struct sg_smtpc *c, const char *what);
/* Send line + CRLF and wait for the reply. display replaces line in the
 * transcript (masking), decoded is its meaning; both may be NULL. */
void sg_smtpc_command(struct sg_smtpc *c, const char *line, const char *display,
		      const char *decoded);
/* Send raw bytes (the message after DATA), then wait for the reply. */
void sg_smtpc_send_raw(struct sg_smtpc *c, const void *data, size_t len, const char *what);
/* Start a TLS handshake on the connection (implicit TLS or after 220 to STARTTLS). */
void sg_smtpc_starttls(struct sg_smtpc *c, struct sg_ctls *tls, const char *host);

enum sg_smtpc_err sg_smtpc_error(const struct sg_smtpc *c, const char **msg_r);
/* What the connection was waiting for when it failed ("the greeting", ...). */
const char *sg_smtpc_waiting_for(const struct sg_smtpc *c);
const struct sg_ctls_info *sg_smtpc_tls_info(const struct sg_smtpc *c);
int sg_smtpc_channel_binding(struct sg_smtpc *c, const char **type_r, uint8_t *out,
			     size_t *len_r);
const char *sg_smtpc_peer(const struct sg_smtpc *c); /* "127.0.0.1:25" once connected */

#endif
