/*
 * webhook.c: webhook delivery (webhook.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "http/webhook.h"
#include "store/events.h"

#define QUEUE_MAX 1024
#define BODY_MAX (64 * 1024)
#define IO_TIMEOUT_MS 5000
#define ATTEMPTS 4 /* first try + 3 retries after 1, 2, 4 s */

struct job {
	char type[16];
	char *json;
};

struct sg_webhook {
	char host[256];
	char port[8];
	char path[1024];
	uint8_t secret[32];
	struct sg_events *events;
	int handle;
	pthread_t thread;
	pthread_mutex_t m;
	pthread_cond_t cv;
	struct job q[QUEUE_MAX];
	size_t head, count;
	unsigned long dropped;
	bool stopping;
};

static bool loopback_host(const char *h)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (strcmp(h, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, h, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, h, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

/* http://host[:port][/path] */
static int parse_url(struct sg_webhook *w, const char *url, const char **error_r)
{
	if (strncmp(url, "http://", 7) != 0) {
		*error_r = "webhook_url must start with http:// (https is not supported)";
		return -1;
	}
	const char *p = url + 7;
	const char *hend;
	if (*p == '[') {
		hend = strchr(p, ']');
		if (hend == NULL) {
			*error_r = "webhook_url: unterminated [IPv6 address]";
			return -1;
		}
		size_t hl = (size_t)(hend - p - 1);
		if (hl == 0 || hl >= sizeof(w->host))
			goto bad;
		memcpy(w->host, p + 1, hl);
		w->host[hl] = '\0';
		p = hend + 1;
	} else {
		size_t hl = strcspn(p, ":/");
		if (hl == 0 || hl >= sizeof(w->host))
			goto bad;
		memcpy(w->host, p, hl);
		w->host[hl] = '\0';
		p += hl;
	}
	sg_strlcpy(w->port, "80", sizeof(w->port));
	if (*p == ':') {
		p++;
		size_t pl = strcspn(p, "/");
		char port[8];
		uint64_t v;
		if (pl == 0 || pl >= sizeof(port))
			goto bad;
		memcpy(port, p, pl);
		port[pl] = '\0';
		if (sg_parse_u64(port, 1, 65535, &v) < 0)
			goto bad;
		sg_strlcpy(w->port, port, sizeof(w->port));
		p += pl;
	}
	if (*p == '\0')
		p = "/";
	if (*p != '/' || strlen(p) >= sizeof(w->path))
		goto bad;
	for (const char *c = p; *c != '\0'; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			goto bad;
	sg_strlcpy(w->path, p, sizeof(w->path));
	return 0;
bad:
	*error_r = "webhook_url: expected http://HOST[:PORT][/PATH]";
	return -1;
}

static int load_secret(struct sg_webhook *w, const char *data_dir, const char **error_r)
{
	static _Thread_local char err[1400];
	char *path = sg_asprintf("%s/webhook-secret", data_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char hex[80];
	int ret = -1;
	if (fd >= 0) {
		ssize_t n = read(fd, hex, sizeof(hex) - 1);
		close(fd);
		if (n >= 64) {
			hex[64] = '\0';
			ret = sg_unhex(hex, w->secret, 32) == 0 ? 0 : -1;
		}
		if (ret < 0) {
			snprintf(err, sizeof(err), "%s is not 64 hex digits; delete it for a new secret", path);
			*error_r = err;
		}
	} else if (errno == ENOENT) {
		sg_random(w->secret, sizeof(w->secret));
		sg_hex(w->secret, 32, hex);
		hex[64] = '\n';
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 && write(fd, hex, 65) == 65 && fsync(fd) == 0) {
			ret = 0;
			char pv[1300];
			sg_log(SG_INFO, "webhook_secret", "path=%s note=\"new HMAC key for X-Smtpgate-Signature\"",
			       sg_log_value(path, pv, sizeof(pv)));
		} else {
			snprintf(err, sizeof(err), "cannot create %s: %s", path, strerror(errno));
			*error_r = err;
		}
		if (fd >= 0)
			close(fd);
		sg_wipe(hex, sizeof(hex));
	} else {
		snprintf(err, sizeof(err), "cannot read %s: %s", path, strerror(errno));
		*error_r = err;
	}
	free(path);
	return ret;
}

static void on_event(void *ctx, const char *type, const char *json)
{
	struct sg_webhook *w = ctx;
	if (strcmp(type, "message") != 0 && strcmp(type, "auth") != 0)
		return;
	pthread_mutex_lock(&w->m);
	if (w->count < QUEUE_MAX && strlen(json) < BODY_MAX - 256) {
		struct job *j = &w->q[(w->head + w->count) % QUEUE_MAX];
		sg_strlcpy(j->type, type, sizeof(j->type));
		j->json = sg_strdup(json);
		w->count++;
		pthread_cond_signal(&w->cv);
	} else {
		w->dropped++;
	}
	pthread_mutex_unlock(&w->m);
}

static int wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = sg_now_ms();
	if (now >= deadline)
		return -1;
	struct pollfd p = {.fd = fd, .events = ev};
	int r = poll(&p, 1, (int)(deadline - now));
	return r > 0 ? 0 : -1;
}

/* One POST; the HTTP status, or -1. */
static int post(struct sg_webhook *w, const char *type, const char *delivery, const char *body)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
	if (getaddrinfo(w->host, w->port, &hints, &ai) != 0 || ai == NULL)
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	uint64_t deadline = sg_now_ms() + IO_TIMEOUT_MS;
	int status = -1;
	if (fd < 0)
		goto out;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)
		goto out;
	if (wait_fd(fd, POLLOUT, deadline) < 0)
		goto out;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
		goto out;
	char ts[32];
	snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
	/* signature over "timestamp.body" so a captured request cannot be replayed
	 * with another timestamp */
	struct sg_buf signed_text;
	sg_buf_init(&signed_text, BODY_MAX + 64);
	sg_buf_printf(&signed_text, "%s.%s", ts, body);
	uint8_t mac[32];
	unsigned maclen = 0;
	HMAC(EVP_sha256(), w->secret, sizeof(w->secret), signed_text.data, signed_text.len, mac, &maclen);
	sg_buf_free(&signed_text);
	char hex[65];
	sg_hex(mac, 32, hex);
	struct sg_buf req;
	sg_buf_init(&req, BODY_MAX + 4096);
	sg_buf_printf(&req,
		      "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: smtpgate-webhook\r\n"
		      "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
		      "X-Smtpgate-Event: %s\r\nX-Smtpgate-Delivery: %s\r\nX-Smtpgate-Timestamp: %s\r\n"
		      "X-Smtpgate-Signature: sha256=%s\r\n\r\n%s",
		      w->path, w->host, w->port, strlen(body), type, delivery, ts, hex, body);
	size_t off = 0;
	while (off < req.len) {
		if (wait_fd(fd, POLLOUT, deadline) < 0)
			break;
		ssize_t n = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	bool sent = off == req.len;
	sg_buf_free(&req);
	if (!sent)
		goto out;
	char resp[256];
	size_t got = 0;
	while (got < sizeof(resp) - 1 && memchr(resp, '\n', got) == NULL) {
		if (wait_fd(fd, POLLIN, deadline) < 0)
			break;
		ssize_t n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	resp[got] = '\0';
	unsigned code;
	if (strncmp(resp, "HTTP/1.", 7) == 0 && sscanf(resp + 8, " %3u", &code) == 1)
		status = (int)code;
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return status;
}

static void deliver(struct sg_webhook *w, const struct job *j)
{
	uint8_t r[12];
	char delivery[25];
	sg_random(r, sizeof(r));
	sg_hex(r, sizeof(r), delivery);
	char *body = sg_asprintf("{\"type\":\"%s\",\"delivery\":\"%s\",\"data\":%s}", j->type, delivery,
				 j->json);
	int status = -1;
	unsigned wait_ms = 1000;
	for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
		status = post(w, j->type, delivery, body);
		sg_log(status >= 200 && status < 300 ? SG_DEBUG : SG_INFO, "webhook",
		       "event=%s delivery=%s attempt=%d status=%d", j->type, delivery, attempt, status);
		if (status >= 200 && status < 300)
			break;
		if (attempt == ATTEMPTS)
			break;
		/* wait before the retry, but leave at once when stopping */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait_ms / 1000;
		pthread_mutex_lock(&w->m);
		bool stop = w->stopping;
		if (!stop)
			pthread_cond_timedwait(&w->cv, &w->m, &ts);
		stop = w->stopping;
		pthread_mutex_unlock(&w->m);
		if (stop)
			break;
		wait_ms *= 2;
	}
	if (status < 200 || status >= 300)
		sg_log(SG_WARN, "webhook_failed", "event=%s delivery=%s status=%d", j->type, delivery, status);
	free(body);
}

static void *webhook_main(void *arg)
{
	struct sg_webhook *w = arg;
	pthread_mutex_lock(&w->m);
	for (;;) {
		if (w->count == 0) {
			if (w->stopping)
				break;
			pthread_cond_wait(&w->cv, &w->m);
			continue;
		}
		struct job j = w->q[w->head];
		w->head = (w->head + 1) % QUEUE_MAX;
		w->count--;
		bool stopping = w->stopping;
		pthread_mutex_unlock(&w->m);
		if (!stopping)
			deliver(w, &j);
		free(j.json);
		pthread_mutex_lock(&w->m);
	}
	pthread_mutex_unlock(&w->m);
	return NULL;
}

int sg_webhook_start(const char *url, bool allow_remote, const char *data_dir,
		     struct sg_events *events, struct sg_webhook **wh_r, const char **error_r)
{
	static _Thread_local char err[600];
	*wh_r = NULL;
	if (url == NULL || url[0] == '\0')
		return 0;
	struct sg_webhook *w = sg_calloc(1, sizeof(*w));
	if (parse_url(w, url, error_r) < 0) {
		free(w);
		return -1;
	}
	if (!allow_remote && !loopback_host(w->host)) {
		snprintf(err, sizeof(err),
			 "webhook_url host %s is not a loopback address (set webhook_allow_remote = yes)",
			 w->host);
		*error_r = err;
		free(w);
		return -1;
	}
	if (load_secret(w, data_dir, error_r) < 0) {
		free(w);
		return -1;
	}
	w->events = events;
	pthread_mutex_init(&w->m, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (pthread_create(&w->thread, NULL, webhook_main, w) != 0) {
		*error_r = "cannot start the webhook thread";
		free(w);
		return -1;
	}
	w->handle = events != NULL ? sg_events_subscribe(events, on_event, w) : -1;
	sg_log(SG_INFO, "webhook", "url=http://%s:%s%s", w->host, w->port, w->path);
	*wh_r = w;
	return 0;
}

void sg_webhook_stop(struct sg_webhook **wp)
{
	struct sg_webhook *w = *wp;
	if (w == NULL)
		return;
	*wp = NULL;
	if (w->handle >= 0)
		sg_events_unsubscribe(w->events, w->handle);
	pthread_mutex_lock(&w->m);
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->m);
	pthread_join(w->thread, NULL);
	for (size_t i = 0; i < w->count; i++)
		free(w->q[(w->head + i) % QUEUE_MAX].json);
	if (w->dropped > 0)
		sg_log(SG_WARN, "webhook", "dropped=%lu reason=queue_full", w->dropped);
	sg_wipe(w->secret, sizeof(w->secret));
	pthread_mutex_destroy(&w->m);
	pthread_cond_destroy(&w->cv);
	free(w);
}
