#include "server/proxy_accept.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/proxy.h"
#include "core/util.h"
#include "server/server.h"

struct sg_proxy_wait {
	struct sg_proxy_wait *next, *prev;
	struct sg_listener *lst;
	struct event *ev;
	int fd;
	char peer_ip[64];
	unsigned peer_port;
	uint64_t deadline_ms;
	size_t got;                 /* header octets already taken from the socket */
	uint8_t buf[SG_PROXY_MAX];
};

bool sg_proxy_trusted(const struct sg_listener *l, const struct sockaddr *sa)
{
	for (size_t i = 0; i < l->cfg->nproxy_trusted; i++)
		if (sg_cidr_match(&l->cfg->proxy_trusted[i], sa))
			return true;
	return false;
}

static void wait_unlink(struct sg_proxy_wait *w)
{
	struct sg_loop *loop = w->lst->loop;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		loop->proxy_waits = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	event_free(w->ev);
}

/* Give up: close, release the connection slot. */
static void wait_fail(struct sg_proxy_wait *w, const char *reason)
{
	sg_log(SG_WARN, "proxy_refused", "listener=%s peer=%s port=%u reason=\"%s\"",
	       w->lst->cfg->name, w->peer_ip, w->peer_port, reason);
	atomic_fetch_sub(&w->lst->loop->srv->nsessions, 1);
	wait_unlink(w);
	close(w->fd);
	free(w);
}

static void wait_arm(struct sg_proxy_wait *w)
{
	uint64_t now = sg_now_ms();
	uint64_t left = w->deadline_ms > now ? w->deadline_ms - now : 1;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
	event_add(w->ev, &tv);
}

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
	struct sg_proxy_wait *w = arg;
	if (what & EV_TIMEOUT) {
		wait_fail(w, w->got == 0 ? "no header before the deadline" : "truncated header");
		return;
	}
	/* Look at what is there without taking it; only header octets are read. */
	ssize_t n = recv(w->fd, w->buf + w->got, sizeof(w->buf) - w->got, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		wait_arm(w);
		return;
	}
	if (n <= 0) {
		wait_fail(w, n == 0 ? (w->got == 0 ? "closed before the header" : "truncated header")
				    : strerror(errno));
		return;
	}
	struct sg_proxy_hdr h;
	const char *error = NULL;
	size_t avail = w->got + (size_t)n;
	int r = sg_proxy_parse(w->buf, avail, &h, &error);
	if (r < 0) {
		wait_fail(w, error);
		return;
	}
	/* r == 0: every available octet belongs to the header; else exactly r do. */
	size_t take = r == 0 ? avail - w->got : (size_t)r - w->got;
	ssize_t k = recv(w->fd, w->buf + w->got, take, 0);
	if (k != (ssize_t)take) {
		wait_fail(w, "short read of a peeked header");
		return;
	}
	w->got += take;
	if (r == 0) {
		if (w->got >= sizeof(w->buf)) {
			wait_fail(w, "header too long");
			return;
		}
		wait_arm(w);
		return;
	}
	const char *ip = h.local ? w->peer_ip : h.src_ip;
	unsigned port = h.local ? w->peer_port : h.src_port;
	sg_log(SG_INFO, "proxy", "listener=%s peer=%s version=%d client=%s port=%u%s", w->lst->cfg->name,
	       w->peer_ip, h.version, ip, port, h.local ? " local=yes" : "");
	struct sg_listener *l = w->lst;
	int cfd = w->fd;
	char cip[64];
	sg_strlcpy(cip, ip, sizeof(cip));
	wait_unlink(w);
	free(w);
	sg_server_accept_client(l, cfd, cip, port);
}

void sg_proxy_wait_start(struct sg_listener *l, int fd, const char *ip, unsigned port)
{
	struct sg_loop *loop = l->loop;
	struct sg_proxy_wait *w = sg_calloc(1, sizeof(*w));
	w->lst = l;
	w->fd = fd;
	sg_strlcpy(w->peer_ip, ip, sizeof(w->peer_ip));
	w->peer_port = port;
	w->deadline_ms = sg_now_ms() + loop->srv->cfg.timeout_proxy_ms;
	w->ev = event_new(loop->base, fd, EV_READ, on_wait, w);
	if (w->ev == NULL)
		sg_fatal("event_new failed");
	w->next = loop->proxy_waits;
	if (w->next != NULL)
		w->next->prev = w;
	loop->proxy_waits = w;
	wait_arm(w);
}

void sg_proxy_wait_cancel_all(struct sg_loop *loop)
{
	while (loop->proxy_waits != NULL)
		wait_fail(loop->proxy_waits, "server stopping");
}
