/*
 * relay/deliver.h: the smarthost client. One sg_smarthost per runner
 * thread: a private event base and at most one open connection to the
 * smarthost, reused for the next message (RSET first; a failed RSET just
 * means a new connection), closed with QUIT when idle.
 *
 * Built on client/smtpc.h (I/O and the defensive reply parser),
 * client/tls.h (certificate and host-name verification) and
 * client/sasl_client.h (the same mechanism files as the probe). The calls
 * block the calling thread (a runner thread, never an event loop of the SMTP
 * server) until the transaction is over.
 *
 * Rules enforced here:
 *  - relay_tls = starttls (the default): a smarthost that does not offer
 *    STARTTLS is a temporary failure; nothing is sent in clear. A
 *    certificate that does not verify (chain or name, RFC 6125) ends the
 *    connection right after the handshake: a temporary failure.
 *  - RFC 5321 4.5.3.2 timeouts: connection and greeting, each command, DATA
 *    initiation, each data block, the final "." (relay_timeout_*).
 *  - PIPELINING (RFC 2920) when offered: MAIL, every RCPT and DATA in one
 *    write, the replies read in order.
 *  - SIZE (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) and the
 *    DSN parameters (RFC 3461: RET, ENVID, NOTIFY, ORCPT) are passed when the
 *    smarthost offers the extension; a message that needs 8BITMIME or
 *    SMTPUTF8 where it is not offered fails permanently (5.6.3 / 5.6.7).
 *  - a reply to one RCPT decides for that recipient only.
 */
#ifndef SG_RELAY_DELIVER_H
#define SG_RELAY_DELIVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/queue.h"
#include "relay/relay_config.h"

struct sg_ctls;
struct sg_smarthost;

/* The result of one recipient. */
struct sg_sh_result {
	char kind;          /* 'D' delivered, 'T' deferred, 'F' failed */
	char status[16];    /* enhanced status (from the reply or derived) */
	char diag[600];     /* "smtp; 550 5.1.1 ..." or "x-smtpgate; ..." */
};

struct sg_sh_stats {
	bool dsn_offered;   /* the smarthost took NOTIFY/ORCPT (RFC 3461) */
	bool reused;        /* the connection carried an earlier message */
	char error[400];    /* a connection-level problem, for the log */
	bool auth_refused;  /* the smarthost refused our AUTH */
};

/* tls may be NULL with relay_tls = none. cfg is read, never kept beyond the
 * smarthost's life. When *stop becomes true (another thread), the operation
 * in progress ends within 200 ms as a temporary failure. */
struct sg_smarthost *sg_sh_new(const struct sg_relay_config *cfg, struct sg_ctls *tls,
			       const char *helo, const atomic_bool *stop);
void sg_sh_free(struct sg_smarthost **h);

/* Deliver msg (len octets, CRLF, not dot-stuffed) for the recipients of e
 * whose index is listed in idx (n of them). res[i] receives the result of
 * recipient idx[i]. The call always produces a result for each. */
void sg_sh_deliver(struct sg_smarthost *h, const struct sg_envelope *e, const size_t *idx,
		   size_t n, const uint8_t *msg, size_t len, struct sg_sh_result *res,
		   struct sg_sh_stats *st);
/* Close an open connection politely (QUIT) when idle. */
void sg_sh_close(struct sg_smarthost *h);
bool sg_sh_connected(const struct sg_smarthost *h);

#endif
