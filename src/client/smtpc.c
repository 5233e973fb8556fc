#include "client/smtpc.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/b64.h"
#include "core/util.h"

#define SMTPC_INPUT_MAX (256 * 1024)

enum smtpc_state {
	S_IDLE,
	S_RESOLVING,
	S_CONNECTING,
	S_REPLY,
	S_HANDSHAKE,
	S_DEAD,
};

struct sg_smtpc {
	struct event_base *base;
	struct evdns_base *dns;
	struct evdns_getaddrinfo_request *dns_req;
	struct evutil_addrinfo *ai, *ai_cur;
	struct bufferevent *bev;
	struct event *timer;
	struct event *kick;
	struct sg_reply_parser parser;
	struct sg_transcript *tr;
	sg_smtpc_cb *cb;
	void *arg;
	unsigned timeout_ms;
	enum smtpc_state state;
	bool peer_closed;
	char host[256];
	unsigned port;
	char peer[80];
	char what[64];
	enum sg_smtpc_err err;
	char errmsg[300];
	struct sg_ctls_info tls;
	struct sg_ctls *tls_ctx;
	char tls_host[256];
};

static void smtpc_read_cb(struct bufferevent *bev, void *arg);
static void smtpc_event_cb(struct bufferevent *bev, short what, void *arg);
static void smtpc_try_next(struct sg_smtpc *c);

static void smtpc_arm(struct sg_smtpc *c, const char *what)
{
	sg_strlcpy(c->what, what, sizeof(c->what));
	struct timeval tv = {.tv_sec = c->timeout_ms / 1000,
			     .tv_usec = (suseconds_t)(c->timeout_ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

static void smtpc_fail(struct sg_smtpc *c, enum sg_smtpc_err err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void smtpc_fail(struct sg_smtpc *c, enum sg_smtpc_err err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	c->err = err;
	c->state = S_DEAD;
	evtimer_del(c->timer);
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	sg_transcript_add(c->tr, SG_TR_NOTE, c->errmsg, NULL);
	c->cb(c, SG_SMTPC_FAILED, NULL, c->arg);
}

static void smtpc_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct sg_smtpc *c = arg;
	if (c->state == S_RESOLVING && c->dns_req != NULL) {
		struct evdns_getaddrinfo_request *req = c->dns_req;
		c->dns_req = NULL;
		c->state = S_DEAD;
		evdns_getaddrinfo_cancel(req); /* runs dns_cb with EVUTIL_EAI_CANCEL */
	}
	smtpc_fail(c, SG_SMTPC_E_TIMEOUT, "timeout: no answer within %u.%03u s while waiting for %s",
		   c->timeout_ms / 1000, c->timeout_ms % 1000, c->what);
}

static void record_reply(struct sg_smtpc *c, const struct sg_reply *r)
{
	for (size_t i = 0; i < r->nlines; i++) {
		char *decoded = NULL;
		if (r->code == 334) {
			const char *t = sg_reply_text(r, i);
			size_t tl = strlen(t);
			uint8_t *d = sg_malloc(SG_B64_DECODED_MAX(tl) + 1);
			size_t dl = 0;
			if (tl == 0)
				decoded = sg_strdup("empty challenge");
			else if (sg_b64_decode(t, tl, d, &dl) < 0)
				decoded = sg_strdup("not valid base64");
			else
				decoded = sg_sasl_describe(d, dl, NULL);
			free(d);
		}
		sg_transcript_add(c->tr, SG_TR_SERVER, sg_reply_line(r, i), decoded);
		free(decoded);
	}
}

static void smtpc_process(struct sg_smtpc *c)
{
	if (c->state != S_REPLY || c->bev == NULL)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (evbuffer_get_length(in) > 0) {
		size_t len = evbuffer_get_length(in);
		const uint8_t *data = evbuffer_pullup(in, -1);
		size_t used = 0;
		enum sg_reply_status st = sg_reply_parser_feed(&c->parser, data, len, &used);
		evbuffer_drain(in, used);
		if (st == SG_REPLY_ERROR) {
			smtpc_fail(c, SG_SMTPC_E_PROTOCOL, "protocol error while waiting for %s: %s",
				   c->what, c->parser.error);
			return;
		}
		if (st == SG_REPLY_DONE) {
			evtimer_del(c->timer);
			c->state = S_IDLE;
			record_reply(c, &c->parser.reply);
			c->cb(c, SG_SMTPC_REPLY, &c->parser.reply, c->arg);
			return;
		}
	}
}

static void smtpc_read_cb(struct bufferevent *bev, void *arg)
{
	struct sg_smtpc *c = arg;
	if (c->state == S_REPLY)
		smtpc_process(c);
	/* otherwise: unsolicited bytes stay buffered (bounded by the watermark) */
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct sg_smtpc *c = arg;
	c->dns_req = NULL;
	if (result == EVUTIL_EAI_CANCEL || c->state != S_RESOLVING) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	if (result != 0 || res == NULL) {
		smtpc_fail(c, SG_SMTPC_E_RESOLVE, "cannot resolve host name %s: %s", c->host,
			   evutil_gai_strerror(result));
		return;
	}
	c->ai = res;
	c->ai_cur = res;
	c->state = S_CONNECTING;
	smtpc_try_next(c);
}

static void addr_str(const struct sockaddr *sa, char *out, size_t size)
{
	char ip[64] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		evutil_inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		snprintf(out, size, "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		evutil_inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(out, size, "[%s]:%u", ip, port);
	} else {
		snprintf(out, size, "?");
	}
}

static void smtpc_try_next(struct sg_smtpc *c)
{
	while (c->ai_cur != NULL) {
		struct evutil_addrinfo *ai = c->ai_cur;
		c->ai_cur = ai->ai_next;
		addr_str(ai->ai_addr, c->peer, sizeof(c->peer));
		c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
		if (c->bev == NULL)
			continue;
		bufferevent_setcb(c->bev, smtpc_read_cb, NULL, smtpc_event_cb, c);
		if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0) {
			char note[160];
			snprintf(note, sizeof(note), "connecting to %s", c->peer);
			sg_transcript_add(c->tr, SG_TR_NOTE, note, NULL);
			return;
		}
		snprintf(c->errmsg, sizeof(c->errmsg), "%s: %s", c->peer, strerror(errno));
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	char last[sizeof(c->errmsg)];
	sg_strlcpy(last, c->errmsg[0] ? c->errmsg : "no address", sizeof(last));
	smtpc_fail(c, SG_SMTPC_E_CONNECT, "cannot connect to %s port %u: %s", c->host, c->port,
		   last);
}

static void smtpc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sg_smtpc *c = arg;
	int e = EVUTIL_SOCKET_ERROR();
	switch (c->state) {
	case S_CONNECTING:
		if (what & BEV_EVENT_CONNECTED) {
			evtimer_del(c->timer);
			c->state = S_IDLE;
			bufferevent_setwatermark(c->bev, EV_READ, 0, SMTPC_INPUT_MAX);
			bufferevent_enable(c->bev, EV_READ | EV_WRITE);
			char note[160];
			snprintf(note, sizeof(note), "connected to %s", c->peer);
			sg_transcript_add(c->tr, SG_TR_NOTE, note, NULL);
			c->cb(c, SG_SMTPC_CONNECTED, NULL, c->arg);
			return;
		}
		snprintf(c->errmsg, sizeof(c->errmsg), "%s: %s", c->peer,
			 evutil_socket_error_to_string(e));
		bufferevent_free(c->bev);
		c->bev = NULL;
		smtpc_try_next(c);
		return;
	case S_HANDSHAKE:
		if (what & BEV_EVENT_CONNECTED) {
			evtimer_del(c->timer);
			c->state = S_IDLE;
			sg_ctls_get_info(c->bev, &c->tls);
			char note[400];
			snprintf(note, sizeof(note), "TLS handshake done: %s, %s", c->tls.version,
				 c->tls.cipher);
			sg_transcript_add(c->tr, SG_TR_NOTE, note, NULL);
			c->cb(c, SG_SMTPC_TLS_READY, NULL, c->arg);
			return;
		} else {
			char buf[200];
			const char *m = sg_ctls_error(c->bev, buf, sizeof(buf));
			smtpc_fail(c, SG_SMTPC_E_TLS, "TLS handshake failed: %s", m);
		}
		return;
	case S_REPLY:
		if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && c->bev != NULL &&
		    evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
			/* the reply and the close arrived together: the reply first */
			c->peer_closed = true;
			smtpc_process(c);
			if (c->state != S_REPLY)
				return;
		}
		if (what & BEV_EVENT_EOF) {
			/* A TLS filter may report the close before the last decrypted
			 * bytes: decide in the next loop turn (smtpc_kick_cb). */
			c->peer_closed = true;
			event_active(c->kick, EV_TIMEOUT, 0);
		} else if (what & BEV_EVENT_ERROR) {
			smtpc_fail(c, SG_SMTPC_E_IO, "connection error while waiting for %s: %s",
				   c->what, evutil_socket_error_to_string(e));
		}
		return;
	default:
		if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
			c->peer_closed = true;
			if (c->bev != NULL)
				bufferevent_disable(c->bev, EV_READ);
		}
		return;
	}
}

static void smtpc_kick_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct sg_smtpc *c = arg;
	if (c->state == S_RESOLVING && c->dns_req == NULL && c->ai == NULL) {
		struct evutil_addrinfo hints;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_protocol = IPPROTO_TCP;
		hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
		char port[16];
		snprintf(port, sizeof(port), "%u", c->port);
		if (c->dns == NULL) {
			c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
								 EVDNS_BASE_DISABLE_WHEN_INACTIVE);
			if (c->dns == NULL) {
				c->dns = evdns_base_new(c->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
				if (c->dns != NULL)
					evdns_base_load_hosts(c->dns, NULL);
			}
		}
		struct evdns_getaddrinfo_request *req =
			evdns_getaddrinfo(c->dns, c->host, port, &hints, dns_cb, c);
		if (c->state == S_RESOLVING && c->ai == NULL)
			c->dns_req = req;
		return;
	}
	if (c->state == S_REPLY && c->peer_closed) {
		if (c->bev != NULL && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
			smtpc_process(c);
		if (c->state == S_REPLY)
			smtpc_fail(c, SG_SMTPC_E_CLOSED,
				   "the server closed the connection while we waited for %s", c->what);
		return;
	}
	if (c->state == S_REPLY)
		smtpc_process(c);
}

struct sg_smtpc *sg_smtpc_new(struct event_base *base, struct sg_transcript *tr,
			      unsigned timeout_ms, sg_smtpc_cb *cb, void *arg)
{
	struct sg_smtpc *c = sg_calloc(1, sizeof(*c));
	c->base = base;
	c->tr = tr;
	c->timeout_ms = timeout_ms ? timeout_ms : 30000;
	c->cb = cb;
	c->arg = arg;
	c->timer = evtimer_new(base, smtpc_timeout_cb, c);
	c->kick = event_new(base, -1, 0, smtpc_kick_cb, c);
	if (c->timer == NULL || c->kick == NULL)
		sg_fatal("out of memory (libevent)");
	sg_reply_parser_init(&c->parser);
	return c;
}

void sg_smtpc_set_timeout(struct sg_smtpc *c, unsigned timeout_ms)
{
	c->timeout_ms = timeout_ms ? timeout_ms : 30000;
}

void sg_smtpc_free(struct sg_smtpc **cp)
{
	struct sg_smtpc *c = *cp;
	if (c == NULL)
		return;
	if (c->dns_req != NULL) {
		struct evdns_getaddrinfo_request *req = c->dns_req;
		c->dns_req = NULL;
		c->state = S_DEAD;
		evdns_getaddrinfo_cancel(req);
	}
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->ai != NULL)
		evutil_freeaddrinfo(c->ai);
	if (c->dns != NULL)
		evdns_base_free(c->dns, 0);
	event_free(c->timer);
	event_free(c->kick);
	sg_reply_parser_free(&c->parser);
	free(c);
	*cp = NULL;
}

void sg_smtpc_connect(struct sg_smtpc *c, const char *host, unsigned port)
{
	sg_strlcpy(c->host, host, sizeof(c->host));
	c->port = port;
	c->state = S_RESOLVING;
	char what[80];
	snprintf(what, sizeof(what), "the TCP connection to port %u", port);
	smtpc_arm(c, what);
	event_active(c->kick, EV_TIMEOUT, 0);
}

static void smtpc_wait(struct sg_smtpc *c, const char *what)
{
	if (c->state == S_DEAD)
		return;
	sg_reply_parser_reset(&c->parser);
	c->state = S_REPLY;
	smtpc_arm(c, what);
	if (c->peer_closed || (c->bev != NULL &&
			       evbuffer_get_length(bufferevent_get_input(c->bev)) > 0))
		event_active(c->kick, EV_TIMEOUT, 0);
}

void sg_smtpc_expect(struct sg_smtpc *c, const char *what)
{
	smtpc_wait(c, what);
}

void sg_smtpc_command(struct sg_smtpc *c, const char *line, const char *display,
		      const char *decoded)
{
	sg_transcript_add(c->tr, SG_TR_CLIENT, display != NULL ? display : line, decoded);
	if (c->bev != NULL && !c->peer_closed) {
		bufferevent_write(c->bev, line, strlen(line));
		bufferevent_write(c->bev, "\r\n", 2);
	}
	char what[64];
	const char *sp = strchr(display != NULL ? display : line, ' ');
	size_t vl = sp != NULL ? (size_t)(sp - (display != NULL ? display : line))
			       : strlen(display != NULL ? display : line);
	if (vl > 20)
		vl = 20;
	snprintf(what, sizeof(what), "the reply to %.*s", (int)vl,
		 display != NULL ? display : line);
	if (vl == 0)
		snprintf(what, sizeof(what), "the reply to an AUTH response");
	smtpc_wait(c, what);
}

void sg_smtpc_send_raw(struct sg_smtpc *c, const void *data, size_t len, const char *what)
{
	if (c->bev != NULL && !c->peer_closed)
		bufferevent_write(c->bev, data, len);
	smtpc_wait(c, what);
}

void sg_smtpc_starttls(struct sg_smtpc *c, struct sg_ctls *tls, const char *host)
{
	if (c->bev == NULL || c->peer_closed) {
		smtpc_fail(c, SG_SMTPC_E_CLOSED, "the server closed the connection before TLS");
		return;
	}
	/* RFC 3207 section 4.2 (and CVE-2011-0411): nothing may follow the 220. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		smtpc_fail(c, SG_SMTPC_E_PROTOCOL,
			   "the server sent plaintext data after its reply to STARTTLS "
			   "(possible injection attack): refusing to continue");
		return;
	}
	const char *err = NULL;
	struct bufferevent *t = sg_ctls_wrap(tls, c->base, c->bev, host, &err);
	if (t == NULL) {
		smtpc_fail(c, SG_SMTPC_E_TLS, "cannot start TLS: %s", err);
		return;
	}
	c->bev = t;
	bufferevent_setcb(t, smtpc_read_cb, NULL, smtpc_event_cb, c);
	bufferevent_setwatermark(t, EV_READ, 0, SMTPC_INPUT_MAX);
	bufferevent_enable(t, EV_READ | EV_WRITE);
	c->state = S_HANDSHAKE;
	smtpc_arm(c, "the TLS handshake");
}

enum sg_smtpc_err sg_smtpc_error(const struct sg_smtpc *c, const char **msg_r)
{
	if (msg_r != NULL)
		*msg_r = c->errmsg;
	return c->err;
}

const char *sg_smtpc_waiting_for(const struct sg_smtpc *c)
{
	return c->what;
}

const struct sg_ctls_info *sg_smtpc_tls_info(const struct sg_smtpc *c)
{
	return &c->tls;
}

int sg_smtpc_channel_binding(struct sg_smtpc *c, const char **type_r, uint8_t *out,
			     size_t *len_r)
{
	if (!c->tls.active || c->bev == NULL)
		return -1;
	return sg_ctls_channel_binding(c->bev, type_r, out, len_r);
}

const char *sg_smtpc_peer(const struct sg_smtpc *c)
{
	return c->peer;
}
