#include "client/tls.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

struct sg_ctls {
	SSL_CTX *ctx;
};

static const char *ssl_err(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();
	if (e == 0)
		return "unknown OpenSSL error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

int sg_ctls_new(const struct sg_ctls_opts *opts, struct sg_ctls **ctx_r, const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*error_r = ssl_err();
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Verification is read back after the handshake (see tls.h). */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	int ok = opts->cafile != NULL ? SSL_CTX_load_verify_locations(ctx, opts->cafile, NULL)
				      : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		*error_r = opts->cafile != NULL ? "cannot load the CA file" : ssl_err();
		SSL_CTX_free(ctx);
		return -1;
	}
	if (opts->cert_file != NULL) {
		const char *key = opts->key_file != NULL ? opts->key_file : opts->cert_file;
		if (SSL_CTX_use_certificate_chain_file(ctx, opts->cert_file) != 1) {
			*error_r = "cannot load the client certificate";
			SSL_CTX_free(ctx);
			return -1;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			*error_r = "cannot load the client key, or it does not match the certificate";
			SSL_CTX_free(ctx);
			return -1;
		}
	}
	ERR_clear_error();
	struct sg_ctls *c = sg_calloc(1, sizeof(*c));
	c->ctx = ctx;
	*ctx_r = c;
	return 0;
}

void sg_ctls_free(struct sg_ctls **ctx)
{
	if (*ctx == NULL)
		return;
	SSL_CTX_free((*ctx)->ctx);
	free(*ctx);
	*ctx = NULL;
}

static bool is_ip_literal(const char *host)
{
	unsigned char b[16];
	return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

struct bufferevent *sg_ctls_wrap(struct sg_ctls *ctx, struct event_base *base,
				 struct bufferevent *under, const char *host, const char **error_r)
{
	SSL *ssl = SSL_new(ctx->ctx);
	if (ssl == NULL) {
		*error_r = ssl_err();
		return NULL;
	}
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	if (is_ip_literal(host)) {
		X509_VERIFY_PARAM_set1_ip_asc(param, host);
	} else {
		SSL_set_tlsext_host_name(ssl, host);
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(ssl, host);
	}
	struct bufferevent *bev = bufferevent_openssl_filter_new(
		base, under, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		*error_r = "cannot create the TLS bufferevent";
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static void name_line(X509_NAME *n, char *out, size_t size)
{
	out[0] = '\0';
	if (n == NULL)
		return;
	BIO *b = BIO_new(BIO_s_mem());
	if (b == NULL)
		return;
	X509_NAME_print_ex(b, n, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
	int len = BIO_read(b, out, (int)size - 1);
	out[len > 0 ? len : 0] = '\0';
	BIO_free(b);
}

static void time_line(const ASN1_TIME *t, char *out, size_t size)
{
	struct tm tm;
	out[0] = '\0';
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return;
	strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void san_line(X509 *cert, char *out, size_t size)
{
	out[0] = '\0';
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (names == NULL)
		return;
	size_t used = 0;
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		char item[80] = "";
		if (g->type == GEN_DNS) {
			const ASN1_IA5STRING *s = g->d.dNSName;
			snprintf(item, sizeof(item), "DNS:%.*s", s->length > 60 ? 60 : s->length,
				 (const char *)s->data);
		} else if (g->type == GEN_IPADD) {
			const ASN1_OCTET_STRING *s = g->d.iPAddress;
			char ip[INET6_ADDRSTRLEN] = "?";
			if (s->length == 4)
				inet_ntop(AF_INET, s->data, ip, sizeof(ip));
			else if (s->length == 16)
				inet_ntop(AF_INET6, s->data, ip, sizeof(ip));
			snprintf(item, sizeof(item), "IP:%s", ip);
		} else {
			continue;
		}
		int n = snprintf(out + used, size - used, "%s%s", used ? ", " : "", item);
		if (n < 0 || (size_t)n >= size - used)
			break;
		used += (size_t)n;
	}
	GENERAL_NAMES_free(names);
}

void sg_ctls_get_info(struct bufferevent *bev, struct sg_ctls_info *info)
{
	memset(info, 0, sizeof(*info));
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl == NULL)
		return;
	info->active = true;
	sg_strlcpy(info->version, SSL_get_version(ssl), sizeof(info->version));
	const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
	if (ci != NULL) {
		sg_strlcpy(info->cipher, SSL_CIPHER_get_name(ci), sizeof(info->cipher));
		info->cipher_bits = SSL_CIPHER_get_bits(ci, NULL);
	}
	info->client_cert_sent = SSL_get_certificate(ssl) != NULL;
	X509 *cert = SSL_get1_peer_certificate(ssl);
	if (cert == NULL) {
		sg_strlcpy(info->verify_error, "the server presented no certificate",
			   sizeof(info->verify_error));
		return;
	}
	info->have_cert = true;
	name_line(X509_get_subject_name(cert), info->subject, sizeof(info->subject));
	name_line(X509_get_issuer_name(cert), info->issuer, sizeof(info->issuer));
	time_line(X509_get0_notBefore(cert), info->not_before, sizeof(info->not_before));
	time_line(X509_get0_notAfter(cert), info->not_after, sizeof(info->not_after));
	info->expired = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0;
	san_line(cert, info->san, sizeof(info->san));
	long vr = SSL_get_verify_result(ssl);
	if (vr == X509_V_OK) {
		info->verified = true;
	} else if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		snprintf(info->verify_error, sizeof(info->verify_error),
			 "the certificate does not name the host you connected to (%s)",
			 X509_verify_cert_error_string(vr));
	} else {
		sg_strlcpy(info->verify_error, X509_verify_cert_error_string(vr),
			   sizeof(info->verify_error));
	}
	X509_free(cert);
}

const char *sg_ctls_error(struct bufferevent *bev, char *buf, size_t size)
{
	/* libevent queues OpenSSL error codes, and bare SSL_get_error() values
	 * (small numbers) when the queue was empty. */
	unsigned long e, last = 0;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (ERR_GET_LIB(e) != 0)
			last = e;
	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_LIB(e) != 0)
			last = e;
	const char *reason = last != 0 ? ERR_reason_error_string(last) : NULL;
	if (reason != NULL)
		snprintf(buf, size, "%s", reason);
	else if (last != 0)
		ERR_error_string_n(last, buf, size);
	else
		snprintf(buf, size, "the server's answer was not a TLS handshake, or it closed the "
				    "connection");
	return buf;
}

int sg_ctls_channel_binding(struct bufferevent *bev, const char **type_r, uint8_t *out,
			    size_t *len_r)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl == NULL)
		return -1;
	if (SSL_version(ssl) >= TLS1_3_VERSION) {
		/* RFC 9266 section 2: label "EXPORTER-Channel-Binding", no context, 32 octets. */
		static const char label[] = "EXPORTER-Channel-Binding";
		if (SSL_export_keying_material(ssl, out, 32, label, sizeof(label) - 1, NULL, 0,
					       0) != 1)
			return -1;
		*len_r = 32;
		*type_r = "tls-exporter";
		return 0;
	}
	/* RFC 5929 section 3.1: the first Finished message of the most recent
	 * handshake: ours on a full handshake, the server's on resumption. */
	size_t n = SSL_session_reused(ssl) ? SSL_get_peer_finished(ssl, out, 64)
					   : SSL_get_finished(ssl, out, 64);
	if (n == 0 || n > 64)
		return -1;
	*len_r = n;
	*type_r = "tls-unique";
	return 0;
}
