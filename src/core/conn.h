/*
 * conn.h: one client connection. libevent and OpenSSL stay behind this
 * interface (as OpenSMTPD's ioev.c hides its I/O layer): the session reads
 * lines or raw bytes, writes replies, and upgrades to TLS in place.
 *
 * Callbacks run on the loop thread. on_event is the only way a connection
 * reports its end: after SG_CONN_EOF, _ERROR, _TLS_FAILED or _CLOSED the owner
 * must call sg_conn_free(); after SG_CONN_TIMEOUT it may still write a reply
 * and call sg_conn_shutdown().
 */
#ifndef SG_CONN_H
#define SG_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sg_tls_ctx;
struct sg_conn;

enum sg_conn_event {
	SG_CONN_TLS_DONE,   /* handshake finished: info and channel binding available */
	SG_CONN_EOF,        /* peer closed */
	SG_CONN_ERROR,      /* socket error */
	SG_CONN_TIMEOUT,    /* no input within the timeout */
	SG_CONN_TLS_FAILED, /* handshake failed */
	SG_CONN_CLOSED,     /* sg_conn_shutdown() finished flushing */
};

struct sg_conn_cbs {
	void (*on_read)(void *ctx);
	void (*on_event)(void *ctx, enum sg_conn_event ev);
};

struct sg_conn_info {
	bool tls;
	char version[16];        /* "TLSv1.3" */
	char cipher[64];
	int bits;
	bool cert_verified;      /* a client certificate chained to the configured CA */
	char cert_identity[256]; /* its SAN email, else CN ("" when none) */
	char cert_subject[256];
};

/* tls != NULL: implicit TLS, the handshake starts at once (SG_CONN_TLS_DONE). */
struct sg_conn *sg_conn_new(struct event_base *base, int fd, struct sg_tls_ctx *tls,
			    const struct sg_conn_cbs *cbs, void *ctx);
void sg_conn_free(struct sg_conn **c);

/* Read one line ending in LF (a CR before it is removed). Returns 1 with the
 * line in buf (NUL-terminated, *len_r octets, may contain NULs), 0 when no
 * full line is buffered, -1 when the line is longer than size - 1 octets: it
 * is then discarded up to and including its LF, however long it gets, and buf
 * holds its first 16 octets (to name the command in the reply). */
int sg_conn_read_line(struct sg_conn *c, char *buf, size_t size, size_t *len_r);
/* Raw input for DATA: the first contiguous chunk, and drain. */
size_t sg_conn_peek(struct sg_conn *c, const uint8_t **p);
void sg_conn_drain(struct sg_conn *c, size_t n);
size_t sg_conn_input_len(struct sg_conn *c);

void sg_conn_write(struct sg_conn *c, const void *p, size_t n);
/* True when unsent replies passed the high mark: stop processing input; the
 * connection calls on_read again once they drained. */
bool sg_conn_output_full(struct sg_conn *c);
void sg_conn_pause(struct sg_conn *c);
void sg_conn_resume(struct sg_conn *c);
/* Input inactivity limit; 0 = none. */
void sg_conn_set_timeout(struct sg_conn *c, unsigned ms);
/* RFC 3207 4.2: after the 220 is flushed, discard whatever the client sent
 * after STARTTLS and run the server handshake on the same socket. */
void sg_conn_starttls(struct sg_conn *c, struct sg_tls_ctx *tls);
/* Stop reading, flush the output, then report SG_CONN_CLOSED. */
void sg_conn_shutdown(struct sg_conn *c);

const struct sg_conn_info *sg_conn_info(const struct sg_conn *c);
/* Channel binding (RFC 9266 tls-exporter on TLS 1.3, RFC 5929 tls-unique on
 * TLS 1.2). Returns the length written (<= size) or 0; *type_r names it. */
size_t sg_conn_channel_binding(struct sg_conn *c, uint8_t *out, size_t size, const char **type_r);

#endif
