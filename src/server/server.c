#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/privs.h"
#include "core/tls.h"
#include "core/util.h"
#include "http/http.h"
#include "sasl/jwt.h"
#include "sasl/mechs.h"
#include "store/events.h"
#include "store/faults.h"
#include "relay/relay.h"
#include "server/route.h"
#include "server/proxy_accept.h"
#include "server/session.h"
#include "store/throttle.h"
#include "smtp/reply.h"
#include "store/cred.h"
#include "store/mail.h"

/* How long a stopping server waits for sessions in DATA. */
#define STOP_GRACE_MS 10000

static void addr_to_str(const struct sockaddr *sa, char *ip, size_t size, unsigned *port)
{
	ip[0] = '\0';
	*port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)size);
		*port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)size);
		*port = ntohs(in6->sin6_port);
	}
}

static void refuse(int fd, const struct sg_server *srv, enum sg_reply_id id)
{
	const struct sg_reply *r = sg_reply_get(id);
	char line[512];
	int n = snprintf(line, sizeof(line), "%u %s ", r->code, r->enhanced);
	n += snprintf(line + n, sizeof(line) - (size_t)n, r->text, srv->cfg.hostname);
	n += snprintf(line + n, sizeof(line) - (size_t)n, "\r\n");
	/* best effort: the socket is fresh, the send buffer empty */
	ssize_t w = send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)w;
	close(fd);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct sg_listener *l = arg;
	struct sg_loop *loop = l->loop;
	struct sg_server *srv = loop->srv;
	char ip[64];
	unsigned port;
	addr_to_str(sa, ip, sizeof(ip), &port);
	if (loop->stopping) {
		refuse(fd, srv, SG_R_SHUTDOWN);
		return;
	}
	if (l->cfg->proxy_protocol && !sg_proxy_trusted(l, sa)) {
		sg_log(SG_WARN, "proxy_refused", "listener=%s peer=%s port=%u reason=untrusted",
		       l->cfg->name, ip, port);
		close(fd);
		return;
	}
	if (atomic_fetch_add(&srv->nsessions, 1) >= srv->max_connections) {
		atomic_fetch_sub(&srv->nsessions, 1);
		sg_log(SG_WARN, "refused", "client=%s reason=max_connections", ip);
		if (l->cfg->proxy_protocol)
			close(fd); /* nothing is sent before the header is read */
		else
			refuse(fd, srv, SG_R_TOO_MANY_CONN);
		return;
	}
	if (l->cfg->proxy_protocol)
		sg_proxy_wait_start(l, fd, ip, port);
	else
		sg_server_accept_client(l, fd, ip, port);
}

/* With the client's address (from the socket, or from a PROXY header). */
void sg_server_accept_client(struct sg_listener *l, int fd, const char *ip, unsigned port)
{
	struct sg_loop *loop = l->loop;
	struct sg_server *srv = loop->srv;
	if (sg_throttle_conn_add(srv->throttle, ip) > srv->cfg.max_connections_per_ip) {
		sg_throttle_conn_del(srv->throttle, ip);
		atomic_fetch_sub(&srv->nsessions, 1);
		sg_log(SG_WARN, "refused", "client=%s reason=max_connections_per_ip", ip);
		refuse(fd, srv, SG_R_TOO_MANY_CONN);
		return;
	}
	struct sg_session *s = sess_new(l, fd, ip, port, l->cfg->port);
	if (s == NULL) {
		sg_throttle_conn_del(srv->throttle, ip);
		atomic_fetch_sub(&srv->nsessions, 1);
		return;
	}
	s->next = loop->sessions;
	if (loop->sessions != NULL)
		loop->sessions->prev = s;
	loop->sessions = s;
	loop->nsessions++;
}

void sg_server_session_gone(struct sg_loop *loop, struct sg_session *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		loop->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	loop->nsessions--;
	atomic_fetch_sub(&loop->srv->nsessions, 1);
	sg_throttle_conn_del(loop->srv->throttle, s->client_ip);
	if (loop->stopping && loop->nsessions == 0)
		event_base_loopexit(loop->base, NULL);
}

static int mkdir_private(const char *path, char *err, size_t errsize)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int setup_tls(struct sg_server *srv, char *err, size_t errsize)
{
	struct sg_config *c = &srv->cfg;
	const char *error = NULL;
	if (c->tls_cert[0] == '\0' || c->tls_key[0] == '\0') {
		char dir[1100];
		snprintf(dir, sizeof(dir), "%s/tls", c->data_dir);
		if (mkdir_private(dir, err, errsize) < 0)
			return -1;
		if (snprintf(c->tls_cert, sizeof(c->tls_cert), "%s/cert.pem", dir) >= (int)sizeof(c->tls_cert) ||
		    snprintf(c->tls_key, sizeof(c->tls_key), "%s/key.pem", dir) >= (int)sizeof(c->tls_key)) {
			snprintf(err, errsize, "data dir path too long");
			return -1;
		}
		if (access(c->tls_cert, R_OK) != 0 || access(c->tls_key, R_OK) != 0) {
			if (sg_tls_make_selfsigned(c->tls_cert, c->tls_key, c->hostname, &error) < 0) {
				snprintf(err, errsize, "self-signed certificate: %s", error);
				return -1;
			}
			sg_log(SG_INFO, "tls_selfsigned", "cert=%s key=%s", c->tls_cert, c->tls_key);
		}
	}
	if (sg_tls_server_ctx_new(c->tls_cert, c->tls_key, c->sasl.tls_client_ca, &srv->tls, &error) < 0) {
		snprintf(err, errsize, "TLS: %s", error);
		return -1;
	}
	return 0;
}

/* Bind and listen once per configured listener. Every loop then accepts on
 * its own duplicate of that one socket: no SO_REUSEPORT, so a second server
 * (or two listeners configured on one port) fails with "address in use"
 * instead of silently sharing the port. */
static int open_listener(const struct sg_listener_cfg *lc, int *fd_r, char *err, size_t errsize)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
	struct addrinfo *ai = NULL;
	char port[8];
	snprintf(port, sizeof(port), "%u", lc->port);
	int r = getaddrinfo(lc->host, port, &hints, &ai);
	if (r != 0) {
		snprintf(err, errsize, "listener %s: address '%s': %s", lc->name, lc->host, gai_strerror(r));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errsize, "listener %s: cannot listen on %s:%u: %s", lc->name, lc->host,
			 lc->port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	*fd_r = fd;
	sg_log(SG_INFO, "listen", "listener=%s role=%s addr=%s:%u tls=%s", lc->name,
	       sg_role_name(lc->role), lc->host, lc->port,
	       lc->role == SG_ROLE_SUBMISSIONS ? "implicit" : "starttls");
	return 0;
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct sg_listener *l = arg;
	l->paused = false;
	if (!l->loop->stopping)
		evconnlistener_enable(l->evl);
}

/* accept() failed. Out of descriptors (EMFILE, ENFILE) or kernel memory, the
 * pending connection stays queued and the listener would fire again at once:
 * stop accepting on this loop for ACCEPT_PAUSE_MS instead of spinning, and
 * say so at most once per ACCEPT_LOG_MS for the whole server. The clients
 * wait in the backlog and are served when descriptors come back. */
#define ACCEPT_PAUSE_MS 250
#define ACCEPT_LOG_MS 10000

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct sg_listener *l = arg;
	struct sg_server *srv = l->loop->srv;
	int err = EVUTIL_SOCKET_ERROR();
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		sg_log(SG_WARN, "accept", "listener=%s error=\"%s\"", l->cfg->name, strerror(err));
		return;
	}
	evconnlistener_disable(evl);
	l->paused = true;
	struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
	evtimer_add(l->resume_ev, &tv);
	uint64_t n = atomic_fetch_add(&srv->accept_pauses, 1) + 1;
	uint64_t now = sg_now_ms(), last = atomic_load(&srv->accept_pause_logged_ms);
	if ((last == 0 || now - last >= ACCEPT_LOG_MS) &&
	    atomic_compare_exchange_strong(&srv->accept_pause_logged_ms, &last, now))
		sg_log(SG_WARN, "accept_paused",
		       "listener=%s error=\"%s\" pause_ms=%d pauses=%llu sessions=%u max_connections=%u",
		       l->cfg->name, strerror(err), ACCEPT_PAUSE_MS, (unsigned long long)n,
		       atomic_load(&srv->nsessions), srv->max_connections);
}

/* Every session needs a socket and, in DATA, a spool file; the stores, the
 * worker threads' databases and the HTTP side need their own. Raise the soft
 * RLIMIT_NOFILE to what max_connections needs, or lower the connection limit
 * to what the limit allows, and say which. */
#define FDS_PER_SESSION 2
#define FDS_RESERVED 64

static void fit_nofile(struct sg_server *srv)
{
	struct sg_config *c = &srv->cfg;
	srv->max_connections = c->max_connections;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t reserved = FDS_RESERVED + (rlim_t)c->loops * (c->workers * 4 + c->nlisteners + 4);
	rlim_t need = (rlim_t)c->max_connections * FDS_PER_SESSION + reserved;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rlim_t soft = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
		if (soft > rl.rlim_cur) {
			struct rlimit nl = {soft, rl.rlim_max};
			if (setrlimit(RLIMIT_NOFILE, &nl) == 0) {
				sg_log(SG_INFO, "limits", "nofile_soft=%llu (raised from %llu for max_connections=%u)",
				       (unsigned long long)soft, (unsigned long long)rl.rlim_cur,
				       c->max_connections);
				rl.rlim_cur = soft;
			}
		}
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rlim_t usable = rl.rlim_cur > reserved + FDS_PER_SESSION ? rl.rlim_cur - reserved : FDS_PER_SESSION;
		srv->max_connections = (unsigned)(usable / FDS_PER_SESSION);
		sg_log(SG_WARN, "limits",
		       "max_connections=%u lowered from %u: RLIMIT_NOFILE is %llu (hard %llu), %d descriptors "
		       "per session and %llu reserved; raise it (ulimit -n, LimitNOFILE=) to allow more",
		       srv->max_connections, c->max_connections, (unsigned long long)rl.rlim_cur,
		       (unsigned long long)rl.rlim_max, FDS_PER_SESSION, (unsigned long long)reserved);
	}
}

static int attach_listener(struct sg_loop *loop, struct sg_listener *l, int fd, char *err,
			   size_t errsize)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	l->loop = loop;
	l->evl = dfd < 0 ? NULL
			 : evconnlistener_new(loop->base, on_accept, l,
					      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, dfd);
	if (l->evl == NULL) {
		snprintf(err, errsize, "listener %s: %s", l->cfg->name, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	evconnlistener_set_error_cb(l->evl, on_accept_error);
	l->resume_ev = evtimer_new(loop->base, on_accept_resume, l);
	return 0;
}

/* Bearer-token keys: a configured HS256 secret file and/or JWKS; with
 * neither, the sandbox's own secret (the one `smtpgate token issue` signs
 * with), so OAuth clients can be tested with no identity provider. */
static int setup_oauth(struct sg_server *srv, char *err, size_t errsize)
{
	struct sg_config *c = &srv->cfg;
	const char *error = NULL;
	if (c->oauth_jwks_file[0] != '\0') {
		void *jwks = NULL;
		if (sg_jwks_load(c->oauth_jwks_file, &jwks, &error) < 0) {
			snprintf(err, errsize, "oauth_jwks_file %s: %s", c->oauth_jwks_file, error);
			return -1;
		}
		srv->jwks = jwks;
		c->sasl.oauth_jwks = jwks;
	}
	if (c->oauth_secret_file[0] != '\0') {
		FILE *f = fopen(c->oauth_secret_file, "rb");
		if (f == NULL) {
			snprintf(err, errsize, "oauth_secret_file %s: %s", c->oauth_secret_file, strerror(errno));
			return -1;
		}
		srv->oauth_key = sg_malloc(1024);
		srv->oauth_key_len = fread(srv->oauth_key, 1, 1024, f);
		fclose(f);
		while (srv->oauth_key_len > 0 && (srv->oauth_key[srv->oauth_key_len - 1] == '\n' ||
						  srv->oauth_key[srv->oauth_key_len - 1] == '\r'))
			srv->oauth_key_len--;
		if (srv->oauth_key_len < 16) {
			snprintf(err, errsize, "oauth_secret_file %s: at least 16 octets needed",
				 c->oauth_secret_file);
			return -1;
		}
	} else if (srv->jwks == NULL) {
		if (sg_oauth_secret_load_or_create(c->data_dir, &srv->oauth_key, &srv->oauth_key_len,
						   &error) < 0) {
			snprintf(err, errsize, "OAuth secret: %s", error);
			return -1;
		}
	}
	c->sasl.oauth_hs256_secret = srv->oauth_key;
	c->sasl.oauth_hs256_secret_len = srv->oauth_key_len;
	return 0;
}

/* The auth event log, fault rules, metrics and the HTTP API. */
static int setup_sandbox(struct sg_server *srv, char *err, size_t errsize)
{
	struct sg_config *c = &srv->cfg;
	const char *error = NULL;
	const char *names[SG_MAX_LISTENERS];
	for (size_t i = 0; i < c->nlisteners; i++)
		names[i] = c->listeners[i].name;
	sg_metrics_init(&srv->metrics, names, c->nlisteners);
	if (sg_events_open(c->data_dir, &srv->events, &error) < 0) {
		snprintf(err, errsize, "auth event log: %s", error);
		return -1;
	}
	if (sg_faults_open(c->data_dir, &srv->faults, &error) < 0) {
		snprintf(err, errsize, "fault rules: %s", error);
		return -1;
	}
	/* Rules from the config file replace those of the previous start. */
	size_t cleared;
	if (sg_faults_clear(srv->faults, "config", &cleared, &error) < 0) {
		snprintf(err, errsize, "fault rules: %s", error);
		return -1;
	}
	for (size_t i = 0; i < c->nfaults; i++)
		if (sg_faults_add_spec(srv->faults, c->faults[i], &error) < 0) {
			snprintf(err, errsize, "fault '%s': %s", c->faults[i], error);
			return -1;
		}
	if (strcmp(c->http_listen, "off") == 0)
		return 0;
	char host[64];
	const char *colon = strrchr(c->http_listen, ':');
	uint64_t port;
	size_t hl = colon != NULL ? (size_t)(colon - c->http_listen) : 0;
	if (colon == NULL || hl == 0 || hl >= sizeof(host) || sg_parse_u64(colon + 1, 1, 65535, &port) < 0) {
		snprintf(err, errsize, "http_listen '%s': expected ADDR:PORT or off", c->http_listen);
		return -1;
	}
	memcpy(host, c->http_listen, hl);
	host[hl] = '\0';
	struct sg_http_config hc = {
		.listen_host = host,
		.port = (unsigned)port,
		.open = c->http_open,
		.data_dir = c->data_dir,
		.throttle = srv->throttle,
		.tls_cert = c->http_tls ? c->tls_cert : NULL,
		.tls_key = c->http_tls ? c->tls_key : NULL,
		.relay = sg_route_http(srv),
	};
	if (sg_http_start(&hc, srv->creds, srv->mail, srv->events, srv->faults, &srv->metrics, &srv->http,
			  &error) < 0) {
		snprintf(err, errsize, "HTTP %s: %s", c->http_listen, error);
		return -1;
	}
	sg_log(SG_INFO, "listen", "listener=http addr=%s tls=%s access=%s", c->http_listen,
	       c->http_tls ? "yes" : "no", c->http_open ? "open" : "credentials");
	return 0;
}

int sg_server_init(struct sg_server *srv, char *err, size_t errsize)
{
	struct sg_config *c = &srv->cfg;
	const char *error = NULL;
	umask(077);
	sg_privs_no_core_dumps();
	if (mkdir_private(c->data_dir, err, errsize) < 0)
		return -1;
	/* As root: the TLS key is read and the listeners bound first, then the
	 * data directory is handed over and root is dropped, before any client
	 * byte is read and before any worker thread exists. */
	bool root = geteuid() == 0;
	struct sg_privs privs;
	if (root && sg_privs_resolve(c->user, &privs, err, errsize) < 0)
		return -1;
	if (setup_tls(srv, err, errsize) < 0 || sg_route_setup(srv, err, errsize) < 0)
		return -1;
	fit_nofile(srv);
	evthread_use_pthreads();
	srv->nloops = c->loops;
	srv->loops = sg_calloc(srv->nloops, sizeof(*srv->loops));
	int fds[SG_MAX_LISTENERS];
	for (size_t i = 0; i < c->nlisteners; i++)
		if (open_listener(&c->listeners[i], &fds[i], err, errsize) < 0) {
			while (i-- > 0)
				close(fds[i]);
			return -1;
		}
	int ret = 0;
	for (unsigned k = 0; k < srv->nloops && ret == 0; k++) {
		struct sg_loop *loop = &srv->loops[k];
		loop->srv = srv;
		loop->index = k;
		loop->base = event_base_new();
		if (loop->base == NULL) {
			snprintf(err, errsize, "event_base_new failed");
			ret = -1;
			break;
		}
		for (size_t i = 0; i < c->nlisteners && ret == 0; i++) {
			loop->listeners[i].cfg = &c->listeners[i];
			ret = attach_listener(loop, &loop->listeners[i], fds[i], err, errsize);
			if (ret == 0)
				loop->nlisteners++;
		}
	}
	for (size_t i = 0; i < c->nlisteners; i++)
		close(fds[i]); /* every loop holds its own duplicate */
	if (ret < 0)
		return -1;
	if (root) {
		char abs[PATH_MAX];
		if (realpath(c->data_dir, abs) == NULL || !sg_strlcpy(c->data_dir, abs, sizeof(c->data_dir))) {
			snprintf(err, errsize, "%s: %s", c->data_dir, strerror(errno));
			return -1;
		}
		if (sg_privs_chown_tree(c->data_dir, &privs, err, errsize) < 0 ||
		    sg_privs_drop(&privs, err, errsize) < 0)
			return -1;
		/* SQLite and the Maildir use absolute paths: every parent of the
		 * data directory must be searchable by the unprivileged user. */
		if (access(c->data_dir, R_OK | W_OK | X_OK) < 0) {
			snprintf(err, errsize,
				 "data directory %s is not reachable by user %s after dropping root (%s): "
				 "make its parent directories searchable (chmod o+x) or choose another "
				 "data_dir",
				 c->data_dir, privs.name, strerror(errno));
			return -1;
		}
		sg_log(SG_INFO, "privileges", "user=%s uid=%u", privs.name, (unsigned)privs.uid);
	}
	char path[1100];
	/* DATA bodies are streamed to unnamed files here (cmd_data.c) */
	snprintf(path, sizeof(path), "%s/spool", c->data_dir);
	if (mkdir_private(path, err, errsize) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/smtpgate.db", c->data_dir);
	if (sg_cred_open(path, &srv->creds, &error) < 0) {
		snprintf(err, errsize, "account database %s: %s", path, error);
		return -1;
	}
	sg_cred_set_auth_cache(srv->creds, c->auth_cache_ttl_ms, 4096);
	if (sg_scram_fake_key_load(c->data_dir, &error) < 0) {
		snprintf(err, errsize, "%s/%s: %s", c->data_dir, SG_SCRAM_FAKE_KEY_FILE, error);
		return -1;
	}
	if (sg_mail_open(c->data_dir, &srv->mail, &error) < 0) {
		snprintf(err, errsize, "mail store: %s", error);
		return -1;
	}
	/* one throttle for every password check: SMTP AUTH and HTTP Basic */
	struct sg_throttle_cfg tc = {
		.ip_threshold = c->throttle_ip_threshold,
		.account_threshold = c->throttle_account_threshold,
		.window_ms = c->throttle_window_ms,
		.cooloff_ms = c->throttle_cooloff_ms,
		.base_delay_ms = c->auth_fail_delay_ms,
		.max_delay_ms = c->throttle_max_delay_ms,
		.max_entries = 100000,
		.ipv6_prefix = c->ipv6_prefix,
		.repeat_window_ms = c->throttle_repeat_window_ms,
	};
	srv->throttle = sg_throttle_new(&tc);
	if (setup_oauth(srv, err, errsize) < 0 || sg_route_start(srv, err, errsize) < 0 ||
	    setup_sandbox(srv, err, errsize) < 0)
		return -1;
	for (unsigned k = 0; k < srv->nloops; k++)
		srv->loops[k].pool = sg_pool_new(srv->loops[k].base, c->workers);
	return 0;
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sg_loop *loop = arg;
	sg_log(SG_WARN, "stop", "loop=%u grace period over, %u sessions cut", loop->index,
	       loop->nsessions);
	event_base_loopexit(loop->base, NULL);
}

/* On each loop's own thread: stop accepting, close idle sessions, give the
 * ones in DATA a bounded time to finish. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct sg_loop *loop = arg;
	if (loop->stopping) {
		event_base_loopexit(loop->base, NULL);
		return;
	}
	loop->stopping = true;
	for (size_t i = 0; i < loop->nlisteners; i++)
		evconnlistener_disable(loop->listeners[i].evl);
	sg_proxy_wait_cancel_all(loop);
	struct sg_session *next;
	for (struct sg_session *s = loop->sessions; s != NULL; s = next) {
		next = s->next;
		sess_shutdown(s);
	}
	if (loop->nsessions == 0) {
		event_base_loopexit(loop->base, NULL);
		return;
	}
	loop->stop_timer = evtimer_new(loop->base, on_stop_timer, loop);
	struct timeval tv = {STOP_GRACE_MS / 1000, 0};
	evtimer_add(loop->stop_timer, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sg_server *srv = arg;
	bool again = atomic_exchange(&srv->stopping, true);
	sg_log(SG_INFO, "stop", "signal=%d sessions=%u%s", (int)sig, atomic_load(&srv->nsessions),
	       again ? " (again: exiting now)" : "");
	for (unsigned k = 0; k < srv->nloops; k++)
		event_active(srv->loops[k].stop_ev, EV_READ, 0);
}

static void *loop_thread(void *arg)
{
	struct sg_loop *loop = arg;
	event_base_dispatch(loop->base);
	return NULL;
}

int sg_server_run(struct sg_server *srv)
{
	signal(SIGPIPE, SIG_IGN);
	struct sg_loop *main_loop = &srv->loops[0];
	for (unsigned k = 0; k < srv->nloops; k++) {
		struct sg_loop *loop = &srv->loops[k];
		loop->stop_ev = event_new(loop->base, -1, EV_READ, on_stop, loop);
		event_add(loop->stop_ev, NULL);
	}
	srv->sigterm_ev = evsignal_new(main_loop->base, SIGTERM, on_signal, srv);
	srv->sigint_ev = evsignal_new(main_loop->base, SIGINT, on_signal, srv);
	evsignal_add(srv->sigterm_ev, NULL);
	evsignal_add(srv->sigint_ev, NULL);
	for (unsigned k = 1; k < srv->nloops; k++)
		if (pthread_create(&srv->loops[k].thread, NULL, loop_thread, &srv->loops[k]) != 0)
			sg_fatal("pthread_create failed");
	sg_log(SG_INFO, "ready", "hostname=%s data_dir=%s loops=%u", srv->cfg.hostname,
	       srv->cfg.data_dir, srv->nloops);
	event_base_dispatch(main_loop->base);
	/* The signal loop's own sessions are done; wait for the others. */
	for (unsigned k = 1; k < srv->nloops; k++)
		pthread_join(srv->loops[k].thread, NULL);
	return 0;
}

static void loop_deinit(struct sg_loop *loop)
{
	/* Workers first: jobs still out complete and release their sessions. */
	sg_pool_free(&loop->pool);
	sg_proxy_wait_cancel_all(loop);
	while (loop->sessions != NULL)
		sess_free(loop->sessions);
	for (size_t i = 0; i < loop->nlisteners; i++) {
		if (loop->listeners[i].evl != NULL)
			evconnlistener_free(loop->listeners[i].evl);
		if (loop->listeners[i].resume_ev != NULL)
			event_free(loop->listeners[i].resume_ev);
	}
	if (loop->stop_ev != NULL)
		event_free(loop->stop_ev);
	if (loop->stop_timer != NULL)
		event_free(loop->stop_timer);
	if (loop->base != NULL)
		event_base_free(loop->base);
}

void sg_server_deinit(struct sg_server *srv)
{
	/* this thread's log lines went through loop 0's base, freed below */
	sg_log_unbind_loop();
	if (srv->sigterm_ev != NULL)
		event_free(srv->sigterm_ev);
	if (srv->sigint_ev != NULL)
		event_free(srv->sigint_ev);
	for (unsigned k = 0; k < srv->nloops; k++)
		loop_deinit(&srv->loops[k]);
	free(srv->loops);
	srv->loops = NULL;
	sg_http_stop(&srv->http);
	sg_relay_free(&srv->relay);
	sg_events_close(&srv->events);
	sg_faults_close(&srv->faults);
	sg_throttle_free(&srv->throttle);
	sg_tls_ctx_free(&srv->tls);
	sg_mail_close(&srv->mail);
	sg_cred_close(&srv->creds);
	if (srv->oauth_key != NULL)
		sg_oauth_secret_free(&srv->oauth_key, srv->oauth_key_len);
	if (srv->jwks != NULL)
		sg_jwks_free(&srv->jwks);
	sg_log(SG_INFO, "stopped", "ok");
}
