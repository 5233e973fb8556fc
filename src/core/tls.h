/*
 * tls.h: TLS contexts (OpenSSL 3) for the server and the self-signed
 * certificate that makes `serve` work with no configuration.
 *
 * Only tls.c and conn.c include OpenSSL's ssl.h; the session sees a connection
 * that is "secure" or not, its protocol and cipher, the verified client
 * certificate identity, and channel-binding bytes.
 */
#ifndef SG_TLS_H
#define SG_TLS_H

#include <stdbool.h>

struct sg_tls_ctx;

/* A server context from PEM files. With client_ca set, a client certificate is
 * requested (not required) and verified against it; the handshake succeeds
 * either way and sg_conn_info() reports the identity only when it verified. */
int sg_tls_server_ctx_new(const char *cert_file, const char *key_file, const char *client_ca,
			  struct sg_tls_ctx **ctx_r, const char **error_r);
void sg_tls_ctx_free(struct sg_tls_ctx **ctx);
/* The underlying SSL_CTX (conn.c only). */
void *sg_tls_ctx_ssl_ctx(struct sg_tls_ctx *ctx);

/* Write an ECDSA P-256 key (mode 0600) and a self-signed leaf certificate
 * for hostname (SAN DNS:hostname, DNS:localhost, IP:127.0.0.1, IP:::1;
 * CA:FALSE, keyUsage digitalSignature, extendedKeyUsage serverAuth), valid
 * for 825 days. */
int sg_tls_make_selfsigned(const char *cert_file, const char *key_file, const char *hostname,
			   const char **error_r);

#endif
