/*
 * client/tls.h: the TLS side of the SMTP client. The only client file that
 * includes OpenSSL; everything else sees bufferevents, plain C strings and
 * channel-binding bytes.
 *
 * Certificates are verified after the handshake, never during it (the
 * handshake runs with SSL_VERIFY_NONE and the result is read back), so the
 * caller can always report what the server presented and why it did not
 * verify, and then decide (--insecure) whether to go on.
 */
#ifndef SG_CLIENT_TLS_H
#define SG_CLIENT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event_base;

struct sg_ctls_opts {
	const char *cafile;     /* NULL: the system's default trust store */
	const char *cert_file;  /* client certificate chain (EXTERNAL), or NULL */
	const char *key_file;
};

struct sg_ctls_info {
	bool active;
	char version[16];       /* "TLSv1.3" */
	char cipher[64];
	int cipher_bits;
	bool have_cert;
	char subject[256];
	char issuer[256];
	char not_before[40];    /* "2026-01-02 03:04:05 UTC" */
	char not_after[40];
	char san[256];          /* DNS and IP subjectAltNames, comma-separated */
	bool expired;
	bool verified;          /* chain and host name both verified */
	char verify_error[160]; /* why not ("" when verified) */
	bool client_cert_sent;
};

struct sg_ctls;

int sg_ctls_new(const struct sg_ctls_opts *opts, struct sg_ctls **ctx_r, const char **error_r);
void sg_ctls_free(struct sg_ctls **ctx);

/* Wrap a connected bufferevent in a TLS client filter (it takes ownership of
 * under, freeing it with the result). host is used for SNI (when not an IP
 * literal) and for host-name verification (RFC 6125). NULL on error. */
struct bufferevent *sg_ctls_wrap(struct sg_ctls *ctx, struct event_base *base,
				 struct bufferevent *under, const char *host, const char **error_r);
/* After the handshake completed on bev. */
void sg_ctls_get_info(struct bufferevent *bev, struct sg_ctls_info *info);
/* Why a handshake failed, into buf. */
const char *sg_ctls_error(struct bufferevent *bev, char *buf, size_t size);
/* Channel binding for the session (RFC 9266 tls-exporter on TLS 1.3: the
 * 32-octet exporter with label "EXPORTER-Channel-Binding" and no context;
 * RFC 5929 tls-unique on TLS 1.2 and older: the first Finished message of
 * the handshake). out needs 64 bytes. Returns 0 and sets *type_r, or -1. */
int sg_ctls_channel_binding(struct bufferevent *bev, const char **type_r, uint8_t *out,
			    size_t *len_r);

#endif
