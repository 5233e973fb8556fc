/*
 * proxy_accept.h: a connection accepted on a listener with
 * proxy_protocol = yes waits here, before any byte is sent to it, for the
 * PROXY header (core/proxy.h) from a trusted load balancer. Only the header's
 * octets are taken from the socket (peek, then read exactly them), so what
 * follows, an SMTP command or a TLS ClientHello, stays for the session.
 *
 * A peer outside proxy_trusted, a malformed or truncated header, a family we
 * do not serve and a header that does not arrive within timeout_proxy_ms are
 * logged and the connection closed without a reply. On success the session
 * starts with the client's address from the header (or the socket's own for
 * LOCAL / UNSPEC / UNKNOWN: the balancer's health checks).
 */
#ifndef SG_PROXY_ACCEPT_H
#define SG_PROXY_ACCEPT_H

#include <stdbool.h>

struct sg_listener;
struct sg_loop;
struct sockaddr;

/* The peer at sa may send a header on this listener. */
bool sg_proxy_trusted(const struct sg_listener *l, const struct sockaddr *sa);
/* Start waiting for the header; takes fd. The caller has counted the
 * connection in srv->nsessions; this releases it when it gives up. */
void sg_proxy_wait_start(struct sg_listener *l, int fd, const char *ip, unsigned port);
/* Drop every pending wait of the loop (server stopping). */
void sg_proxy_wait_cancel_all(struct sg_loop *loop);

/* Defined in server.c: the rest of the accept path with the real address. */
void sg_server_accept_client(struct sg_listener *l, int fd, const char *ip, unsigned port);

#endif
