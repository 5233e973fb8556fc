#include "core/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/util.h"

struct sg_tls_ctx {
	SSL_CTX *ctx;
};

static const char *ssl_error(const char *what)
{
	static __thread char buf[256];
	unsigned long e = ERR_get_error();
	char reason[160];
	ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(buf, sizeof(buf), "%s: %s", what, e ? reason : "unknown error");
	ERR_clear_error();
	return buf;
}

/* Request a client certificate but never fail the handshake on it: EXTERNAL
 * is only offered when the chain verified (SSL_get_verify_result). */
static int verify_accept_all(int ok, X509_STORE_CTX *store)
{
	return 1;
}

int sg_tls_server_ctx_new(const char *cert_file, const char *key_file, const char *client_ca,
			  struct sg_tls_ctx **ctx_r, const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = ssl_error("SSL_CTX_new");
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		*error_r = ssl_error(cert_file);
		SSL_CTX_free(ctx);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = ssl_error(key_file);
		SSL_CTX_free(ctx);
		return -1;
	}
	if (client_ca != NULL && *client_ca != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
			*error_r = ssl_error(client_ca);
			SSL_CTX_free(ctx);
			return -1;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept_all);
		/* A client certificate must be fit for client authentication:
		 * an extendedKeyUsage without clientAuth (or a keyUsage without
		 * digitalSignature) fails verification, so EXTERNAL is not
		 * offered. OpenSSL's default for a server, made explicit. */
		SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
		SSL_CTX_set_verify_depth(ctx, 5);
		static const unsigned char sid[] = "smtpgate";
		SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	}
	struct sg_tls_ctx *t = sg_calloc(1, sizeof(*t));
	t->ctx = ctx;
	*ctx_r = t;
	return 0;
}

void sg_tls_ctx_free(struct sg_tls_ctx **pctx)
{
	if (*pctx == NULL)
		return;
	SSL_CTX_free((*pctx)->ctx);
	free(*pctx);
	*pctx = NULL;
}

void *sg_tls_ctx_ssl_ctx(struct sg_tls_ctx *ctx)
{
	return ctx->ctx;
}

static int add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ex == NULL)
		return -1;
	int r = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return r == 1 ? 0 : -1;
}

int sg_tls_make_selfsigned(const char *cert_file, const char *key_file, const char *hostname,
			   const char **error_r)
{
	int ret = -1;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	FILE *f = NULL;
	if (key == NULL || cert == NULL) {
		*error_r = ssl_error("key generation");
		goto out;
	}
	X509_set_version(cert, 2);
	uint8_t serial[16];
	unsigned long long s = 0;
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		sg_fatal("CSPRNG failure");
	for (int i = 0; i < 7; i++)
		s = s << 8 | serial[i];
	ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), s);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 825L * 24 * 3600);
	X509_set_pubkey(cert, key);
	X509_NAME *name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"smtpgate sandbox", -1,
				   -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1, 0);
	X509_set_issuer_name(cert, name);
	char san[512];
	snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", hostname);
	/* A leaf, not a CA (issue 10 item 26): users are told to trust this
	 * certificate, and trusting a CA:TRUE/keyCertSign certificate would
	 * trust anything its key signs. RFC 5280 4.2.1.9/4.2.1.3/4.2.1.12. */
	if (add_ext(cert, NID_subject_alt_name, san) < 0 ||
	    add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(cert, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(cert, NID_subject_key_identifier, "hash") < 0) {
		*error_r = ssl_error("certificate extensions");
		goto out;
	}
	if (X509_sign(cert, key, EVP_sha256()) == 0) {
		*error_r = ssl_error("certificate signature");
		goto out;
	}
	int fd = open(key_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		*error_r = "cannot create the TLS key file";
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 || fflush(f) != 0 ||
	    fsync(fileno(f)) != 0) {
		*error_r = "cannot write the TLS key file";
		goto out;
	}
	fclose(f);
	f = fopen(cert_file, "w");
	if (f == NULL || PEM_write_X509(f, cert) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		*error_r = "cannot write the TLS certificate file";
		goto out;
	}
	ret = 0;
out:
	if (f != NULL)
		fclose(f);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}
