#include "core/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/tls.h"
#include "core/util.h"

/* Bytes buffered from a client before we stop reading it. */
#define READ_HIGH_WATERMARK (64 * 1024)
/* Unsent replies: past the high mark the client is not read (a pipelining
 * client that never reads its replies cannot grow our memory); reading
 * resumes once they drain below the low mark. */
#define OUT_HIGH_WATERMARK (256 * 1024)
#define OUT_LOW_WATERMARK (16 * 1024)

struct sg_conn {
	struct event_base *base;
	struct bufferevent *bev;
	evutil_socket_t fd;
	SSL *ssl;
	const struct sg_conn_cbs *cbs;
	void *ctx;
	struct sg_tls_ctx *pending_tls;
	unsigned timeout_ms;
	bool handshaking;
	bool closing;
	bool discarding;
	bool paused;
	bool out_blocked;
	struct sg_conn_info info;
};

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void apply_timeout(struct sg_conn *c)
{
	if (c->timeout_ms == 0) {
		bufferevent_set_timeouts(c->bev, NULL, NULL);
		return;
	}
	struct timeval tv = {.tv_sec = c->timeout_ms / 1000, .tv_usec = (c->timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static void setup_bev(struct sg_conn *c)
{
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WATERMARK);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW_WATERMARK, 0);
	apply_timeout(c);
	if (!c->paused)
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	else
		bufferevent_enable(c->bev, EV_WRITE);
}

static int start_tls_bev(struct sg_conn *c, struct sg_tls_ctx *tls)
{
	c->ssl = SSL_new(sg_tls_ctx_ssl_ctx(tls));
	if (c->ssl == NULL)
		return -1;
	c->bev = bufferevent_openssl_socket_new(c->base, c->fd, c->ssl, BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		return -1;
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	c->handshaking = true;
	setup_bev(c);
	return 0;
}

struct sg_conn *sg_conn_new(struct event_base *base, int fd, struct sg_tls_ctx *tls,
			    const struct sg_conn_cbs *cbs, void *ctx)
{
	sg_log_bind_loop(base); /* this is the loop's thread: buffer its log lines */
	struct sg_conn *c = sg_calloc(1, sizeof(*c));
	c->base = base;
	c->fd = fd;
	c->cbs = cbs;
	c->ctx = ctx;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	if (tls != NULL) {
		if (start_tls_bev(c, tls) < 0) {
			if (c->ssl != NULL && c->bev == NULL)
				SSL_free(c->ssl);
			close(fd);
			free(c);
			return NULL;
		}
	} else {
		c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
		if (c->bev == NULL) {
			close(fd);
			free(c);
			return NULL;
		}
		setup_bev(c);
	}
	return c;
}

void sg_conn_free(struct sg_conn **pc)
{
	struct sg_conn *c = *pc;
	if (c == NULL)
		return;
	if (c->bev != NULL)
		bufferevent_free(c->bev); /* closes the socket; frees the SSL */
	free(c);
	*pc = NULL;
}

static void fill_tls_info(struct sg_conn *c)
{
	struct sg_conn_info *i = &c->info;
	i->tls = true;
	sg_strlcpy(i->version, SSL_get_version(c->ssl), sizeof(i->version));
	sg_strlcpy(i->cipher, SSL_get_cipher_name(c->ssl), sizeof(i->cipher));
	i->bits = SSL_get_cipher_bits(c->ssl, NULL);
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	if (peer == NULL)
		return;
	X509_NAME_oneline(X509_get_subject_name(peer), i->cert_subject, sizeof(i->cert_subject));
	if (SSL_get_verify_result(c->ssl) != X509_V_OK)
		return;
	GENERAL_NAMES *names = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
	for (int k = 0; names != NULL && k < sk_GENERAL_NAME_num(names); k++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, k);
		if (gn->type != GEN_EMAIL)
			continue;
		const unsigned char *s = ASN1_STRING_get0_data(gn->d.rfc822Name);
		int n = ASN1_STRING_length(gn->d.rfc822Name);
		if (n > 0 && (size_t)n < sizeof(i->cert_identity) && memchr(s, 0, (size_t)n) == NULL) {
			memcpy(i->cert_identity, s, (size_t)n);
			i->cert_identity[n] = '\0';
			break;
		}
	}
	GENERAL_NAMES_free(names);
	if (i->cert_identity[0] == '\0') {
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
						  i->cert_identity, sizeof(i->cert_identity));
		if (n <= 0 || strlen(i->cert_identity) != (size_t)n)
			i->cert_identity[0] = '\0';
	}
	i->cert_verified = i->cert_identity[0] != '\0';
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct sg_conn *c = arg;
	if (!c->closing && !c->paused && !c->out_blocked && c->pending_tls == NULL)
		c->cbs->on_read(c->ctx);
}

bool sg_conn_output_full(struct sg_conn *c)
{
	if (c->out_blocked)
		return true;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) < OUT_HIGH_WATERMARK)
		return false;
	c->out_blocked = true;
	bufferevent_disable(c->bev, EV_READ);
	return true;
}

static void do_upgrade(struct sg_conn *c)
{
	struct sg_tls_ctx *tls = c->pending_tls;
	c->pending_tls = NULL;
	/* RFC 3207 4.2 / CVE-2011-0411: nothing the client sent after STARTTLS
	 * and before the handshake is ever executed. */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	/* Free the plain bufferevent without closing the socket. */
	struct bufferevent *old = c->bev;
	c->bev = NULL;
	bufferevent_setfd(old, -1);
	bufferevent_free(old);
	if (start_tls_bev(c, tls) < 0)
		c->cbs->on_event(c->ctx, SG_CONN_TLS_FAILED);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct sg_conn *c = arg;
	/* Called whenever the output drains to the low mark; upgrade and close
	 * wait until it is empty. */
	bool empty = evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
	if (c->pending_tls != NULL) {
		if (empty)
			do_upgrade(c);
	} else if (c->closing) {
		if (empty)
			c->cbs->on_event(c->ctx, SG_CONN_CLOSED);
	} else if (c->out_blocked) {
		c->out_blocked = false;
		if (!c->paused) {
			bufferevent_enable(c->bev, EV_READ);
			bufferevent_trigger(c->bev, EV_READ,
					    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
		}
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct sg_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		c->handshaking = false;
		fill_tls_info(c);
		c->cbs->on_event(c->ctx, SG_CONN_TLS_DONE);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (c->handshaking || c->closing) {
			c->cbs->on_event(c->ctx, c->handshaking ? SG_CONN_TLS_FAILED : SG_CONN_CLOSED);
			return;
		}
		c->cbs->on_event(c->ctx, SG_CONN_TIMEOUT);
		return;
	}
	if (c->handshaking) {
		c->cbs->on_event(c->ctx, SG_CONN_TLS_FAILED);
		return;
	}
	if (c->closing) {
		c->cbs->on_event(c->ctx, SG_CONN_CLOSED);
		return;
	}
	c->cbs->on_event(c->ctx, (what & BEV_EVENT_EOF) ? SG_CONN_EOF : SG_CONN_ERROR);
}

/* The start of an overlong line, so the caller can tell which command it was. */
static void keep_prefix(struct evbuffer *in, char *buf, size_t size)
{
	size_t k = size > 16 ? 16 : size - 1;
	evbuffer_copyout(in, buf, k);
	buf[k] = '\0';
}

int sg_conn_read_line(struct sg_conn *c, char *buf, size_t size, size_t *len_r)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return 0;
		size_t eol_len = 0;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (c->discarding) {
			if (p.pos < 0) {
				evbuffer_drain(in, avail);
				return 0;
			}
			evbuffer_drain(in, (size_t)p.pos + 1);
			c->discarding = false;
			continue;
		}
		if (p.pos < 0) {
			/* +1: a CR may still be stripped when the LF comes */
			if (avail > size) {
				keep_prefix(in, buf, size);
				c->discarding = true;
				evbuffer_drain(in, avail);
				return -1;
			}
			return 0;
		}
		size_t n = (size_t)p.pos;
		if (n > size) {
			keep_prefix(in, buf, size);
			evbuffer_drain(in, n + 1);
			return -1;
		}
		evbuffer_remove(in, buf, n);
		evbuffer_drain(in, 1);
		if (n > 0 && buf[n - 1] == '\r')
			n--;
		if (n >= size) {
			buf[n < 16 ? n : 16] = '\0';
			return -1;
		}
		buf[n] = '\0';
		*len_r = n;
		return 1;
	}
}

size_t sg_conn_peek(struct sg_conn *c, const uint8_t **p)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v;
	if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
		return 0;
	*p = v.iov_base;
	return v.iov_len;
}

void sg_conn_drain(struct sg_conn *c, size_t n)
{
	evbuffer_drain(bufferevent_get_input(c->bev), n);
}

size_t sg_conn_input_len(struct sg_conn *c)
{
	return evbuffer_get_length(bufferevent_get_input(c->bev));
}

void sg_conn_write(struct sg_conn *c, const void *p, size_t n)
{
	bufferevent_write(c->bev, p, n);
}

void sg_conn_pause(struct sg_conn *c)
{
	c->paused = true;
	bufferevent_disable(c->bev, EV_READ);
}

void sg_conn_resume(struct sg_conn *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	if (c->closing || c->pending_tls != NULL || c->out_blocked)
		return;
	bufferevent_enable(c->bev, EV_READ);
	/* Input may already be buffered (pipelining): deliver it now. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void sg_conn_set_timeout(struct sg_conn *c, unsigned ms)
{
	c->timeout_ms = ms;
	apply_timeout(c);
}

void sg_conn_starttls(struct sg_conn *c, struct sg_tls_ctx *tls)
{
	c->pending_tls = tls;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		do_upgrade(c);
}

void sg_conn_shutdown(struct sg_conn *c)
{
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

const struct sg_conn_info *sg_conn_info(const struct sg_conn *c)
{
	return &c->info;
}

size_t sg_conn_channel_binding(struct sg_conn *c, uint8_t *out, size_t size, const char **type_r)
{
	if (c->ssl == NULL || c->handshaking)
		return 0;
	if (SSL_version(c->ssl) >= TLS1_3_VERSION) {
		static const char label[] = "EXPORTER-Channel-Binding";
		if (size < 32 || SSL_export_keying_material(c->ssl, out, 32, label, sizeof(label) - 1,
							    NULL, 0, 0) != 1)
			return 0;
		*type_r = "tls-exporter";
		return 32;
	}
	/* tls-unique: the first Finished message of the handshake (RFC 5929 3.1) */
	size_t n = SSL_session_reused(c->ssl) ? SSL_get_finished(c->ssl, out, size)
					      : SSL_get_peer_finished(c->ssl, out, size);
	if (n == 0 || n > size)
		return 0;
	*type_r = "tls-unique";
	return n;
}
